"""Before anything is simulated: memory feasibility, symmetry reduction and a fast analytic screen.

:func:`check` builds the candidate's replicas as ``simulate run`` would
(:func:`llmsim.sim.runner.build_layout`, i.e. :func:`llmsim.hwmodels.backend.make_deployment`) and
uses the deployment's own memory accounting: the weights per device plus the activation reserve of
:meth:`~llmsim.hwmodels.deployment.Deployment.kv_capacity_tokens` must leave KV room for at least
one request of the workload's longest length (prompt + output) on each virtual engine. An impossible
plan or format (PlanError, OutOfMemoryError) is infeasible with its binding constraint.

:func:`screen` prices a handful of representative iterations per candidate with the cost model's
own ``iteration`` (one prefill of the mean and of the p99 prompt, decode steps at batch 1 and at
the largest batch that fits memory, ``max_num_seqs`` and the TPOT target) and bounds throughput,
latency, goodput, cost and energy from them. The bounds are estimates, not proofs: the search
simulates every candidate whose estimate comes within a margin of the best simulated value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from llmsim.search.evaluate import Context, TraceStats, usd_per_hour
from llmsim.search.space import Candidate
from llmsim.workloads.errors import LLMSimError, OutOfMemoryError

__all__ = ["Feasibility", "check", "canonical", "screen", "Estimate"]

GIB = 2**30


@dataclass(frozen=True)
class Feasibility:
    """Whether a candidate can run: ``binding`` names the constraint that failed (``memory``,
    ``plan``, ``kv``, ``price``, ``quality``), ``reason`` says how; per device ``weight_gib``, per
    virtual engine ``kv_tokens``."""

    ok: bool
    reason: str | None = None
    binding: str | None = None
    weight_gib: float | None = None
    kv_tokens: int | None = None
    deployment: object = None


def _layout(cand: Candidate, ctx: Context):
    from llmsim.search.evaluate import run_config
    from llmsim.sim.runner import build_layout

    cfg = run_config(cand, ctx, None)
    return cfg, build_layout(cfg)


def pools(cand: Candidate) -> tuple[Candidate, Candidate]:
    """A disaggregated candidate's (prefill, decode) pools as colocated candidates."""
    pre = replace(cand, decode_device=None, decode_replicas=0)
    return pre, replace(pre, device=cand.decode_device, dp=cand.decode_replicas)


def check(cand: Candidate, ctx: Context, max_total_tokens: int) -> Feasibility:
    """Memory feasibility of ``cand`` for requests of up to ``max_total_tokens`` tokens (a
    disaggregated one: of both pools, reported as the decode pool, which holds the KV caches)."""
    if cand.disaggregated:
        pre, dec = pools(cand)
        fp = check(pre, ctx, max_total_tokens)
        if not fp.ok:
            return replace(fp, reason=f"prefill pool: {fp.reason}")
        fd = check(dec, ctx, max_total_tokens)
        return fd if fd.ok else replace(fd, reason=f"decode pool: {fd.reason}")
    try:
        cfg, layout = _layout(cand, ctx)
        dep = layout.deployments[0]
        weight = dep.weight_bytes_per_device / GIB
        kv = dep.kv_capacity_tokens(ctx.gpu_memory_utilization) // dep.pp
    except OutOfMemoryError as e:
        return Feasibility(False, str(e), "memory")
    except LLMSimError as e:
        return Feasibility(False, str(e), "plan")
    if kv < max_total_tokens:
        return Feasibility(False, f"KV cache holds {kv} tokens per engine, less than one {max_total_tokens}-token "
                                  f"request", "kv", weight, int(kv), dep)
    return Feasibility(True, None, None, weight, int(kv), dep)


def canonical(cand: Candidate, ctx: Context) -> Candidate:
    """``cand`` with every default resolved (``kv_dtype: auto`` -> the format's default KV dtype, unset
    batching knobs -> the engine's defaults on the device), so that candidates that run the same
    deployment compare equal: the search evaluates one per class (symmetry reduction)."""
    from llmsim.hwmodels.devices import get_device
    from llmsim.hwmodels.engines import DEFAULT_ENGINE, get_engine
    from llmsim.workloads.quant import get_kv_format, get_quant_format

    q = get_quant_format(cand.quant)
    kv = cand.kv_dtype
    if kv == "auto":
        kv = q.kv_default or "bf16"
    kv = get_kv_format(kv).name
    eng = get_engine(ctx.engine or DEFAULT_ENGINE)
    seqs, tokens = eng.batching_defaults(get_device(cand.device))
    return replace(cand, kv_dtype=kv, scheduler=cand.scheduler or eng.scheduler,
                   max_num_seqs=cand.max_num_seqs or seqs, max_num_batched_tokens=cand.max_num_batched_tokens or tokens)


@dataclass(frozen=True)
class Estimate:
    """Analytic bounds of one candidate (units as the simulated columns): ``goodput_rps`` (None
    without SLOs), ``throughput_tok_s``, ``e2e_mean_s``, ``energy_per_token_j``, ``usd_per_mtok``,
    ``tpot_min_s`` (a lone decode step), ``ttft_min_s`` (a lone p99-prompt prefill), ``batch`` (the
    largest decode batch memory and ``max_num_seqs`` allow per engine)."""

    goodput_rps: float | None
    throughput_tok_s: float
    e2e_mean_s: float
    energy_per_token_j: float
    usd_per_mtok: float
    tpot_min_s: float
    ttft_min_s: float
    batch: int


_EMPTY = np.zeros(0, dtype=np.int64)


def _decode(dep, b: int, ctx_len: int) -> tuple[float, float]:
    return dep.iteration(_EMPTY, _EMPTY, np.full(int(b), int(ctx_len), dtype=np.int64))


def _prefill(dep, prompt: int, chunk: int) -> tuple[float, float]:
    """A lone prompt prefilled in chunks of ``chunk`` tokens (seconds, joules)."""
    t = e = 0.0
    done = 0
    while done < prompt:
        n = min(chunk, prompt - done)
        dt, de = dep.iteration(np.array([n], dtype=np.int64), np.array([done], dtype=np.int64), _EMPTY)
        t, e, done = t + dt, e + de, done + n
    return t, e


def screen(cand: Candidate, ctx: Context, stats: TraceStats, feas: Feasibility) -> Estimate:
    """The analytic estimate of a feasible candidate (see the module docstring).

    Steady state of chunked batching per engine: an iteration of ``b`` decodes and ``c = b P / O``
    prefill tokens (mean prompt ``P``, mean output ``O``; within the token budget) retires ``b / O``
    requests' worth of decode and admits ``c / P`` requests, in the cost model's time for that mix."""
    from llmsim.hwmodels.prices import usd_per_million_tokens

    dep = feas.deployment
    full = canonical(cand, ctx)
    engines = cand.dp * cand.pp
    P, O = max(1, round(stats.mean_prompt)), max(1.0, stats.mean_output)
    ctx_len = int(P + O / 2)
    budget = full.max_num_batched_tokens
    b_max = max(1, min(full.max_num_seqs, feas.kv_tokens // max(1, int(P + O)), budget))
    t1, _ = _decode(dep, 1, ctx_len)
    tp_mean, _ = _prefill(dep, P, budget)
    tp_99, _ = _prefill(dep, max(1, stats.p99_prompt), budget)
    memo: dict[int, tuple[float, float, float]] = {}

    def mixed(b: int) -> tuple[float, float, float]:
        """(seconds, joules, requests/s per engine) of the steady-state iteration at decode batch b."""
        if b not in memo:
            c = int(max(1, min(round(b * P / O), budget - b)))
            t, e = dep.iteration(np.array([c], dtype=np.int64), np.array([P // 2], dtype=np.int64),
                                 np.full(b, ctx_len, dtype=np.int64))
            memo[b] = (t, e, min(b / O, c / P) / t)
        return memo[b]

    batches = sorted({b_max, *[1 << k for k in range(20) if (1 << k) < b_max]})
    cap_max = engines * max(mixed(b)[2] for b in batches)
    offered = stats.offered_rps
    served = min(offered, cap_max)
    thr = served * O
    # operating batch: the smallest that carries the served rate
    b_op = next((b for b in batches if engines * mixed(b)[2] >= served), b_max)
    t_op, e_op, _ = mixed(b_op)
    e2e = tp_mean + O * t_op
    if offered > cap_max:
        e2e *= offered / cap_max  # an overloaded candidate queues
    idle_w = dep.device.power.idle_w * cand.num_devices
    energy = e_op / b_op + (idle_w / thr if thr > 0 else 0.0)
    price = usd_per_hour(cand, ctx.price_basis)
    good = None
    if ctx.goodput:
        slo = ctx.slo
        if (slo.tpot_s is not None and t1 > slo.tpot_s) or (slo.ttft_s is not None and tp_99 > slo.ttft_s):
            good = 0.0
        else:
            ok = [b for b in batches if slo.tpot_s is None or mixed(b)[0] <= slo.tpot_s] or [1]
            good = engines * max(mixed(b)[2] for b in ok)
    usd = usd_per_million_tokens(price, good * O if good is not None else thr) if good != 0.0 else math.inf
    return Estimate(good, thr, e2e, energy, usd, t1, tp_99, b_max)
