"""SN40L RDU (hwmodels/rdu.py) and Samba-CoE against the papers' figures. Published values appear only in
these comparisons, each with its source."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from llmsim.cli import main
from llmsim.hwmodels.backend import make_deployment
from llmsim.hwmodels.rdu import RduDeployment, switch_seconds
from llmsim.validation.published import coe_results
from llmsim.workloads.errors import ConfigError


def within(pred, pub, tol):
    return abs(pred - pub) / pub <= tol


def test_llama31_8b_switch_on_a_rack():
    dep = make_deployment("llama-3.1-8b", "sn40l", tp=16)
    assert isinstance(dep, RduDeployment)
    # Hot Chips 2024 SN40L talk, slide 3: ~0.01 s to switch Llama-3.1-8B on 16 sockets
    assert within(dep.switch_seconds(), 0.01, 0.50), dep.switch_seconds()
    assert switch_seconds(dep.weight_bytes_per_device * 16, "sn40l", 8) == pytest.approx(2 * dep.switch_seconds())


def test_llama3_8b_single_stream_decode_on_a_node():
    t = make_deployment("llama-3-8b", "sn40l", tp=8).iteration([], [], [1024])[0]
    assert within(1.0 / t, 430, 0.25), 1.0 / t  # SambaNova guest post, LanceDB blog 2024-05-01: 430 token/s


@pytest.mark.parametrize("gpu", ["H100", "A100"])
def test_coe_switching_speedup_inside_the_published_range(gpu):
    (sn, _), (dgx, _) = coe_results(gpu)
    x = dgx.switch_s / sn.switch_s
    # SN40L (arXiv 2405.07518) abstract: model switching 15-31x faster than DGX H100 / A100 (integers)
    assert 15 <= round(x) <= 31, x


@pytest.mark.parametrize("gpu, published", [
    pytest.param("H100", 3.7, marks=pytest.mark.xfail(strict=True, reason="measured 1.60x vs 3.7x: with Zipf(1) "
                 "popularity and 512/256-token requests the DGX spends only ~9% of its time switching")),
    pytest.param("A100", 6.6, marks=pytest.mark.xfail(strict=True, reason="measured 2.12x vs 6.6x: switching is "
                 "~14% of the DGX A100's time in our workload"))])
def test_coe_overall_speedup(gpu, published):
    (_, sn), (_, dgx) = coe_results(gpu)
    assert within(dgx.total_s / sn.total_s, published, 0.30)  # SN40L abstract: 3.7x (H100), 6.6x (A100)


def test_fusion_raises_operational_intensity_and_speed():
    fused = make_deployment("llama-3-8b", "sn40l", tp=8)
    unfused = make_deployment("llama-3-8b", "sn40l", tp=8, fusion="none")
    batch = ([2048], [0], [])
    assert fused.operational_intensity(*batch) > 2 * unfused.operational_intensity(*batch)
    assert unfused.iteration([], [], [512])[0] > 2 * fused.iteration([], [], [512])[0]


def test_weights_past_hbm_spill_to_ddr():
    big = make_deployment("deepseek-v3", "sn40l", tp=16)
    assert 0 < big.hbm_weight_fraction < 1
    assert make_deployment("llama-3-8b", "sn40l", tp=8).hbm_weight_fraction == 1.0
    with pytest.raises(ConfigError, match="tp"):
        make_deployment("llama-3-8b", "sn40l", tp=3)


def test_sn40l_node_through_simulate_run():
    out = io.StringIO()
    with redirect_stdout(out):
        main(["run", "--device", "sn40l", "--num-devices", "8", "--tp", "8", "--model", "llama-3-8b",
              "--num-requests", "10", "--json"])
    s = json.loads(out.getvalue())
    assert s["deployment"]["device"] == "sn40l" and s["num_devices"] == 8 and s["requests_completed"] == 10
