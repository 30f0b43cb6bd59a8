"""decode_run keeps the context-free operators' prices per batch size (hwmodels/deployment.py
``_decode_run_kernel``): later runs of the same size, and sizes that grow the table, still price every
step exactly as the step-by-step query."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.hwmodels.deployment import Deployment

E = np.zeros(0, np.int64)


@pytest.mark.parametrize("engine", ["kernels", "vllm-0.2", "vllm"])
def test_decode_runs_reusing_the_size_table_equal_the_iterations(engine):
    dep = Deployment("llama-3.1-8b", "h100", tp=2, engine=engine)
    rng = np.random.default_rng(3)
    sizes = [7, 7, 600, 7, 600, 1]  # 600: past the first table and the largest CUDA graph
    for n in sizes:
        ctx = rng.integers(1, 4000, n).astype(np.int64)
        t, e = dep.decode_run(ctx, 4)
        assert [dep.iteration(E, E, ctx + k) for k in range(4)] == list(zip(t.tolist(), e.tolist()))
    assert dep._by_size_have[7] and dep._by_size_have[600]


@pytest.mark.parametrize("rows", [4, 1 << 16])
def test_remembered_decode_attention_prices_equal_fresh_ones(rows):
    """decode_run remembers decode attention by shape (``_attn_memo_row``); a tiny table forces rows to be
    replaced, so hits, misses and replaced rows all price every step exactly as the step-by-step query."""
    dep = Deployment("llama-2-70b", "h100", tp=8, engine="vllm")
    dep.decode_run(np.array([5], np.int64), 1)  # allocates the table
    dep._attn_memo = np.full((rows, 7), -1.0)
    rng = np.random.default_rng(5)
    base = rng.integers(1, 3000, 6).astype(np.int64)
    for ctx in (base, base, base + 1, base[:3], base[::-1].copy(), base + 7, base):
        t, e = dep.decode_run(ctx, 9)
        assert [dep.iteration(E, E, ctx + k) for k in range(9)] == list(zip(t.tolist(), e.tolist()))
    assert (dep._attn_memo[:, 0] >= 0).any()


@pytest.mark.parametrize("kw", [dict(model="llama-3.1-8b", tp=2), dict(model="mixtral-8x7b", tp=1, dp_ep=2)])
def test_decode_run_sums_are_the_running_sums_of_decode_run(kw):
    """``decode_run_sums`` gives the bits of ``np.add.accumulate`` over the start and ``decode_run``'s steps."""
    model = kw.pop("model")
    dep = Deployment(model, "h100", engine="vllm", **kw)
    ctx = np.random.default_rng(9).integers(1, 5000, 23).astype(np.int64)
    t, e = dep.decode_run(ctx, 11)
    ends, spent = dep.decode_run_sums(ctx, 11, 12.5, 3.0e4)
    assert ends.tolist() == np.add.accumulate(np.concatenate(([12.5], t)))[1:].tolist()
    assert spent.tolist() == np.add.accumulate(np.concatenate(([3.0e4], e)))[1:].tolist()
