"""The cost kernels give the same bits run as Python and compiled by numba (workloads/jitcache.py).

One script prices iterations, decode runs and feature rows on varied deployments (dense, GQA,
sliding window, MoE with expert parallelism, weight quantisation, pipeline stages, shapes beyond the
fitted range) and prints every float with ``repr``; it runs once with ``LLMSIM_JIT=never`` and once
with ``LLMSIM_JIT=always``, and the outputs must be equal character for character.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import numpy as np
from llmsim.workloads import jitcache
from llmsim.hwmodels.deployment import Deployment
from llmsim.hwmodels import efficiency as eff

rng = np.random.default_rng(7)
deps = [Deployment("llama-2-70b", "h100", tp=8, engine="vllm"),
        Deployment("llama-3.1-8b", "a100", tp=1, engine="kernels", quant="w4a16"),
        Deployment("mistral-7b", "h100", tp=2, engine="vllm-0.2"),
        Deployment("mixtral-8x7b", "h100", tp=1, engine="vllm", dp_ep=2),
        Deployment("llama-3.1-70b", "h100", tp=4, pp=2, engine="vllm"),
        Deployment("gemma-3-4b", "rtx-4090", tp=1, engine="vllm")]
out = []
for d in deps:
    for _ in range(3):
        n_p = int(rng.integers(0, 4))
        lens = rng.integers(1, 12000, n_p)
        offs = rng.integers(0, 3000, n_p)
        ctx = rng.integers(1, 200000, int(rng.integers(0, 64)))
        out.append(d.iteration(lens, offs, ctx))
    t, e = d.decode_run(rng.integers(1, 5000, 37), 5)
    out += list(zip(t.tolist(), e.tolist()))
for cls, ncol in ((0, 5), (1, 9), (2, 8), (3, 9), (4, 3), (5, 4)):
    shapes = rng.uniform(1.0, 5000.0, (6, ncol)).round()
    if cls in (4, 5):
        shapes[:, 0] = rng.integers(0, 5, 6)
    dev = np.array([989e12, 3.35e12, 132.0, 450e9])
    X, base = eff.features(cls, shapes, dev, max(eff.NUM_FEATURES.values()))
    out += X.ravel().tolist() + base.tolist()
print(jitcache.compiled())
print(repr(out))
'''


def _run(mode: str) -> list[str]:
    env = dict(os.environ, LLMSIM_JIT=mode, LLMSIM_AOT="0")  # numba's kernels, not their ahead-of-time build
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.splitlines()


@pytest.mark.slow
def test_python_and_compiled_kernels_agree_to_the_bit():
    py = _run("never")
    jit = _run("always")
    assert py[0] == "False" and jit[0] == "True"
    assert len(py[1]) > 1000
    assert py[1] == jit[1]
