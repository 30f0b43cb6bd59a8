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

__all__ = ["Built", "Metrics", "Result", "Scenario", "build", "explore", "simulate", "size"]


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
    cluster router (``round-robin``, ``least-outstanding``, ...). ``quant``, ``kv_dtype``: weight and
    KV-cache formats (``--quant``, ``--kv-dtype``; an FPGA engine runs only its own, e.g. ``w2a8kv4``)."""

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
        if not isinstance(self.keep_requests, bool):
            raise ConfigError(f"`keep_requests` must be true or false, got {self.keep_requests!r}")
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
                                                    "profile", "quant", "kv_dtype")
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
        return _json_safe(dataclasses.asdict(self))


def _json_safe(obj):
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _json_safe(obj.item())
    return obj


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

    def to_dict(self) -> dict:
        """The JSON object ``simulate run --json`` prints for the same config (NaN -> ``None``)."""
        return _json_safe({**self.summary, "config": self.config.to_dict()})

    def requests_frame(self):
        """Per-request rows (pandas DataFrame: arrival, first token, finish, tokens, replica, ...);
        needs ``Scenario(keep_requests=True)``, else a ``ConfigError``."""
        from llmsim.workloads.errors import ConfigError

        if not self.scenario.keep_requests or self._sim is None:
            raise ConfigError("per-request records were not kept; simulate Scenario(..., keep_requests=True)")
        return self._sim.requests_frame()


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
    from llmsim.workloads.errors import ConfigError

    if isinstance(scenario, Built):
        built = scenario
        scenario, cfg = built.scenario, built.config
        out = run_built(built.run, keep_requests=scenario.keep_requests)
    elif isinstance(scenario, Scenario):
        cfg = scenario.to_config()
        if cfg.disagg is not None:
            out = run(cfg, keep_requests=scenario.keep_requests)
        else:
            return simulate(build(scenario))
    else:
        raise ConfigError(f"simulate() takes a llmsim.Scenario or llmsim.Built, got {type(scenario).__name__}")
    records = getattr(out.result, "records", None) if scenario.keep_requests else None
    return Result(scenario=scenario, config=cfg, metrics=Metrics.from_summary(out.summary, records),
                  summary=MappingProxyType(dict(out.summary)), _sim=out.result)


def explore(space, **kw):
    """The design-space search (:func:`llmsim.search.explore`): a ranked pandas DataFrame."""
    from llmsim.search import explore as _explore

    return _explore(space, **kw)


def size(space, **kw):
    """Capacity sizing (:func:`llmsim.search.size`): the cheapest carrying options, a pandas DataFrame."""
    from llmsim.search import size as _size

    return _size(space, **kw)
