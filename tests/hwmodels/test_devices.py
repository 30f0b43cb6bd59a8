"""Device catalogue: datasheet numbers, loose names, power caps, strict schema."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from llmsim.hwmodels.devices import (
    CAP_CLOCK_EXPONENT, DTYPES, ComputeUnit, DeviceSpec, Link, MemoryTier, PowerSpec, get_device,
    list_devices, load_device_file, power_cap_clock_scale, with_power_cap,
)
from llmsim.workloads.errors import ConfigError, MissingDataError, UnknownNameError

CANONICAL = {
    "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-80gb", "a40", "l40s", "h100-sxm", "h100-pcie",
    "h200-sxm", "b200", "mi250x", "mi300x", "gaudi2", "rtx-4090", "rtx-pro-6000",
    "u280-accllm", "u280-flightllm", "vhk158-flightllm", "sn40l",  # non-GPU families (hwmodels/fpga.py, rdu.py)
}
DATA_DIR = resources.files("llmsim.hwmodels").joinpath("data", "devices")


def _device_files() -> list[Path]:
    return sorted(Path(str(DATA_DIR)).glob("*.yaml"))


def test_catalogue_lists_the_fourteen_devices():
    assert set(list_devices()) == CANONICAL
    assert len(_device_files()) == len(CANONICAL)


@pytest.mark.parametrize("path", _device_files(), ids=lambda p: p.name)
def test_every_catalogue_file_loads_as_a_user_file_too(path):
    spec = load_device_file(path)
    assert spec == get_device(spec.name)
    assert spec.memory_capacity_bytes > 0 and spec.memory_bandwidth_bytes_per_s > 0
    assert spec.power.idle_w < spec.power.tdp_w
    assert spec.num_sms > 0 and spec.compute_clock_scale == 1.0


# (device, bf16 FLOP/s, main-memory bytes/s, TDP W) from /work/shared/docs/hardware.md
HARDWARE_MD = [
    ("a100-sxm-40gb", 312e12, 1.555e12, 400),
    ("a100-sxm-80gb", 312e12, 2.039e12, 400),
    ("a100-pcie-80gb", 312e12, 1.935e12, 300),
    ("a40", 149.7e12, 696e9, 300),
    ("l40s", 362e12, 864e9, 350),
    ("h100-sxm", 989.4e12, 3.35e12, 700),
    ("h100-pcie", 756e12, 2.0e12, 350),
    ("h200-sxm", 989.4e12, 4.8e12, 700),
    ("b200", 2250e12, 8e12, 1000),
    ("mi250x", 383e12, 3.2e12, 560),
    ("mi300x", 1307e12, 5.3e12, 750),
    ("gaudi2", 432e12, 2.46e12, 600),
]


@pytest.mark.parametrize("name,bf16,bandwidth,tdp", HARDWARE_MD, ids=[r[0] for r in HARDWARE_MD])
def test_peaks_bandwidth_and_tdp_match_hardware_md(name, bf16, bandwidth, tdp):
    spec = get_device(name)
    assert spec.peak_flops("bf16") == pytest.approx(bf16, rel=1e-3)
    assert spec.memory_bandwidth_bytes_per_s == pytest.approx(bandwidth, rel=1e-9)
    assert spec.power.tdp_w == tdp


def test_h100_and_a100_headline_numbers():
    h100 = get_device("h100")
    assert h100.peak_flops("bf16") == pytest.approx(989.4e12)
    assert h100.peak_flops("fp8") == pytest.approx(1978.9e12)
    assert h100.peak_flops("int8") == pytest.approx(1978.9e12)
    assert h100.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.memory_capacity_bytes == 80 * 2**30
    assert h100.num_sms == 132 and h100.on_chip_bytes == 50 * 2**20
    assert h100.peak_flops("tf32") == pytest.approx(494.7e12)
    assert h100.peak_flops("fp32") == pytest.approx(66.9e12, rel=0.01)
    a100 = get_device("a100")
    assert a100.memory_bandwidth_bytes_per_s == pytest.approx(2.039e12)
    assert a100.peak_flops("bf16") == pytest.approx(312e12)
    assert a100.peak_flops("fp32") == pytest.approx(19.5e12)
    assert a100.peak_flops("tf32") == pytest.approx(156e12)
    assert a100.num_sms == 108 and a100.on_chip_bytes == 40 * 2**20


def test_peak_flops_takes_the_best_unit_unless_one_is_named():
    a100 = get_device("a100")
    assert a100.peak_flops("fp64") == pytest.approx(19.5e12)  # FP64 tensor core
    assert a100.peak_flops("fp64", unit="vector") == pytest.approx(9.7e12)
    with pytest.raises(UnknownNameError):
        a100.peak_flops("fp64", unit="dsp")


def test_other_device_facts():
    assert get_device("b200").peak_flops("fp4") == pytest.approx(9e15)
    assert get_device("mi300x").peak_flops("fp8") == pytest.approx(2615e12, rel=1e-3)
    assert get_device("h200").memory_capacity_bytes == 141 * 2**30
    assert {get_device(n).num_sms for n in ("l40s", "a40", "mi250x", "mi300x", "gaudi2", "b200", "h100-pcie")} == {
        142, 84, 220, 304, 24, 148, 114}
    assert get_device("a100-80gb").power.idle_w == 63 and get_device("h100").power.idle_w == 75
    assert get_device("mi300x").on_chip_bytes == 256 * 2**20


@pytest.mark.parametrize("name,kind", [
    ("h100", "nvlink"), ("a100", "nvlink"), ("b200", "nvlink"), ("mi300x", "xgmi"), ("gaudi2", "roce"),
    ("a100-pcie", "pcie"), ("h100-pcie", "pcie"), ("l40s", "pcie"), ("a40", "pcie"),
])
def test_scale_up_link_is_nvlink_or_xgmi_else_pcie(name, kind):
    spec = get_device(name)
    assert spec.scale_up_link.kind == kind
    assert spec.host_link.kind == "pcie"


def test_link_bandwidths_are_per_direction():
    assert get_device("h100").scale_up_link.bandwidth_bytes_per_s == pytest.approx(450e9)
    assert get_device("a100").scale_up_link.bandwidth_bytes_per_s == pytest.approx(300e9)
    assert get_device("h100").host_link.bandwidth_bytes_per_s == pytest.approx(64e9)


ALIASES = {
    "h100": "h100-sxm", "h100-sxm": "h100-sxm", "H100-SXM-80GB": "h100-sxm", "h100-80gb": "h100-sxm",
    "h100_sxm": "h100-sxm", "NVIDIA H100 80GB HBM3": "h100-sxm",
    "a100": "a100-sxm-80gb", "a100-80gb": "a100-sxm-80gb", "a100_sxm": "a100-sxm-80gb",
    "NVIDIA A100-SXM4-80GB": "a100-sxm-80gb",
    "a100-sxm-40gb": "a100-sxm-40gb", "NVIDIA A100-SXM4-40GB": "a100-sxm-40gb",
    "a100-pcie": "a100-pcie-80gb", "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "h200": "h200-sxm", "NVIDIA H200": "h200-sxm",
    "l40s": "l40s", "NVIDIA L40S": "l40s",
    "a40": "a40", "NVIDIA A40": "a40",
    "b200": "b200", "NVIDIA B200": "b200",
    "mi300x": "mi300x", "AMD Instinct MI300X": "mi300x",
    "mi250x": "mi250x", "gaudi2": "gaudi2",
    "h100-pcie": "h100-pcie", "NVIDIA H100 PCIe": "h100-pcie",
    "nvidia h100": "h100-sxm",  # vendor prefix stripped
    "NVIDIA GeForce RTX 4090": "rtx-4090", "rtx4090": "rtx-4090",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "rtx-pro-6000",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": "rtx-pro-6000", "rtx-pro-6000-workstation": "rtx-pro-6000",
}


@pytest.mark.parametrize("alias,canonical", sorted(ALIASES.items()))
def test_loose_names_resolve(alias, canonical):
    assert get_device(alias).name == canonical


@pytest.mark.parametrize("name,suggested", [("h10", "h100-sxm"), ("a100-90gb", "a100-sxm-80gb")])
def test_unknown_name_raises_with_a_suggestion(name, suggested):
    with pytest.raises(UnknownNameError) as info:
        get_device(name)
    assert info.value.kind == "device" and info.value.name == name
    assert suggested in info.value.suggestions
    assert suggested in str(info.value)


def test_pcap_suffix_caps_at_70_percent_with_bandwidth_kept():
    base, capped = get_device("h100-80gb"), get_device("h100-80gb-pcap")
    assert capped.power.tdp_w == pytest.approx(490.0)
    assert capped.power.power_cap_w == pytest.approx(490.0)
    assert capped.power.idle_w == base.power.idle_w
    assert capped.compute_clock_scale == pytest.approx(1 / 1.3)
    assert capped.peak_flops("bf16") == pytest.approx(base.peak_flops("bf16") / 1.3)
    assert capped.memory_bandwidth_bytes_per_s == base.memory_bandwidth_bytes_per_s
    assert capped.memory == base.memory and capped.links == base.links
    assert capped.is_power_capped and not base.is_power_capped
    assert get_device("a100-80gb-pcap").power.tdp_w == pytest.approx(280.0)
    assert get_device("h100@0.7") == capped == get_device("h100@70%") == with_power_cap(base, 0.7)


def test_power_cap_interpolation_is_monotone_and_anchored():
    assert power_cap_clock_scale(1.0) == 1.0
    assert power_cap_clock_scale(0.7) == pytest.approx(1 / 1.3)
    assert CAP_CLOCK_EXPONENT == pytest.approx(math.log(1.3) / math.log(1 / 0.7))
    scales = [power_cap_clock_scale(f) for f in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    assert scales == sorted(scales)
    spec = get_device("h100@0.85")
    assert spec.power.tdp_w == pytest.approx(595.0)
    assert 1 / 1.3 < spec.compute_clock_scale < 1.0
    assert with_power_cap(get_device("h100"), 1.0) is get_device("h100")


@pytest.mark.parametrize("bad", ["h100@0", "h100@1.2", "h100@-0.5", "h100@abc"])
def test_bad_power_cap_fraction_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        get_device(bad)


def test_capping_twice_or_below_idle_is_refused():
    with pytest.raises(ConfigError, match="already power-capped"):
        with_power_cap(get_device("h100-pcap"), 0.9)
    with pytest.raises(ConfigError, match="idle"):
        with_power_cap(get_device("h100"), 0.1)


def test_a_dtype_the_hardware_lacks_raises_and_never_falls_back():
    a100 = get_device("a100")
    assert not a100.supports("fp8") and a100.supports("bf16")
    with pytest.raises(MissingDataError) as info:
        a100.peak_flops("fp8")
    message = str(info.value)
    assert "a100-sxm-80gb" in message and "fp8" in message and "bf16" in message
    with pytest.raises(MissingDataError):
        get_device("h100").peak_flops("fp4")
    with pytest.raises(MissingDataError):
        get_device("mi250x").peak_flops("tf32")
    with pytest.raises(UnknownNameError):
        a100.peak_flops("fp9")


def test_dtypes_are_ordered_widest_first():
    assert get_device("b200").dtypes == ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")
    assert set(get_device("h100").dtypes) <= set(DTYPES)


def test_specs_are_frozen_and_hashable():
    spec = get_device("h100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_sms = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.compute[0].peak_flops_per_s["bf16"] = 1.0  # type: ignore[index]
    assert len({spec, get_device("h100-sxm"), get_device("h100-pcap")}) == 2


def test_every_value_block_carries_a_tagged_source():
    for name in list_devices():
        spec = get_device(name)
        blocks = [*spec.compute, *spec.memory, *spec.links, spec.power]
        for block in blocks:
            assert any(tag in block.source for tag in ("[P]", "[S]", "[D]", "[U]")), (name, block)
        assert any(tag in spec.num_sms_source for tag in ("[P]", "[S]", "[U]")), name


def test_importing_the_module_reads_no_files():
    code = "import hwmodels.devices as d; print(d._catalogue.cache_info().currsize)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "0"


# ----------------------------------------------------------------------------- user files and schema

FPGA = """\
schema_version: 1
name: u280-example
vendor: amd
family: fpga
arch_class: ultrascale+
num_sms: 1
num_sms_source: "one engine [U]"
compute:
  - name: dsp
    count: 9024
    clock_hz: 225e6
    peak_flops_per_s: {int8: 8.1e12}
    source: "9,024 DSPs [S]; 2 int8 MAC/DSP/cycle x 2 op x 225 MHz [D]"
memory:
  - {name: bram_uram, role: on_chip, capacity_bytes: 42991616, bandwidth_bytes_per_s: null, source: "~41 MB [S/U]"}
  - {name: hbm2, role: main, capacity_bytes: 8589934592, bandwidth_bytes_per_s: 460e9, source: "[P] UG1393"}
  - {name: ddr4, role: ddr, capacity_bytes: 34359738368, bandwidth_bytes_per_s: 38e9, source: "[D/U]"}
links:
  - {name: pcie, kind: pcie, bandwidth_bytes_per_s: 16e9, latency_s: 2e-6, source: "[U]"}
power:
  tdp_w: 225
  idle_fraction_of_tdp: 0.1
  source: "[U]"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_an_fpga_fits_the_same_shape(tmp_path):
    spec = load_device_file(_write(tmp_path, FPGA))
    assert spec.family == "fpga" and spec.compute[0].clock_hz == 225e6
    assert [t.role for t in spec.memory] == ["on_chip", "main", "ddr"]
    assert spec.memory_capacity_bytes == 8 * 2**30 and spec.on_chip_bytes == 42991616
    assert spec.scale_up_link.kind == "pcie"
    assert spec.power.idle_w == pytest.approx(22.5) and "[U]" in spec.power.source
    with pytest.raises(MissingDataError):
        spec.peak_flops("bf16")


@pytest.mark.parametrize("old,new,key", [
    ("    clock_hz: 225e6\n", "    clock_hz: 225e6\n    colour: red\n", "colour"),
    ("bandwidth_bytes_per_s: 460e9", "bandwidth_bytes_per_s: -1", "bandwidth_bytes_per_s"),
    ("capacity_bytes: 8589934592", "capacity_bytes: -1", "capacity_bytes"),
    ("num_sms: 1\n", "", "num_sms"),
    ("  tdp_w: 225\n", "", "tdp_w"),
    ("family: fpga", "family: tpu", "family"),
    ("schema_version: 1", "schema_version: 2", "schema_version"),
    ("{int8: 8.1e12}", "{int3: 8.1e12}", "peak_flops_per_s"),
    ("role: ddr", "role: disk", "role"),
    ("kind: pcie", "kind: pigeon", "kind"),
    ("  idle_fraction_of_tdp: 0.1\n", "", "idle_w"),
    ("num_sms: 1\n", "num_sms: 1\nnum_sms: 2\n", "num_sms"),
])
def test_malformed_files_raise_config_errors_naming_file_and_key(tmp_path, old, new, key):
    assert old in FPGA
    path = _write(tmp_path, FPGA.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_device_file(path)
    message = str(info.value)
    assert str(path) in message and key in message


def test_negative_bandwidth_message_names_the_tier(tmp_path):
    path = _write(tmp_path, FPGA.replace("bandwidth_bytes_per_s: 460e9", "bandwidth_bytes_per_s: -1"))
    with pytest.raises(ConfigError, match=r"memory\[1\]: `bandwidth_bytes_per_s` must be > 0, got -1"):
        load_device_file(path)


def test_memory_must_be_ordered_fastest_first(tmp_path):
    faster_ddr = FPGA.replace("bandwidth_bytes_per_s: 38e9", "bandwidth_bytes_per_s: 900e9")
    with pytest.raises(ConfigError, match="fastest first"):
        load_device_file(_write(tmp_path, faster_ddr))
    host_first = FPGA.replace("role: on_chip, capacity_bytes: 42991616, bandwidth_bytes_per_s: null",
                              "role: host, capacity_bytes: 42991616, bandwidth_bytes_per_s: 5e12")
    with pytest.raises(ConfigError, match="fastest first"):
        load_device_file(_write(tmp_path, host_first))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_device_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_device_file(_write(tmp_path, "name: [unclosed\n"))


def test_constructors_validate_with_named_messages():
    with pytest.raises(ConfigError, match=r"`capacity_bytes` must be > 0, got -1"):
        MemoryTier(name="hbm", role="main", capacity_bytes=-1, bandwidth_bytes_per_s=1e12, source="[U]")
    with pytest.raises(ConfigError, match="required for a 'main' tier"):
        MemoryTier(name="hbm", role="main", capacity_bytes=1, bandwidth_bytes_per_s=None, source="[U]")
    with pytest.raises(ConfigError, match="`count` must be > 0"):
        ComputeUnit(name="t", count=0, peak_flops_per_s={"bf16": 1.0}, source="[U]")
    with pytest.raises(ConfigError, match="`latency_s` must be >= 0"):
        Link(name="l", kind="pcie", bandwidth_bytes_per_s=1.0, latency_s=-1.0, source="[U]")
    with pytest.raises(ConfigError, match="`idle_w` must be < tdp_w"):
        PowerSpec(idle_w=500, tdp_w=400, source="[U]")
    with pytest.raises(ConfigError, match="`compute_clock_scale`"):
        dataclasses.replace(get_device("h100"), compute_clock_scale=1.5)
    with pytest.raises(ConfigError, match="exactly one 'main'"):
        dataclasses.replace(get_device("h100"), memory=get_device("h100").memory[:1])
    assert isinstance(get_device("h100"), DeviceSpec)


# ------------------------------------------------------------------ Ada / RTX Blackwell cards

def test_rtx_cards_headline_numbers_and_classes():
    r4090 = get_device("NVIDIA GeForce RTX 4090")
    assert r4090.arch_class == get_device("l40s").arch_class == "ada"
    assert r4090.num_sms == 128 and r4090.memory_capacity_bytes == 24 * 2**30
    assert r4090.memory_bandwidth_bytes_per_s == pytest.approx(1008e9)
    assert r4090.power.tdp_w == 450 and r4090.scale_up_link.kind == "pcie"
    pro = get_device("NVIDIA RTX PRO 6000 Blackwell Server Edition")
    assert pro.arch_class == "blackwell-consumer" != get_device("b200").arch_class
    assert pro.num_sms == 188 and pro.memory_capacity_bytes == 96 * 2**30
    assert 1.6e12 <= pro.memory_bandwidth_bytes_per_s * 1.002 and pro.memory_bandwidth_bytes_per_s <= 1.8e12
    assert pro.power.tdp_w == 600 and pro.scale_up_link.kind == "pcie"
    assert pro.host_link.bandwidth_bytes_per_s == 2 * r4090.host_link.bandwidth_bytes_per_s  # PCIe 5 vs 4


def test_geforce_halves_fp16_tensor_throughput_with_fp32_accumulate():
    r4090 = get_device("rtx-4090")
    # bf16 always accumulates in FP32: the default peak is the FP32-accumulate figure (what vLLM runs)
    assert r4090.peak_flops("bf16") == pytest.approx(165.2e12)
    assert r4090.peak_flops("fp16") == pytest.approx(165.2e12)
    assert r4090.peak_flops("fp16", accumulate="fp16") == pytest.approx(330.3e12)
    assert r4090.peak_flops("fp8", accumulate="fp16") == pytest.approx(2 * r4090.peak_flops("fp8"))
    with pytest.raises(ConfigError, match="fp16.*products only.*bf16"):
        r4090.peak_flops("bf16", accumulate="fp16")
    with pytest.raises(ConfigError, match="`accumulate` must be one of"):
        r4090.peak_flops("fp16", accumulate="fp8")
    # datacenter and professional parts run both accumulators at one rate
    for name in ("h100", "l40s", "rtx-pro-6000"):
        d = get_device(name)
        assert d.peak_flops("fp16", accumulate="fp16") == d.peak_flops("fp16")


def test_fp16_accumulate_peaks_are_validated():
    base = dict(name="tensor", count=1, source="x [U]")
    with pytest.raises(ConfigError, match="key must be one of fp16, fp8, got 'bf16'"):
        ComputeUnit(**base, peak_flops_per_s={"bf16": 1e12}, fp16_accumulate_peak_flops_per_s={"bf16": 2e12})
    with pytest.raises(ConfigError, match="needs a `peak_flops_per_s.fp16`"):
        ComputeUnit(**base, peak_flops_per_s={"bf16": 1e12}, fp16_accumulate_peak_flops_per_s={"fp16": 2e12})
    with pytest.raises(ConfigError, match="must be >= the FP32-accumulate peak"):
        ComputeUnit(**base, peak_flops_per_s={"fp16": 2e12}, fp16_accumulate_peak_flops_per_s={"fp16": 1e12})
    unit = ComputeUnit(**base, peak_flops_per_s={"fp16": 1e12}, fp16_accumulate_peak_flops_per_s={"fp16": 2e12})
    assert hash(unit) == hash(ComputeUnit(**base, peak_flops_per_s={"fp16": 1e12},
                                          fp16_accumulate_peak_flops_per_s={"fp16": 2e12}))
