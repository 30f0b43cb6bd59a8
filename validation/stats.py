"""Error statistics and their table rows, shared by every validation report."""
from __future__ import annotations

import numpy as np
import pandas as pd


def error_stats(pred: np.ndarray, meas: np.ndarray) -> dict:
    """APE statistics as fractions (0.08 = 8%)."""
    ape = np.abs(pred - meas) / meas
    if ape.size == 0:
        return {"rows": 0, "mape": None, "median_ape": None, "p90_ape": None}
    return {"rows": int(ape.size), "mape": float(np.mean(ape)), "median_ape": float(np.median(ape)),
            "p90_ape": float(np.percentile(ape, 90))}


def stats_header(title: str) -> str:
    return f"{title:64s} {'rows':>7s} {'in fit':>7s} {'median':>7s} {'MAPE':>7s} {'p90':>7s}"


def stats_row(name: str, g: dict) -> str:
    """One table row of an ``error_stats`` dict with ``rows_in_fit``."""
    if not g["rows"]:
        return f"{name[-64:]:64s} {0:7d}"
    return (f"{name[-64:]:64s} {g['rows']:7d} {g['rows_in_fit']:7d} {100 * g['median_ape']:6.1f}% "
            f"{100 * g['mape']:6.1f}% {100 * g['p90_ape']:6.1f}%")


def unpriced_rows(names: np.ndarray, reasons: np.ndarray, bad: np.ndarray) -> list[dict]:
    """``[{"name", "rows", "reason"}]`` for the rows marked ``bad``, per group name and reason (an
    empty reason: the measured value is missing or not positive)."""
    out = []
    for name in sorted(set(names[bad])):
        sel = bad & (names == name)
        counts = pd.Series(reasons[sel]).replace("", "measured value missing or not positive").value_counts()
        for reason, count in counts.sort_index().items():
            out.append({"name": name, "rows": int(count), "reason": str(reason)})
    return out
