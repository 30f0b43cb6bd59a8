"""Design-space search: screen every candidate, simulate those that can still win, rank them.

1. Enumerate the :class:`~llmsim.search.space.SearchSpace`; resolve each candidate's defaults and keep
   one per class of equal deployments (symmetry reduction); drop formats above the quality budget.
2. Memory feasibility of each (:func:`llmsim.search.feasibility.check`) and its analytic estimate
   (:func:`~llmsim.search.feasibility.screen`); a candidate whose lone decode step or lone p99
   prefill already misses the SLO cannot meet it and is not simulated.
3. Simulate in rounds of ``round_size`` candidates, best estimate first, until at least ``top_k``
   were simulated and the next estimate, given ``margin`` (a relative slack), cannot beat the best
   simulated value; then every candidate on the estimated Pareto front (goodput or throughput,
   $/Mtok, J/token; dominance needs a ``margin`` lead on all three) not yet simulated.
4. Rank: simulated candidates by the objective, then the rest, each with why it lost.

Rounds are fixed-size and ordered, so the result does not depend on the executor or its workers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from llmsim.search.evaluate import Context, SLOTarget, WorkloadSpec, evaluate, row_dict, trace_stats
from llmsim.search.executors import run_tasks
from llmsim.search.feasibility import canonical, check, screen
from llmsim.search.space import Candidate, SearchSpace
from llmsim.search.store import ResultStore, result_key
from llmsim.workloads.errors import ConfigError

__all__ = ["OBJECTIVES", "SearchResult", "explore", "run_search", "pareto_front"]

#: objective -> (column, True when larger is better)
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "goodput": ("goodput_rps", True),
    "throughput": ("throughput_tok_s", True),
    "latency": ("e2e_mean_s", False),
    "cost": ("usd_per_mtok", False),
    "energy": ("energy_per_token_j", False),
}

CANDIDATE_COLUMNS = ("device", "tp", "pp", "dp", "ep", "quant", "kv_dtype", "scheduler", "max_num_seqs",
                     "max_num_batched_tokens")


@dataclass(frozen=True)
class SearchResult:
    """What a search found: ``frame`` (pandas DataFrame, one row per distinct candidate, ranked
    best first), the ``objective``, the index labels of the simulated ``pareto`` front, how many
    candidates the space held (``space_size``), were distinct (``candidates_evaluated``) and reached
    the simulator (``simulated``), and ``wall_s`` (seconds; wall-clock, not a simulated figure)."""

    frame: object
    objective: str
    pareto: tuple[int, ...]
    space_size: int
    candidates_evaluated: int
    simulated: int
    simulations: int
    wall_s: float
    extras: dict = field(default_factory=dict)

    @property
    def best(self) -> dict | None:
        df = self.frame
        ok = df[df["rank"] == 1]
        return None if ok.empty else row_dict(ok.iloc[0])

    def to_dict(self, top: int = 10) -> dict:
        """``{"best", "candidates", "pareto", "candidates_evaluated", "simulated", "wall_s"}``."""
        df = self.frame
        ranked = df[df["rank"].notna()].head(top)
        return {"best": self.best, "candidates": [row_dict(r) for _, r in ranked.iterrows()],
                "pareto": [row_dict(df.loc[i]) for i in self.pareto],
                "candidates_evaluated": self.candidates_evaluated, "simulated": self.simulated,
                "wall_s": self.wall_s, "objective": self.objective, "space_size": self.space_size}




def _eval_task(task):
    cand, ctx, est = task
    return evaluate(cand, ctx, est)


def _valid(row: dict, objective: str, slo_active: bool) -> bool:
    col, _ = OBJECTIVES[objective]
    v = row.get(col)
    if not row.get("simulated") or row.get("sim_error") or v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    if objective == "goodput":
        return v > 0
    if objective == "cost" and not math.isfinite(v):
        return False
    return row.get("slo_met", True) if slo_active else True


def pareto_front(rows: list[dict], keys: tuple[tuple[str, bool], ...], margin: float = 0.0) -> list[int]:
    """Indices of ``rows`` not dominated: ``j`` dominates ``i`` when it is at least ``1 + margin``
    times better on every key ((column, larger-is-better)) and strictly better on one."""
    def better(a, b, big):  # a beats b by the margin
        if a is None or b is None:
            return False
        return a >= b * (1 + margin) if big else a * (1 + margin) <= b

    out = []
    for i, ri in enumerate(rows):
        dominated = False
        for j, rj in enumerate(rows):
            if i == j:
                continue
            if all(better(rj[k], ri[k], big) for k, big in keys) and any(rj[k] != ri[k] for k, _ in keys):
                dominated = True
                break
        if not dominated:
            out.append(i)
    return out


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def run_search(space: SearchSpace, *, workload: WorkloadSpec | None = None, slo: SLOTarget | None = None,
               objective: str = "goodput", engine: str | None = None, price_basis: str = "on_demand",
               max_quality_loss: float | None = None, top_k: int = 4, margin: float = 0.25,
               round_size: int = 4, use_screen: bool = True, pareto: bool = True, executor: str = "local",
               workers: int | None = None, ray_address: str | None = None, store: str | None = None,
               resume: bool = False, progress=None, gpu_memory_utilization: float = 0.9,
               goodput_tol: float = 0.05, pareto_margin: float = 0.0,
               pareto_max: int = 8) -> SearchResult:
    """Search ``space`` (see the module docstring). ``objective``: one of :data:`OBJECTIVES`
    (goodput needs an SLO); ``store``: a SQLite path each result is written to as it completes;
    ``resume``: reuse what the store holds for the same question and code. ``progress``: a callable
    ``(done, total)`` called after each simulated candidate. ``goodput_tol``: relative precision of
    each goodput search; ``pareto_margin``: the lead one estimate needs on all three Pareto axes to
    spare the other a simulation; ``pareto_max``: at most this many of the estimated front's members
    (best objective estimate first) are simulated beyond the objective's rounds."""
    import pandas as pd

    t0 = time.perf_counter()
    if isinstance(pareto_max, bool) or not isinstance(pareto_max, int) or pareto_max < 0:
        raise ConfigError(f"`pareto_max` must be an integer >= 0, got {pareto_max!r}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    slo = slo or SLOTarget()
    if objective == "goodput" and not slo.active:
        raise ConfigError("objective goodput needs an SLO (--slo-ttft-p99 and/or --slo-tpot-p99); or choose "
                          f"another objective: {', '.join(k for k in OBJECTIVES if k != 'goodput')}")
    for name, v, lo in (("top_k", top_k, 1), ("round_size", round_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"`{name}` must be an integer >= {lo}, got {v!r}")
    if not (isinstance(margin, (int, float)) and 0 <= margin < 10):
        raise ConfigError(f"`margin` must be a number in [0, 10), got {margin!r}")
    if resume and store is None:
        raise ConfigError("--resume needs a results store (--store FILE.sqlite)")
    ctx = Context(model=space.model, workload=workload or WorkloadSpec(), slo=slo, engine=engine,
                  price_basis=price_basis, gpu_memory_utilization=gpu_memory_utilization, goodput_tol=goodput_tol)
    stats = trace_stats(ctx)
    col, big = OBJECTIVES[objective]
    all_cands = space.candidates()
    # symmetry reduction: one candidate per resolved deployment
    seen: dict[Candidate, int] = {}
    rows: list[dict] = []
    cands: list[Candidate] = []
    for c in all_cands:
        try:
            full = canonical(c, ctx)
        except ConfigError:
            full = c
        if full in seen:
            continue
        seen[full] = len(rows)
        cands.append(full)
        rows.append({**full.to_dict(), "num_devices": full.num_devices, "label": full.label()})
    quality = _quality_of([c.quant for c in cands]) if max_quality_loss is not None or cands else {}
    for c, row in zip(cands, rows):
        row["quality_loss"] = quality.get(c.quant)
        row.update(feasible=False, binding=None, reason=None, simulated=False)
        if max_quality_loss is not None and (row["quality_loss"] is None or row["quality_loss"] > max_quality_loss):
            row.update(binding="quality", reason=f"expected quality loss {row['quality_loss']} of {c.quant} exceeds "
                                                  f"the budget {max_quality_loss}")
            continue
        f = check(c, ctx, stats.max_total)
        row.update(weight_gib=f.weight_gib, kv_tokens=f.kv_tokens)
        if not f.ok:
            row.update(binding=f.binding, reason=f.reason)
            continue
        if c.disaggregated:  # no analytic screen of two pools: always simulated
            row.update(feasible=True, est_slo_possible=True)
            continue
        est = screen(c, ctx, stats, f)
        row.update(feasible=True, est_goodput_rps=est.goodput_rps, est_throughput_tok_s=est.throughput_tok_s,
                   est_e2e_mean_s=est.e2e_mean_s, est_energy_per_token_j=est.energy_per_token_j,
                   est_usd_per_mtok=est.usd_per_mtok, est_tpot_min_s=est.tpot_min_s,
                   est_ttft_min_s=est.ttft_min_s, est_batch=est.batch)
        if slo.active:
            miss = []
            if slo.tpot_s is not None and est.tpot_min_s > slo.tpot_s:
                miss.append(("tpot", est.tpot_min_s / slo.tpot_s,
                             f"a lone decode step takes {est.tpot_min_s:.3g} s > TPOT target {slo.tpot_s:g} s"))
            if slo.ttft_s is not None and est.ttft_min_s > slo.ttft_s:
                miss.append(("ttft", est.ttft_min_s / slo.ttft_s,
                             f"a lone p99 prompt prefills in {est.ttft_min_s:.3g} s > TTFT target {slo.ttft_s:g} s"))
            if miss:
                worst = max(miss, key=lambda m: m[1])
                row.update(est_slo_possible=False, binding=worst[0], reason="; ".join(m[2] for m in miss),
                           miss_ratio=worst[1])
            else:
                row["est_slo_possible"] = True
    feasible = [i for i, r in enumerate(rows) if r["feasible"]]
    possible = [i for i in feasible if rows[i].get("est_slo_possible", True)] if use_screen else feasible

    def est_of(i):
        v = rows[i].get(f"est_{col}")
        return (-math.inf if big else math.inf) if v is None else v

    always = [i for i in possible if cands[i].disaggregated]
    order = sorted((i for i in possible if not cands[i].disaggregated),
                   key=lambda i: ((-est_of(i) if big else est_of(i)), cands[i].key()))
    screen_s = time.perf_counter() - t0
    db = ResultStore(store) if store is not None else None
    ctx_key = ctx.to_dict()
    done_sims = 0
    total_sims = 0

    def simulate(idx: list[int]) -> None:
        nonlocal done_sims, total_sims
        todo = []
        for i in idx:
            if rows[i]["simulated"]:
                continue
            key = result_key("explore", cands[i].to_dict(), ctx_key) if db is not None else None
            stored = db.get(key) if (db is not None and resume) else None
            if stored is not None:
                rows[i].update(stored, simulated=True, from_store=True)
                done_sims += 1
                continue
            todo.append((i, key))
        tasks = [(cands[i], ctx, rows[i].get("est_goodput_rps")) for i, _ in todo]
        for j, res in run_tasks(_eval_task, tasks, executor=executor, workers=workers, ray_address=ray_address):
            i, key = todo[j]
            rows[i].update(res, simulated=True, from_store=False)
            total_sims += res.get("simulations", 0)
            if db is not None:
                db.put(key, "explore", cands[i].to_dict(), res)
            done_sims += 1
            if progress is not None:
                progress(done_sims, len(order) + len(always))

    def best_value():
        vals = [rows[i][col] for i in range(len(rows)) if _valid(rows[i], objective, slo.active)]
        if not vals:
            return None
        return max(vals) if big else min(vals)

    try:
        simulate(always)
        if not use_screen:
            for k in range(0, len(order), round_size):
                simulate(order[k:k + round_size])
        else:
            pos = 0
            while pos < len(order):
                simulate(order[pos:pos + round_size])
                pos += round_size
                n_sim = sum(1 for r in rows if r["simulated"])
                best = best_value()
                if n_sim >= top_k and best is not None and pos < len(order):
                    nxt = est_of(order[pos])
                    if (nxt * (1 + margin) < best) if big else (nxt / (1 + margin) > best):
                        break
            if pareto:
                pk = _pareto_keys(slo.active, prefix="est_")
                screened = [i for i in possible if not cands[i].disaggregated]
                front = {screened[j] for j in pareto_front([rows[i] for i in screened], pk, pareto_margin)}
                simulate([i for i in order if i in front][:pareto_max])
    finally:
        if db is not None:
            db.close()
    valid = [i for i in range(len(rows)) if _valid(rows[i], objective, slo.active)]
    front_idx = []
    if valid:
        vk = _pareto_keys(slo.active)
        front_idx = [valid[j] for j in pareto_front([rows[i] for i in valid], vk, 0.0)]
    df = pd.DataFrame(rows)
    df = _rank(df, rows, valid, col, big, objective, margin, slo)
    front_labels = tuple(int(df.index[df["_i"] == i][0]) for i in sorted(front_idx, key=lambda i: cands[i].key()))
    df = df.drop(columns=["_i"])
    simulated = int(df["simulated"].sum())
    return SearchResult(df, objective, front_labels, len(all_cands), len(rows), simulated, total_sims,
                        time.perf_counter() - t0, {"stats": stats, "screen_s": screen_s})


def _quality_of(formats: list[str]) -> dict:
    from llmsim.workloads.quality import quality_table

    table = quality_table()
    return {q: (table[q].loss if q in table else None) for q in set(formats)}


def _pareto_keys(slo_active: bool, prefix: str = "") -> tuple[tuple[str, bool], ...]:
    first = "goodput_rps" if slo_active else "throughput_tok_s"
    return ((prefix + first, True), (prefix + "usd_per_mtok", False), (prefix + "energy_per_token_j", False))


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _rank(df, rows, valid, col, big, objective, margin, slo):
    """Order ``df`` best first and say why each runner-up lost (``rank``: 1.. for valid candidates)."""
    def sort_key(i):
        r = rows[i]
        if i in valid_set:
            v = r[col]
            return (0, -v if big else v, r.get("usd_per_hour") or 0.0, r["label"])
        if r["simulated"]:
            return (1, r.get("miss_ratio") or 0.0, 0.0, r["label"])
        if r["feasible"] and r.get("est_slo_possible", True):
            e = r.get(f"est_{col}")
            e = 0.0 if e is None else e
            return (2, -e if big else e, 0.0, r["label"])
        return (3, r.get("miss_ratio") or math.inf, 0.0, r["label"])

    valid_set = set(valid)
    order = sorted(range(len(rows)), key=sort_key)
    best = rows[order[0]][col] if order and order[0] in valid_set else None
    why, rank = {}, {}
    for n, i in enumerate(order):
        r = rows[i]
        if i in valid_set:
            rank[i] = len(rank) + 1
            if rank[i] == 1:
                why[i] = "best"
            else:
                rel = (r[col] / best - 1) * 100 if best else math.nan
                why[i] = f"{objective} {_fmt(r[col])} vs best {_fmt(best)} ({rel:+.1f}%)"
        elif r["simulated"]:
            why[i] = r.get("sim_error") or r.get("slo_miss") or "no rate meets the SLO"
        elif r["feasible"] and r.get("est_slo_possible", True):
            why[i] = (f"screened out: estimated {objective} {_fmt(r.get(f'est_{col}'))} cannot reach the best "
                      f"simulated {_fmt(best)} within a {margin:g} margin")
        else:
            why[i] = f"infeasible ({r['binding']}): {r['reason']}"
    df = df.assign(_i=range(len(rows)))
    df = df.iloc[order].reset_index(drop=True)
    df["rank"] = [rank.get(i) for i in order]
    df["why"] = [why[i] for i in order]
    df["objective"] = [rows[i].get(col) for i in order]
    return df


def explore(space: SearchSpace | dict | str, **kw):
    """:func:`run_search` returning its ranked pandas DataFrame (``.attrs``: the JSON summary)."""
    from llmsim.search.space import load_space

    res = run_search(load_space(space) if not isinstance(space, SearchSpace) else space, **kw)
    df = res.frame
    df.attrs.update({"candidates_evaluated": res.candidates_evaluated, "simulated": res.simulated,
                     "pareto": list(res.pareto), "objective": res.objective, "wall_s": res.wall_s})
    return df


def closest_miss(df, slo: SLOTarget) -> tuple[str, str, str] | None:
    """(label, binding constraint, reason) of the candidate that came closest when none qualified:
    a simulated one missing the SLO by the smallest factor, else the screened one whose lone
    iteration misses least, else one that does not fit in memory."""
    best = None
    for _, r in df.iterrows():
        ratio, binding, reason = None, r.get("binding"), r.get("why") or r.get("reason")
        if r.get("simulated") and not r.get("sim_error"):
            ratios = [(r.get("ttft_p_s") or 0) / slo.ttft_s if slo.ttft_s else 0,
                      (r.get("tpot_p_s") or 0) / slo.tpot_s if slo.tpot_s else 0]
            ratio = max(ratios)
            binding = "ttft" if ratios[0] >= ratios[1] else "tpot"
            tier = 0
        elif r.get("miss_ratio") is not None and not (isinstance(r.get("miss_ratio"), float)
                                                      and math.isnan(r.get("miss_ratio"))):
            ratio, tier = float(r["miss_ratio"]), 1
        else:
            ratio, tier = math.inf, 2 if r.get("binding") in ("memory", "kv") else 3
        key = (tier, ratio)
        if best is None or key < best[0]:
            best = (key, (str(r["label"]), str(binding), str(reason)))
    return None if best is None else best[1]
