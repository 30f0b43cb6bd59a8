"""Keep numba's on-disk caches honest across modules.

numba (``@njit(cache=True)``) revalidates a cached kernel against its own source file only, so a
kernel in ``deployment.py`` that inlines functions of ``efficiency.py`` keeps running the old compiled
code after ``efficiency.py`` changes. :func:`guard` records a digest of the sources a module's
kernels depend on beside its cache files and deletes those cache files when the digest changes, so
numba recompiles. The module's import name is part of the digest: a cached kernel's pickled
environment names its module, so a cache written under another name (``workloads.operators`` before
the package became ``llmsim.workloads``) fails to load. Call it at import, before any kernel of the
module runs.

:func:`kernel` (imported as ``njit`` by the kernel modules) compiles on demand: see below.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path


def guard(module_file: str, *dependencies: str, module_name: str | None = None) -> None:
    """Drop ``module_file``'s numba cache files when any of ``dependencies`` (source files), the
    module itself or its import name ``module_name`` (pass ``__name__``) changed since they were
    written; never raises (a read-only install keeps its cache)."""
    try:
        from _blake2 import blake2b  # CPython's own; hashlib would load OpenSSL (~5 ms of every start)
    except ImportError:  # pragma: no cover - another interpreter
        from hashlib import blake2b
    src = Path(module_file)
    cache = src.parent / "__pycache__"
    try:
        digest = blake2b()
        if module_name is not None:
            digest.update(f"module {module_name}\n".encode())
        for path in (src, *map(Path, dependencies)):
            digest.update(path.read_bytes())
        stamp = cache / f"{src.stem}.deps-blake2b"
        if stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
            return
        if cache.is_dir():
            for f in cache.glob(f"{src.stem}.*.nb[ic]"):
                f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest() + "\n")
    except OSError:
        return


# --------------------------------------------------------------------------- compile on demand
# A kernel is written once, as numba-compatible Python. ``kernel`` (used as ``njit``) registers it and
# leaves it a plain Python function behind a counting wrapper, so a process that prices a handful
# of iterations never imports numba nor loads its cache. Past ``_PY_CALL_BUDGET`` kernel calls in
# Python (or when Python raises, where compiled code may not: ``math.log(0)``, float overflow),
# every registered kernel is swapped for its ``numba.njit`` dispatcher (cached on disk as before) in
# its module's namespace, so callers and kernels calling kernels all switch at once. Both paths
# run the same IEEE double operations in the same order (no fastmath, no contraction), so results
# are bit-identical; ``tests/hwmodels/test_jit_modes.py`` checks that on real deployments.
# ``LLMSIM_JIT``: ``auto`` (default), ``always`` (compile on the first call), ``never`` (stay Python).
_MODE = os.environ.get("LLMSIM_JIT", "auto").strip().lower()
#: kernel calls run in Python before a process compiles (a 10-request run stays below; a search,
#: a long trace or the test suite passes it within its first second)
_PY_CALL_BUDGET = 20_000
_calls = 0
_compiled = False
_lock = threading.Lock()
_skip_blas_probe = False
_lean_loads = False


def skip_blas_probe() -> None:
    """Let this process's numba start without probing for a BLAS (about 0.2 s: importing
    ``scipy.linalg``). numba's ``arraymath`` probes once, at import, and the result only picks how
    its ``np.correlate``/``np.convolve`` compute inner products; no kernel here uses them, and
    ``np.dot``-like functions still find BLAS when compiled (they import it themselves). For a
    process that runs only llmsim's kernels: the command line calls it."""
    global _skip_blas_probe
    _skip_blas_probe = True


def lean_cache_loads() -> None:
    """Let this process load its cached kernels without numba's full context refresh (about 0.15 s
    of start-up: importing and installing every typing and lowering registry numba has, which only
    compiling needs). numba's ``Cache.load_overload`` refreshes the target context before it rebuilds
    a cached kernel from its machine code; here a load starts the runtime (NRT: the kernels allocate)
    and skips the rest, and any compilation still refreshes the context first (numba's compiler does
    it itself). For a process that runs only llmsim's kernels: the command line calls it. Does
    nothing on a numba without the private names it needs."""
    global _lean_loads
    _lean_loads = True


def _patch_cache_loads() -> None:
    from numba.core import caching
    from numba.core.runtime import nrt

    cache = caching.Cache
    if getattr(cache, "_llmsim_lean", False) or not (
            hasattr(cache, "_load_overload") and hasattr(cache, "_guard_against_spurious_io_errors")
            and hasattr(nrt, "rtsys")):
        return

    def load_overload(self, sig, target_context):
        nrt.rtsys.initialize(target_context)  # the runtime the kernels' allocations call
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    cache.load_overload = load_overload
    cache._llmsim_lean = True


def _import_numba_without_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with ``scipy.linalg.cython_blas`` unimportable for that moment
    (a ``None`` entry in ``sys.modules`` makes the import fail at once), then restore it."""
    name = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or name in sys.modules:
        return
    sys.modules[name] = None
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]
_registry: list["_Kernel"] = []


class _Kernel:
    """A registered kernel while the process runs kernels in Python; forwards to the compiled
    dispatcher once :func:`compile_all` ran."""

    __slots__ = ("py_func", "options", "dispatcher", "name", "module", "__wrapped__")

    def __init__(self, func, options: dict):
        self.py_func = func
        self.options = options
        self.dispatcher = None
        self.name = func.__name__
        self.module = func.__module__
        self.__wrapped__ = func

    def __call__(self, *args, **kwargs):
        global _calls
        d = self.dispatcher
        if d is not None:
            return d(*args, **kwargs)
        _calls += 1
        if _calls > _PY_CALL_BUDGET and _MODE != "never":
            compile_all()
            return self.dispatcher(*args, **kwargs)
        try:
            return self.py_func(*args, **kwargs)
        except (ArithmeticError, ValueError, LookupError, TypeError):
            if _MODE == "never":
                raise
            compile_all()  # what compiled code does where Python raises (inf / nan, coercions): as before
            return self.dispatcher(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<kernel {self.module}.{self.name} ({'compiled' if self.dispatcher else 'Python'})>"


def kernel(func=None, **options):
    """``numba.njit`` on demand (same options); use as ``@kernel(cache=True)`` or ``@kernel``."""
    if func is None:
        return lambda f: kernel(f, **options)
    k = _Kernel(func, options)
    with _lock:
        _registry.append(k)
        done = _compiled
    if done or _MODE == "always":
        compile_all()
        return k.dispatcher  # the module name binds the dispatcher: compiled callers can call it
    return k


def compile_all() -> None:
    """Swap every registered kernel for its numba dispatcher (idempotent, thread-safe)."""
    global _compiled
    with _lock:
        pending = [k for k in _registry if k.dispatcher is None]
        if not pending:
            _compiled = True
            return
        from numba import njit

        if _skip_blas_probe:
            _import_numba_without_blas_probe()
        if _lean_loads:
            _patch_cache_loads()
        for k in pending:
            k.dispatcher = njit(**k.options)(k.py_func)
        for k in pending:  # module names refer to the dispatchers, so compiled callers inline them
            ns = vars(sys.modules[k.module])
            if ns.get(k.name) is k:
                ns[k.name] = k.dispatcher
        _compiled = True


def expect_calls(n: int) -> None:
    """A caller about to make about ``n`` kernel calls: when that passes the Python budget, the next
    call compiles at once instead of first running the budget in Python (about 15 us a call: a
    quarter of a second the run would spend before compiling anyway)."""
    global _calls
    if _MODE == "auto" and n > _PY_CALL_BUDGET and _calls < _PY_CALL_BUDGET:
        _calls = _PY_CALL_BUDGET


def compiled() -> bool:
    """Whether this process runs its kernels compiled."""
    return _compiled
