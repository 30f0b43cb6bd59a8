"""The activation-quantisation pass of a quantised-activation GEMM priced by 16-bit coefficients
(hwmodels/costmodel.py ``needs_quant_pass``): added where the coefficients never ran it, never where
the format's own coefficients (fitted on layers that include it) price the GEMM."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmsim.hwmodels.calibration import default_profile
from llmsim.hwmodels.costmodel import (QUANT_PASS_SUFFIX, OperatorCostModel, needs_quant_pass,
                                       quant_pass_bytes_per_element, quant_pass_params)
from llmsim.hwmodels.deployment import Deployment
from llmsim.hwmodels.devices import get_device
from llmsim.hwmodels.uncertainty import default_error_model


def _rows(device: str, dtype: str, m=(1.0, 64.0, 4096.0), k=4096.0) -> pd.DataFrame:
    m = np.asarray(m, dtype=float)
    return pd.DataFrame({"device": device, "kind": "gemm", "dtype": dtype, "m": m, "n": 4096.0, "k": k,
                         "measured_s": np.nan, "source": "", "kv_dtype": "", "kernel": "", "variant": "",
                         "shape_key": [f"q{i}" for i in range(len(m))]})


def test_rule():
    assert needs_quant_pass("fp8", "ada/gemm/bf16")
    assert needs_quant_pass("int8", "generic/gemm/bf16:torch")
    assert not needs_quant_pass("fp8", "hopper/gemm/fp8:cutlass")  # fitted on layers that include it
    assert not needs_quant_pass("bf16", "ada/gemm/bf16")
    assert quant_pass_bytes_per_element("fp8") == 3.0 and quant_pass_bytes_per_element("fp4") == 2.5


def test_kernel_rows_add_floor_plus_memory_time_where_bf16_coefficients_price_fp8():
    model = OperatorCostModel()
    dev = get_device("rtx-4090")
    fp8 = model.price(_rows("rtx-4090", "fp8"))
    assert all(k.endswith(QUANT_PASS_SUFFIX) for k in fp8.param_key)
    assert set(fp8.fallback) == {"family"}
    # the same GEMM part: an fp8 row priced by bf16 coefficients on the fp8 peak, without the pass
    p, _ = quant_pass_params(default_profile(), dev.arch_class)
    elems = np.array([1.0, 64.0, 4096.0]) * 4096.0
    expected_pass = math.exp(p.log_floor) + elems * 3.0 / dev.memory_bandwidth_bytes_per_s
    gemm_only = fp8.seconds - expected_pass
    assert np.all(gemm_only > 0)
    np.testing.assert_allclose(np.diff(fp8.seconds - gemm_only), np.diff(expected_pass), rtol=1e-9)
    # H100 fp8 rows are priced by the H100's own fp8 entry: no pass added
    h = model.price(_rows("h100", "fp8"))
    assert not any(k.endswith(QUANT_PASS_SUFFIX) for k in h.param_key)
    # the band of such a row is its GEMM entry's
    em = default_error_model()
    assert em.band(fp8.param_key[1], "gemm", float(fp8.seconds[1]), "family")[:2] == \
        em.band(fp8.param_key[1].removesuffix(QUANT_PASS_SUFFIX), "gemm", float(fp8.seconds[1]), "family")[:2]


@pytest.mark.parametrize("device,has_pass", [("l40s", True), ("h100", False)])
def test_deployment_runs_the_pass_as_an_op_of_its_own(device, has_pass):
    d = Deployment("llama-3.1-8b", device, tp=1, quant="fp8", engine="vllm")
    passes = [n for n in d.op_names if n.endswith("_act_quant")]
    assert bool(passes) == has_pass
    if not has_pass:
        return
    assert {n.removesuffix("_act_quant") for n in passes} == {"qkv_proj", "o_proj", "mlp_up_proj", "mlp_down_proj"}
    info = d.calibration_info()
    assert all(info["priced_by"][n].endswith(":act_quant") and info["fallback_ops"][n] for n in passes)
    d.iteration(np.array([512], np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    t = dict(zip(d.op_names, d._op_time))
    dev = get_device(device)
    p, _ = quant_pass_params(default_profile(), dev.arch_class)
    layers = d.model.num_layers
    # qkv_proj's input is the 512 x hidden activation: floor + 3 bytes per element over DRAM, every layer
    want = (math.exp(p.log_floor) + 512 * d.model.hidden_size * 3.0 / dev.memory_bandwidth_bytes_per_s) * layers
    assert t["qkv_proj_act_quant"] == pytest.approx(want, rel=1e-9)
    assert t["mlp_down_proj_act_quant"] > t["qkv_proj_act_quant"]  # the down projection's input is wider
