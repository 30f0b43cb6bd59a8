"""Capacity sizing: the cheapest configurations that carry a request rate within the SLOs.

Each candidate of the space is one replica (``tp x pp`` devices, a format, batching knobs); sizing
finds the fewest replicas ``n`` whose simulated run at the target rate meets the SLOs with every
request finished (binary search on ``n``, started at the analytic estimate ``rate / goodput``
of one replica), and prices them. Candidates are tried cheapest estimate first; one whose
optimistic cost (the replicas its estimate with ``margin`` needs) already exceeds the
``options``-th cheapest found is not simulated.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from llmsim.search.evaluate import (Context, SLOTarget, WorkloadSpec, row_dict, simulate_at, trace_stats,
                                    usd_per_hour)
from llmsim.search.executors import run_tasks
from llmsim.search.feasibility import canonical, check, screen
from llmsim.search.space import Candidate, SearchSpace
from llmsim.search.store import ResultStore, result_key
from llmsim.workloads.errors import ConfigError, LLMSimError

__all__ = ["SizingResult", "size", "run_sizing", "size_candidate"]


@dataclass(frozen=True)
class SizingResult:
    """``frame`` (pandas DataFrame, one row per replica candidate, cheapest carrying option first),
    the target ``rate`` (requests/s), ``simulated`` candidates, ``simulations`` runs, ``wall_s``."""

    frame: object
    rate: float
    simulated: int
    simulations: int
    wall_s: float
    options_wanted: int

    def options(self) -> list[dict]:
        df = self.frame
        return [row_dict(r, _INT_COLUMNS) for _, r in df[df["carries"] == True].head(self.options_wanted).iterrows()]  # noqa: E712

    def to_dict(self) -> dict:
        """``{"best", "options", "rate"}`` (plus ``simulated`` and ``wall_s``)."""
        opts = self.options()
        return {"best": opts[0] if opts else None, "options": opts, "rate": self.rate,
                "simulated": self.simulated, "wall_s": self.wall_s}


#: columns pandas widens to float that are counts
_INT_COLUMNS = ("replicas", "num_devices", "dp", "tp", "pp", "ep", "max_num_seqs", "max_num_batched_tokens",
                "est_replicas", "max_replicas_tried")


def size_candidate(task) -> dict:
    """Fewest replicas of one candidate carrying ``ctx``'s rate: a dict of result columns
    (``goodput_rps``: the offered rate times the fraction of requests meeting both SLOs)."""
    cand, ctx, n_est, max_replicas = task
    sims = 0
    cache: dict[int, dict | None] = {}

    def carries(n: int) -> bool:
        nonlocal sims
        if n not in cache:
            try:
                cache[n] = simulate_at(cand.with_dp(n), ctx, ctx.workload.rate)
            except LLMSimError as e:
                cache[n] = {"_error": str(e)}
            sims += 1
        s = cache[n]
        return "_error" not in s and not ctx.slo.violations(s)

    n = max(1, min(int(n_est), max_replicas))
    if carries(n):
        lo, hi = 0, n  # lo fails (0 replicas carry nothing), hi carries
    else:
        lo, hi = n, None
        while hi is None:
            nxt = min(max_replicas, lo * 2)
            if nxt == lo:
                break
            if carries(nxt):
                hi = nxt
            else:
                lo = nxt
    if hi is None:
        s = cache[lo]
        return {"carries": False, "replicas": None, "simulations": sims, "sim_error": s.get("_error"),
                "miss": "; ".join(ctx.slo.violations(s)) if "_error" not in s else s["_error"],
                "max_replicas_tried": lo}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if carries(mid):
            hi = mid
        else:
            lo = mid
    s = cache[hi]
    p = ctx.slo.percentile
    return {"carries": True, "replicas": hi, "simulations": sims, "sim_error": None, "miss": None,
            "goodput_rps": ctx.workload.rate * (s.get("slo_attainment") or 0.0),
            "slo_attainment": s.get("slo_attainment"),
            "ttft_p_s": s.get(f"ttft_p{p}_s"), "tpot_p_s": s.get(f"tpot_p{p}_s"),
            "throughput_tok_s": s.get("throughput_output_tok_s"), "energy_per_token_j": s.get("energy_per_token_j")}


def run_sizing(space: SearchSpace, *, rate: float, slo: SLOTarget, workload: WorkloadSpec | None = None,
               engine: str | None = None, price_basis: str = "on_demand", max_quality_loss: float | None = None,
               options: int = 5, margin: float = 0.25, max_replicas: int = 64, round_size: int = 4,
               executor: str = "local", workers: int | None = None, ray_address: str | None = None,
               store: str | None = None, resume: bool = False, gpu_memory_utilization: float = 0.9) -> SizingResult:
    """Size every replica candidate of ``space`` (its ``num_devices`` is ignored: one replica =
    ``tp x pp`` devices) for ``rate`` requests/s within ``slo``; see the module docstring."""
    import pandas as pd

    t0 = time.perf_counter()
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"--rate must be a number of requests/s > 0, got {rate!r}")
    if space.decode_devices is not None:
        raise ConfigError("sizing counts colocated replicas; drop `decode_devices` (search P/D pools with "
                          "simulate search)")
    if not slo.active:
        raise ConfigError("sizing needs an SLO: give --slo-ttft-p99 and/or --slo-tpot-p99")
    if not isinstance(options, int) or options < 1:
        raise ConfigError(f"`options` must be an integer >= 1, got {options!r}")
    if resume and store is None:
        raise ConfigError("--resume needs a results store (--store FILE.sqlite)")
    wl = replace(workload or WorkloadSpec(), rate=float(rate))
    ctx = Context(model=space.model, workload=wl, slo=slo, engine=engine, price_basis=price_basis,
                  gpu_memory_utilization=gpu_memory_utilization, goodput=True)
    stats = trace_stats(ctx)
    from llmsim.search.explore import _quality_of

    seen, cands, rows = set(), [], []
    for c in space.candidates():
        c = c.with_dp(1)
        try:
            c = canonical(c, ctx)
        except ConfigError:
            pass
        if c in seen:
            continue
        seen.add(c)
        cands.append(c)
        rows.append({**c.to_dict(), "label": c.label(dp=False), "devices_per_replica": c.num_devices})
    quality = _quality_of([c.quant for c in cands])
    order = []
    for i, (c, row) in enumerate(zip(cands, rows)):
        row.update(quality_loss=quality.get(c.quant), feasible=False, carries=False, simulated=False,
                   binding=None, reason=None)
        unit = usd_per_hour(c, price_basis)
        row["usd_per_hour_per_replica"] = unit
        if max_quality_loss is not None and (row["quality_loss"] is None or row["quality_loss"] > max_quality_loss):
            row.update(binding="quality", reason=f"expected quality loss {row['quality_loss']} exceeds {max_quality_loss}")
            continue
        if not math.isfinite(unit):
            other = "amortised" if price_basis == "on_demand" else "on_demand"
            hint = f"; try --price-basis {other}" if math.isfinite(usd_per_hour(c, other)) else ""
            row.update(binding="price", reason=f"no {price_basis} price for {c.device}{hint}")
            continue
        f = check(c, ctx, stats.max_total)
        if not f.ok:
            row.update(binding=f.binding, reason=f.reason)
            continue
        est = screen(c, ctx, stats, f)
        g = est.goodput_rps or 0.0
        row.update(feasible=True, est_goodput_rps=g, est_tpot_min_s=est.tpot_min_s, est_ttft_min_s=est.ttft_min_s)
        if g <= 0:
            which = "tpot" if slo.tpot_s is not None and est.tpot_min_s > slo.tpot_s else "ttft"
            ratio = est.tpot_min_s / slo.tpot_s if which == "tpot" else est.ttft_min_s / slo.ttft_s
            row.update(binding=which, miss_ratio=ratio,
                       reason=(f"a lone decode step takes {est.tpot_min_s:.3g} s > TPOT target {slo.tpot_s:g} s"
                               if which == "tpot" else
                               f"a lone p99 prompt prefills in {est.ttft_min_s:.3g} s > TTFT target {slo.ttft_s:g} s"))
            continue
        n_est = math.ceil(rate / g)
        n_lo = math.ceil(rate / (g * (1 + margin)))
        if n_lo > max_replicas:
            row.update(binding="replicas", reason=f"needs about {n_est} replicas, more than --max-replicas {max_replicas}")
            continue
        row.update(est_replicas=n_est, est_usd_per_hour=n_est * unit, lb_usd_per_hour=n_lo * unit)
        order.append(i)
    order.sort(key=lambda i: (rows[i]["est_usd_per_hour"], cands[i].key()))
    db = ResultStore(store) if store is not None else None
    ctx_key = ctx.to_dict()
    total_sims = 0
    try:
        pos = 0
        while pos < len(order):
            found = sorted(r["usd_per_hour"] for r in rows if r["carries"])
            bar = found[options - 1] if len(found) >= options else math.inf
            batch = [i for i in order[pos:pos + round_size]]
            pos += round_size
            live = [i for i in batch if rows[i]["lb_usd_per_hour"] <= bar]
            for i in batch:
                if i not in live:
                    rows[i]["reason"] = (f"not simulated: at least {math.ceil(rows[i]['lb_usd_per_hour'] / rows[i]['usd_per_hour_per_replica'])} "
                                         f"replicas (${rows[i]['lb_usd_per_hour']:.2f}/h) cost more than the "
                                         f"{options} options found (${bar:.2f}/h)")
            todo = []
            for i in live:
                key = result_key("size", cands[i].to_dict(), ctx_key) if db is not None else None
                stored = db.get(key) if (db is not None and resume) else None
                if stored is not None:
                    rows[i].update(stored, simulated=True)
                    continue
                todo.append((i, key))
            tasks = [(cands[i], ctx, rows[i]["est_replicas"], max_replicas) for i, _ in todo]
            for j, res in run_tasks(size_candidate, tasks, executor=executor, workers=workers,
                                    ray_address=ray_address):
                i, key = todo[j]
                rows[i].update(res, simulated=True)
                total_sims += res["simulations"]
                if db is not None:
                    db.put(key, "size", cands[i].to_dict(), res)
            for i in live:
                r = rows[i]
                if r["carries"]:
                    r["usd_per_hour"] = r["replicas"] * r["usd_per_hour_per_replica"]
                    r["num_devices"] = r["replicas"] * r["devices_per_replica"]
                    r["dp"] = r["replicas"]
                else:
                    r["binding"] = r["binding"] or "slo"
                    r["reason"] = f"misses the SLO with {r.get('max_replicas_tried')} replicas: {r.get('miss')}"
    finally:
        if db is not None:
            db.close()
    df = pd.DataFrame(rows)
    for c in ("usd_per_hour", "replicas", "goodput_rps", "miss_ratio"):
        if c not in df:
            df[c] = None
    df["_carries"] = df["carries"].astype(bool)
    df = df.sort_values(["_carries", "usd_per_hour", "miss_ratio", "label"], ascending=[False, True, True, True],
                        na_position="last", kind="mergesort").drop(columns=["_carries"]).reset_index(drop=True)
    return SizingResult(df, float(rate), int(df["simulated"].sum()), total_sims, time.perf_counter() - t0, options)


def size(space: SearchSpace | dict | str, **kw):
    """:func:`run_sizing` returning its pandas DataFrame (cheapest carrying option first)."""
    from llmsim.search.space import load_space

    return run_sizing(load_space(space) if not isinstance(space, SearchSpace) else space, **kw).frame
