"""Leave-one-architecture-out: refit without one architecture class, predict it, print its errors.

    .venv/bin/python benchmarks/bench_loao.py [--arch ampere ...] [--json OUT.json]
        [--only gemm ...] [--l2] [--latency CLASS ...] [--fixed-latency CLASS=SECONDS ...] [--roofline achieved]

For every architecture class with shipped kernel data (ampere: A100, hopper: H100, ada: RTX 4090,
blackwell-consumer: RTX PRO 6000) the generic class is refitted (validation/calibrate.py
``fit_profile``, the shipped split, ``exclude_devices`` = that class's devices) and the class's own
coefficients are dropped, so its rows are priced the way a never-measured GPU of that class is:
datasheet roofline x the generic class's efficiency. Every row of the left-out class is scored (none
was in the refit). Prints MAPE and median APE per operator class and per source (aiconfigurator and
LLMServingSim rows are single kernels; vidur/LLMCompass rows come from other software stacks).

``--l2`` refits and prices with the L2 term of the memory roofline (hwmodels/efficiency.py ``_mem_time``);
``--only`` restricts the refit and the scores to some operator classes (the same figures: each class is
fitted on its own). Figures of every option: docs/trust.md.

Target (issue 13): MAPE <= 15% for gemm, attn_prefill and attn_decode on every class.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.hwmodels.calibration import GENERIC, Profile, default_profile  # noqa: E402
from llmsim.hwmodels.costmodel import OperatorCostModel  # noqa: E402
from llmsim.hwmodels.devices import get_device  # noqa: E402
from llmsim.validation import calibrate as cal  # noqa: E402
from llmsim.validation.loaders import detect_format, load_measurements  # noqa: E402

TARGET_MAPE = 0.15
TARGET_CLASSES = ("gemm", "attn_prefill", "attn_decode")


def arch_of(devices: pd.Series) -> np.ndarray:
    names = {d: get_device(d).arch_class for d in devices.unique()}
    return devices.map(names).to_numpy(dtype=object)


def loao_profile(table: pd.DataFrame, arch: np.ndarray, left_out: str, shipped: Profile,
                 latency_classes: tuple[str, ...] | None = None, roofline: str | None = None, l2: bool = False,
                 fixed_latency: dict[str, float] | None = None) -> Profile:
    """The shipped profile without ``left_out``'s class, its generic class refitted without that class's rows
    (on ``roofline``: 'datasheet' or 'achieved', default the shipped profile's). Only the left-out class is
    scored, and it is priced by the refitted generic class alone."""
    roofline = roofline or shipped.roofline
    devices = tuple(sorted(set(table.loc[arch == left_out, "device"])))
    refit = cal.fit_profile(table, salt=shipped.split.get("salt", cal.DEFAULT_SALT),
                            holdout_fraction=float(shipped.split.get("holdout_fraction", cal.DEFAULT_HOLDOUT)),
                            exclude_devices=devices, generic_only=True,
                            latency_classes=latency_classes, roofline=roofline, l2=l2,
                            fixed_latency=fixed_latency)
    params = {a: c for a, c in shipped.params.items() if a not in (left_out, GENERIC)}
    params[GENERIC] = refit.params.get(GENERIC, {})
    out = Profile(params=params, split=shipped.split, sources=shipped.sources, path=f"<loao without {left_out}>",
                  roofline=roofline)
    if l2:  # every class of this profile is priced with the L2 term; only the refitted generic one is scored
        from llmsim.hwmodels.priors import with_l2

        out = with_l2(out)
    return out


TIME_BINS_S = (0.0, 1e-5, 3e-5, 1e-4, 1e-3, np.inf)


def by_time(table: pd.DataFrame, profile: Profile) -> None:
    """Print the median predicted / measured ratio per operator class and dtype, by measured time."""
    priced = OperatorCostModel(profile).price(table)
    meas = table["measured_s"].to_numpy(np.float64)
    ok = np.isfinite(priced.seconds) & (meas > 0)
    df = pd.DataFrame({"cls": priced.op_class[ok], "dtype": table["dtype"].fillna("").astype(str).to_numpy()[ok],
                       "bin": pd.cut(meas[ok], TIME_BINS_S, right=False), "ratio": priced.seconds[ok] / meas[ok]})
    for (cls, dtype, interval), g in df.groupby(["cls", "dtype", "bin"], observed=True):
        print(f"  {cls:14s} {dtype:10s} measured {interval.left * 1e6:6.0f}-{interval.right * 1e6:<6.0f}us "
              f"{len(g):7d} rows  pred/meas {np.median(g['ratio']):6.3f}")


def harness_floors(table: pd.DataFrame, shipped: Profile) -> np.ndarray:
    """Seconds per row: the host dispatch floor of the harness that timed it eagerly (the shipped entry's
    ``host_floor_s``, fitted on the row's own class), 0 for graph-timed rows."""
    keys = OperatorCostModel(shipped).price(table).param_key
    eager = (table["timing"] == "eager").to_numpy()
    out = np.zeros(len(table))
    for i in np.flatnonzero(eager):
        arch, cls, group = str(keys[i]).split("+", 1)[0].split("/", 2)
        out[i] = shipped.params[arch][cls][group].host_floor_s
    return out


def score(table: pd.DataFrame, profile: Profile, residuals: dict | None = None,
          floors: np.ndarray | None = None) -> list[dict]:
    """Error rows per operator class and source; ``residuals`` collects log(measured / predicted) per class;
    ``floors`` (seconds per row): each prediction is at least this (``harness_floors``)."""
    priced = OperatorCostModel(profile).price(table)
    if floors is not None:
        priced = dataclasses.replace(priced, seconds=np.maximum(priced.seconds, floors))
    meas = table["measured_s"].to_numpy(np.float64)
    ok = np.isfinite(priced.seconds) & np.isfinite(meas) & (meas > 0)
    ape = np.abs(priced.seconds - meas) / np.where(ok, meas, 1.0)
    fmt = table["source"].map({s: detect_format(s) for s in table["source"].unique()}).to_numpy(dtype=object)
    dtype = np.where(np.isin(priced.op_class, ["attn_prefill", "attn_decode", "attn_mixed"]),
                     "kv " + table["kv_dtype"].fillna("").astype(str), table["dtype"].fillna("").astype(str)).astype(object)
    if residuals is not None:
        for cls in sorted(set(priced.op_class[ok])):
            sel = ok & (priced.op_class == cls)
            residuals.setdefault(str(cls), []).append(np.log(meas[sel] / priced.seconds[sel]))
    rows = []
    for cls in sorted(set(priced.op_class[ok])):
        in_cls = ok & (priced.op_class == cls)
        dtypes = sorted(set(dtype[in_cls]))
        for src in ("all", *sorted(set(fmt[in_cls])), *(["dtype " + d for d in dtypes] if len(dtypes) > 1 else [])):
            if src.startswith("dtype "):
                sel = in_cls & (dtype == src[6:])
            else:
                sel = in_cls & ((fmt == src) if src != "all" else True)
            if not sel.any():
                continue
            ratio = priced.seconds[sel] / meas[sel]
            rows.append({"op_class": cls, "source": src, "rows": int(sel.sum()), "mape": float(ape[sel].mean()),
                         "median_ape": float(np.median(ape[sel])), "median_ratio": float(np.median(ratio)),
                         "params": sorted(set(priced.param_key[sel]))})
    return rows


def pooled(parts: list[np.ndarray]) -> np.ndarray:
    """Residuals of several left-out classes, each resampled to the smallest count (each class weighs the same)."""
    n = min(len(p) for p in parts)
    return np.concatenate([np.quantile(p, (np.arange(n) + 0.5) / n) for p in parts])


def band_check(residuals: dict, classes: list[str]) -> None:
    """The extrapolated band's coverage on an architecture it was not fitted on: for each left-out class, the
    p10-p90 band of the other classes' pooled residuals, scored on this class's residuals (target 80%)."""
    from llmsim.hwmodels import uncertainty as unc

    print("leave-one-class-out coverage of the extrapolated 80% band (band from the other classes):")
    for cls, parts in sorted(residuals.items()):
        if len(parts) != len(classes) or len(parts) < 3:
            continue
        cells = []
        for i, left in enumerate(classes):
            lo, hi = np.quantile(pooled([p for j, p in enumerate(parts) if j != i]), unc.QUANTILES)
            r = parts[i]
            cells.append(f"{left} {100 * np.mean((r >= lo) & (r <= hi)):5.1f}% [{np.exp(lo):.2f}, {np.exp(hi):.2f}]x")
        print(f"  {cls:13s} " + "   ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", action="append", default=[], help="only this left-out class (repeatable)")
    ap.add_argument("--profile", help="profile whose fitted classes are kept (default: the shipped one)")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--by-time", action="store_true",
                    help="also print the median pred/meas per operator class and dtype by measured time")
    ap.add_argument("--latency", action="append", default=[], choices=cal.LATENCY_CLASSES,
                    help="refit this operator class with the device-independent latency term (repeatable; "
                         "decode attention always has its per-wave form: calibrate.DEFAULT_LATENCY_CLASSES)")
    ap.add_argument("--fixed-latency", action="append", default=[], metavar="CLASS=SECONDS",
                    help="refit this operator class with a device-independent latency held at SECONDS (not "
                         "fitted: a bound from outside the fit, docs/trust.md 'Bounded latency'; repeatable)")
    ap.add_argument("--roofline", choices=("datasheet", "achieved"),
                    help="roofline the refit's features see (default: the profile's; 'achieved' = datasheet peaks x "
                         "the class priors of hwmodels/data/calibration/priors.yaml)")
    ap.add_argument("--l2", action="store_true",
                    help="refit and price with the L2 term of the memory roofline (working sets that fit the "
                         "device's L2 stream at L2 bandwidth: hwmodels/priors.py l2_vector); off by default")
    ap.add_argument("--only", action="append", default=[], choices=TARGET_CLASSES,
                    help="refit and score only this operator class (repeatable; the figures of a class do not "
                         "depend on the others, so this is the same number, faster)")
    ap.add_argument("--band-check", action="store_true",
                    help="also score the pooled band on a class it was not fitted on: for each left-out class, "
                         "the band from the other classes' residuals and its 80%% coverage of this class's rows")
    ap.add_argument("--harness-floor", action="store_true",
                    help="price eagerly timed rows (loaders `timing`) at least at the shipped host floor of their "
                         "harness: a property of the measuring host and vLLM's dispatch, not of the GPU, but fitted "
                         "on the left-out class's own rows, so not a clean leave-one-out figure (docs/trust.md)")
    ap.add_argument("--write-uncertainty", action="store_true",
                    help="write the pooled residual bands per operator class into the `extrapolated` part of "
                         "hwmodels/data/calibration/uncertainty.json (every class must be left out)")
    args = ap.parse_args()
    fixed = {}
    for item in args.fixed_latency:
        cls, _, sec = item.partition("=")
        if cls not in cal.LATENCY_CLASSES or not sec:
            raise SystemExit(f"--fixed-latency wants CLASS=SECONDS with CLASS in {', '.join(cal.LATENCY_CLASSES)}")
        fixed[cls] = float(sec)
    from llmsim.hwmodels.calibration import load_profile

    shipped = load_profile(args.profile) if args.profile else default_profile()
    t0 = time.perf_counter()
    table = load_measurements(cal.SHIPPED_DATA)
    if args.harness_floor and args.write_uncertainty:
        raise SystemExit("--write-uncertainty takes the clean leave-one-out residuals (no --harness-floor)")
    if args.only:
        if args.write_uncertainty:
            raise SystemExit("--write-uncertainty needs every operator class (no --only)")
        from llmsim.workloads.operators import KIND_CLASS

        # a GEMM priced by 16-bit coefficients adds the activation-quantisation pass, whose floor is the
        # elementwise class's (hwmodels/costmodel.py quant_pass_params): refit that class too, score only --only
        fitted = set(args.only) | ({"elementwise"} if "gemm" in args.only else set())
        table = table[table["kind"].map(KIND_CLASS).isin(fitted).to_numpy()].reset_index(drop=True)
        scored = table["kind"].map(KIND_CLASS).isin(args.only).to_numpy()
    else:
        scored = np.ones(len(table), dtype=bool)
    arch = arch_of(table["device"])
    classes = args.arch or sorted(set(arch))
    latency = cal.DEFAULT_LATENCY_CLASSES + tuple(c for c in args.latency if c not in cal.DEFAULT_LATENCY_CLASSES)
    out = {}
    missed = []
    residuals: dict = {}
    for left_out in classes:
        t1 = time.perf_counter()
        prof = loao_profile(table, arch, left_out, shipped, latency, args.roofline, args.l2,
                           fixed)
        mine = table[(arch == left_out) & scored].reset_index(drop=True)
        rows = score(mine, prof, residuals, harness_floors(mine, shipped) if args.harness_floor else None)
        if args.by_time:
            by_time(table[(arch == left_out) & scored].reset_index(drop=True), prof)
        out[left_out] = rows
        print(f"== {left_out} left out ({', '.join(sorted(set(table.loc[arch == left_out, 'device'])))}); "
              f"refit + score {time.perf_counter() - t1:.0f}s")
        print(f"  {'operator class':14s} {'source / dtype':15s} {'rows':>7s} {'MAPE':>7s} {'median':>7s} {'pred/meas':>9s}")
        for r in rows:
            flag = ""
            if r["source"] == "all" and r["op_class"] in TARGET_CLASSES:
                flag = "  ok" if r["mape"] <= TARGET_MAPE else "  MISSED (target <= 15%)"
                if r["mape"] > TARGET_MAPE:
                    missed.append(f"{left_out}/{r['op_class']}")
            print(f"  {r['op_class']:14s} {r['source'][:15]:15s} {r['rows']:7d} {100 * r['mape']:6.1f}% "
                  f"{100 * r['median_ape']:6.1f}% {r['median_ratio']:9.3f}{flag}")
    print(f"target: MAPE <= {100 * TARGET_MAPE:.0f}% for {', '.join(TARGET_CLASSES)}; missed: "
          f"{', '.join(missed) or 'none'}; total {time.perf_counter() - t0:.0f}s")
    if args.band_check:
        band_check(residuals, classes)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    if args.write_uncertainty:
        from llmsim.hwmodels import uncertainty as unc

        if args.arch:
            raise SystemExit("--write-uncertainty needs every class left out (no --arch)")
        # each left-out class weighs the same: resample every class's residuals to the smallest count
        pooled_by_class = {cls: pooled(parts) for cls, parts in residuals.items()}
        bands = unc.class_bands(np.concatenate(list(pooled_by_class.values())),
                                np.concatenate([[c] * len(v) for c, v in pooled_by_class.items()]))
        dest = Path(cal.SHIPPED_PROFILE).parent / unc.FILE_NAME
        data = json.loads(dest.read_text()) if dest.is_file() else unc.ErrorModel({}, {}).to_json()
        data["extrapolated"] = {k: [v[0], v[1], v[2]] for k, v in sorted(bands.items())}
        dest.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"wrote the leave-one-architecture-out bands into {dest}")


if __name__ == "__main__":
    main()
