"""What an LLM layer computes: operator kinds and their work (FLOPs and bytes moved).

The formulas here are the single definition of an operator's work; the cost model (hwmodels/)
turns work into time, the validation loaders describe measured rows with the same kinds.
Every function is vectorised over numpy arrays and returns float64 arrays. Units: FLOPs and bytes.

Operator classes (each with its own calibrated efficiency model in hwmodels/):
  gemm          projections, MLP, LM head: m tokens x n out-features x k in-features
  attn_prefill  causal attention of new prompt tokens over their own and earlier context
  attn_decode   one new token per request attending over its whole context
  moe           a fused MoE layer (router output given): experts' gate/up/down GEMMs
  elementwise   norms, RoPE, activations, residual adds, embedding gathers, softmax, sampling
  collective    all-reduce, all-gather, reduce-scatter, all-to-all, send/recv
"""
from __future__ import annotations

import numpy as np
from llmsim.workloads.jitcache import kernel as njit  # numba on demand

from llmsim.workloads import jitcache

jitcache.guard(__file__, module_name=__name__)  # a cache compiled under another import name cannot load

OP_CLASSES = ("gemm", "attn_prefill", "attn_decode", "moe", "elementwise", "collective")

# Elementwise kinds share one efficiency model with a per-kind offset; the code is a feature index.
ELEMENTWISE_KINDS = ("norm", "rope", "activation", "add", "embedding", "softmax", "sampling", "gelu")
ELEMENTWISE_CODE = {name: i for i, name in enumerate(ELEMENTWISE_KINDS)}

COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
COLLECTIVE_CODE = {name: i for i, name in enumerate(COLLECTIVE_KINDS)}

# Kind of a measured or built operator -> its class.
KIND_CLASS = {
    "gemm": "gemm",
    "attn_prefill": "attn_prefill",
    "attn_decode": "attn_decode",
    "moe": "moe",
    **{k: "elementwise" for k in ELEMENTWISE_KINDS},
    **{k: "collective" for k in COLLECTIVE_KINDS},
}

OUTPUT_BYTES = 2.0  # GEMM and attention outputs are written in 16-bit by every engine we model


@njit(cache=True)
def gemm_work(m, n, k, act_bytes, weight_bytes):
    """FLOPs and bytes of C[m,n] = A[m,k] @ W[k,n]: each operand read once, C written in 16-bit."""
    return 2.0 * m * n * k, m * k * act_bytes + k * n * weight_bytes + m * n * OUTPUT_BYTES


@njit(cache=True)
def causal_pairs(new_tokens, context, window):
    """Query-key pairs of causal attention: ``new_tokens`` queries after ``context`` cached tokens.

    Query at absolute position p (1-based) sees p keys, at most ``window`` when one is set (> 0).
    """
    s, c = float(new_tokens), float(context)
    if window <= 0:
        return s * c + s * (s + 1.0) / 2.0
    w = float(window)
    first, last = c + 1.0, c + s
    split = min(max(w, first - 1.0), last)  # positions up to `split` see fewer than w keys
    below = (split * (split + 1.0) - (first - 1.0) * first) / 2.0
    return below + (last - split) * w


@njit(cache=True)
def attention_prefill_work(batch, new_tokens, context, heads, kv_heads, head_dim, v_head_dim,
                           kv_bytes, window):
    """FLOPs and bytes of prefill attention for ``batch`` requests of ``new_tokens`` each.

    QK^T and PV count 2 FLOPs per multiply-add (MLA prefill: 192-wide QK, 128-wide V).
    Bytes: Q read in 16-bit, K/V of the attended span read once, O written.
    """
    pairs = causal_pairs(new_tokens, context, window)
    flops = batch * 2.0 * heads * pairs * (head_dim + v_head_dim)
    span = new_tokens + context
    if window > 0:
        span = min(span, max(float(window), float(new_tokens)))
    nbytes = batch * (new_tokens * heads * head_dim * OUTPUT_BYTES
                      + span * kv_heads * (head_dim + v_head_dim) * kv_bytes
                      + new_tokens * heads * v_head_dim * OUTPUT_BYTES)
    return flops, nbytes


@njit(cache=True)
def attention_decode_work(batch, context, heads, kv_heads, head_dim, v_head_dim, kv_bytes, window):
    """FLOPs and bytes of one decode step for ``batch`` requests whose new token sees ``context`` keys."""
    L = min(context, float(window)) if window > 0 else context
    flops = batch * 2.0 * heads * L * (head_dim + v_head_dim)
    nbytes = batch * (heads * head_dim * OUTPUT_BYTES + L * kv_heads * (head_dim + v_head_dim) * kv_bytes
                      + heads * v_head_dim * OUTPUT_BYTES)
    return flops, nbytes


@njit(cache=True)
def experts_touched(tokens, topk, experts):
    """Expected number of distinct experts hit when tokens x topk picks fall uniformly on them."""
    return experts * (1.0 - (1.0 - 1.0 / experts) ** (tokens * topk))


@njit(cache=True)
def moe_work(tokens, hidden, inter_per_rank, topk, experts, moe_ep, weight_bytes, act_bytes, gated):
    """FLOPs and bytes of one fused MoE layer on one rank (EP shards experts, TP shards ``inter``).

    Tokens spread evenly over EP ranks: a rank computes tokens*topk/ep assignments. Bytes: the
    weights of every local expert the batch touches (uniform routing), activations in and out.
    """
    mats = 3.0 if gated else 2.0
    assignments = tokens * topk / moe_ep
    flops = 2.0 * assignments * mats * hidden * inter_per_rank
    touched = experts_touched(tokens, topk, experts) / moe_ep
    nbytes = (touched * mats * hidden * inter_per_rank * weight_bytes
              + assignments * (2.0 * hidden + (mats - 1.0) * inter_per_rank) * act_bytes)
    return flops, nbytes


# Per element of each ELEMENTWISE_KINDS entry: elements read, written, and FLOPs.
_EW_READS = np.array([1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
_EW_WRITES = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
_EW_FLOPS = np.array([5.0, 6.0, 6.0, 1.0, 0.0, 5.0, 6.0, 8.0])


@njit(cache=True)
def elementwise_work(code, rows, width, act_bytes):
    """FLOPs and bytes of a memory-bound operator over ``rows`` x ``width`` elements.

    ``width``: norm/add/embedding the hidden size; rope the rotated q+k width; activation the
    per-rank intermediate size of a gated activation (reads gate and up); gelu the same, ungated;
    softmax/sampling the row length (e.g. the vocabulary). Norm and rope also read a row-wide table.
    """
    elems = rows * width
    nbytes = elems * act_bytes * (_EW_READS[code] + _EW_WRITES[code])
    if code <= 1:
        nbytes += width * act_bytes
    return elems * _EW_FLOPS[code], nbytes


@njit(cache=True)
def collective_traffic_factor(code, ranks):
    """Bytes on the busiest link per byte of message (ring): all-reduce 2(n-1)/n, gather/scatter
    and all-to-all (n-1)/n, send/recv 1."""
    if code == 4:
        return 1.0
    ring = (ranks - 1.0) / max(ranks, 1.0)
    return 2.0 * ring if code == 0 else ring


# -- array forms used by the validation tables and the calibration fit ---------------------------
@njit(cache=True)
def gemm_work_v(m, n, k, act_bytes, weight_bytes):
    flops, nbytes = np.empty(m.size), np.empty(m.size)
    for i in range(m.size):
        flops[i], nbytes[i] = gemm_work(m[i], n[i], k[i], act_bytes, weight_bytes)
    return flops, nbytes


@njit(cache=True)
def attention_prefill_work_v(b, s, c, h, kvh, d, kv_bytes, w):
    flops, nbytes = np.empty(b.size), np.empty(b.size)
    for i in range(b.size):
        flops[i], nbytes[i] = attention_prefill_work(b[i], s[i], c[i], h[i], kvh[i], d[i], d[i], kv_bytes, w[i])
    return flops, nbytes


@njit(cache=True)
def attention_decode_work_v(b, L, h, kvh, d, kv_bytes, w):
    flops, nbytes = np.empty(b.size), np.empty(b.size)
    for i in range(b.size):
        flops[i], nbytes[i] = attention_decode_work(b[i], L[i], h[i], kvh[i], d[i], d[i], kv_bytes, w[i])
    return flops, nbytes


@njit(cache=True)
def moe_work_v(T, H, I_rank, K, E, ep, weight_bytes, act_bytes):
    flops, nbytes = np.empty(T.size), np.empty(T.size)
    for i in range(T.size):
        flops[i], nbytes[i] = moe_work(T[i], H[i], I_rank[i], K[i], E[i], ep[i], weight_bytes, act_bytes, True)
    return flops, nbytes


@njit(cache=True)
def elementwise_work_v(code, rows, width, act_bytes):
    flops, nbytes = np.empty(rows.size), np.empty(rows.size)
    for i in range(rows.size):
        flops[i], nbytes[i] = elementwise_work(code[i], rows[i], width[i], act_bytes)
    return flops, nbytes


@njit(cache=True)
def collective_traffic_factor_v(code, ranks):
    out = np.empty(ranks.size)
    for i in range(ranks.size):
        out[i] = collective_traffic_factor(code[i], ranks[i])
    return out
