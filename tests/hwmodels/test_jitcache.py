"""numba caches of a module are dropped when a source its kernels inline changes."""
from __future__ import annotations

from hwmodels.jitcache import guard


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
