"""The import contract between the packages, checked on the source (every ``import``, also those inside
functions and ``if TYPE_CHECKING:`` blocks, and ``importlib.import_module("...")`` with a literal name).

Layers, bottom-up: ``llmsim.workloads`` <- ``llmsim.hwmodels`` <- ``llmsim.sim`` <- ``llmsim.search``
(a package may import its own modules and the layers below it, never one above). ``llmsim.validation``
may import all four. ``llmsim.validation`` itself is imported only by the front door (``llmsim``:
``api`` and the command line, the ``llmsim.cli`` package); the command line is an entry point that
library code does not import. Nothing below the front door imports ``llmsim.api`` or
``llmsim.cli`` or its modules (the bare namespace ``llmsim`` is fine: it imports nothing). The folders' bare names
(``import sim``) are never imported: they are not packages once installed.

Exceptions would be listed in ``ALLOWED``, each with why; they are debt to pay off, not precedent:
a new violation fails :func:`test_the_packages_keep_their_layers`, and a listed one that is gone fails
:func:`test_the_allow_list_has_no_stale_entries` (delete its line).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> the package it installs as (pyproject.toml's package-dir)
FOLDERS = {"llmsim": "llmsim", "workloads": "llmsim.workloads", "hwmodels": "llmsim.hwmodels",
           "sim": "llmsim.sim", "search": "llmsim.search", "validation": "llmsim.validation"}
BARE = frozenset(FOLDERS) - {"llmsim"}
#: rank of each layer: a module may import packages of its own rank or lower
RANK = {"llmsim.workloads": 0, "llmsim.hwmodels": 1, "llmsim.sim": 2, "llmsim.search": 3,
        "llmsim.validation": 4, "llmsim": 5}
#: the command line: this package and its modules, imported by the front door only, never by library code
COMMAND_LINE = "llmsim.cli"

#: (importer module, imported module): existing violations, each with its reason
ALLOWED: dict[tuple[str, str], str] = {}


def project_modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    mods = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            mods[".".join((pkg, *parts))] = path
    return mods


#: the modules that are packages (an ``__init__.py``): relative imports resolve inside them
PACKAGES = frozenset(m for m, p in project_modules().items() if p.name == "__init__.py")


def imports_of(source: str, module: str, known: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in ``source`` (of module ``module``), anywhere in
    it: top level, functions, conditional blocks. ``from P import x`` names ``P.x`` when that is a
    module in ``known``, else ``P``; relative imports are resolved against ``module``."""
    tree = ast.parse(source)
    package = module if module in PACKAGES or module.endswith(".__init__") else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full if full in known else base, node.lineno))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__"):
                out.append((node.args[0].value, node.lineno))
    return out


def _is_command_line(name: str) -> bool:
    return name == COMMAND_LINE or name.startswith(COMMAND_LINE + ".")


def _package_of(name: str) -> str | None:
    """The layer a dotted module name belongs to (``llmsim.sim.cli`` -> ``llmsim.sim``), None outside."""
    parts = name.split(".")
    if parts[0] != "llmsim":
        return None
    if len(parts) > 1 and f"llmsim.{parts[1]}" in RANK:
        return f"llmsim.{parts[1]}"
    return "llmsim"


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` under the contract, or None when it may."""
    if imported.split(".")[0] in BARE:
        return f"bare folder name {imported!r}: import llmsim.{imported}"
    src, dst = _package_of(importer), _package_of(imported)
    if dst is None or src is None or imported == "llmsim":
        return None
    if _is_command_line(imported) and src != "llmsim":
        return f"{importer} imports the command line {imported}: only the front door does"
    if dst == "llmsim.validation" and src not in ("llmsim", "llmsim.validation"):
        return f"{importer} imports {imported}: only the front door and the command lines import llmsim.validation"
    if RANK[dst] > RANK[src]:
        return f"{importer} ({src}) imports {imported} from the higher layer {dst}"
    return None


def check(sources: dict[str, str]) -> list[tuple[str, str, int, str]]:
    """``(importer, imported, line, why)`` for each import of ``sources`` (module name -> source text)
    that breaks the contract, allow-list not applied."""
    known = set(project_modules()) | set(sources)
    found = []
    for module, text in sources.items():
        for imported, line in imports_of(text, module, known):
            why = violation(module, imported)
            if why:
                found.append((module, imported, line, why))
    return found


def _current() -> list[tuple[str, str, int, str]]:
    return check({m: p.read_text(encoding="utf-8") for m, p in project_modules().items()})


def test_every_folder_is_a_package():
    mods = project_modules()
    for pkg in FOLDERS.values():
        assert pkg in mods, pkg
    assert len(mods) > 50


def test_the_packages_keep_their_layers():
    new = [f"{m}:{line} {why}" for m, imported, line, why in _current() if (m, imported) not in ALLOWED]
    assert not new, "\n".join(new)


def test_the_allow_list_has_no_stale_entries():
    seen = {(m, imported) for m, imported, _, _ in _current()}
    stale = [pair for pair in ALLOWED if pair not in seen]
    assert not stale, stale


def test_tests_and_benchmarks_import_the_package_by_its_name():
    bad = []
    for folder in ("tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for imported, line in imports_of(path.read_text(encoding="utf-8"), path.stem):
                if imported.split(".")[0] in BARE:
                    bad.append(f"{path.relative_to(ROOT)}:{line} {imported}")
    assert not bad, bad


PLANTED = '''
"""A workloads module that reaches up."""
from __future__ import annotations

import numpy as np
from llmsim.workloads.errors import ConfigError


def price(x):
    if x:
        from llmsim.hwmodels.devices import get_device  # function-local: still counted
    return np


class K:
    def m(self):
        import importlib
        return importlib.import_module("llmsim.validation.loaders")
'''


@pytest.mark.parametrize("module, source, expected", [
    ("llmsim.workloads.planted", PLANTED,
     {("llmsim.hwmodels.devices", "higher layer"), ("llmsim.validation.loaders", "only the front door")}),
    ("llmsim.sim.planted", "from llmsim.search import partition\n", {("llmsim.search.partition", "higher layer")}),
    ("llmsim.search.planted", "from ..validation import loaders\n", {("llmsim.validation.loaders", "only the front door")}),
    ("llmsim.hwmodels.planted", "import sim.cli\n", {("sim.cli", "bare folder name")}),
    ("llmsim.hwmodels.planted", "from llmsim import api\n", {("llmsim.api", "higher layer")}),
    ("llmsim.validation.planted", "from llmsim.search import partition\nfrom . import loaders\nimport llmsim\n", set()),
    ("llmsim.cli.validate", "from llmsim.validation import serving\nfrom llmsim.cli import run\n", set()),
    ("llmsim.sim.planted", "from llmsim.validation import serving\n",
     {("llmsim.validation.serving", "only the front door")}),
    ("llmsim.validation.planted", "from llmsim.cli.run import run_config\n", {("llmsim.cli.run", "the command line")}),
    ("llmsim.api", "from llmsim.validation import serving\nfrom llmsim.sim.runner import run\n", set()),
])
def test_a_planted_violation_is_caught(module, source, expected):
    found = check({module: source})
    got = {(imported, why) for m, imported, _, why in found}
    assert {i for i, _ in got} == {i for i, _ in expected}, found
    for imported, fragment in expected:
        assert any(i == imported and fragment in why for i, why in got), (imported, fragment, found)


def test_optional_dependencies_fail_with_the_extra_to_install(monkeypatch):
    import builtins

    from llmsim.workloads.errors import ConfigError
    from llmsim.workloads.extras import require

    real = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name.split(".")[0] in ("plotly", "scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name: blocked(name))
    with pytest.raises(ConfigError, match=r"needs plotly: pip install 'llmsim\[report\]'"):
        require("plotly.graph_objects", "the HTML report")
    with pytest.raises(ConfigError, match=r"needs scipy: pip install 'llmsim\[calibrate\]'"):
        require("scipy.optimize", "fitting")


def test_declared_dependencies_are_imported():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = {"pyyaml": "yaml"}
    src = "\n".join(p.read_text() for d in ("llmsim", "sim", "hwmodels", "workloads", "search", "validation")
                    for p in (root / d).rglob("*.py"))
    for dep in meta["dependencies"]:
        name = re.split(r"[<>=\[ ]", dep, maxsplit=1)[0]
        mod = names.get(name, name)
        assert re.search(rf"^\s*(import|from) {mod}\b", src, re.M), f"{name} is declared but never imported"
    assert "plotly" not in str(meta["dependencies"]) and "scipy" not in str(meta["dependencies"])
