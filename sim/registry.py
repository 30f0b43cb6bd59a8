"""One generic registry keyed by names (schedulers, routers).

Registration is explicit (``REGISTRY.register(name, factory, aliases=...)`` at the bottom of the module
that defines the entries), raises on duplicates, and a miss lists the valid names via
:class:`llmsim.workloads.naming.NameIndex`.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from llmsim.workloads.naming import NameIndex

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._index = NameIndex(kind)
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, aliases: Iterable[str] = ()) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._index.add(name, aliases)
        self._entries[name] = entry
        return entry

    def canonical(self, name: str) -> str:
        """Canonical name; ``UnknownNameError`` listing close names on a miss."""
        return self._index.resolve(name)

    def get(self, name: str) -> T:
        return self._entries[self._index.resolve(name)]

    def names(self) -> tuple[str, ...]:
        return self._index.names()

    def __contains__(self, name: str) -> bool:
        return name in self._index



