"""A deployment (model + formats + plan on a device) and the per-iteration cost query.

Everything that depends only on the deployment (per-layer operator shapes on one rank, their
calibration coefficients, weight and KV bytes per device) is computed once in ``Deployment``;
``iteration`` then does only the batch-dependent arithmetic in one compiled call:

    time_s, energy_j = deployment.iteration(prefill_lens, prefill_offsets, decode_ctx)

One layer of each type (dense, MoE) is priced and multiplied by its count; the LM head and the
sampler run once per iteration for every sequence in the batch; TP all-reduces follow attention
and MLP in every layer. With ``pp > 1`` an iteration passes through every stage in turn, as in
vLLM's pipeline engine: its time is the sum of the stages' (all layers) plus one activation send
per stage boundary (``tokens x hidden`` 16-bit values, each TP rank sending its ``1/tp`` share);
the engine keeps ``pp`` such iterations in flight (virtual engines, see sim/runner.py). Energy is
that of the ``tp`` devices of the stage running each operator (idle plus utilisation-proportional
dynamic power).

Every collective (TP all-reduces, DP + EP all-gather / reduce-scatter, stage-boundary sends) is
priced by one model, the alpha-beta candidates of hwmodels/collectives.py, over the group's links:
those of a placement (``network=``, a :class:`PlanNetwork` built from a cluster), or else one server
joined by the device's scale-up link. The TP all-reduce is split by message size as vLLM runs it
(``collectives.tp_allreduce_segments``): its custom all-reduce (one-shot, then two-shot) below 8 MiB
on one NVLink server, NCCL above and everywhere else.

What the serving engine adds to the kernels is an :class:`EngineProfile` (``engine=``; names in
``hwmodels/data/engines.yaml``): which kernels it fuses and which all-reduce it uses (changing the
op table), whether decode iterations replay CUDA graphs, and its CPU time per iteration::

    t = iteration_s + per_seq_s * seqs + [prefill_s + prefill_per_seq_s * prefills if any prefill]
        + (max(t_gpu, layers * layer_launch_s) if eager else t_gpu)

and, where the engine's NCCL all-reduce ran slower than the kernel data (``allreduce_bus_bytes_per_s``
> 0), each NCCL all-reduce takes at least ``message x 2 (n - 1) / n / allreduce_bus_bytes_per_s``.

``eager``: the iteration is not a replayed CUDA graph (any prefill, a batch above the largest
captured size, or an engine without graphs), so the host must launch every layer's kernels and the
GPU waits for it whenever that is slower than the kernels. The vLLM V1 profile (``vllm-v1``, the
default) prices steps by its own mechanism (hwmodels/engines.py, docs/engines.md); the engine
``kernels`` adds nothing: the pure kernel-calibrated model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from llmsim.workloads.jitcache import kernel as njit  # numba on demand

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.calibration import Profile, default_profile
from llmsim.hwmodels.costmodel import (DTYPE_BYTES, QUANT_PASS_GROUP, attention_compute_dtype, fallback_kind,
                                       needs_quant_pass, quant_pass_bytes_per_element, quant_pass_params)
from llmsim.hwmodels.collectives import collective_coefficients, tp_allreduce_segments
from llmsim.hwmodels.devices import DeviceSpec, get_device
from llmsim.hwmodels.engines import DEFAULT_ENGINE, EngineOverhead, EngineProfile, get_engine, list_engines, parse_engines  # noqa: F401
from llmsim.hwmodels.layout import DeploymentLayout
from llmsim.hwmodels.uncertainty import network_param_key
from llmsim.hwmodels.network import INTRA_TRANSPORTS, GroupTopology, LinkClass, single_node_group
from llmsim.hwmodels import aot
from llmsim.workloads import jitcache
from llmsim.workloads import operators as ops
from llmsim.workloads.errors import ConfigError, PlanError
from llmsim.workloads.models import ModelSpec, get_model
from llmsim.workloads.quant import KVCacheFormat, QuantFormat, get_kv_format, get_quant_format

# the compiled query inlines efficiency.py and operators.py: recompile when they change
jitcache.guard(__file__, eff.__file__, ops.__file__, module_name=__name__)

# How an op's shape is built from the batch (column `kind` of the op table).
_GEMM_TOKENS, _GEMM_SEQS, _ATTN_PREFILL, _ATTN_DECODE, _MOE, _EW_TOKENS, _EW_SEQS, _NET = range(8)
# Most (alpha, beta) candidates of one network-priced op (llmsim.hwmodels.collectives.collective_coefficients).
_MAX_NET = 16
_MAX_FEATURES = max(eff.NUM_FEATURES[c] + eff.NUM_LATENCY[c] for c in eff.NUM_FEATURES)
_MAX_RANGE = max(eff.NUM_RANGE.values())
_DEV_LEN = eff.DEV_WITH_CYCLES  # device-vector entries per operator: base, L2, sibling reference (0 when off)
# per class index: how many range columns it has and how long its shape row is
_NUM_RANGE = np.array([eff.NUM_RANGE[c] for c in sorted(eff.CLASS_INDEX, key=eff.CLASS_INDEX.get)], np.int64)
_SHAPE_LEN = np.array([len(eff.SHAPE_COLUMNS[c]) for c in sorted(eff.CLASS_INDEX, key=eff.CLASS_INDEX.get)], np.int64)
_PAR_WIDTH = 10
# The largest GEMM row count (tokens) in the kernel data of every calibrated architecture
# (aiconfigurator A100: m <= 8192); larger GEMMs are priced as equal slices of at most this size.
GEMM_MAX_ROWS = 8192.0
_EMPTY_I64 = np.zeros(0, np.int64)
_I64 = np.dtype(np.int64)
_F64 = np.dtype(np.float64)
_NDARRAY = np.ndarray
#: Rows of a deployment's remembered decode-attention prices (a power of two; 9 float64 each: the key,
#: the operator's seconds and joules, and the step's summed seconds and joules over all operators).
_ATTN_MEMO_ROWS = 1 << 16
_ATTN_MEMO_COLS = 9
_MEMO_TOTAL_T = 7
_MEMO_TOTAL_E = 8
#: Buffer pairs of decode runs a deployment remembers as checked (one per replica it serves).
_MAX_BUFFER_PAIRS = 256
#: Row counts (tokens or sequences) whose per-operator prices a deployment's ``iteration`` remembers.
_BY_ROWS = 8193


@dataclass(frozen=True)
class IterationCost:
    """Cost of one engine iteration on one replica (all its devices)."""

    time_s: float
    energy_j: float
    breakdown: dict = field(default_factory=dict)


@njit(cache=True)
def _attn_decode_work(par, decode_ctx):
    """(summed context, FLOPs, bytes) of decode attention (row parameters ``par``) over requests
    with ``decode_ctx`` tokens cached, each new token seeing its own key too; summed in request order."""
    flops = 0.0
    nbytes = 0.0
    L_sum = 0.0
    for i in range(decode_ctx.size):
        L = float(decode_ctx[i]) + 1.0
        f, b = ops.attention_decode_work(1.0, L, par[0], par[1], par[2], par[3], par[4], par[5])
        flops += f
        nbytes += b
        L_sum += L
    return L_sum, flops, nbytes


@njit(cache=True)
def _op_cost(o, tokens, seqs, prefill_lens, prefill_offsets, decode_ctx, op_cls, op_kind, op_par, op_mult,
             op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, scratch, shape, op_range):
    """(seconds, joules) of operator ``o`` (all its layers) in a batch; (0, 0) when the batch has no
    work for it."""
    n_p = prefill_lens.size
    n_d = decode_ctx.size
    kind = op_kind[o]
    par = op_par[o]
    chunks = 1.0
    if kind == _NET:
        # a collective of tokens x par[0] bytes, priced when par[1] <= message < par[2]: the fastest of its
        # alpha-beta candidates, and no faster than par[3] seconds per byte (the engine's bus floor)
        if tokens <= 0:
            return 0.0, 0.0
        msg = tokens * par[0]
        if msg < par[1] or msg >= par[2]:
            return 0.0, 0.0
        t = op_net[o, 0, 0] + op_net[o, 0, 1] * msg
        for c in range(1, op_nnet[o]):
            tc = op_net[o, c, 0] + op_net[o, c, 1] * msg
            if tc < t:
                t = tc
        if par[3] * msg > t:
            t = par[3] * msg
        t *= op_mult[o]
        return t, op_power[0] * t
    if kind == _GEMM_TOKENS or kind == _GEMM_SEQS:
        m = tokens if kind == _GEMM_TOKENS else seqs
        if m <= 0:
            return 0.0, 0.0
        if m > GEMM_MAX_ROWS:
            # beyond the measured rows: price equal slices at the largest measured size (efficiency has
            # saturated there) instead of extrapolating the fitted surface
            chunks = math.ceil(m / GEMM_MAX_ROWS)
            m = m / chunks
        flops, nbytes = ops.gemm_work(m, par[0], par[1], par[2], par[3])
        flops += par[4] * par[0] * par[1]  # dequantisation work of weight-only formats
        shape[0] = m
        shape[1] = par[0]
        shape[2] = par[1]
        shape[3] = flops
        shape[4] = nbytes
    elif kind == _ATTN_PREFILL:
        if n_p == 0:
            return 0.0, 0.0
        flops = 0.0
        nbytes = 0.0
        s_sum = 0.0
        c_sum = 0.0
        for i in range(n_p):
            f, b = ops.attention_prefill_work(1.0, float(prefill_lens[i]), float(prefill_offsets[i]),
                                              par[0], par[1], par[2], par[3], par[4], par[5])
            flops += f
            nbytes += b
            s_sum += prefill_lens[i]
            c_sum += prefill_offsets[i]
        shape[0] = n_p
        shape[1] = s_sum / n_p
        shape[2] = c_sum / n_p
        shape[3] = par[0]
        shape[4] = par[1]
        shape[5] = par[2]
        shape[6] = par[5]
        shape[7] = flops
        shape[8] = nbytes
    elif kind == _ATTN_DECODE:
        if n_d == 0:
            return 0.0, 0.0
        L_sum, flops, nbytes = _attn_decode_work(par, decode_ctx)
        _attn_decode_shape(n_d, L_sum, flops, nbytes, par, shape)
    elif kind == _MOE:
        if tokens <= 0:
            return 0.0, 0.0
        moe_tokens = tokens * par[8] if par[8] > 0.0 else tokens  # all DP ranks' tokens (DP + EP)
        flops, nbytes = ops.moe_work(moe_tokens, par[0], par[1], par[2], par[3], par[4], par[5], par[6],
                                     par[7] > 0)
        shape[0] = moe_tokens
        shape[1] = par[0]
        shape[2] = par[1]
        shape[3] = par[2]
        shape[4] = par[3]
        shape[5] = par[4]
        shape[6] = 0.0
        shape[7] = flops
        shape[8] = nbytes
    else:  # _EW_TOKENS or _EW_SEQS
        rows = tokens if kind == _EW_TOKENS else seqs
        if rows <= 0:
            return 0.0, 0.0
        flops, nbytes = ops.elementwise_work(int(par[0]), rows, par[1], par[2])
        shape[0] = par[0]
        shape[1] = flops
        shape[2] = nbytes
    # decodes inside a mixed step's varlen prefill kernel: query heads of a KV group unpacked
    unpack = par[6] if kind == _ATTN_DECODE and n_p > 0 and par[6] > 0.0 else 0.0
    return _priced(o, flops, nbytes, chunks, unpack, op_cls, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power,
                   scratch, shape, op_range)


@njit(cache=True, inline="always")
def _attn_decode_shape(n_d, L_sum, flops, nbytes, par, shape):
    """Decode attention's shape row (efficiency.SHAPE_COLUMNS) over ``n_d`` decodes whose summed context,
    FLOPs and bytes are ``L_sum``, ``flops`` and ``nbytes``, written into ``shape``."""
    shape[0] = n_d
    shape[1] = L_sum / n_d
    shape[2] = par[0]
    shape[3] = par[1]
    shape[4] = par[2]
    shape[5] = par[5]
    shape[6] = flops
    shape[7] = nbytes


@njit(cache=True, inline="always")
def _priced(o, flops, nbytes, chunks, unpack, op_cls, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power,
            scratch, shape, op_range):
    """(seconds, joules) of operator ``o`` (all its layers, ``chunks`` slices) whose shape row is in
    ``shape`` and whose work is ``flops`` and ``nbytes``; ``unpack`` > 0 scales its kernel time."""
    nf = op_nfeat[o]
    nr = _NUM_RANGE[op_cls[o]]
    ns = _SHAPE_LEN[op_cls[o]]
    # op_range[o] = (lo, hi) of the fitted shape range; scratch past the features holds the clamped row
    t = eff.predict_one_ranged(op_cls[o], shape[:ns], op_dev[o], op_floor[o], op_theta[o, :nf], scratch[:nf],
                               op_range[o, 0, :nr], op_range[o, 1, :nr], scratch[_MAX_FEATURES:])
    if unpack > 0.0:
        t *= unpack
    # utilisation of the busier of compute and memory drives dynamic power
    util = max(flops / (op_dev[o, 0] * t), nbytes / (op_dev[o, 1] * t))
    if util > 1.0:
        util = 1.0
    power = op_power[0] + op_power[1] * util
    t *= op_mult[o] * chunks
    return t, power * t


@njit(cache=True)
def _batch_size(prefill_lens, decode_ctx):
    tokens = 0.0
    for i in range(prefill_lens.size):
        tokens += prefill_lens[i]
    tokens += decode_ctx.size
    return tokens, float(prefill_lens.size + decode_ctx.size)


@njit(cache=True)
def _iteration_kernel(prefill_lens, prefill_offsets, decode_ctx, fpack, ipack, scratch, shape, op_time, by_rows,
                      by_rows_have):
    """(seconds, joules, tokens) of one iteration; per-op seconds (already multiplied) into ``op_time``.
    The op tables come packed (``_pack_run_tables``); ``scratch``, ``shape`` and ``op_time`` are the
    caller's (a breakdown reads ``op_time``; concurrent callers pass their own).

    Every operator but attention is priced by its row count alone (the batch's tokens, or its
    sequences for the ``_SEQS`` kinds), so ``by_rows[m, o]`` remembers (seconds, joules) of operator
    ``o`` at ``m`` rows once ``by_rows_have[m, o]`` is set (a remembered price is the same bits as a
    fresh one); row counts past the table are priced each call."""
    (op_cls, op_kind, op_par, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, _scratch,
     _shape, op_range, _op_time, _tab) = _run_tables(fpack, ipack)
    tokens, seqs = _batch_size(prefill_lens, decode_ctx)
    total_t = 0.0
    total_e = 0.0
    cap = by_rows_have.shape[0]
    for o in range(op_cls.size):
        kind = op_kind[o]
        if kind == _ATTN_PREFILL or kind == _ATTN_DECODE:
            t, e = _op_cost(o, tokens, seqs, prefill_lens, prefill_offsets, decode_ctx, op_cls, op_kind, op_par,
                            op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, scratch, shape,
                            op_range)
        else:
            m = int(seqs) if kind == _GEMM_SEQS or kind == _EW_SEQS else int(tokens)
            if m < cap and by_rows_have[m, o] != 0:
                t = by_rows[m, o, 0]
                e = by_rows[m, o, 1]
            else:
                t, e = _op_cost(o, tokens, seqs, prefill_lens, prefill_offsets, decode_ctx, op_cls, op_kind, op_par,
                                op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, scratch,
                                shape, op_range)
                if m < cap:
                    by_rows[m, o, 0] = t
                    by_rows[m, o, 1] = e
                    by_rows_have[m, o] = 1
        op_time[o] = t
        total_t += t
        total_e += e
    return total_t, total_e, tokens


@njit(cache=True, inline="always")
def _attn_memo_row(memo, o, n, L_sum, flops, nbytes):
    """The row of ``memo`` for decode-attention operator ``o`` over ``n`` decodes with summed context
    ``L_sum`` and summed ``flops`` and ``nbytes``: ``row`` when it holds that shape's price, else
    ``-1 - row`` (the row a fresh price goes to).

    In a batch without prefills the operator's price is a function of its shape row alone, which
    these five numbers fix, so a remembered price is the same bits as a fresh one. A row holds
    (op, decodes, summed context, FLOPs, bytes, seconds, joules); the table is direct-mapped (a new
    shape takes the row its hash picks: which row changes how often a price is remembered, never
    the price)."""
    row = 0
    if L_sum < 4503599627370496.0:  # 2 ** 52: an exact integer
        row = (int(L_sum) * 40503 + n * 7919 + o * 104729) & (memo.shape[0] - 1)
    if (memo[row, 0] == o and memo[row, 1] == n and memo[row, 2] == L_sum and memo[row, 3] == flops
            and memo[row, 4] == nbytes):
        return row
    return -1 - row


@njit(cache=True, inline="always")
def _attn_decode_memo(o, n, op_cls, op_par, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, scratch, shape,
                      op_range, memo, L_sum, flops, nbytes):
    """``_op_cost`` of decode-attention operator ``o`` in a batch of ``n`` decodes only, whose work
    ``_attn_decode_work`` gives as ``L_sum``, ``flops``, ``nbytes`` (the price is a function of these
    and ``n``: the contexts themselves are not read), priced on a miss of ``memo``
    (``_attn_memo_row``) and remembered there; (seconds, joules, row)."""
    row = _attn_memo_row(memo, o, n, L_sum, flops, nbytes)
    if row >= 0:
        return memo[row, 5], memo[row, 6], row
    row = -1 - row
    _attn_decode_shape(n, L_sum, flops, nbytes, op_par[o], shape)
    t, e = _priced(o, flops, nbytes, 1.0, 0.0, op_cls, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power,
                   scratch, shape, op_range)
    memo[row, 0] = o
    memo[row, 1] = n
    memo[row, 2] = L_sum
    memo[row, 3] = flops
    memo[row, 4] = nbytes
    memo[row, 5] = t
    memo[row, 6] = e
    if memo.shape[1] > _MEMO_TOTAL_E:
        memo[row, _MEMO_TOTAL_T] = -1.0  # the step's totals are not known here
        memo[row, _MEMO_TOTAL_E] = -1.0
    return t, e, row


@njit(cache=True)
def _attn_step_work(par, ctx, steps):
    """(FLOPs, bytes) that one more step of a decode run adds to decode attention's summed FLOPs and
    bytes over the ``n`` contexts ``ctx`` (``_attn_decode_work``), per request, when for each of the
    ``steps`` steps these sums are exact, so that adding ``n`` times them gives the same bits as
    summing afresh; (-1, -1) otherwise.

    Exact when every per-request figure and every partial sum is an integer below 2 ** 52: the
    operator's parameters are integers, the KV bytes per element an integer or a half (then the KV
    row width even), no context reaches the sliding window, and ``n`` times the largest figure stays
    below 2 ** 52. Then float addition is exact, hence independent of order and grouping."""
    heads, kvh, hd, vhd, kvb, w = par[0], par[1], par[2], par[3], par[4], par[5]
    if not (heads >= 1.0 and kvh >= 1.0 and hd >= 1.0 and vhd >= 0.0 and kvb > 0.0):
        return -1.0, -1.0
    if not (heads == math.floor(heads) and kvh == math.floor(kvh) and hd == math.floor(hd)
            and vhd == math.floor(vhd) and 2.0 * kvb == math.floor(2.0 * kvb)):
        return -1.0, -1.0
    row = kvh * (hd + vhd)  # KV elements of one cached token
    if kvb != math.floor(kvb) and row != 2.0 * math.floor(row / 2.0):
        return -1.0, -1.0
    top = 0
    for i in range(ctx.size):
        if ctx[i] > top:
            top = ctx[i]
    L_max = float(top) + float(steps)  # the context the last step's new token sees
    if w > 0.0 and L_max > w:
        return -1.0, -1.0
    f_max, b_max = ops.attention_decode_work(1.0, L_max, heads, kvh, hd, vhd, kvb, w)
    if not (float(ctx.size) * max(f_max, b_max) < 4503599627370496.0):  # 2 ** 52
        return -1.0, -1.0
    return 2.0 * heads * (hd + vhd), row * kvb


#: the op tables ``_decode_run_kernel`` reads, in the order ``_pack_run_tables`` packs them:
#: (name, float64 elements per operator, float64 elements per deployment)
_RUN_FLOAT_TABLES = (("par", _PAR_WIDTH, 0), ("mult", 1, 0), ("theta", _MAX_FEATURES, 0), ("floor", 1, 0),
                     ("dev", _DEV_LEN, 0), ("power", 0, 2), ("net", 2 * _MAX_NET, 0), ("range", 2 * _MAX_RANGE, 0),
                     ("op_time", 1, 0), ("tab", 7, 0), ("scratch", 0, _MAX_FEATURES + _PAR_WIDTH),
                     ("shape", 0, _PAR_WIDTH))
#: the int64 tables, each one element per operator, in packing order (``_run_tables`` reads them so)
_RUN_INT_TABLES = ("cls", "kind", "nfeat", "nnet")


def _pack_run_tables(cls, kind, par, mult, theta, nfeat, floor, dev, power, net, nnet, range_):
    """The op tables of ``_decode_run_kernel`` as two flat buffers (float64, int64), so that a call
    hands the compiled kernel two arrays instead of fifteen (each array argument costs the extension
    wrapper a conversion). The float buffer also holds the kernel's scratch space (per-op times and
    work, feature rows), private to it. ``_run_tables`` takes them apart again."""
    n = cls.size
    parts = {"par": par, "mult": mult, "theta": theta, "floor": floor, "dev": dev, "power": power, "net": net,
             "range": range_, "cls": cls, "kind": kind, "nfeat": nfeat, "nnet": nnet}
    chunks = []
    for name, per_op, fixed in _RUN_FLOAT_TABLES:
        want = n * per_op + fixed
        a = parts.get(name)
        a = np.zeros(want) if a is None else np.ascontiguousarray(a, np.float64).reshape(-1)
        if a.size != want:
            raise ValueError(f"op table {name}: {a.size} values, want {want}")
        chunks.append(a)
    ints = []
    for name in _RUN_INT_TABLES:
        a = np.ascontiguousarray(parts[name], np.int64).reshape(-1)
        if a.size != n:
            raise ValueError(f"op table {name}: {a.size} values, want {n}")
        ints.append(a)
    return np.concatenate(chunks), np.concatenate(ints)


@njit(cache=True, inline="always")
def _run_tables(fpack, ipack):
    """Views of the tables ``_pack_run_tables`` packed (the same order and sizes)."""
    n = ipack.size // 4
    op_cls = ipack[:n]
    op_kind = ipack[n:2 * n]
    op_nfeat = ipack[2 * n:3 * n]
    op_nnet = ipack[3 * n:]
    f = 0
    op_par = fpack[f:f + n * _PAR_WIDTH].reshape((n, _PAR_WIDTH))
    f += n * _PAR_WIDTH
    op_mult = fpack[f:f + n]
    f += n
    op_theta = fpack[f:f + n * _MAX_FEATURES].reshape((n, _MAX_FEATURES))
    f += n * _MAX_FEATURES
    op_floor = fpack[f:f + n]
    f += n
    op_dev = fpack[f:f + _DEV_LEN * n].reshape((n, _DEV_LEN))
    f += _DEV_LEN * n
    op_power = fpack[f:f + 2]
    f += 2
    op_net = fpack[f:f + n * 2 * _MAX_NET].reshape((n, _MAX_NET, 2))
    f += n * 2 * _MAX_NET
    op_range = fpack[f:f + n * 2 * _MAX_RANGE].reshape((n, 2, _MAX_RANGE))
    f += n * 2 * _MAX_RANGE
    op_time = fpack[f:f + n]
    f += n
    tab = fpack[f:f + 7 * n].reshape((n, 7))
    f += 7 * n
    scratch = fpack[f:f + _MAX_FEATURES + _PAR_WIDTH]
    f += _MAX_FEATURES + _PAR_WIDTH
    shape = fpack[f:f + _PAR_WIDTH]
    return (op_cls, op_kind, op_par, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet,
            scratch, shape, op_range, op_time, tab)


@njit(cache=True)
def _decode_run_kernel(decode_ctx, steps, fpack, ipack, by_size, by_size_have, attn_memo, mode, launch, host, sync,
                       tp, start_s, start_j, sums, times, energies, at, ctx_add):
    """Seconds and joules of ``steps`` decode-only iterations, written into ``times[at:at + steps]`` and
    ``energies[at:at + steps]``; the contexts are ``decode_ctx + ctx_add`` at the first step and grow by one each step,
    engine time included: each step's GPU seconds ``g`` become ``max(g, launch)`` plus the host
    seconds ``host`` (``mode`` 0), that plus ``sync`` (``mode`` 1), or ``max(max(g, launch), host) +
    sync`` (``mode`` 2, an asynchronous engine); the devices idle for the difference, and joules are
    those of one device times ``tp``. With ``sums`` set the outputs are running sums instead, from
    ``start_s`` and ``start_j``: the same additions, in step order, as ``np.add.accumulate`` over
    ``[start_s, seconds...]`` and ``[start_j, joules...]``.

    Only decode attention depends on the context, so the other operators are priced once per batch
    size: ``by_size[n, o]`` holds (seconds, joules) of operator ``o`` for ``n`` decodes once
    ``by_size_have[n]`` is set (sizes past the table are priced each call), and decode attention is
    remembered by its shape in ``attn_memo`` (``_attn_decode_memo``). The per-step totals add the
    same per-op values in the same order as ``_iteration_kernel`` (equal to the last bit).

    Two shortcuts, both the same bits: where a step's attention work sums are exact
    (``_attn_step_work``) they grow by ``n`` times a constant instead of being summed afresh; and
    with one decode-attention operator a remembered row also keeps the step's summed seconds and
    joules over all operators, which depend only on that row and ``n``."""
    (op_cls, op_kind, op_par, op_mult, op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, scratch,
     shape, op_range, op_time, tab) = _run_tables(fpack, ipack)
    empty = decode_ctx[:0]
    ctx = decode_ctx + ctx_add
    tokens, seqs = _batch_size(empty, ctx)
    n_ops = op_cls.size
    # per op (``tab``): seconds, joules; per decode-attention op also its summed context, FLOPs and
    # bytes at the step, and what a step adds to the last two (per request; -1: sum afresh)
    t_op = tab[:, 0]
    e_op = tab[:, 1]
    work = tab[:, 2:]
    n = ctx.size
    cached = n < by_size_have.size and by_size_have[n] != 0
    n_attn = 0
    single = -1
    row0 = -1
    for o in range(n_ops):
        if op_kind[o] == _ATTN_DECODE:
            n_attn += 1
            single = o
            L_sum, flops, nbytes = _attn_decode_work(op_par[o], ctx)
            df, db = (-1.0, -1.0) if steps <= 1 else _attn_step_work(op_par[o], ctx, steps)
            work[o, 0] = L_sum
            work[o, 1] = flops
            work[o, 2] = nbytes
            work[o, 3] = df
            work[o, 4] = db
            t_op[o], e_op[o], row0 = _attn_decode_memo(o, n, op_cls, op_par, op_mult, op_theta, op_nfeat, op_floor,
                                                       op_dev, op_power, scratch, shape, op_range, attn_memo, L_sum,
                                                       flops, nbytes)
        elif cached:
            t_op[o] = by_size[n, o, 0]
            e_op[o] = by_size[n, o, 1]
        else:
            t_op[o], e_op[o] = _op_cost(o, tokens, seqs, empty, empty, ctx, op_cls, op_kind, op_par, op_mult,
                                        op_theta, op_nfeat, op_floor, op_dev, op_power, op_net, op_nnet, scratch,
                                        shape, op_range)
    if n_attn != 1 or attn_memo.shape[1] <= _MEMO_TOTAL_E:
        single = -1
    if not cached and n < by_size_have.size:
        for o in range(n_ops):
            by_size[n, o, 0] = t_op[o]
            by_size[n, o, 1] = e_op[o]
        by_size_have[n] = 1
    fn = float(n)
    acc_t = start_s
    acc_e = start_j
    bumped = 0  # steps ``ctx`` has been grown by (it is grown when a step has to read it)
    for k in range(steps):
        row = -1
        if k > 0:
            for o in range(n_ops):
                if op_kind[o] == _ATTN_DECODE:
                    if work[o, 3] >= 0.0:
                        L_sum = work[o, 0] + fn
                        flops = work[o, 1] + fn * work[o, 3]
                        nbytes = work[o, 2] + fn * work[o, 4]
                    else:
                        if bumped < k:
                            for i in range(n):
                                ctx[i] += k - bumped
                            bumped = k
                        L_sum, flops, nbytes = _attn_decode_work(op_par[o], ctx)
                    work[o, 0] = L_sum
                    work[o, 1] = flops
                    work[o, 2] = nbytes
                    t_op[o], e_op[o], row = _attn_decode_memo(o, n, op_cls, op_par, op_mult, op_theta, op_nfeat,
                                                              op_floor, op_dev, op_power, scratch, shape, op_range,
                                                              attn_memo, L_sum, flops, nbytes)
        else:
            row = row0  # the single operator's row (``single`` set), priced or remembered above
        if single >= 0 and row >= 0 and attn_memo[row, _MEMO_TOTAL_T] >= 0.0:
            total_t = attn_memo[row, _MEMO_TOTAL_T]
            total_e = attn_memo[row, _MEMO_TOTAL_E]
        else:
            total_t = 0.0
            total_e = 0.0
            for o in range(n_ops):
                total_t += t_op[o]
                total_e += e_op[o]
            if single >= 0 and row >= 0:
                attn_memo[row, _MEMO_TOTAL_T] = total_t
                attn_memo[row, _MEMO_TOTAL_E] = total_e
        gpu = total_t if total_t >= launch else launch
        if mode == 2:
            t = (gpu if gpu >= host else host) + sync
        elif mode == 1:
            t = (gpu + host) + sync
        else:
            t = gpu + host
        e = (total_e + op_power[0] * (t - total_t)) * tp
        if sums:
            acc_t += t
            acc_e += e
            times[at + k] = acc_t
            energies[at + k] = acc_e
        else:
            times[at + k] = t
            energies[at + k] = e
    for o in range(n_ops):
        op_time[o] = t_op[o]
    return steps


def _c_array(a, dtype) -> bool:
    """Whether ``a`` is a 1-d array the ahead-of-time kernels may take as ``dtype[::1]`` (an exact
    ndarray of that dtype, C-contiguous, aligned, writable): they do not check (hwmodels/aot.py)."""
    return type(a) is _NDARRAY and a.dtype is dtype and a.ndim == 1 and a.flags.carray  # C order, aligned, writable


def _aot_kernel(name: str, first: int, tables: tuple):
    """The ahead-of-time build of kernel ``name`` when there is one and ``tables`` (its arguments from
    position ``first`` on, checked once) are what it takes; else None (the numba kernel runs)."""
    entry = aot.entries().get(name)
    if entry is None:
        return None
    fn, kinds = entry
    return fn if aot.array_kinds(kinds[first:first + len(tables)], tables) else None


def _server_group(device: DeviceSpec, ranks: int) -> GroupTopology:
    """``ranks`` devices of one server joined by the device's scale-up link (else its host link,
    priced as PCIe)."""
    link = device.scale_up_link if device.scale_up_link is not None else device.host_link
    kind = link.kind if link.kind in INTRA_TRANSPORTS else "pcie"
    return single_node_group(ranks, LinkClass(kind, link.bandwidth_bytes_per_s, link.latency_s))


def _net_row(name: str, what: str, bytes_per_token: float, mult: float, coef, lo: float = 0.0, hi: float = math.inf,
             floor_s_per_byte: float = 0.0) -> tuple:
    """An op-table row priced by the collective model: ``tokens x bytes_per_token`` bytes when
    ``lo <= message < hi``, the fastest of the ``coef`` (alpha, beta) candidates, at least
    ``floor_s_per_byte`` seconds per byte; ``what`` (hwmodels/uncertainty.py ``NETWORK_KINDS``) picks
    its error band."""
    return (name, "collective", what, _NET, (bytes_per_token, lo, hi, floor_s_per_byte), mult, "bf16", coef)


@dataclass(frozen=True)
class PlanNetwork:
    """Where a replica's groups sit on a cluster: ``tp`` the topology of one TP group (None: one
    server of the device), ``stage_links`` the topology of each stage boundary's send
    (``pp - 1`` entries, from llmsim.hwmodels.plans.Placement.stage_link), ``arch`` the architecture hint
    of the network parameters."""

    tp: GroupTopology | None = None
    stage_links: tuple[GroupTopology, ...] = ()
    arch: str = ""


class Deployment:
    """A model served on ``tp x pp`` devices of one kind with given weight and KV formats, run by
    the serving ``engine`` (an :class:`EngineProfile` or its name; default ``DEFAULT_ENGINE``, the
    newest vLLM profile, as on the command line; ``kernels`` prices the kernels alone). ``overhead_s`` adds a fixed time to every iteration on top of the engine's.

    ``dp_ep``: a data-parallel group of that many ranks sharing the experts (vLLM's
    ``--data-parallel-size N --enable-expert-parallel``): each rank holds 1/dp_ep of the experts and
    runs attention on its own requests and the MoE layers on all ranks' tokens (an all-gather before
    and a reduce-scatter after, over the device's scale-up or host link); the deployment then prices
    one lock-step of the whole group, whose batch it splits over the ranks (:meth:`split_ranks`).
    ``max_num_seqs``/``max_num_batched_tokens``: the scheduler's limits (they size the captured CUDA
    graphs of a piecewise engine).
    ``layer_split``: layers of each pipeline stage (default even); ``network``: a :class:`PlanNetwork`
    placing the replica's groups on a cluster (default: one server joined by the device's scale-up
    link). Raises PlanError for impossible degrees and OutOfMemoryError when weights do not fit.
    """

    def __init__(self, model: ModelSpec | str, device: DeviceSpec | str, *, quant: QuantFormat | str = "bf16",
                 kv_dtype: KVCacheFormat | str = "auto", tp: int = 1, ep: int = 1, pp: int = 1,
                 profile: Profile | None = None, overhead_s: float = 0.0,
                 engine: EngineProfile | str = DEFAULT_ENGINE, layer_split: tuple[int, ...] | None = None,
                 network: PlanNetwork | None = None, max_num_seqs: int | None = None,
                 max_num_batched_tokens: int | None = None, dp_ep: int = 1):
        self.model = get_model(model) if isinstance(model, str) else model
        self.device = get_device(device) if isinstance(device, str) else device
        self.quant = get_quant_format(quant) if isinstance(quant, str) else quant
        if isinstance(kv_dtype, str):
            kv_name = kv_dtype
            if kv_dtype == "auto":
                kv_name = self.quant.kv_default or "bf16"
            kv_dtype = get_kv_format(kv_name)
        self.kv = kv_dtype
        self.tp, self.ep, self.pp = int(tp), int(ep), int(pp)
        self.dp_ep = int(dp_ep)
        self.profile = profile if profile is not None else default_profile()
        self.overhead_s = float(overhead_s)
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ConfigError(f"`overhead_s` must be a finite number >= 0, got {overhead_s!r}")
        self.engine = get_engine(engine)
        host = self.engine.overhead_for(self.device)
        self.host_overhead = host
        # Per-iteration constants of the engine model (seconds).
        self._iter_s = host.iteration_s + self.overhead_s
        self._prefill_s = host.prefill_s
        self._prefill_seq_s = host.prefill_per_seq_s
        self._seq_s = host.per_seq_s
        self._launch_s = host.layer_launch_s * self.model.num_layers
        self._piece_s = host.piece_launch_s * self.model.num_layers
        self._tok_s = host.per_token_s
        self._sync_s = host.sync_s
        self._piecewise = self.engine.graph_mode == "piecewise"
        self._async = self.engine.async_scheduling
        self._full_decode = self.engine.full_decode_graphs
        self._graph_max = self.engine.graph_max_tokens(max_num_seqs, max_num_batched_tokens)
        self.layer_split = None if layer_split is None else tuple(int(x) for x in layer_split)
        if network is not None and not isinstance(network, PlanNetwork):
            raise ConfigError(f"`network` must be a PlanNetwork, got {type(network).__name__}")
        self.network = network
        self._check_plan()
        self.layout = DeploymentLayout.build(self.model, self.device, self.quant, self.kv, tp=self.tp, pp=self.pp,
                                             ep=self.ep, dp_ep=self.dp_ep, layer_split=self.layer_split)
        self._build_ops()
        self._scratch = np.zeros(_MAX_FEATURES + _PAR_WIDTH)
        self._shape = np.zeros(_PAR_WIDTH)
        self._op_time = np.zeros(len(self.op_names))
        # decode_run's per-batch-size prices of the context-free operators (grown on demand)
        self._by_size = np.zeros((0, len(self.op_names), 2))
        self._by_size_have = np.zeros(0, np.uint8)
        self._attn_memo = None  # decode_run's remembered decode-attention prices (allocated at first use)
        self._by_rows = None  # iteration's remembered prices of the row-count operators (allocated at first use)
        self._run_args = None  # decode_run's kernel arguments (the op tables and its remembered prices)
        self._run_packed = None  # the op tables packed for the two kernels (_packed_tables)
        self._run_sizes = 0  # decode_run_into's fast path takes 0 < decodes < this (set with _run_args)
        self._terms: list[tuple] = []  # decode_run's engine terms per batch size
        self._tp_f = float(self.tp)
        self._by_rows_have = None
        # the ahead-of-time builds of the two kernels for this deployment's tables (None: numba's), and
        # the run buffer pairs already checked for the decode one
        self._iter_aot = None
        self._run_aot = None
        self._aot_bufs: dict = {}  # id(times) -> (times, energies) of buffer pairs checked (kept alive here)

    # -- plan ---------------------------------------------------------------------------------
    def _check_plan(self) -> None:
        m, tp, ep, pp = self.model, self.tp, self.ep, self.pp
        for name, v in (("tp", tp), ("ep", ep), ("pp", pp)):
            if v < 1:
                raise PlanError(f"`{name}` must be a positive integer, got {v}")
        if m.num_heads % tp:
            raise PlanError(f"tp={tp} must divide the {m.num_heads} attention heads of {m.name}; "
                            f"use a tp among {_divisors(m.num_heads, 64)}")
        if m.mla is None and m.num_kv_heads % tp and tp % m.num_kv_heads:
            raise PlanError(f"tp={tp} and the {m.num_kv_heads} KV heads of {m.name} must divide one another")
        if m.moe is not None:
            if m.moe.num_experts % ep:
                raise PlanError(f"ep={ep} must divide the {m.moe.num_experts} experts of {m.name}")
            if ep > tp or tp % ep:
                raise PlanError(f"ep={ep} must divide tp={tp} (experts are sharded inside the TP group)")
        elif ep != 1:
            raise PlanError(f"ep={ep} given but {m.name} has no experts; use ep=1")
        if self.dp_ep != 1:
            if self.dp_ep < 1 or m.moe is None or m.moe.num_experts % self.dp_ep or ep != 1:
                raise PlanError(f"dp_ep={self.dp_ep} shards the experts of a MoE model over data-parallel ranks: "
                                f"it needs experts divisible by it and ep=1 (got {m.name}, ep={ep})")
        if m.num_layers < pp:
            raise PlanError(f"pp={pp} exceeds the {m.num_layers} layers of {m.name}")
        if self.layer_split is not None:
            if len(self.layer_split) != pp or min(self.layer_split) < 1 or sum(self.layer_split) != m.num_layers:
                raise PlanError(f"`layer_split` {list(self.layer_split)} must give pp={pp} positive layer counts "
                                f"summing to the {m.num_layers} layers of {m.name}")
        if self.network is not None:
            if len(self.network.stage_links) != pp - 1:
                raise PlanError(f"the placement gives {len(self.network.stage_links)} stage links but pp={pp} "
                                f"needs {pp - 1}")
            if self.network.tp is not None and self.network.tp.ranks != tp:
                raise PlanError(f"the placement's TP group has {self.network.tp.ranks} ranks but tp={tp}")
        if not self.device.supports(self.quant.compute_dtype):
            raise PlanError(f"{self.device.name} has no {self.quant.compute_dtype} units to run "
                            f"{self.quant.name}; choose a format whose compute dtype it has "
                            f"({', '.join(self.device.dtypes)})")

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp

    @property
    def stage_layers(self) -> tuple[int, ...]:
        """Layers of each pipeline stage (``layer_split`` or an even split)."""
        return self.layout.stage_layers

    # -- memory: what the deployment is (hwmodels/layout.py)
    @property
    def weight_bytes_per_device(self) -> float:
        return self.layout.weight_bytes_per_device

    @property
    def kv_bytes_per_token_per_device(self) -> float:
        return self.layout.kv_bytes_per_token_per_device

    def kv_capacity_tokens(self, memory_utilization: float = 0.9, activation_bytes: float | None = None) -> int:
        """:meth:`DeploymentLayout.kv_capacity_tokens`."""
        return self.layout.kv_capacity_tokens(memory_utilization, activation_bytes)

    # -- operator table -------------------------------------------------------------------------
    def _build_ops(self) -> None:
        m, d, q, tp = self.model, self.device, self.quant, self.tp
        rows: list[tuple] = []
        act_b = DTYPE_BYTES[q.activation_dtype]
        wb = q.bytes_per_weight
        deq = q.dequant_flops_per_weight
        gemm_group = "bf16" if q.name in ("bf16", "fp16", "fp32") else q.name
        # an iteration passes through every stage: all layers, one after another
        layers_dense = float(m.num_dense_layers)
        layers_moe = float(m.num_moe_layers)
        layers_all = float(m.num_layers)
        H = m.hidden_size
        heads = m.num_heads // tp

        # a GEMM of a format that quantises its activations, priced by 16-bit coefficients, runs the
        # activation-quantisation pass before it (hwmodels/costmodel.py needs_quant_pass): an op of its own
        quant_pass = gemm_group != "bf16" and needs_quant_pass(
            q.activation_dtype, self.profile.lookup(d.arch_class, "gemm", gemm_group)[1])

        def gemm(name, n, k, mult, kind=_GEMM_TOKENS, group=gemm_group, a=act_b, w=wb, dq=deq):
            if mult > 0 and n > 0 and k > 0:
                rows.append((name, "gemm", group, kind, (n, k, a, w, dq), mult, q.compute_dtype))
                if quant_pass and group == gemm_group:
                    # reads the k-wide 16-bit input and writes it quantised ('embedding': one read, one write)
                    rows.append((f"{name}_act_quant", "elementwise", QUANT_PASS_GROUP,
                                 _EW_TOKENS if kind == _GEMM_TOKENS else _EW_SEQS,
                                 (float(ops.ELEMENTWISE_CODE["embedding"]), float(k),
                                  quant_pass_bytes_per_element(q.activation_dtype) / 2.0), mult, "bf16"))

        # attention projections
        if m.mla is not None:
            a = m.mla
            if a.q_lora_rank:
                gemm("q_a_proj", a.q_lora_rank, H, layers_all)
                gemm("q_b_proj", heads * a.qk_head_dim, a.q_lora_rank, layers_all)
            else:
                gemm("q_proj", heads * a.qk_head_dim, H, layers_all)
            gemm("kv_a_proj", a.kv_lora_rank + a.qk_rope_head_dim, H, layers_all)
            gemm("kv_b_proj", heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, layers_all)
            attn_dims = (heads, heads, a.qk_head_dim, a.v_head_dim)
            o_in = heads * a.v_head_dim
        else:
            kvh = max(1, m.num_kv_heads // tp)
            gemm("qkv_proj", (heads + 2 * kvh) * m.head_dim, H, layers_all)
            attn_dims = (heads, kvh, m.head_dim, m.head_dim)
            o_in = heads * m.head_dim
        gemm("o_proj", H, o_in, layers_all)
        # attention itself: one prefill and one decode row per distinct window (0 = full context), each
        # with its own layer count; 'chunked' layers (Llama-4) are priced as a window of the chunk size,
        # an upper bound of the keys a query sees. KV memory (kv_bytes_per_token_per_device) still
        # holds every token on every layer, as vLLM does without its V1 hybrid KV-cache manager.
        kv_group = "fp8" if self.kv.bytes_per_element <= 1.0 else "bf16"
        attn_compute = attention_compute_dtype(d, kv_group)
        groups = m.attention_window_groups
        mixed = self.engine.mixed_decode_factor(d.arch_class, attn_dims[0] / attn_dims[1])
        for window, count in groups:
            par = (*attn_dims, self.kv.bytes_per_element, float(window), mixed)
            tag = "" if len(groups) == 1 or window == 0 else f"_w{window}"
            rows.append((f"attn_prefill{tag}", "attn_prefill", kv_group, _ATTN_PREFILL, par, float(count), attn_compute))
            rows.append((f"attn_decode{tag}", "attn_decode", kv_group, _ATTN_DECODE, par, float(count), attn_compute))
        # MLP: dense layers, then MoE layers
        mats = 2 if m.mlp_gated else 1
        if m.intermediate_size and layers_dense > 0:
            gemm("mlp_up_proj", mats * m.intermediate_size // tp, H, layers_dense)
            gemm("mlp_down_proj", H, m.intermediate_size // tp, layers_dense)
            self._ew(rows, "mlp_act", "activation" if m.mlp_gated else "gelu", m.intermediate_size / tp, layers_dense)
        if m.moe is not None and layers_moe > 0:
            e = m.moe
            gemm("router", e.num_experts, H, layers_moe, group="bf16", a=2.0, w=2.0, dq=0.0)
            moe_tp = tp // self.ep
            dpe = self.dp_ep
            rows.append(("experts", "moe", gemm_group, _MOE,
                         (H, e.expert_intermediate_size / moe_tp, e.top_k, e.num_experts, self.ep * dpe, wb, act_b,
                          1.0 if m.mlp_gated else 0.0, float(dpe) if dpe > 1 else 0.0), layers_moe, q.compute_dtype))
            if dpe > 1:
                # DP + EP (vLLM's allgather_reducescatter all2all backend): gather every rank's hidden
                # states before the experts, reduce-scatter the outputs after them
                topo = _server_group(d, dpe)
                for coll in ("all_gather", "reduce_scatter"):
                    rows.append(_net_row(f"moe_{coll}", coll, H * 2.0 * dpe, layers_moe,
                                         collective_coefficients(coll, topo, arch=d.arch_class)))
            if e.shared_expert_intermediate_size:
                gemm("shared_up_proj", mats * e.shared_expert_intermediate_size // tp, H, layers_moe)
                gemm("shared_down_proj", H, e.shared_expert_intermediate_size // tp, layers_moe)
        # norms, residual adds, rotary embedding
        if self.engine.fused_add_norm and m.norm_type == "rmsnorm" and not m.parallel_residual:
            # fused_add_rms_norm: one kernel reads x and the residual and writes both back
            self._ew(rows, "norms", "norm", 2 * H, m.norms_per_layer * layers_all)
        else:
            self._ew(rows, "norms", "norm", H, m.norms_per_layer * layers_all)
            self._ew(rows, "residual_adds", "add", H, 2 * layers_all)
        if m.position_embedding == "rope":
            rot = (attn_dims[0] + attn_dims[1]) * (m.mla.qk_rope_head_dim if m.mla else m.head_dim * m.rotary_fraction)
            self._ew(rows, "rope", "rope", rot, layers_all)
        # once per iteration (first/last stage): embedding, final norm, LM head, sampling
        self._ew(rows, "embedding", "embedding", H, 1.0)
        self._ew(rows, "final_norm", "norm", H, 1.0 if m.final_norm else 0.0)
        every = self.engine.logits == "all"  # training: logits and loss over every token
        gemm("lm_head", m.vocab_size // tp, m.token_embed_dim, 1.0, kind=_GEMM_TOKENS if every else _GEMM_SEQS,
             group="bf16", a=2.0, w=2.0, dq=0.0)
        if every:
            self._ew(rows, "loss", "softmax", m.vocab_size // tp, 1.0)
        else:
            self._ew(rows, "sampling", "sampling", m.vocab_size, 1.0, row_kind=_EW_SEQS)
        # tensor-parallel all-reduces after attention and after the MLP of every layer
        net = self.network
        if tp > 1:
            rows.extend(self._tp_allreduce_rows(H * 2.0, 2 * layers_all))
        # pipeline: each stage boundary sends the hidden states, every TP rank its 1/tp share
        for b in range(self.pp - 1):
            if net is not None:
                topo, arch = net.stage_links[b], net.arch or d.arch_class
            else:
                topo, arch = _server_group(d, 2), d.arch_class
            coef = collective_coefficients("send_recv", topo, arch=arch)
            rows.append(_net_row(f"pp_send_{b}", "send_recv", H * 2.0 / tp, 1.0, coef))
        self._pack(rows)

    def _tp_allreduce_rows(self, bytes_per_token: float, mult: float) -> list:
        """The TP group's all-reduce rows, one per message-size segment of
        :func:`llmsim.hwmodels.collectives.tp_allreduce_segments`: the placed group (``network.tp``) or
        one server of the device. vLLM's custom all-reduce where the engine uses it and the group is
        one server's NVLink (or xGMI) domain; NCCL segments keep the engine's bus-bandwidth floor."""
        d, tp, net = self.device, self.tp, self.network
        placed = net is not None and net.tp is not None
        topo = net.tp if placed else _server_group(d, tp)
        arch = (net.arch if net is not None and net.arch else "") or d.arch_class
        p2p_domain = topo.nodes == 1 and not topo.host_topology and topo.intra.transport in ("nvlink", "xgmi")
        custom = None
        if p2p_domain and self.engine.custom_allreduce:
            custom = "custom_graph" if self.engine.cuda_graphs else "custom_eager"
        ar_bw = float(self.host_overhead.allreduce_bus_bytes_per_s)
        floor = ops.collective_traffic_factor(0, float(tp)) / ar_bw if ar_bw > 0 else 0.0
        rows = []
        for name, lo, hi, coef in tp_allreduce_segments(topo, custom=custom, arch=arch):
            if name == "nccl":
                label = "allreduce_nccl" if p2p_domain or not placed else "allreduce_network"
                rows.append(_net_row(label, "nccl_all_reduce", bytes_per_token, mult, coef, lo, hi, floor))
            else:
                rows.append(_net_row(f"allreduce_custom_{name.split('/')[1]}", "custom_all_reduce", bytes_per_token,
                                     mult, coef, lo, hi))
        return rows

    @staticmethod
    def _ew(rows, name, kind, width, mult, row_kind=_EW_TOKENS):
        if mult > 0 and width > 0:
            rows.append((name, "elementwise", "any", row_kind,
                         (float(ops.ELEMENTWISE_CODE[kind]), float(width), 2.0), mult, "bf16"))

    def _pack(self, rows) -> None:
        n = len(rows)
        self._net = np.zeros((n, _MAX_NET, 2))
        self._nnet = np.zeros(n, np.int64)
        self.op_names = tuple(r[0] for r in rows)
        self.op_param_keys = []
        self._op_fallback: dict[str, str] = {}
        self._op_sibling: dict[str, str] = {}  # op -> the device its entry was fitted on (sibling transfer)
        self._op_host_floor: dict[str, float] = {}  # op -> host floor (s) of the eager rows its entry was fitted on
        self._cls = np.zeros(n, np.int64)
        self._kind = np.zeros(n, np.int64)
        self._par = np.zeros((n, _PAR_WIDTH))
        self._mult = np.zeros(n)
        self._theta = np.zeros((n, _MAX_FEATURES))
        self._nfeat = np.zeros(n, np.int64)
        self._floor = np.zeros(n)
        self._dev = np.zeros((n, _DEV_LEN))
        self._range = np.zeros((n, 2, _MAX_RANGE))
        self._range[:, 0, :] = -np.inf
        self._range[:, 1, :] = np.inf
        d = self.device
        bw = d.memory_bandwidth_bytes_per_s
        link = d.scale_up_link.bandwidth_bytes_per_s if d.scale_up_link is not None else bw
        for i, (name, cls, group, kind, par, mult, compute, *net) in enumerate(rows):
            if kind == _NET:
                coef = np.asarray(net[0], dtype=np.float64)[:_MAX_NET]
                self._net[i, :len(coef)] = coef
                self._nnet[i] = len(coef)
                self.op_param_keys.append(network_param_key(group))
                self._kind[i] = kind
                self._par[i, :len(par)] = par
                self._mult[i] = mult
                self._cls[i] = eff.CLASS_INDEX[cls]
                self._dev[i, :4] = (d.peak_flops(compute), bw, d.num_sms, link)
                continue
            if group == QUANT_PASS_GROUP:
                p, key = quant_pass_params(self.profile, d.arch_class)
            else:
                p, key = self.profile.lookup(d.arch_class, cls, group)
            self.op_param_keys.append(key)
            self._op_fallback[name] = fallback_kind(key, d.arch_class, cls, group)
            self._cls[i] = eff.CLASS_INDEX[cls]
            self._kind[i] = kind
            self._par[i, :len(par)] = par
            self._mult[i] = mult
            nf = p.theta.size  # efficiency features, then the latency features where fitted
            self._theta[i, :nf] = p.theta
            self._nfeat[i] = nf
            self._floor[i] = p.log_floor
            lo, hi = p.shape_range(cls)
            self._range[i, 0, :lo.size] = lo
            self._range[i, 1, :hi.size] = hi
            v = self.profile.device_vector(d, np.array((d.peak_flops(compute), bw, d.num_sms, link)), compute)
            v = self.profile.sibling_vector(p, d, v, d.peak_flops(compute), compute)  # fitted on another device
            self._dev[i, :v.size] = v
            if eff.has_sibling_reference(v):
                self._op_sibling[name] = p.fitted_device
            if p.host_floor_s > 0:  # fitted on eagerly timed rows: its GPU time under that floor was never seen
                self._op_host_floor[name] = p.host_floor_s
        idle = d.power.idle_w
        self._power = np.array([idle, d.power.tdp_w - idle])

    def calibration_info(self) -> dict:
        """Which calibration entry priced each operator (``arch/class/group``, or 'network' for the
        alpha-beta path), the operators priced by another architecture class's or kernel family's
        coefficients, whether the device's own architecture class is calibrated at all and whether the
        device itself had kernel measurements (hwmodels/data/calibration/uncertainty.json); where entries
        fitted on another device of the class priced operators, `sibling_transfer_from` maps each to it;
        where entries fitted on eagerly timed rows priced operators (``ClassParams.host_floor_s``: their
        measured time never went below the harness's host floor, so shorter GPU times are the fit's
        extrapolation), `host_floor_ops` maps each to that floor in seconds, and the run is extrapolated."""
        from llmsim.hwmodels.uncertainty import default_error_model

        own = self.device.arch_class in self.profile.params
        measured = default_error_model().device_measured(self.device.name)
        fallback = {n: f for n, f in self._op_fallback.items() if f}
        out = {"priced_by": dict(zip(self.op_names, self.op_param_keys)), "fallback_ops": fallback,
               "device_class_calibrated": bool(own), "device_measured": bool(measured),
               "extrapolated": bool(fallback) or not own or not measured or bool(self._op_host_floor)}
        if self._op_host_floor:
            out["host_floor_ops"] = dict(self._op_host_floor)
        if self._op_sibling:  # priced from another device of the class (efficiency.py _combine_sibling)
            out["sibling_transfer_from"] = dict(self._op_sibling)
        return out

    def time_band(self, error_model=None) -> tuple[float, float]:
        """(lo, hi) factors of the 80% interval of an iteration's time (hwmodels/uncertainty.py): every
        operator's band weighted by its share of a nominal prefill (one 512-token prompt) and a nominal
        decode step (32 requests at 1024 cached tokens), the wider of the two; on a device without kernel
        measurements of its own every operator takes its class's leave-one-architecture-out band.
        Operator errors are taken as fully correlated within a run [U]."""
        from llmsim.hwmodels.uncertainty import default_error_model

        em = error_model if error_model is not None else default_error_model()
        measured = em.device_measured(self.device.name) or not em.measured_devices
        e = np.zeros(0, np.int64)
        lo_f, hi_f = math.inf, -math.inf
        for p, o, d in ((np.array([512], np.int64), np.zeros(1, np.int64), e), (e, e, np.full(32, 1024, np.int64))):
            total, _ = self.iteration(p, o, d)
            if not total > 0:
                continue
            t = self._op_time.copy()
            lo = hi = 0.0
            for i, name in enumerate(self.op_names):
                if t[i] <= 0:
                    continue
                per_call = t[i] / self._mult[i] if self._mult[i] > 0 else t[i]
                cls = next(c for c, k in eff.CLASS_INDEX.items() if k == self._cls[i])
                fb = self._op_fallback.get(name, "") if measured else "class"
                a, b, _ = em.band(self.op_param_keys[i], cls, per_call, fb)
                lo += t[i] * math.exp(a)
                hi += t[i] * math.exp(b)
            lo_f, hi_f = min(lo_f, lo / t.sum()), max(hi_f, hi / t.sum())
        return (lo_f, hi_f) if lo_f <= hi_f else (1.0, 1.0)

    # -- the query ----------------------------------------------------------------------------
    def iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray, decode_ctx: np.ndarray) -> tuple[float, float]:
        """(seconds, joules) of one iteration on this replica, as Python floats; token counts as
        int64 arrays (or sequences of ints, converted).

        ``prefill_lens[i]`` new prompt tokens of a request with ``prefill_offsets[i]`` already cached;
        one new token for each request with ``decode_ctx[j]`` tokens cached. An empty batch costs 0.
        With ``dp_ep > 1`` the batch is the whole data-parallel group's: it is split over the ranks
        (:meth:`split_ranks`) and the lock-step takes the slowest rank's time.
        """
        t, e = self._iteration(np.asarray(prefill_lens, np.int64), np.asarray(prefill_offsets, np.int64),
                               np.asarray(decode_ctx, np.int64), self._scratch, self._shape, self._op_time)
        return float(t), float(e)

    def _iteration(self, prefill_lens, prefill_offsets, decode_ctx, scratch, shape, op_time):
        """``iteration`` on int64 arrays with the kernel's work buffers; per-op seconds of the last
        rank with work into ``op_time``."""
        if self.dp_ep > 1:
            t, e = 0.0, 0.0
            for p_l, p_o, d_c in self.split_ranks(prefill_lens, prefill_offsets, decode_ctx):
                t_r, e_r = self._rank_iteration(p_l, p_o, d_c, scratch, shape, op_time)
                t = t if t >= t_r else t_r
                e += e_r
            return t, e
        return self._rank_iteration(prefill_lens, prefill_offsets, decode_ctx, scratch, shape, op_time)

    def split_ranks(self, prefill_lens, prefill_offsets, decode_ctx):
        """The group batch of a ``dp_ep`` deployment as one batch per rank: decodes dealt out in turn,
        each prefill chunk to the rank with the fewest tokens so far (vLLM routes every request to
        one rank; the group's ranks step together because their MoE layers exchange tokens)."""
        n = self.dp_ep
        decode_ctx = np.asarray(decode_ctx, np.int64)
        ranks_d = [decode_ctx[r::n] for r in range(n)]
        load = [float(x.size) for x in ranks_d]
        idx: list[list[int]] = [[] for _ in range(n)]
        for i, length in enumerate(np.asarray(prefill_lens, np.int64).tolist()):
            r = min(range(n), key=lambda k: (load[k], k))
            idx[r].append(i)
            load[r] += length
        out = []
        for r in range(n):
            sel = np.array(idx[r], dtype=np.int64)
            out.append((np.asarray(prefill_lens, np.int64)[sel], np.asarray(prefill_offsets, np.int64)[sel],
                        ranks_d[r]))
        return out

    def _packed_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The op tables packed for the kernels (``_pack_run_tables``), made at first use."""
        if self._run_packed is None:
            self._run_packed = _pack_run_tables(self._cls, self._kind, self._par, self._mult, self._theta,
                                                self._nfeat, self._floor, self._dev, self._power, self._net,
                                                self._nnet, self._range)
        return self._run_packed

    def _rank_iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray,
                        decode_ctx: np.ndarray, scratch: np.ndarray, shape: np.ndarray,
                        op_time: np.ndarray) -> tuple[float, float]:
        n_p = prefill_lens.size
        seqs = n_p + decode_ctx.size
        if seqs == 0:
            return 0.0, 0.0
        by_rows = self._by_rows
        if by_rows is None:
            by_rows = self._by_rows = np.zeros((_BY_ROWS, self._cls.size, 2))
            self._by_rows_have = np.zeros((_BY_ROWS, self._cls.size), np.uint8)
            f_pack, i_pack = self._packed_tables()
            self._iter_aot = _aot_kernel("_iteration_kernel", 3, (
                f_pack, i_pack, self._scratch, self._shape, self._op_time, by_rows, self._by_rows_have))
        f_pack, i_pack = self._run_packed
        fn = self._iter_aot
        if (fn is None or scratch is not self._scratch or shape is not self._shape or op_time is not self._op_time
                or not (_c_array(prefill_lens, _I64) and _c_array(prefill_offsets, _I64)
                        and _c_array(decode_ctx, _I64))):
            fn = _iteration_kernel
        g, e, tokens = fn(prefill_lens, prefill_offsets, decode_ctx, f_pack, i_pack, scratch, shape, op_time, by_rows,
                          self._by_rows_have)
        if self._piecewise:
            tokens = int(tokens)
            if tokens > self._graph_max:
                launch = self._launch_s  # eager (compiled) step: every layer launched from the host
            elif n_p or not self._full_decode:
                launch = self._piece_s  # graph pieces, attention launched between them
            else:
                launch = 0.0  # one full graph
            gpu = g if g >= launch else launch
            host = self._iter_s + self._seq_s * seqs + self._tok_s * tokens
            if n_p:
                host += self._prefill_s + self._prefill_seq_s * n_p
            t = (gpu if gpu >= host else host) if self._async else gpu + host
            t += self._sync_s
        elif n_p:
            t = max(g, self._launch_s) + (self._iter_s + self._prefill_s + self._prefill_seq_s * n_p
                                          + self._seq_s * seqs)
        else:
            t = g
            if seqs > self._graph_max:
                t = max(t, self._launch_s)
            t = t + (self._iter_s + self._seq_s * seqs)
        return t, (e + self._power[0] * (t - g)) * self.tp

    def decode_run(self, decode_ctx: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(seconds[steps], joules[steps]) of consecutive decode-only iterations; step k costs
        exactly ``iteration([], [], decode_ctx + k)`` (the simulator plans decode runs with it)."""
        ctx = np.asarray(decode_ctx, np.int64)
        if self.dp_ep > 1:
            t = np.zeros(int(steps))
            e = np.zeros(int(steps))
            for _, _, d_c in self.split_ranks(_EMPTY_I64, _EMPTY_I64, ctx):
                t_r, e_r = self._rank_decode_run(d_c, steps)
                t = np.maximum(t, t_r)
                e = e + e_r
            return t, e
        return self._rank_decode_run(ctx, steps)

    def decode_run_sums(self, decode_ctx: np.ndarray, steps: int, start_s: float,
                        start_j: float) -> tuple[np.ndarray, np.ndarray]:
        """``decode_run`` as running sums: (end seconds[steps], joules so far[steps]) of the steps from
        ``start_s`` and ``start_j``, the same bits as ``np.add.accumulate`` over ``[start_s, seconds...]``
        and ``[start_j, joules...]`` (the replica's end times and energy, without the numpy passes)."""
        ends = np.empty(int(steps))
        spent = np.empty(int(steps))
        self.decode_run_into(np.asarray(decode_ctx, np.int64), steps, start_s, start_j, ends, spent, 0, 0)
        return ends, spent

    def decode_run_into(self, decode_ctx: np.ndarray, steps: int, start_s: float, start_j: float,
                        ends: np.ndarray, spent: np.ndarray, at: int, ctx_add: int) -> None:
        """``decode_run_sums`` of contexts ``decode_ctx + ctx_add`` (an int64 array) written into
        ``ends[at:at + steps]`` and ``spent[at:at + steps]`` (the simulator's replica keeps a run's
        end times and energies in buffers of its own, so nothing is allocated per call)."""
        ctx = decode_ctx
        seqs = ctx.size
        args = self._run_args
        if args is not None and 0 < seqs < self._run_sizes:  # the simulator's usual call
            mode, launch, host, sync = self._terms[seqs]
            fn = self._run_aot
            if fn is None or not _c_array(ctx, _I64) or not self._run_buffers_ok(ends, spent):
                fn = _decode_run_kernel
            f_pack, i_pack, by_size, have, memo = args
            fn(ctx, steps, f_pack, i_pack, by_size, have, memo, mode, launch, host, sync, self._tp_f, start_s, start_j,
               True, ends, spent, at, ctx_add)
            return
        if self.dp_ep > 1 or seqs == 0:
            t, e = self.decode_run(ctx + ctx_add, steps)
            acc = np.empty(int(steps) + 1)
            acc[0] = start_s
            acc[1:] = t
            np.add.accumulate(acc, out=acc)
            ends[at:at + steps] = acc[1:]
            acc[0] = start_j
            acc[1:] = e
            np.add.accumulate(acc, out=acc)
            spent[at:at + steps] = acc[1:]
            return
        self._rank_decode_run(ctx, steps, float(start_s), float(start_j), True, ends, spent, at, ctx_add)

    def _engine_terms(self, seqs: int) -> tuple:
        """(mode, launch, host, sync) of ``_decode_run_kernel`` for ``seqs`` decodes (engine time per step)."""
        if self._piecewise:
            mode = 2 if self._async else 1
            launch = self._launch_s if seqs > self._graph_max else (0.0 if self._full_decode else self._piece_s)
            host = self._iter_s + self._seq_s * seqs + self._tok_s * seqs
            sync = self._sync_s
        else:
            mode = 0
            launch = self._launch_s if seqs > self._graph_max else -math.inf
            host = self._iter_s + self._seq_s * seqs
            sync = 0.0
        return mode, float(launch), float(host), float(sync)

    def _rank_decode_run(self, ctx: np.ndarray, steps: int, start_s: float = 0.0, start_j: float = 0.0,
                         sums: bool = False, times: np.ndarray | None = None, energies: np.ndarray | None = None,
                         at: int = 0, ctx_add: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-step (seconds, joules) of a decode run on one rank, or with ``times`` given, written there
        (see ``_decode_run_kernel``)."""
        seqs = ctx.size
        if seqs == 0:
            z = np.zeros(int(steps))
            return z, z.copy()
        if times is None:
            times = np.empty(int(steps))
            energies = np.empty(int(steps))
            out = (times, energies)
        else:
            out = None
        args = self._run_args
        if seqs >= self._by_size_have.size or args is None:
            if seqs >= self._by_size_have.size:
                cap = max(2 * seqs, 256)
                grown = np.zeros((cap, self._cls.size, 2))
                grown[:self._by_size.shape[0]] = self._by_size
                have = np.zeros(cap, np.uint8)
                have[:self._by_size_have.size] = self._by_size_have
                self._by_size, self._by_size_have = grown, have
            if self._attn_memo is None:
                self._attn_memo = np.full((_ATTN_MEMO_ROWS, _ATTN_MEMO_COLS), -1.0)
            args = self._run_args = (*self._packed_tables(), self._by_size, self._by_size_have, self._attn_memo)
            self._terms = [self._engine_terms(n) for n in range(self._by_size_have.size)]
            self._run_aot = _aot_kernel("_decode_run_kernel", 2, args)
            self._run_sizes = len(self._terms) if self.dp_ep == 1 else 0
        mode, launch, host, sync = self._terms[seqs]
        fn = self._run_aot
        if fn is None or not _c_array(ctx, _I64) or not self._run_buffers_ok(times, energies):
            fn = _decode_run_kernel
        fn(ctx, int(steps), *args, mode, launch, host, sync, self._tp_f, start_s, start_j, sums, times, energies, at,
           ctx_add)
        return out

    def __getstate__(self) -> dict:
        # an extension function pickles by its module's name, which only this machine's cache can import
        state = dict(self.__dict__)
        state["_iter_aot"] = state["_run_aot"] = None
        state["_aot_bufs"] = {}
        return state

    def _run_buffers_ok(self, times, energies) -> bool:
        """Whether the ahead-of-time decode kernel may write ``times`` and ``energies`` (checked once per
        pair of buffers: each replica passes the same two every call, and replicas share a deployment)."""
        known = self._aot_bufs.get(id(times))
        if known is not None and known[0] is times and known[1] is energies:
            return True
        if _c_array(times, _F64) and _c_array(energies, _F64):
            if len(self._aot_bufs) >= _MAX_BUFFER_PAIRS:
                self._aot_bufs.clear()
            self._aot_bufs[id(times)] = (times, energies)
            return True
        return False

    def cost(self, prefill_lens, prefill_offsets, decode_ctx) -> IterationCost:
        """``iteration`` with a per-operator breakdown (seconds, all layers included); the engine's
        share is ``engine_overhead`` (host time the GPU waits for). With ``dp_ep > 1`` the breakdown
        is that of the last rank with work. Safe to call from several threads on one deployment."""
        p = np.asarray(prefill_lens, np.int64)
        d = np.asarray(decode_ctx, np.int64)
        if p.size + d.size == 0:
            return IterationCost(0.0, 0.0, {})
        # work buffers of this call only, so that threads sharing the deployment do not race
        op_time = np.zeros(len(self.op_names))
        t, e = self._iteration(p, np.asarray(prefill_offsets, np.int64), d, np.zeros_like(self._scratch),
                               np.zeros_like(self._shape), op_time)
        t, e = float(t), float(e)
        breakdown = {name: float(v) for name, v in zip(self.op_names, op_time) if v > 0}
        extra = t - sum(breakdown.values())
        if extra > 0:
            breakdown["engine_overhead"] = extra
        return IterationCost(t, e, breakdown)

    # -- transfers: what the deployment is (hwmodels/layout.py)
    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes of one token summed over the replica's devices."""
        return self.layout.kv_bytes_per_token

    def swap_seconds_per_token(self) -> float:
        return self.layout.swap_seconds_per_token()

    def host_swap_capacity_tokens(self, swap_space_bytes: float) -> int:
        return self.layout.host_swap_capacity_tokens(swap_space_bytes)


def _divisors(n: int, limit: int) -> list[int]:
    return [i for i in range(1, min(n, limit) + 1) if n % i == 0]
