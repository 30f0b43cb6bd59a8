"""The front door: ``llmsim.Scenario`` -> ``llmsim.simulate`` -> ``llmsim.Result`` (llmsim/api.py)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import llmsim
from llmsim.sim.cli import main as cli_main
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
