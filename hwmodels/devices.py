"""Device catalogue: frozen, validated accelerator specs loaded lazily from YAML data files.

Units are SI everywhere and named in the fields: bytes, bytes/s, FLOP/s, W, s. Compute peaks are
dense (no 2:4 sparsity) whole-device totals. Link bandwidths are per direction.

Reading guide: ``DeviceSpec`` (the shape every family shares), ``get_device`` (loose names and
power caps), ``hwmodels/data/devices/README.md`` (the YAML schema and where each number comes from).
"""
from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError, MissingDataError, UnknownNameError
from llmsim.workloads.naming import NameIndex, normalise
from llmsim.workloads.yamlio import check_fields

__all__ = [
    "DTYPES", "FP16_ACCUMULATE_DTYPES", "ACCUMULATE", "FAMILIES", "MEMORY_ROLES", "LINK_KINDS", "LINK_SCOPES",
    "SPLITWISE_CAP_FRACTION", "SPLITWISE_PROMPT_SLOWDOWN", "CAP_CLOCK_EXPONENT",
    "MemoryTier", "ComputeUnit", "Link", "PowerSpec", "DeviceSpec",
    "get_device", "list_devices", "with_power_cap", "load_device_file", "power_cap_clock_scale",
    "families", "register_family", "register_device", "unregister_device",
]

#: Numeric formats a compute peak may be given for, widest first.
DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
#: Dtypes whose tensor-core products can accumulate in FP16 (BF16 always accumulates in FP32).
FP16_ACCUMULATE_DTYPES: tuple[str, ...] = ("fp16", "fp8")
#: Accumulator formats ``DeviceSpec.peak_flops`` accepts.
ACCUMULATE: tuple[str, ...] = ("fp32", "fp16")
FAMILIES: tuple[str, ...] = ("gpu", "fpga", "rdu", "accelerator")
#: 'on_chip' = L2/SRAM/BRAM; 'main' = HBM/GDDR (weights and KV); 'host'/'ddr' = a slower tier.
MEMORY_ROLES: tuple[str, ...] = ("on_chip", "main", "host", "ddr")
_ROLE_RANK = {"on_chip": 0, "main": 1, "host": 2, "ddr": 2}
LINK_KINDS: tuple[str, ...] = ("nvlink", "xgmi", "pcie", "roce", "ib", "ethernet", "cxl", "p2p")
#: 'scale_up' = the all-to-all domain inside a node/board; 'pair' = a bridge between two cards;
#: 'scale_out' = NICs between nodes; 'host' = the link to the host CPU and its memory.
LINK_SCOPES: tuple[str, ...] = ("scale_up", "pair", "scale_out", "host")
_DEFAULT_SCOPE = {"nvlink": "scale_up", "xgmi": "scale_up", "p2p": "scale_up", "pcie": "host",
                  "cxl": "host", "roce": "scale_out", "ib": "scale_out", "ethernet": "scale_out"}

# Power capping. Splitwise (Patel et al., ISCA 2024) [P]: an H100 capped to 70% of TDP keeps its
# per-token (decode, bandwidth-bound) latency and runs prompts (compute-bound) ~1.3x slower.
# We model a cap as a compute-clock scale s(f) = f ** CAP_CLOCK_EXPONENT with memory bandwidth kept.
# [U] The power-law shape is an assumption; only its two anchors are measured: s(1) = 1 and
# s(0.7) = 1/1.3 (the exponent is fitted to make that hold). Caps far below 0.7 are extrapolation.
SPLITWISE_CAP_FRACTION = 0.7
SPLITWISE_PROMPT_SLOWDOWN = 1.3
CAP_CLOCK_EXPONENT = math.log(SPLITWISE_PROMPT_SLOWDOWN) / math.log(1.0 / SPLITWISE_CAP_FRACTION)


def power_cap_clock_scale(fraction: float) -> float:
    """Compute-clock scale (dimensionless, <= 1) of a device capped at ``fraction`` of its TDP."""
    return _check_fraction(fraction) ** CAP_CLOCK_EXPONENT


# --------------------------------------------------------------------------- validation helpers

def _check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"`{name}` must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"`{name}` must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be an integer, got {value!r}")
    if value < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise ConfigError(f"`{name}` must be {bound}, got {value!r}")
    return value


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"`{name}` must be a list of strings, got {value!r}")
    items = tuple(value)
    for item in items:
        _check_text(name, item)
    return items


def _check_fraction(fraction: Any) -> float:
    f = _check_number("fraction", fraction)
    if f > 1.0:
        raise ConfigError(f"`fraction` must be in (0, 1] (a cap at or below TDP), got {fraction!r}")
    return f


def _check_dtype(dtype: str) -> str:
    key = str(dtype).strip().lower()
    if key not in DTYPES:
        raise UnknownNameError("dtype", str(dtype), difflib.get_close_matches(key, DTYPES, n=3, cutoff=0.4))
    return key


class _FrozenMap(Mapping):
    """A read-only, hashable mapping (so specs can be cache keys)."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, float]):
        self._data = dict(items)

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


_EXTRA_FAMILIES: list[str] = []


def families() -> tuple[str, ...]:
    """Device families a DeviceSpec may name: the built-in ``FAMILIES`` and any registered since."""
    return FAMILIES + tuple(_EXTRA_FAMILIES)


def register_family(name: str) -> None:
    """Allow ``name`` as a ``DeviceSpec.family`` (hwmodels.backend.register_backend calls this)."""
    _check_text("family", name)
    if name not in families():
        _EXTRA_FAMILIES.append(name)


# --------------------------------------------------------------------------- specs

@dataclass(frozen=True, kw_only=True)
class MemoryTier:
    """One memory level. ``bandwidth_bytes_per_s`` may be None only for an on-chip tier whose
    bandwidth is not published (a cost model that needs it raises MissingDataError)."""

    name: str
    role: str
    capacity_bytes: int
    bandwidth_bytes_per_s: float | None
    source: str

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        _check_choice("role", self.role, MEMORY_ROLES)
        object.__setattr__(self, "capacity_bytes", _check_int("capacity_bytes", self.capacity_bytes))
        if self.bandwidth_bytes_per_s is None:
            if self.role != "on_chip":
                raise ConfigError(f"`bandwidth_bytes_per_s` is required for a {self.role!r} tier, got None")
        else:
            object.__setattr__(self, "bandwidth_bytes_per_s",
                               _check_number("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s))
        _check_text("source", self.source)


@dataclass(frozen=True, kw_only=True)
class ComputeUnit:
    """An array of identical units (GPU SMs' tensor cores, CUs, FPGA DSPs, RDU PCUs).

    ``peak_flops_per_s`` maps dtype -> dense whole-device peak (FLOP/s or OP/s) of all ``count``
    units together at the nominal clock, accumulating in FP32 (INT32 for integers): the mode
    PyTorch and vLLM GEMMs and attention run in. ``fp16_accumulate_peak_flops_per_s`` (optional)
    lists the higher peaks of dtypes whose tensor cores run faster when accumulating in FP16
    (GeForce parts: RTX 4090 FP16 330 vs 165 TFLOP/s, FP8 661 vs 330); a dtype absent from it
    runs at the same rate either way. ``clock_hz`` is optional: an FPGA's kernel clock, a GPU's SM clock
    under its datasheet peaks (sibling transfer scales per-SM-cycle work by it: ``DeviceSpec.sm_cycles_per_s``).
    """

    name: str
    count: int
    peak_flops_per_s: Mapping[str, float]
    source: str
    clock_hz: float | None = None
    fp16_accumulate_peak_flops_per_s: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        object.__setattr__(self, "count", _check_int("count", self.count))
        if not isinstance(self.peak_flops_per_s, Mapping) or not self.peak_flops_per_s:
            raise ConfigError(f"`peak_flops_per_s` must be a non-empty mapping dtype -> FLOP/s, "
                              f"got {self.peak_flops_per_s!r}")
        peaks: dict[str, float] = {}
        for dtype, value in self.peak_flops_per_s.items():
            if dtype not in DTYPES:
                raise ConfigError(f"`peak_flops_per_s` key must be one of {', '.join(DTYPES)}, got {dtype!r}")
            peaks[dtype] = _check_number(f"peak_flops_per_s.{dtype}", value)
        object.__setattr__(self, "peak_flops_per_s", _FrozenMap({d: peaks[d] for d in DTYPES if d in peaks}))
        fast = self.fp16_accumulate_peak_flops_per_s
        if fast is not None:
            if not isinstance(fast, Mapping):
                raise ConfigError(f"`fp16_accumulate_peak_flops_per_s` must be a mapping dtype -> FLOP/s, got {fast!r}")
            checked: dict[str, float] = {}
            for dtype, value in fast.items():
                if dtype not in FP16_ACCUMULATE_DTYPES:
                    raise ConfigError(f"`fp16_accumulate_peak_flops_per_s` key must be one of "
                                      f"{', '.join(FP16_ACCUMULATE_DTYPES)}, got {dtype!r}")
                if dtype not in peaks:
                    raise ConfigError(f"`fp16_accumulate_peak_flops_per_s.{dtype}` needs a "
                                      f"`peak_flops_per_s.{dtype}` (the FP32-accumulate peak), got none")
                v = _check_number(f"fp16_accumulate_peak_flops_per_s.{dtype}", value)
                if v < peaks[dtype]:
                    raise ConfigError(f"`fp16_accumulate_peak_flops_per_s.{dtype}` must be >= the FP32-accumulate "
                                      f"peak {peaks[dtype]:g}, got {value!r}")
                checked[dtype] = v
            object.__setattr__(self, "fp16_accumulate_peak_flops_per_s",
                               _FrozenMap({d: checked[d] for d in DTYPES if d in checked}))
        if self.clock_hz is not None:
            object.__setattr__(self, "clock_hz", _check_number("clock_hz", self.clock_hz))
        _check_text("source", self.source)


@dataclass(frozen=True, kw_only=True)
class Link:
    """A device port. ``bandwidth_bytes_per_s`` is per direction; ``domain_size`` is how many
    devices it joins all-to-all (8 for an HGX NVSwitch board, 2 for a bridge, None if switched/unknown)."""

    name: str
    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float
    source: str
    scope: str | None = None
    domain_size: int | None = None

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        _check_choice("kind", self.kind, LINK_KINDS)
        object.__setattr__(self, "bandwidth_bytes_per_s",
                           _check_number("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s))
        object.__setattr__(self, "latency_s", _check_number("latency_s", self.latency_s, strict=False))
        if self.scope is None:
            object.__setattr__(self, "scope", _DEFAULT_SCOPE[self.kind])
        _check_choice("scope", self.scope, LINK_SCOPES)
        if self.domain_size is not None:
            object.__setattr__(self, "domain_size", _check_int("domain_size", self.domain_size, minimum=2))
        _check_text("source", self.source)


@dataclass(frozen=True, kw_only=True)
class PowerSpec:
    """Board power in W. ``tdp_w`` is the power limit the device runs under (the cap, if capped)."""

    idle_w: float
    tdp_w: float
    source: str
    power_cap_w: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "idle_w", _check_number("idle_w", self.idle_w, strict=False))
        object.__setattr__(self, "tdp_w", _check_number("tdp_w", self.tdp_w))
        if self.idle_w >= self.tdp_w:
            raise ConfigError(f"`idle_w` must be < tdp_w ({self.tdp_w:g}), got {self.idle_w!r}")
        if self.power_cap_w is not None:
            cap = _check_number("power_cap_w", self.power_cap_w)
            if cap > self.tdp_w:
                raise ConfigError(f"`power_cap_w` must be <= tdp_w ({self.tdp_w:g}), got {cap!r}")
            object.__setattr__(self, "power_cap_w", cap)
        _check_text("source", self.source)


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    """One accelerator. ``memory`` is ordered fastest first (on-chip, main, then host/ddr).

    ``num_sms`` is the parallel-unit count used for wave quantisation (SMs, CUs, TPCs, PCUs).
    ``compute_clock_scale`` (<= 1) scales every compute peak, e.g. for a power-capped variant.
    """

    name: str
    vendor: str
    family: str
    arch_class: str
    compute: tuple[ComputeUnit, ...]
    memory: tuple[MemoryTier, ...]
    links: tuple[Link, ...]
    power: PowerSpec
    num_sms: int
    num_sms_source: str
    compute_clock_scale: float = 1.0
    aliases: tuple[str, ...] = ()
    profiler_names: tuple[str, ...] = ()
    description: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        _check_text("vendor", self.vendor)
        _check_choice("family", self.family, families())
        if not isinstance(self.arch_class, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", self.arch_class):
            raise ConfigError(f"`arch_class` must be a lower-case identifier (e.g. 'hopper'), got {self.arch_class!r}")
        for attr, kind in (("compute", ComputeUnit), ("memory", MemoryTier), ("links", Link)):
            items = tuple(getattr(self, attr))
            if any(not isinstance(item, kind) for item in items):
                raise ConfigError(f"`{attr}` must hold {kind.__name__} objects, got {items!r}")
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ConfigError(f"`{attr}` names must be unique, got {names}")
            object.__setattr__(self, attr, items)
        if not self.compute:
            raise ConfigError("`compute` must list at least one compute unit, got none")
        mains = [t.name for t in self.memory if t.role == "main"]
        if len(mains) != 1:
            raise ConfigError(f"`memory` must have exactly one 'main' tier, got {len(mains)} ({mains})")
        for slower, faster in zip(self.memory[1:], self.memory[:-1]):
            if _ROLE_RANK[slower.role] < _ROLE_RANK[faster.role] or (
                    slower.bandwidth_bytes_per_s is not None and faster.bandwidth_bytes_per_s is not None
                    and slower.bandwidth_bytes_per_s > faster.bandwidth_bytes_per_s):
                raise ConfigError(f"`memory` must be ordered fastest first, got {slower.name!r} after {faster.name!r}")
        if not isinstance(self.power, PowerSpec):
            raise ConfigError(f"`power` must be a PowerSpec, got {self.power!r}")
        object.__setattr__(self, "num_sms", _check_int("num_sms", self.num_sms))
        _check_text("num_sms_source", self.num_sms_source)
        scale = _check_number("compute_clock_scale", self.compute_clock_scale)
        if scale > 1.0:
            raise ConfigError(f"`compute_clock_scale` must be in (0, 1], got {self.compute_clock_scale!r}")
        object.__setattr__(self, "compute_clock_scale", scale)
        object.__setattr__(self, "aliases", _check_strings("aliases", self.aliases))
        object.__setattr__(self, "profiler_names", _check_strings("profiler_names", self.profiler_names))
        object.__setattr__(self, "sources", _check_strings("sources", self.sources))
        if not isinstance(self.description, str):
            raise ConfigError(f"`description` must be a string, got {self.description!r}")

    # -- compute
    @property
    def dtypes(self) -> tuple[str, ...]:
        """Dtypes with a compute peak on this device, widest first."""
        have = {d for unit in self.compute for d in unit.peak_flops_per_s}
        return tuple(d for d in DTYPES if d in have)

    def supports(self, dtype: str) -> bool:
        """Whether some compute unit has a peak for ``dtype`` (an unknown dtype name raises)."""
        return _check_dtype(dtype) in self.dtypes

    def sm_cycles_per_s(self) -> float | None:
        """SM cycles per second of the whole device (SMs x the clock under the datasheet peaks, after
        ``compute_clock_scale``), or None where the catalogue gives no clock."""
        clock = next((u.clock_hz for u in self.compute if u.clock_hz is not None), None)
        return None if clock is None else self.num_sms * clock * self.compute_clock_scale

    def peak_flops(self, dtype: str, unit: str | None = None, accumulate: str = "fp32") -> float:
        """Dense peak in FLOP/s (OP/s for integers) for ``dtype``, after ``compute_clock_scale``.

        ``accumulate`` is the accumulator format: 'fp32' (default; what PyTorch/vLLM GEMMs use) or
        'fp16' (fp16/fp8 products only; faster on GeForce parts, equal elsewhere). The best unit is
        used unless ``unit`` names one. A dtype the hardware lacks raises MissingDataError: a
        narrower format never falls back to a wider one's peak.
        """
        key = _check_dtype(dtype)
        if accumulate not in ACCUMULATE:
            raise ConfigError(f"`accumulate` must be one of {', '.join(ACCUMULATE)}, got {accumulate!r}")
        if accumulate == "fp16" and key not in FP16_ACCUMULATE_DTYPES:
            raise ConfigError(f"`accumulate` 'fp16' applies to {', '.join(FP16_ACCUMULATE_DTYPES)} products only, "
                              f"got dtype {key!r}")
        units = self.compute
        if unit is not None:
            units = tuple(u for u in self.compute if u.name == unit)
            if not units:
                raise UnknownNameError(f"compute unit of {self.name}", unit, [u.name for u in self.compute])
        peaks = [(u.fp16_accumulate_peak_flops_per_s or {}).get(key, u.peak_flops_per_s[key])
                 if accumulate == "fp16" else u.peak_flops_per_s[key]
                 for u in units if key in u.peak_flops_per_s]
        if not peaks:
            where = f"unit {unit!r} of device {self.name!r}" if unit else f"device {self.name!r}"
            have = sorted({d for u in units for d in u.peak_flops_per_s}, key=DTYPES.index)
            raise MissingDataError(
                f"{where} has no {key} compute peak (it has: {', '.join(have)}); a format the hardware "
                f"lacks does not fall back to a wider one - pick a supported dtype or quantization format")
        return max(peaks) * self.compute_clock_scale

    # -- memory
    @property
    def main_memory(self) -> MemoryTier:
        """The 'main' tier (HBM/GDDR) that holds weights and KV cache."""
        return next(t for t in self.memory if t.role == "main")

    @property
    def memory_capacity_bytes(self) -> int:
        """Capacity of the main tier in bytes."""
        return self.main_memory.capacity_bytes

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        """Peak bandwidth of the main tier in bytes/s (unchanged by power caps)."""
        return self.main_memory.bandwidth_bytes_per_s  # type: ignore[return-value]

    @property
    def on_chip_bytes(self) -> int:
        """Total capacity of on-chip tiers in bytes (0 if none is listed)."""
        return sum(t.capacity_bytes for t in self.memory if t.role == "on_chip")

    # -- links
    @property
    def host_link(self) -> Link:
        """The link to the host (PCIe on every catalogued device)."""
        for link in self.links:
            if link.scope == "host":
                return link
        raise MissingDataError(f"device {self.name!r} lists no host link")

    @property
    def scale_up_link(self) -> Link:
        """The intra-node all-to-all link (NVLink, xGMI, ...), else the host PCIe link."""
        for link in self.links:
            if link.scope == "scale_up":
                return link
        return self.host_link

    @property
    def is_power_capped(self) -> bool:
        return self.power.power_cap_w is not None


# --------------------------------------------------------------------------- YAML loading



def _list(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: key {key!r} must be a list, got {type(value).__name__}")
    return value


def _build(cls: type, where: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


_DEVICE_REQUIRED = ("schema_version", "name", "vendor", "family", "arch_class", "num_sms", "num_sms_source",
                    "compute", "memory", "power")
_DEVICE_OPTIONAL = ("description", "aliases", "profiler_names", "sources", "links", "compute_clock_scale")
_SCHEMA_VERSION = 1


def _parse_device(data: Any, where: str) -> DeviceSpec:
    top = check_fields(data, where, _DEVICE_REQUIRED, _DEVICE_OPTIONAL)
    if top["schema_version"] != _SCHEMA_VERSION:
        raise ConfigError(f"{where}: schema_version: `schema_version` must be {_SCHEMA_VERSION}, "
                          f"got {top['schema_version']!r}")
    compute = []
    for i, item in enumerate(_list(top, "compute", where)):
        at = f"{where}: compute[{i}]"
        d = check_fields(item, at, ("name", "count", "peak_flops_per_s", "source"),
                         ("clock_hz", "fp16_accumulate_peak_flops_per_s"))
        for key in ("peak_flops_per_s", "fp16_accumulate_peak_flops_per_s"):
            if key in d and not isinstance(d[key], dict):
                raise ConfigError(f"{at}: key {key!r} must be a mapping dtype -> FLOP/s")
        compute.append(_build(ComputeUnit, at, **d))
    memory = []
    for i, item in enumerate(_list(top, "memory", where)):
        at = f"{where}: memory[{i}]"
        d = check_fields(item, at, ("name", "role", "capacity_bytes", "bandwidth_bytes_per_s", "source"))
        memory.append(_build(MemoryTier, at, **d))
    links = []
    for i, item in enumerate(_list(top, "links", where)):
        at = f"{where}: links[{i}]"
        d = check_fields(item, at, ("name", "kind", "bandwidth_bytes_per_s", "latency_s", "source"),
                    ("scope", "domain_size"))
        links.append(_build(Link, at, **d))
    at = f"{where}: power"
    p = dict(check_fields(top["power"], at, ("tdp_w", "source"), ("idle_w", "idle_fraction_of_tdp", "power_cap_w")))
    if ("idle_w" in p) == ("idle_fraction_of_tdp" in p):
        raise ConfigError(f"{at}: give exactly one of 'idle_w' (measured) or 'idle_fraction_of_tdp' (assumed)")
    if "idle_fraction_of_tdp" in p:
        frac = p.pop("idle_fraction_of_tdp")
        try:
            frac = _check_number("idle_fraction_of_tdp", frac, strict=False)
            tdp = _check_number("tdp_w", p["tdp_w"])
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        p["idle_w"] = frac * tdp
        p["source"] = f"{p['source']}; idle_w = idle_fraction_of_tdp {frac:g} x tdp_w [U]"
    power = _build(PowerSpec, at, **p)
    kwargs = {k: top[k] for k in ("name", "vendor", "family", "arch_class", "num_sms", "num_sms_source")}
    for key in ("aliases", "profiler_names", "sources"):
        kwargs[key] = tuple(_list(top, key, where))
    if "description" in top:
        kwargs["description"] = top["description"]
    if "compute_clock_scale" in top:
        kwargs["compute_clock_scale"] = top["compute_clock_scale"]
    return _build(DeviceSpec, where, compute=tuple(compute), memory=tuple(memory), links=tuple(links),
                  power=power, **kwargs)


def _device_entries(data: Any, where: str) -> list[tuple[str, DeviceSpec, tuple[str, ...]]]:
    spec = _parse_device(data, where)
    return [(spec.name, spec, (*spec.aliases, *spec.profiler_names))]


#: the shipped devices (one YAML file each in ``hwmodels/data/devices``) and the registered ones
CATALOGUE: Catalogue[DeviceSpec] = Catalogue.from_folder("device", "llmsim.hwmodels", "data/devices", _device_entries)


def load_device_file(path: str | Path) -> DeviceSpec:
    """A DeviceSpec from a user YAML (or JSON) file in the catalogue schema (not added to the catalogue).

    Errors are ConfigError naming the file and the offending key.
    """
    return CATALOGUE.load_path(path)


@functools.cache
def _catalogue() -> tuple[dict[str, DeviceSpec], NameIndex]:
    """The shipped devices and those added with :func:`register_device`, with their name index."""
    return CATALOGUE.table(), CATALOGUE.index()


def register_device(spec: DeviceSpec) -> None:
    """Add ``spec`` to the catalogue under its name, aliases and profiler names (plug-in devices,
    tests); a name already taken raises ConfigError."""
    if not isinstance(spec, DeviceSpec):
        raise ConfigError(f"register_device takes a DeviceSpec, got {type(spec).__name__}")
    try:
        CATALOGUE.register(spec.name, spec, (*spec.aliases, *spec.profiler_names))
    finally:
        _reload()


def unregister_device(name: str) -> None:
    """Remove a device added with :func:`register_device`."""
    CATALOGUE.unregister(name)
    _reload()


def _reload() -> None:
    _catalogue.cache_clear()
    _get_device.cache_clear()


def list_devices() -> tuple[str, ...]:
    """Canonical names of the catalogued devices."""
    return _catalogue()[1].names()


_PCAP = re.compile(r"^(?P<base>.*?)[\s_\-.]*pcap$", re.IGNORECASE)
_VENDOR = re.compile(r"^\s*(?:nvidia|amd|intel|habana)(?:[\s_\-]+instinct)?[\s_\-]*", re.IGNORECASE)


def _parse_cap(name: str) -> tuple[str, float | None]:
    if "@" in name:
        base, _, frac_text = name.rpartition("@")
        text = frac_text.strip()
        try:
            fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"device {name!r}: power-cap fraction after '@' must be a number like 0.7 "
                              f"or 70%, got {frac_text!r}") from None
        return base, fraction
    match = _PCAP.match(name.strip())
    if match and match.group("base"):
        return match.group("base"), SPLITWISE_CAP_FRACTION
    return name, None


def get_device(name: str | Path | DeviceSpec) -> DeviceSpec:
    """The DeviceSpec for a loose device name (a DeviceSpec is returned as is) or a device file path.

    Accepts aliases ('h100', 'a100-80gb', 'h100_sxm'), profiler strings ('NVIDIA H100 80GB HBM3'),
    a '-pcap' suffix (70% power cap, splitwise-sim naming) and 'name@fraction' ('h100@0.7', 'h100@70%').
    Unknown names raise UnknownNameError with suggestions. A path ending in .yaml/.yml/.json is read
    with :func:`load_device_file` (read again on every call, so edits to the file take effect).
    """
    if isinstance(name, DeviceSpec):
        return name
    if is_path(name):
        return load_device_file(name)
    if not isinstance(name, str):
        raise ConfigError(f"device name must be a string, got {name!r}")
    return _get_device(name)


@functools.lru_cache(maxsize=512)
def _get_device(name: str) -> DeviceSpec:
    specs, index = _catalogue()
    base, fraction = _parse_cap(name)
    try:
        canonical = index.resolve(base)
    except UnknownNameError as first:
        stripped = _VENDOR.sub("", base)
        try:
            canonical = index.resolve(stripped) if stripped and stripped != base else None
        except UnknownNameError:
            canonical = None
        if canonical is None:
            raise UnknownNameError("device", name, first.suggestions) from None
    spec = specs[canonical]
    return spec if fraction is None else with_power_cap(spec, fraction)


def with_power_cap(spec: DeviceSpec, fraction: float) -> DeviceSpec:
    """``spec`` capped at ``fraction`` (0 < f <= 1) of its TDP.

    The capped device keeps memory bandwidth, has ``tdp_w = power_cap_w = fraction * TDP`` and
    ``compute_clock_scale`` multiplied by ``power_cap_clock_scale(fraction)`` (1/1.3 at 0.7 [P, Splitwise];
    power-law interpolation elsewhere [U]). Capping an already capped device raises ConfigError.
    """
    f = _check_fraction(fraction)
    if spec.is_power_capped:
        raise ConfigError(f"device {spec.name!r} is already power-capped; cap the uncapped device instead")
    if f == 1.0:
        return spec
    cap_w = round(f * spec.power.tdp_w, 6)
    if cap_w <= spec.power.idle_w:
        raise ConfigError(f"`fraction` {f:g} caps {spec.name!r} at {cap_w:g} W, not above its idle power "
                          f"{spec.power.idle_w:g} W")
    scale = power_cap_clock_scale(f)
    note = (f"power cap {f:g} x TDP = {cap_w:g} W; compute_clock_scale x {scale:.4f} "
            f"(= {f:g}^{CAP_CLOCK_EXPONENT:.4f}: 1/1.3 at 0.7 [P] Splitwise ISCA 2024, power law elsewhere [U]); "
            f"memory bandwidth unchanged [P] Splitwise")
    power = replace(spec.power, tdp_w=cap_w, power_cap_w=cap_w, source=f"{spec.power.source}; {note}")
    aliases: tuple[str, ...] = ()
    if math.isclose(f, SPLITWISE_CAP_FRACTION):
        seen: dict[str, str] = {}
        for alias in (spec.name, *spec.aliases):
            seen.setdefault(normalise(alias), f"{alias}-pcap")
        aliases = tuple(seen.values())
    return replace(spec, name=f"{spec.name}@{f:g}", power=power,
                   compute_clock_scale=spec.compute_clock_scale * scale, aliases=aliases,
                   sources=(*spec.sources, note))
