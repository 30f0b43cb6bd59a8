"""Achieved-peak priors (hwmodels/priors.py) and the achieved-roofline profile mode."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from llmsim.hwmodels import priors
from llmsim.hwmodels.calibration import default_profile, profile_from_json
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.hwmodels.deployment import Deployment
from llmsim.hwmodels.devices import get_device, list_devices, with_power_cap
from llmsim.validation.calibrate import merge_profiles
from llmsim.workloads.errors import ConfigError


def test_every_share_is_in_unit_interval_and_every_gpu_class_resolves():
    table = priors.priors()
    assert "" in table and {"ampere", "hopper", "ada", "blackwell-consumer", "blackwell"} <= set(table)
    for comp, mem in table.values():
        assert 0.0 < mem <= 1.0 and "default" in comp
        assert all(0.0 < v <= 1.0 for v in comp.values())
    for name in list_devices():
        d = get_device(name)
        c, m = priors.roofline_shares(d.arch_class, "bf16")
        assert 0.0 < c <= 1.0 and 0.0 < m <= 1.0


def test_dtype_share_and_inferred_dtype():
    h100 = get_device("h100")
    c16, _ = priors.roofline_shares("hopper", "bf16")
    c8, _ = priors.roofline_shares("hopper", "fp8")
    assert c8 < c16  # FP8 runs twice the tensor rate under the same power limit
    dev = np.array([h100.peak_flops("fp8"), h100.memory_bandwidth_bytes_per_s, 132.0, 1.0])
    out = priors.achieved_vector(h100, dev)
    assert out[0] == pytest.approx(dev[0] * c8) and out[2:].tolist() == dev[2:].tolist()
    assert dev[0] == h100.peak_flops("fp8")  # the input is not modified


def test_datasheet_profile_passes_the_vector_through():
    prof = default_profile()
    assert prof.roofline == "datasheet" and "roofline" not in prof.to_json()
    dev = np.array([1e15, 3e12, 132.0, 4.5e11])
    assert prof.device_vector(get_device("h100"), dev) is dev


def _gemm_rows(device: str) -> pd.DataFrame:
    m = np.array([1, 16, 256, 4096, 8192], dtype=float)
    return pd.DataFrame({"device": device, "kind": "gemm", "dtype": "bf16", "m": m, "n": 8192.0, "k": 8192.0,
                         "measured_s": np.nan, "source": "", "kv_dtype": "", "kernel": "", "variant": "",
                         "shape_key": [f"k{i}" for i in range(len(m))]})


def test_achieved_roofline_prices_no_faster_and_keeps_work_monotone():
    ds = default_profile()
    ach = dataclasses.replace(ds, roofline="achieved")
    a = OperatorCostModel(ds).price(_gemm_rows("h100")).seconds
    b = OperatorCostModel(ach).price(_gemm_rows("h100")).seconds
    assert np.all(np.isfinite(a)) and np.all(b >= a) and b[-1] > a[-1]
    assert np.all(np.diff(b) > 0)  # time grows with the work
    # a power-capped H100 (lower sustained peak) is never faster on the achieved roofline
    capped = with_power_cap(get_device("h100"), 0.5)
    c = OperatorCostModel(ach).price(_gemm_rows("h100"), device=capped).seconds
    assert np.all(c >= b) and c[-1] > b[-1]


def test_profile_json_round_trip_and_bad_value():
    data = default_profile().to_json()
    data["roofline"] = "achieved"
    assert profile_from_json(json.loads(json.dumps(data))).roofline == "achieved"
    data["roofline"] = "measured"
    with pytest.raises(ConfigError, match="roofline"):
        profile_from_json(data)


def test_merge_refuses_mixed_rooflines():
    ds = default_profile()
    with pytest.raises(ConfigError, match="roofline"):
        merge_profiles(ds, dataclasses.replace(ds, roofline="achieved"), ("ada",))


def test_deployment_device_vector_follows_the_profile():
    ds = default_profile()
    a = Deployment("llama-3.1-8b", "h100", profile=ds)
    b = Deployment("llama-3.1-8b", "h100", profile=dataclasses.replace(ds, roofline="achieved"))
    c16, m = priors.roofline_shares("hopper", "bf16")
    priced = a._nnet == 0
    assert np.allclose(b._dev[priced, 0], a._dev[priced, 0] * c16)
    assert np.allclose(b._dev[priced, 1], a._dev[priced, 1] * m)
    t_a, _ = a.iteration(np.array([512], np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    t_b, _ = b.iteration(np.array([512], np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    assert t_b > t_a
