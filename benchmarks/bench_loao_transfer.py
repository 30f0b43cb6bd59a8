"""Does the excess over the roofline carry from one architecture to another in seconds? (docs/trust.md
"Sibling transfer"). Leave-one-architecture-out as bench_loao.py, then every left-out row priced three ways
from the refitted generic class, whose reference device is the row-weighted geometric mean of the peak and
bandwidth its rows were fitted on:

* ``plain``: today's form, floor + roofline x E (E: fitted inverse efficiency);
* ``additive``: the whole excess R_ref (E - 1) held in seconds, floor + excess + roofline;
* ``sibling``: the shipped sibling transfer (hwmodels/efficiency.py ``_combine_sibling``): only the
  memory-side excess beyond the streaming shortfall (the left-out class's prior share of DRAM bandwidth,
  hwmodels/data/calibration/priors.yaml) held in seconds;
* ``cycles``: the memory side proportional (plain), the compute-side excess scaled by the reference's
  SMs x clock over the left-out device's (work per SM cycle: prologue, epilogue, pipeline bubbles), not by
  the FLOP roofline: a device whose SMs do twice the FLOPs per clock does not halve them.

    .venv/bin/python benchmarks/bench_loao_transfer.py [--arch ada ...]     # ~13 min on 2 cores
    .venv/bin/python benchmarks/bench_loao_transfer.py --xla                # the B200 from the H100's entries, 2 s

``--xla`` prices OpenXLA's held-out B200 GEMMs (validation/data/heldout/xla_gemm) from the H100's own
(hopper) entries in the four forms, next to the same table's H100 rows (the stack's share of the error).

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
MODES = ("plain", "additive", "sibling", "cycles")


def sm_clock(device) -> float:
    """SM cycles per second (the catalogue's clock_hz: DeviceSpec.sm_cycles_per_s)."""
    cycles = device.sm_cycles_per_s()
    if cycles is None:
        raise SystemExit(f"{device.name}: the device catalogue gives no clock_hz, which the cycles form needs")
    return cycles


def reference_peaks(table) -> dict:
    """(op class, group) -> row-weighted geometric mean (peak FLOP/s, bandwidth B/s, SMs x clock) of
    ``table``'s rows."""
    acc: dict = {}
    for grp in operator_groups(table):
        if grp.error or grp.op_class not in CLASSES:
            continue
        a = acc.setdefault((grp.op_class, grp.group), np.zeros(4))
        a += len(grp.positions) * np.array([np.log(grp.device_vector[0]), np.log(grp.device_vector[1]),
                                            np.log(sm_clock(grp.device)), 1.0])
    return {k: tuple(float(x) for x in np.exp(v[:3] / v[3])) for k, v in acc.items()}


def forms(p, grp, ref, t_plain) -> dict:
    """Seconds of ``grp``'s rows priced by entry ``p`` from reference device ``ref`` (peak, bandwidth,
    SMs x clock) in the additive, sibling and cycles forms (``t_plain``: the plain form's)."""
    lo, hi = p.shape_range(grp.op_class)
    ci = eff.CLASS_INDEX[grp.op_class]
    dev = grp.device_vector
    out = {"plain": t_plain}
    sib = np.zeros(eff.DEV_WITH_REF + 1)
    sib[:4] = dev
    sib[6:8] = ref[:2]
    sib[8] = roofline_shares(grp.device.arch_class, "bf16")[1]  # streaming share of DRAM bandwidth
    out["sibling"] = eff.predict_rows_ranged(ci, grp.shapes, sib[:eff.DEV_WITH_REF], p.log_floor, p.theta, lo, hi)
    sib[8] = 1e-9  # memory side proportional
    sib[eff.DEV_WITH_REF] = ref[2] / sm_clock(grp.device)
    out["cycles"] = eff.predict_rows_ranged(ci, grp.shapes, sib, p.log_floor, p.theta, lo, hi)
    dref = dev.copy()
    dref[0], dref[1] = ref[:2]
    t_ref = eff.predict_rows_ranged(ci, grp.shapes, dref, p.log_floor, p.theta, lo, hi)
    flops, nbytes = np.maximum(grp.shapes[:, -2], 1.0), np.maximum(grp.shapes[:, -1], 1.0)
    r_ref = np.maximum(flops / ref[0], nbytes / ref[1])
    r_dev = np.maximum(flops / dev[0], nbytes / dev[1])
    excess = t_ref - np.exp(p.log_floor) - r_ref
    out["additive"] = np.where(excess >= 0, t_ref - r_ref + r_dev, t_plain)
    return out


def xla() -> None:
    """OpenXLA's B200 GEMMs priced from the H100's own entries in every form, and the table's H100 rows."""
    from llmsim.hwmodels.devices import get_device

    rows = load_measurements(Path(cal.SHIPPED_DATA).parent / "heldout" / "xla_gemm")
    meas = rows["measured_s"].to_numpy(np.float64)
    prof = default_profile()
    h100 = get_device("h100")
    out = {m: np.full(len(rows), np.nan) for m in MODES}
    for grp in operator_groups(rows):
        p, _ = prof.lookup("hopper", grp.op_class, grp.group)
        lo, hi = p.shape_range(grp.op_class)
        t_plain = eff.predict_rows_ranged(eff.CLASS_INDEX[grp.op_class], grp.shapes, grp.device_vector, p.log_floor,
                                          p.theta, lo, hi)
        ref = (h100.peak_flops("fp8" if grp.group.startswith("fp8") else "bf16"), h100.memory_bandwidth_bytes_per_s,
               sm_clock(h100))
        for m, t in forms(p, grp, ref, t_plain).items():
            out[m][grp.positions] = t
    print("OpenXLA GEMM table priced from the H100's own entries: MAPE (median predicted / measured)")
    for (dev, dtype), g in rows.groupby(["device", "dtype"]):
        sel = g.index.to_numpy()
        cells = [f"{m} {100 * np.mean(np.abs(out[m][sel] - meas[sel]) / meas[sel]):5.1f}% "
                 f"({np.median(out[m][sel] / meas[sel]):.3f})" for m in MODES]
        print(f"  {dev:22s} {dtype:5s} {len(sel):4d} rows  " + "   ".join(cells))
        for lo_us, hi_us in ((0, 10), (10, 30), (30, 1000)):
            b = sel[(meas[sel] >= lo_us * 1e-6) & (meas[sel] < hi_us * 1e-6)]
            if b.size:
                print(f"  {'':22s} measured {lo_us:>3d}-{hi_us:<4d} us {b.size:4d} rows  "
                      + "   ".join(f"{m} {np.median(out[m][b] / meas[b]):.3f}" for m in MODES))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", action="append", default=[], help="only this left-out class (repeatable)")
    ap.add_argument("--xla", action="store_true", help="score the forms on OpenXLA's held-out B200 GEMMs instead")
    args = ap.parse_args()
    if args.xla:
        xla()
        return
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
            t_plain = eff.predict_rows_ranged(eff.CLASS_INDEX[grp.op_class], grp.shapes, grp.device_vector,
                                              p.log_floor, p.theta, lo, hi)
            extra = plain.seconds[grp.positions] - t_plain  # the activation-quantisation pass, if any
            for m, t in forms(p, grp, ref, t_plain).items():
                out[m][grp.positions] = t + extra
        print(f"== {left_out} left out: MAPE (median predicted / measured)")
        cls = np.array([KIND_CLASS[k] for k in rows["kind"]], dtype=object)
        for c in CLASSES:
            sel = (cls == c) & np.isfinite(plain.seconds) & (meas > 0)
            cells = [f"{m} {100 * np.mean(np.abs(out[m][sel] - meas[sel]) / meas[sel]):5.1f}% "
                     f"({np.median(out[m][sel] / meas[sel]):.3f})" for m in MODES]
            print(f"  {c:13s} {sel.sum():7d} rows  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
