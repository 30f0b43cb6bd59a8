"""The design space of a serving search: typed, frozen, every dimension pinned or free.

A :class:`SearchSpace` lists the allowed values of each dimension; :meth:`SearchSpace.candidates`
enumerates the :class:`Candidate` deployments (one device kind, ``tp x pp`` devices per replica,
``dp`` replicas, a weight and KV format, batching knobs). A dimension given one value is pinned;
left out it is free and takes its default domain (tp, pp: powers of two up to ``num_devices``;
quant: the formats of ``quant_formats.yaml`` the device can compute; the batching knobs: the engine's
default). ``max_num_batched_tokens`` is also the chunk size of chunked prefill (vLLM's and Sarathi's
token budget per iteration). YAML form (every key optional but ``model``)::

    model: llama-3.1-70b
    devices: [h100, a100-80gb]
    num_devices: [8]            # devices per deployment (dp = num_devices / (tp x pp))
    tp: [1, 2, 4, 8]            # or "free"
    pp: [1, 2]
    quant: [bf16, fp8, w4a16]
    kv_dtype: [auto]
    scheduler: [vllm, sarathi]
    max_num_seqs: [128, 256]
    max_num_batched_tokens: [2048, 8192]
    decode_devices: [a100-80gb] # also P/D-disaggregated candidates (Splitwise): prompts on `devices`,
                                # tokens on these; not given: none
    prefill_replicas: [1, 2]    # prompt replicas of a disaggregated candidate (free: every split)

A disaggregated candidate splits its ``num_devices / (tp x pp)`` replicas into a prefill pool of
``dp`` replicas on ``device`` and a decode pool of ``decode_replicas`` on ``decode_device`` (same
``tp x pp``, format and batching knobs; the KV cache crosses InfiniBand, ``disagg.link: ib``).
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from llmsim.workloads.errors import ConfigError

__all__ = ["Candidate", "SearchSpace", "FREE", "load_space"]

#: The word that leaves a dimension free (its default domain).
FREE = "free"

_INT_DIMS = ("num_devices", "tp", "pp", "ep", "max_num_seqs", "max_num_batched_tokens", "prefill_replicas")
_STR_DIMS = ("devices", "quant", "kv_dtype", "scheduler", "decode_devices")
_DISAGG_FIELDS = ("decode_device", "decode_replicas")


@dataclass(frozen=True, order=True)
class Candidate:
    """One deployment to evaluate: ``dp`` replicas of ``tp x pp`` ``device``s serving the model in
    weight format ``quant`` and KV format ``kv_dtype``; ``scheduler``, ``max_num_seqs``,
    ``max_num_batched_tokens`` (tokens per iteration = the prefill chunk) are the engine's batching
    knobs (``None``: the engine's default). ``decode_device`` set: P/D-disaggregated, the ``dp``
    replicas are the prefill pool and ``decode_replicas`` replicas on ``decode_device`` the decode pool."""

    device: str
    tp: int
    pp: int
    dp: int
    quant: str
    kv_dtype: str = "auto"
    ep: int = 1
    scheduler: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    decode_device: str | None = None
    decode_replicas: int = 0

    @property
    def disaggregated(self) -> bool:
        return self.decode_device is not None

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * (self.dp + self.decode_replicas)

    def to_dict(self) -> dict:
        """The fields (a colocated candidate's without the disaggregation ones: keys stay as before)."""
        d = asdict(self)
        if not self.disaggregated:
            for k in _DISAGG_FIELDS:
                d.pop(k)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        names = [f.name for f in fields(cls)]
        bad = [k for k in data if k not in names]
        if bad:
            close = difflib.get_close_matches(str(bad[0]), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"candidate: unknown key {bad[0]!r}{hint}; allowed keys: {', '.join(names)}")
        return cls(**data)

    def key(self) -> str:
        """A stable text key (sorted JSON of the fields)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]

    def label(self, dp: bool = True) -> str:
        """Short human label, e.g. ``h100-sxm tp4 pp1 dp2 fp8 vllm/256/8192`` (``dp=False``: one replica's)."""
        b = "/".join("-" if v is None else str(v) for v in (self.scheduler, self.max_num_seqs,
                                                             self.max_num_batched_tokens))
        kv = "" if self.kv_dtype == "auto" else f" kv:{self.kv_dtype}"
        ep = "" if self.ep == 1 else f" ep{self.ep}"
        d = f" dp{self.dp}" if dp else ""
        if self.disaggregated:
            return (f"P:{self.device} tp{self.tp} pp{self.pp} dp{self.dp} D:{self.decode_device} "
                    f"dp{self.decode_replicas}{ep} {self.quant}{kv} {b}")
        return f"{self.device} tp{self.tp} pp{self.pp}{d}{ep} {self.quant}{kv} {b}"

    def with_dp(self, dp: int) -> Candidate:
        from dataclasses import replace

        return replace(self, dp=int(dp))


def _values(key: str, value: Any) -> tuple | None:
    """A dimension's values as a tuple, or None when free."""
    if value is None or value == FREE or value == [FREE]:
        return None
    if isinstance(value, str) and "," in value:
        value = [v.strip() for v in value.split(",") if v.strip()]
    vals = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not vals:
        raise ConfigError(f"search space: `{key}` is empty; give at least one value or '{FREE}'")
    if key in _INT_DIMS:
        out = []
        for v in vals:
            if isinstance(v, str) and v.strip().isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"search space: `{key}` values must be integers >= 1, got {v!r}")
            out.append(v)
        return tuple(dict.fromkeys(out))
    out = []
    for v in vals:
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"search space: `{key}` values must be names, got {v!r}")
        out.append(v.strip())
    return tuple(dict.fromkeys(out))


def _pow2_upto(n: int) -> tuple[int, ...]:
    out, k = [], 1
    while k <= n:
        out.append(k)
        k *= 2
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The allowed values of each dimension; ``None`` = free (see the module docstring)."""

    model: str
    devices: tuple[str, ...] = ("h100",)
    num_devices: tuple[int, ...] = (8,)
    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = (1,)
    ep: tuple[int, ...] = (1,)
    quant: tuple[str, ...] | None = ("bf16",)
    kv_dtype: tuple[str, ...] = ("auto",)
    scheduler: tuple[str, ...] | None = None
    max_num_seqs: tuple[int, ...] | None = None
    max_num_batched_tokens: tuple[int, ...] | None = None
    decode_devices: tuple[str, ...] | None = None
    prefill_replicas: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        from llmsim.hwmodels.devices import get_device
        from llmsim.sim.schedulers import SCHEDULERS
        from llmsim.workloads.models import get_model
        from llmsim.workloads.quant import get_kv_format, get_quant_format

        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("search space: `model` must name a model (simulate models)")
        get_model(self.model)
        for f in fields(self):
            if f.name == "model":
                continue
            v = getattr(self, f.name)
            if v is not None:
                object.__setattr__(self, f.name, _values(f.name, v))
        for name in ("devices", "num_devices", "ep", "kv_dtype"):
            if getattr(self, name) is None:
                raise ConfigError(f"search space: `{name}` cannot be free; give its values")
        object.__setattr__(self, "devices", tuple(dict.fromkeys(get_device(d).name for d in self.devices)))
        if self.decode_devices is not None:
            object.__setattr__(self, "decode_devices",
                               tuple(dict.fromkeys(get_device(d).name for d in self.decode_devices)))
        elif self.prefill_replicas is not None:
            raise ConfigError("search space: `prefill_replicas` applies to disaggregated candidates; give "
                              "`decode_devices` too")
        if self.quant is not None:
            object.__setattr__(self, "quant", tuple(dict.fromkeys(get_quant_format(q).name for q in self.quant)))
        for k in self.kv_dtype:
            if k != "auto":
                get_kv_format(k)
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", tuple(dict.fromkeys(SCHEDULERS.canonical(s)
                                                                       for s in self.scheduler)))

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        """A space from a mapping (YAML); an unknown key is a ConfigError naming the allowed ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"search space: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"search space: unknown key {key!r}{hint}; allowed keys: {', '.join(names)}")
        if "model" not in data:
            raise ConfigError("search space: `model` is required")
        kw = {k: (None if v == FREE else v) for k, v in data.items()}
        return cls(**kw)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v, tuple) else (FREE if v is None else v))
                for f in fields(self) for v in (getattr(self, f.name),)}

    def _quant_domain(self, device, *more) -> tuple[str, ...]:
        from llmsim.workloads.quant import get_quant_format, list_quant_formats

        names = self.quant if self.quant is not None else list_quant_formats()
        if self.quant is not None:
            return names
        return tuple(q for q in names if all(d.supports(get_quant_format(q).compute_dtype) for d in (device, *more)))

    def candidates(self) -> list[Candidate]:
        """Every combination, in a fixed order (devices, counts, tp, pp, formats, batching)."""
        from llmsim.hwmodels.devices import get_device

        out: list[Candidate] = []
        for dev_name in self.devices:
            dev = get_device(dev_name)
            for n in self.num_devices:
                tps = self.tp if self.tp is not None else _pow2_upto(n)
                pps = self.pp if self.pp is not None else _pow2_upto(n)
                for tp in tps:
                    for pp in pps:
                        if n % (tp * pp):
                            continue
                        for ep in self.ep:
                            for q in self._quant_domain(dev):
                                for kv in self.kv_dtype:
                                    for s in self.scheduler or (None,):
                                        for seqs in self.max_num_seqs or (None,):
                                            for tok in self.max_num_batched_tokens or (None,):
                                                out.append(Candidate(dev.name, tp, pp, n // (tp * pp), q, kv, ep,
                                                                     s, seqs, tok))
        return out + self._disaggregated()

    def _disaggregated(self) -> list[Candidate]:
        """The P/D-disaggregated candidates (after the colocated ones, in the same nesting order)."""
        from llmsim.hwmodels.devices import get_device

        out: list[Candidate] = []
        for dev_name in self.devices:
            dev = get_device(dev_name)
            for dec_name in self.decode_devices or ():
                dec = get_device(dec_name)
                for n in self.num_devices:
                    tps = self.tp if self.tp is not None else _pow2_upto(n)
                    pps = self.pp if self.pp is not None else _pow2_upto(n)
                    for tp in tps:
                        for pp in pps:
                            r = n // (tp * pp)
                            if n % (tp * pp) or r < 2:
                                continue
                            for p in self.prefill_replicas or range(1, r):
                                if p >= r:
                                    continue
                                for ep in self.ep:
                                    for q in self._quant_domain(dev, dec):
                                        for kv in self.kv_dtype:
                                            for s in self.scheduler or (None,):
                                                for seqs in self.max_num_seqs or (None,):
                                                    for tok in self.max_num_batched_tokens or (None,):
                                                        out.append(Candidate(dev.name, tp, pp, p, q, kv, ep, s, seqs,
                                                                             tok, dec.name, r - p))
        return out

    @property
    def size(self) -> int:
        return len(self.candidates())


def load_space(source: str | Path | dict | SearchSpace | None = None, **flags) -> SearchSpace:
    """A space from a YAML file (or mapping, or space) with ``flags`` (non-None) overriding its keys."""
    if isinstance(source, SearchSpace):
        data = source.to_dict()
    elif isinstance(source, dict):
        data = dict(source)
    elif source is None:
        data = {}
    else:
        from llmsim.workloads.yamlio import read_yaml

        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"search space file {str(path)!r} not found")
        data = read_yaml(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a search space must be a mapping of dimensions")
    data.update({k: v for k, v in flags.items() if v is not None})
    return SearchSpace.from_dict(data)
