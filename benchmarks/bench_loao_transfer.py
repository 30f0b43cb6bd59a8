"""Does the excess over the roofline carry from one architecture to another in seconds? (docs/trust.md
"Sibling transfer"). Leave-one-architecture-out as bench_loao.py, then every left-out row priced three ways
from the refitted generic class, whose reference device is the row-weighted geometric mean of the peak and
bandwidth its rows were fitted on:

* ``plain``: today's form, floor + roofline x E (E: fitted inverse efficiency);
* ``additive``: the whole excess R_ref (E - 1) held in seconds, floor + excess + roofline;
* ``sibling``: the shipped sibling transfer (hwmodels/efficiency.py ``_combine_sibling``): only the
  memory-side excess beyond the streaming shortfall (the left-out class's prior share of DRAM bandwidth,
  hwmodels/data/calibration/priors.yaml) held in seconds.

    .venv/bin/python benchmarks/bench_loao_transfer.py [--arch ada ...]     # ~10 min on 2 cores

The shipped profile applies the sibling form only within a class (an entry fitted on one device pricing
another device of its class); this benchmark measures it across classes, where kernels differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loao import arch_of, loao_profile  # noqa: E402

from llmsim.hwmodels import efficiency as eff  # noqa: E402
from llmsim.hwmodels.calibration import default_profile  # noqa: E402
from llmsim.hwmodels.costmodel import OperatorCostModel, operator_groups  # noqa: E402
from llmsim.hwmodels.priors import roofline_shares  # noqa: E402
from llmsim.validation import calibrate as cal  # noqa: E402
from llmsim.validation.loaders import load_measurements  # noqa: E402
from llmsim.workloads.operators import KIND_CLASS  # noqa: E402

CLASSES = ("gemm", "attn_prefill", "attn_decode")
MODES = ("plain", "additive", "sibling")


def reference_peaks(table) -> dict:
    """(op class, group) -> row-weighted geometric mean (peak FLOP/s, bandwidth B/s) of ``table``'s rows."""
    acc: dict = {}
    for grp in operator_groups(table):
        if grp.error or grp.op_class not in CLASSES:
            continue
        a = acc.setdefault((grp.op_class, grp.group), np.zeros(3))
        a += len(grp.positions) * np.array([np.log(grp.device_vector[0]), np.log(grp.device_vector[1]), 1.0])
    return {k: (float(np.exp(v[0] / v[2])), float(np.exp(v[1] / v[2]))) for k, v in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", action="append", default=[], help="only this left-out class (repeatable)")
    args = ap.parse_args()
    shipped = default_profile()
    table = load_measurements(cal.SHIPPED_DATA)
    table = table[table["kind"].map(KIND_CLASS).isin(set(CLASSES) | {"elementwise"}).to_numpy()].reset_index(drop=True)
    arch = arch_of(table["device"])
    for left_out in args.arch or sorted(set(arch)):
        prof = loao_profile(table, arch, left_out, shipped, cal.DEFAULT_LATENCY_CLASSES)
        refs = reference_peaks(table[arch != left_out].reset_index(drop=True))
        rows = table[(arch == left_out) & table["kind"].map(KIND_CLASS).isin(CLASSES).to_numpy()].reset_index(drop=True)
        meas = rows["measured_s"].to_numpy(np.float64)
        plain = OperatorCostModel(prof).price(rows)
        out = {m: plain.seconds.copy() for m in MODES}
        for grp in operator_groups(rows):
            if grp.error:
                continue
            p, key = prof.lookup(grp.device.arch_class, grp.op_class, grp.group)
            ref = refs.get((grp.op_class, key.split("/", 2)[2]))
            if ref is None:
                continue
            lo, hi = p.shape_range(grp.op_class)
            ci = eff.CLASS_INDEX[grp.op_class]
            dev = grp.device_vector
            t_plain = eff.predict_rows_ranged(ci, grp.shapes, dev, p.log_floor, p.theta, lo, hi)
            extra = plain.seconds[grp.positions] - t_plain  # the activation-quantisation pass, if any
            sib = np.zeros(eff.DEV_WITH_REF)
            sib[:4] = dev
            sib[6:8] = ref
            sib[8] = roofline_shares(grp.device.arch_class, "bf16")[1]  # streaming share of DRAM bandwidth
            out["sibling"][grp.positions] = eff.predict_rows_ranged(ci, grp.shapes, sib, p.log_floor, p.theta,
                                                                    lo, hi) + extra
            dref = dev.copy()
            dref[0], dref[1] = ref
            t_ref = eff.predict_rows_ranged(ci, grp.shapes, dref, p.log_floor, p.theta, lo, hi)
            flops, nbytes = np.maximum(grp.shapes[:, -2], 1.0), np.maximum(grp.shapes[:, -1], 1.0)
            r_ref = np.maximum(flops / ref[0], nbytes / ref[1])
            r_dev = np.maximum(flops / dev[0], nbytes / dev[1])
            excess = t_ref - np.exp(p.log_floor) - r_ref
            out["additive"][grp.positions] = np.where(excess >= 0, t_ref - r_ref + r_dev, t_plain) + extra
        print(f"== {left_out} left out: MAPE (median predicted / measured)")
        cls = np.array([KIND_CLASS[k] for k in rows["kind"]], dtype=object)
        for c in CLASSES:
            sel = (cls == c) & np.isfinite(plain.seconds) & (meas > 0)
            cells = [f"{m} {100 * np.mean(np.abs(out[m][sel] - meas[sel]) / meas[sel]):5.1f}% "
                     f"({np.median(out[m][sel] / meas[sel]):.3f})" for m in MODES]
            print(f"  {c:13s} {sel.sum():7d} rows  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
