"""The ahead-of-time build of the entry kernels (hwmodels/aot.py) gives the same bits as numba's
kernels, and a run that uses it neither imports numba nor changes its output.

The build (about 10-30 s once per checkout and source change) runs in a subprocess, as
``python -m llmsim.hwmodels.aot`` does; it lands in ``hwmodels/__pycache__`` where every later
process finds it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from test_jit_modes import SCRIPT as PRICES  # tests/hwmodels is on sys.path (pytest's rootdir-relative import)

FLAGS = r'''
import sys
from llmsim.hwmodels import aot
print(sorted(aot.entries()), "numba" in sys.modules)
'''

# arrays the extension functions must not be handed: strided, another dtype, read-only
GUARDS = r'''
import numpy as np
from llmsim.hwmodels.deployment import Deployment
d = Deployment("llama-2-70b", "h100", tp=8)
ctx = np.arange(200, 4200, 50, dtype=np.int64)
base = d.decode_run_sums(ctx[::2].copy(), 6, 1.0, 2.0)
ro = ctx[::2].copy()
ro.flags.writeable = False
for c in (ctx[::2], ctx[::2].astype(np.int32), ro, ctx[::2].copy()):
    got = d.decode_run_sums(np.asarray(c), 6, 1.0, 2.0)
    print(repr(got[0].tolist()) == repr(base[0].tolist()), repr(got[1].tolist()) == repr(base[1].tolist()))
ends, spent = np.empty(20), np.empty(20)
d.decode_run_into(ctx[::2], 6, 1.0, 2.0, ends, spent, 0, 0)  # strided contexts: numba's kernel
print(repr(ends[:6].tolist()) == repr(base[0].tolist()))
# replicas sharing a deployment alternate their buffer pairs; a pair whose times buffer was seen with
# another energies buffer is checked again (a strided one goes to numba's kernel)
pairs = [(np.empty(20), np.empty(20)), (np.empty(20), np.empty(20))]
pairs.append((pairs[0][0], np.empty(40)[::2]))
ok = True
for times, energies in pairs + pairs:
    times[:] = 0.0
    d.decode_run_into(ctx[::2].copy(), 6, 1.0, 2.0, times, energies, 0, 0)
    ok &= repr(times[:6].tolist()) == repr(base[0].tolist()) and repr(energies[:6].tolist()) == repr(base[1].tolist())
print(ok)
lens = np.array([300, 5, 2000], np.int64)
print(repr(d.iteration(lens, [0, 7, 0], ro)) == repr(d.iteration(lens, [0, 7, 0], ro.copy())))
print(repr(d.iteration(lens[::2], [0, 0], ctx[::3])) == repr(d.iteration(lens[::2].copy(), [0, 0], ctx[::3].copy())))
'''


def _python(code: str, **env) -> list[str]:
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.splitlines()


@pytest.fixture(scope="module")
def built():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: runs compile with numba (hwmodels/aot.py falls back)")
    res = subprocess.run([sys.executable, "-m", "llmsim.hwmodels.aot"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return True


@pytest.mark.slow
def test_ahead_of_time_kernels_price_to_numbas_bit(built):
    numba_run = _python(PRICES, LLMSIM_JIT="always", LLMSIM_AOT="0")
    aot_run = _python(PRICES + FLAGS, LLMSIM_JIT="auto")
    assert numba_run[0] == "True"  # compiled by numba
    assert aot_run[0] == "False"  # numba never compiled: the deployments' kernels ran ahead of time...
    assert aot_run[2] == "['_decode_run_kernel', '_iteration_kernel'] False"  # ...and numba was not imported
    assert len(numba_run[1]) > 1000
    assert aot_run[1] == numba_run[1]


@pytest.mark.slow
def test_arrays_the_built_kernels_cannot_take_go_to_numbas(built):
    out = _python(GUARDS)
    assert out == ["True True"] * 4 + ["True"] * 4


@pytest.mark.slow
def test_a_run_with_the_build_prints_what_it_prints_without(built):
    cmd = [sys.executable, "-m", "llmsim.cli", "run", "--model", "llama-3.1-8b", "--device", "h100", "--dp", "2",
           "--workload", "azure-conv", "--num-requests", "300", "--json"]
    with_build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    without = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, LLMSIM_AOT="0"))
    assert with_build.returncode == 0 and without.returncode == 0, with_build.stderr[-2000:] + without.stderr[-2000:]
    assert len(with_build.stdout) > 500
    assert with_build.stdout == without.stdout
