"""Keep numba's on-disk caches honest across modules.

numba (``@njit(cache=True)``) revalidates a cached kernel against its own source file only, so a
kernel in ``deployment.py`` that inlines functions of ``efficiency.py`` keeps running the old compiled
code after ``efficiency.py`` changes. :func:`guard` records a digest of the sources a module's
kernels depend on beside its cache files and deletes those cache files when the digest changes, so
numba recompiles. The module's import name is part of the digest: a cached kernel's pickled
environment names its module, so a cache written under another name (``workloads.operators`` before
the package became ``llmsim.workloads``) fails to load. Call it at import, before any kernel of the
module runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def guard(module_file: str, *dependencies: str, module_name: str | None = None) -> None:
    """Drop ``module_file``'s numba cache files when any of ``dependencies`` (source files), the
    module itself or its import name ``module_name`` (pass ``__name__``) changed since they were
    written; never raises (a read-only install keeps its cache)."""
    src = Path(module_file)
    cache = src.parent / "__pycache__"
    try:
        digest = hashlib.sha256()
        if module_name is not None:
            digest.update(f"module {module_name}\n".encode())
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
