"""Eagerly timed kernel rows (loaders ``timing`` 'eager'): a back-to-back eager call measures
max(host dispatch, GPU time), so a fit on such rows separates the host floor from the GPU's price, and
only rows timed that way pay the host floor (docs/trust.md "Eager-timed rows")."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from llmsim.hwmodels.calibration import ClassParams, default_profile, profile_from_json
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.hwmodels.deployment import Deployment
from llmsim.validation import calibrate as cal
from llmsim.validation.loaders import load_aiconfigurator
from llmsim.workloads.errors import ConfigError

H100_GEMM = "validation/data/kernels/aiconfigurator/h100_sxm/gemm_perf.parquet"


def _gemm_rows(dtype: str, m, timing: str, n=4096.0, k=4096.0) -> pd.DataFrame:
    m = np.asarray(m, dtype=float)
    return pd.DataFrame({"device": "h100-sxm", "kind": "gemm", "dtype": dtype, "m": m, "n": n, "k": k,
                         "measured_s": np.nan, "source": "", "kv_dtype": "", "kernel": "", "variant": "",
                         "timing": timing, "shape_key": [f"e{i}" for i in range(len(m))]})


def test_aiconfigurator_block_fp8_gemms_are_eager_and_the_rest_graph_timed(tmp_path):
    t = load_aiconfigurator(H100_GEMM)
    assert set(t.loc[t["dtype"] == "fp8_block", "timing"]) == {"eager"}
    assert set(t.loc[t["dtype"] != "fp8_block", "timing"]) == {"graph"}
    # a table that says how it was timed is believed
    df = pd.read_parquet(H100_GEMM).head(4).assign(timing=["eager", "graph", "", "eager"])
    df.to_parquet(tmp_path / "gemm_perf.parquet")
    assert list(load_aiconfigurator(tmp_path / "gemm_perf.parquet")["timing"]) == ["eager", "graph", "", "eager"]


def test_fit_recovers_the_host_floor_and_the_gpu_time_under_it():
    rng = np.random.default_rng(7)
    size = np.exp(rng.uniform(np.log(1e-7), np.log(1e-2), 400))  # roofline seconds
    X = np.column_stack([np.ones_like(size), np.log(size)])
    base = np.log(size)
    theta = np.array([1.2, -0.08])                               # efficiency falls with size, a bit
    gpu_floor, host = 4e-6, 8e-5
    gpu = gpu_floor + np.exp(base + X @ theta)
    meas = np.maximum(host, gpu) * np.exp(rng.normal(0.0, 0.01, size.size))
    assert (meas < 1.05 * host).mean() > 0.3                     # many rows say nothing of the GPU
    log_floor, th, mdape, h = cal.fit_class(X, base, meas, floor_s=gpu_floor, host_floor=True)
    assert h == pytest.approx(host, rel=0.03)
    assert math.exp(log_floor) == pytest.approx(gpu_floor)
    fitted = gpu_floor + np.exp(base + X @ th)
    censored = gpu < host
    assert np.max(np.abs(fitted[censored] / gpu[censored] - 1.0)) < 0.1
    assert mdape < 0.02
    # without the host term the same rows give the GPU a floor near the host's
    plain_floor, *_ = cal.fit_class(X, base, meas)
    assert math.exp(plain_floor) > 0.5 * host


def test_unseen_gpu_times_take_the_graph_timed_entry_price():
    rng = np.random.default_rng(11)
    size = np.exp(rng.uniform(np.log(1e-7), np.log(1e-2), 400))
    X = np.column_stack([np.ones_like(size), np.log(size)])
    base = np.log(size)
    ref = ClassParams(math.log(4e-6), np.array([0.9, -0.05]))  # the graph-timed (per-tensor) entry
    gpu = 4e-6 + np.exp(base + X @ np.array([1.0, -0.05]))     # this path: ~10% slower, same shape
    host = 8e-5
    meas = np.maximum(host, gpu) * np.exp(rng.normal(0.0, 0.01, size.size))
    log_floor, th, mdape, h = cal.fit_eager_class(X, base, meas, ref)
    assert h == pytest.approx(host, rel=0.03) and math.exp(log_floor) == pytest.approx(4e-6)
    fitted = 4e-6 + np.exp(base + X @ th)
    seen = gpu > 1.5 * host
    assert np.median(np.abs(fitted[seen] / gpu[seen] - 1.0)) < 0.03          # measured: its own time
    ref_price = 4e-6 + np.exp(base + X @ ref.theta)
    small = size < 1e-6                                                       # far under the host floor
    assert np.median(np.abs(fitted[small] / ref_price[small] - 1.0)) < 0.1   # unseen: the reference's
    assert mdape < 0.03


def test_only_eagerly_timed_rows_pay_the_host_floor():
    p, _ = default_profile().lookup("hopper", "gemm", "fp8_block")
    assert p.host_floor_s > 0
    m = [1.0, 64.0, 8192.0]
    eager = OperatorCostModel().price(_gemm_rows("fp8_block", m, "eager")).seconds
    graph = OperatorCostModel().price(_gemm_rows("fp8_block", m, "graph")).seconds
    np.testing.assert_allclose(eager, np.maximum(graph, p.host_floor_s))
    assert graph[0] < p.host_floor_s                              # a decode-sized GEMM: the GPU is faster
    assert eager[2] == graph[2] > p.host_floor_s                  # a large one: GPU-bound either way


def test_block_fp8_gemms_in_serving_are_priced_without_the_measurement_host_floor():
    prof = default_profile()
    p, _ = prof.lookup("hopper", "gemm", "fp8_block")
    fp8, _ = prof.lookup("hopper", "gemm", "fp8")
    assert math.exp(p.log_floor) == pytest.approx(math.exp(fp8.log_floor))  # GPU floor: per-tensor path's
    decode = OperatorCostModel().price(_gemm_rows("fp8", [8.0], "graph", n=6144.0, k=4096.0)).seconds[0]
    d = Deployment("llama-3.1-8b", "h100", tp=1, quant="fp8_block", engine="vllm")
    d.iteration(np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([1024] * 8, np.int64))
    t = dict(zip(d.op_names, d._op_time))
    per_layer = t["qkv_proj"] / d.model.num_layers
    assert per_layer < p.host_floor_s                            # 8 decode tokens: far under the dispatch floor
    graph = OperatorCostModel().price(_gemm_rows("fp8_block", [8.0], "graph", n=6144.0, k=4096.0)).seconds[0]
    assert per_layer == pytest.approx(graph, rel=1e-6)
    assert graph == pytest.approx(decode, rel=0.25)               # unseen: priced like the per-tensor path


def test_host_floor_round_trips_and_bad_values_are_named():
    data = default_profile().to_json()
    assert data["params"]["hopper"]["gemm"]["fp8_block"]["host_floor_s"] > 0
    assert "host_floor_s" not in data["params"]["hopper"]["gemm"]["bf16"]
    back = profile_from_json(json.loads(json.dumps(data)))
    assert back.lookup("hopper", "gemm", "fp8_block")[0].host_floor_s == \
        default_profile().lookup("hopper", "gemm", "fp8_block")[0].host_floor_s
    data["params"]["hopper"]["gemm"]["fp8_block"]["host_floor_s"] = -1
    with pytest.raises(ConfigError, match="host_floor_s"):
        profile_from_json(data)


def test_gpu_times_under_the_host_floor_are_flagged_extrapolated():
    p, _ = default_profile().lookup("hopper", "gemm", "fp8_block")
    m = [64.0, 8192.0]  # inside the DeepGEMM entry's fitted m range (32 ...)
    graph = OperatorCostModel().price(_gemm_rows("fp8_block", m, "graph"))
    eager = OperatorCostModel().price(_gemm_rows("fp8_block", m, "eager"))
    assert list(graph.extrapolated) == [True, False]   # the small one's GPU time was never measured
    assert not eager.extrapolated.any()                 # as measured: the host floor itself was
    info = Deployment("llama-3.1-8b", "h100", tp=1, quant="fp8_block", engine="vllm").calibration_info()
    assert info["extrapolated"] and set(info["host_floor_ops"]) == {
        "qkv_proj", "o_proj", "mlp_up_proj", "mlp_down_proj"}
    assert all(v == p.host_floor_s for v in info["host_floor_ops"].values())
    plain = Deployment("llama-3.1-8b", "h100", tp=1, quant="fp8", engine="vllm").calibration_info()
    assert "host_floor_ops" not in plain and not plain["extrapolated"]
