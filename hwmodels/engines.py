"""Serving-engine profiles: what an engine runs beyond the kernels, per version (``data/engines.yaml``).

A profile describes an engine's mechanism, not only fitted constants:

* which steps replay CUDA graphs (``graph_mode``): ``decode`` -- vLLM V0: decode-only batches of at
  most ``graph_max_batch`` sequences replay a graph, every other step launches its kernels from the
  host; ``piecewise`` -- vLLM V1: the non-attention parts of any step of at most the captured token
  count replay graphs and the attention between them is launched per layer (``piece_launch_s``),
  decode-only steps replay one full graph when ``full_decode_graphs``; larger steps run eagerly
  (torch.compile'd kernels, ``layer_launch_s`` per layer);
* which host work overlaps the GPU: with ``async_scheduling`` the host prepares step N+1 while the
  GPU runs step N, so a step takes ``max(gpu, host) + sync_s``; without it ``gpu + host``;
* the host costs of one host (:class:`EngineOverhead`);
* the scheduling defaults of the version (policy, ``max_num_seqs``, ``max_num_batched_tokens``,
  admission rules, prefix caching).

``versions`` lists the defaults that changed inside a profile's range (each entry: ``since`` and the
fields it sets); :func:`get_engine` resolves ``vllm==0.15.1``, ``vllm-0.19`` and the like to the
profile of the nearest version not newer than the one named, with that version's defaults applied.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError, UnknownNameError
from llmsim.workloads.naming import NameIndex

GRAPH_MODES = ("decode", "piecewise")
#: Device memory from which vLLM V1 uses its larger batching defaults (and never on an A100).
#: Source: vLLM vllm/engine/arg_utils.py get_batch_defaults, "device_memory >= 70 * GiB_bytes and
#: 'a100' not in device_name" (since PR #17885, vLLM 0.9).
LARGE_GPU_BYTES = 70 * 2**30


@dataclass(frozen=True, kw_only=True)
class EngineOverhead:
    """CPU time of a serving engine on one host, in seconds.

    ``iteration_s``: per step (scheduling, input preparation, sampling, output processing);
    ``prefill_s``: more of it in a step that runs a prefill, and ``prefill_per_seq_s`` more per
    prompt chunk in it; ``per_seq_s``: per sequence in the batch; ``per_token_s``: per scheduled
    token (input tensors, slot mappings); ``layer_launch_s``: launching one layer's kernels when the
    step is not a replayed graph; ``piece_launch_s``: launching one layer's attention between graph
    pieces (piecewise graphs); ``sync_s``: serial per step even when the host overlaps the GPU
    (waiting for the sampled tokens); ``allreduce_bus_bytes_per_s``: the bus bandwidth the engine's
    NCCL all-reduces reach at most (0: as fast as the kernel data say). ``source`` says where the
    numbers come from; ``fitted_on`` names the measured rows they were fitted on
    (``"<format>:<file>:<subset>"``, empty if not fitted), so validation counts them as ``rows_in_fit``.
    """

    iteration_s: float = 0.0
    prefill_s: float = 0.0
    prefill_per_seq_s: float = 0.0
    per_seq_s: float = 0.0
    per_token_s: float = 0.0
    layer_launch_s: float = 0.0
    piece_launch_s: float = 0.0
    sync_s: float = 0.0
    allreduce_bus_bytes_per_s: float = 0.0
    source: str = "none"
    fitted_on: str = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in ("source", "fitted_on"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"`{f.name}` must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))


@dataclass(frozen=True, kw_only=True)
class EngineProfile:
    """What a serving engine runs beyond the kernels' own time (module docstring).

    ``family``/``since``: the engine and the first version the profile describes (``version``: the
    version it was resolved for, or empty). ``custom_allreduce``: vLLM's one-shot/two-shot
    all-reduce up to 8 MiB on NVLink (else NCCL); ``fused_add_norm``: the residual add fused into
    RMSNorm. Scheduling defaults: ``scheduler`` (a policy of sim/schedulers.py), ``max_num_seqs``,
    ``max_num_batched_tokens`` (and their ``large_gpu_*`` values on devices of at least 70 GiB
    other than the A100, when set), ``watermark`` (fraction of KV blocks kept free at admission),
    ``admit_full_prompt`` (admit a prompt only when KV for all of it fits), ``prefix_caching``.
    ``graph_capture_rule``: ``fixed`` (capture up to ``graph_max_batch`` tokens) or ``twice_seqs``
    (``min(2 x max_num_seqs, graph_max_batch, max_num_batched_tokens)``, vLLM >= 0.11).
    ``hosts`` maps a device name (power caps ignored) or ``default`` to an :class:`EngineOverhead`.
    ``logits``: ``sampled`` (LM head on each sequence's last token, then the sampler: serving) or
    ``all`` (LM head over every token, then the softmax cross-entropy: training).
    """

    name: str
    description: str = ""
    family: str = ""
    since: str = ""
    version: str = ""
    cuda_graphs: bool = True
    graph_mode: str = "decode"
    graph_max_batch: int = 256
    graph_capture_rule: str = "fixed"
    full_decode_graphs: bool = False
    async_scheduling: bool = False
    custom_allreduce: bool = True
    fused_add_norm: bool = True
    scheduler: str = "vllm"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    large_gpu_max_num_seqs: int | None = None
    large_gpu_max_num_batched_tokens: int | None = None
    watermark: float = 0.01
    admit_full_prompt: bool = False
    prefix_caching: bool = False
    logits: str = "sampled"
    mixed_attention_gqa_exponent: Mapping[str, float] = field(default_factory=dict)
    versions: tuple = ()
    sources: tuple = ()
    hosts: Mapping[str, EngineOverhead] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"`name` must be a non-empty string, got {self.name!r}")
        for key in ("cuda_graphs", "custom_allreduce", "fused_add_norm", "full_decode_graphs",
                    "async_scheduling", "admit_full_prompt", "prefix_caching"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"`{key}` must be true or false, got {getattr(self, key)!r}")
        for key in ("graph_max_batch", "max_num_seqs", "max_num_batched_tokens"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "graph_max_batch" else 1):
                raise ConfigError(f"`{key}` must be an int >= {0 if key == 'graph_max_batch' else 1}, got {v!r}")
        for key in ("large_gpu_max_num_seqs", "large_gpu_max_num_batched_tokens"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"`{key}` must be an int >= 1 or null, got {v!r}")
        if self.graph_mode not in GRAPH_MODES:
            raise ConfigError(f"`graph_mode` must be one of {', '.join(GRAPH_MODES)}, got {self.graph_mode!r}")
        if self.logits not in ("sampled", "all"):
            raise ConfigError(f"`logits` must be 'sampled' or 'all', got {self.logits!r}")
        if self.graph_capture_rule not in ("fixed", "twice_seqs"):
            raise ConfigError(f"`graph_capture_rule` must be fixed or twice_seqs, got {self.graph_capture_rule!r}")
        if not (isinstance(self.watermark, (int, float)) and 0.0 <= self.watermark < 0.5):
            raise ConfigError(f"`watermark` must be a number in [0, 0.5), got {self.watermark!r}")
        if self.since:
            parse_version(self.since)
        for k, v in self.mixed_attention_gqa_exponent.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"`mixed_attention_gqa_exponent.{k}` must be a number in [0, 1], got {v!r}")
        for k, v in self.hosts.items():
            if not isinstance(v, EngineOverhead):
                raise ConfigError(f"hosts[{k!r}] must be an EngineOverhead, got {v!r}")

    def mixed_decode_factor(self, arch_class: str, group: float) -> float:
        """How much slower the decode attention of a step that also runs a prompt chunk is than alone
        (0: not modelled): vLLM V1 runs the whole mixed batch in one varlen FlashAttention call whose
        decode rows do not share a KV head's reads among its ``group`` query heads, so their KV
        traffic grows as ``group ** alpha`` (``mixed_attention_gqa_exponent`` per architecture class,
        else its ``default``; alpha 0 = packed, 1 = every query head streams its own KV)."""
        table = self.mixed_attention_gqa_exponent
        alpha = table.get(arch_class, table.get("default"))
        if alpha is None or group <= 1.0:
            return 0.0
        return float(group) ** float(alpha)

    def overhead_for(self, device) -> EngineOverhead:
        """The host overhead for ``device`` (its base name, then ``default``, then none)."""
        base = device.name.split("@", 1)[0]
        if base in self.hosts:
            return self.hosts[base]
        return self.hosts.get("default", EngineOverhead())

    def batching_defaults(self, device) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) this engine defaults to on ``device``."""
        large = device.memory_capacity_bytes >= LARGE_GPU_BYTES and "a100" not in device.name
        seqs = self.large_gpu_max_num_seqs if large and self.large_gpu_max_num_seqs else self.max_num_seqs
        tokens = (self.large_gpu_max_num_batched_tokens if large and self.large_gpu_max_num_batched_tokens
                  else self.max_num_batched_tokens)
        return seqs, tokens

    def graph_max_tokens(self, max_num_seqs: int | None = None, max_num_batched_tokens: int | None = None) -> int:
        """The largest step (tokens; sequences for ``decode`` mode) that replays a graph; -1 without graphs."""
        if not self.cuda_graphs:
            return -1
        cap = self.graph_max_batch
        if self.graph_capture_rule == "twice_seqs" and max_num_seqs is not None:
            cap = min(cap, 2 * int(max_num_seqs))
        if self.graph_mode == "piecewise" and max_num_batched_tokens is not None:
            cap = min(cap, int(max_num_batched_tokens))
        return cap


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.15.1"`` -> ``(0, 15, 1)``; ConfigError for anything else."""
    if not isinstance(text, str) or not re.fullmatch(r"\d+(\.\d+){0,3}", text.strip()):
        raise ConfigError(f"a version must look like 0.15.1, got {text!r}")
    parts = [int(x) for x in text.strip().split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


_ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(EngineProfile) if f.name not in ("name", "version")) \
    + ("aliases",)
_HOST_KEYS = tuple(f.name for f in dataclasses.fields(EngineOverhead))
_VERSION_KEYS = ("since", "note") + tuple(k for k in _ENGINE_KEYS
                                          if k not in ("description", "family", "since", "versions", "sources",
                                                       "hosts", "aliases", "mixed_attention_gqa_exponent"))


def _strict_keys(data, where: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
    return data


def parse_engines(data, where: str) -> dict[str, tuple[EngineProfile, tuple[str, ...]]]:
    """Engine profiles (and their aliases) from the parsed ``engines.yaml`` mapping (strict)."""
    top = _strict_keys(data, where, ("schema_version", "engines"))
    if top.get("schema_version") != 1:
        raise ConfigError(f"{where}: `schema_version` must be 1, got {top.get('schema_version')!r}")
    out = {}
    for name, spec in (top.get("engines") or {}).items():
        at = f"{where}: engines.{name}"
        spec = dict(_strict_keys(spec, at, _ENGINE_KEYS))
        hosts = {}
        for host, h in (spec.pop("hosts", None) or {}).items():
            try:
                hosts[str(host)] = EngineOverhead(**_strict_keys(h, f"{at}.hosts.{host}", _HOST_KEYS))
            except ConfigError as e:
                raise ConfigError(f"{at}.hosts.{host}: {e}") from None
        versions = []
        for i, v in enumerate(spec.pop("versions", None) or ()):
            v = dict(_strict_keys(v, f"{at}.versions[{i}]", _VERSION_KEYS))
            if "since" not in v:
                raise ConfigError(f"{at}.versions[{i}]: needs `since` (the first version with these defaults)")
            try:
                parse_version(str(v["since"]))
            except ConfigError as e:
                raise ConfigError(f"{at}.versions[{i}]: {e}") from None
            versions.append(v)
        versions.sort(key=lambda v: parse_version(str(v["since"])))
        aliases = tuple(spec.pop("aliases", ()) or ())
        spec["sources"] = tuple(spec.get("sources", ()) or ())
        spec["mixed_attention_gqa_exponent"] = dict(spec.get("mixed_attention_gqa_exponent", {}) or {})
        try:
            out[str(name)] = (EngineProfile(name=str(name), hosts=hosts, versions=tuple(versions), **spec), aliases)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{at}: {e}") from None
    return out


def _engine_entries(data, where: str) -> list[tuple[str, EngineProfile, tuple[str, ...]]]:
    return [(name, prof, aliases) for name, (prof, aliases) in parse_engines(data, where).items()]


#: the engine profiles of ``hwmodels/data/engines.yaml``; a path names a file of that schema with one engine
CATALOGUE: Catalogue[EngineProfile] = Catalogue.from_file("engine", "llmsim.hwmodels", "data/engines.yaml",
                                                          _engine_entries)


@lru_cache(maxsize=1)
def _engine_catalogue() -> tuple[dict[str, EngineProfile], NameIndex]:
    CATALOGUE.reload()
    return CATALOGUE.table(), CATALOGUE.index()


def load_engine_file(path: str | Path) -> EngineProfile:
    """The one engine profile of a user's YAML (or JSON) file in the ``engines.yaml`` schema (not catalogued)."""
    return CATALOGUE.load_path(path)


_VERSIONED = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*?)\s*(?:==|@|-|\s)\s*v?(\d+(?:\.\d+){0,3})\s*$")


def at_version(profile: EngineProfile, version: str) -> EngineProfile:
    """``profile`` with the defaults of ``version`` applied (its ``versions`` entries up to it)."""
    want = parse_version(version)
    changes: dict = {}
    for v in profile.versions:
        if parse_version(str(v["since"])) <= want:
            changes.update({k: val for k, val in v.items() if k not in ("since", "note")})
    return dataclasses.replace(profile, version=version.strip(), **changes)


def resolve_version(family: str, version: str) -> EngineProfile:
    """The profile of ``family`` for the nearest version not newer than ``version``."""
    table, _ = _engine_catalogue()
    want = parse_version(version)
    fam = family.lower()
    members = sorted((parse_version(p.since), p) for p in table.values() if p.family == fam and p.since)
    if not members:
        families = sorted({p.family for p in table.values() if p.family})
        raise UnknownNameError("engine family", family, families)
    older = [p for v, p in members if v <= want]
    if not older:
        raise ConfigError(f"no {family} profile describes version {version}: the oldest is "
                          f"{members[0][1].name} (from {members[0][1].since}); name a version >= {members[0][1].since}")
    return at_version(older[-1], version)


#: The engine every entry point runs when none is named (``simulate run``, ``llmsim.Scenario``,
#: the run config): vLLM's V1 engine at its newest listed defaults.
DEFAULT_ENGINE = "vllm"


def get_engine(name: str | EngineProfile) -> EngineProfile:
    """An engine profile by name or alias (``vllm-v1``, ``vllm-0.6``, ``vllm``, ``kernels``) or by
    ``family==version`` (``vllm==0.15.1``, ``vllm-0.19``): the nearest profile not newer, at that
    version's defaults. A name alone gives the profile at its newest listed defaults. A path ending in
    .yaml/.yml/.json is read with :func:`load_engine_file` (at its newest listed defaults, like a name)."""
    if isinstance(name, EngineProfile):
        return name
    if is_path(name):
        prof = load_engine_file(name)
        return at_version(prof, str(prof.versions[-1]["since"])) if prof.versions else prof
    if not isinstance(name, str):
        raise ConfigError(f"engine must be a name or an EngineProfile, got {name!r}")
    table, index = _engine_catalogue()
    if name in index:
        prof = table[index.resolve(name)]
        if prof.versions:
            return at_version(prof, str(prof.versions[-1]["since"]))
        return prof
    m = _VERSIONED.match(name)
    if m is not None and any(p.family == m.group(1).lower() for p in table.values()):
        return resolve_version(m.group(1), m.group(2))
    try:
        return table[index.resolve(name)]
    except UnknownNameError as e:
        if e.suggestions:
            raise
        raise UnknownNameError("engine", name, list(index.names())[:5] + ["vllm==<version>"]) from None


def list_engines() -> tuple[str, ...]:
    return _engine_catalogue()[1].names()
