"""Registries of code entries keyed by names (schedulers, routers): one use of the generic catalogue.

A :class:`Registry` is a :class:`llmsim.workloads.catalogue.Catalogue` with no data files: entries
join by explicit registration (``REGISTRY.register(name, factory, aliases=...)`` at the bottom of
the module that defines them), a name or alias already taken raises ConfigError, and a miss raises
``UnknownNameError`` with the closest names, as for every other catalogue.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from llmsim.workloads.catalogue import Catalogue
from llmsim.workloads.errors import ConfigError

T = TypeVar("T")


class Registry(Catalogue[T]):
    """Entries registered in code under loose names (a name is never a file path here)."""

    def __init__(self, kind: str):
        super().__init__(kind, load=tuple, parse=self._no_files)

    def _no_files(self, data: Any, where: str):
        raise ConfigError(f"{where}: a {self.kind} is registered in code, not read from a file; "
                          f"known {self.kind}s: {', '.join(self.names())}")

    def parse_path(self, path):
        return self._no_files(None, str(path))

    def register(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:  # type: ignore[override]
        """Add ``entry`` under ``name`` and ``aliases`` and return it."""
        super().register(name, entry, aliases)
        return entry

    def canonical(self, name: str) -> str:
        """Canonical name; ``UnknownNameError`` listing close names on a miss."""
        return self.resolve(name)

    def get(self, name: str) -> T:  # type: ignore[override]
        """The entry of a loose ``name``; ``UnknownNameError`` listing close names on a miss."""
        return self.table()[self.resolve(str(name))]
