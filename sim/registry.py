"""One generic registry keyed by names (schedulers, routers).

Registration is explicit (``REGISTRY.register(name, factory, aliases=...)`` at the bottom of the module
that defines the entries), raises on duplicates, and a miss lists the valid names via
:class:`llmsim.workloads.naming.NameIndex`.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Generic, TypeVar

import numpy as np

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


def stream(seed: int, subsystem: str) -> np.random.Generator:
    """The numpy Generator of one subsystem, derived from the master seed (never seed globally)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(subsystem.encode()),)))

