"""One generic catalogue: named entries loaded lazily from package data, loose names, and paths.

A :class:`Catalogue` reads its entries on first use, either one file per entry in a data folder
(:meth:`Catalogue.from_folder`) or one file of entries (:meth:`Catalogue.from_file`), and resolves
loose names and aliases through :class:`~llmsim.workloads.naming.NameIndex` (suggestions on a miss).

The path rule: wherever a name is accepted, a string ending in ``.yaml``, ``.yml`` or ``.json`` is a
file path, read with the catalogue's own parser and validated the same way as the shipped files
(:func:`is_path`, :meth:`Catalogue.load_path`). Errors are ``ConfigError`` naming the file.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from llmsim.workloads.errors import ConfigError, UnknownNameError
from llmsim.workloads.naming import NameIndex, normalise
from llmsim.workloads.yamlio import read_yaml

__all__ = ["PATH_SUFFIXES", "Catalogue", "is_path", "read_data_file", "read_data_text"]

T = TypeVar("T")
#: one entry as a parser returns it: (canonical name, value, aliases)
Entry = tuple[str, Any, Iterable[str]]
#: file endings that make a name a path
PATH_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")


def is_path(name: Any) -> bool:
    """Whether ``name`` is a file path under the path rule (a ``Path``, or a string ending in a data suffix)."""
    if isinstance(name, Path):
        return True
    return isinstance(name, str) and name.strip().lower().endswith(PATH_SUFFIXES)


def read_data_text(text: str, where: str, suffix: str = ".yaml", *, shipped: bool = False) -> Any:
    """Parse ``text`` as JSON (``suffix`` '.json') or strict YAML; errors name ``where``. ``shipped``:
    ``text`` is a shipped data file, whose YAML parse may be kept between processes (workloads/yamlio.py)."""
    if suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON: {exc}") from None
    return read_yaml(text, where, shipped=shipped)


def read_data_file(path: str | Path, kind: str) -> Any:
    """The parsed contents of a user's ``kind`` file (JSON for '.json', else strict YAML).

    A missing, unreadable or malformed file is a one-line ConfigError naming it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {kind} file: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        return read_data_text(text, str(path), ".json")
    import yaml

    from llmsim.workloads.yamlio import StrictLoader

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None


class Catalogue(Generic[T]):
    """Named entries of one ``kind`` ('device', 'engine', ...), loaded on first use.

    ``load()`` returns the shipped entries as ``(name, value, aliases)``; ``parse(data, where)``
    turns one parsed file (a shipped one or a user's path) into entries. Entries added with
    :meth:`register` join the shipped ones until :meth:`unregister`.
    """

    def __init__(self, kind: str, load: Callable[[], Iterable[Entry]],
                 parse: Callable[[Any, str], Iterable[Entry]]):
        self.kind = kind
        self._load = load
        self._parse = parse
        self._table: dict[str, T] | None = None
        self._index: NameIndex | None = None
        self._registered: dict[str, tuple[T, tuple[str, ...]]] = {}

    @classmethod
    def from_folder(cls, kind: str, package: str, folder: str,
                    parse: Callable[[Any, str], Iterable[Entry]], suffix: str = ".yaml",
                    exact_file_names: bool = False) -> Catalogue:
        """One entry per ``*suffix`` file in ``package``'s ``folder``; each file's stem must match its
        entry's name (loosely, as names resolve, or exactly with ``exact_file_names``)."""

        def load() -> list[Entry]:
            root = resources.files(package).joinpath(*folder.split("/"))
            out: list[Entry] = []
            index = NameIndex(kind)
            for item in sorted(root.iterdir(), key=lambda e: e.name):
                if not item.name.endswith(suffix):
                    continue
                where = f"{package.rpartition('.')[2]}/{folder}/{item.name}"
                data = read_data_text(item.read_text(encoding="utf-8"), where, suffix, shipped=True)
                for name, value, aliases in parse(data, where):
                    aliases = tuple(aliases)
                    stem = item.name[: -len(suffix)]
                    if (stem != name) if exact_file_names else (normalise(stem) != normalise(name)):
                        raise ConfigError(f"{where}: file name does not match {kind} name {name!r}")
                    if any(name == seen for seen, _, _ in out):
                        raise ConfigError(f"{where}: {kind} {name!r} is defined twice")
                    try:
                        index.add(name, tuple(aliases))
                    except ValueError as exc:
                        raise ConfigError(f"{where}: {exc}") from None
                    out.append((name, value, aliases))
            return out

        return cls(kind, load, parse)

    @classmethod
    def from_file(cls, kind: str, package: str, file: str,
                  parse: Callable[[Any, str], Iterable[Entry]]) -> Catalogue:
        """Every entry of the one data file ``file`` in ``package``."""

        def load() -> list[Entry]:
            where = f"{package.rpartition('.')[2]}/{file}"
            text = resources.files(package).joinpath(*file.split("/")).read_text(encoding="utf-8")
            return list(parse(read_data_text(text, where, Path(file).suffix, shipped=True), where))

        return cls(kind, load, parse)

    # -- loading
    def _loaded(self) -> tuple[dict[str, T], NameIndex]:
        if self._table is None or self._index is None:
            table: dict[str, T] = {}
            index = NameIndex(self.kind)
            for name, value, aliases in self._load():
                index.add(name, tuple(aliases))
                table[name] = value
            for name, (value, aliases) in self._registered.items():
                if name in table:
                    raise ConfigError(f"registered {self.kind} {name!r} is already in the catalogue")
                try:
                    index.add(name, aliases)
                except ValueError as exc:
                    raise ConfigError(f"registered {self.kind} {name!r}: {exc}") from None
                table[name] = value
            self._table, self._index = table, index
        return self._table, self._index

    def reload(self) -> None:
        """Forget the loaded entries (the next use reads them again)."""
        self._table = self._index = None

    @property
    def loaded(self) -> bool:
        """Whether the entries have been read yet."""
        return self._table is not None

    def table(self) -> dict[str, T]:
        """Canonical name -> entry."""
        return self._loaded()[0]

    def index(self) -> NameIndex:
        """The name index of every entry (canonical names and aliases)."""
        return self._loaded()[1]

    def names(self) -> tuple[str, ...]:
        """Canonical names, in load order."""
        return self.index().names()

    def __contains__(self, name: str) -> bool:
        return name in self.index()

    def resolve(self, name: str) -> str:
        """The canonical name for a loose ``name``; ``UnknownNameError`` with suggestions on a miss."""
        return self.index().resolve(name)

    def get(self, name: str | Path) -> T:
        """The entry for a loose name or, under the path rule, the one entry of a user's file."""
        if is_path(name):
            return self.load_path(name)
        return self.table()[self.resolve(str(name))]

    def load_path(self, path: str | Path) -> T:
        """The one entry of the user's file ``path``, parsed and validated like the shipped files."""
        entries = list(self.parse_path(path))
        if len(entries) != 1:
            names = ", ".join(name for name, _, _ in entries) or "none"
            raise ConfigError(f"{path}: expected exactly one {self.kind}, found {names}")
        return entries[0][1]

    def parse_path(self, path: str | Path) -> list[Entry]:
        """Every entry of the user's file ``path`` (not added to the catalogue)."""
        return list(self._parse(read_data_file(path, self.kind), str(path)))

    # -- plug-ins
    def register(self, name: str, value: T, aliases: Iterable[str] = ()) -> None:
        """Add ``value`` under ``name`` and ``aliases``; a name or alias already taken raises ConfigError."""
        if name in self.table():
            raise ConfigError(f"{self.kind} {name!r} is already in the catalogue")
        self._registered[name] = (value, tuple(aliases))
        self.reload()
        try:
            self._loaded()
        except ConfigError:
            del self._registered[name]
            self.reload()
            raise

    def unregister(self, name: str) -> None:
        """Remove an entry added with :meth:`register`."""
        if name not in self._registered:
            raise UnknownNameError(f"registered {self.kind}", name, sorted(self._registered))
        del self._registered[name]
        self.reload()
