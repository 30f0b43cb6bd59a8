"""The front door: ``llmsim.Scenario`` -> ``llmsim.simulate`` -> ``llmsim.Result`` (llmsim/api.py)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import llmsim
from llmsim.cli import main as cli_main
from llmsim.sim.config import config_from_dict
from llmsim.workloads import errors


def _outside(code: str) -> subprocess.CompletedProcess:
    """``code`` run by this interpreter from /tmp, where only the installed package can be imported."""
    return subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=300)


def test_doctest_from_outside_the_repository():
    r = _outside(
        "import doctest, llmsim, llmsim.api\n"
        "r = llmsim.simulate(llmsim.Scenario(model='llama-3.1-8b', device='h100', workload='azure-code',"
        " num_requests=200))\n"
        "assert r.metrics.ttft_p99_s > 0, r.metrics\n"
        "assert r.metrics.requests_completed == 200, r.metrics\n"
        "failed, tried = doctest.testmod(llmsim.api)\n"
        "assert tried and not failed, (failed, tried)\n"
        "print('ok')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_import_is_light_and_bare_folder_names_are_not_packages():
    r = _outside(
        "import sys, importlib.util, llmsim\n"
        "assert llmsim.__version__\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'numba', 'pandas', 'scipy')]\n"
        "assert not heavy, heavy\n"
        "bare = [n for n in ('sim', 'hwmodels', 'workloads', 'search', 'validation') if importlib.util.find_spec(n)]\n"
        "assert not bare, bare\n"
        "print('ok')\n")
    assert r.returncode == 0, r.stderr


def test_same_numbers_as_the_command_line(capsys):
    assert cli_main(["run", "--json", "--num-requests", "50"]) == 0
    printed = json.loads(capsys.readouterr().out)
    got = llmsim.simulate(llmsim.Scenario(num_requests=50)).to_dict()
    printed.pop("config")
    config = got.pop("config")
    assert got == printed
    assert config["deployment"]["model"] == "llama-2-70b" and config["workload"]["num_requests"] == 50


def test_scenario_maps_onto_the_run_config():
    sc = llmsim.Scenario(model="llama-3.1-8b", device="a100", num_devices=4, tp=2, engine="vllm-0.6",
                         trace="x.csv", rate=2.5, num_requests=10, seed=3,
                         serving={"scheduler": "sarathi", "max_batch_size": 64}, slo={"ttft_s": 0.5})
    cfg = sc.to_config()
    d = cfg.deployment
    assert (d.model, d.device, d.num_devices, d.tp, d.pp, d.engine, d.replicas) == \
        ("llama-3.1-8b", "a100", 4, 2, 1, "vllm-0.6", 2)
    w = cfg.workload
    assert (w.name, w.trace, w.rate, w.num_requests) == (None, "x.csv", 2.5, 10)
    assert cfg.seed == 3 and cfg.serving.scheduler == "sarathi" and cfg.serving.max_batch_size == 64
    assert cfg.slo.ttft_s == 0.5 and cfg.slo.tpot_s is None
    # what a scenario leaves None is the config's default
    assert llmsim.Scenario().to_config() == config_from_dict({})


def test_scenario_and_result_are_frozen():
    sc = llmsim.Scenario(num_requests=20, serving={"block_size": 16})
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.model = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        sc.serving["block_size"] = 32  # type: ignore[index]
    r = llmsim.simulate(sc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.metrics = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.metrics.ttft_p99_s = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.summary["ttft_p99_s"] = 0.0  # type: ignore[index]


def test_metrics_from_the_summary():
    r = llmsim.simulate(llmsim.Scenario(num_requests=40, slo={"ttft_s": 0.1, "tpot_s": 0.05}))
    m, s = r.metrics, r.summary
    for f in dataclasses.fields(m):
        if f.name in s:
            assert getattr(m, f.name) == s[f.name], f.name
    assert m.requests_completed == 40 and m.requests_rejected == 0
    assert m.goodput_requests_per_s is not None and 0 <= m.slo_attainment <= 1
    assert m.e2e_p90_s is None  # the streaming summary has no p90 of e2e
    assert m.prefix_cache_hit_rate is not None
    assert m.ttft_p50_s <= m.ttft_p90_s <= m.ttft_p99_s
    assert set(m.to_dict()) == {f.name for f in dataclasses.fields(m)}
    with pytest.raises(llmsim.ConfigError, match="keep_requests"):
        r.requests_frame()
    assert llmsim.simulate(llmsim.Scenario(num_requests=40)).metrics.goodput_requests_per_s is None


def test_requests_frame_when_records_are_kept():
    r = llmsim.simulate(llmsim.Scenario(num_requests=30, keep_requests=True))
    frame = r.requests_frame()
    assert len(frame) == 30
    assert {"arrival_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens"} <= set(frame.columns)
    e2e = (frame["finish_s"] - frame["arrival_s"]).to_numpy()
    assert r.metrics.e2e_p50_s <= r.metrics.e2e_p90_s <= r.metrics.e2e_p99_s
    assert r.metrics.e2e_p90_s == pytest.approx(float(__import__("numpy").percentile(e2e, 90)))


def test_errors_are_the_projects_typed_exceptions():
    for name in ("ConfigError", "PlanError", "OutOfMemoryError", "UnknownNameError", "LLMSimError"):
        assert getattr(llmsim, name) is getattr(errors, name)
    with pytest.raises(llmsim.UnknownNameError):
        llmsim.simulate(llmsim.Scenario(model="no-such-model"))
    with pytest.raises(llmsim.ConfigError):
        llmsim.simulate(llmsim.Scenario(tp=3, num_devices=8))
    with pytest.raises(llmsim.ConfigError):
        llmsim.simulate(llmsim.Scenario(serving={"no_such_knob": 1}))
    with pytest.raises(llmsim.ConfigError):
        llmsim.Scenario(slo=0.5)  # type: ignore[arg-type]
    with pytest.raises(llmsim.OutOfMemoryError):
        llmsim.simulate(llmsim.Scenario(model="llama-2-70b", tp=1, num_requests=5))
    with pytest.raises(llmsim.PlanError):
        llmsim.simulate(llmsim.Scenario(model="llama-2-70b", tp=3, num_devices=3, num_requests=5))
    with pytest.raises(llmsim.ConfigError):
        llmsim.simulate({"model": "llama-2-70b"})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        llmsim.no_such_name  # noqa: B018


def test_the_library_and_the_command_line_default_to_one_engine():
    from llmsim.hwmodels.engines import DEFAULT_ENGINE, get_engine
    from llmsim.sim.config import DeploymentSection, RunConfig

    assert DeploymentSection().engine == DEFAULT_ENGINE == RunConfig().deployment.engine
    assert llmsim.Scenario().to_config().deployment.engine == DEFAULT_ENGINE
    assert get_engine(DEFAULT_ENGINE).name == "vllm-v1"


def test_build_then_simulate_equals_simulate_and_the_command_line():
    sc = llmsim.Scenario(model="llama-3.1-8b", device="h100", tp=1, num_requests=40)
    built = llmsim.build(sc)
    assert len(built.deployments) == 1 and len(built.replicas) == 1 and len(built.trace) == 40
    assert built.deployments[0].engine.name == "vllm-v1"
    assert llmsim.simulate(built).to_dict() == llmsim.simulate(sc).to_dict()


def test_scenario_expresses_what_the_validations_need():
    import numpy as np

    from llmsim.hwmodels.engines import get_engine

    arrays = {"arrival_s": np.linspace(0, 2, 12), "prompt_tokens": np.full(12, 300), "output_tokens": np.full(12, 20)}
    base = dict(model="llama-3.1-8b", device="h100", tp=1, engine=get_engine("vllm-0.6"), trace=arrays,
                router="least-outstanding", serving={"max_batch_size": 4, "max_batched_tokens": 1024})
    built = llmsim.build(llmsim.Scenario(**base, kv_blocks=64))
    rc = built.replicas[0]
    assert rc.num_blocks == 64 and rc.scheduler.max_num_seqs == 4 and rc.scheduler.max_num_batched_tokens == 1024
    assert built.run.router == "least-outstanding" and built.deployments[0].engine.name == "vllm-0.6"
    r = llmsim.simulate(built)
    assert r.metrics.requests_completed == 12 and r.config.to_dict()["deployment"]["engine"] == "vllm-0.6"
    tokens = llmsim.build(llmsim.Scenario(**base, kv_capacity_tokens=2048)).replicas[0]
    assert tokens.num_blocks * tokens.block_size == 2048
    static = llmsim.simulate(llmsim.Scenario(model="llama-3.1-8b", device="h100", tp=1,
                                             static_batch={"batch_size": 4, "prompt_tokens": 128, "output_tokens": 8}))
    s = static.summary
    assert s["mode"] == "static_batch" and s["e2e_time_s"] == pytest.approx(s["prefill_time_s"] + 7 * s["per_token_time_s"])
    with pytest.raises(errors.ConfigError):
        llmsim.Scenario(kv_blocks=10, kv_capacity_tokens=100)


def test_dp_ep_groups_step_together():
    one = llmsim.build(llmsim.Scenario(model="mixtral-8x7b", device="h100", tp=2, dp=2, num_requests=10,
                                       serving={"max_batch_size": 8}))
    group = llmsim.build(llmsim.Scenario(model="mixtral-8x7b", device="h100", tp=2, dp=1, dp_ep=2, num_requests=10,
                                         serving={"max_batch_size": 8}))
    assert group.deployments[0].dp_ep == 2 and group.replicas[0].scheduler.max_num_seqs == 16
    assert group.replicas[0].idle_power_w == 2 * one.replicas[0].idle_power_w


def test_expected_outcomes_are_typed_errors_with_their_figures():
    with pytest.raises(errors.OutOfMemoryError) as oom:
        llmsim.build(llmsim.Scenario(model="llama-2-70b", device="h100", tp=1, num_requests=5))
    assert oom.value.required_bytes > oom.value.available_bytes > 0
    with pytest.raises(errors.PlanError) as plan:
        from llmsim.sim.runner import assemble

        assemble(config_from_dict({"deployment": {"model": "llama-3.1-8b", "cluster": "dgx-h100", "tp": 8, "dp": 4}}))
    assert plan.value.needed_devices == 32 and plan.value.available_devices < 32
