"""Score predictions against measured runs, number by number.

Kernel measurements (aiconfigurator, vidur, llmcompass formats) are priced with a calibration
profile (the shipped one unless ``--profile``) that is never refitted here; the report says how
many scored rows that profile was fitted on (``rows_in_fit``), so a fit is never mistaken for a
prediction, and how many lie outside the shape range their coefficients were fitted on
(``extrapolated``). ``split='test'`` scores only the rows the profile held out.

Collective rows are priced by the alpha-beta network model every deployment uses
(hwmodels/collectives.py, placed by validation/network.py ``price``), not by the kernel-calibrated
``collective`` class: their ``priced_by`` is ``alpha-beta:<set>`` (``nvlink@hopper``,
``custom_graph@ampere``, ...), their ``rows_in_fit`` counts the network fit's training rows, and their
interval is the ``network|<regime>`` band a deployment's collectives get, scored on held-out rows
that band was not fitted on. ``report["network"]`` tables the same predictions per message size,
with the network parameters' own split.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.hwmodels.calibration import Profile, default_profile
from llmsim.hwmodels.costmodel import OperatorCostModel, PricedRows
from llmsim.hwmodels.devices import get_device
from llmsim.hwmodels.uncertainty import ErrorModel, default_error_model
from llmsim.validation.calibrate import DEFAULT_SALT, interval_fit_rows, rows_in_fit
from llmsim.validation.loaders import load_measurements, split_of
from llmsim.validation import network as nw
from llmsim.validation.network import format_network_table, network_report
from llmsim.validation.stats import error_stats, stats_header, stats_row, unpriced_rows
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.operators import COLLECTIVE_KINDS

SPLITS = ("all", "test", "train")


def source_labels(sources) -> dict[str, str]:
    """Short, unique label per measurement file: its path below the files' common folder, with
    at least its parent folder kept (``h100_sxm/gemm_perf``) and the suffix dropped."""
    paths = {s: Path(s).resolve() for s in sorted(set(sources))}
    if not paths:
        return {}
    root = Path(os.path.commonpath([str(p.parent) for p in paths.values()]))
    if any(p.parent == root for p in paths.values()):
        root = root.parent
    return {s: p.relative_to(root).with_suffix("").as_posix() for s, p in paths.items()}


def validate_kernels(paths: list[str], *, fmt: str = "auto", device: str | None = None,
                     model: str | None = None, profile: Profile | None = None,
                     split: str = "all", network_params=None, error_model: ErrorModel | None = None) -> dict:
    """Predict every row of the measurement files and report errors per file and operator kind;
    with collective rows, also ``report["network"]`` (validation/network.py ``network_report``,
    priced with ``network_params`` or the shipped network parameters)."""
    if split not in SPLITS:
        raise ConfigError(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}")
    if device is not None:
        get_device(device)  # an unknown name fails here, with suggestions, before any file is read
    profile = profile if profile is not None else default_profile()
    table = pd.concat([load_measurements(p, fmt, device=device, model=model) for p in paths],
                      ignore_index=True)
    has_collectives = bool(table["kind"].isin(COLLECTIVE_KINDS).any())
    network = network_report(table, params=network_params, split=split) if has_collectives else None
    if split != "all":
        frac = float(profile.split.get("holdout_fraction", 0.0))
        held = split_of(table["shape_key"].to_numpy(), salt=profile.split.get("salt", DEFAULT_SALT),
                        holdout_fraction=frac) if frac > 0 else np.zeros(len(table), dtype=bool)
        table = table[held if split == "test" else ~held].reset_index(drop=True)
    priced = OperatorCostModel(profile).price(table, device=device)
    in_fit = rows_in_fit(table, profile)
    band_rows = interval_fit_rows(table, profile)
    band_key = priced.param_key
    if has_collectives:
        priced, in_fit, band_rows, band_key = _alpha_beta_collectives(table, priced, in_fit, band_rows, network_params)
    meas = table["measured_s"].to_numpy(np.float64)
    ok = np.isfinite(priced.seconds) & np.isfinite(meas) & (meas > 0)
    labels = source_labels(table["source"])
    names = np.array([f"{labels[s]} | {k}" for s, k in zip(table["source"], table["kind"])], dtype=object)

    extra = priced.extrapolated if priced.extrapolated is not None else np.zeros(len(table), dtype=bool)
    fb = priced.fallback if priced.fallback is not None else np.full(len(table), "", dtype=object)
    sib = priced.sibling if priced.sibling is not None else np.full(len(table), "", dtype=object)
    report = error_stats(priced.seconds[ok], meas[ok])
    report["rows_in_fit"] = int(in_fit[ok].sum())
    report["extrapolated"] = int(extra[ok].sum())
    report["fallback"] = int((fb[ok] != "").sum())
    em = error_model if error_model is not None else default_error_model()
    lo, hi = em.intervals(priced.seconds, band_key, priced.op_class, fb)
    scored = ok & ~band_rows & ~in_fit  # rows no band and no coefficient saw
    inside = (meas >= lo) & (meas <= hi)
    report["interval"] = ("p10-p90 of held-out log(measured/predicted) per entry and regime (hwmodels/uncertainty.py); "
                          "collectives: the alpha-beta model's network|<regime> band")
    report["interval_coverage"] = float(inside[scored].mean()) if scored.any() else None
    report["interval_coverage_rows"] = int(scored.sum())
    report["split"] = split
    report["profile"] = profile.path or "<default>"
    groups = []
    for name in sorted(set(names[ok])):
        sel = ok & (names == name)
        g = {"name": name, **error_stats(priced.seconds[sel], meas[sel]), "rows_in_fit": int(in_fit[sel].sum()),
             "extrapolated": int(extra[sel].sum())}
        keys = sorted(set(priced.param_key[sel]))
        g["params"] = keys
        g["priced_by"] = {k: int((sel & (priced.param_key == k)).sum()) for k in keys}
        g["interval_rel"] = [float(np.median(lo[sel] / priced.seconds[sel])), float(np.median(hi[sel] / priced.seconds[sel]))]
        g["interval_coverage"] = float(inside[sel & scored].mean()) if (sel & scored).any() else None
        g["fallback"] = {f: int((sel & (fb == f)).sum()) for f in ("class", "family") if (sel & (fb == f)).any()}
        fitted_on = sorted(set(sib[sel]) - {""})
        if fitted_on:  # priced from another device of the class (hwmodels/efficiency.py _combine_sibling)
            g["sibling_transfer_from"] = {d: int((sel & (sib == d)).sum()) for d in fitted_on}
        groups.append(g)
    report["groups"] = groups
    report["not_expressed"] = unpriced_rows(names, priced.reason, ~ok)
    if network is not None:
        report["network"] = network
    return report


def _alpha_beta_collectives(table: pd.DataFrame, priced: PricedRows, in_fit: np.ndarray, band_rows: np.ndarray,
                            network_params=None):
    """``priced`` with its collective rows priced by the alpha-beta model a deployment uses
    (validation/network.py ``price``), and the matching ``rows_in_fit``, band-fit rows and band keys:
    the network fit's training rows, the rows the network bands were fitted on, ``network:<what>``."""
    params = network_params if network_params is not None else nw.default_network_params()
    coll = table["kind"].isin(COLLECTIVE_KINDS).to_numpy()
    configs = nw.row_configs(table)
    seconds, reason = nw.price(table, params, configs=configs)
    names, fb = nw.param_set_names(table, params, configs=configs)
    old_fb = priced.fallback if priced.fallback is not None else np.full(len(table), "", dtype=object)
    old_extra = priced.extrapolated if priced.extrapolated is not None else np.zeros(len(table), dtype=bool)
    priced = PricedRows(seconds=np.where(coll, seconds, priced.seconds),
                        reason=np.where(coll, reason, priced.reason).astype(object),
                        param_key=np.where(coll, names, priced.param_key).astype(object),
                        op_class=np.where(coll, "collective", priced.op_class).astype(object),
                        extrapolated=np.where(coll, False, old_extra),
                        fallback=np.where(coll, fb, old_fb).astype(object),
                        sibling=np.where(coll, "", priced.sibling if priced.sibling is not None else "").astype(object))
    in_fit = np.where(coll, nw.rows_in_fit(table, params), in_fit)
    band_rows = np.where(coll, nw.band_fit_rows(table, params), band_rows)
    band_key = priced.param_key.astype(object).copy()
    band_key[coll] = nw.network_band_keys(table[coll])
    return priced, in_fit, band_rows, band_key


def format_table(report: dict) -> str:
    """Readable table of a kernel validation report."""
    lines = [stats_header("group")]
    for g in report["groups"]:
        lines.append(stats_row(g["name"], g))
    lines.append(stats_row("ALL", report))
    extrapolated = [g for g in report["groups"] if g.get("extrapolated")]
    if extrapolated:
        lines.append(f"extrapolated: {report['extrapolated']} rows lie outside the shape range their coefficients "
                     f"were fitted on (priced as roofline x efficiency at the nearest fitted shape):")
        for g in extrapolated:
            lines.append(f"  {g['name']}: {g['extrapolated']} of {g['rows']} rows")
    fallen = [g for g in report["groups"] if g.get("fallback")]
    if fallen:
        lines.append(f"fallback: {report['fallback']} rows priced by another architecture class's or kernel family's "
                     f"coefficients (no calibration of their own):")
        for g in fallen:
            what = ", ".join(f"{n} by another {f}" for f, n in sorted(g["fallback"].items()))
            lines.append(f"  {g['name']}: {what} ({', '.join(g['params'])})")
    siblings = [g for g in report["groups"] if g.get("sibling_transfer_from")]
    if siblings:
        lines.append("sibling transfer: rows priced by coefficients fitted on another device of the class, the "
                     "memory-side latency held in seconds (docs/trust.md):")
        for g in siblings:
            lines.append(f"  {g['name']}: " + ", ".join(f"{n} from {d}" for d, n in g["sibling_transfer_from"].items()))
    if report.get("not_expressed"):
        lines.append("not expressed:")
        for ne in report["not_expressed"]:
            lines.append(f"  {ne['name']}: {ne['rows']} rows: {ne['reason']}")
    if report.get("interval_coverage") is not None:
        lines.append(f"80% interval coverage: {100 * report['interval_coverage']:.1f}% of {report['interval_coverage_rows']} "
                     f"rows no band or coefficient was fitted on (target 70-90%)")
    lines.append(f"split: {report['split']}; profile: {report['profile']}; errors are |pred-meas|/meas")
    if report.get("network"):
        lines.append("")
        lines.append(format_network_table(report["network"]))
        lines.append(f"split: {report['network']['split']}; network parameters: {report['network']['params']} "
                     f"(hwmodels/data/network_calibration.yaml unless given)")
    return "\n".join(lines)
