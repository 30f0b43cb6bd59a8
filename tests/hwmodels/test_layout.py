"""DeploymentLayout: what a deployment is (plan, formats, memory per tier), apart from its pricing."""
import dataclasses

import pytest

from llmsim.hwmodels.backend import make_deployment
from llmsim.hwmodels.devices import MemoryTier, get_device
from llmsim.hwmodels.layout import DeploymentLayout
from llmsim.workloads.errors import ConfigError, OutOfMemoryError
from llmsim.workloads.models import get_model
from llmsim.workloads.quant import get_kv_format, get_quant_format

GIB = 2**30


def _layout(device="h100", model="llama-3.1-8b", quant="bf16", kv="bf16", **kw):
    return DeploymentLayout.build(get_model(model), get_device(device) if isinstance(device, str) else device,
                                  get_quant_format(quant), get_kv_format(kv), **kw)


def test_deployment_exposes_one_frozen_layout_and_reads_memory_from_it():
    dep = make_deployment("llama-3.1-8b", "h100", tp=2, pp=2, engine="kernels")
    lay = dep.layout
    with pytest.raises(dataclasses.FrozenInstanceError):
        lay.tp = 4
    assert (lay.tp, lay.pp, lay.ep, lay.dp_ep, lay.stage_layers) == (2, 2, 1, 1, (16, 16))
    assert dep.kv_capacity_tokens(0.9) == lay.kv_capacity_tokens(0.9)
    assert dep.weight_bytes_per_device == lay.weight_bytes_per_device
    assert dep.kv_bytes_per_token == lay.kv_bytes_per_token == lay.kv_bytes_per_token_per_device * 4
    assert lay == _layout(tp=2, pp=2)


def test_figures_follow_the_model_config():
    # Llama-3.1-8B: 32 layers, 8 KV heads of 128 dims; bf16 KV = 2 B per element, K and V
    lay = _layout()
    assert lay.kv_bytes_per_token_per_device == 32 * 2 * 8 * 128 * 2
    assert _layout(pp=2).kv_bytes_per_token_per_device == 16 * 2 * 8 * 128 * 2
    assert _layout(tp=2).kv_bytes_per_token_per_device == 32 * 2 * 4 * 128 * 2
    # about 8.0e9 parameters in 16-bit on one device; fp8 halves the layer weights only
    assert lay.weight_bytes_per_device == pytest.approx(2 * 8.03e9, rel=0.01)
    assert _layout(quant="fp8").weight_bytes_per_device < 0.6 * lay.weight_bytes_per_device
    assert lay.activation_dtype == "bf16"


def test_catalogued_gpus_keep_weights_kv_and_activations_in_their_main_tier():
    dev = get_device("h100")
    lay = _layout()
    main = lay.tier_of("kv")
    assert main.tier is dev.main_memory and set(main.holds) == {"weights", "kv", "activations"}
    assert main.capacity_bytes == 80 * GIB and main.bandwidth_bytes_per_s == 3.35e12
    assert [t.tier.name for t in lay.tiers] == [t.name for t in dev.memory]
    assert all(t.holds == () for t in lay.tiers if t.tier.role == "on_chip")
    free = 0.9 * 80 * GIB - lay.weight_bytes_per_device - lay.activation_reserve_bytes
    assert lay.kv_capacity_tokens(0.9) == int(free // lay.kv_bytes_per_token_per_device)
    d = lay.describe()
    assert d["tiers"][1]["holds"] == ["weights", "kv", "activations"] and d["stage_layers"] == [32]


def _with_ddr(capacity_bytes):
    dev = get_device("h100")
    ddr = MemoryTier(name="ddr5", role="ddr", capacity_bytes=capacity_bytes, bandwidth_bytes_per_s=400e9,
                     source="test tier [U]")
    return dataclasses.replace(dev, name="h100-ddr-test", aliases=(), profiler_names=(), memory=(*dev.memory, ddr))


def test_weights_in_another_tier_leave_their_bytes_to_the_kv_cache():
    dev = _with_ddr(512 * GIB)
    shared = _layout(dev)
    apart = _layout(dev, weights_tier="ddr5")
    assert apart.tier_of("weights").tier.name == "ddr5" and apart.tier_of("kv").holds == ("kv", "activations")
    gained = apart.kv_capacity_tokens(0.9) - shared.kv_capacity_tokens(0.9)
    assert gained == pytest.approx(shared.weight_bytes_per_device / shared.kv_bytes_per_token_per_device, abs=1)
    with pytest.raises(OutOfMemoryError, match="ddr5") as e:
        _layout(_with_ddr(GIB), weights_tier="ddr5").kv_capacity_tokens(0.9)
    assert e.value.required_bytes > e.value.available_bytes == GIB
    with pytest.raises(ConfigError, match="no memory tier 'sram'.*l2, hbm3"):
        _layout(weights_tier="sram")


def test_too_big_a_model_is_an_out_of_memory_error_with_its_figures():
    with pytest.raises(OutOfMemoryError) as e:
        _layout(model="llama-3.1-70b").kv_capacity_tokens(0.9)
    assert e.value.required_bytes > e.value.available_bytes == pytest.approx(0.9 * 80 * GIB)
