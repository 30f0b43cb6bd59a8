"""An ahead-of-time build of the simulator's entry kernels, so a run starts without numba.

A process that runs kernels compiled by numba pays, before its first compiled call, for importing
numba and llvmlite and for loading each kernel from numba's on-disk cache (about 0.3-0.4 s on 2
cores: a tenth of the conversation-hour run). The simulator calls only two kernels from Python,
``_iteration_kernel`` and ``_decode_run_kernel`` of ``hwmodels/deployment.py`` (every other kernel is
inlined into them), so those two are built once into a CPython extension module with numba's
ahead-of-time compiler (``numba.pycc``), which later processes import in about a millisecond,
numba not imported at all. Both are the same Python source compiled by the same LLVM without
fast-math, so results are the same bits as numba's (``tests/hwmodels/test_aot.py``).

The module lives beside numba's cache (``hwmodels/__pycache__``) under a name that digests the
kernels' sources (the stamp ``jitcache.guard`` keeps), this file, numba's version, the Python build
and the machine: any change gives a new name, so a stale build is never loaded. An extension
function does not check its arguments' types (a wrong dtype or a strided array reads the wrong
memory), so the deployment hands it only arrays it checked (:func:`array_kinds`, ``c_array``) and
calls the numba kernel otherwise.

    python -m llmsim.hwmodels.aot            # build now (about 10-30 s), unless built
    LLMSIM_AOT=0                              # neither load nor build

``simulate`` builds it in a detached background process after a run that compiled its kernels
with numba and found no build (``LLMSIM_AOT_BUILD=0`` turns that off; the test suite does).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

#: the kernels built ahead of time: (module, function); called only from Python, never from kernels
ENTRIES = (("llmsim.hwmodels.deployment", "_iteration_kernel"),
           ("llmsim.hwmodels.deployment", "_decode_run_kernel"))
_OFF = ("0", "false", "no", "off")
_ENABLED = os.environ.get("LLMSIM_AOT", "1").strip().lower() not in _OFF
#: a lock older than this is a build that died (seconds)
_STALE_LOCK_S = 600.0

_loaded: dict | None = None  # name -> (function, argument kinds); None until looked for


def _cache_dir() -> Path:
    return Path(__file__).resolve().parent / "__pycache__"


def module_name() -> str | None:
    """The extension module's name for the sources on disk now (once ``hwmodels/deployment.py`` was
    imported: its import refreshes the stamp read here); None when a source is unreadable."""
    try:
        from _blake2 import blake2b  # CPython's own; hashlib would load OpenSSL
    except ImportError:  # pragma: no cover - another interpreter
        from hashlib import blake2b
    digest = blake2b(digest_size=10)
    try:
        stamp = _cache_dir() / "deployment.deps-blake2b"  # deployment.py and what it inlines (jitcache.guard)
        digest.update(stamp.read_bytes())
        digest.update(Path(__file__).read_bytes())
        digest.update(Path(importlib.util.find_spec("llmsim.workloads.jitcache").origin).read_bytes())
        numba_spec = importlib.util.find_spec("numba")
        if numba_spec is None or numba_spec.origin is None:
            return None
        digest.update((Path(numba_spec.origin).parent / "_version.py").read_bytes())
    except OSError:
        return None
    machine = os.uname().machine if hasattr(os, "uname") else sys.platform
    digest.update(f"{sys.version}|{sys.implementation.cache_tag}|{machine}".encode())
    return f"_llmsim_aot_{digest.hexdigest()}"


def _suffix() -> str:
    import importlib.machinery

    return importlib.machinery.EXTENSION_SUFFIXES[0]


def entries() -> dict:
    """``{name: (function, argument kinds)}`` of the built module for today's sources, or ``{}``
    (not built, stale, disabled, or it failed to load); looked for once per process."""
    global _loaded
    if _loaded is not None:
        return _loaded
    _loaded = {}
    if not _ENABLED or os.environ.get("LLMSIM_JIT", "auto").strip().lower() == "never":
        return _loaded
    name = module_name()
    if name is None:
        return _loaded
    path = _cache_dir() / (name + _suffix())
    sig = _cache_dir() / (name + ".sig")
    if not (path.is_file() and sig.is_file()):
        return _loaded
    try:
        kinds = {}
        for line in sig.read_text().splitlines():
            fname, _, rest = line.partition(" ")
            kinds[fname] = tuple(rest.split())
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _loaded = {f: (getattr(mod, f), k) for f, k in kinds.items() if hasattr(mod, f)}
    except Exception:  # noqa: BLE001 - a build that does not load is no build: numba runs as before
        _loaded = {}
    return _loaded


def array_kinds(kinds: tuple[str, ...], args: tuple) -> bool:
    """Whether every argument in ``args`` is what its kind in ``kinds`` names: ``int64[2]`` is a
    C-contiguous 2-d int64 ndarray; scalar kinds (``int64``, ``float64``, ``bool``) accept any number."""
    import numpy as np

    if len(kinds) != len(args):
        return False
    for kind, a in zip(kinds, args):
        if "[" in kind:
            dtype, _, nd = kind.partition("[")
            if not (type(a) is np.ndarray and a.dtype == np.dtype(dtype) and a.ndim == int(nd[:-1])
                    and a.flags.carray):  # C order, aligned, writable
                return False
    return True


def _kind(t) -> str:
    from numba.core import types

    if isinstance(t, types.Array):
        if t.layout != "C" or not t.aligned or not t.mutable:
            raise TypeError(f"an entry kernel takes a {t}: only C-contiguous writable arrays are built")
        return f"{t.dtype}[{t.ndim}]"
    if t in (types.int64, types.float64, types.boolean):
        return "bool" if t == types.boolean else str(t)
    raise TypeError(f"an entry kernel takes a {t}: not built ahead of time")


def _warm_up() -> dict:
    """Compile the entry kernels with numba on one small deployment; ``{name: signature}``."""
    import numpy as np

    from llmsim.workloads import jitcache

    jitcache.compile_all()
    from llmsim.hwmodels.deployment import Deployment

    d = Deployment("llama-3.1-8b", "h100")
    d.iteration(np.array([64], np.int64), np.array([0], np.int64), np.array([100, 200], np.int64))
    d.decode_run_sums(np.array([100, 200], np.int64), 3, 0.0, 0.0)
    sigs = {}
    for module, fname in ENTRIES:
        disp = getattr(sys.modules[module], fname)
        overloads = [v for k, v in disp.overloads.items() if all(_ok(t) for t in k)]
        if len(overloads) != 1:
            raise RuntimeError(f"{fname}: {len(overloads)} C-contiguous signatures after the warm-up, want 1")
        sigs[fname] = (disp.py_func, overloads[0].signature)
    return sigs


def _ok(t) -> bool:
    try:
        _kind(t)
        return True
    except TypeError:
        return False


def build(*, quiet: bool = True) -> Path | None:
    """Build the module for today's sources unless it exists; its path, or None when another
    process is building it. Raises when the build fails (no C compiler, an unsupported numba)."""
    import llmsim.hwmodels.deployment  # noqa: F401 - its import refreshes the sources' stamp (jitcache.guard)

    name = module_name()
    if name is None:
        raise RuntimeError("cannot digest the kernels' sources (is the package installed from a checkout?)")
    cache = _cache_dir()
    target = cache / (name + _suffix())
    sig_file = cache / (name + ".sig")
    if target.is_file() and sig_file.is_file():
        return target
    cache.mkdir(exist_ok=True)
    lock = cache / (name + ".lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            if time.time() - lock.stat().st_mtime < _STALE_LOCK_S:
                return None
            lock.unlink()
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            return None
    os.close(fd)
    try:
        import tempfile
        import warnings

        sigs = _warm_up()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba.pycc announces its deprecation
            from numba.pycc import CC

            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                cc = CC(name)
                cc.output_dir = tmp
                cc.verbose = not quiet
                lines = []
                for fname, (func, signature) in sigs.items():
                    cc.export(fname, signature)(func)
                    lines.append(" ".join([fname, *(_kind(t) for t in signature.args)]))
                if quiet:
                    import io
                    from contextlib import redirect_stderr, redirect_stdout

                    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                        cc.compile()
                else:
                    cc.compile()
                built = Path(tmp) / (name + _suffix())
                sig_tmp = Path(tmp) / (name + ".sig")
                sig_tmp.write_text("\n".join(lines) + "\n")
                os.replace(built, target)
                os.replace(sig_tmp, sig_file)  # written last: the module is complete when this exists
        for old in cache.glob("_llmsim_aot_*"):  # builds for sources that are gone
            if not old.name.startswith(name):
                try:
                    old.unlink()
                except OSError:
                    pass
        return target
    finally:
        try:
            lock.unlink()
        except OSError:
            pass


def build_in_background() -> None:
    """After a run that compiled its kernels with numba: build the module in a detached process,
    when it is missing, allowed and nobody builds it; never raises, never waits."""
    if not _ENABLED or os.environ.get("LLMSIM_AOT_BUILD", "1").strip().lower() in _OFF or entries():
        return
    try:
        name = module_name()
        if name is None or (_cache_dir() / (name + ".lock")).exists() or (_cache_dir() / (name + ".failed")).exists():
            return
        code = ("import os; os.nice(10)\n"
                "from llmsim.hwmodels import aot\n"
                "try:\n    aot.build()\n"
                "except Exception as e:\n"
                f"    aot._cache_dir().joinpath({name!r} + '.failed').write_text(repr(e) + '\\n')\n")
        import subprocess

        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except Exception:  # noqa: BLE001 - an optimisation for later processes; this one has its answer
        return


def ensure() -> str:
    """Build now unless built (benchmarks call it before timing); says which kernels runs will use."""
    try:
        path = build(quiet=True)
    except Exception as e:  # noqa: BLE001
        return f"numba (no ahead-of-time build: {type(e).__name__}: {e})"
    if path is None:
        return "numba (another process is building the ahead-of-time kernels)"
    return f"ahead-of-time ({path.name}, hwmodels/aot.py)"


def main(argv: list[str] | None = None) -> int:
    """Build now unless built (silent then); 0 when the module is ready or another process builds it."""
    import llmsim.hwmodels.deployment  # noqa: F401 - refreshes the stamp module_name reads

    t0 = time.perf_counter()
    name = module_name()
    if name is not None and (_cache_dir() / (name + ".sig")).is_file():
        return 0
    try:
        path = build(quiet=True)
    except Exception as e:  # noqa: BLE001
        print(f"aot: not built ({type(e).__name__}: {e}); runs compile with numba as before", file=sys.stderr)
        return 1
    if path is None:
        print("aot: another process is building it", file=sys.stderr)
        return 0
    print(f"aot: {path.name} ready ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
