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
@pytest.mark.parametrize("cols", [7, 9])
def test_remembered_decode_attention_prices_equal_fresh_ones(rows, cols):
    """decode_run remembers decode attention by shape (``_attn_memo_row``); a tiny table forces rows to be
    replaced, so hits, misses and replaced rows all price every step exactly as the step-by-step query.
    With 9 columns a row also keeps the step's summed seconds and joules (one decode-attention operator)."""
    dep = Deployment("llama-2-70b", "h100", tp=8, engine="vllm")
    dep.decode_run(np.array([5], np.int64), 1)  # allocates the table
    dep._attn_memo = np.full((rows, cols), -1.0)
    dep._run_args = None  # the kept kernel arguments hold the table
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


@pytest.mark.parametrize("kw", [dict(model="llama-3.1-8b", tp=2, engine="vllm"),
                                dict(model="mixtral-8x7b", tp=2, engine="kernels"),
                                dict(model="llama-2-70b", tp=8, engine="vllm-0.2")])
def test_remembered_row_prices_equal_fresh_ones(kw):
    """``iteration`` remembers the row-count operators' prices by rows (``_iteration_kernel``
    ``by_rows``); mixed batches, repeated row counts and counts past the table price exactly as a
    deployment that remembers nothing."""
    model = kw.pop("model")
    warm = Deployment(model, "h100", **kw)
    fresh = Deployment(model, "h100", **kw)
    fresh.iteration(E, E, np.array([1], np.int64))
    n_ops = fresh._cls.size
    fresh._by_rows, fresh._by_rows_have = np.zeros((0, n_ops, 2)), np.zeros((0, n_ops), np.uint8)
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(40):
        p = rng.integers(1, 3000, rng.integers(0, 3)).astype(np.int64)
        batches.append((p, rng.integers(0, 500, p.size).astype(np.int64),
                        rng.integers(1, 4000, rng.integers(0 if p.size else 1, 40)).astype(np.int64)))
    batches += batches[:10] + [(np.array([9000], np.int64), np.array([0], np.int64), E)]
    for p, o, d in batches:
        assert warm.iteration(p, o, d) == fresh.iteration(p, o, d)
        assert warm.cost(p, o, d) == fresh.cost(p, o, d)
    assert warm._by_rows_have.any() and fresh._by_rows_have.size == 0


@pytest.mark.parametrize("kw", [dict(model="llama-3.1-8b", kv_dtype="fp8"),  # integer KV bytes
                                dict(model="mistral-7b"),  # a 4096-token sliding window
                                dict(model="gemma-3-4b"),  # local and global attention: two operators
                                dict(model="llama-3.1-8b", kv_dtype="int4"),  # 0.5625 B: sums afresh
                                dict(model="llama-3.1-8b", kv_dtype="int8"),  # 1.03125 B: sums afresh
                                dict(model="llama-2-70b", tp=8)])
def test_decode_runs_that_add_attention_work_per_step_equal_the_step_by_step_query(kw):
    """Where a run's decode-attention work sums are exact (``_attn_step_work``) each step adds to them
    instead of summing afresh; runs that reach the window, or whose KV bytes make the sums inexact, sum
    afresh. Either way every step is priced as the step-by-step query prices it."""
    model = kw.pop("model")
    dep = Deployment(model, "h100", engine="vllm", **kw)
    rng = np.random.default_rng(11)
    for ctx in (rng.integers(1, 3000, 17), np.array([4080, 10, 4090]), rng.integers(1, 200, 40),
                np.array([4095, 4096, 4097])):
        ctx = ctx.astype(np.int64)
        t, e = dep.decode_run(ctx, 12)
        assert [dep.iteration(E, E, ctx + k) for k in range(12)] == list(zip(t.tolist(), e.tolist()))


@pytest.mark.parametrize("model,tp", [("llama-3.1-8b", 1), ("qwen3-30b-a3b", 2), ("llama-2-70b", 8)])
def test_packed_op_tables_unpack_to_the_deployments_tables(model, tp):
    """decode_run hands its kernel the op tables packed in two buffers (``_pack_run_tables``); the
    kernel's views of them (``_run_tables``) are the deployment's tables, element for element, and a
    run through them prices every step as the step-by-step query (which reads the unpacked tables)."""
    from llmsim.hwmodels import deployment as dm

    dep = Deployment(model, "h100", tp=tp, engine="vllm")
    fpack, ipack = dm._pack_run_tables(dep._cls, dep._kind, dep._par, dep._mult, dep._theta, dep._nfeat, dep._floor,
                                       dep._dev, dep._power, dep._net, dep._nnet, dep._range)
    views = dm._run_tables.py_func(fpack, ipack)
    names = ("cls", "kind", "par", "mult", "theta", "nfeat", "floor", "dev", "power", "net", "nnet")
    for name, view in zip(names, views[:11]):
        table = getattr(dep, "_" + name)
        assert view.shape == table.shape and view.dtype == table.dtype and np.array_equal(view, table), name
    assert np.array_equal(views[13], dep._range)
    scratch, shape, op_time, tab = views[11], views[12], views[14], views[15]
    assert scratch.size == dep._scratch.size and shape.size == dep._shape.size
    assert op_time.size == len(dep.op_names) and tab.shape == (len(dep.op_names), 7)
    assert fpack.size == sum(len(dep.op_names) * per + fixed for _, per, fixed in dm._RUN_FLOAT_TABLES)
    with pytest.raises(ValueError, match="op table theta"):
        dm._pack_run_tables(dep._cls, dep._kind, dep._par, dep._mult, dep._theta[:, :-1], dep._nfeat, dep._floor,
                            dep._dev, dep._power, dep._net, dep._nnet, dep._range)
    ctx = np.arange(100, 3100, 97, dtype=np.int64)
    t, e = dep.decode_run(ctx, 5)
    assert [dep.iteration(E, E, ctx + k) for k in range(5)] == list(zip(t.tolist(), e.tolist()))
