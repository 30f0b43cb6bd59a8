"""Strict YAML for catalogues and configs: duplicate keys, unknown keys and missing keys are errors.

One loader for every data file the project reads (devices, formats, engines, run configs), so a
typo in any of them fails the same way: a ``ConfigError`` naming the file, the key and the fix.
"""
from __future__ import annotations

import difflib
import marshal
import os
import sys
from pathlib import Path
from typing import Any

from llmsim.workloads.errors import ConfigError

#: the float spelling YAML 1.2 allows and PyYAML's 1.1 resolver does not ('1e12', '989.4e12')
_FLOAT = (r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
          r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_loaders: tuple | None = None


def _construct_mapping(loader, node, deep: bool = False) -> dict:
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


def _build_loaders() -> tuple:
    """(yaml, StrictLoader, the same on libyaml's parser), built on first use: importing PyYAML
    costs a run's start-up ~15 ms, and a run whose data files are all in the parse cache needs none."""
    global _loaders
    if _loaders is None:
        import re

        import yaml

        class StrictLoader(yaml.SafeLoader):
            """SafeLoader that rejects duplicate keys and reads '1e12' / '989.4e12' as floats (YAML 1.2)."""

        StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_FLOAT), list("-+0123456789."))

        class FastStrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            """StrictLoader on libyaml's parser (ten times faster); its errors are re-raised by StrictLoader."""

        FastStrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        FastStrictLoader.yaml_implicit_resolvers = StrictLoader.yaml_implicit_resolvers
        _loaders = (yaml, StrictLoader, FastStrictLoader)
    return _loaders


def __getattr__(name: str):
    if name == "StrictLoader":
        return _build_loaders()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parse(text: str, where: str) -> Any:
    yaml, strict, fast = _build_loaders()
    try:
        return yaml.load(text, Loader=fast)  # noqa: S506 - a SafeLoader subclass
    except (ConfigError, yaml.YAMLError):
        pass  # the pure-Python parser words the error (same results on valid YAML, fuller messages)
    try:
        return yaml.load(text, Loader=strict)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


# --------------------------------------------------------------------------- parse cache
# The package's own data files (devices, engines, formats, ...) parse to the same objects on every
# start. ``read_yaml(text, where, shipped=True)`` keeps each parse, marshalled, beside the text it came
# from in one file under this package's ``__pycache__`` (as bytecode is kept); a later process whose
# text is the same, character for character, unmarshals the objects instead of parsing. The file is
# keyed by the Python version (marshal's format), this module's source and PyYAML's (size and mtime,
# as bytecode is), so a change to either parses again. ``LLMSIM_DATA_CACHE=0`` parses always (this
# cache and the bundled traces' in workloads/traces.py); a read-only install simply parses.
DATA_CACHE_ON = os.environ.get("LLMSIM_DATA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")
_CACHE_FILE = Path(__file__).resolve().parent / "__pycache__" / f"yamlio-parsed.{sys.implementation.cache_tag}.marshal"
_cache: dict | None = None
_cache_key: tuple | None = None


def _source_key() -> tuple:
    import importlib.util

    key = []
    for origin in (__file__, getattr(importlib.util.find_spec("yaml"), "origin", None)):
        try:
            st = os.stat(origin)
            key.append((str(origin), st.st_size, st.st_mtime_ns))
        except (OSError, TypeError):
            key.append((str(origin), -1, -1))
    return tuple(key)


def _cached() -> dict:
    global _cache, _cache_key
    if _cache is None:
        _cache_key = _source_key()
        _cache = {}
        try:
            with open(_CACHE_FILE, "rb") as f:
                key, entries = marshal.load(f)
            if key == _cache_key and isinstance(entries, dict):
                _cache = entries
        except (OSError, EOFError, ValueError, TypeError):
            pass
    return _cache


def _store(where: str, text: str, data: Any) -> None:
    try:
        blob = marshal.dumps(data)
    except ValueError:  # a type marshal does not keep (dates): this file is parsed every time
        return
    entries = _cached()
    entries[where] = (text, blob)
    tmp = _CACHE_FILE.with_name(f"{_CACHE_FILE.name}.{os.getpid()}.tmp")
    try:
        _CACHE_FILE.parent.mkdir(exist_ok=True)
        with open(tmp, "wb") as f:
            marshal.dump((_cache_key, entries), f)
        os.replace(tmp, _CACHE_FILE)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def read_yaml(text: str, where: str, shipped: bool = False) -> Any:
    """Parse ``text`` strictly; errors name ``where`` (a file name). ``shipped``: ``text`` is a
    package data file read on every start, whose parse may be kept (see above)."""
    if not (shipped and DATA_CACHE_ON):
        return _parse(text, where)
    hit = _cached().get(where)
    if hit is not None and hit[0] == text:
        return marshal.loads(hit[1])
    data = _parse(text, where)
    _store(where, text, data)
    return data


def check_fields(data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """The mapping ``data`` checked for unknown keys (with the closest allowed one) and missing keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = (*required, *optional)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    return data
