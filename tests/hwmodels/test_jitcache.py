"""numba caches of a module are dropped when a source its kernels inline changes."""
from __future__ import annotations

from llmsim.workloads.jitcache import guard


def test_cache_files_are_dropped_when_a_dependency_changes(tmp_path):
    mod, dep = tmp_path / "kern.py", tmp_path / "dep.py"
    mod.write_text("x = 1\n")
    dep.write_text("y = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    index = cache / "kern.f-10.py311.nbi"
    index.write_text("compiled")
    guard(str(mod), str(dep))  # first sight: no stamp, the cache cannot be trusted
    assert not index.exists()
    index.write_text("compiled")
    guard(str(mod), str(dep))  # unchanged sources: kept
    assert index.exists()
    dep.write_text("y = 2\n")
    guard(str(mod), str(dep))
    assert not index.exists()
    other = cache / "other.f-1.py311.nbi"  # another module's cache is not touched
    other.write_text("compiled")
    dep.write_text("y = 3\n")
    guard(str(mod), str(dep))
    assert other.exists()


def test_cache_files_are_dropped_when_the_import_name_changes(tmp_path):
    # a cached kernel's pickled environment names its module: `workloads.operators` caches cannot load
    # as `llmsim.workloads.operators`
    mod = tmp_path / "kern.py"
    mod.write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    index = cache / "kern.f-10.py311.nbi"
    guard(str(mod), module_name="workloads.kern")
    index.write_text("compiled")
    guard(str(mod), module_name="workloads.kern")
    assert index.exists()
    guard(str(mod), module_name="llmsim.workloads.kern")
    assert not index.exists()


def test_every_module_with_cached_kernels_is_guarded():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder in ("sim", "hwmodels", "workloads", "search", "validation"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "cache=True" in text and path.name != "jitcache.py":
                assert "jitcache.guard(__file__" in text and "module_name=__name__" in text, path
