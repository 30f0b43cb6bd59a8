"""FPGA engines (hwmodels/fpga.py) against their papers' figures. Published values appear only here, in
the comparisons, each with its source; the models read datasheet/engine parameters alone."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

import llmsim
from llmsim.cli import main
from llmsim.hwmodels.backend import make_deployment
from llmsim.hwmodels.fpga import FpgaDeployment
from llmsim.validation.published import fpga_decode, fpga_prefill_seconds
from llmsim.workloads.errors import ConfigError


def within(pred, pub, tol):
    return abs(pred - pub) / pub <= tol


@pytest.fixture(scope="module")
def accllm():
    return fpga_decode("u280-accllm")


@pytest.fixture(scope="module")
def flightllm():
    return fpga_decode("u280-flightllm")


def test_devices_build_their_engine_backend():
    for dev in ("u280-accllm", "u280-flightllm", "vhk158-flightllm"):
        dep = make_deployment("llama-2-7b", dev, quant="auto", max_num_seqs=1)
        assert isinstance(dep, FpgaDeployment) and dep.device.name == dev


def test_accllm_batch1_decode(accllm):
    tps, w = accllm
    # AccLLM (arXiv 2505.03745) Table VII: 164 token/s, 33 W, 4.96 token/J
    assert within(tps, 164, 0.15), tps
    assert within(w, 33, 0.20), w
    assert within(tps / w, 4.96, 0.25), tps / w


@pytest.mark.xfail(strict=True, reason="measured 45.8 token/s vs 55 published (-16.7%): the authors' INT8 IR "
                                       "weights at 65.9% HBM utilisation give less than the board run")
def test_flightllm_u280_throughput(flightllm):
    assert within(flightllm[0], 55, 0.15)  # FlightLLM (FPGA'24) Fig. 1: 55 token/s on U280


@pytest.mark.xfail(strict=True, reason="measured 29.9 W vs 45 W published (-33.5%): static 20 W [U] + HBM and "
                                       "MAC energy leave out the design's fabric (LUT/clock) power")
def test_flightllm_u280_power(flightllm):
    assert within(flightllm[1], 45, 0.20)  # AccLLM Table VII: FlightLLM 45 W


def test_accllm_over_flightllm_ratios(accllm, flightllm):
    # AccLLM abstract: 2.98x throughput, 4.07x energy efficiency over FlightLLM on the U280
    assert within(accllm[0] / flightllm[0], 2.98, 0.20)
    assert within((accllm[0] / accllm[1]) / (flightllm[0] / flightllm[1]), 4.07, 0.20)


# flightllm_test_demo profile/README.md, VHK158 software profiling model (decode token/s)
@pytest.mark.parametrize("prompt, decode, published", [
    pytest.param(128, 512, 103.5, marks=pytest.mark.xfail(strict=True, reason="measured 86.5 token/s (-16.4%)")),
    (128, 1536, 95.4), (512, 1024, 93.5)])
def test_flightllm_vhk158_decode(prompt, decode, published):
    assert within(fpga_decode("vhk158-flightllm", prompt, decode)[0], published, 0.15)


@pytest.mark.parametrize("tokens, published_ms", [(128, 289.9), (512, 1181.4)])
def test_flightllm_vhk158_prefill(tokens, published_ms):
    assert within(fpga_prefill_seconds("vhk158-flightllm", tokens) * 1e3, published_ms, 0.20)


def test_lambda_attention_bounds_the_kv_read():
    acc = make_deployment("llama-2-7b", "u280-accllm", quant="auto", max_num_seqs=1)
    assert acc.iteration([], [], [2000])[0] == acc.iteration([], [], [30000])[0]
    fl = make_deployment("llama-2-7b", "u280-flightllm", quant="auto", max_num_seqs=1)
    assert fl.iteration([], [], [2000])[0] > fl.iteration([], [], [500])[0]


def test_limits_name_the_limit():
    with pytest.raises(ConfigError, match="only the w2a8kv4 format"):
        make_deployment("llama-2-7b", "u280-accllm", quant="bf16")
    with pytest.raises(ConfigError, match="max_batch"):
        make_deployment("llama-2-7b", "u280-accllm", quant="auto", max_num_seqs=256)
    dep = make_deployment("llama-2-7b", "u280-flightllm", quant="auto", max_num_seqs=1)
    with pytest.raises(ConfigError, match="max_batch 8"):
        dep.iteration([], [], [100] * 9)
    with pytest.raises(ConfigError, match="max_context 2048"):
        dep.iteration([], [], [3000])
    with pytest.raises(ConfigError, match="one card"):
        make_deployment("llama-2-7b", "u280-accllm", quant="auto", tp=2)
    with pytest.raises(ConfigError, match="dense decoder"):
        make_deployment("mixtral-8x7b", "u280-accllm", quant="auto")


def test_u280_through_simulate_run_and_api():
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["run", "--device", "u280-accllm", "--model", "llama-2-7b", "--tp", "1", "--quant", "w2a8kv4",
                   "--max-batch-size", "4", "--num-requests", "12", "--json"])
    assert rc in (0, None)
    s = json.loads(out.getvalue())
    assert s["deployment"]["device"] == "u280-accllm" and s["requests_completed"] == 12 and s["energy_j"] > 0
    r = llmsim.simulate(llmsim.Scenario(model="llama-2-7b", device="u280-accllm", tp=1, quant="w2a8kv4",
                                        serving={"max_batch_size": 4}, num_requests=12))
    assert r.metrics.tpot_mean_s == pytest.approx(s["tpot_mean_s"])


def test_gpu_prefill_fpga_decode_disaggregated():
    out = io.StringIO()
    with redirect_stdout(out):
        main(["run", "--disagg", "--device", "h100", "--decode-device", "u280-accllm", "--tp", "1",
              "--prefill-tp", "1", "--decode-tp", "1", "--model", "llama-2-7b", "--quant", "w2a8kv4",
              "--max-batch-size", "4", "--kv-link", "pcie", "--num-requests", "12", "--json"])
    s = json.loads(out.getvalue())
    assert s["decode_pool"]["device"] == "u280-accllm" and s["prefill_pool"]["device"] == "h100-sxm"
    assert s["requests_completed"] == 12
    # the KV of one token (int4 + scales) over the slower PCIe link of the pair (U280 Gen3 x16, 16 GB/s)
    assert s["kv_transfer_s_per_token"] == pytest.approx(32 * 2 * 4096 * 0.5625 / 16e9)
