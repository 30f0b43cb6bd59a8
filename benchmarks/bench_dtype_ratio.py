"""Measured time of one GEMM shape in another compute format over its bf16 time, on the same device.

    .venv/bin/python benchmarks/bench_dtype_ratio.py [--device "NVIDIA H100 80GB HBM3"] [--attention]

Why it matters (issue 13, docs/trust.md "Where today's error is"): a GPU class that no calibration
measured in a format is priced with the bf16 coefficients on that format's datasheet peak, which
assumes the format's kernels reach the bf16 kernels' share of peak at every size. This prints what the
shipped measurements say instead: for every (m, n, k) measured in bf16 and in another format on the
device, the median over shapes of ``t_format / t_bf16``, binned by the bf16 time, with the kernels
that ran (aiconfigurator's collector names them), then each format's fastest row by m. Reads the shipped kernel data only; fits nothing.

``--attention`` does the same for prefill attention by KV-cache dtype (every shape measured with both), with
the median achieved TFLOP/s of each: what hwmodels/costmodel.py ``attention_compute_dtype`` rests on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.validation import calibrate as cal  # noqa: E402
from llmsim.validation.loaders import load_measurements  # noqa: E402
from llmsim.workloads.operators import KIND_CLASS  # noqa: E402

BINS_S = (0.0, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, np.inf)
M_BINS = (0, 16, 64, 256, 1024, 4096, np.inf)


ATTN_KEY = ["batch", "seq", "ctx", "heads", "kv_heads", "head_dim", "window"]


def attention_by_kv_dtype(table: pd.DataFrame, device: str) -> None:
    """Prefill attention measured with a BF16 and an FP8 KV cache on the same shapes: time ratio and achieved
    TFLOP/s (workloads/operators.py FLOPs) by the BF16 time."""
    from llmsim.workloads.operators import attention_prefill_work_v

    attn = table[(table["kind"].map(KIND_CLASS) == "attn_prefill").to_numpy() & (table["device"] == device).to_numpy()]
    wide = attn.pivot_table(index=ATTN_KEY, columns="kv_dtype", values="measured_s", aggfunc="median")
    if not {"bf16", "fp8"} <= set(wide.columns):
        raise SystemExit(f"{device} has no prefill attention measured with both a bf16 and an fp8 KV cache")
    both = wide.dropna(subset=["bf16", "fp8"])
    key = both.index.to_frame(index=False).to_numpy(np.float64).T  # the ATTN_KEY columns
    flops = attention_prefill_work_v(*key[:6], 2.0, key[6])[0]  # FLOPs do not depend on the KV bytes
    print(f"{device}: {len(both)} prefill attention shapes measured with both KV dtypes")
    print(f"{'bf16 time':>22s} {'shapes':>7s} {'fp8 / bf16':>11s} {'bf16 TFLOP/s':>13s} {'fp8 TFLOP/s':>12s}")
    label = pd.cut(both["bf16"], BINS_S, right=False)
    for interval, rows in both.groupby(label, observed=True):
        f = flops[label == interval]
        print(f"{interval.left * 1e6:9.0f}-{interval.right * 1e6:<9.0f}us {len(rows):7d} "
              f"{np.median(rows['fp8'] / rows['bf16']):11.2f} {np.median(f / rows['bf16']) / 1e12:13.0f} "
              f"{np.median(f / rows['fp8']) / 1e12:12.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="NVIDIA H100 80GB HBM3", help="device name as the kernel data spell it")
    ap.add_argument("--attention", action="store_true", help="prefill attention by KV-cache dtype instead of GEMMs")
    args = ap.parse_args()
    table = load_measurements(cal.SHIPPED_DATA)
    if args.attention:
        attention_by_kv_dtype(table, args.device)
        return
    gemm = table[(table["kind"].map(KIND_CLASS) == "gemm").to_numpy() & (table["device"] == args.device).to_numpy()]
    if gemm.empty:
        raise SystemExit(f"no GEMM rows for device {args.device!r}; devices with GEMM rows: "
                         f"{', '.join(sorted(table.loc[table['kind'].map(KIND_CLASS) == 'gemm', 'device'].unique()))}")
    wide = gemm.pivot_table(index=["m", "n", "k"], columns="dtype", values="measured_s", aggfunc="median")
    if "bf16" not in wide:
        raise SystemExit(f"{args.device} has no bf16 GEMM rows to compare with")
    others = [d for d in wide.columns if d != "bf16"]
    if not others:
        raise SystemExit(f"{args.device} has GEMM rows in bf16 only")
    for d in others:
        print(f"{d}: kernels {', '.join(sorted(gemm.loc[gemm['dtype'] == d, 'kernel'].dropna().unique()))}")
    both = wide.dropna(subset=["bf16"])
    label = pd.cut(both["bf16"], BINS_S, right=False)
    print(f"{'bf16 time':>22s} " + " ".join(f"{'shapes':>7s} {d + ' / bf16':>16s}" for d in others))
    for interval, rows in both.groupby(label, observed=True):
        cells = []
        for d in others:
            r = (rows[d] / rows["bf16"]).dropna()
            cells.append(f"{len(r):7d} {np.median(r):16.2f}" if len(r) else f"{0:7d} {'-':>16s}")
        print(f"{interval.left * 1e6:9.0f}-{interval.right * 1e6:<9.0f}us " + " ".join(cells))
    # the fastest row of each format by GEMM rows m: a floor that grows with m is a pass over the
    # m x k activations (quantisation), one that does not is a fixed per-call cost
    fastest = wide.groupby(pd.cut(wide.index.get_level_values("m"), M_BINS), observed=True).min()
    print(f"{'m':>14s} " + " ".join(f"{'fastest ' + d:>18s}" for d in wide.columns))
    for interval, row in fastest.iterrows():
        print(f"{int(interval.left) + 1:6d}-{int(interval.right) if np.isfinite(interval.right) else 'inf':<7} "
              + " ".join(f"{row[d] * 1e6:15.1f} us" for d in wide.columns))


if __name__ == "__main__":
    main()
