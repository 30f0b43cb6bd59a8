"""Turn a :class:`~llmsim.sim.config.RunConfig` into replicas, cost models and requests, and run it.

The one place where ``sim/`` meets ``hwmodels/`` and ``workloads/`` for the command line: a
cost backend per device family (hwmodels/backend.make_deployment) gives each pool's replica cost model
and its :class:`~llmsim.hwmodels.layout.DeploymentLayout`, from which come the KV capacity
(``kv_capacity_tokens(gpu_memory_utilization)``), the swap space and speed (the device's host link)
and idle power; the workload section gives the request arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from llmsim.sim.config import DEFAULT_NUM_REQUESTS, DEFAULT_WORKLOAD, PoolSection, RunConfig
from llmsim.sim.metrics import SLO
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.schedulers import SchedulerConfig
from llmsim.sim.config import DEFAULT_DEVICE
from llmsim.workloads.errors import ConfigError, PlanError

GIB = 2**30
#: One 400 Gb/s NDR InfiniBand NIC per GPU (DGX H100: 8 ConnectX-7) [S]; per direction, bytes/s.
IB_BYTES_PER_S = 50e9


@dataclass
class RunOutput:
    """What a run produced: ``summary`` (JSON-ready dict), the :class:`~llmsim.sim.cluster.SimResult`, and
    the tracer when one was asked for."""

    summary: dict
    result: object
    tracer: object | None
    static: bool


@dataclass
class Layout:
    """A pool of DP replicas placed on a cluster: one :class:`Deployment` per replica (replicas whose
    groups sit alike share one object)."""

    cluster: object
    placement: object
    deployments: list

    @property
    def num_devices(self) -> int:
        return sum(dep.num_devices for dep in self.deployments)

    def info(self) -> dict:
        return {"cluster": self.cluster.name, **self.placement.describe()}


def _pool_settings(cfg: RunConfig, pool: PoolSection | None):
    d = cfg.deployment
    device = d.device if pool is None or pool.device is None else pool.device
    tp = d.tp if pool is None or pool.tp is None else pool.tp
    pp = d.pp if pool is None else pool.pp
    engine = d.engine if pool is None or pool.engine is None else pool.engine
    replicas = d.replicas if pool is None else pool.replicas
    return device, tp, pp, engine, replicas


def run_cluster(cfg: RunConfig):
    """The cluster of the run: ``deployment.cluster`` (with ``num_nodes``), or None."""
    d = cfg.deployment
    if d.cluster is None:
        if d.num_nodes is not None:
            raise ConfigError("`num_nodes` needs a `cluster` (a built-in name or a cluster YAML)")
        return None
    from llmsim.hwmodels.cluster import get_cluster

    return get_cluster(d.cluster, num_nodes=d.num_nodes)


def build_layout(cfg: RunConfig, pool: PoolSection | None = None, *, cluster=None,
                 first_device: int = 0) -> Layout:
    """Place the deployment (or a disaggregated ``pool``) and build each replica's cost model.

    On ``cluster`` (default: the run's cluster, else the natural cluster of the device) the pool
    takes devices from ``first_device`` on; the main deployment uses the placement strategy of the
    config, a pool of a disaggregated run the Megatron order from ``first_device``."""
    from llmsim.hwmodels.cluster import natural_cluster
    from llmsim.hwmodels.backend import make_deployment
    from llmsim.hwmodels.deployment import PlanNetwork
    from llmsim.hwmodels.plans import ParallelPlan, place

    d = cfg.deployment
    device, tp, pp, engine, replicas = _pool_settings(cfg, pool)
    cluster = cluster if cluster is not None else run_cluster(cfg)
    if cluster is None:
        n = d.num_devices if pool is None and d.num_devices is not None else replicas * tp * pp
        cluster = natural_cluster(device or DEFAULT_DEVICE, n)
        first_device = 0
    elif d.num_devices is None and d.dp is None and pool is None:
        # a cluster without explicit counts: as many replicas as its (matching) devices hold
        replicas = max(1, len(_matching_devices(cluster, device, 0)) // (tp * pp))
    layer_split = d.layer_split if pool is None else None
    plan = ParallelPlan(tp=tp, pp=pp, dp=replicas, ep=d.ep, layer_split=layer_split)
    need = plan.num_devices
    if first_device + need > cluster.num_devices:
        raise PlanError(f"the deployment needs {need} devices (dp {replicas} x pp {pp} x tp {tp}) but cluster "
                        f"{cluster.name} has {cluster.num_devices - first_device} left; lower the counts or "
                        f"use a larger cluster (num_nodes)", needed_devices=need,
                        available_devices=cluster.num_devices - first_device)
    if pool is None and first_device == 0 and not _needs_device_filter(cluster, device):
        placement = place(plan, cluster, d.placement, dp_communicates=False)
    else:
        devs = _matching_devices(cluster, device, first_device)
        if len(devs) < need:
            raise PlanError(f"cluster {cluster.name} has {len(devs)} free {device or 'usable'} devices (it holds "
                            f"{', '.join(cluster.device_kinds())}) but the deployment needs {need}; change "
                            f"`device`, the counts, or the cluster", needed_devices=need,
                            available_devices=len(devs))
        arr = np.array(devs[:need], dtype=np.int64).reshape(pp, replicas, tp).transpose(1, 0, 2)
        placement = place(plan, cluster, "explicit", devices=arr)
    profile = None
    if d.profile is not None:
        from llmsim.hwmodels.calibration import load_profile

        profile = load_profile(d.profile)
    built: dict = {}
    deps = []
    for r in range(replicas):
        kinds = {cluster.device(i).name for i in placement.replica_devices(r)}
        if len(kinds) > 1:
            raise PlanError(f"replica {r} would span device kinds {sorted(kinds)} on {cluster.name}; choose tp/pp "
                            f"so that each replica sits on one kind, or name the `device` to use")
        spec = cluster.device(placement.replica_devices(r)[0])
        net = PlanNetwork(tp=placement.group_topology(placement.tp_group(r, 0)),
                          stage_links=tuple(placement.stage_link(s, r, replica_only=True) for s in range(pp - 1)),
                          arch=spec.arch_class)
        key = (spec.name, net)
        if key not in built:
            b = batching(cfg, engine, spec)
            built[key] = make_deployment(d.model, spec, quant=d.quant, kv_dtype=d.kv_dtype, tp=tp, ep=d.ep, pp=pp,
                                         engine=engine, overhead_s=cfg.serving.overhead_s, profile=profile,
                                         layer_split=layer_split, network=net, max_num_seqs=b.max_num_seqs,
                                         max_num_batched_tokens=b.max_num_batched_tokens)
        deps.append(built[key])
    return Layout(cluster, placement, deps)


def _device_name(device: str) -> str:
    from llmsim.hwmodels.devices import get_device

    return get_device(device).name


def _needs_device_filter(cluster, device) -> bool:
    return device is not None and cluster.device_kinds() != (_device_name(device),)


def _matching_devices(cluster, device, first: int) -> list[int]:
    want = None if device is None else _device_name(device)
    return [i for i in range(first, cluster.num_devices) if want is None or cluster.device(i).name == want]


def build_deployment(cfg: RunConfig, pool: PoolSection | None = None):
    """The :class:`Deployment` of the first replica of the main deployment, or of a disaggregated ``pool``."""
    return build_layout(cfg, pool).deployments[0]


@dataclass(frozen=True)
class Batching:
    """The scheduling settings a replica runs with: the serving section's, else the engine's defaults."""

    policy: str
    max_num_seqs: int
    max_num_batched_tokens: int
    watermark: float
    admit_full_prompt: bool


def batching(cfg: RunConfig, engine, device) -> Batching:
    """The serving section's knobs, each ``None`` filled from ``engine``'s defaults on ``device``."""
    from llmsim.hwmodels.devices import get_device
    from llmsim.hwmodels.engines import get_engine

    s = cfg.serving
    eng = get_engine(engine)
    dev = get_device(device) if isinstance(device, str) else device
    seqs, tokens = eng.batching_defaults(dev)
    return Batching(policy=s.scheduler or eng.scheduler, max_num_seqs=s.max_batch_size or seqs,
                    max_num_batched_tokens=s.max_batched_tokens or tokens,
                    watermark=eng.watermark if s.watermark is None else s.watermark,
                    admit_full_prompt=eng.admit_full_prompt)


def replica_config(cfg: RunConfig, dep, *, max_num_seqs: int | None = None,
                   max_batched_tokens: int | None = None, policy: str | None = None,
                   kv_blocks: int | None = None, kv_capacity_tokens: int | None = None) -> ReplicaConfig:
    """One engine of ``dep`` with the serving section's knobs (engine defaults where unset). A
    pipeline-parallel replica runs ``pp`` virtual engines (vLLM's), each with its own scheduler and
    ``1/pp`` of the KV cache, and this is the config of one of them. ``kv_blocks`` or
    ``kv_capacity_tokens`` (per engine) replace the KV cache sized from ``gpu_memory_utilization``.
    A DP + EP group (``dep.dp_ep`` ranks) steps together: one scheduler over the group, whose
    limits, KV cache and idle power are the ranks' summed."""
    s = cfg.serving
    b = batching(cfg, dep.engine, dep.device)
    lay = dep.layout
    group = lay.dp_ep
    if kv_blocks is not None:
        kv = {"kv_blocks": int(kv_blocks) * group}
    else:
        kv_tokens = (lay.kv_capacity_tokens(s.gpu_memory_utilization) // lay.pp if kv_capacity_tokens is None
                     else kv_capacity_tokens)
        if kv_tokens < s.block_size:
            raise ConfigError(f"only {kv_tokens} tokens of KV cache fit beside the weights of {dep.model.name} on "
                              f"{dep.device.name} with tp={dep.tp}; raise tp or gpu_memory_utilization")
        kv = {"kv_capacity_tokens": int(kv_tokens) * group}
    swap_tokens = lay.host_swap_capacity_tokens(s.swap_space_gib * GIB) if s.preemption == "swap" else 0
    return ReplicaConfig(
        **kv, block_size=s.block_size, watermark_fraction=b.watermark,
        scheduler=SchedulerConfig(policy=policy or b.policy, max_num_seqs=(max_num_seqs or b.max_num_seqs) * group,
                                  max_num_batched_tokens=(max_batched_tokens or b.max_num_batched_tokens) * group,
                                  admit_full_prompt=b.admit_full_prompt),
        idle_power_w=dep.device.power.idle_w * dep.tp * group, preemption=s.preemption,
        swap_blocks=swap_tokens // s.block_size,
        swap_s_per_block=s.block_size * lay.swap_seconds_per_token(),
        prefix_caching=prefix_caching(cfg, dep))


def prefix_caching(cfg: RunConfig, dep) -> bool:
    """``serving.prefix_caching``, or when unset the engine profile's default (off if it has none)."""
    p = cfg.serving.prefix_caching
    return bool(getattr(dep.engine, "prefix_caching", False)) if p is None else p


def load_requests(cfg: RunConfig):
    """The request source of the workload section (the default: the first 1000 Azure conversation
    requests)."""
    from llmsim.workloads.traces import (FixedRateArrivals, GammaArrivals, PoissonArrivals, load_trace, load_workload,
                                  resample)

    w = cfg.workload
    arrivals = None
    if w.rate is not None:
        if w.arrival == "poisson":
            arrivals = PoissonArrivals(rate_per_s=w.rate)
        elif w.arrival == "gamma":
            arrivals = GammaArrivals(rate_per_s=w.rate, cv=w.cv)
        else:
            arrivals = FixedRateArrivals(rate_per_s=w.rate)
    n = w.num_requests
    if w.trace is not None:
        lengths_only = "num_prefill_tokens" in _header(w.trace)
        if lengths_only and arrivals is None:
            raise ConfigError(f"{w.trace} has request lengths but no arrival times; give a `rate` (--rate QPS)")
        trace = load_trace(w.trace, arrivals=arrivals, seed=cfg.seed, block_tokens=w.block_tokens)
        if arrivals is not None and not lengths_only:
            trace = retime(trace, arrivals, cfg.seed)
    else:
        name = w.name or DEFAULT_WORKLOAD
        if w.name is None and n is None:
            n = DEFAULT_NUM_REQUESTS
        if w.block_tokens is not None:
            raise ConfigError("`block_tokens` applies to a canonical CSV `trace` with hash_ids, not a named workload")
        trace = load_workload(name, arrivals=arrivals, seed=cfg.seed, params=w.params,
                              limit=n)
    if n is not None:
        if n > len(trace):
            if arrivals is None:
                raise ConfigError(f"`num_requests` {n} exceeds the {len(trace)} requests of {trace.name!r}; "
                                  f"give a `rate` to resample it to {n} requests")
            trace = resample(trace, n, arrivals=arrivals, seed=cfg.seed)
        else:
            trace = trace.head(n)
    return trace


def retime(trace, arrivals, seed: int):
    """``trace``'s lengths (and prefix identity) with arrivals drawn from ``arrivals`` (the
    ``arrivals`` stream of ``seed``)."""
    from llmsim.workloads.rng import stream

    return trace.with_arrivals(arrivals.times(len(trace), stream(seed, "arrivals")), arrivals.closed_loop)


def _header(path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline()
    except (OSError, UnicodeDecodeError):
        return ""


def slo_of(cfg: RunConfig) -> SLO | None:
    """The SLO of the run config (None when neither target is set)."""
    if cfg.slo.ttft_s is None and cfg.slo.tpot_s is None:
        return None
    return SLO(ttft_s=cfg.slo.ttft_s, tpot_s=cfg.slo.tpot_s)


def _deployment_info(dep, rc: ReplicaConfig) -> dict:
    lay = dep.layout
    return {"model": lay.model.name, "device": lay.device.name, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep,
            "layer_split": list(lay.stage_layers),
            "quant": lay.quant.name, "kv_dtype": lay.kv.name, "engine": dep.engine.name,
            "engine_version": dep.engine.version, "scheduler": rc.scheduler.policy,
            "max_num_seqs": rc.scheduler.max_num_seqs, "max_num_batched_tokens": rc.scheduler.max_num_batched_tokens,
            "weight_gib_per_device": lay.weight_bytes_per_device / GIB,
            "kv_capacity_tokens": rc.num_blocks * rc.block_size * lay.pp, "kv_blocks": rc.num_blocks * lay.pp,
            "swap_blocks": rc.swap_blocks,
            **({"calibration": dep.calibration_info()} if hasattr(dep, "calibration_info") else {})}


#: what the ``*_interval`` figures of a run summary cover (its ``interval_scope``)
INTERVAL_SCOPE = ("kernel time only: each figure scaled by the 80% band of the iteration-time error of the "
                  "calibration (hwmodels/uncertainty.py); how queueing amplifies that error in TTFT and E2E "
                  "under load is not included, so those intervals are too narrow near saturation")


def _with_intervals(summary: dict, *deps) -> dict:
    """``summary`` plus ``<metric>_interval: [lo, hi]`` (hwmodels/uncertainty.py) from its deployments'
    bands, and ``interval_scope`` saying what they cover."""
    from llmsim.hwmodels.uncertainty import run_intervals

    bands = [d.time_band() for d in deps if hasattr(d, "time_band")]
    if bands:
        summary.update(run_intervals(summary, (min(b[0] for b in bands), max(b[1] for b in bands))))
        summary["interval_scope"] = INTERVAL_SCOPE
    return summary


class ProgressTracer:
    """A tracer calling ``progress(simulated_s, iterations)`` every ``every`` iterations (simulated
    seconds of the last iteration seen) and passing each iteration on to ``inner``; it only reads."""

    __slots__ = ("inner", "progress", "every", "iterations", "_next")

    def __init__(self, inner, progress, every: int = 512):
        self.inner, self.progress, self.every = inner, progress, max(1, int(every))
        self.iterations, self._next = 0, self.every

    def iteration(self, replica: int, start_s: float, end_s: float, prefill_tokens: int, decodes: int) -> None:
        if self.inner is not None:
            self.inner.iteration(replica, start_s, end_s, prefill_tokens, decodes)
        self.iterations += 1
        if self.iterations >= self._next:
            self._next = self.iterations + self.every
            self.progress(end_s, self.iterations)

    def decode_run(self, replica: int, starts, ends, decodes: int) -> None:
        if self.inner is not None:
            self.inner.decode_run(replica, starts, ends, decodes)
        self.iterations += len(ends)
        if self.iterations >= self._next:
            self._next = self.iterations + self.every
            self.progress(float(ends[-1]), self.iterations)


def run(cfg: RunConfig, *, keep_requests: bool | None = None, tracer=None, trace=None,
        progress=None, built=None, simulated_intervals: bool = False) -> RunOutput:
    """Run ``cfg``: a static batch, a disaggregated cluster, or DP replicas behind the router.
    ``tracer``: records the iterations (default: a :class:`~llmsim.sim.trace.ChromeTracer` when the
    output section asks for a Chrome trace or a report); ``trace``: requests to serve instead of the
    workload section's, as :func:`assemble` takes. ``progress``: ``progress(simulated_s, iterations)``
    called every 512 iterations (a :class:`ProgressTracer`); it does not change results. ``built``:
    called with no arguments once the run is built (deployments, requests), before it simulates.
    ``simulated_intervals``: a serving run's intervals come from two more runs at the ends of the
    cost band (:func:`run_built`), queueing included."""
    from llmsim.sim.trace import ChromeTracer

    o = cfg.output
    want_records = bool(o.out or o.report) if keep_requests is None else keep_requests
    if tracer is None:
        tracer = ChromeTracer() if (o.chrome_trace or o.report) else None
    hook = tracer if progress is None else ProgressTracer(tracer, progress)
    if cfg.disagg is not None:
        out = _run_disagg(cfg, hook, want_records, trace, built)
    else:
        parts = assemble(cfg, trace=trace)
        if built is not None:
            built()
        out = run_built(parts, keep_requests=want_records, tracer=hook, simulated_intervals=simulated_intervals)
    return out if progress is None else replace(out, tracer=tracer)


@dataclass
class Built:
    """What a serving (or static-batch) run is made of, before it runs: the ``config``, the
    ``layout`` (one :class:`Deployment` per replica), per virtual engine its ``replicas``
    (:class:`ReplicaConfig`) and ``cost_models`` (a pipeline-parallel replica runs ``pp``), the
    request ``trace`` and the ``router``."""

    config: RunConfig
    layout: Layout
    replicas: list
    cost_models: list
    trace: object
    router: str

    @property
    def deployments(self) -> list:
        return self.layout.deployments

    @property
    def static(self) -> bool:
        return self.config.static_batch is not None


def assemble(cfg: RunConfig, *, trace=None, kv_blocks: int | None = None, kv_capacity_tokens: int | None = None,
             dp_ep: int = 1, router: str | None = None) -> Built:
    """Build the run of ``cfg`` (serving or static batch; a disaggregated run: :func:`run`).

    ``trace``: requests to serve instead of the workload section's (any object with
    ``arrival_s``/``prompt_tokens``/``output_tokens`` arrays); ``kv_blocks`` or ``kv_capacity_tokens``
    (tokens): each engine's KV cache instead of the one sized from ``gpu_memory_utilization``;
    ``dp_ep``: ranks per data-parallel group sharing the experts (the ``dp`` replicas are then groups);
    ``router``: instead of ``cluster.router``."""
    if cfg.disagg is not None:
        raise ConfigError("a disaggregated run is built and run by llmsim.sim.runner.run")
    layout = build_layout(cfg)
    if dp_ep != 1:
        layout = Layout(layout.cluster, layout.placement, _with_dp_ep(cfg, layout.deployments, dp_ep))
    kv = {"kv_blocks": kv_blocks, "kv_capacity_tokens": kv_capacity_tokens}
    sb = cfg.static_batch
    if sb is not None:
        from llmsim.workloads.traces import RequestTrace

        dep = layout.deployments[0]
        layout = Layout(layout.cluster, layout.placement, [dep])
        B, P, O = sb.batch_size, sb.prompt_tokens, sb.output_tokens
        rc = replica_config(cfg, dep, max_num_seqs=B, policy="static",
                            max_batched_tokens=max(B * P, batching(cfg, dep.engine, dep.device).max_num_batched_tokens),
                            **kv)
        if trace is None:
            trace = RequestTrace(np.zeros(B), np.full(B, P, np.int64), np.full(B, O, np.int64), np.arange(B),
                                 "static-batch")
        return Built(cfg, layout, [rc], [dep], trace, router or cfg.cluster.router)
    configs: dict[int, ReplicaConfig] = {}
    engines, models = [], []
    for dep in layout.deployments:
        if id(dep) not in configs:
            configs[id(dep)] = replica_config(cfg, dep, **kv)
        # a pipeline-parallel replica: pp virtual engines behind the router
        engines += [configs[id(dep)]] * dep.pp
        models += [dep] * dep.pp
    if trace is None:
        trace = load_requests(cfg)
        if cfg.workload.trace is not None:
            check_requests(trace, layout.deployments[0].model, cfg.workload.trace)
    return Built(cfg, layout, engines, models, trace, router or cfg.cluster.router)


def check_requests(trace, model, where: str | None = None) -> None:
    """Reject requests read from a trace file (``where``) that cannot be served as meant: none at all,
    a prompt longer than ``model``'s context, or a request id given twice (``ConfigError``). The
    bundled workloads are not checked (they are served as published)."""
    n = len(trace.arrival_s)
    name = where or getattr(trace, "name", "") or "the workload"
    if n == 0:
        raise ConfigError(f"{name} has no requests; give a trace with at least one row "
                          "(request_id,arrival_s,prompt_tokens,output_tokens) or a workload name")
    limit = getattr(model, "max_context", None)
    if limit:
        prompts = np.asarray(trace.prompt_tokens)
        worst = int(np.argmax(prompts))
        if int(prompts[worst]) > int(limit):
            too_long = int(np.count_nonzero(prompts > limit))
            ids = getattr(trace, "request_id", None)
            which = f"request {np.asarray(ids)[worst]}" if ids is not None else f"request {worst}"
            raise ConfigError(f"{name}: {too_long} prompt(s) exceed the {int(limit)}-token context of {model.name} "
                              f"({which} has {int(prompts[worst])} tokens); shorten them or use a model with a "
                              f"longer context")
    ids = getattr(trace, "request_id", None)
    if ids is not None and n > 1:
        ids = np.asarray(ids)
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) < n:
            dup = uniq[counts > 1]
            raise ConfigError(f"{name}: request id {dup[0]} appears {int(counts[counts > 1][0])} times "
                              f"({len(dup)} id(s) repeated); every request_id must be unique")


def _with_dp_ep(cfg: RunConfig, deployments: list, dp_ep: int) -> list:
    """The replicas as DP + EP groups of ``dp_ep`` ranks (each rank holding 1/dp_ep of the experts,
    the group on one server)."""
    from llmsim.hwmodels.backend import make_deployment

    made: dict[int, object] = {}
    for d in deployments:
        if id(d) not in made:
            b = batching(cfg, d.engine, d.device)
            made[id(d)] = make_deployment(d.model, d.device, quant=d.quant, kv_dtype=d.kv, tp=d.tp, ep=d.ep,
                                          pp=d.pp, engine=d.engine, overhead_s=d.overhead_s, profile=d.profile,
                                          max_num_seqs=b.max_num_seqs,
                                          max_num_batched_tokens=b.max_num_batched_tokens, dp_ep=dp_ep)
    return [made[id(d)] for d in deployments]


def run_built(built: Built, *, keep_requests: bool = False, tracer=None, simulated_intervals: bool = False) -> RunOutput:
    """Run what :func:`assemble` built; ``summary`` as ``simulate run --json`` reports it.
    ``simulated_intervals`` (serving runs): the ``*_interval`` figures come from the same run
    simulated twice more, every iteration's cost scaled to the low and the high end of the
    deployment's band (``Deployment.time_band``), so they include how queueing amplifies it."""
    if built.static:
        return _run_static(built, tracer)
    from llmsim.sim.cluster import simulate

    cfg, layout, trace = built.config, built.layout, built.trace
    result = simulate(trace, built.replicas, built.cost_models, router=built.router, seed=cfg.seed,
                      keep_requests=keep_requests, slo=slo_of(cfg), tracer=tracer)
    summary = serving_summary(built, result, len(trace))
    dep = layout.deployments[0]
    if simulated_intervals and hasattr(dep, "time_band"):
        summary.update(_simulated_intervals(built, summary, dep.time_band()))
    return RunOutput(summary, result, tracer, False)


#: what the ``*_interval`` figures cover when the run was simulated at both ends of the band
SIMULATED_INTERVAL_SCOPE = ("simulated: the run repeated with every iteration's time and energy scaled to the low "
                            "and the high end of the 80% band of the calibration's iteration-time error "
                            "(hwmodels/uncertainty.py; operator errors taken as fully correlated), so queueing "
                            "under load is included")


def _simulated_intervals(built: Built, summary: dict, band: tuple[float, float]) -> dict:
    """``<metric>_interval`` of a serving summary from two runs at the band's ends (each figure's lower
    and higher value of the two: a latency's low end comes from the fast run, a rate's from the slow
    one), and ``interval_scope``."""
    from llmsim.hwmodels.uncertainty import LATENCY_KEYS, RATE_KEYS
    from llmsim.sim.cluster import simulate
    from llmsim.sim.costs import ScaledCost

    ends = []
    for factor in band:
        wrapped: dict[int, ScaledCost] = {}
        models = [wrapped.setdefault(id(m), ScaledCost(m, factor)) for m in built.cost_models]
        res = simulate(built.trace, built.replicas, models, router=built.router, seed=built.config.seed,
                       keep_requests=False, slo=slo_of(built.config))
        ends.append(res.summary)
    out = {}
    for k in LATENCY_KEYS + RATE_KEYS:
        pair = [e.get(k) for e in ends]
        if k in summary and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair):
            out[f"{k}_interval"] = [float(min(pair)), float(max(pair))]
    out["interval_scope"] = SIMULATED_INTERVAL_SCOPE
    return out


def serving_summary(built: Built, result, requests: int) -> dict:
    """The ``simulate run --json`` summary of a serving run of ``built`` that produced ``result``
    (a :class:`~llmsim.sim.cluster.SimResult`) over ``requests`` requests."""
    layout, trace = built.layout, built.trace
    dep = layout.deployments[0]
    summary = dict(result.summary)
    summary["mode"] = "serving"
    summary["workload"] = trace.name
    summary["requests"] = requests
    summary["replicas"] = len(layout.deployments)
    summary["virtual_engines"] = len(built.replicas)
    summary["num_devices"] = layout.num_devices
    summary["deployment"] = _deployment_info(dep, built.replicas[0])
    summary["placement"] = layout.info()
    return _with_intervals(summary, dep)


def _run_static(built: Built, tracer) -> RunOutput:
    """One batch of ``batch_size`` identical requests arriving together, prefilled in one iteration
    (up to the token budget) and decoded together to the end."""
    from llmsim.sim.cluster import simulate

    cfg = built.config
    sb = cfg.static_batch
    dep, rc, trace = built.cost_models[0], built.replicas[0], built.trace
    B, P, O = sb.batch_size, sb.prompt_tokens, sb.output_tokens
    need = B * -(-(P + O) // rc.block_size)
    result = simulate(trace, rc, dep, keep_requests=True, tracer=tracer)
    rec = result.records
    done = rec["status"] == "finished"
    prefill = float(np.max(rec["first_token_s"][done])) if done.any() else math.nan
    e2e = float(np.max(rec["finish_s"][done])) if done.any() else math.nan
    summary = dict(result.summary)
    summary.update({
        "mode": "static_batch", "batch_size": B, "prompt_tokens": P, "output_tokens": O,
        "prefill_time_s": prefill, "e2e_time_s": e2e,
        "per_token_time_s": (e2e - prefill) / (O - 1) if O > 1 else math.nan,
        "fits_in_one_batch": bool(need <= rc.num_blocks - rc.watermark_blocks),
        "replicas": 1, "num_devices": dep.num_devices, "deployment": _deployment_info(dep, rc),
    })
    return RunOutput(_with_intervals(summary, dep), result, tracer, True)


def transfer_seconds_per_token(cfg: RunConfig, dep_p, dep_d, layouts=None) -> tuple[float, float]:
    """(seconds per prompt token, latency) of moving KV from a prefill to a decode replica.

    On a cluster (``layouts`` = the two pools' :class:`Layout`): over the cluster path between the
    first prefill and the first decode replica (NVLink inside a server, the NICs across servers),
    each prefill device sending its shard to a peer. Otherwise the prefill replica's KV bytes over
    ``min(devices)`` links of the ``disagg.link`` kind in parallel."""
    if layouts is not None:
        from llmsim.hwmodels.plans import transfer_coefficients

        lay_p, lay_d = layouts
        alpha, beta = transfer_coefficients(lay_p.cluster, lay_p.placement.replica_devices(0),
                                            lay_d.placement.replica_devices(0))
        return dep_p.layout.kv_bytes_per_token * beta, alpha
    dg = cfg.disagg
    if dg.link_bandwidth_gb_s is not None:
        bw = dg.link_bandwidth_gb_s * 1e9
    elif dg.link == "ib":
        bw = IB_BYTES_PER_S
    elif dg.link == "nvlink":
        bw = min(dep_p.device.scale_up_link.bandwidth_bytes_per_s, dep_d.device.scale_up_link.bandwidth_bytes_per_s)
    else:
        bw = min(dep_p.device.host_link.bandwidth_bytes_per_s, dep_d.device.host_link.bandwidth_bytes_per_s)
    lanes = min(dep_p.num_devices, dep_d.num_devices)
    return dep_p.layout.kv_bytes_per_token / (lanes * bw), dg.latency_s


def _run_disagg(cfg: RunConfig, tracer, want_records: bool, trace=None, built=None) -> RunOutput:
    from llmsim.sim.disagg import simulate_disagg

    dg = cfg.disagg
    cluster = run_cluster(cfg)
    lay_p = build_layout(cfg, dg.prefill, cluster=cluster)
    lay_d = build_layout(cfg, dg.decode, cluster=cluster,
                         first_device=lay_p.num_devices if cluster is not None else 0)
    dep_p, dep_d = lay_p.deployments[0], lay_d.deployments[0]
    if dep_p.kv.bytes_per_element != dep_d.kv.bytes_per_element:
        raise ConfigError("prefill and decode pools must store the KV cache in the same format")
    rc_p = replica_config(cfg, dep_p)
    rc_d = replica_config(cfg, dep_d)
    s_per_tok, latency = transfer_seconds_per_token(cfg, dep_p, dep_d,
                                                    (lay_p, lay_d) if cluster is not None else None)
    if trace is None:
        trace = load_requests(cfg)
        if cfg.workload.trace is not None:
            check_requests(trace, dep_p.model, cfg.workload.trace)
    if built is not None:
        built()
    result = simulate_disagg(trace, rc_p, dep_p, rc_d, dep_d, num_prefill=dg.prefill.replicas,
                             num_decode=dg.decode.replicas, transfer_s_per_token=s_per_tok,
                             transfer_latency_s=latency, prefill_router=dg.prefill_router,
                             decode_router=dg.decode_router, seed=cfg.seed, keep_requests=want_records,
                             slo=slo_of(cfg), tracer=tracer)
    summary = dict(result.summary)
    summary.update({
        "mode": "disaggregated", "workload": trace.name, "requests": len(trace),
        "replicas": dg.prefill.replicas + dg.decode.replicas,
        "num_devices": dg.prefill.replicas * dep_p.num_devices + dg.decode.replicas * dep_d.num_devices,
        "kv_transfer_s_per_token": s_per_tok,
        "prefill_pool": {**_deployment_info(dep_p, rc_p), "replicas": dg.prefill.replicas},
        "decode_pool": {**_deployment_info(dep_d, rc_d), "replicas": dg.decode.replicas},
    })
    return RunOutput(_with_intervals(summary, dep_p, dep_d), result, tracer, False)
