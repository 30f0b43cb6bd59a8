"""Evaluate one candidate: the run config it stands for, its simulated metrics, its goodput.

The search runs candidates through the composition root of ``simulate run``
(:func:`llmsim.sim.runner.assemble` / :func:`~llmsim.sim.runner.run_built`), so a candidate's
numbers are those ``simulate run`` prints for the same flags. Goodput is the largest Poisson
request rate (requests/s) at which the run still meets the latency SLOs at the chosen percentile
(TTFT and TPOT) with every request finished, found by a geometric bracket-and-bisect to a relative
tolerance. Every rate serves the same requests (the workload's first N) with Poisson arrivals at that
rate (:func:`requests_at`). Units: seconds, requests/s, tokens/s, joules, USD.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from llmsim.search.space import Candidate
from llmsim.workloads.errors import ConfigError, LLMSimError

__all__ = ["row_dict", "SLOTarget", "WorkloadSpec", "Context", "run_config", "simulate_at", "goodput", "evaluate",
           "TraceStats", "trace_stats"]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, kw_only=True)
class SLOTarget:
    """Latency targets at percentile ``percentile`` (50, 90 or 99): ``ttft_s`` time to first token,
    ``tpot_s`` time per output token (seconds; ``None`` = unconstrained). ``pessimistic``: a run meets
    a target only when the upper end of that figure's 80% interval does (``<metric>_interval`` of the
    run summary: the calibration's kernel-time error, hwmodels/uncertainty.py; queueing amplification
    is not in it), so goodput and sizing rank candidates by the pessimistic end."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    percentile: int = 99
    pessimistic: bool = False

    def __post_init__(self) -> None:
        for k in ("ttft_s", "tpot_s"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                  or not math.isfinite(v)):
                raise ConfigError(f"SLO `{k}` must be a finite number of seconds > 0, got {v!r}")
        if not isinstance(self.pessimistic, bool):
            raise ConfigError(f"SLO `pessimistic` must be true or false, got {self.pessimistic!r}")
        if self.percentile not in PERCENTILES:
            raise ConfigError(f"SLO percentile must be one of {', '.join(map(str, PERCENTILES))}, "
                              f"got {self.percentile!r}")

    @property
    def active(self) -> bool:
        return self.ttft_s is not None or self.tpot_s is not None

    def violations(self, summary: dict) -> list[str]:
        """What a run summary misses (empty: met)."""
        p = self.percentile
        out = []
        if summary.get("requests_rejected") or summary.get("requests_unfinished"):
            out.append(f"{summary.get('requests_rejected', 0)} rejected / "
                       f"{summary.get('requests_unfinished', 0)} unfinished requests")
        for name, limit in (("ttft", self.ttft_s), ("tpot", self.tpot_s)):
            key = f"{name}_p{p}_s"
            v = summary.get(key)
            band = summary.get(f"{key}_interval") if self.pessimistic else None
            if band:
                v = band[1]
            if limit is not None and v is not None and not (v <= limit):
                what = "upper end of the 80% interval of " if band else ""
                out.append(f"{what}{name.upper()} p{p} {v:.3g} s > {limit:g} s")
        return out


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """The requests: a bundled workload ``name`` or a ``trace`` file, the first ``num_requests``,
    at ``rate`` requests/s (Poisson; ``None``: the trace's own arrivals), drawn with ``seed``."""

    name: str | None = None
    trace: str | None = None
    rate: float | None = None
    num_requests: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name is None and self.trace is None:
            object.__setattr__(self, "name", "azure-conv")
        if self.name is not None and self.trace is not None:
            raise ConfigError("give a workload name or a trace file, not both")
        if isinstance(self.num_requests, bool) or not isinstance(self.num_requests, int) or self.num_requests < 1:
            raise ConfigError(f"`num_requests` must be an integer >= 1, got {self.num_requests!r}")

    def section(self, rate: float | None) -> dict:
        d = {"name": self.name} if self.name is not None else {"trace": self.trace}
        d["num_requests"] = self.num_requests
        if rate is not None:
            d["rate"] = float(rate)
        return d


@dataclass(frozen=True, kw_only=True)
class Context:
    """Everything a candidate's evaluation depends on besides the candidate: ``model``, the
    ``workload``, the ``slo``, the serving ``engine``, the price basis (on_demand/amortised),
    ``gpu_memory_utilization``, the goodput search's relative tolerance ``goodput_tol``, and
    ``goodput`` (whether to search goodput; default: when an SLO is set)."""

    model: str
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    slo: SLOTarget = field(default_factory=SLOTarget)
    engine: str | None = None
    price_basis: str = "on_demand"
    gpu_memory_utilization: float = 0.9
    goodput_tol: float = 0.05
    goodput: bool | None = None

    def __post_init__(self) -> None:
        if not (0 < self.goodput_tol < 1):
            raise ConfigError(f"`goodput_tol` must be in (0, 1), got {self.goodput_tol!r}")
        if self.goodput is None:
            object.__setattr__(self, "goodput", self.slo.active)
        if self.goodput and not self.slo.active:
            raise ConfigError("goodput needs an SLO: give --slo-ttft-p99 and/or --slo-tpot-p99")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def row_dict(row, int_columns: tuple[str, ...] = ()) -> dict:
    """One result-frame row as plain JSON-ready values: numpy scalars unwrapped, NaN/inf as None,
    ``int_columns`` that pandas widened to float back to int."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if k in int_columns and isinstance(v, float):
            v = int(v)
        out[k] = v
    return out


def run_config(cand: Candidate, ctx: Context, rate: float | None):
    """The :class:`~llmsim.sim.config.RunConfig` of ``cand`` serving ``ctx``'s workload at ``rate``."""
    from llmsim.sim.config import config_from_dict

    dep = {"model": ctx.model, "device": cand.device, "tp": cand.tp, "pp": cand.pp,
           "num_devices": cand.num_devices, "ep": cand.ep, "quant": cand.quant, "kv_dtype": cand.kv_dtype}
    if ctx.engine is not None:
        dep["engine"] = ctx.engine
    disagg = None
    if cand.disaggregated:  # the pools carry device, tp, pp and replicas; the deployment the rest
        for k in ("tp", "pp", "num_devices"):
            dep.pop(k)
        disagg = {"prefill": {"device": cand.device, "tp": cand.tp, "pp": cand.pp, "replicas": cand.dp},
                  "decode": {"device": cand.decode_device, "tp": cand.tp, "pp": cand.pp,
                             "replicas": cand.decode_replicas}, "link": "ib"}
    serving = {"gpu_memory_utilization": ctx.gpu_memory_utilization}
    for k, v in (("scheduler", cand.scheduler), ("max_batch_size", cand.max_num_seqs),
                 ("max_batched_tokens", cand.max_num_batched_tokens)):
        if v is not None:
            serving[k] = v
    data = {"seed": ctx.workload.seed, "deployment": dep, "serving": serving,
            "workload": ctx.workload.section(rate)}
    if disagg is not None:
        data["disagg"] = disagg
    if ctx.slo.active:
        data["slo"] = {k: v for k, v in (("ttft_s", ctx.slo.ttft_s), ("tpot_s", ctx.slo.tpot_s)) if v is not None}
    return config_from_dict(data)


@functools.lru_cache(maxsize=8)
def base_trace(ws: WorkloadSpec):
    """The workload's first ``num_requests`` requests with their own arrivals (lengths resampled at
    1 request/s when the source holds fewer)."""
    from llmsim.sim.config import config_from_dict
    from llmsim.sim.runner import load_requests

    try:
        return load_requests(config_from_dict({"seed": ws.seed, "workload": ws.section(None)}))
    except ConfigError:
        return load_requests(config_from_dict({"seed": ws.seed, "workload": ws.section(1.0)}))


@functools.lru_cache(maxsize=256)
def requests_at(ws: WorkloadSpec, rate: float | None):
    """The requests a candidate serves at ``rate``: :func:`base_trace`'s lengths with Poisson arrivals
    at ``rate`` requests/s drawn from the seed's ``arrivals`` stream (``llmsim.sim.runner.retime``, as
    ``simulate run --trace FILE --rate R`` retimes a trace); ``None``: the workload's own arrivals."""
    from llmsim.sim.runner import retime
    from llmsim.workloads.traces import PoissonArrivals

    base = base_trace(ws)
    return base if rate is None else retime(base, PoissonArrivals(rate_per_s=float(rate)), ws.seed)


def simulate_at(cand: Candidate, ctx: Context, rate: float | None) -> dict:
    """The run summary (``simulate run --json``'s keys) of ``cand`` serving :func:`requests_at` ``rate``
    (a disaggregated candidate through :func:`llmsim.sim.runner.run`, the same requests)."""
    from llmsim.sim.runner import assemble, run, run_built

    cfg = run_config(cand, ctx, rate)
    if cand.disaggregated:
        return run(cfg, keep_requests=False, trace=requests_at(ctx.workload, rate)).summary
    return run_built(assemble(cfg, trace=requests_at(ctx.workload, rate))).summary


def goodput(cand: Candidate, ctx: Context, start_rate: float, *, max_steps: int = 24) -> tuple[float, int, dict | None]:
    """(goodput in requests/s, simulations run, summary at the goodput rate or None when 0).

    Brackets the largest SLO-meeting rate from ``start_rate`` by doubling/halving, then bisects
    geometrically until the bracket is within ``ctx.goodput_tol``."""
    sims = 0
    cache: dict[float, dict] = {}

    def met(r: float) -> bool:
        nonlocal sims
        if r not in cache:
            cache[r] = simulate_at(cand, ctx, r)
            sims += 1
        return not ctx.slo.violations(cache[r])

    r = max(float(start_rate), 1e-3)
    if met(r):
        lo, hi = r, None
        for _ in range(8):
            if not met(lo * 2):
                hi = lo * 2
                break
            lo *= 2
        if hi is None:
            return lo, sims, cache[lo]
    else:
        hi, lo = r, None
        for _ in range(10):
            if met(hi / 2):
                lo = hi / 2
                break
            hi /= 2
        if lo is None:
            return 0.0, sims, None
    while hi / lo > 1 + ctx.goodput_tol and sims < max_steps:
        mid = math.sqrt(lo * hi)
        if met(mid):
            lo = mid
        else:
            hi = mid
    return lo, sims, cache[lo]


@dataclass(frozen=True)
class TraceStats:
    """Lengths of the workload's requests (tokens) and its offered rate (requests/s)."""

    mean_prompt: float
    mean_output: float
    p99_prompt: int
    max_total: int
    offered_rps: float
    num_requests: int


def trace_stats(ctx: Context) -> TraceStats:
    """Stats of the requests ``ctx``'s workload yields (at its rate; its own arrivals otherwise)."""
    import numpy as np

    t = requests_at(ctx.workload, ctx.workload.rate)
    p = np.asarray(t.prompt_tokens, dtype=np.float64)
    o = np.asarray(t.output_tokens, dtype=np.float64)
    a = np.asarray(t.arrival_s, dtype=np.float64)
    span = float(a.max() - a.min()) if len(a) > 1 else 0.0
    offered = ctx.workload.rate if ctx.workload.rate is not None else (len(a) / span if span > 0 else math.inf)
    return TraceStats(float(p.mean()), float(o.mean()), int(np.percentile(p, 99)), int((p + o).max()),
                      float(offered), len(t))


def usd_per_hour(cand: Candidate, basis: str) -> float:
    """Hourly price (USD) of the candidate's devices; NaN where the device has no price entry."""
    from llmsim.hwmodels.prices import get_price

    try:
        if cand.disaggregated:
            per = cand.tp * cand.pp
            return (get_price(cand.device).usd_per_hour(basis) * per * cand.dp
                    + get_price(cand.decode_device).usd_per_hour(basis) * per * cand.decode_replicas)
        return get_price(cand.device).usd_per_hour(basis) * cand.num_devices
    except ConfigError:
        return math.nan


def evaluate(cand: Candidate, ctx: Context, est_goodput: float | None = None) -> dict:
    """Simulate ``cand``: its metrics on the workload, its goodput when ``ctx.goodput``; a dict of
    ``sim_*`` columns (``sim_error`` names a failure the model raised)."""
    from llmsim.hwmodels.prices import usd_per_million_tokens

    row: dict = {"sim_error": None}
    try:
        s = simulate_at(cand, ctx, ctx.workload.rate)
    except LLMSimError as e:
        return {"sim_error": str(e), "simulations": 0}
    price = usd_per_hour(cand, ctx.price_basis)
    p = ctx.slo.percentile
    miss = ctx.slo.violations(s) if ctx.slo.active else []
    row.update({
        "ttft_p_s": s.get(f"ttft_p{p}_s"), "tpot_p_s": s.get(f"tpot_p{p}_s"),
        "ttft_p99_s": s.get("ttft_p99_s"), "tpot_p99_s": s.get("tpot_p99_s"),
        "e2e_mean_s": s.get("e2e_mean_s"), "throughput_tok_s": s.get("throughput_output_tok_s"),
        "energy_per_token_j": s.get("energy_per_token_j"), "avg_power_w": s.get("avg_power_w"),
        "slo_met": not miss, "slo_miss": "; ".join(miss) or None, "usd_per_hour": price,
        "usd_per_mtok": usd_per_million_tokens(price, s.get("throughput_output_tok_s") or 0.0),
        "simulations": 1, "goodput_rps": None,
    })
    if ctx.goodput:
        start = est_goodput if est_goodput and est_goodput > 0 else (ctx.workload.rate or 1.0)
        g, n, at = goodput(cand, ctx, start)
        row["simulations"] += n
        row["goodput_rps"] = g
        if at is not None and g > 0:
            tok_s = at.get("throughput_output_tok_s") or 0.0
            row["usd_per_mtok"] = usd_per_million_tokens(price, tok_s)
            row["energy_per_token_j"] = at.get("energy_per_token_j")
        else:
            row["usd_per_mtok"] = math.inf
    return row
