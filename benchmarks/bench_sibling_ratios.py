"""Predicted time of a sibling over its class's fitted device, with and without sibling transfer
(hwmodels/efficiency.py ``_combine_sibling``; docs/trust.md "Sibling transfer"). It measures no hardware:
it shows what the transfer changes where no sibling measurement ships.

    .venv/bin/python benchmarks/bench_sibling_ratios.py [--pair h200:h100 --pair l40s:rtx-4090 ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.hwmodels.calibration import Profile  # noqa: E402
from llmsim.hwmodels.costmodel import OperatorCostModel  # noqa: E402

COMMON = {"measured_s": np.nan, "source": "", "kernel": "", "variant": ""}
CASES = (  # (label, rows): Llama-3-8B attention heads (32 query, 8 KV, head dim 128)
    ("bf16 GEMM 8192x8192 m=1/16/128/8192", dict(kind="gemm", dtype="bf16", m=[1, 16, 128, 8192], n=8192, k=8192,
                                                  kv_dtype="")),
    ("fp8 GEMM 8192x8192 m=1/128/8192", dict(kind="gemm", dtype="fp8", m=[1, 128, 8192], n=8192, k=8192, kv_dtype="")),
    ("decode 1x128/8x1024/64x16384", dict(kind="attn_decode", dtype="bf16", batch=[1, 8, 64], ctx=[128, 1024, 16384],
                                          heads=32, kv_heads=8, head_dim=128, window=np.nan, seq=1, kv_dtype="bf16")),
    ("prefill 8x128/8x8192", dict(kind="attn_prefill", dtype="bf16", batch=[8, 8], seq=[128, 8192], ctx=0, heads=32,
                                  kv_heads=8, head_dim=128, window=np.nan, kv_dtype="bf16")),
)


def _rows(device: str, spec: dict) -> pd.DataFrame:
    n = max(len(v) for v in spec.values() if isinstance(v, list))
    cols = {k: (np.asarray(v, float) if isinstance(v, list) else v) for k, v in spec.items()}
    return pd.DataFrame({"device": device, **COMMON, **cols, "shape_key": [f"s{i}" for i in range(n)]})


def ratios(sibling: str, fitted: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    model = OperatorCostModel()
    transfer = Profile.sibling_vector
    for label, spec in CASES:
        base = model.price(_rows(fitted, spec)).seconds
        after = model.price(_rows(sibling, spec)).seconds / base
        Profile.sibling_vector = lambda self, p, device, dev, *a, **k: dev  # the plain (proportional) form
        try:
            before = model.price(_rows(sibling, spec)).seconds / base
        finally:
            Profile.sibling_vector = transfer
        out.append((label, before, after))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", default=[], metavar="SIBLING:FITTED")
    args = ap.parse_args()
    for pair in args.pair or ["h200:h100", "h100-pcie:h100", "l40s:rtx-4090", "a100-sxm-40gb:a100"]:
        sib, _, fit = pair.partition(":")
        print(f"== {sib} / {fit}: predicted time ratio, plain form -> sibling transfer")
        for label, before, after in ratios(sib, fit):
            print(f"  {label:38s} " + "  ".join(f"{b:.3f} -> {a:.3f}" for b, a in zip(before, after)))


if __name__ == "__main__":
    main()
