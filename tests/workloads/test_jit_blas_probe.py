"""The command line starts numba without importing scipy.linalg, and numba's BLAS functions still work."""
import json
import os
import subprocess
import sys

SCRIPT = """
import io, json, sys, contextlib
from llmsim.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--workload", "azure-code",
               "--num-requests", "5", "--json"])
probe_skipped = "scipy.linalg" not in sys.modules
import numpy as np
from numba import njit
dot = njit(lambda a, b: np.dot(a, b))(np.arange(3.0), np.arange(3.0))
print(json.dumps({"rc": rc, "probe_skipped": probe_skipped, "dot": float(dot),
                  "ttft": json.loads(buf.getvalue())["ttft_mean_s"]}))
"""


def _run(extra_env):
    env = {**os.environ, "LLMSIM_JIT": "always", **extra_env}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_skips_the_blas_probe_and_numba_dot_still_works():
    got = _run({})
    assert got["rc"] == 0
    assert got["probe_skipped"]
    assert got["dot"] == 5.0


def test_same_result_with_and_without_the_probe():
    from llmsim.workloads import jitcache

    assert hasattr(jitcache, "skip_blas_probe")
    plain = subprocess.run(
        [sys.executable, "-c", "import json,io,contextlib\nimport llmsim.workloads.jitcache as j\n"
         "j.skip_blas_probe = lambda: None\nfrom llmsim.cli import main\nb=io.StringIO()\n"
         "with contextlib.redirect_stdout(b):\n main(['run','--model','llama-3.1-8b','--device','h100','--tp','1',"
         "'--workload','azure-code','--num-requests','5','--json'])\nprint(json.loads(b.getvalue())['ttft_mean_s'])"],
        capture_output=True, text=True, env={**os.environ, "LLMSIM_JIT": "always"}, check=True)
    assert float(plain.stdout.strip().splitlines()[-1]) == _run({})["ttft"]


LEAN = """
import io, json, sys, contextlib
import llmsim.workloads.jitcache as j
if sys.argv[1] == "plain":
    j.lean_cache_loads = lambda: None
from llmsim.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    main(["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--workload", "azure-code",
          "--num-requests", "40", "--json"])
from numba.core import caching
import numpy as np
from numba import njit
fresh = njit(lambda a: np.cumsum(a * 2.0).sum())(np.arange(4.0))  # compiled after lean loads: refreshed then
print(json.dumps({"lean": bool(getattr(caching.Cache, "_llmsim_lean", False)), "fresh": float(fresh),
                  "out": json.loads(buf.getvalue())}))
"""


def test_lean_cache_loads_give_the_same_run_and_compiling_still_works():
    """The command line loads cached kernels without numba's registry refresh
    (``jitcache.lean_cache_loads``); the run is the same as with numba's own loads, and a function
    compiled afterwards in that process works."""
    env = {**os.environ, "LLMSIM_JIT": "always"}
    got = {}
    for mode in ("lean", "plain"):
        out = subprocess.run([sys.executable, "-c", LEAN, mode], capture_output=True, text=True, env=env, check=True)
        got[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["lean"]["lean"] and not got["plain"]["lean"]
    assert got["lean"]["out"] == got["plain"]["out"]
    assert got["lean"]["fresh"] == got["plain"]["fresh"] == 20.0


def test_a_run_that_will_pass_the_python_budget_compiles_at_once():
    """``jitcache.expect_calls``: a run whose requests will make more kernel calls than the Python
    budget compiles at its first call; a tiny one stays in Python (its start-up needs no numba)."""
    code = ("import io, contextlib, json, sys\nfrom llmsim.cli import main\nimport llmsim.workloads.jitcache as j\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            " main(['run', '--num-requests', sys.argv[1], '--json'])\n"
            "print(json.dumps([j._compiled, 'numba' in sys.modules]))")
    env = {**os.environ, "LLMSIM_JIT": "auto", "LLMSIM_AOT": "0"}  # the numba path (hwmodels/aot.py skips it)
    got = {n: json.loads(subprocess.run([sys.executable, "-c", code, n], capture_output=True, text=True, env=env,
                                        check=True).stdout.strip().splitlines()[-1]) for n in ("5", "40")}
    assert got["5"] == [False, False] and got["40"] == [True, True]
