"""Loose name resolution shared by every catalogue (models, devices, formats, policies).

A catalogue registers canonical names and aliases; a query is normalised (case, separators,
vendor prefixes are the catalogue's business) and looked up. A miss raises ``UnknownNameError``
listing the closest known names, so the user sees the fix in the message.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from llmsim.workloads.errors import UnknownNameError

_SEPARATORS = re.compile(r"[\s_\-./:]+")


def normalise(name: str) -> str:
    """Lower-case, separators removed: 'H100-SXM_80GB' -> 'h100sxm80gb'."""
    return _SEPARATORS.sub("", str(name).strip().lower())


class NameIndex:
    """Maps normalised aliases to canonical names; raises on duplicate aliases with a different target."""

    def __init__(self, kind: str):
        self.kind = kind
        self._aliases: dict[str, str] = {}
        self._canonical: list[str] = []

    def add(self, canonical: str, aliases: Iterable[str] = ()) -> None:
        if canonical not in self._canonical:
            self._canonical.append(canonical)
        for alias in (canonical, *aliases):
            key = normalise(alias)
            previous = self._aliases.get(key)
            if previous is not None and previous != canonical:
                raise ValueError(f"{self.kind} alias {alias!r} names both {previous!r} and {canonical!r}")
            self._aliases[key] = canonical

    def names(self) -> tuple[str, ...]:
        return tuple(self._canonical)

    def __contains__(self, name: str) -> bool:
        return normalise(name) in self._aliases

    def resolve(self, name: str) -> str:
        """Canonical name for ``name``; ``UnknownNameError`` with suggestions on a miss."""
        key = normalise(name)
        hit = self._aliases.get(key)
        if hit is not None:
            return hit
        close = difflib.get_close_matches(key, list(self._aliases), n=8, cutoff=0.5)
        suggestions: list[str] = []
        for alias in close:
            canonical = self._aliases[alias]
            if canonical not in suggestions:
                suggestions.append(canonical)
        if not suggestions:
            suggestions = [c for c in self._canonical if key[:3] and key[:3] in normalise(c)][:5]
        raise UnknownNameError(self.kind, name, suggestions[:5])
