"""Quantization and KV-cache formats: byte counts, compute dtypes, names, strict data."""
from __future__ import annotations

import dataclasses
from importlib import resources

import pytest

from llmsim.workloads.errors import ConfigError, UnknownNameError
from llmsim.workloads.quant import (
    COMPUTE_DTYPES, KVCacheFormat, QuantFormat, _parse_catalogue, get_kv_format, get_quant_format,
    kv_format_for, list_kv_formats, list_quant_formats,
)

FORMATS = {"fp32", "bf16", "fp16", "fp8", "fp8_block", "w8a8", "w8a16", "w4a16", "w4a8", "nvfp4", "mxfp4", "w2a8kv4"}


def test_catalogue_lists_all_formats():
    assert set(list_quant_formats()) == FORMATS
    assert set(list_kv_formats()) == {"fp32", "bf16", "fp16", "fp8", "fp8_e5m2", "int8", "int4"}


@pytest.mark.parametrize("name,expected", [
    ("fp32", 4.0),
    ("bf16", 2.0),
    ("fp16", 2.0),
    ("fp8", 1.0),
    ("fp8_block", (8 + 32 / (128 * 128)) / 8),
    ("w8a8", 1.0),
    ("w8a16", 1.0),
    ("w4a16", (4 + 20 / 128) / 8),   # fp16 scale + 4-bit zero per 128 weights = 0.5195 B
    ("w4a8", (4 + 12 / 128) / 8),
    ("mxfp4", (4 + 8 / 32) / 8),     # 0.53125
    ("nvfp4", (4 + 8 / 16) / 8),     # 0.5625
    ("w2a8kv4", (2 + 18 / 128) / 8),  # assumed group 128, fp16 scale + 2-bit zero
])
def test_bytes_per_weight_include_group_scales(name, expected):
    fmt = get_quant_format(name)
    assert fmt.bytes_per_weight == pytest.approx(expected, rel=1e-12)
    assert fmt.bits_per_weight == pytest.approx(8 * expected)


def test_headline_byte_counts():
    assert get_quant_format("w4a16").bytes_per_weight == pytest.approx(0.5195, abs=1e-4)
    assert get_quant_format("mxfp4").bytes_per_weight == 0.53125
    assert get_quant_format("nvfp4").bytes_per_weight == 0.5625


@pytest.mark.parametrize("name,activation,compute,dequant", [
    ("fp32", "fp32", "fp32", 0), ("bf16", "bf16", "bf16", 0), ("fp16", "fp16", "fp16", 0),
    ("fp8", "fp8", "fp8", 0), ("fp8_block", "fp8", "fp8", 0), ("w8a8", "int8", "int8", 0),
    ("w8a16", "bf16", "bf16", 2), ("w4a16", "bf16", "bf16", 2), ("w4a8", "int8", "int8", 1),
    ("nvfp4", "fp4", "fp4", 0), ("mxfp4", "fp4", "fp4", 0), ("w2a8kv4", "int8", "int8", 1),
])
def test_activation_and_compute_dtypes(name, activation, compute, dequant):
    fmt = get_quant_format(name)
    assert (fmt.activation_dtype, fmt.compute_dtype, fmt.dequant_flops_per_weight) == (activation, compute, dequant)
    assert fmt.is_weight_only == (dequant > 0)


def test_compute_dtypes_are_device_peak_keys():
    from llmsim.hwmodels.devices import DTYPES, get_device
    assert COMPUTE_DTYPES == DTYPES
    h100, b200 = get_device("h100"), get_device("b200")
    for name in list_quant_formats():
        fmt = get_quant_format(name)
        assert b200.supports(fmt.compute_dtype), name
        assert h100.supports(fmt.compute_dtype) == (fmt.compute_dtype != "fp4"), name


@pytest.mark.parametrize("alias,canonical", [
    ("awq", "w4a16"), ("gptq", "w4a16"), ("int4_wo", "w4a16"), ("W4A16", "w4a16"),
    ("fp8_e4m3", "fp8"), ("FP8-E4M3", "fp8"), ("bfloat16", "bf16"), ("half", "fp16"),
    ("smoothquant", "w8a8"), ("int8_wo", "w8a16"), ("accllm", "w2a8kv4"), ("W2A8KV4", "w2a8kv4"),
    ("NVFP4", "nvfp4"), ("mx_fp4", "mxfp4"), ("fp8-block", "fp8_block"), ("qserve", "w4a8"),
])
def test_quant_aliases_resolve(alias, canonical):
    assert get_quant_format(alias).name == canonical


@pytest.mark.parametrize("name,suggested", [("w4a17", "w4a16"), ("int8", "w8a8"), ("mxfp5", "mxfp4")])
def test_unknown_quant_format_suggests(name, suggested):
    with pytest.raises(UnknownNameError) as info:
        get_quant_format(name)
    assert info.value.kind == "quantization format"
    assert suggested in info.value.suggestions


@pytest.mark.parametrize("name,canonical,nbytes", [
    ("16", "bf16", 2.0), ("bf16", "bf16", 2.0), ("fp16", "fp16", 2.0), ("fp32", "fp32", 4.0),
    ("fp8", "fp8", 1.0), ("fp8_e4m3", "fp8", 1.0), ("fp8_e5m2", "fp8_e5m2", 1.0),
    ("int8", "int8", (8 + 32 / 128) / 8), ("8", "int8", 1.03125),
    ("int4", "int4", (4 + 32 / 64) / 8), ("4", "int4", 0.5625),
])
def test_kv_formats_bytes_per_element(name, canonical, nbytes):
    fmt = get_kv_format(name)
    assert fmt.name == canonical
    assert fmt.bytes_per_element == pytest.approx(nbytes)


def test_unknown_kv_format_and_auto():
    with pytest.raises(UnknownNameError) as info:
        get_kv_format("int3")
    assert info.value.kind == "KV-cache dtype" and info.value.suggestions
    with pytest.raises(ConfigError, match="kv_format_for"):
        get_kv_format("auto")


def test_kv_format_for_resolves_auto_from_the_quant_format():
    assert kv_format_for("bf16", "auto").name == "bf16"
    assert kv_format_for("fp16").name == "fp16"
    assert kv_format_for("fp32", None).name == "fp32"
    assert kv_format_for("w2a8kv4", "auto").name == "int4"
    assert kv_format_for("fp8", "AUTO").name == "bf16"
    assert kv_format_for("awq", "fp8").name == "fp8"
    assert kv_format_for(get_quant_format("w4a16"), get_kv_format("4")).name == "int4"


def test_matrix_bytes_counts_every_scale():
    rows, cols = 4096, 4096
    assert get_quant_format("bf16").matrix_bytes(rows, cols) == rows * cols * 2
    w4 = get_quant_format("w4a16").matrix_bytes(rows, cols)
    assert w4 == pytest.approx(rows * cols * 0.5 + rows * (cols // 128) * 20 / 8)
    assert w4 == pytest.approx(rows * cols * get_quant_format("w4a16").bytes_per_weight)
    assert get_quant_format("w8a8").matrix_bytes(rows, cols) == rows * cols + rows * 4   # per-channel fp32
    assert get_quant_format("fp8").matrix_bytes(rows, cols) == rows * cols + 4          # one fp32 scale
    assert get_quant_format("fp8_block").matrix_bytes(300, 200) == 300 * 200 + 3 * 2 * 4  # partial blocks count
    assert get_quant_format("nvfp4").matrix_bytes(16, 16) == 16 * 16 * 0.5 + 16 * 1 + 4


def test_formats_are_frozen_and_hashable():
    fmt = get_quant_format("w4a16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.weight_bits = 3  # type: ignore[misc]
    assert len({fmt, get_quant_format("awq"), get_quant_format("bf16")}) == 2
    assert hash(get_kv_format("int4")) == hash(get_kv_format("4"))


def test_every_format_carries_a_tagged_source():
    for name in list_quant_formats():
        assert any(t in get_quant_format(name).source for t in ("[P]", "[S]", "[U]")), name
    for name in list_kv_formats():
        assert any(t in get_kv_format(name).source for t in ("[P]", "[S]", "[U]")), name


# ----------------------------------------------------------------------------- strict data

def _catalogue_text() -> str:
    return resources.files("llmsim.workloads").joinpath("data", "quant_formats.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("old,new,key", [
    ("    weight_bits: 4\n    granularity: group\n    group_size: 128\n",
     "    weight_bits: 4\n    granularity: group\n    group_size: 128\n    colour: red\n", "colour"),
    ("    kv_default: int4\n", "    kv_default: int3\n", "kv_default"),
    ("    compute_dtype: fp4\n", "    compute_dtype: fp5\n", "compute_dtype"),
    ("    group_size: 32\n", "", "group_size"),
    ("    group_size: 32\n", "    group_size: -32\n", "group_size"),
    ("    block_shape: [128, 128]\n", "    block_shape: [128, 64]\n", "block_shape"),
    ("  - name: fp16\n    aliases: [float16, half]\n    bits: 16\n",
     "  - name: fp16\n    aliases: [float16, half]\n", "bits"),
    ("schema_version: 1", "schema_version: 2", "schema_version"),
    ("    weight_bits: 2\n", "    weight_bits: 2\n    weight_bits: 3\n", "weight_bits"),
])
def test_malformed_catalogue_raises_config_error_naming_the_key(old, new, key):
    text = _catalogue_text()
    assert old in text
    with pytest.raises(ConfigError) as info:
        _parse_catalogue(text.replace(old, new, 1), "quant.yaml")
    assert "quant.yaml" in str(info.value) and key in str(info.value)


def test_constructors_validate():
    with pytest.raises(ConfigError, match="`group_size` must be > 0"):
        QuantFormat(name="x", weight_type="int4", weight_bits=4, activation_dtype="bf16", compute_dtype="bf16",
                    kv_default="bf16", source="[U]", granularity="group", group_size=0, scale_bits=16)
    with pytest.raises(ConfigError, match="`group_size` must be None"):
        QuantFormat(name="x", weight_type="int8", weight_bits=8, activation_dtype="int8", compute_dtype="int8",
                    kv_default="bf16", source="[U]", granularity="channel", group_size=128, scale_bits=16)
    with pytest.raises(ConfigError, match="`weight_bits` must be > 0"):
        QuantFormat(name="x", weight_type="int0", weight_bits=0, activation_dtype="bf16", compute_dtype="bf16",
                    kv_default="bf16", source="[U]")
    with pytest.raises(ConfigError, match="`bits`"):
        KVCacheFormat(name="x", bits=0, source="[U]")
    kv = KVCacheFormat(name="int2", bits=2, granularity="group", group_size=32, scale_bits=16, source="[U]")
    assert kv.bytes_per_element == pytest.approx((2 + 16 / 32) / 8)
