"""Quantization and KV-cache formats as data (``workloads/data/quant_formats.yaml``).

A ``QuantFormat`` says how many bytes a weight costs (scales and zero points included), which dtype
the GEMM inputs use, whose device peak applies and how much extra vector work unpacking costs.
A ``KVCacheFormat`` says how many bytes one cached K or V element costs. Units: bits, bytes, FLOP.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.naming import NameIndex
from llmsim.workloads.yamlio import check_fields, read_yaml

__all__ = [
    "QuantFormat", "KVCacheFormat", "GRANULARITIES", "ACTIVATION_DTYPES", "COMPUTE_DTYPES",
    "get_quant_format", "list_quant_formats", "get_kv_format", "list_kv_formats", "kv_format_for",
]

#: How a scale is shared: 'none' (no scales), 'tensor', 'channel' (per output row),
#: 'group' (``group_size`` consecutive weights along the reduction dim), 'block' (a 2-D tile).
GRANULARITIES: tuple[str, ...] = ("none", "tensor", "channel", "group", "block")
ACTIVATION_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "fp4")
#: The device peak keys (same as ``llmsim.hwmodels.devices.DTYPES``; a test keeps them equal).
COMPUTE_DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
_GROUPED = ("group", "block")


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"`{name}` must be {'> 0' if minimum == 1 else f'>= {minimum}'}, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {value!r}")
    return value


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"`{name}` must be a list of strings, got {value!r}")
    return tuple(_text(name, str(v) if isinstance(v, int) and not isinstance(v, bool) else v) for v in value)


def _scale_overhead_bits(granularity: str, group_size: int | None, scale_bits: int, zero_point_bits: int) -> float:
    return (scale_bits + zero_point_bits) / group_size if granularity in _GROUPED and group_size else 0.0


def _check_scaling(obj: Any) -> None:
    """Shared checks of granularity / group_size / scale_bits / zero_point_bits."""
    if obj.granularity not in GRANULARITIES:
        raise ConfigError(f"`granularity` must be one of {', '.join(GRANULARITIES)}, got {obj.granularity!r}")
    _int("scale_bits", obj.scale_bits, 0)
    _int("zero_point_bits", obj.zero_point_bits, 0)
    if obj.granularity in _GROUPED:
        _int("group_size", obj.group_size, 1)
        if obj.scale_bits == 0:
            raise ConfigError(f"`scale_bits` must be > 0 for granularity {obj.granularity!r}, got 0")
    elif obj.group_size is not None:
        raise ConfigError(f"`group_size` must be None for granularity {obj.granularity!r}, got {obj.group_size!r}")
    if obj.granularity == "none" and (obj.scale_bits or obj.zero_point_bits):
        raise ConfigError("`scale_bits` and `zero_point_bits` must be 0 for granularity 'none', "
                          f"got {obj.scale_bits!r} and {obj.zero_point_bits!r}")


@dataclass(frozen=True, kw_only=True)
class QuantFormat:
    """A weight/activation quantization format.

    ``bytes_per_weight`` (derived) = (weight_bits + (scale_bits + zero_point_bits) / group_size) / 8
    for group/block scales; per-tensor and per-channel scales depend on the matrix shape and are
    left out of it (use ``matrix_bytes`` to count them).
    """

    name: str
    weight_type: str                      # element encoding: 'bf16', 'e4m3', 'int4', 'e2m1', ...
    weight_bits: int
    activation_dtype: str                 # dtype of the GEMM inputs
    compute_dtype: str                    # whose device peak applies
    kv_default: str                       # KV format that 'auto' means for this format
    source: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    granularity: str = "none"
    group_size: int | None = None         # weights sharing one scale (group/block granularity)
    block_shape: tuple[int, int] | None = None  # (rows, cols) of a 2-D block; product == group_size
    scale_type: str | None = None         # e.g. 'fp16', 'fp32', 'e8m0', 'e4m3'
    scale_bits: int = 0
    zero_point_bits: int = 0
    tensor_scale_bits: int = 0            # an extra per-tensor scale (NVFP4's fp32 global scale)
    dequant_flops_per_weight: float = 0.0  # extra vector FLOP per weight per GEMM call
    bytes_per_weight: float = field(init=False)

    def __post_init__(self) -> None:
        _text("name", self.name)
        _text("weight_type", self.weight_type)
        _int("weight_bits", self.weight_bits, 1)
        if self.weight_bits > 32:
            raise ConfigError(f"`weight_bits` must be <= 32, got {self.weight_bits!r}")
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise ConfigError(f"`activation_dtype` must be one of {', '.join(ACTIVATION_DTYPES)}, "
                              f"got {self.activation_dtype!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"`compute_dtype` must be one of {', '.join(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        _text("kv_default", self.kv_default)
        _text("source", self.source)
        object.__setattr__(self, "aliases", _strings("aliases", self.aliases))
        if not isinstance(self.description, str):
            raise ConfigError(f"`description` must be a string, got {self.description!r}")
        _check_scaling(self)
        if self.block_shape is not None:
            if self.granularity != "block":
                raise ConfigError(f"`block_shape` needs granularity 'block', got {self.granularity!r}")
            shape = tuple(self.block_shape)
            if len(shape) != 2:
                raise ConfigError(f"`block_shape` must be (rows, cols), got {self.block_shape!r}")
            for v in shape:
                _int("block_shape", v, 1)
            if shape[0] * shape[1] != self.group_size:
                raise ConfigError(f"`block_shape` {shape} must multiply to group_size {self.group_size}")
            object.__setattr__(self, "block_shape", shape)
        if self.scale_type is not None:
            _text("scale_type", self.scale_type)
        _int("tensor_scale_bits", self.tensor_scale_bits, 0)
        d = self.dequant_flops_per_weight
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0:
            raise ConfigError(f"`dequant_flops_per_weight` must be >= 0, got {d!r}")
        object.__setattr__(self, "dequant_flops_per_weight", float(d))
        overhead = _scale_overhead_bits(self.granularity, self.group_size, self.scale_bits, self.zero_point_bits)
        object.__setattr__(self, "bytes_per_weight", (self.weight_bits + overhead) / 8.0)

    @property
    def bits_per_weight(self) -> float:
        """Effective bits per weight, group/block scale overhead included."""
        return self.bytes_per_weight * 8.0

    @property
    def is_weight_only(self) -> bool:
        """Weights narrower than the GEMM inputs, so they are unpacked before the tensor core."""
        return self.dequant_flops_per_weight > 0

    def matrix_bytes(self, out_features: int, in_features: int) -> float:
        """Bytes of one (out_features x in_features) weight matrix with every scale and zero point.

        Groups run along ``in_features`` (the GEMM reduction dim); partial groups and blocks count whole.
        """
        rows, cols = _int("out_features", out_features, 1), _int("in_features", in_features, 1)
        per_scale = self.scale_bits + self.zero_point_bits
        if self.granularity == "group":
            scales = rows * math.ceil(cols / self.group_size)  # type: ignore[operator]
        elif self.granularity == "block":
            br, bc = self.block_shape or (1, self.group_size)
            scales = math.ceil(rows / br) * math.ceil(cols / bc)  # type: ignore[operator]
        elif self.granularity == "channel":
            scales = rows
        elif self.granularity == "tensor":
            scales = 1
        else:
            scales = 0
        bits = rows * cols * self.weight_bits + scales * per_scale + self.tensor_scale_bits
        return bits / 8.0


@dataclass(frozen=True, kw_only=True)
class KVCacheFormat:
    """A KV-cache element format; ``bytes_per_element`` (derived) includes group scales and zeros."""

    name: str
    bits: int
    source: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    granularity: str = "none"
    group_size: int | None = None         # elements sharing one scale (along head_dim)
    scale_bits: int = 0
    zero_point_bits: int = 0
    bytes_per_element: float = field(init=False)

    def __post_init__(self) -> None:
        _text("name", self.name)
        _int("bits", self.bits, 1)
        if self.bits > 32:
            raise ConfigError(f"`bits` must be <= 32, got {self.bits!r}")
        _text("source", self.source)
        object.__setattr__(self, "aliases", _strings("aliases", self.aliases))
        if not isinstance(self.description, str):
            raise ConfigError(f"`description` must be a string, got {self.description!r}")
        if self.granularity == "block":
            raise ConfigError("`granularity` 'block' is not used for KV formats; use 'group'")
        _check_scaling(self)
        overhead = _scale_overhead_bits(self.granularity, self.group_size, self.scale_bits, self.zero_point_bits)
        object.__setattr__(self, "bytes_per_element", (self.bits + overhead) / 8.0)


# --------------------------------------------------------------------------- loading

_QUANT_REQUIRED = ("name", "weight_type", "weight_bits", "activation_dtype", "compute_dtype", "kv_default", "source")
_QUANT_OPTIONAL = ("aliases", "description", "granularity", "group_size", "block_shape", "scale_type",
                   "scale_bits", "zero_point_bits", "tensor_scale_bits", "dequant_flops_per_weight")
_KV_REQUIRED = ("name", "bits", "source")
_KV_OPTIONAL = ("aliases", "description", "granularity", "group_size", "scale_bits", "zero_point_bits")
_AUTO = "auto"




def _build(cls: type, where: str, data: dict) -> Any:
    try:
        return cls(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _parse_catalogue(text: str, where: str, shipped: bool = False) -> tuple[dict[str, QuantFormat], NameIndex,
                                                                         dict[str, KVCacheFormat], NameIndex]:
    return _parse_data(read_yaml(text, where, shipped=shipped), where)


def _parse_data(data: Any, where: str) -> tuple[dict[str, QuantFormat], NameIndex,
                                                 dict[str, KVCacheFormat], NameIndex]:
    top = check_fields(data, where, ("schema_version", "formats", "kv_formats"), ())
    if top["schema_version"] != 1:
        raise ConfigError(f"{where}: `schema_version` must be 1, got {top['schema_version']!r}")
    kv: dict[str, KVCacheFormat] = {}
    kv_index = NameIndex("KV-cache dtype")
    for i, item in enumerate(top["kv_formats"] or ()):
        at = f"{where}: kv_formats[{i}]"
        fmt = _build(KVCacheFormat, at, check_fields(item, at, _KV_REQUIRED, _KV_OPTIONAL))
        _register(kv_index, kv, fmt, at)
    quant: dict[str, QuantFormat] = {}
    quant_index = NameIndex("quantization format")
    for i, item in enumerate(top["formats"] or ()):
        at = f"{where}: formats[{i}]"
        fmt = _build(QuantFormat, at, check_fields(item, at, _QUANT_REQUIRED, _QUANT_OPTIONAL))
        if fmt.kv_default not in kv:
            raise ConfigError(f"{at}: `kv_default` must name a KV format ({', '.join(kv)}), got {fmt.kv_default!r}")
        _register(quant_index, quant, fmt, at)
    return quant, quant_index, kv, kv_index


def _register(index: NameIndex, table: dict, fmt: Any, where: str) -> None:
    if fmt.name in table:
        raise ConfigError(f"{where}: {fmt.name!r} is defined twice")
    if _AUTO in (fmt.name, *fmt.aliases):
        raise ConfigError(f"{where}: 'auto' is reserved (it means the model's own dtype)")
    try:
        index.add(fmt.name, fmt.aliases)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    table[fmt.name] = fmt


@functools.cache
def _shipped() -> tuple[dict[str, QuantFormat], NameIndex, dict[str, KVCacheFormat], NameIndex]:
    text = resources.files("llmsim.workloads").joinpath("data", "quant_formats.yaml").read_text(encoding="utf-8")
    return _parse_catalogue(text, "workloads/data/quant_formats.yaml", shipped=True)


def _entries(table: dict) -> list[tuple[str, Any, tuple[str, ...]]]:
    return [(name, fmt, fmt.aliases) for name, fmt in table.items()]


#: the quantization formats; a path names a file of the ``quant_formats.yaml`` schema with one format
FORMATS: Catalogue[QuantFormat] = Catalogue("quantization format", lambda: _entries(_shipped()[0]),
                                            lambda data, where: _entries(_parse_data(data, where)[0]))
#: the KV-cache element formats, from the same file
KV_FORMATS: Catalogue[KVCacheFormat] = Catalogue("KV-cache dtype", lambda: _entries(_shipped()[2]),
                                                 lambda data, where: _entries(_parse_data(data, where)[2]))


@functools.cache
def _catalogue() -> tuple[dict[str, QuantFormat], NameIndex, dict[str, KVCacheFormat], NameIndex]:
    return FORMATS.table(), FORMATS.index(), KV_FORMATS.table(), KV_FORMATS.index()


def get_quant_format(name: str | QuantFormat) -> QuantFormat:
    """The QuantFormat for a loose name ('awq', 'W4A16', 'fp8_e4m3'); UnknownNameError with suggestions.

    A path ending in .yaml/.yml/.json names a file of the ``quant_formats.yaml`` schema holding one format.
    """
    if isinstance(name, QuantFormat):
        return name
    if is_path(name):
        return FORMATS.load_path(name)
    quant, index, _, _ = _catalogue()
    return quant[index.resolve(str(name))]


def list_quant_formats() -> tuple[str, ...]:
    """Canonical quantization format names."""
    return _catalogue()[1].names()


def get_kv_format(name: str | KVCacheFormat) -> KVCacheFormat:
    """The KVCacheFormat for a loose name ('fp8', '4', 'bf16'). 'auto' needs ``kv_format_for``."""
    if isinstance(name, KVCacheFormat):
        return name
    _, _, kv, index = _catalogue()
    if re.sub(r"\s+", "", str(name)).lower() == _AUTO:
        raise ConfigError("KV-cache dtype 'auto' means the model's own dtype; resolve it with "
                          "kv_format_for(quant_format, 'auto')")
    return kv[index.resolve(str(name))]


def list_kv_formats() -> tuple[str, ...]:
    """Canonical KV-cache format names ('auto' is not one: see ``kv_format_for``)."""
    return _catalogue()[3].names()


def kv_format_for(quant: str | QuantFormat, kv_name: str | KVCacheFormat | None = _AUTO) -> KVCacheFormat:
    """The KV format a deployment uses: ``kv_name``, or for 'auto'/None the quant format's ``kv_default``."""
    fmt = get_quant_format(quant)
    if kv_name is None or (isinstance(kv_name, str) and kv_name.strip().lower() == _AUTO):
        return get_kv_format(fmt.kv_default)
    return get_kv_format(kv_name)
