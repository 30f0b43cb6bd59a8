"""A self-contained HTML report of a search or a sizing (plotly, plotly.js embedded: opens offline).

Header: the question (model, hardware space, workload, rate, SLOs, price basis). Figures, each with
its own legend and axis units: the Pareto scatter (goodput or throughput against USD per million
output tokens, coloured by joules per output token, the Pareto front outlined), the cost breakdown
of the best candidates (USD per million output tokens, stacked by device kind and price component)
and their latency at the SLO percentile against the targets. plotly is imported only when writing.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

from llmsim.hwmodels.prices import get_price, usd_per_million_tokens
from llmsim.search.explore import pareto_front
from llmsim.workloads.errors import ConfigError

__all__ = ["check_report_path", "write_search_report", "FIGURE_TITLES"]

#: the figures' titles, in page order
FIGURE_TITLES = ("Pareto front: goodput vs cost, coloured by energy", "Cost breakdown of the best candidates",
                 "Latency of the best candidates at the SLO percentile")
TOP = 10  # candidates in the bar charts


def check_report_path(path: str | Path) -> Path:
    """``path`` if an HTML report can be written there; ConfigError naming the problem otherwise."""
    p = Path(path)
    if p.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--report must end in .html, got {str(path)!r}")
    if not p.parent.is_dir():
        raise ConfigError(f"--report {str(path)!r}: folder {str(p.parent)!r} does not exist; create it or "
                          f"choose another path")
    if p.is_dir():
        raise ConfigError(f"--report {str(path)!r} is a folder; give a file name ending in .html")
    return p


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _components(row: dict, basis: str) -> list[tuple[str, float]]:
    """(label, USD/h) parts of a candidate's hourly price: per device kind (per pool of a
    disaggregated candidate), rent (on_demand) or amortised purchase + hosting."""
    dec = row.get("decode_device")
    if isinstance(dec, str):
        per = row["tp"] * row["pp"]
        groups = [(f"prefill {row['device']}", row["device"], per * row["dp"]),
                  (f"decode {dec}", dec, per * row["decode_replicas"])]
    else:
        groups = [(row["device"], row["device"], row.get("num_devices") or 1)]
    out = []
    for name, device, n in groups:
        try:
            price = get_price(device)
        except ConfigError:
            continue
        if basis == "amortised" and price.amortised_usd_per_hour is not None:
            hosting = price.hosting_usd_per_hour
            out += [(f"{name} purchase (amortised)", n * (price.amortised_usd_per_hour - hosting)),
                    (f"{name} hosting", n * hosting)]
        elif price.on_demand_usd_per_hour is not None:
            out.append((f"{name} on-demand rent", n * price.on_demand_usd_per_hour))
    return out


def _header(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) \
        + "</table>"


def question_rows(space, workload, slo, rate: float | None, price_basis: str, extra=(), *,
                  counts: bool = True) -> list[tuple[str, str]]:
    """The header lines of a report: model, hardware space, workload, rate, SLOs, price basis
    (``counts`` False: a sizing, whose device count is the replicas it searches)."""
    def dim(v):
        return "free" if v is None else ", ".join(map(str, v))

    count = f"devices per deployment {dim(space.num_devices)}" if counts else "replicas searched"
    hw = (f"devices {dim(space.devices)}; {count}; tp {dim(space.tp)}; "
          f"pp {dim(space.pp)}; ep {dim(space.ep)}; formats {dim(space.quant)}; KV {dim(space.kv_dtype)}; "
          f"scheduler {dim(space.scheduler)}; max seqs {dim(space.max_num_seqs)}; "
          f"max batched tokens {dim(space.max_num_batched_tokens)}")
    wl = (f"{workload.name or workload.trace}: first {workload.num_requests} requests, seed {workload.seed}")
    slos = [f"TTFT <= {slo.ttft_s:g} s" if slo.ttft_s is not None else None,
            f"TPOT <= {slo.tpot_s:g} s" if slo.tpot_s is not None else None]
    slos = [s for s in slos if s]
    return [("model", space.model), ("hardware space", hw), ("workload", wl),
            ("rate", f"{rate:g} requests/s (Poisson)" if rate is not None else "the workload's own arrivals"),
            ("SLOs", f"{', '.join(slos)} at p{slo.percentile}" if slos else "none"),
            ("price basis", price_basis), *extra]


def write_search_report(path: str | Path, frame, *, question: list[tuple[str, str]], slo, price_basis: str,
                        pareto=(), title: str = "llmsim search") -> Path:
    """Write the report of ``frame`` (the DataFrame of a search or a sizing) to ``path``.

    ``question``: header rows (:func:`question_rows`); ``pareto``: frame indices on the Pareto front
    (computed here over goodput or throughput, $/Mtok and J/token when empty)."""
    from llmsim.workloads.extras import require

    go = require("plotly.graph_objects", "the HTML report")
    p = check_report_path(path)
    rows = []
    for i, r in frame.reset_index(drop=True).iterrows():
        d = r.to_dict()
        if not d.get("simulated") or isinstance(d.get("sim_error"), str):
            continue
        tok_s = d.get("throughput_tok_s")
        mtok = d.get("usd_per_mtok")
        if not _finite(mtok) and _finite(d.get("usd_per_hour")) and _finite(tok_s):
            mtok = usd_per_million_tokens(d["usd_per_hour"], tok_s)
        d["_mtok"], d["_i"] = mtok, i
        rows.append(d)
    use_goodput = any(_finite(d.get("goodput_rps")) for d in rows)
    ycol, yname = ("goodput_rps", "goodput (requests/s)") if use_goodput else ("throughput_tok_s",
                                                                             "throughput (output tokens/s)")
    pts = [d for d in rows if _finite(d.get(ycol)) and _finite(d["_mtok"]) and _finite(d.get("energy_per_token_j"))]
    if pareto:
        front = {d["_i"] for d in pts if d["_i"] in set(pareto)}
    else:
        keys = ((ycol, True), ("_mtok", False), ("energy_per_token_j", False))
        front = {pts[k]["_i"] for k in pareto_front(pts, keys)}

    f1 = go.Figure()
    f1.add_trace(go.Scatter(
        x=[d["_mtok"] for d in pts], y=[d[ycol] for d in pts], mode="markers", name="simulated candidates",
        text=[d["label"] for d in pts], hovertemplate="%{text}<br>%{x:.3g} $/Mtok, %{y:.3g}<extra></extra>",
        marker={"size": 10, "color": [d["energy_per_token_j"] for d in pts], "colorscale": "Viridis",
                "showscale": True, "colorbar": {"title": {"text": "J per output token"}, "x": 1.02}}))
    fr = sorted((d for d in pts if d["_i"] in front), key=lambda d: d["_mtok"])
    f1.add_trace(go.Scatter(x=[d["_mtok"] for d in fr], y=[d[ycol] for d in fr], mode="lines+markers",
                            name="Pareto front", text=[d["label"] for d in fr],
                            marker={"size": 15, "symbol": "circle-open", "color": "crimson", "line": {"width": 2}},
                            line={"dash": "dot", "color": "crimson"}))
    f1.update_layout(title_text=FIGURE_TITLES[0], xaxis_title="cost (USD per million output tokens)",
                     yaxis_title=yname, legend={"orientation": "h", "y": -0.2}, height=520)

    ranked = [d for d in rows if _finite(d["_mtok"])]
    ranked.sort(key=lambda d: (d.get("rank") if _finite(d.get("rank")) else math.inf,
                               0 if d.get("carries", True) else 1,
                               d["usd_per_hour"] if "carries" in d and _finite(d.get("usd_per_hour")) else d["_mtok"]))
    best = ranked[:TOP]
    labels = [d["label"] for d in best]
    f2 = go.Figure()
    parts: dict[str, list[float]] = {}
    for k, d in enumerate(best):
        comp = _components(d, price_basis)
        total = sum(v for _, v in comp)
        for name, v in comp:
            parts.setdefault(name, [0.0] * len(best))[k] += d["_mtok"] * v / total if total > 0 else 0.0
    for name, ys in parts.items():
        f2.add_trace(go.Bar(x=labels, y=ys, name=name))
    f2.update_layout(barmode="stack", title_text=FIGURE_TITLES[1], yaxis_title="cost (USD per million output tokens)",
                     xaxis_title="candidate", legend={"title": {"text": "price component"}}, height=520)

    f3 = go.Figure()
    f3.add_trace(go.Bar(x=labels, y=[d.get("ttft_p_s") for d in best], name=f"TTFT p{slo.percentile} (s)"))
    f3.add_trace(go.Bar(x=labels, y=[d.get("tpot_p_s") for d in best], name=f"TPOT p{slo.percentile} (s)"))
    for v, name, colour in ((slo.ttft_s, "TTFT target", "royalblue"), (slo.tpot_s, "TPOT target", "crimson")):
        if v is not None and labels:
            f3.add_trace(go.Scatter(x=labels, y=[v] * len(labels), mode="lines", name=f"{name} ({v:g} s)",
                                    line={"dash": "dash", "color": colour}))
    f3.update_layout(barmode="group", title_text=FIGURE_TITLES[2], yaxis_title="seconds", yaxis_type="log",
                     xaxis_title="candidate", height=520)

    plots = "".join(f.to_html(include_plotlyjs=(k == 0), full_html=False, div_id=f"fig{k}")
                    for k, f in enumerate((f1, f2, f3)))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em} th{text-align:left;padding-right:1em}"
            "td{padding-right:1em}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{_header(question)}{plots}</body></html>")
    p.write_text(page, encoding="utf-8")
    return p
