"""A read-only, hashable mapping for frozen dataclasses whose fields are mappings.

``FrozenMap(mapping)`` copies ``mapping``; it compares equal to any mapping with the same items
and hashes by its items regardless of their order (so equal maps hash equal). Hashing needs the
values to be hashable (numbers, strings, tuples, other FrozenMaps).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FrozenMap"]


class FrozenMap(Mapping):
    """A read-only copy of a mapping; hashable when its values are."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping | None = None):
        object.__setattr__(self, "_data", dict(items or {}))

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only")

    def __reduce__(self):
        return (FrozenMap, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"
