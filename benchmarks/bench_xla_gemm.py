"""GEMMs on a GPU no calibration has seen (the B200), scored against OpenXLA's measured GEMM table
(validation/data/heldout/xla_gemm/, never fitted), next to the same table's H100 rows: the H100 is
calibrated (on vLLM layers from aiconfigurator), so its rows say how much of the error is the measuring
stack's, and the measured B200 / H100 time ratio of each shape, on one stack, says how much is the
device's.

    .venv/bin/python benchmarks/bench_xla_gemm.py

Prints MAPE and the median predicted / measured per device, dtype and measured time, then per dtype and
H100 time the median B200 / H100 time ratio measured and predicted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmsim.hwmodels.costmodel import OperatorCostModel  # noqa: E402
from llmsim.validation.loaders import load_measurements  # noqa: E402

DATA = ROOT / "validation" / "data" / "heldout" / "xla_gemm"
BINS_US = (0, 10, 30, 100, 300)


def main() -> None:
    t = load_measurements(DATA)
    priced = OperatorCostModel().price(t)
    t = t.assign(pred=priced.seconds, key=priced.param_key, fallback=priced.fallback)
    t = t.assign(ratio=t["pred"] / t["measured_s"], ape=(t["pred"] - t["measured_s"]).abs() / t["measured_s"],
                 us=pd.cut(t["measured_s"] * 1e6, BINS_US))
    print(f"{'device':24s} {'dtype':6s} {'rows':>5s} {'MAPE':>7s} {'median pred/meas':>17s}  priced by")
    for (dev, dtype), g in t.groupby(["device", "dtype"]):
        keys = ", ".join(sorted(set(g["key"])))
        print(f"{dev:24s} {dtype:6s} {len(g):5d} {100 * g['ape'].mean():6.1f}% {g['ratio'].median():17.3f}  {keys}")
        for b, gb in g.groupby("us", observed=True):
            print(f"{'':24s}   measured {b.left:>3.0f}-{b.right:<3.0f} us {len(gb):4d} rows  pred/meas {gb['ratio'].median():.3f}")
    cols = ["dtype", "m", "n", "k"]
    b200 = t[t["device"].str.contains("B200")].set_index(cols)
    h100 = t[t["device"].str.contains("H100")].set_index(cols)
    j = b200[["measured_s", "pred"]].join(h100[["measured_s", "pred"]].add_suffix("_h100"), how="inner")
    j = j.assign(us=pd.cut(j["measured_s_h100"] * 1e6, BINS_US))
    print("B200 / H100 time of the same shape on the same stack (median): measured vs predicted")
    for (dtype, b), g in j.groupby([j.index.get_level_values("dtype"), "us"], observed=True):
        meas = np.median(g["measured_s"] / g["measured_s_h100"])
        pred = np.median(g["pred"] / g["pred_h100"])
        print(f"  {dtype:5s} H100 {b.left:>3.0f}-{b.right:<3.0f} us {len(g):4d} shapes  measured {meas:.3f}  "
              f"predicted {pred:.3f}  ({pred / meas:.2f}x)")


if __name__ == "__main__":
    main()
