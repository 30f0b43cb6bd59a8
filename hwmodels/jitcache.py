"""Keep numba's on-disk caches honest across modules.

numba (``@njit(cache=True)``) revalidates a cached kernel against its own source file only, so a
kernel in ``deployment.py`` that inlines functions of ``efficiency.py`` keeps running the old compiled
code after ``efficiency.py`` changes. :func:`guard` records a digest of the sources a module's
kernels depend on beside its cache files and deletes those cache files when the digest changes, so
numba recompiles. Call it at import, before any kernel of the module runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def guard(module_file: str, *dependencies: str) -> None:
    """Drop ``module_file``'s numba cache files when any of ``dependencies`` (source files) or the
    module itself changed since they were written; never raises (a read-only install keeps its cache)."""
    src = Path(module_file)
    cache = src.parent / "__pycache__"
    try:
        digest = hashlib.sha256()
        for path in (src, *map(Path, dependencies)):
            digest.update(path.read_bytes())
        stamp = cache / f"{src.stem}.deps-sha256"
        if stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
            return
        if cache.is_dir():
            for f in cache.glob(f"{src.stem}.*.nb[ic]"):
                f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest() + "\n")
    except OSError:
        return
