"""The settings of one ``simulate run``: frozen, validated dataclasses, read from strict YAML.

A run config is a tree of sections; a YAML file gives any subset of it (unknown keys are errors,
with the closest valid key suggested) and command-line flags override single fields (``apply``).
Every section takes only its own values; ``sim/runner.py`` turns the tree into replicas, cost
models and a request source. Example (every key optional)::

    seed: 0
    deployment: {model: llama-2-70b, device: h100, tp: 8, num_devices: 8, quant: bf16,
                 kv_dtype: auto, engine: vllm}
    # or on a cluster (a built-in name or a cluster YAML; see hwmodels/data/clusters/):
    # deployment: {cluster: dgx-h100, num_nodes: 2, tp: 8, pp: 2, placement: nic-aware}
    serving: {scheduler: sarathi, max_batch_size: 256, max_batched_tokens: 2048, block_size: 16,
              gpu_memory_utilization: 0.9, preemption: recompute, swap_space_gib: 4,
              prefix_caching: true}                       # unset: the engine profile's defaults
    workload: {name: azure-conv, num_requests: 1000}      # or trace: file.csv; rate: 2.0 (Poisson QPS)
    # workload: {name: shared-prefix, rate: 4, params: {num_groups: 8, num_prompts_per_group: 16,
    #            system_prompt_len: 2000, question_len: 100, output_len: 200}}
    cluster: {router: round-robin}
    disagg:                                               # P/D disaggregation (optional)
      prefill: {device: h100, tp: 8, replicas: 1}
      decode: {device: a100, tp: 8, replicas: 2}
      link: ib                                            # ib | nvlink | pcie, or link_bandwidth_gb_s
    static_batch: {batch_size: 8, prompt_tokens: 512, output_tokens: 128}   # instead of a workload
    slo: {ttft_s: 1.0, tpot_s: 0.1}
    output: {json: true, out: requests.csv, chrome_trace: trace.json, report: report.html}

With nothing given, the run is the documented default: Llama-2-70B on 8 H100s with TP8 under the
vLLM V1 engine (newest defaults), serving the first 1000 requests of the bundled Azure conversation trace.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llmsim.hwmodels.engines import DEFAULT_ENGINE, EngineProfile
from llmsim.workloads.errors import ConfigError

#: The bare ``simulate run``.
DEFAULT_MODEL = "llama-2-70b"
DEFAULT_DEVICE = "h100"
DEFAULT_TP = 8
DEFAULT_WORKLOAD = "azure-conv"
DEFAULT_NUM_REQUESTS = 1000


def _int(name: str, v: Any, minimum: int = 1, optional: bool = False) -> None:
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {v!r}")


def _num(name: str, v: Any, *, lo: float = 0.0, hi: float = math.inf, strict_lo: bool = False,
         optional: bool = False) -> None:
    if v is None and optional:
        return
    bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
    if bad or v < lo or v > hi or (strict_lo and v == lo):
        rng = f"{'>' if strict_lo else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        raise ConfigError(f"`{name}` must be a finite number {rng}, got {v!r}")


def _str(name: str, v: Any, optional: bool = False, choices: tuple[str, ...] = ()) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {v!r}")
    if choices and v not in choices:
        raise ConfigError(f"`{name}` must be one of {', '.join(choices)}, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class DeploymentSection:
    """What runs where: ``num_devices`` devices in ``num_devices / (tp * pp)`` data-parallel replicas
    (``dp`` may be given instead; default one replica). ``engine``: a serving-engine profile
    (``hwmodels/data/engines.yaml``: ``vllm`` = ``vllm-v1`` at its newest defaults, ``vllm==0.15.1``
    for a version's defaults, ``vllm-0.6``, ``vllm-0.2``, ``kernels``);
    ``profile``: a calibration profile JSON (default: the shipped one).

    ``cluster``: a built-in cluster or a cluster YAML (``num_nodes`` replicates a one-group cluster);
    without one, ``device`` x ``num_devices`` builds the natural cluster of that device (servers of
    its NVLink/xGMI domain). ``device`` defaults to the cluster's device kind (else h100).
    ``placement``: nic-aware (Holmes; TP/DP groups inside NIC-homogeneous servers) or naive
    (Megatron rank order, one job-wide transport); ``layer_split``: layers per pipeline stage."""

    model: str = DEFAULT_MODEL
    device: str | None = None
    cluster: str | None = None
    num_nodes: int | None = None
    placement: str = "nic-aware"
    layer_split: tuple[int, ...] | None = None
    num_devices: int | None = None
    tp: int = DEFAULT_TP
    pp: int = 1
    dp: int | None = None
    ep: int = 1
    quant: str = "bf16"
    kv_dtype: str = "auto"
    engine: str | EngineProfile = DEFAULT_ENGINE
    profile: Any = None

    def __post_init__(self) -> None:
        for k in ("model", "quant", "kv_dtype"):
            _str(k, getattr(self, k))
        if not isinstance(self.engine, EngineProfile):
            _str("engine", self.engine)
        for k in ("device", "cluster"):
            _str(k, getattr(self, k), optional=True)
        if self.profile is None or isinstance(self.profile, str):
            _str("profile", self.profile, optional=True)
        else:
            from llmsim.hwmodels.calibration import Profile

            if not isinstance(self.profile, Profile):
                raise ConfigError(f"`profile` must be a calibration profile path or Profile, got {self.profile!r}")
        _int("num_nodes", self.num_nodes, optional=True)
        _str("placement", self.placement, choices=("nic-aware", "naive"))
        if self.layer_split is not None:
            if not isinstance(self.layer_split, (list, tuple)) or not self.layer_split:
                raise ConfigError(f"`layer_split` must be a list of layer counts, one per stage, got {self.layer_split!r}")
            for v in self.layer_split:
                _int("layer_split entry", v)
            if len(self.layer_split) != self.pp:
                raise ConfigError(f"`layer_split` has {len(self.layer_split)} entries but pp={self.pp}")
            object.__setattr__(self, "layer_split", tuple(self.layer_split))
        for k in ("tp", "pp", "ep"):
            _int(k, getattr(self, k))
        _int("num_devices", self.num_devices, optional=True)
        _int("dp", self.dp, optional=True)
        per = self.tp * self.pp
        if self.num_devices is not None:
            if self.num_devices % per:
                raise ConfigError(f"`num_devices` ({self.num_devices}) must be a multiple of tp x pp = {per}")
            if self.dp is not None and self.dp * per != self.num_devices:
                raise ConfigError(f"`dp` x tp x pp = {self.dp * per} must equal `num_devices` ({self.num_devices})")

    @property
    def replicas(self) -> int:
        if self.dp is not None:
            return self.dp
        if self.num_devices is not None:
            return self.num_devices // (self.tp * self.pp)
        return 1


@dataclass(frozen=True, kw_only=True)
class ServingSection:
    """The engine's knobs on every replica (vLLM's names in brackets); ``None`` takes the engine
    profile's default for its version and device (hwmodels/data/engines.yaml): ``scheduler`` a
    registered policy (vllm, sarathi, static, decode-priority); ``max_batch_size`` [max_num_seqs];
    ``max_batched_tokens`` [max_num_batched_tokens]; ``block_size`` tokens per KV block;
    ``gpu_memory_utilization``; ``watermark`` fraction of blocks kept free at admission;
    ``preemption`` recompute or swap, with ``swap_space_gib`` of host memory per device;
    ``overhead_s`` a fixed time added to every iteration on top of the engine profile's;
    ``prefix_caching`` [enable_prefix_caching] shares KV blocks of equal prompt prefixes between
    requests (None: the engine profile's default, off when the profile does not say)."""

    scheduler: str | None = None
    max_batch_size: int | None = None
    max_batched_tokens: int | None = None
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    watermark: float | None = None
    preemption: str = "recompute"
    swap_space_gib: float = 4.0
    overhead_s: float = 0.0
    prefix_caching: bool | None = None

    def __post_init__(self) -> None:
        from llmsim.sim.schedulers import SCHEDULERS

        _str("scheduler", self.scheduler, optional=True)
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", SCHEDULERS.canonical(self.scheduler))
        for k in ("max_batch_size", "max_batched_tokens"):
            _int(k, getattr(self, k), optional=True)
        _int("block_size", self.block_size)
        _num("gpu_memory_utilization", self.gpu_memory_utilization, lo=0.0, hi=1.0, strict_lo=True)
        _num("watermark", self.watermark, lo=0.0, hi=0.5, optional=True)
        _str("preemption", self.preemption, choices=("recompute", "swap"))
        _num("swap_space_gib", self.swap_space_gib)
        _num("overhead_s", self.overhead_s)
        if self.prefix_caching is not None and not isinstance(self.prefix_caching, bool):
            raise ConfigError(f"`prefix_caching` must be true or false, got {self.prefix_caching!r}")


ARRIVALS = ("poisson", "gamma", "fixed")


@dataclass(frozen=True, kw_only=True)
class WorkloadSection:
    """The requests: a bundled workload ``name`` or a ``trace`` file (canonical CSV, Azure CSV, APEX
    JSONL, Mooncake JSONL, or a length-only CSV, which needs ``rate``). ``rate`` (requests/s)
    replaces the arrivals with a ``arrival`` process (poisson, gamma with ``cv``, fixed; for
    ``multi-turn``, sessions/s); ``num_requests`` keeps the first N (or resamples lengths up to N
    when the source is shorter and a ``rate`` is given). ``params``: the settings of a generated
    workload (``shared-prefix``: num_groups, num_prompts_per_group, system_prompt_len, question_len,
    output_len; ``multi-turn``: num_sessions, turns, system_prompt_len, user_tokens, output_len,
    think_time_s). ``block_tokens``: tokens per ``hash_ids`` id of a canonical CSV ``trace`` without a
    ``# block_tokens=N`` line."""

    name: str | None = None
    trace: str | None = None
    rate: float | None = None
    arrival: str = "poisson"
    cv: float = 1.0
    num_requests: int | None = None
    params: dict | None = None
    block_tokens: int | None = None

    def __post_init__(self) -> None:
        _str("name", self.name, optional=True)
        _str("trace", self.trace, optional=True)
        if self.name is not None and self.trace is not None:
            raise ConfigError(f"give a workload `name` or a `trace` file, not both (got {self.name!r} and {self.trace!r})")
        _num("rate", self.rate, strict_lo=True, optional=True)
        _str("arrival", self.arrival, choices=ARRIVALS)
        _num("cv", self.cv, strict_lo=True)
        _int("num_requests", self.num_requests, optional=True)
        _int("block_tokens", self.block_tokens, optional=True)
        if self.params is not None:
            if not isinstance(self.params, dict):
                raise ConfigError(f"`params` must be a mapping of workload settings, got {self.params!r}")
            if self.trace is not None:
                raise ConfigError("`params` set a generated workload (shared-prefix, multi-turn), not a `trace` file")


@dataclass(frozen=True, kw_only=True)
class ClusterSection:
    """``router``: round-robin, least-outstanding, least-kv or power-of-two (across DP replicas)."""

    router: str = "round-robin"

    def __post_init__(self) -> None:
        from llmsim.sim.cluster import ROUTERS

        _str("router", self.router)
        object.__setattr__(self, "router", ROUTERS.canonical(self.router))


@dataclass(frozen=True, kw_only=True)
class PoolSection:
    """One pool of a disaggregated cluster: ``replicas`` replicas of ``tp x pp`` ``device``s (the
    deployment's model and formats; ``engine`` defaults to the deployment's)."""

    device: str | None = None
    tp: int | None = None
    pp: int = 1
    replicas: int = 1
    engine: str | None = None

    def __post_init__(self) -> None:
        _str("device", self.device, optional=True)
        _int("tp", self.tp, optional=True)
        _int("pp", self.pp)
        _int("replicas", self.replicas)
        _str("engine", self.engine, optional=True)


LINKS = ("ib", "nvlink", "pcie")


@dataclass(frozen=True, kw_only=True)
class DisaggSection:
    """P/D disaggregation: a ``prefill`` and a ``decode`` pool and the ``link`` carrying the KV
    cache between them: ``ib`` (one 400 Gb/s NIC per device, as on a DGX H100), ``nvlink`` (both
    pools in one NVLink domain), ``pcie`` (the host link), or ``link_bandwidth_gb_s`` per device
    (GB/s, decimal). ``latency_s`` is added once per transfer."""

    prefill: PoolSection = field(default_factory=PoolSection)
    decode: PoolSection = field(default_factory=PoolSection)
    link: str = "ib"
    link_bandwidth_gb_s: float | None = None
    latency_s: float = 1e-5
    prefill_router: str = "least-outstanding"
    decode_router: str = "least-kv"

    def __post_init__(self) -> None:
        from llmsim.sim.cluster import ROUTERS

        if not isinstance(self.prefill, PoolSection) or not isinstance(self.decode, PoolSection):
            raise ConfigError("`prefill` and `decode` must be pool sections")
        _str("link", self.link, choices=LINKS)
        _num("link_bandwidth_gb_s", self.link_bandwidth_gb_s, strict_lo=True, optional=True)
        _num("latency_s", self.latency_s)
        for k in ("prefill_router", "decode_router"):
            _str(k, getattr(self, k))
            object.__setattr__(self, k, ROUTERS.canonical(getattr(self, k)))


@dataclass(frozen=True, kw_only=True)
class StaticBatchSection:
    """One fixed batch: ``batch_size`` requests of ``prompt_tokens`` arriving together and each
    generating ``output_tokens``; reports prefill time, per-token time and end-to-end time."""

    batch_size: int
    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        for k in ("batch_size", "prompt_tokens", "output_tokens"):
            _int(k, getattr(self, k))


@dataclass(frozen=True, kw_only=True)
class SLOSection:
    ttft_s: float | None = None
    tpot_s: float | None = None

    def __post_init__(self) -> None:
        _num("ttft_s", self.ttft_s, strict_lo=True, optional=True)
        _num("tpot_s", self.tpot_s, strict_lo=True, optional=True)


@dataclass(frozen=True, kw_only=True)
class OutputSection:
    """``json``: print one JSON object (else a table); ``out``: per-request CSV or Parquet;
    ``chrome_trace``: Perfetto trace of iterations; ``report``: self-contained plotly HTML."""

    json: bool = False
    out: str | None = None
    chrome_trace: str | None = None
    report: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.json, bool):
            raise ConfigError(f"`json` must be true or false, got {self.json!r}")
        for k in ("out", "chrome_trace", "report"):
            _str(k, getattr(self, k), optional=True)
        if self.out is not None and Path(self.out).suffix not in (".csv", ".parquet", ".pq"):
            raise ConfigError(f"`out` must end in .csv or .parquet, got {self.out!r}")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole run. ``static_batch`` set: one fixed batch instead of ``workload``; ``disagg`` set:
    prefill and decode pools instead of ``deployment.dp`` identical replicas."""

    seed: int = 0
    deployment: DeploymentSection = field(default_factory=DeploymentSection)
    serving: ServingSection = field(default_factory=ServingSection)
    workload: WorkloadSection = field(default_factory=WorkloadSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    disagg: DisaggSection | None = None
    static_batch: StaticBatchSection | None = None
    slo: SLOSection = field(default_factory=SLOSection)
    output: OutputSection = field(default_factory=OutputSection)

    def __post_init__(self) -> None:
        _int("seed", self.seed, minimum=0)
        if self.static_batch is not None and self.disagg is not None:
            raise ConfigError("`static_batch` runs one batch on one replica; drop `disagg` to use it")

    def to_dict(self) -> dict:
        """The tree as plain data; an engine or profile given as an object appears by its name."""
        d = self.deployment
        if isinstance(d.engine, str) and (d.profile is None or isinstance(d.profile, str)):
            return dataclasses.asdict(self)
        plain = dataclasses.replace(d, engine=d.engine if isinstance(d.engine, str) else d.engine.name,
                                    profile=d.profile if d.profile is None or isinstance(d.profile, str)
                                    else (d.profile.path or "profile"))
        return dataclasses.asdict(dataclasses.replace(self, deployment=plain))


_SECTIONS: dict[str, type] = {
    "deployment": DeploymentSection, "serving": ServingSection, "workload": WorkloadSection,
    "cluster": ClusterSection, "disagg": DisaggSection, "static_batch": StaticBatchSection,
    "slo": SLOSection, "output": OutputSection, "prefill": PoolSection, "decode": PoolSection,
}


def _build(cls: type, data: Any, where: str):
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} ({data!r})")
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(names)}")
        sub = _SECTIONS.get(key) if cls in (RunConfig, DisaggSection) else None
        if sub is not None and (value is not None or key not in ("disagg", "static_batch")):
            value = _build(sub, value, f"{where}.{key}" if where else key)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def config_from_dict(data: dict, where: str = "") -> RunConfig:
    """A :class:`RunConfig` from a nested mapping (unknown keys and bad values are ConfigErrors)."""
    return _build(RunConfig, data, where)


def load_yaml(path: str | Path) -> dict:
    """The nested mapping of a YAML run config (duplicate keys are errors; an empty file, or one of
    comments only, is an error: it would silently run the default scenario)."""
    from llmsim.workloads.yamlio import read_yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror or e}") from None
    data = read_yaml(text, str(p))
    if data is None:
        raise ConfigError(f"{p}: the config file is empty; give at least one section (e.g. `deployment: "
                          "{model: llama-3.1-8b}`) or run without a file for the default scenario")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a run config must be a YAML mapping, got {type(data).__name__}")
    return data


def apply(data: dict, overrides: dict[str, Any]) -> dict:
    """``data`` with dotted keys (``"deployment.tp"``) set from ``overrides`` (``None`` values skipped)."""
    out = _deep_copy(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = {}
                node[part] = nxt
            elif not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deep_copy(d):
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d
