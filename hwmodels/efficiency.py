"""Calibrated efficiency model: what a roofline misses, per operator class.

An operator's time is ``t = floor + exp(base + x . theta)`` where
  base   = log of the roofline time max(FLOPs / peak, bytes / bandwidth) from the datasheet,
  x      = dimensionless features of the shape (log sizes, compute/memory balance, tile and wave
           quantisation against the device's SM count), fixed per operator class,
  theta  = coefficients fitted per architecture class (validation/calibrate.py),
  floor  = a fitted small-shape latency floor (launch and synchronisation).
Features only see datasheet numbers and the shape, so a device with no measurements is predicted
from its datasheet plus the coefficients of its architecture class.

The feature code is compiled (numba) and shared by the fit, the validation and the simulator's
per-iteration query: one definition, no per-op Python on the hot path.

Shape rows (float64) per class, with ``flops`` and ``bytes`` from workloads.operators:
  gemm          m, n, k, flops, bytes
  attn_prefill  batch, new_tokens, context, heads, kv_heads, head_dim, window, flops, bytes
  attn_decode   batch, context, heads, kv_heads, head_dim, window, flops, bytes
  moe           tokens, hidden, inter_per_rank, topk, experts, ep, skew, flops, bytes
  elementwise   kind_code, flops, bytes
  collective    kind_code, ranks, message_bytes, traffic_factor
Device vector (float64): peak FLOP/s for the op's compute dtype, memory bandwidth (B/s), SM count,
link bandwidth (B/s per direction); optionally L2 capacity (bytes) and L2 bandwidth (B/s), which switch
on the L2 term of the memory roofline (``_mem_time``; hwmodels/priors.py ``l2_vector``). Off (4 entries)
the prices are today's, bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
from llmsim.workloads.jitcache import kernel as njit  # numba on demand

from llmsim.workloads import jitcache
from llmsim.workloads import operators as ops

jitcache.guard(__file__, ops.__file__, module_name=__name__)  # the efficiency kernels inline operators.py

CLASS_INDEX = {"gemm": 0, "attn_prefill": 1, "attn_decode": 2, "moe": 3, "elementwise": 4, "collective": 5}
NUM_FEATURES = {"gemm": 52 + 63 + 63 + 49, "attn_prefill": 52 + 40 + 25 + 40, "attn_decode": 54 + 70 + 21 + 30, "moe": 20, "elementwise": 18, "collective": 14}
SHAPE_COLUMNS = {
    "gemm": ("m", "n", "k", "flops", "bytes"),
    "attn_prefill": ("batch", "new_tokens", "context", "heads", "kv_heads", "head_dim", "window", "flops", "bytes"),
    "attn_decode": ("batch", "context", "heads", "kv_heads", "head_dim", "window", "flops", "bytes"),
    "moe": ("tokens", "hidden", "inter", "topk", "experts", "ep", "skew", "flops", "bytes"),
    "elementwise": ("kind_code", "flops", "bytes"),
    "collective": ("kind_code", "ranks", "message_bytes", "traffic_factor"),
}
#: Device-independent latency features per class (hwmodels/efficiency.py ``_fill_latency``); a class whose
#: theta carries NUM_FEATURES + NUM_LATENCY values prices ``floor + latency(shape) + roofline x 1/efficiency``.
NUM_LATENCY = {"gemm": 4, "attn_prefill": 6, "attn_decode": 3, "moe": 5, "elementwise": 2, "collective": 0}
#: Latency coefficients a fit holds instead of fitting them, per class: (index into the latency
#: features, value). Decode attention's latency is one device-independent time per wave of CTAs
#: (``_fill_latency``: the log-wave column's coefficient held at 1, so latency = tau x waves).
LATENCY_HELD = {"attn_decode": ((1, 1.0),)}
_NF = np.array([NUM_FEATURES[c] for c in sorted(CLASS_INDEX, key=CLASS_INDEX.get)], dtype=np.int64)
FEATURE_SET_VERSION = "v4"
_GEMM_SPLIT_M = 128.0  # tokens: below it engines pick GEMV-like skinny kernels, above it tiled GEMMs
# The polynomial and correction terms see sizes clamped to the range every calibrated GPU was measured on, so the
# fitted efficiency is held flat beyond it instead of extrapolating a cubic (the roofline base still
# scales with the real size): GEMM rows <= 8192 tokens, prefill batch <= 256 and prompt <= 16384,
# decode batch <= 2048 and context <= 131072.
_MAX_GEMM_M = 8192.0
_MAX_PREFILL_BATCH, _MAX_PREFILL_SEQ = 256.0, 16384.0
_MAX_DECODE_BATCH, _MAX_DECODE_CTX = 2048.0, 131072.0


@njit(cache=True, inline="always")
def _l(x):
    return math.log2(max(x, 1.0)) / 10.0


@njit(cache=True)
def _monomials(v, degree, x, j):
    """All monomials of the variables ``v`` (a tuple) up to ``degree`` (<= 3), constant included,
    written from x[j]; returns the next free index. 3 variables: 10 terms at degree 2, 20 at 3;
    4 variables: 35 terms at degree 3."""
    n = len(v)
    x[j] = 1.0
    j += 1
    for i in range(n):
        x[j] = v[i]
        j += 1
    if degree >= 2:
        for i in range(n):
            for k in range(i, n):
                x[j] = v[i] * v[k]
                j += 1
    if degree >= 3:
        for i in range(n):
            for k in range(i, n):
                for m in range(k, n):
                    x[j] = v[i] * v[k] * v[m]
                    j += 1
    return j


#: Exponent of the L2 hit share 1 / (1 + (working set / L2 capacity)^p) of the optional L2 term (``_mem_time``):
#: a smooth step at the capacity, ~94% hits at half the capacity, ~6% at twice it [U: a shape chosen, not fitted].
L2_HIT_EXPONENT = 4.0
#: Device-vector length with the L2 entries (capacity bytes, L2 bandwidth B/s) after the four base entries.
DEV_WITH_L2 = 6
#: Device-vector length with the sibling-transfer entries (the fitted device's peak FLOP/s and bandwidth B/s,
#: and the class's streaming share of DRAM bandwidth, after the L2 entries, which are 0 when the L2 term is
#: off): ``_combine_sibling``.
DEV_WITH_REF = 9
#: ... and one more: the fitted device's SM cycles per second over the priced device's (``_combine_sibling``).
DEV_WITH_CYCLES = DEV_WITH_REF + 1
#: Sharpness of the memory-bound share w = 1 / (1 + (t_compute / t_memory)^p) of ``_combine_sibling``: ~1 for a
#: shape with half the compute time of its memory time, 0.5 at the ridge [U: a shape chosen, not fitted].
SIBLING_BOUND_EXPONENT = 4.0


@njit(cache=True, inline="always")
def _mem_time(nbytes, dev):
    """Seconds to stream ``nbytes``: DRAM bandwidth alone on a 4-entry device vector (the default, and the
    serving path: weights and KV do not stay in L2); with the optional L2 entries (dev[4] = L2 capacity
    bytes > 0, dev[5] = L2 bandwidth B/s) a working set that fits L2 streams at L2 bandwidth, blended by
    the hit share h = 1 / (1 + (bytes / capacity)^p): t = bytes x (h / B_L2 + (1 - h) / B_DRAM). The blend is
    increasing in bytes and never slower for more capacity or either bandwidth (B_L2 is held >= B_DRAM)."""
    if dev.shape[0] < DEV_WITH_L2 or dev[4] <= 0.0 or dev[5] <= 0.0:
        return nbytes / dev[1]
    h = 1.0 / (1.0 + (nbytes / dev[4]) ** L2_HIT_EXPONENT)
    return nbytes * (h / max(dev[5], dev[1]) + (1.0 - h) / dev[1])


@njit(cache=True)
def _balance(flops, nbytes, dev, x, j):
    """Arithmetic-intensity terms and the log roofline time; returns (j, base).

    The features see only the shape's intensity (FLOP per byte, centred on 300), never the
    device's peaks: the device enters through the roofline base alone, so a device with more
    FLOP/s or bandwidth can never be predicted slower for the same shape.
    """
    f = max(flops, 1.0)
    b = max(nbytes, 1.0)
    r = math.log(f / b / 300.0)
    x[j] = r / 10.0
    x[j + 1] = (r / 10.0) ** 2
    x[j + 2] = max(r, 0.0) / 10.0
    return j + 3, math.log(max(f / dev[0], _mem_time(b, dev)))


@njit(cache=True)
def _wave_efficiency(ctas, sms):
    """Fraction of SM slots busy when ``ctas`` blocks run in whole waves over ``sms`` SMs."""
    c = max(ctas, 1.0)
    return c / (math.ceil(c / sms) * sms)


@njit(cache=True)
def _fa_block_n(head_dim):
    """KV tile length of FlashAttention-3's forward kernels by head dimension (tokens) [inferred
    from its sm90 tile-size table; the fit absorbs the residual]."""
    if head_dim <= 64:
        return 192.0
    if head_dim <= 128:
        return 176.0
    if head_dim <= 192:
        return 112.0
    if head_dim <= 256:
        return 80.0
    return 64.0


@njit(cache=True)
def _fa_num_splits(mblocks, nblocks, sms):
    """Split-KV count FlashAttention picks (flash_api num_splits_heuristic): split the KV sequence
    only when the (batch x heads x query-block) tiles fill less than 80% of the SMs, choosing the
    fewest splits within 85% of the best wave efficiency."""
    if mblocks >= 0.8 * sms:
        return 1.0
    max_splits = int(min(128.0, sms, nblocks))
    best = 0.0
    for sp in range(1, max_splits + 1):
        if sp > 1 and math.ceil(nblocks / sp) == math.ceil(nblocks / (sp - 1)):
            continue
        w = mblocks * sp / sms
        best = max(best, w / math.ceil(w))
    for sp in range(1, max_splits + 1):
        if sp > 1 and math.ceil(nblocks / sp) == math.ceil(nblocks / (sp - 1)):
            continue
        w = mblocks * sp / sms
        if w / math.ceil(w) >= 0.85 * best:
            return float(sp)
    return 1.0


@njit(cache=True)
def _split_features(mblocks, nblocks, sms, x, j):
    """Parallelism after split-KV: log splits, wave efficiency, KV tiles per split, waves (5 terms)."""
    sp = _fa_num_splits(mblocks, nblocks, sms)
    waves = mblocks * sp / sms
    x[j] = math.log2(sp) / 10.0
    x[j + 1] = math.log(waves / math.ceil(waves))
    x[j + 2] = math.log2(math.ceil(nblocks / sp)) / 10.0
    x[j + 3] = x[j] * x[j]
    x[j + 4] = math.log2(math.ceil(waves)) / 10.0
    return j + 5


@njit(cache=True)
def _hat2(u, u0, nu, v, v0, nv, x, j):
    """Tensor product of piecewise-linear hats over two log2 coordinates, knots every 2 octaves
    from u0 (nu knots) and v0 (nv knots); coordinates are clamped to the knot range so the edge
    correction extends flat. A coarse, smooth efficiency correction: at most 4 non-zero terms."""
    a = min(max((u - u0) / 2.0, 0.0), nu - 1.0)
    b = min(max((v - v0) / 2.0, 0.0), nv - 1.0)
    ia = min(int(a), nu - 2)
    ib = min(int(b), nv - 2)
    fa = a - ia
    fb = b - ib
    x[j + ia * nv + ib] += (1.0 - fa) * (1.0 - fb)
    x[j + (ia + 1) * nv + ib] += fa * (1.0 - fb)
    x[j + ia * nv + ib + 1] += (1.0 - fa) * fb
    x[j + (ia + 1) * nv + ib + 1] += fa * fb
    return j + nu * nv


@njit(cache=True)
def _fill(cls, s, dev, x):
    """Write the feature row of shape ``s`` (class ``cls``) into ``x`` (efficiency features, then the
    latency features when ``x`` is longer than NUM_FEATURES); return the log roofline time."""
    base = _fill_efficiency(cls, s, dev, x)
    if x.size > _NF[cls]:
        _fill_latency(cls, s, dev, x, _NF[cls])
    return base


@njit(cache=True)
def _fill_latency(cls, s, dev, x, j):
    """Device-independent latency features (launch, synchronisation, tail), written from x[j]: a
    constant and the log sizes of the shape (clamped like the efficiency features); for decode
    attention the log of the waves of CTAs the kernel runs over the device's SMs and whether it
    splits the KV sequence (a combine pass). Decode holds the waves coefficient at 1
    (``LATENCY_HELD``): each wave of small CTAs costs a fixed time however fast the device streams,
    which a roofline-proportional term cannot express."""
    x[j] = 1.0
    if cls == 0:
        x[j + 1] = _l(min(s[0], _MAX_GEMM_M))
        x[j + 2] = _l(s[1])
        x[j + 3] = _l(s[2])
    elif cls == 1:
        x[j + 1] = _l(min(s[0], _MAX_PREFILL_BATCH))
        x[j + 2] = _l(min(s[1], _MAX_PREFILL_SEQ))
        x[j + 3] = _l(s[3])
        x[j + 4] = _l(s[5]) - 0.7
        x[j + 5] = _l(1.0 + s[2])
    elif cls == 2:
        b, L, h, kvh, d, w = s[0], s[1], s[2], s[3], s[4], s[5]
        kv_len = min(L, w) if w > 0 else L
        mblocks = b * kvh * math.ceil(h / max(kvh, 1.0) / 64.0)  # pack-GQA query blocks, as the efficiency features
        splits = _fa_num_splits(mblocks, math.ceil(kv_len / _fa_block_n(d)), dev[2])
        x[j + 1] = math.log(math.ceil(mblocks * splits / dev[2]))
        x[j + 2] = 1.0 if splits > 1.0 else 0.0
    elif cls == 3:
        x[j + 1] = _l(s[0] * s[3] / max(s[4], 1.0))
        x[j + 2] = _l(s[1]) - 1.2
        x[j + 3] = _l(s[2]) - 1.1
        x[j + 4] = _l(s[3])
    elif cls == 4:
        x[j + 1] = _l(max(s[2], 1.0)) - 2.0


@njit(cache=True, inline="always")
def _combine(cls, base, x, log_floor, theta):
    """floor + roofline x exp(x . theta_eff) [+ exp(z . theta_lat) when theta carries latency terms]."""
    nf = min(_NF[cls], theta.shape[0])
    acc = base
    for j in range(nf):
        acc += x[j] * theta[j]
    t = math.exp(log_floor) + math.exp(acc)
    if theta.shape[0] > nf:
        lat = 0.0
        for j in range(nf, theta.shape[0]):
            lat += x[j] * theta[j]
        t += math.exp(lat)
    return t


@njit(cache=True)
def _fill_efficiency(cls, s, dev, x):
    """Write the efficiency features of shape ``s`` (class ``cls``) into ``x``; return the log roofline time."""
    x[:] = 0.0
    if cls == 0:  # gemm
        m, n, k = s[0], s[1], s[2]
        off = 0 if m <= _GEMM_SPLIT_M else 26
        j = _monomials((_l(min(m, _MAX_GEMM_M)), _l(n), _l(k)), 3, x, off)
        j, base = _balance(s[3], s[4], dev, x, j)
        for tile_m in (64.0, 128.0, 256.0):
            tiles = math.ceil(m / tile_m) * math.ceil(n / 128.0)
            x[j] = math.log(_wave_efficiency(tiles, dev[2]))
            j += 1
        lm, ln, lk = math.log2(min(m, _MAX_GEMM_M)), math.log2(n), math.log2(k)
        j = _hat2(lm, 0.0, 9, ln, 4.0, 7, x, 52)
        j = _hat2(lm, 0.0, 9, lk, 4.0, 7, x, j)
        _hat2(ln, 4.0, 7, lk, 4.0, 7, x, j)
        return base
    if cls == 1:  # attn_prefill
        b, sq, ctx, h, kvh, d, w = s[0], s[1], s[2], s[3], s[4], s[5], s[6]
        lb, ls = _l(min(b, _MAX_PREFILL_BATCH)), _l(min(sq, _MAX_PREFILL_SEQ))
        lh, ld = _l(h), _l(d) - 0.7
        lg, lc = _l(h / max(kvh, 1.0)), _l(1.0 + ctx)
        j = _monomials((lb, ls, lh, ld), 3, x, 0)
        x[j] = lg
        x[j + 1] = lg * ls
        x[j + 2] = lg * lb
        x[j + 3] = lc
        x[j + 4] = lc * ls
        span = sq + ctx
        x[j + 5] = 1.0 if w > 0 else 0.0
        x[j + 6] = math.log(min(w, span) / span) / 10.0 if w > 0 else 0.0
        x[j + 7] = x[j + 6] * ls
        j += 8
        j, base = _balance(s[7], s[8], dev, x, j)
        x[j] = math.log(_wave_efficiency(b * h * math.ceil(sq / 128.0), dev[2]))
        kv_len = min(span, max(w, sq)) if w > 0 else span
        j = _split_features(b * h * math.ceil(sq / 128.0), math.ceil(kv_len / _fa_block_n(d)), dev[2], x, j + 1)
        lb2, ls2 = math.log2(min(b, _MAX_PREFILL_BATCH)), math.log2(min(sq, _MAX_PREFILL_SEQ))
        lh2 = math.log2(h)
        j = _hat2(lb2, 0.0, 5, ls2, 0.0, 8, x, j)
        j = _hat2(lb2, 0.0, 5, lh2, 0.0, 5, x, j)
        _hat2(ls2, 0.0, 8, lh2, 0.0, 5, x, j)
        return base
    if cls == 2:  # attn_decode
        b, L, h, kvh, d, w = s[0], s[1], s[2], s[3], s[4], s[5]
        lb, lL = _l(min(b, _MAX_DECODE_BATCH)), _l(min(L, _MAX_DECODE_CTX))
        lk, ld = _l(kvh), _l(d) - 0.7
        lg = _l(h / max(kvh, 1.0))
        j = _monomials((lb, lL, lk, ld), 3, x, 0)
        x[j] = lg
        x[j + 1] = lg * lg
        x[j + 2] = lg * lb
        x[j + 3] = lg * lL
        x[j + 4] = 1.0 if w > 0 else 0.0
        x[j + 5] = math.log(min(w, L) / L) / 10.0 if w > 0 else 0.0
        x[j + 6] = x[j + 5] * lb
        # paged decode kernels change their split of the KV sequence past one 128-token tile
        x[j + 7] = max(lL - 0.7, 0.0)
        x[j + 8] = 1.0 if L > 128.0 else 0.0
        x[j + 9] = x[j + 7] * lb
        j += 10
        j, base = _balance(s[6], s[7], dev, x, j)
        x[j] = math.log(_wave_efficiency(b * kvh, dev[2]))
        kv_len = min(L, w) if w > 0 else L
        # decode packs a KV head's query heads into one 64-row query block (pack-GQA)
        mblocks = b * kvh * math.ceil(h / max(kvh, 1.0) / 64.0)
        j = _split_features(mblocks, math.ceil(kv_len / _fa_block_n(d)), dev[2], x, j + 1)
        lb2, lL2 = math.log2(min(b, _MAX_DECODE_BATCH)), math.log2(min(L, _MAX_DECODE_CTX))
        lk2 = math.log2(kvh)
        j = _hat2(lb2, 0.0, 7, lL2, 0.0, 10, x, j)
        j = _hat2(lb2, 0.0, 7, lk2, 0.0, 3, x, j)
        _hat2(lL2, 0.0, 10, lk2, 0.0, 3, x, j)
        return base
    if cls == 3:  # moe
        T, H, I, K, E, ep, skew = s[0], s[1], s[2], s[3], s[4], s[5], s[6]
        lt = _l(T * K / max(E, 1.0))
        j = _monomials((lt, _l(H) - 1.2, _l(I) - 1.1), 2, x, 0)
        x[j] = _l(E / max(ep, 1.0))
        x[j + 1] = _l(K)
        x[j + 2] = skew
        x[j + 3] = skew * lt
        x[j + 4] = lt * lt * lt
        x[j + 5] = _l(T)
        x[j + 6] = _l(T) ** 2
        j += 7
        j, base = _balance(s[7], s[8], dev, x, j)
        return base
    if cls == 4:  # elementwise
        code = int(s[0])
        nbytes = max(s[2], 1.0)
        lB = _l(nbytes) - 2.0
        x[code] = 1.0
        x[8 + code] = lB
        x[16] = lB * lB
        x[17] = lB * lB * lB
        return math.log(_mem_time(nbytes, dev))
    # collective
    code = int(s[0])
    ranks = s[1]
    nbytes = max(s[2], 1.0)
    lB = _l(nbytes) - 2.0
    x[code] = 1.0
    x[5 + code] = lB
    x[10] = lB * lB
    x[11] = _l(ranks)
    x[12] = _l(ranks) * lB
    x[13] = lB * lB * lB
    return math.log(max(nbytes * s[3], 1.0) / dev[3])


@njit(cache=True)
def features(cls, shapes, dev, nfeat):
    """Feature matrix and log-roofline base of every shape row (used by the fit)."""
    n = shapes.shape[0]
    X = np.zeros((n, nfeat))
    base = np.zeros(n)
    for i in range(n):
        base[i] = _fill(cls, shapes[i], dev, X[i])
    return X, base


@njit(cache=True)
def predict_rows(cls, shapes, dev, log_floor, theta):
    """Predicted seconds of every shape row."""
    n = shapes.shape[0]
    out = np.empty(n)
    x = np.zeros(theta.shape[0])
    for i in range(n):
        base = _fill(cls, shapes[i], dev, x)
        out[i] = _combine(cls, base, x, log_floor, theta)
    return out


@njit(cache=True)
def predict_one(cls, shape, dev, log_floor, theta, scratch):
    """Predicted seconds of one shape row; ``scratch`` is a reusable feature buffer."""
    base = _fill(cls, shape, dev, scratch)
    return _combine(cls, base, scratch, log_floor, theta)


# --------------------------------------------------------------------------- measured shape range
# Shape columns whose fitted range is recorded per (class, op kind, group) at fit time. Outside that
# box the features see the nearest measured shape (each column clamped into [lo, hi]) while the
# roofline base keeps the true shape: time = roofline(true shape) x efficiency(nearest measured
# shape), so bytes streamed and FLOPs follow physics where no kernel was measured. Inside the box
# the prediction is computed exactly as without a range (bit-identical).
RANGE_COLUMNS = {
    "gemm": ("m", "n", "k"),
    # prior context is left free: it enters the features as the split-KV length, and the A100/H100
    # prefill data (step 0) never measured it, so clamping it would price a chunk after 16K cached
    # tokens at the efficiency of a tiny chunk without them (RTX 4090: 55% -> 94% error)
    "attn_prefill": ("batch", "new_tokens", "heads", "kv_heads", "head_dim"),
    "attn_decode": ("batch", "context", "heads", "kv_heads", "head_dim"),
    "moe": ("tokens", "hidden", "inter", "topk", "experts"),
    "elementwise": (),
    "collective": (),
}
NUM_RANGE = {c: len(v) for c, v in RANGE_COLUMNS.items()}
_MAX_RANGE = 6
# position of range column j of class c in its shape row
_RANGE_POS = np.zeros((len(CLASS_INDEX), _MAX_RANGE), dtype=np.int64)
for _c, _cols in RANGE_COLUMNS.items():
    for _j, _name in enumerate(_cols):
        _RANGE_POS[CLASS_INDEX[_c], _j] = SHAPE_COLUMNS[_c].index(_name)


def no_range(op_class: str) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) that clamp nothing (a profile fitted before ranges were recorded)."""
    n = NUM_RANGE[op_class]
    return np.full(n, -np.inf), np.full(n, np.inf)


@njit(cache=True, inline="always")
def _outside(cls, s, lo, hi):
    for j in range(lo.size):
        v = s[_RANGE_POS[cls, j]]
        if v < lo[j] or v > hi[j]:
            return True
    return False


@njit(cache=True)
def _nominal_work(cls, s):
    """FLOPs and bytes of shape row ``s`` with 2-byte elements (ratios only: see _clamp_row)."""
    if cls == 0:
        return ops.gemm_work(s[0], s[1], s[2], 2.0, 2.0)
    if cls == 1:
        return ops.attention_prefill_work(s[0], s[1], s[2], s[3], s[4], s[5], s[5], 2.0, s[6])
    if cls == 2:
        return ops.attention_decode_work(s[0], s[1], s[2], s[3], s[4], s[4], 2.0, s[5])
    return ops.moe_work(s[0], s[1], s[2], s[3], s[4], s[5], 2.0, 2.0, True)


@njit(cache=True)
def _clamp_row(cls, s, lo, hi, out):
    """``out`` = ``s`` with its range columns clamped into [lo, hi] and its FLOPs and bytes scaled by
    the work ratio of the clamped to the true shape (so its arithmetic intensity is the clamped one's)."""
    n = s.size
    for j in range(n):
        out[j] = s[j]
    for j in range(lo.size):
        c = _RANGE_POS[cls, j]
        out[c] = min(max(s[c], lo[j]), hi[j])
    f0, b0 = _nominal_work(cls, s)
    f1, b1 = _nominal_work(cls, out)
    out[n - 2] = s[n - 2] * (f1 / f0) if f0 > 0.0 else f1
    out[n - 1] = s[n - 1] * (b1 / b0) if b0 > 0.0 else b1


@njit(cache=True)
def _true_base(s, dev):
    n = s.size
    return math.log(max(max(s[n - 2], 1.0) / dev[0], _mem_time(max(s[n - 1], 1.0), dev)))


@njit(cache=True, inline="always")
def has_sibling_reference(dev):
    """Whether device vector ``dev`` carries a fitted device's peaks (``Profile.sibling_vector``): it is then
    priced by ``_combine_sibling``."""
    return dev.shape[0] >= DEV_WITH_REF and dev[DEV_WITH_REF - 2] > 0.0


@njit(cache=True, inline="always")
def _combine_sibling(cls, s, base, x, log_floor, theta, dev):
    """Price shape ``s`` on a sibling of the device the coefficients were fitted on (dev[6], dev[7]: that
    device's peak FLOP/s and bandwidth B/s; dev[8]: the share eta of DRAM bandwidth that streaming kernels
    of the class reach; same architecture class and kernels).

    On the fitted device the time is floor + latency + R x E (R: roofline seconds, E >= 1 the fitted
    inverse efficiency). The excess R (E - 1) is split by how memory-bound the shape is there,
    w = 1 / (1 + (t_compute / t_memory)^p) (p = SIBLING_BOUND_EXPONENT). Of the memory-side share, up to
    the streaming shortfall 1 / eta - 1 is bandwidth efficiency and scales with the sibling's roofline; the
    rest is DRAM latency and too few bytes in flight, which a sibling with more bandwidth and the same SMs
    does not shorten, so it stays in seconds. The compute-side share (tile and pipeline losses) scales with
    the sibling's roofline,
        t = floor + latency + R (1 + (E - 1)(1 - w) + w min(E - 1, 1/eta - 1)) + R_fit w max(0, E - 1/eta),
    or, where dev[9] = k (the fitted device's SM cycles per second over the sibling's) is given, with k:
        t = floor + latency + R (1 + w min(E - 1, 1/eta - 1)) + R_fit ((E - 1)(1 - w) k + w max(0, E - 1/eta)).
    It equals the plain form on the fitted device; it grows with R, so a faster sibling is never slower;
    where E < 1 (faster than the datasheet roofline) the plain form prices it."""
    nf = min(_NF[cls], theta.shape[0])
    acc = 0.0
    for j in range(nf):
        acc += x[j] * theta[j]
    lat = 0.0
    if theta.shape[0] > nf:
        z = 0.0
        for j in range(nf, theta.shape[0]):
            z += x[j] * theta[j]
        lat = math.exp(z)
    e_inv = math.exp(acc)
    r = math.exp(base)
    floor = math.exp(log_floor)
    if e_inv <= 1.0:
        return floor + r * e_inv + lat
    n = s.size
    t_mem = max(s[n - 1], 1.0) / dev[7]
    t_cmp = max(s[n - 2], 1.0) / dev[6] if cls != 4 else 0.0  # elementwise kernels: memory roofline only
    w = 1.0 / (1.0 + (t_cmp / t_mem) ** SIBLING_BOUND_EXPONENT)
    stream = 1.0 / dev[8] - 1.0
    held = max(e_inv - 1.0 - stream, 0.0)
    r_fit = max(t_mem, t_cmp)
    if dev.shape[0] >= DEV_WITH_CYCLES and dev[DEV_WITH_REF] > 0.0:
        # the compute-side excess is work per SM cycle (prologue, epilogue, pipeline bubbles): scaled by the
        # fitted device's SM cycles per second over this one's, not by the FLOP roofline (a sibling whose SMs
        # do twice the FLOPs a clock does not halve it); the same as the roofline ratio where both do equal work
        return (floor + lat + r * (1.0 + w * min(e_inv - 1.0, stream))
                + r_fit * ((e_inv - 1.0) * (1.0 - w) * dev[DEV_WITH_REF] + w * held))
    scaled = 1.0 + (e_inv - 1.0) * (1.0 - w) + w * min(e_inv - 1.0, stream)
    return floor + lat + r * scaled + r_fit * w * held


@njit(cache=True, inline="always")
def _predict(cls, s, dev, log_floor, theta, x, lo, hi, sc):
    if lo.size == 0 or not _outside(cls, s, lo, hi):
        base = _fill(cls, s, dev, x)
    else:
        _clamp_row(cls, s, lo, hi, sc[:s.size])
        _fill(cls, sc[:s.size], dev, x)
        base = _true_base(s, dev)
    if cls != 5 and has_sibling_reference(dev):
        return _combine_sibling(cls, s, base, x, log_floor, theta, dev)
    return _combine(cls, base, x, log_floor, theta)


@njit(cache=True)
def predict_rows_ranged(cls, shapes, dev, log_floor, theta, lo, hi):
    """Predicted seconds of every shape row, with the fitted range ``lo``/``hi`` (RANGE_COLUMNS)."""
    n = shapes.shape[0]
    out = np.empty(n)
    x = np.zeros(theta.shape[0])
    sc = np.zeros(shapes.shape[1])
    for i in range(n):
        out[i] = _predict(cls, shapes[i], dev, log_floor, theta, x, lo, hi, sc)
    return out


@njit(cache=True)
def predict_one_ranged(cls, shape, dev, log_floor, theta, scratch, lo, hi, shape_scratch):
    """Predicted seconds of one shape row; ``scratch`` / ``shape_scratch`` are reusable buffers."""
    return _predict(cls, shape, dev, log_floor, theta, scratch, lo, hi, shape_scratch)


@njit(cache=True)
def extrapolated_rows(cls, shapes, lo, hi):
    """True for each shape row outside the fitted range (its efficiency is the nearest measured one's)."""
    out = np.zeros(shapes.shape[0], dtype=np.bool_)
    if lo.size == 0:
        return out
    for i in range(shapes.shape[0]):
        out[i] = _outside(cls, shapes[i], lo, hi)
    return out


def shape_range(op_class: str, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the range columns over fitted shape rows."""
    if NUM_RANGE[op_class] == 0 or len(shapes) == 0:
        return no_range(op_class)
    pos = [SHAPE_COLUMNS[op_class].index(c) for c in RANGE_COLUMNS[op_class]]
    return shapes[:, pos].min(axis=0).astype(np.float64), shapes[:, pos].max(axis=0).astype(np.float64)
