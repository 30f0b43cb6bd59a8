"""`simulate run`: flags, YAML configs, static batches, outputs, determinism and user errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from llmsim.cli import build_parser, main, run_config
from llmsim.sim.config import RunConfig, config_from_dict
from llmsim.sim.metrics import JSON_KEYS
from llmsim.workloads.errors import ConfigError

SMALL = ["--num-requests", "40"]
ISSUE_KEYS = ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p99_s", "e2e_mean_s",
              "throughput_output_tok_s", "requests_completed", "requests_rejected", "energy_j")


def run_json(capsys, *argv) -> dict:
    assert main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cfg_of(*argv) -> RunConfig:
    return run_config(build_parser().parse_args(["run", *argv]))


def fails(capsys, *argv) -> str:
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simulate run: error: ")
    return err


def test_json_has_the_issue_keys_and_every_summary_key(capsys):
    out = run_json(capsys, "--model", "llama-2-70b", "--device", "h100", "--tp", "8", *SMALL)
    for key in ISSUE_KEYS + JSON_KEYS:
        assert key in out
    assert out["requests_completed"] == 40 and out["requests_rejected"] == 0
    assert out["deployment"]["model"] == "llama-2-70b" and out["deployment"]["tp"] == 8
    assert out["config"]["deployment"]["tp"] == 8
    assert 0 < out["ttft_p50_s"] <= out["ttft_p99_s"]


def test_bare_run_is_the_documented_default():
    cfg = cfg_of()
    assert (cfg.deployment.model, cfg.deployment.device, cfg.deployment.tp) == ("llama-2-70b", None, 8)
    from llmsim.sim.runner import build_deployment

    dep = build_deployment(cfg)  # no device and no cluster: the natural cluster of H100s
    assert (dep.device.name, dep.tp) == ("h100-sxm", 8)
    assert cfg.workload.name is None and cfg.static_batch is None and cfg.disagg is None


def test_same_seed_gives_byte_identical_json(capsys):
    argv = ["run", "--rate", "3", "--num-requests", "60", "--seed", "7", "--json"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first
    assert main(argv[:-2] + ["8", "--json"]) == 0
    assert capsys.readouterr().out != first


def test_num_devices_with_tp_builds_data_parallel_replicas(capsys):
    out = run_json(capsys, "--num-devices", "16", "--tp", "8", "--router", "least-kv", *SMALL)
    assert out["replicas"] == 2 and out["num_devices"] == 16
    assert out["config"]["cluster"]["router"] == "least-kv"


def test_yaml_config_is_nested_and_flags_override_it(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 3\n"
                    "deployment: {model: llama-3-8b, device: a100, tp: 2, engine: kernels}\n"
                    "serving: {scheduler: sarathi, max_batched_tokens: 1024, block_size: 32}\n"
                    "workload: {name: azure-code, num_requests: 30}\n")
    cfg = cfg_of(str(path))
    assert (cfg.deployment.model, cfg.deployment.tp, cfg.serving.scheduler, cfg.serving.block_size) == \
        ("llama-3-8b", 2, "sarathi", 32)
    cfg = cfg_of(str(path), "--tp", "1", "--max-batched-tokens", "2048", "--seed", "5")
    assert (cfg.deployment.tp, cfg.serving.max_batched_tokens, cfg.seed) == (1, 2048, 5)
    assert cfg.deployment.model == "llama-3-8b"  # untouched by the flags
    out = run_json(capsys, str(path), "--tp", "1")
    assert out["deployment"]["tp"] == 1 and out["requests_completed"] == 30 and out["workload"] == "azure-code"
    trace = tmp_path / "t.csv"
    trace.write_text("request_id,arrival_s,prompt_tokens,output_tokens\na,0.0,10,5\nb,0.5,20,3\n")
    cfg = cfg_of(str(path), "--trace", str(trace))  # a trace flag replaces the YAML workload name
    assert cfg.workload.trace == str(trace) and cfg.workload.name is None
    path.write_text("workload: {trace: t.csv}\n")  # paths in a config are relative to it
    assert cfg_of(str(path)).workload.trace == str(tmp_path / "t.csv")


def test_unknown_yaml_key_is_an_error_with_a_suggestion(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("deployment: {model: llama-2-70b, tensor_parallel: 8}\n")
    err = fails(capsys, str(path))
    assert "unknown key 'tensor_parallel'" in err and str(path) in err
    path.write_text("serving: {schedular: vllm}\n")
    assert "did you mean 'scheduler'" in fails(capsys, str(path))
    path.write_text("servng: {}\n")
    assert "did you mean 'serving'" in fails(capsys, str(path))
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        config_from_dict({"serving": {"gpu_memory_utilization": 1.5}})


def test_static_batch_reports_prefill_per_token_and_end_to_end(capsys):
    out = run_json(capsys, "--batch-size", "4", "--prompt-tokens", "512", "--output-tokens", "64")
    assert out["mode"] == "static_batch" and out["requests_completed"] == 4
    assert out["prefill_time_s"] > 0 and out["per_token_time_s"] > 0
    assert out["e2e_time_s"] == pytest.approx(out["prefill_time_s"] + 63 * out["per_token_time_s"])
    assert out["fits_in_one_batch"] is True
    assert out["ttft_mean_s"] == pytest.approx(out["prefill_time_s"])
    assert "needs all of" in fails(capsys, "--batch-size", "4")


def test_outputs_per_request_files_trace_and_report(tmp_path, capsys):
    csv, pq, trace, html = (tmp_path / n for n in ("r.csv", "r.parquet", "t.json", "r.html"))
    out = run_json(capsys, *SMALL, "--out", str(csv), "--chrome-trace", str(trace), "--report", str(html))
    frame = pd.read_csv(csv)
    assert len(frame) == 40 and {"request_id", "ttft_s", "tpot_s", "e2e_s", "status"} <= set(frame.columns)
    assert frame["ttft_s"].mean() == pytest.approx(out["ttft_mean_s"])
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events)
    page = html.read_text()
    assert "plotly" in page.lower() and len(page) > 1_000_000  # plotly.js embedded, not fetched
    assert '<script src="http' not in page and "<script src='http" not in page
    run_json(capsys, *SMALL, "--out", str(pq))
    assert len(pd.read_parquet(pq)) == 40
    assert "csv or .parquet" in fails(capsys, *SMALL, "--out", str(tmp_path / "r.txt"))


def test_disaggregated_pools_hand_every_request_over(capsys):
    out = run_json(capsys, "--prefill-device", "h100", "--prefill-tp", "8", "--decode-device", "a100",
                   "--decode-tp", "8", "--decode-replicas", "2", "--kv-link", "ib", *SMALL)
    assert out["mode"] == "disaggregated" and out["replicas"] == 3 and out["num_devices"] == 24
    assert out["requests_completed"] == 40
    multi = out["kv_transfers"]
    assert 0 < multi <= 40 and out["kv_transfer_s_per_token"] > 0
    assert out["decode_pool"]["device"] == "a100-sxm-80gb"


def test_swap_preemption_brings_requests_back(capsys):
    argv = ["--tp", "2", "--gpu-memory-utilization", "0.85", "--rate", "20", "--num-requests", "300"]
    swap = run_json(capsys, *argv, "--preemption", "swap")
    assert swap["requests_completed"] == 300 and swap["preemptions"] > 0
    assert swap["deployment"]["swap_blocks"] > 0
    recompute = run_json(capsys, *argv)
    assert recompute["requests_completed"] == 300 and recompute["deployment"]["swap_blocks"] == 0
    assert swap["e2e_mean_s"] != recompute["e2e_mean_s"]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "llama-2-7000b"], "unknown model"),
    (["--device", "h1000"], "did you mean"),
    (["--scheduler", "vllmm"], "did you mean"),
    (["--model", "llama-2-70b", "--device", "a100", "--tp", "1"], "raise tp"),
    (["--tp", "3"], "tp=3"),
    (["--num-devices", "12", "--tp", "8"], "multiple of tp"),
    (["--workload", "azure-conv", "--num-requests", "100000"], "give a `rate`"),
    (["--engine", "sglang==0.4"], "did you mean"),
    (["--engine", "vllm==0.0.5"], "oldest"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    assert needle in fails(capsys, *argv, *([] if "--num-requests" in argv else SMALL))


@pytest.mark.parametrize("body, needle", [
    ("request_id,arrival_s,prompt_tokens\na,0,5\n", "line 1, column 'output_tokens'"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\na,0,5,3\nb,1,-4,3\n", "line 3, column 3"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\na,0,5,3\nb,x,4,3\n", "line 3, column 2"),
])
def test_malformed_trace_names_file_line_and_column(tmp_path, capsys, body, needle):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    err = fails(capsys, "--trace", str(path))
    assert str(path) in err and needle in err


def test_text_output_is_a_readable_table(capsys):
    assert main(["run", *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.startswith("serving: llama-2-70b on 8 x h100-sxm (1 replica(s) of tp=8") and "ttft_mean_s" in out
    assert not math.isnan(float(out.split("ttft_mean_s")[1].split()[0]))


def test_example_configs_parse():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        cfg = cfg_of(str(path))
        assert isinstance(cfg, RunConfig)
    assert cfg_of(str(examples[0])).disagg is not None  # disagg.yaml sorts first


def test_train_example_configs_parse():
    from pathlib import Path

    from llmsim.sim.training_config import TrainRunConfig, load_train_config

    examples = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples" / "train").glob("*.yaml"))
    assert examples
    for path in examples:
        assert isinstance(load_train_config(str(path), {}), TrainRunConfig)


def test_engine_versions_set_the_batching_defaults(capsys):
    new = run_json(capsys, "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--rate", "4",
                   "--engine", "vllm==0.15.1", *SMALL)
    assert (new["deployment"]["engine"], new["deployment"]["engine_version"]) == ("vllm-v1", "0.15.1")
    assert (new["deployment"]["max_num_seqs"], new["deployment"]["max_num_batched_tokens"]) == (1024, 8192)
    assert new["deployment"]["scheduler"] == "sarathi"
    old = run_json(capsys, "--model", "llama-3.1-8b", "--device", "a100-80gb", "--tp", "1", "--rate", "4",
                   "--engine", "vllm-0.8", "--max-batch-size", "64", *SMALL)
    assert (old["deployment"]["max_num_seqs"], old["deployment"]["max_num_batched_tokens"]) == (64, 2048)
    v0 = run_json(capsys, "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--engine", "vllm-0.6", *SMALL)
    assert v0["deployment"]["scheduler"] == "vllm" and v0["deployment"]["max_num_batched_tokens"] == 8192


def test_engines_listing_names_the_version_history(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    assert "vllm-v1" in out and "since 0.14.0" in out and "vllm==X.Y.Z" in out


# --------------------------------------------------------------------------- paths where names are

def _device_file(tmp_path, name: str, bandwidth: str):
    from llmsim.hwmodels.devices import get_device

    src = (Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "devices" / "h100_sxm.yaml").read_text()
    assert "3.35e12" in src and get_device("h100").memory_bandwidth_bytes_per_s == 3.35e12
    lines = []
    for line in src.replace("3.35e12", bandwidth).splitlines():
        key = line.split(":", 1)[0]
        lines.append({"name": f"name: {name}", "aliases": "aliases: []",
                      "profiler_names": "profiler_names: []"}.get(key, line))
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_device_file_path_runs_that_device(capsys, tmp_path):
    run = ["--model", "llama-3.1-8b", "--tp", "1", "--num-requests", "20"]
    slow = run_json(capsys, "--device", str(_device_file(tmp_path, "h100-half-bw", "1.675e12")), *run)
    same = run_json(capsys, "--device", str(_device_file(tmp_path, "h100-copy", "3.35e12")), *run)
    base = run_json(capsys, "--device", "h100", *run)
    assert slow["deployment"]["device"] == "h100-half-bw" and same["deployment"]["device"] == "h100-copy"
    assert same["tpot_mean_s"] == base["tpot_mean_s"]
    assert slow["tpot_mean_s"] > 1.5 * base["tpot_mean_s"]


def test_a_device_file_path_works_in_a_scenario(tmp_path):
    import llmsim

    path = _device_file(tmp_path, "h100-half-bw", "1.675e12")
    r = llmsim.simulate(llmsim.Scenario(model="llama-3.1-8b", device=str(path), tp=1, num_requests=20))
    assert r.to_dict()["deployment"]["device"] == "h100-half-bw"


def test_an_engine_file_path_runs_that_engine(capsys, tmp_path):
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "engines.yaml").read_text())
    mine = dict(data["engines"]["vllm-v1"], aliases=[], versions=[], max_num_seqs=7)
    path = tmp_path / "myengine.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "engines": {"my-vllm": mine}}))
    out = run_json(capsys, "--engine", str(path), "--model", "llama-3.1-8b", "--tp", "1", "--num-requests", "20")
    assert out["deployment"]["engine"] == "my-vllm" and out["deployment"]["max_num_seqs"] == 7


def test_a_bad_device_or_engine_path_is_one_line_naming_the_file(capsys, tmp_path):
    run = ["--model", "llama-3.1-8b", "--tp", "1"]
    missing = tmp_path / "missing.yaml"
    assert f"{missing}: cannot read device file" in fails(capsys, "--device", str(missing), *run)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    assert f"{broken}: invalid YAML at line" in fails(capsys, "--device", str(broken), *run)
    typo = tmp_path / "typo.yaml"
    typo.write_text(_device_file(tmp_path, "x", "1e12").read_text().replace("num_sms:", "num_smz:"))
    assert f"{typo}: unknown key 'num_smz'" in fails(capsys, "--device", str(typo), *run)
    two = tmp_path / "two.yaml"
    two.write_text((Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "engines.yaml").read_text())
    assert f"{two}: expected exactly one engine" in fails(capsys, "--engine", str(two), *run)
