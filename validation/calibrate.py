"""Fit the efficiency model's coefficients on measured operator runs.

The fit never sees the rows it will be scored on: each row's shape key is hashed with the
profile's salt, and the rows whose hash falls in the hold-out fraction are dropped before any
feature is computed (``split_of`` in validation/loaders.py). The profile records the rule and the
sha256 of every file it read, so `simulate validate` can say how many scored rows were in the fit.

Build the shipped profile (fits on the training split of validation/data/kernels/):
    simulate fit-kernels --default
Refit only some architecture classes into it, keeping every other class byte-identical:
    simulate fit-kernels --default --arch ada --arch blackwell-consumer
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.calibration import GENERIC, ROOFLINES, ClassParams, Profile, load_profile
from llmsim.workloads.errors import ConfigError
from llmsim.hwmodels.costmodel import operator_groups
from llmsim.hwmodels.devices import get_device
from llmsim.workloads.operators import KIND_CLASS
from llmsim.validation.loaders import detect_format, load_measurements, split_of


def _solve(a, b, **kw):
    """``scipy.linalg.solve`` (scipy: the ``calibrate`` extra)."""
    from llmsim.workloads.extras import require

    return require("scipy.linalg", "calibration").solve(a, b, **kw)


DEFAULT_SALT = "llmsim-calib-v1"
DEFAULT_HOLDOUT = 0.2
#: Roofline the features see in a new fit ('datasheet' or 'achieved': hwmodels/priors.py).
DEFAULT_ROOFLINE = "datasheet"
#: Latency constants (seconds) a fit with held latency coefficients starts from (``fit_class(held=)``);
#: starting points of the descent only, spanning sub-microsecond to a few microseconds per wave.
LATENCY_STARTS_S = (3e-7, 1e-6, 3e-6)
RIDGE = 1e-3  # shrinks coefficients toward the roofline so sparse corners do not extrapolate wildly
KERNEL_LEVEL_CLASSES = ("gemm", "attn_prefill", "attn_decode", "moe", "collective")
# The generic class (the fallback of classes without measurements: B200, CDNA, ...) stays the fit of
# the datacenter GPUs' sources; LLMServingSim's GDDR cards fit only their own classes.
GENERIC_FORMATS = ("aiconfigurator", "vidur", "llmcompass")
SHIPPED_DATA = Path(__file__).parent / "data" / "kernels"
SHIPPED_PROFILE = Path(__file__).parent.parent / "hwmodels" / "data" / "calibration" / "default.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fit_class(X: np.ndarray, base: np.ndarray, seconds: np.ndarray, *, Z: np.ndarray | None = None,
              f_scale: float = 0.05, max_iter: int = 60, fixed_latency: float | None = None,
              held: tuple[tuple[int, float], ...] = (), floor_s: float | None = None, host_floor: bool = False,
              gpu_rows: np.ndarray | None = None, _offset: np.ndarray | None = None) -> tuple:
    """Fit log t = log(floor + exp(base + X theta) [+ exp(Z phi)]) robustly in log space.

    ``Z`` (optional): device-independent latency features (efficiency.NUM_LATENCY); the returned
    theta is then [theta, phi], the latency coefficients of the size terms held >= 0 so the latency
    never shrinks as the shape grows. Levenberg-Marquardt on the soft-L1 loss (scale ``f_scale`` in
    log units, i.e. ~5%) by iteratively reweighted normal equations, with a small ridge toward the
    roofline (theta) and toward the starting latency (phi). Deterministic.
    ``fixed_latency`` (seconds, with ``Z``): the latency is not fitted but held at this device-independent
    constant (a bound from outside the fit: docs/trust.md "Bounded latency"); phi is returned as
    [log fixed_latency, 0, ...] (``held`` columns at their values), so the pricing path is the latency term's.
    ``held`` (with ``Z``): (latency column, coefficient) pairs held at that value instead of fitted
    (efficiency.LATENCY_HELD). The fit then starts from the fit without latency and from each of
    LATENCY_STARTS_S as the latency constant, and keeps the lowest loss (the loss has several
    minima: a latency can trade against the floor and the small-shape efficiency).
    ``floor_s`` (seconds): the floor is held at this value instead of fitted.
    ``host_floor``: the rows were timed as back-to-back eager calls (loaders ``timing`` 'eager'), so each
    measures max(h, GPU time) with h the host's dispatch time of a call: h is fitted with the rest
    (rows at h say only that the GPU was faster; they pull on h alone), and the returned floor and theta
    are the GPU's. Rows at h carry no information about the GPU floor, so pass ``floor_s`` with it.
    ``gpu_rows`` (bool per row, with ``host_floor``): rows that are GPU times (priors), not eager calls.
    Returns (log_floor, theta, median APE on the fitted rows), and h (seconds) fourth with ``host_floor``.
    """
    if host_floor and Z is not None:
        raise ValueError("host_floor is fitted without latency columns")
    if fixed_latency is not None:
        if Z is None or not fixed_latency > 0:
            raise ValueError("fixed_latency needs latency columns Z and a positive latency")
        phi = np.zeros(Z.shape[1])
        phi[0] = math.log(fixed_latency)
        for col, value in held:
            phi[col] = value
        lat = np.exp(Z @ phi)
        # the rows' time less the fixed latency: what the floor and the roofline term share
        log_floor, theta, _ = fit_class(X, base, seconds, f_scale=f_scale, max_iter=max_iter, _offset=lat)
        pred = np.exp(log_floor) + np.exp(base + X @ theta) + lat
        return log_floor, np.r_[theta, phi], float(np.median(np.abs(pred - seconds) / seconds))
    y = np.log(seconds)
    nz = 0 if Z is None else Z.shape[1]
    nh = 1 if host_floor else 0
    n = len(seconds)
    direct = np.zeros(n, dtype=bool) if gpu_rows is None else np.asarray(gpu_rows, dtype=bool)
    h0 = float(np.quantile(seconds[~direct], 0.1)) if nh else 0.0  # the host-bound eager rows are the fastest
    if nz:
        floor0 = 0.25 * float(np.min(seconds))
        phi0 = np.zeros(nz)
        phi0[0] = np.log(0.25 * float(np.min(seconds)))
        lat0 = np.exp(phi0[0])
    else:
        floor0 = 0.5 * float(np.min(seconds))
        phi0 = np.zeros(0)
        lat0 = 0.0
    off = 0.0 if _offset is None else _offset  # seconds every row's model adds (the fixed latency)
    if _offset is not None:
        floor0 = 0.5 * float(np.min(np.maximum(seconds - off, 0.05 * seconds)))
    if floor_s is not None:
        floor0 = float(floor_s)
    target = np.log(np.maximum(seconds - floor0 - lat0 - off, 0.05 * seconds)) - base
    if nh and ((seconds > 2.0 * h0) | direct).sum() > X.shape[1]:  # start from the rows the GPU bounds
        gpu = (seconds > 2.0 * h0) | direct
        theta0, *_ = np.linalg.lstsq(X[gpu], target[gpu], rcond=None)
    else:
        theta0, *_ = np.linalg.lstsq(X, target, rcond=None)
    p = np.r_[np.log(floor0), theta0, phi0, np.log([h0] * nh)]
    n, k = X.shape
    prior = np.r_[np.zeros(k), phi0]
    eye = np.eye(k + nz)
    ZZ = Z if nz else np.zeros((n, 0))

    def model(q):
        e = np.exp(base + X @ q[1:k + 1])
        lat = np.exp(ZZ @ q[k + 1:]) if nz else np.zeros(n)
        return e, lat, np.exp(q[0]) + e + lat + off

    def measured(q, t):
        return np.where(direct, t, np.maximum(t, np.exp(q[-1]))) if nh else t

    def loss(q):
        r = np.log(measured(q, model(q)[2])) - y
        d = q[1:k + 1 + nz] - prior
        return f_scale ** 2 * np.sum(2.0 * (np.sqrt(1.0 + (r / f_scale) ** 2) - 1.0)) + RIDGE * d @ d, r

    for col, value in held:
        phi0[col] = prior[k + col] = value

    def project(q):
        if floor_s is not None:
            q[0] = math.log(floor_s)
        if nz > 1:
            q[k + 2:k + 1 + nz] = np.maximum(q[k + 2:k + 1 + nz], 0.0)
        for col, value in held:
            q[k + 1 + col] = value
        return q

    def descend(p):
        cost, r = loss(p)
        damping = 1e-3
        for _ in range(max_iter):
            e, lat, t = model(p)
            J = np.zeros((n, k + 1 + nz + nh))
            J[:, 0] = np.exp(p[0]) / t if floor_s is None else 0.0
            J[:, 1:k + 1] = X * (e / t)[:, None]
            if nz:
                J[:, k + 1:k + 1 + nz] = ZZ * (lat / t)[:, None]
            if nh:  # a row the host bounds moves with h alone
                host = (np.exp(p[-1]) > t) & ~direct
                J[host] = 0.0
                J[:, -1] = host
            JW = J / np.sqrt(1.0 + (r / f_scale) ** 2)[:, None]  # soft-L1 reweighting
            A = J.T @ JW
            g = JW.T @ r
            A[1:k + 1 + nz, 1:k + 1 + nz] += RIDGE * eye
            g[1:k + 1 + nz] += RIDGE * (p[1:k + 1 + nz] - prior)
            A[0, 0] += 1e-9  # the floor's column vanishes where the floor is negligible
            if nh:
                A[-1, -1] += 1e-9
            improved = False
            while damping < 1e8:
                step = _solve(A + damping * np.diag(np.diag(A) + 1e-12), -g, assume_a="pos")
                cand = project(p + step)
                new_cost, new_r = loss(cand)
                if new_cost < cost:
                    step = cand - p
                    p, cost, r = cand, new_cost, new_r
                    damping = max(damping / 3.0, 1e-9)
                    improved = True
                    break
                damping *= 4.0
            if not improved or np.abs(step).max() < 1e-7:
                break
        return p, cost

    if held and nz:
        log_floor0, theta_plain, _ = fit_class(X, base, seconds, f_scale=f_scale, max_iter=max_iter, _offset=_offset)
        starts = []
        for tau in LATENCY_STARTS_S:
            phi = phi0.copy()
            phi[0] = math.log(tau)
            starts.append(np.r_[log_floor0, theta_plain, phi])
    else:
        starts = [p]
    best = None
    for start in starts:
        q, cost = descend(start)
        if best is None or cost < best[1]:
            best = (q, cost)
    p = best[0]
    pred = measured(p, model(p)[2])
    out = (float(p[0]), p[1:k + 1 + nz].copy(), float(np.median(np.abs(pred - seconds) / seconds)))
    return (*out, float(np.exp(p[-1]))) if nh else out


#: Operator classes the latency term (efficiency.NUM_LATENCY) can be fitted for (``fit_profile(latency_classes=)``).
LATENCY_CLASSES = ("gemm", "attn_prefill", "attn_decode", "moe", "elementwise")
#: Classes a fit gives the latency term unless told otherwise: decode attention, tau per wave of CTAs
#: (efficiency.LATENCY_HELD; docs/trust.md "Per-wave decode latency").
DEFAULT_LATENCY_CLASSES = ("attn_decode",)


def _num_columns(op_class: str, latency_classes: tuple[str, ...] = ()) -> int:
    """Feature columns the fit computes: efficiency features, plus latency features where fitted."""
    return eff.NUM_FEATURES[op_class] + (eff.NUM_LATENCY[op_class] if op_class in latency_classes else 0)


#: rows whose memory roofline is at least this long (s) and whose compute time is under half of it measure
#: how well an entry's kernels stream (``stream_share``): long enough that launch latency is a few percent
#: and that the working set (>= 50 us x the bandwidth, 100+ MB on an HBM GPU) does not stay in L2
STREAM_MIN_MEMORY_S = 50e-6
STREAM_MIN_ROWS = 20


def stream_share(op_class: str, p: ClassParams, shapes: np.ndarray, dev: np.ndarray) -> float:
    """The share of DRAM bandwidth an entry's kernels reach on the fitted device, as the model prices them:
    the 90th percentile of the fitted efficiency 1 / E (roofline / the time above the floor and the latency
    term) over its large memory-bound fitted shapes
    (``STREAM_MIN_MEMORY_S``), capped at 1; 0 when fewer than ``STREAM_MIN_ROWS`` such shapes were fitted
    (the class's prior then stands in: hwmodels/data/calibration/priors.yaml). Sibling transfer scales
    this much of the memory-side excess with the sibling's bandwidth and holds the rest in seconds."""
    flops, nbytes = np.maximum(shapes[:, -2], 1.0), np.maximum(shapes[:, -1], 1.0)
    t_mem = nbytes / dev[1]
    t_cmp = flops / dev[0] if op_class != "elementwise" else np.zeros_like(t_mem)
    sel = (t_mem >= STREAM_MIN_MEMORY_S) & (t_cmp < 0.5 * t_mem)
    if sel.sum() < STREAM_MIN_ROWS:
        return 0.0
    X, _ = eff.features(eff.CLASS_INDEX[op_class], np.ascontiguousarray(shapes[sel]), dev, p.theta.size)
    nf = eff.NUM_FEATURES[op_class]
    e_inv = np.exp(X[:, :nf] @ p.theta[:nf])
    return float(min(1.0, np.quantile(1.0 / e_inv, 0.9)))


#: The graph-timed group an eagerly timed group takes its GPU floor and its unseen GPU times from
#: (``fit_eager_class``; the rows at the host floor say nothing of them): vLLM's block-scaled FP8 linear
#: runs the per-tensor path's two kernels, an activation quantisation and a scaled GEMM
#: (``per_token_group_quant_fp8`` in vLLM's ``quantization/utils/fp8_utils.py`` then the block GEMM, against
#: ``scaled_fp8_quant`` then ``cutlass_scaled_mm``) [S: stored copies of vLLM's source; that the two paths
#: cost alike where the block path was never measured is the assumption, U].
GPU_FLOOR_FROM = {"fp8_block": "fp8"}


#: A row measured under this many times the fitted host floor is taken as host-bound (its GPU time unseen)
#: [U: a margin for timing noise around the floor, not measured].
CENSORED_MARGIN = 1.1


def fit_eager_class(X: np.ndarray, base: np.ndarray, seconds: np.ndarray, ref: ClassParams) -> tuple:
    """Fit a group of eagerly timed rows as max(h, GPU time) (``fit_class(host_floor=True)``), the GPU floor
    held at the graph-timed entry ``ref``'s, and where a row is host-bound (measured under CENSORED_MARGIN x h:
    its GPU time was never seen) ``ref``'s price of the same shape, at most h, stands in for that GPU time (a
    prior: the block-scaled path runs the per-tensor path's two kernels, see GPU_FLOOR_FROM).
    Returns (log_floor, theta, median APE on the measured rows, h in seconds)."""
    floor = math.exp(ref.log_floor)
    _, _, _, h = fit_class(X, base, seconds, floor_s=floor, host_floor=True)
    unseen = seconds < CENSORED_MARGIN * h
    prior = np.minimum(floor + np.exp(base[unseen] + X[unseen] @ ref.theta[:X.shape[1]]), h)
    n = len(seconds)
    log_floor, theta, _, h = fit_class(np.vstack([X, X[unseen]]), np.r_[base, base[unseen]], np.r_[seconds, prior],
                                       floor_s=floor, host_floor=True,
                                       gpu_rows=np.r_[np.zeros(n, bool), np.ones(int(unseen.sum()), bool)])
    pred = np.maximum(h, math.exp(log_floor) + np.exp(base + X @ theta))
    return log_floor, theta, float(np.median(np.abs(pred - seconds) / seconds)), h


def _eager_reference(fitted: dict, group: str, all_eager: bool, latency: bool) -> ClassParams | None:
    """The graph-timed entry an eagerly timed group's GPU floor and unseen GPU times come from, or None: fit
    it as graph-timed rows (rows not all eager, latency columns, or no fitted graph-timed group to use)."""
    ref = GPU_FLOOR_FROM.get(group.split(":", 1)[0])
    cands = [g for g in fitted if ref is not None and (g == ref or g.startswith(ref + ":"))
             and fitted[g].host_floor_s == 0]
    if not all_eager or latency or not cands:
        return None
    principal = max(cands, key=lambda g: (fitted[g].rows, g))  # the dtype's principal kernel family
    return fitted[principal]


def _one_device(names) -> str:
    """The catalogue name when every row came from one device, else '' (``ClassParams.fitted_device``)."""
    names = set(names)
    return next(iter(names)) if len(names) == 1 else ""


def fit_profile(table: pd.DataFrame, *, salt: str = DEFAULT_SALT, holdout_fraction: float = DEFAULT_HOLDOUT,
                exclude_devices: tuple[str, ...] = (), generic: bool = True,
                arch_classes: tuple[str, ...] = (), coefficients_from: Profile | None = None,
                generic_only: bool = False, latency_classes: tuple[str, ...] | None = None,
                roofline: str | None = None, l2: bool = False,
                fixed_latency: dict[str, float] | None = None) -> Profile:
    """Fit a profile on the training part of ``table`` (standard measurement table).

    ``exclude_devices`` drops every row of those devices (cross-device experiments);
    ``holdout_fraction`` 0 fits on every row (a user's own calibration with no scoring split);
    ``arch_classes`` fits only those architecture classes (and no generic class).
    Every fitted class records the range of its rows' shapes (efficiency.RANGE_COLUMNS).
    ``latency_classes``: operator classes fitted with the device-independent latency term
    (``fit_class(Z=)``); None (the default, and the shipped profile's): DEFAULT_LATENCY_CLASSES.
    ``generic_only`` fits the generic class alone (leave-one-architecture-out: benchmarks/bench_loao.py).
    ``coefficients_from``: fit nothing; keep that profile's coefficients (bit for bit) and sources,
    recording the shape range of the rows each of its classes was fitted on.
    ``roofline``: 'datasheet' (features see the datasheet peaks) or 'achieved' (datasheet peaks x the
    class's priors, hwmodels/priors.py); default DEFAULT_ROOFLINE, or ``coefficients_from``'s.
    ``l2``: the features see the L2 term of the memory roofline (hwmodels/priors.py ``l2_vector``: a working
    set that fits the device's L2 streams at L2 bandwidth); the returned profile prices with it
    (``priors.with_l2``). Off by default: the shipped profile has none.
    ``fixed_latency``: {operator class: seconds}: those classes price ``floor + L + roofline x 1/efficiency``
    with L that device-independent constant, not fitted (``fit_class(fixed_latency=)``; docs/trust.md
    "Bounded latency"). None by default.
    """
    fixed_latency = dict(fixed_latency or {})
    bad = sorted(set(fixed_latency) - set(LATENCY_CLASSES))
    if bad:
        raise ConfigError(f"`fixed_latency` classes must be among {', '.join(LATENCY_CLASSES)}, got {bad}")
    latency_classes = DEFAULT_LATENCY_CLASSES if latency_classes is None else tuple(latency_classes)
    latency_classes += tuple(c for c in sorted(fixed_latency) if c not in latency_classes)
    if coefficients_from is not None:
        roofline = coefficients_from.roofline
    roofline = roofline or DEFAULT_ROOFLINE
    if roofline not in ROOFLINES:
        raise ConfigError(f"`roofline` must be one of {', '.join(ROOFLINES)}, got {roofline!r}")
    shaper = Profile(params={}, split={}, sources=(), roofline=roofline)
    if l2:
        from llmsim.hwmodels.priors import with_l2

        shaper = with_l2(shaper)
    held = split_of(table["shape_key"].to_numpy(), salt=salt, holdout_fraction=holdout_fraction) \
        if holdout_fraction > 0 else np.zeros(len(table), dtype=bool)
    excluded_names = {get_device(d).name for d in exclude_devices}
    dev_names = np.array([_device_name(d) for d in table["device"]], dtype=object)
    keep = ~held & ~np.isin(dev_names, list(excluded_names)) & np.isfinite(table["measured_s"].to_numpy()) \
        & (table["measured_s"].to_numpy() > 0)
    fit_rows = table[keep].reset_index(drop=True)

    # Kernel-level sources (one kernel per row, named) fit the kernel classes; layer-level profiles
    # (vidur, LLMCompass) from other software stacks are scored against them, not mixed into them.
    # The rule applies per architecture class: a class measured only by a layer-level profiler
    # (LLMServingSim on the RTX 4090 / RTX PRO 6000) is fitted on it.
    formats = {src: detect_format(src) for src in fit_rows["source"].unique()}
    fmt = fit_rows["source"].map(formats).to_numpy()
    primary = fmt == "aiconfigurator"
    op_class = fit_rows["kind"].map(KIND_CLASS).fillna("").to_numpy()
    arch = _arch_classes(fit_rows["device"])
    secondary = np.zeros(len(fit_rows), dtype=bool)
    for a in sorted(set(arch)):
        in_arch = arch == a
        for cls in KERNEL_LEVEL_CLASSES:
            in_cls = in_arch & (op_class == cls)
            if (in_cls & primary).any():
                secondary |= in_cls & ~primary
    keep_rows = ~secondary
    if arch_classes:
        keep_rows &= np.isin(arch, list(arch_classes))
        generic = False
    fit_rows = fit_rows[keep_rows].reset_index(drop=True)
    in_generic = np.isin(fit_rows["source"].map(formats).to_numpy(), GENERIC_FORMATS)
    eager_rows = (fit_rows["timing"] == "eager").to_numpy() if "timing" in fit_rows else np.zeros(len(fit_rows), bool)
    buckets: dict[tuple[str, str, str], list] = defaultdict(list)
    for grp in operator_groups(fit_rows):
        if grp.error:
            continue
        if coefficients_from is None:
            X, base = eff.features(eff.CLASS_INDEX[grp.op_class], grp.shapes,
                                   shaper.device_vector(grp.device, grp.device_vector),
                                   _num_columns(grp.op_class, latency_classes))
        else:  # only the row count and shapes are needed
            X, base = np.zeros((len(grp.positions), _num_columns(grp.op_class, latency_classes))), np.zeros(len(grp.positions))
        y = fit_rows["measured_s"].to_numpy()[grp.positions]
        dvec = shaper.device_vector(grp.device, grp.device_vector)
        eager = eager_rows[grp.positions]
        if not generic_only:
            buckets[(grp.device.arch_class, grp.op_class, grp.group)].append((X, base, y, grp.positions, grp.shapes,
                                                                              grp.device.name, dvec, eager))
        g = in_generic[grp.positions]
        if generic and g.any():
            buckets[(GENERIC, grp.op_class, grp.group)].append((X[g], base[g], y[g], grp.positions[g],
                                                                grp.shapes[g], grp.device.name, dvec, eager[g]))

    params: dict = {}
    used = np.zeros(len(fit_rows), dtype=bool)  # rows some fitted class saw (what rows_in_fit counts)
    for (arch, cls, group) in sorted(buckets):
        parts = buckets[(arch, cls, group)]
        X = np.concatenate([p[0] for p in parts])
        base = np.concatenate([p[1] for p in parts])
        y = np.concatenate([p[2] for p in parts])
        if len(y) < 2 * eff.NUM_FEATURES[cls] and coefficients_from is None:
            continue  # too few rows to fit this class: the fallback chain covers it (or fit_small_classes)
        lo, hi = eff.shape_range(cls, np.concatenate([p[4] for p in parts]))
        if not eff.NUM_RANGE[cls]:
            lo = hi = None
        # sibling transfer within an architecture class only (its kernels are the device's): a generic entry
        # prices other architectures, whose kernels' latency differs (docs/trust.md "Sibling transfer")
        fitted_device = _one_device(p[5] for p in parts) if arch != GENERIC else ""
        if fitted_device and cls != "collective":
            shapes_all = np.concatenate([p[4] for p in parts])
            share_of = lambda q: stream_share(cls, q, shapes_all, parts[0][6])  # noqa: E731
        else:
            share_of = lambda q: 0.0  # noqa: E731
        if coefficients_from is not None:
            old = coefficients_from.params.get(arch, {}).get(cls, {}).get(group)
            if old is None:
                continue
            if old.rows != len(y):
                raise ConfigError(f"{arch}/{cls}/{group}: the profile was fitted on {old.rows} rows, these data "
                                  f"give {len(y)}: not the data or split it was fitted on")
            params.setdefault(arch, {}).setdefault(cls, {})[group] = dataclasses.replace(
                old, shape_lo=lo, shape_hi=hi, fitted_device=fitted_device, stream_share=share_of(old))
            continue
        for p in parts:
            used[p[3]] = True
        nf = eff.NUM_FEATURES[cls]
        latency = X.shape[1] > nf
        ref = _eager_reference(params.get(arch, {}).get(cls, {}), group, all(p[7].all() for p in parts), latency)
        if ref is not None:  # eagerly timed: max(host dispatch, GPU) (docs/trust.md "Eager-timed rows")
            log_floor, theta, mdape, host = fit_eager_class(X, base, y, ref)
        else:
            host = 0.0
            log_floor, theta, mdape = fit_class(X[:, :nf], base, y, Z=X[:, nf:] if latency else None,
                                                fixed_latency=fixed_latency.get(cls),
                                                held=eff.LATENCY_HELD.get(cls, ()) if latency else ())
        fitted = ClassParams(log_floor, theta, int(len(y)), mdape, lo, hi, fitted_device, host_floor_s=host)
        params.setdefault(arch, {}).setdefault(cls, {})[group] = dataclasses.replace(fitted,
                                                                                     stream_share=share_of(fitted))
    # A bare dtype group names the dtype's principal kernel family: the one with the most rows.
    for arch, classes in params.items():
        for cls, groups in classes.items():
            for dtype in sorted({g.split(":", 1)[0] for g in groups if ":" in g}):
                if dtype not in groups:
                    fams = [g for g in groups if g.startswith(dtype + ":")]
                    groups[dtype] = groups[max(fams, key=lambda g: (groups[g].rows, g))]

    if coefficients_from is not None:
        return Profile(params=params, split=coefficients_from.split, sources=coefficients_from.sources,
                       path=coefficients_from.path, roofline=coefficients_from.roofline)
    sources = []
    seen = fit_rows[used] if arch_classes else fit_rows  # a full fit keeps its historical count
    kept_per_source = seen.groupby("source").size().to_dict()
    kinds_per_source = seen.groupby("source")["kind"].unique().to_dict()
    for src, n in table.groupby("source").size().items():
        sources.append({"path": _display_path(src), "sha256": file_sha256(src), "rows": int(n),
                        "rows_in_fit": int(kept_per_source.get(src, 0)),
                        "fitted_kinds": sorted(str(k) for k in kinds_per_source.get(src, ()))})
        if arch_classes:  # which classes the file measures, so a merge knows whose counts it replaces
            sources[-1]["arch_classes"] = sorted(set(_arch_classes(table.loc[table["source"] == src, "device"])) - {""})
    out = Profile(params=params, split={"salt": salt, "holdout_fraction": holdout_fraction,
                                        "excluded_devices": sorted(excluded_names)},
                  sources=tuple(sources), roofline=roofline)
    if l2:
        from llmsim.hwmodels.priors import with_l2

        out = with_l2(out)
    return out


#: Features a small class may adjust on top of its fallback class: the constant and the linear log
#: terms of the leading shape variables (hwmodels/efficiency.py ``_monomials`` writes x[0] = 1, then
#: the variables): decode (batch, context), prefill (batch, new tokens).
SMALL_CLASS_FEATURES = {"attn_decode": (0, 1, 2), "attn_prefill": (0, 1, 2)}
#: Training rows per adjusted coefficient a small class needs.
SMALL_CLASS_ROWS_PER_PARAM = 8


def fit_small_classes(table: pd.DataFrame, profile: Profile) -> tuple[Profile, list[dict]]:
    """``profile`` plus a class of its own for each (architecture class, attention class, dtype group)
    whose training rows are too few for a full fit (``fit_profile`` skips it and the fallback chain,
    e.g. ``generic``, prices it) but number at least ``SMALL_CLASS_ROWS_PER_PARAM`` per adjusted
    coefficient: the fallback's coefficients with the constant and the two leading linear log terms
    refitted on those rows (the fallback's shape surface, shifted and tilted to the device). Rows on
    the training side of the profile's split only. Returns the profile and one record per class added
    (rows, the fallback it started from, the training median APE before and after)."""
    from llmsim.hwmodels.calibration import ClassParams

    split = profile.split
    held = split_of(table["shape_key"].to_numpy(), salt=split.get("salt", DEFAULT_SALT),
                    holdout_fraction=float(split.get("holdout_fraction", 0.0)))
    fit_rows = table[~held & np.isfinite(table["measured_s"].to_numpy())
                     & (table["measured_s"].to_numpy() > 0)].reset_index(drop=True)
    params = {a: {c: dict(g) for c, g in cs.items()} for a, cs in profile.params.items()}
    added = []
    buckets: dict[tuple, list] = defaultdict(list)
    for grp in operator_groups(fit_rows):
        if grp.error or grp.op_class not in SMALL_CLASS_FEATURES:
            continue
        buckets[(grp.device.arch_class, grp.op_class, grp.group)].append(grp)
    for (arch, cls, group) in sorted(buckets):
        if group in profile.params.get(arch, {}).get(cls, {}):
            continue  # fitted in full
        parts = buckets[(arch, cls, group)]
        idx = SMALL_CLASS_FEATURES[cls]
        fallback, fkey = profile.lookup(arch, cls, group)
        nt, nf = fallback.theta.size, eff.NUM_FEATURES[cls]
        feats = [eff.features(eff.CLASS_INDEX[cls], g.shapes, profile.device_vector(g.device, g.device_vector), nt)
                 for g in parts]
        X = np.concatenate([f[0] for f in feats])
        base = np.concatenate([f[1] for f in feats])
        y = np.concatenate([fit_rows["measured_s"].to_numpy()[g.positions] for g in parts])
        if len(y) < SMALL_CLASS_ROWS_PER_PARAM * len(idx):
            continue
        # the floor and the fallback's device-independent latency stay as they are
        floor = math.exp(fallback.log_floor) + (np.exp(X[:, nf:] @ fallback.theta[nf:]) if nt > nf else 0.0)
        # fixed part: the fallback's prediction; the adjusted part enters linearly in log space
        fixed = base + X[:, :nf] @ fallback.theta[:nf]
        target = np.log(np.maximum(y - floor, 0.05 * y)) - fixed
        A = X[:, list(idx)]
        delta = np.zeros(len(idx))
        for _ in range(30):  # soft-L1 by iteratively reweighted least squares (scale 5% in log units)
            r = A @ delta - target
            w = 1.0 / np.sqrt(1.0 + (r / 0.05) ** 2)
            new = np.linalg.lstsq(A * np.sqrt(w)[:, None], target * np.sqrt(w), rcond=None)[0]
            if np.abs(new - delta).max() < 1e-9:
                delta = new
                break
            delta = new
        theta = fallback.theta.copy()
        theta[list(idx)] += delta
        before = floor + np.exp(fixed)
        after = floor + np.exp(fixed + A @ delta)
        lo, hi = eff.shape_range(cls, np.concatenate([g.shapes for g in parts]))
        mdape = float(np.median(np.abs(after - y) / y))
        small = ClassParams(
            fallback.log_floor, theta, int(len(y)), mdape, lo if eff.NUM_RANGE[cls] else None,
            hi if eff.NUM_RANGE[cls] else None, _one_device(g.device.name for g in parts))
        if small.fitted_device:
            small = dataclasses.replace(small, stream_share=stream_share(
                cls, small, np.concatenate([g.shapes for g in parts]),
                profile.device_vector(parts[0].device, parts[0].device_vector)))
        params.setdefault(arch, {}).setdefault(cls, {})[group] = small
        added.append({"class": f"{arch}/{cls}/{group}", "rows": int(len(y)), "from": fkey,
                      "train_median_ape_before": float(np.median(np.abs(before - y) / y)),
                      "train_median_ape_after": mdape})
    sources = []
    kinds_added: dict[str, set] = defaultdict(set)
    for a in added:
        arch, cls, _ = a["class"].split("/")
        kinds_added[arch] |= {k for k, c in KIND_CLASS.items() if c == cls}
    counts = fit_rows.assign(_arch=_arch_classes(fit_rows["device"])).groupby(["source", "_arch", "kind"]).size()
    for src in profile.sources:
        src = dict(src)
        arches = set(src.get("arch_classes", ()))
        new_kinds = sorted(set().union(*(kinds_added.get(a, set()) for a in arches)) - set(src.get("fitted_kinds", ())))
        path = src.get("path", "")
        extra = sum(int(n) for (f, a, k), n in counts.items() if _display_path(f) == path and a in arches
                    and k in new_kinds)
        if extra:
            src["fitted_kinds"] = sorted(set(src.get("fitted_kinds", ())) | {k for k in new_kinds})
            src["rows_in_fit"] = int(src.get("rows_in_fit", 0)) + extra
        sources.append(src)
    return dataclasses.replace(profile, params=params, sources=tuple(sources)), added


def merge_profiles(base: Profile, new: Profile, arch_classes: tuple[str, ...]) -> Profile:
    """``base`` with the classes ``arch_classes`` replaced by ``new``'s; every other class is kept
    as is (byte-identical when saved). Sources: ``base``'s entries, replaced by ``new``'s for the
    files ``new`` fitted on, then the files only ``new`` read."""
    if base.split != new.split and {k: v for k, v in base.split.items() if k != "excluded_devices"} != \
            {k: v for k, v in new.split.items() if k != "excluded_devices"}:
        raise ConfigError(f"cannot merge profiles fitted under different splits: {base.split} vs {new.split}")
    params = {a: c for a, c in base.params.items() if a not in arch_classes}
    for a in arch_classes:
        if a in new.params:
            params[a] = new.params[a]
    merged: dict[str, dict] = {s["sha256"]: dict(s) for s in base.sources}
    for s in new.sources:  # a file of a refitted class gets the new counts (one file: one device, one class)
        if s["sha256"] not in merged or s.get("rows_in_fit", 0) or set(s.get("arch_classes", ())) & set(arch_classes):
            merged[s["sha256"]] = dict(s)
    sources = tuple(merged.values())  # base's order, then the files only ``new`` read
    if base.roofline != new.roofline:
        raise ConfigError(f"cannot merge a profile fitted on the {new.roofline} roofline into one fitted on the "
                          f"{base.roofline} roofline; refit every class")
    return Profile(params=dict(sorted(params.items())), split=base.split, sources=sources, path=base.path,
                   roofline=base.roofline)


def _arch_classes(devices: pd.Series) -> np.ndarray:
    names = {d: d for d in devices.unique()}
    for d in names:
        try:
            names[d] = get_device(d).arch_class
        except Exception:  # an unknown device is reported by pricing, not here
            names[d] = ""
    return devices.map(names).to_numpy(dtype=object)


def rows_in_fit(table: pd.DataFrame, profile: Profile) -> np.ndarray:
    """True for each scored row that the profile was fitted on (same file bytes, training split)."""
    by_hash = profile.source_hashes()
    in_file = np.zeros(len(table), dtype=bool)
    hashes = {src: file_sha256(src) for src in table["source"].unique()}
    for src, h in hashes.items():
        entry = by_hash.get(h)
        if entry and entry.get("rows_in_fit", 0) > 0:
            in_file |= ((table["source"] == src) & table["kind"].isin(entry.get("fitted_kinds", ()))).to_numpy()
    if not in_file.any():
        return in_file
    split = profile.split
    frac = float(split.get("holdout_fraction", 0.0))
    held = split_of(table["shape_key"].to_numpy(), salt=split.get("salt", DEFAULT_SALT), holdout_fraction=frac) \
        if frac > 0 else np.zeros(len(table), dtype=bool)
    excluded = set(split.get("excluded_devices", ()))
    dev_ok = ~np.isin(np.array([_device_name(d) for d in table["device"]], dtype=object), list(excluded))
    return in_file & ~held & dev_ok


def _device_name(raw: str) -> str:
    try:
        return get_device(raw).name
    except Exception:  # an unknown device is reported by pricing, not here
        return str(raw)


def _display_path(src: str) -> str:
    p = Path(src).resolve()
    for root in (Path(__file__).parent.parent.resolve(),):
        try:
            return str(p.relative_to(root))
        except ValueError:
            pass
    return p.name


INTERVAL_SALT_SUFFIX = "-interval"


def interval_fit_rows(table: pd.DataFrame, profile: Profile) -> np.ndarray:
    """True for the held-out rows whose residuals fit the error bands (half of the profile's held-out
    rows, by a second hash of the shape key); the other half scores them (``interval_coverage``)."""
    split = profile.split
    frac = float(split.get("holdout_fraction", 0.0))
    if frac <= 0:
        return np.zeros(len(table), dtype=bool)
    keys = table["shape_key"].to_numpy()
    salt = split.get("salt", DEFAULT_SALT)
    held = split_of(keys, salt=salt, holdout_fraction=frac)
    return held & split_of(keys, salt=salt + INTERVAL_SALT_SUFFIX, holdout_fraction=0.5)


def fit_uncertainty(table: pd.DataFrame, profile: Profile, extrapolated: dict | None = None):
    """Error bands (hwmodels/uncertainty.py) from the residuals of the held-out rows ``interval_fit_rows``
    selects; ``extrapolated``: per operator class bands from leave-one-architecture-out residuals."""
    from llmsim.hwmodels.costmodel import OperatorCostModel
    from llmsim.hwmodels.uncertainty import ErrorModel, fit_bands

    rows = table[interval_fit_rows(table, profile)].reset_index(drop=True)
    priced = OperatorCostModel(profile).price(rows)
    meas = rows["measured_s"].to_numpy(np.float64)
    ok = np.isfinite(priced.seconds) & np.isfinite(meas) & (meas > 0) & (priced.fallback == "")
    bands = fit_bands(np.log(meas[ok] / priced.seconds[ok]), priced.param_key[ok], priced.op_class[ok],
                      priced.seconds[ok])
    split = {"salt": profile.split.get("salt", DEFAULT_SALT) + INTERVAL_SALT_SUFFIX, "fraction_of_held_out": 0.5}
    aliases = {}
    for arch, classes in profile.params.items():
        for cls, groups in classes.items():
            for g, p in groups.items():
                if ":" not in g:
                    fam = [f for f, q in groups.items() if f.startswith(g + ":") and np.array_equal(q.theta, p.theta) and q.log_floor == p.log_floor]
                    if fam:
                        aliases[f"{arch}/{cls}/{g}"] = f"{arch}/{cls}/{sorted(fam)[0]}"
    measured = tuple(sorted({_device_name(d) for d in table["device"].unique()}))
    return ErrorModel(bands=bands, extrapolated=dict(extrapolated or {}), split=split, aliases=aliases,
                      measured_devices=measured)
