"""Strict YAML for catalogues and configs: duplicate keys, unknown keys and missing keys are errors.

One loader for every data file the project reads (devices, formats, engines, run configs), so a
typo in any of them fails the same way: a ``ConfigError`` naming the file, the key and the fix.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from llmsim.workloads.errors import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads '1e12' / '989.4e12' as floats (YAML 1.2)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


class _FastStrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """StrictLoader on libyaml's parser (ten times faster); its errors are re-raised by StrictLoader."""


_FastStrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_FastStrictLoader.yaml_implicit_resolvers = StrictLoader.yaml_implicit_resolvers


def read_yaml(text: str, where: str) -> Any:
    """Parse ``text`` strictly; errors name ``where`` (a file name)."""
    try:
        return yaml.load(text, Loader=_FastStrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (ConfigError, yaml.YAMLError):
        pass  # the pure-Python parser words the error (same results on valid YAML, fuller messages)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


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
