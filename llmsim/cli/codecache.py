"""The compiled code of dataclasses' generated methods, kept between command-line processes.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ... as source text and
compiles it with ``exec`` when the class is defined; the ~70 dataclasses on a run's path make that
about a fifth of a 10-request ``simulate run`` (parsing ~400 small functions). :func:`install` gives
the ``dataclasses`` module an ``exec`` that compiles each text once and keeps its code object,
marshalled, in ``__pycache__`` beside this module (as bytecode is kept), keyed by the exact text and
the Python build; :func:`save` writes what a process added. The code is what ``exec`` would compile
(same text, file name ``<string>``, no inherited compiler flags), so the classes are the same.
``LLMSIM_DATA_CACHE=0`` turns it off. The command line installs it for its own process only.
"""
from __future__ import annotations

import builtins
import marshal
import os
import sys
from pathlib import Path

_FILE = Path(__file__).resolve().parent / "__pycache__" / f"dataclass-code.{sys.implementation.cache_tag}.marshal"
_codes: dict[str, bytes] | None = None
_added = False


def _load() -> dict[str, bytes]:
    global _codes
    if _codes is None:
        _codes = {}
        try:
            with open(_FILE, "rb") as f:
                version, entries = marshal.load(f)
            if version == sys.version and isinstance(entries, dict):
                _codes = entries
        except (OSError, EOFError, ValueError, TypeError):
            pass
    return _codes


def _exec(source, globals=None, locals=None, /):
    """``exec`` with a string's compiled code kept (see the module docstring)."""
    global _added
    if isinstance(source, str):
        codes = _load()
        blob = codes.get(source)
        if blob is None:
            code = compile(source, "<string>", "exec", dont_inherit=True)
            codes[source] = marshal.dumps(code)
            _added = True
        else:
            code = marshal.loads(blob)
        source = code
    return builtins.exec(source, globals, locals)


def install() -> None:
    """Route ``dataclasses``' ``exec`` through the code cache (idempotent; off with ``LLMSIM_DATA_CACHE=0``)."""
    if os.environ.get("LLMSIM_DATA_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    import dataclasses

    if "_create_fn" in vars(dataclasses):  # the generator this cache fits (CPython 3.11, 3.12)
        dataclasses.exec = _exec


def save() -> None:
    """Write the code objects this process compiled (nothing when none were added or the folder is read-only)."""
    global _added
    if not _added or _codes is None:
        return
    tmp = _FILE.with_name(f"{_FILE.name}.{os.getpid()}.tmp")
    try:
        _FILE.parent.mkdir(exist_ok=True)
        with open(tmp, "wb") as f:
            marshal.dump((sys.version, _codes), f)
        os.replace(tmp, _FILE)
        _added = False
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
