"""Operator work formulas: FLOPs and bytes against hand-derived values and brute force."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.workloads import operators as ops


def test_gemm_work_counts_each_operand_once():
    flops, nbytes = ops.gemm_work(4.0, 4096.0, 8192.0, 2.0, 1.0)
    assert flops == 2 * 4 * 4096 * 8192
    assert nbytes == 4 * 8192 * 2 + 8192 * 4096 * 1 + 4 * 4096 * 2


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(0, 300), st.integers(0, 200))
def test_causal_pairs_match_brute_force(new, ctx, window):
    brute = sum(min(p, window) if window > 0 else p for p in range(ctx + 1, ctx + new + 1))
    assert ops.causal_pairs(new, ctx, window) == brute


def test_decode_attention_reads_the_whole_kv_of_each_request():
    # Llama-2-70B on TP8: 8 query heads, 1 KV head of 128 per GPU, bf16 cache, 4096 cached tokens
    flops, nbytes = ops.attention_decode_work(32.0, 4096.0, 8.0, 1.0, 128.0, 128.0, 2.0, 0)
    kv = 32 * 4096 * 1 * 256 * 2
    assert kv < nbytes < kv * 1.01
    assert flops == 32 * 2 * 8 * 4096 * 256


def test_sliding_window_caps_decode_work():
    full = ops.attention_decode_work(1.0, 32768.0, 32.0, 8.0, 128.0, 128.0, 2.0, 0)
    capped = ops.attention_decode_work(1.0, 32768.0, 32.0, 8.0, 128.0, 128.0, 2.0, 4096)
    short = ops.attention_decode_work(1.0, 4096.0, 32.0, 8.0, 128.0, 128.0, 2.0, 0)
    assert capped == short and capped[1] < full[1]


def test_moe_touches_at_most_every_expert_and_no_more_than_picks():
    for tokens in (1.0, 4.0, 64.0, 4096.0):
        touched = ops.experts_touched(tokens, 8.0, 256.0)
        assert touched <= min(256.0, tokens * 8.0) + 1e-9
    assert abs(ops.experts_touched(1e6, 2.0, 8.0) - 8.0) < 1e-9


def test_elementwise_gated_activation_reads_twice_what_it_writes():
    code = ops.ELEMENTWISE_CODE["activation"]
    _, nbytes = ops.elementwise_work(code, 10.0, 1000.0, 2.0)
    assert nbytes == 10 * 1000 * 2 * 3


def test_ring_allreduce_moves_twice_the_gather_traffic():
    ar = ops.collective_traffic_factor(ops.COLLECTIVE_CODE["all_reduce"], 8.0)
    ag = ops.collective_traffic_factor(ops.COLLECTIVE_CODE["all_gather"], 8.0)
    assert ar == 2 * ag == 2 * 7 / 8


def test_vectorised_forms_agree_with_scalar_forms():
    m = np.array([1.0, 7.0, 300.0])
    n = np.array([128.0, 4096.0, 50.0])
    k = np.array([64.0, 64.0, 8192.0])
    flops, nbytes = ops.gemm_work_v(m, n, k, 2.0, 0.5)
    for i in range(3):
        assert (flops[i], nbytes[i]) == ops.gemm_work(m[i], n[i], k[i], 2.0, 0.5)
