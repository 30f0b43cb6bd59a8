"""The library's front door: describe a serving scenario, simulate it, read typed metrics.

    >>> import llmsim
    >>> r = llmsim.simulate(llmsim.Scenario(model="llama-3.1-8b", device="h100", workload="azure-code",
    ...                                     num_requests=200))
    >>> r.metrics.ttft_p99_s > 0
    True

A :class:`Scenario` is a small, frozen subset of the run config (:class:`llmsim.sim.config.RunConfig`,
the same tree ``simulate run CONFIG.yaml`` reads); what it leaves ``None`` takes the config's
default, exactly as a flag left off ``simulate run`` does. :func:`simulate` builds the
:class:`RunConfig` through :func:`llmsim.sim.config.config_from_dict` (so a bad value raises the
same :class:`~llmsim.workloads.errors.ConfigError` the command line prints) and runs it with
:func:`llmsim.sim.runner.run`, the composition root behind ``simulate run``: the same scenario gives
the same numbers as the command line.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llmsim.jsonsafe import json_safe

__all__ = ["Built", "IterationBatch", "IterationPrediction", "Metrics", "Result", "Scenario", "build", "deployment",
           "explore", "predict_iteration", "simulate", "size"]


def _frozen_mapping(name: str, value: Any) -> Mapping | None:
    from llmsim.workloads.errors import ConfigError
    from llmsim.workloads.frozen import FrozenMap

    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"`{name}` must be a mapping of {name} settings, got {value!r}")
    return FrozenMap(value)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """What to simulate. ``None`` fields take the run config's defaults (``simulate run``'s).

    ``model``, ``device``: catalogue names (``simulate models``, ``simulate devices``);
    ``num_devices`` or ``tp`` / ``pp`` / ``dp``: the parallel plan (``num_devices / (tp * pp)``
    data-parallel replicas); ``engine``: a serving-engine profile (``vllm``, ``vllm==0.15.1``, ... or
    an :class:`~llmsim.hwmodels.engines.EngineProfile`; default
    :data:`llmsim.hwmodels.engines.DEFAULT_ENGINE`, the command line's); ``profile``: a calibration
    profile (JSON path or :class:`~llmsim.hwmodels.calibration.Profile`; default the bundled one);
    ``workload`` (a bundled workload name) or ``trace`` (a trace file path, a request trace object
    with ``arrival_s``/``prompt_tokens``/``output_tokens`` arrays, or a mapping of those three arrays
    in s / tokens); ``rate``: requests/s
    (replaces the arrivals with a Poisson process); ``num_requests``: the first N requests;
    ``seed``: the run's seed. ``serving`` and ``slo``: keys of the config's ``serving`` section
    (``scheduler``, ``max_batch_size``, ``block_size``, ``prefix_caching``, ...) and ``slo`` section
    (``ttft_s``, ``tpot_s``; goodput is reported when one is set). ``keep_requests``: keep
    per-request records for :meth:`Result.requests_frame` (exact percentiles instead of the
    streaming histogram's, as ``simulate run --out`` does). ``static_batch``: one batch instead of a
    workload (``batch_size``, ``prompt_tokens``, ``output_tokens``). ``kv_blocks`` or
    ``kv_capacity_tokens`` (tokens): each engine's KV cache instead of the one sized from
    ``serving.gpu_memory_utilization``; ``dp_ep``: ranks per data-parallel group sharing the experts
    (vLLM's ``--enable-expert-parallel``; the ``dp`` replicas are then groups); ``router``: the
    cluster router (``round-robin``, ``least-outstanding``, ...). ``keep_iterations``: record every
    engine iteration for :meth:`Result.iterations_frame` (the numbers do not change). ``cluster``
    (``simulate list clusters`` or a file), ``num_nodes``, ``placement`` (``nic-aware``, ``naive``):
    place the replicas on a cluster as ``simulate run --cluster`` does. ``quant``, ``kv_dtype``: the
    weight and KV-cache formats (``simulate list formats``)."""

    model: str | None = None
    device: str | None = None
    num_devices: int | None = None
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    engine: Any = None
    profile: Any = None
    workload: str | None = None
    trace: Any = None
    rate: float | None = None
    num_requests: int | None = None
    seed: int = 0
    serving: Mapping[str, Any] | None = None
    slo: Mapping[str, Any] | None = None
    keep_requests: bool = False
    static_batch: Mapping[str, Any] | None = None
    kv_blocks: int | None = None
    kv_capacity_tokens: int | None = None
    dp_ep: int = 1
    router: str | None = None
    keep_iterations: bool = False
    cluster: str | None = None
    num_nodes: int | None = None
    placement: str | None = None
    quant: str | None = None
    kv_dtype: str | None = None

    def __post_init__(self) -> None:
        from llmsim.workloads.errors import ConfigError

        object.__setattr__(self, "serving", _frozen_mapping("serving", self.serving))
        object.__setattr__(self, "slo", _frozen_mapping("slo", self.slo))
        object.__setattr__(self, "static_batch", _frozen_mapping("static_batch", self.static_batch))
        if isinstance(self.trace, (str, Path)):
            object.__setattr__(self, "trace", str(self.trace))
        elif isinstance(self.trace, Mapping):
            object.__setattr__(self, "trace", _trace_of(self.trace))
        elif self.trace is not None and not all(hasattr(self.trace, k)
                                                for k in ("arrival_s", "prompt_tokens", "output_tokens")):
            raise ConfigError("`trace` must be a trace file path, a request trace or a mapping of arrival_s, "
                              f"prompt_tokens and output_tokens arrays, got {type(self.trace).__name__}")
        if isinstance(self.profile, Path):
            object.__setattr__(self, "profile", str(self.profile))
        for name in ("keep_requests", "keep_iterations"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"`{name}` must be true or false, got {getattr(self, name)!r}")
        for name in ("kv_blocks", "kv_capacity_tokens", "dp_ep"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"`{name}` must be an integer >= 1, got {v!r}")
        if self.kv_blocks is not None and self.kv_capacity_tokens is not None:
            raise ConfigError("give `kv_blocks` or `kv_capacity_tokens`, not both")

    @property
    def trace_object(self):
        """The requests given as an object (``trace`` not a path), else ``None``."""
        return None if self.trace is None or isinstance(self.trace, str) else self.trace

    def config_dict(self) -> dict:
        """The nested run-config mapping (``simulate run CONFIG.yaml``'s schema) of this scenario
        (a ``trace`` given as an object is not part of it)."""
        deployment = {k: getattr(self, k) for k in ("model", "device", "num_devices", "tp", "pp", "dp", "engine",
                                                    "profile", "cluster", "num_nodes", "placement", "quant",
                                                    "kv_dtype")
                      if getattr(self, k) is not None}
        trace = self.trace if isinstance(self.trace, str) else None
        workload = {k: v for k, v in (("name", self.workload), ("trace", trace), ("rate", self.rate),
                                      ("num_requests", self.num_requests)) if v is not None}
        data: dict[str, Any] = {"seed": self.seed}
        for section, values in (("deployment", deployment), ("workload", workload),
                                ("serving", self.serving), ("slo", self.slo), ("static_batch", self.static_batch)):
            if values:
                data[section] = dict(values)
        if self.router is not None:
            data["cluster"] = {"router": self.router}
        return data

    def to_config(self):
        """The :class:`llmsim.sim.config.RunConfig` of this scenario (a bad value: ``ConfigError``)."""
        from llmsim.sim.config import config_from_dict

        return config_from_dict(self.config_dict())


def _trace_of(arrays: Mapping):
    """A request trace from a mapping of ``arrival_s`` (s), ``prompt_tokens``, ``output_tokens``."""
    import numpy as np

    from llmsim.workloads.errors import ConfigError
    from llmsim.workloads.traces import RequestTrace

    missing = [k for k in ("arrival_s", "prompt_tokens", "output_tokens") if k not in arrays]
    if missing:
        raise ConfigError(f"`trace` mapping lacks {', '.join(missing)}")
    arrival = np.asarray(arrays["arrival_s"], dtype=np.float64)
    return RequestTrace(arrival, np.asarray(arrays["prompt_tokens"], dtype=np.int64),
                        np.asarray(arrays["output_tokens"], dtype=np.int64), np.arange(len(arrival)),
                        str(arrays.get("name", "requests")))


def _num(summary: Mapping, key: str) -> float:
    v = summary.get(key)
    return math.nan if v is None else float(v)


def _opt(summary: Mapping, key: str) -> float | None:
    v = summary.get(key)
    return None if v is None else float(v)


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """The aggregate metrics of a serving run (seconds, tokens/s, joules; NaN where undefined, e.g.
    TPOT when every request generated one token). Percentiles are exact over the requests when
    they were kept (``Scenario.keep_requests``), else from the streaming 1 %-wide histogram.
    ``e2e_p90_s`` needs kept requests (the streaming summary reports p50 and p99 only), ``None``
    otherwise; ``goodput_requests_per_s`` and ``slo_attainment`` need an SLO; ``prefix_cache_hit_rate``
    is ``None`` when the run did not report it."""

    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    tpot_mean_s: float
    tpot_p50_s: float
    tpot_p90_s: float
    tpot_p99_s: float
    e2e_mean_s: float
    e2e_p50_s: float
    e2e_p90_s: float | None
    e2e_p99_s: float
    queue_mean_s: float
    throughput_output_tok_s: float
    throughput_input_tok_s: float
    requests_per_s: float
    goodput_requests_per_s: float | None
    slo_attainment: float | None
    energy_j: float
    energy_per_token_j: float
    avg_power_w: float
    makespan_s: float
    requests_completed: int
    requests_rejected: int
    requests_unfinished: int
    preemptions: int
    prefix_cache_hit_rate: float | None

    @classmethod
    def from_summary(cls, summary: Mapping, records: Mapping | None = None) -> Metrics:
        """Metrics from a run summary (``llmsim.sim.runner.RunOutput.summary``) and, when kept, the
        per-request records (for ``e2e_p90_s``)."""
        e2e_p90 = _opt(summary, "e2e_p90_s")
        if e2e_p90 is None and records:
            import numpy as np

            e2e = np.asarray(records["finish_s"], dtype=np.float64) - np.asarray(records["arrival_s"], dtype=np.float64)
            e2e = e2e[np.isfinite(e2e)]  # rejected requests have no finish
            if len(e2e):
                e2e_p90 = float(np.percentile(e2e, 90))
        floats = {f.name: _num(summary, f.name) for f in dataclasses.fields(cls) if f.type == "float"}
        ints = {k: int(summary.get(k) or 0)
                for k in ("requests_completed", "requests_rejected", "requests_unfinished", "preemptions")}
        return cls(**floats, **ints, e2e_p90_s=e2e_p90,
                   goodput_requests_per_s=_opt(summary, "goodput_requests_per_s"),
                   slo_attainment=_opt(summary, "slo_attainment"),
                   prefix_cache_hit_rate=_opt(summary, "prefix_cache_hit_rate"))

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (NaN -> ``None``)."""
        return json_safe(dataclasses.asdict(self))


@dataclass(frozen=True, kw_only=True)
class Result:
    """What :func:`simulate` produced: the ``scenario``, its resolved ``config``
    (:class:`llmsim.sim.config.RunConfig`), the typed ``metrics`` and the full run ``summary``
    (read-only; the keys of ``simulate run --json`` less ``config``)."""

    scenario: Scenario
    config: Any
    metrics: Metrics
    summary: Mapping[str, Any]
    _sim: Any = field(default=None, repr=False, compare=False)
    _tracer: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON object ``simulate run --json`` prints for the same config (NaN -> ``None``)."""
        return json_safe({**self.summary, "config": self.config.to_dict()})

    def requests_frame(self):
        """Per-request rows (pandas DataFrame: arrival, first token, finish, tokens, replica, ...);
        needs ``Scenario(keep_requests=True)``, else a ``ConfigError``."""
        from llmsim.workloads.errors import ConfigError

        if not self.scenario.keep_requests or self._sim is None:
            raise ConfigError("per-request records were not kept; simulate Scenario(..., keep_requests=True)")
        return self._sim.requests_frame()

    def iterations_frame(self):
        """Per-iteration rows (pandas DataFrame, one row per engine iteration in the order they
        ended per engine): ``replica`` (engine index), ``start_s``, ``end_s``, ``duration_s`` (s),
        ``prefill_tokens`` (prompt tokens computed), ``decodes`` (requests decoding one token);
        needs ``Scenario(keep_iterations=True)``, else a ``ConfigError``.

        >>> import llmsim
        >>> r = llmsim.simulate(llmsim.Scenario(model="llama-3.1-8b", device="h100", workload="azure-code",
        ...                                     num_requests=20, keep_iterations=True))
        >>> f = r.iterations_frame()
        >>> list(f.columns)
        ['replica', 'start_s', 'end_s', 'duration_s', 'prefill_tokens', 'decodes']
        >>> len(f) == r.summary["iterations"], int(f.prefill_tokens.sum()) == r.summary["prefill_tokens_computed"]
        (True, True)
        """
        import pandas as pd

        from llmsim.workloads.errors import ConfigError

        if self._tracer is None:
            raise ConfigError("iterations were not recorded; simulate Scenario(..., keep_iterations=True)")
        cols = self._tracer.arrays()
        frame = pd.DataFrame(cols)
        frame.insert(3, "duration_s", cols["end_s"] - cols["start_s"])
        return frame


@dataclass(frozen=True, kw_only=True)
class Built:
    """A scenario built as ``simulate run`` builds it, not yet run: its ``config``
    (:class:`llmsim.sim.config.RunConfig`) and ``run`` (:class:`llmsim.sim.runner.Built`: the
    ``deployments``, one per replica, and per virtual engine the ``replicas``
    (:class:`~llmsim.sim.replica.ReplicaConfig`) and ``cost_models``, the request ``trace``)."""

    scenario: Scenario
    config: Any
    run: Any

    @property
    def deployments(self) -> list:
        return self.run.deployments

    @property
    def replicas(self) -> list:
        return self.run.replicas

    @property
    def cost_models(self) -> list:
        return self.run.cost_models

    @property
    def trace(self):
        return self.run.trace


def build(scenario: Scenario) -> Built:
    """Build ``scenario`` through :func:`llmsim.sim.runner.assemble`, the composition root of
    ``simulate run`` (a disaggregated scenario cannot be built apart from its run: ``ConfigError``).
    Raises the errors :func:`simulate` lists."""
    from llmsim.sim.runner import assemble
    from llmsim.workloads.errors import ConfigError

    if not isinstance(scenario, Scenario):
        raise ConfigError(f"build() takes a llmsim.Scenario, got {type(scenario).__name__}")
    cfg = scenario.to_config()
    return Built(scenario=scenario, config=cfg,
                 run=assemble(cfg, trace=scenario.trace_object, kv_blocks=scenario.kv_blocks,
                              kv_capacity_tokens=scenario.kv_capacity_tokens, dp_ep=scenario.dp_ep))


def simulate(scenario: Scenario | Built) -> Result:
    """Run a :class:`Scenario` (or what :func:`build` made of one) as ``simulate run`` runs it
    (:func:`llmsim.sim.runner.run_built`; a disaggregated scenario: :func:`llmsim.sim.runner.run`).

    Raises the project's typed errors: :class:`~llmsim.workloads.errors.ConfigError` (a bad value),
    :class:`~llmsim.workloads.errors.UnknownNameError` (an unknown model, device, workload ...),
    :class:`~llmsim.workloads.errors.PlanError` (an impossible plan; ``needed_devices`` /
    ``available_devices`` where the cluster is too small),
    :class:`~llmsim.workloads.errors.OutOfMemoryError` (the model does not fit; ``required_bytes``,
    ``available_bytes``)."""
    from llmsim.sim.runner import run, run_built
    from llmsim.sim.trace import ChromeTracer
    from llmsim.workloads.errors import ConfigError

    if isinstance(scenario, Built):
        built = scenario
        scenario, cfg = built.scenario, built.config
        tracer = ChromeTracer() if scenario.keep_iterations else None
        out = run_built(built.run, keep_requests=scenario.keep_requests, tracer=tracer)
    elif isinstance(scenario, Scenario):
        cfg = scenario.to_config()
        if cfg.disagg is not None:
            tracer = ChromeTracer() if scenario.keep_iterations else None
            out = run(cfg, keep_requests=scenario.keep_requests, tracer=tracer)
        else:
            return simulate(build(scenario))
    else:
        raise ConfigError(f"simulate() takes a llmsim.Scenario or llmsim.Built, got {type(scenario).__name__}")
    records = getattr(out.result, "records", None) if scenario.keep_requests else None
    return Result(scenario=scenario, config=cfg, metrics=Metrics.from_summary(out.summary, records),
                  summary=MappingProxyType(dict(out.summary)), _sim=out.result, _tracer=tracer)


def explore(space, **kw):
    """The design-space search (:func:`llmsim.search.explore`): a ranked pandas DataFrame."""
    from llmsim.search import explore as _explore

    return _explore(space, **kw)


def size(space, **kw):
    """Capacity sizing (:func:`llmsim.search.size`): the cheapest carrying options, a pandas DataFrame."""
    from llmsim.search import size as _size

    return _size(space, **kw)


def deployment(model: str, device: str, **kw):
    """The cost model of one replica of ``model`` on ``device`` (catalogue names or paths), built by
    the device family's backend (:func:`llmsim.hwmodels.backend.make_deployment`); ``kw``: ``tp``,
    ``pp``, ``ep``, ``quant``, ``kv_dtype``, ``engine`` (default the command line's), ``profile``, ...

    >>> import llmsim
    >>> dep = llmsim.deployment("llama-3.1-8b", "h100", tp=1)
    >>> dep.device.name, dep.tp
    ('h100-sxm', 1)
    """
    from llmsim.hwmodels.backend import make_deployment
    from llmsim.workloads.models import get_model

    return make_deployment(get_model(model) if isinstance(model, str) else model, device, **kw)


@dataclass(frozen=True, kw_only=True)
class IterationBatch:
    """One engine iteration's work: ``prefill_tokens[i]`` new prompt tokens of a request that
    already has ``prefill_cached[i]`` tokens in the KV cache (default 0 each), and one decode token
    for each request with ``decode_context[j]`` tokens in the cache. Lists or arrays of ints."""

    prefill_tokens: Any = ()
    prefill_cached: Any = None
    decode_context: Any = ()


@dataclass(frozen=True)
class IterationPrediction:
    """What one iteration costs: ``time_s`` (s) and ``energy_j`` (J, all the replica's devices) as
    plain floats; ``breakdown``: seconds per operator (all layers; ``engine_overhead`` = host time
    the devices wait for), read-only, empty when not asked for or for an empty batch."""

    time_s: float
    energy_j: float
    breakdown: Mapping[str, float]


_NO_BREAKDOWN: Mapping[str, float] = MappingProxyType({})


def predict_iteration(deployment, batch: IterationBatch | Mapping | None = None, *, prefill_tokens=None,
                      prefill_cached=None, decode_context=None, breakdown: bool = True) -> IterationPrediction:
    """Time and energy of one engine iteration of ``batch`` on ``deployment`` (a cost model from
    :func:`deployment`, or :attr:`Built.deployments`), the call a scheduler makes in its loop. The
    batch is an :class:`IterationBatch`, a mapping of its fields, or its fields as keywords.
    ``breakdown=False`` skips the per-operator seconds (cheaper). Deterministic.

    >>> import llmsim
    >>> dep = llmsim.deployment("llama-3.1-8b", "h100")
    >>> p = llmsim.predict_iteration(dep, decode_context=[1024] * 32)
    >>> type(p.time_s), p.time_s > 0, p.energy_j > 0
    (<class 'float'>, True, True)
    >>> q = llmsim.predict_iteration(dep, llmsim.IterationBatch(prefill_tokens=[512], decode_context=[1024] * 32))
    >>> q.time_s > p.time_s, abs(sum(q.breakdown.values()) - q.time_s) < 1e-12
    (True, True)
    >>> llmsim.predict_iteration(dep, decode_context=[]).time_s
    0.0
    """
    if batch is not None:
        if prefill_tokens is not None or prefill_cached is not None or decode_context is not None:
            _bad("give the batch or its fields as keywords, not both")
        if isinstance(batch, IterationBatch):
            prefill_tokens, prefill_cached, decode_context = (batch.prefill_tokens, batch.prefill_cached,
                                                              batch.decode_context)
        elif isinstance(batch, Mapping):
            unknown = set(batch) - {"prefill_tokens", "prefill_cached", "decode_context"}
            if unknown:
                _bad(f"unknown batch keys {sorted(unknown)}; allowed: prefill_tokens, prefill_cached, decode_context")
            prefill_tokens, prefill_cached, decode_context = (batch.get("prefill_tokens"), batch.get("prefill_cached"),
                                                              batch.get("decode_context"))
        else:
            _bad(f"`batch` must be a llmsim.IterationBatch or a mapping, got {type(batch).__name__}")
    p = _tokens("prefill_tokens", prefill_tokens, 1)
    d = _tokens("decode_context", decode_context, 0)
    if prefill_cached is None:
        c = _zeros(p.size)
    else:
        c = _tokens("prefill_cached", prefill_cached, 0)
        if c.size != p.size:
            _bad(f"`prefill_cached` has {c.size} entries but `prefill_tokens` {p.size}")
    if breakdown and hasattr(deployment, "cost"):
        cost = deployment.cost(p, c, d)
        return IterationPrediction(float(cost.time_s), float(cost.energy_j), MappingProxyType(dict(cost.breakdown)))
    if not hasattr(deployment, "iteration"):
        _bad(f"`deployment` must be a cost model (llmsim.deployment(...)), got {type(deployment).__name__}")
    t, e = deployment.iteration(p, c, d)
    return IterationPrediction(float(t), float(e), _NO_BREAKDOWN)


def _bad(message: str):
    from llmsim.workloads.errors import ConfigError

    raise ConfigError(message)


def _zeros(n: int):
    import numpy as np

    return np.zeros(n, np.int64)


def _tokens(name: str, value, minimum: int):
    """``value`` as a 1-D int64 array, every entry >= ``minimum`` (``ConfigError`` otherwise). Lists,
    tuples and int64 arrays take the fast paths (the call sits in a scheduler's loop)."""
    import numpy as np

    if value is None:
        return np.zeros(0, np.int64)
    kind = type(value)
    if kind is list or kind is tuple:
        if not value:
            return np.zeros(0, np.int64)
        a = np.array(value)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            _bad(f"`{name}` must be a flat list or array of integer token counts, got {value!r}")
        low = min(value)
    else:
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            _bad(f"`{name}` must be a list or array of token counts, got {value!r}")
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            _bad(f"`{name}` must be a flat list or array of integer token counts, got {value!r}")
        low = int(a.min()) if a.size else minimum
    if low < minimum:
        _bad(f"`{name}` entries must be >= {minimum}, got {int(low)}")
    return a if a.dtype == np.int64 else a.astype(np.int64)
