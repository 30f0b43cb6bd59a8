"""A self-contained HTML report of one run (plotly, with plotly.js embedded: opens offline).

Panels: the summary table; TTFT, TPOT and end-to-end latency distributions (CDFs); per-request
TTFT over arrival time; per-iteration batch composition over time (prefill tokens and decoding
requests per replica, from the iteration trace).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

_KEYS = ("requests_completed", "requests_rejected", "ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s",
         "tpot_p50_s", "tpot_p99_s", "e2e_mean_s", "throughput_output_tok_s", "requests_per_s", "preemptions",
         "energy_j", "energy_per_token_j", "makespan_s", "prefill_time_s", "per_token_time_s", "e2e_time_s",
         "prefix_caching", "prefix_cache_hit_rate", "prefix_cache_hit_tokens", "prefill_tokens_computed")
#: Iterations drawn per replica at most (evenly thinned) so a long run's report stays small.
MAX_POINTS = 20000


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.6g}"
    return html.escape(str(v))


def _cdf(values: np.ndarray):
    v = np.sort(values[np.isfinite(values)])
    if v.size > MAX_POINTS:
        v = v[np.linspace(0, v.size - 1, MAX_POINTS).astype(np.int64)]
    return v, (np.arange(v.size) + 1) / max(v.size, 1)


def write_report(path: str | Path, summary: dict, records: dict | None, tracer=None, title: str = "llmsim run") -> Path:
    """Write the HTML report to ``path`` (plotly.js embedded, no network needed to view it)."""
    from llmsim.workloads.extras import require

    go = require("plotly.graph_objects", "the HTML report")
    make_subplots = require("plotly.subplots", "the HTML report").make_subplots

    fig = make_subplots(rows=3, cols=2, subplot_titles=(
        "TTFT CDF", "TPOT CDF", "End-to-end latency CDF", "TTFT by arrival time",
        "Prefill tokens per iteration", "Decoding requests per iteration"), vertical_spacing=0.09)
    if records is not None and len(records.get("index", ())):
        for (row, col), key, name in (((1, 1), "ttft_s", "TTFT"), ((1, 2), "tpot_s", "TPOT"),
                                      ((2, 1), "e2e_s", "E2E")):
            x, y = _cdf(np.asarray(records[key], dtype=np.float64))
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{name} (s)"), row=row, col=col)
            fig.update_xaxes(title_text="seconds", row=row, col=col)
        arr = np.asarray(records["arrival_s"], dtype=np.float64)
        ttft = np.asarray(records["ttft_s"], dtype=np.float64)
        keep = np.isfinite(ttft)
        idx = np.flatnonzero(keep)
        if idx.size > MAX_POINTS:
            idx = idx[np.linspace(0, idx.size - 1, MAX_POINTS).astype(np.int64)]
        fig.add_trace(go.Scattergl(x=arr[idx], y=ttft[idx], mode="markers", marker={"size": 3},
                                   name="TTFT per request"), row=2, col=2)
        fig.update_xaxes(title_text="arrival (s)", row=2, col=2)
    if tracer is not None and len(tracer):
        cols = tracer.arrays()
        rep, start, pre, dec = cols["replica"], cols["start_s"], cols["prefill_tokens"], cols["decodes"]
        for r in np.unique(rep):
            sel = np.flatnonzero(rep == r)
            if sel.size > MAX_POINTS:
                sel = sel[np.linspace(0, sel.size - 1, MAX_POINTS).astype(np.int64)]
            fig.add_trace(go.Scattergl(x=start[sel], y=pre[sel], mode="markers", marker={"size": 3},
                                       name=f"replica {r} prefill tokens"), row=3, col=1)
            fig.add_trace(go.Scattergl(x=start[sel], y=dec[sel], mode="lines", name=f"replica {r} decodes"),
                          row=3, col=2)
        fig.update_xaxes(title_text="simulated time (s)", row=3, col=1)
        fig.update_xaxes(title_text="simulated time (s)", row=3, col=2)
    fig.update_layout(height=1100, title_text=title, showlegend=True)
    plot = fig.to_html(include_plotlyjs=True, full_html=False)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(summary[k])}</td></tr>" for k in _KEYS if k in summary)
    extra = {k: v for k, v in summary.items() if isinstance(v, dict)}
    details = html.escape(json.dumps(extra, indent=1, sort_keys=True, default=str))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em} td{padding:2px 12px;border-bottom:1px solid #ddd}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1><table>{rows}</table><pre>{details}</pre>{plot}</body></html>")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
