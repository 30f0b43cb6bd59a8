"""Self-contained HTML reports (plotly, with plotly.js embedded once: they open offline).

A report answers its question first: a header stating the model, the hardware, the plan, the
workload, the rate and the SLOs; then the headline figures (goodput and SLO attainment when an SLO
was set, throughput, latency percentiles); then one figure per question, each with its own legend
and axis units. :func:`html_page` is the shared page (header, headline, figures, details) other
reports (search, size) reuse so every report reads the same.

The run report's figures: TTFT, TPOT and end-to-end latency distributions (CDFs); per-request TTFT
over arrival time; per-iteration batch composition over time (prefill tokens and decoding requests
per replica, from the iteration trace).
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

_KEYS = ("requests_completed", "requests_rejected", "requests_unfinished", "ttft_mean_s", "ttft_p50_s", "ttft_p90_s",
         "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "e2e_mean_s", "e2e_p50_s", "e2e_p99_s",
         "queue_mean_s", "throughput_output_tok_s", "throughput_input_tok_s", "requests_per_s", "preemptions",
         "energy_j", "energy_per_token_j", "avg_power_w", "makespan_s", "prefill_time_s", "per_token_time_s",
         "e2e_time_s", "prefix_caching", "prefix_cache_hit_rate", "prefix_cache_hit_tokens", "prefill_tokens_computed")
#: Iterations drawn per replica at most (evenly thinned) so a long run's report stays small.
MAX_POINTS = 20000

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
          "h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em}"
          "table{border-collapse:collapse} td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}"
          ".header td:first-child{color:#555} .cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}"
          ".card{border:1px solid #ccc;border-radius:6px;padding:10px 16px;min-width:150px}"
          ".card .v{font-size:1.5em;font-weight:600} .card .k{color:#555;font-size:.85em}"
          ".fig{margin:1.2em 0} .note{color:#555;font-size:.9em} details pre{font-size:.8em}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.6g}"
    if v is None:
        return "-"
    return html.escape(str(v))


def _cdf(values: np.ndarray):
    v = np.sort(values[np.isfinite(values)])
    if v.size > MAX_POINTS:
        v = v[np.linspace(0, v.size - 1, MAX_POINTS).astype(np.int64)]
    return v, (np.arange(v.size) + 1) / max(v.size, 1)


def html_page(title: str, header: Sequence[tuple[str, str]], headline: Sequence[tuple[str, str]],
              figures: Sequence[tuple[str, object]], *, table: Mapping | None = None, details: Mapping | None = None,
              note: str = "") -> str:
    """The page: ``title``; ``header`` rows (what was simulated); ``headline`` cards (label, value);
    ``figures`` (heading, plotly figure), plotly.js embedded once; a ``table`` of all metrics; the
    ``details`` as JSON in a folded section; a ``note`` under the header."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<table class='header'>" + "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in header) + "</table>")
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>"
        for k, v in headline) + "</div>")
    first = True
    for heading, fig in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2><div class='fig'>")
        parts.append(fig.to_html(include_plotlyjs=first, full_html=False))
        parts.append("</div>")
        first = False
    if table:
        parts.append("<h2>All metrics</h2><table>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in table.items()) + "</table>")
    if details:
        parts.append("<details><summary>Details (JSON)</summary><pre>"
                     + html.escape(json.dumps(details, indent=1, sort_keys=True, default=str)) + "</pre></details>")
    parts.append("</body></html>")
    return "".join(parts)


def _s(v, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v * scale:.{digits}g}{unit}"


def calibration_status(summary: Mapping, details: str = "see the JSON") -> list[tuple[str, str]]:
    """(pool label, sentence) on how each pool's costs were calibrated: measured, or EXTRAPOLATED and
    why (``deployment.calibration`` of a run summary; a disaggregated run: each pool's); ``details``:
    where the reader finds more when no reason is known."""
    pools = [("", summary.get("deployment"))] if "deployment" in summary else [
        ("prefill ", summary.get("prefill_pool")), ("decode ", summary.get("decode_pool"))]
    out = []
    for label, dep in pools:
        cal = (dep or {}).get("calibration")
        if not cal:
            continue
        if not cal.get("extrapolated"):
            out.append((label, f"measured device ({dep.get('device')}), not extrapolated"))
            continue
        why = []
        if not cal.get("device_class_calibrated"):
            why.append("its architecture class has no calibration of its own")
        elif not cal.get("device_measured"):
            why.append("no kernel measurements of this device")
        fallback = cal.get("fallback_ops") or {}
        if fallback:
            why.append(f"{len(fallback)} operator(s) priced by another class's or family's coefficients")
        host = cal.get("host_floor_ops") or {}
        if host:
            why.append(f"{len(host)} operator(s) fitted on eagerly timed kernels, never measured under "
                       f"{min(host.values()) * 1e6:.0f} us")
        sibling = sorted(set((cal.get("sibling_transfer_from") or {}).values()))
        if sibling:
            why.append(f"priced from {', '.join(sibling)} by sibling transfer")
        out.append((label, f"EXTRAPOLATED for {dep.get('device')}: {'; '.join(why) or details}"))
    return out


def _with_band(summary: Mapping, key: str, text: str, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    band = summary.get(f"{key}_interval")
    if not band or text == "-":
        return text
    return f"{text} [{_s(band[0], '', scale, digits)}, {_s(band[1], unit, scale, digits)}]"


def run_header(summary: Mapping, config: Mapping | None) -> list[tuple[str, str]]:
    """Header rows of a run: model, hardware, plan, engine, workload, rate, SLOs, calibration."""
    cfg = config or {}
    dep = summary.get("deployment")
    rows = []
    if dep is not None:
        rows.append(("model", f"{dep['model']} ({dep['quant']} weights, {dep['kv_dtype']} KV cache)"))
        where = summary.get("placement", {}).get("cluster", "")
        rows.append(("hardware", f"{summary.get('num_devices')} x {dep['device']}" + (f" ({where})" if where else "")))
        rows.append(("plan", f"{summary.get('replicas', 1)} replica(s) of tp={dep['tp']} pp={dep['pp']} ep={dep['ep']}"
                             f"; KV cache {dep['kv_capacity_tokens']} tokens per replica"))
        rows.append(("engine", f"{dep['engine']}{' ' + dep['engine_version'] if dep.get('engine_version') else ''}, "
                               f"scheduler {dep['scheduler']}, max {dep['max_num_seqs']} sequences / "
                               f"{dep['max_num_batched_tokens']} tokens per iteration"))
    else:
        for name in ("prefill_pool", "decode_pool"):
            p = summary.get(name)
            if p:
                rows.append((name.replace("_", " "), f"{p['replicas']} x {p['model']} on tp={p['tp']} {p['device']}, "
                                                     f"KV {p['kv_capacity_tokens']} tokens per replica"))
    wl = cfg.get("workload", {}) if isinstance(cfg, Mapping) else {}
    if summary.get("mode") == "static_batch":
        rows.append(("workload", f"one static batch of {summary['batch_size']} x ({summary['prompt_tokens']} prompt + "
                                 f"{summary['output_tokens']} output) tokens"))
    else:
        rows.append(("workload", f"{summary.get('workload')}: {summary.get('requests')} requests"))
        rate = wl.get("rate")
        rows.append(("rate", f"{rate:g} requests/s ({wl.get('arrival', 'poisson')} arrivals)" if rate
                     else "the trace's own arrival times"))
    slo = cfg.get("slo", {}) if isinstance(cfg, Mapping) else {}
    targets = []
    if slo.get("ttft_s"):
        targets.append(f"TTFT <= {slo['ttft_s']:g} s")
    if slo.get("tpot_s"):
        targets.append(f"TPOT <= {slo['tpot_s']:g} s")
    rows.append(("SLOs", " and ".join(targets) if targets else "none set (give --ttft-slo / --tpot-slo for goodput)"))
    rows += [(f"{label}calibration", text) for label, text in calibration_status(summary)]
    return rows


def run_headline(summary: Mapping) -> list[tuple[str, str]]:
    """Headline cards: goodput and SLO attainment first (when an SLO was set), then the rest."""
    cards = []
    if summary.get("goodput_requests_per_s") is not None or "slo_attainment" in summary:
        cards.append(("goodput (requests/s within SLO)", _s(summary.get("goodput_requests_per_s"))))
        att = summary.get("slo_attainment")
        cards.append(("SLO attainment", "-" if att is None or not math.isfinite(att) else f"{att:.1%}"))
    if summary.get("mode") == "static_batch":
        cards += [("prefill time", _s(summary.get("prefill_time_s"), " s")),
                  ("time per output token", _s(summary.get("per_token_time_s"), " ms", 1e3)),
                  ("batch end to end", _s(summary.get("e2e_time_s"), " s"))]
    else:
        cards += [("throughput", _with_band(summary, "requests_per_s", _s(summary.get("requests_per_s"), " requests/s"))),
                  ("output tokens/s", _with_band(summary, "throughput_output_tok_s",
                                                 _s(summary.get("throughput_output_tok_s"), "", 1.0, 4), "", 1.0, 4)),
                  ("TTFT p99", _with_band(summary, "ttft_p99_s", _s(summary.get("ttft_p99_s"), " s"), " s")),
                  ("TPOT p99", _with_band(summary, "tpot_p99_s", _s(summary.get("tpot_p99_s"), " ms", 1e3), " ms", 1e3))]
    cards.append(("energy per output token", _s(summary.get("energy_per_token_j"), " J")))
    return cards


def write_report(path: str | Path, summary: dict, records: dict | None, tracer=None, title: str = "llmsim run",
                 config: Mapping | None = None) -> Path:
    """Write the HTML report of a run to ``path``; ``config``: the run config as a dict (its
    ``workload`` and ``slo`` sections fill the header)."""
    from llmsim.workloads.extras import require

    go = require("plotly.graph_objects", "the HTML report")

    def figure(xtitle: str, ytitle: str, legend: str):
        fig = go.Figure()
        fig.update_layout(height=360, margin={"t": 30, "b": 50}, xaxis_title=xtitle, yaxis_title=ytitle,
                          legend_title_text=legend, showlegend=True)
        return fig

    figures = []
    if records is not None and len(records.get("index", ())):
        fig = figure("latency (s)", "fraction of requests", "metric")
        for key, name in (("ttft_s", "time to first token"), ("e2e_s", "end to end")):
            x, y = _cdf(np.asarray(records[key], dtype=np.float64))
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name))
        figures.append(("Latency distribution (CDF)", fig))
        x, y = _cdf(np.asarray(records["tpot_s"], dtype=np.float64))
        fig = figure("time per output token (ms)", "fraction of requests", "metric")
        fig.add_trace(go.Scatter(x=x * 1e3, y=y, mode="lines", name="TPOT"))
        figures.append(("Time per output token (CDF)", fig))
        arr = np.asarray(records["arrival_s"], dtype=np.float64)
        ttft = np.asarray(records["ttft_s"], dtype=np.float64)
        idx = np.flatnonzero(np.isfinite(ttft))
        if idx.size > MAX_POINTS:
            idx = idx[np.linspace(0, idx.size - 1, MAX_POINTS).astype(np.int64)]
        fig = figure("arrival time (s)", "time to first token (s)", "series")
        fig.add_trace(go.Scattergl(x=arr[idx], y=ttft[idx], mode="markers", marker={"size": 3},
                                   name="one request"))
        figures.append(("Time to first token over the run", fig))
    if tracer is not None and len(tracer):
        cols = tracer.arrays()
        rep, start, pre, dec = cols["replica"], cols["start_s"], cols["prefill_tokens"], cols["decodes"]
        f_pre = figure("simulated time (s)", "prefill tokens per iteration (tokens)", "replica")
        f_dec = figure("simulated time (s)", "decoding requests per iteration (requests)", "replica")
        for r in np.unique(rep):
            sel = np.flatnonzero(rep == r)
            if sel.size > MAX_POINTS:
                sel = sel[np.linspace(0, sel.size - 1, MAX_POINTS).astype(np.int64)]
            f_pre.add_trace(go.Scattergl(x=start[sel], y=pre[sel], mode="markers", marker={"size": 3},
                                         name=f"replica {r}"))
            f_dec.add_trace(go.Scattergl(x=start[sel], y=dec[sel], mode="lines", name=f"replica {r}"))
        figures += [("Prefill work per iteration", f_pre), ("Decode batch per iteration", f_dec)]
    table = {k: (f"{_fmt(summary[k])} [{_fmt(summary[k + '_interval'][0])}, {_fmt(summary[k + '_interval'][1])}]"
                 if summary.get(k + "_interval") else summary[k]) for k in _KEYS if k in summary}
    for k in ("goodput_requests_per_s", "slo_attainment"):
        if k in summary:
            table = {k: summary[k], **table}
    details = {k: v for k, v in summary.items() if isinstance(v, dict)}
    scope = summary.get("interval_scope")
    note = f"[lo, hi] beside a figure: its 80% interval, {scope}." if scope else ""
    page = html_page(title, run_header(summary, config), run_headline(summary), figures, table=table,
                     details=details, note=note)
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
