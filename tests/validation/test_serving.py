"""End-to-end validation against measured serving runs (validation/serving.py, `simulate validate`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmsim.cli import main
from llmsim.validation.serving import (SPLITWISE_COLUMNS, detect_serving_format, load_splitwise, serving_split,
                                splitwise_keys, static_batch_times, validate_serving, write_hosts)
from llmsim.workloads.errors import TraceError

DATA = Path(__file__).resolve().parents[2] / "validation" / "data" / "serving"
SPLITWISE = DATA / "splitwise" / "perf_model.csv"
APEX = DATA / "apex_vllm_h100" / "measured.csv"
SCHEMA = ("rows", "mape", "median_ape", "p90_ape", "rows_in_fit", "groups", "not_expressed")


def small_splitwise(tmp_path, rows):
    path = tmp_path / "perf_model.csv"
    header = "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time," \
             "e2e_time,tensor_parallel\n"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_formats_are_detected_from_the_header(tmp_path):
    assert detect_serving_format(SPLITWISE) == "splitwise"
    assert detect_serving_format(APEX) == "apex-vllm"
    assert detect_serving_format(DATA / "apex_vllm_h100" / "lmsys_05_8TP.csv") is None
    other = tmp_path / "x.csv"
    other.write_text("a,b\n1,2\n")
    assert detect_serving_format(other) is None


def test_the_hash_split_keeps_repeats_together_and_holds_out_about_half():
    frame = load_splitwise(SPLITWISE)
    held = serving_split(splitwise_keys(frame))
    assert 0.35 < held.mean() < 0.65
    for _, grp in frame.assign(held=held).groupby(list(SPLITWISE_COLUMNS[:5]) + ["tensor_parallel"]):
        assert grp["held"].nunique() == 1


def test_static_batch_times_are_consistent():
    setup = ("llama-2-70b", "a100-80gb", 4)
    prefill, per_token, e2e = static_batch_times(*setup, 4, 512, 32, engine="vllm-0.2")
    assert e2e == pytest.approx(prefill + 31 * per_token)
    assert prefill > 0.1 and per_token > 0.02  # Splitwise measured 0.53 s and 45 ms
    b1 = static_batch_times(*setup, 1, 512, 32, engine="vllm-0.2")
    assert b1[0] < prefill and b1[1] <= per_token


def test_splitwise_small_file_schema_filters_and_groups(tmp_path):
    rows = ["llama2-70b,h100-80gb,512,1,128,1,0.7,56.6,29.7,3831.6,8",   # e2e identity holds
            "llama2-70b,h100-80gb,512,1,1024,1,0.7,55.2,31.8,21931.4,8",  # stopped early: no e2e
            "llama2-70b,a100-80gb,512,64,128,1,0.7,796.0,67.3,159683.8,2",  # not one static batch
            "llama2-70b,a100-80gb,1024,1,128,1,0.7,154.6,44.8,5845.5,8"]
    report = validate_serving([str(small_splitwise(tmp_path, rows))])
    for key in SCHEMA:
        assert key in report
    names = {g["name"]: g for g in report["groups"]}
    assert names["perf_model | prompt_time"]["rows"] == 3
    assert names["perf_model | token_time"]["rows"] == 3
    assert names["perf_model | e2e_time"]["rows"] == 2
    assert "perf_model | token_time | h100-80gb tp8" in names
    reasons = " ".join(n["reason"] for n in report["not_expressed"])
    assert "not served as one static batch" in reasons and "line" in reasons and "stopped early" in reasons
    assert report["rows"] == 8 and 0 <= report["median_ape"] <= report["p90_ape"]


def test_malformed_splitwise_names_file_line_and_column(tmp_path):
    path = small_splitwise(tmp_path, ["llama2-70b,h100-80gb,512,1,128,1,0.7,56.6,abc,3831.6,8"])
    with pytest.raises(TraceError, match=r"perf_model.csv, line 2, column 9 \('token_time'\)"):
        load_splitwise(path)
    path.write_text("model,hardware\nx,y\n")
    with pytest.raises(TraceError, match="missing column 'prompt_size'"):
        load_splitwise(path)


@pytest.fixture(scope="module")
def shipped_splitwise():
    return validate_serving([str(SPLITWISE)])


def test_shipped_splitwise_accuracy_and_fit_bookkeeping(shipped_splitwise):
    r = shipped_splitwise
    groups = {g["name"]: g for g in r["groups"]}
    prompt, token = groups["perf_model | prompt_time"], groups["perf_model | token_time"]
    assert prompt["rows"] == token["rows"] == 620  # 630 rows less the 10 not served as one batch
    # vllm-0.2 host overheads are fitted on the 'train' half of the configurations (engines.yaml)
    assert 0 < prompt["rows_in_fit"] < prompt["rows"] and prompt["held_out"]["rows"] == 620 - prompt["rows_in_fit"]
    # regression guards a little above the figures reached (docs/serving_validation.md)
    assert token["held_out"]["mape"] < 0.06 and prompt["held_out"]["mape"] < 0.13
    assert groups["perf_model | e2e_time"]["held_out"]["mape"] < 0.08


def test_split_test_scores_only_rows_outside_the_fit(shipped_splitwise):
    test = validate_serving([str(SPLITWISE)], split="test")
    assert test["rows_in_fit"] == 0
    assert test["rows"] == shipped_splitwise["rows"] - shipped_splitwise["rows_in_fit"]


def test_shipped_apex_runs(capsys):
    assert main(["validate", str(APEX), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in SCHEMA:
        assert key in r
    groups = {g["name"]: g for g in r["groups"]}
    assert groups["measured | ttft_mean_s"]["rows"] == 2 and groups["measured | tpot_mean_s"]["rows"] == 2
    # vllm-0.6 is fitted on the lmsys run; the creation run is a prediction
    assert r["rows_in_fit"] == 2
    creation = [g for g in r["groups"] if "creatio" in g["name"]]
    assert len(creation) == 2 and all(g["rows_in_fit"] == 0 and g["mape"] < 0.10 for g in creation)


def test_pure_kernel_model_is_reported_too(capsys):
    assert main(["validate", str(APEX), "--engine", "kernels", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["rows_in_fit"] == 0 and r["engines"][str(APEX)] == "kernels"


def test_validate_dispatch_and_errors(tmp_path, capsys):
    assert main(["validate", str(APEX), "--format", "apex-vllm"]) == 0
    assert "measured | ttft_mean_s" in capsys.readouterr().out
    assert main(["validate", str(APEX), "--device", "h100"]) == 2
    assert "--device/--model apply to kernel" in capsys.readouterr().err
    assert main(["validate", str(APEX), str(DATA.parent / "kernels" / "llmcompass")]) == 2
    assert "not both" in capsys.readouterr().err
    bad = tmp_path / "measured.csv"
    bad.write_text("model,device,engine,workload,dp,tp,pp,requests,ttft_mean_s,tpot_mean_s,total_latency_s,trace\n"
                   "meta-llama/Llama-3.1-70B,H100-SXM-80GB,vllm,x,1,8,1,3,0.04,0.014,1.0,missing.csv\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 'trace'" in err and "missing.csv" in err


def test_write_hosts_replaces_one_engine_block(tmp_path):
    src = Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "engines.yaml"
    path = tmp_path / "engines.yaml"
    path.write_text(src.read_text())
    host = {"iteration_s": 1e-3, "prefill_s": 0.0, "prefill_per_seq_s": 0.0, "per_seq_s": 2e-4,
            "layer_launch_s": 3e-4, "allreduce_bus_bytes_per_s": 0.0, "source": "test", "fitted_on": ""}
    write_hosts("vllm-0.2", {"default": host}, path)
    import yaml

    from llmsim.hwmodels.deployment import parse_engines

    engines = parse_engines(yaml.safe_load(path.read_text()), str(path))
    assert set(engines["vllm-0.2"][0].hosts) == {"default"}
    assert engines["vllm-0.6"][0].hosts == parse_engines(yaml.safe_load(src.read_text()), "src")["vllm-0.6"][0].hosts
    assert np.isclose(engines["vllm-0.2"][0].hosts["default"].per_seq_s, 2e-4)


def test_apex_rows_are_predicted_from_a_frame_without_a_file(tmp_path):
    from llmsim.validation.serving import load_apex_measured, predict_apex_rows

    src = Path(__file__).resolve().parents[2] / "validation" / "data" / "serving" / "apex_vllm_h100"
    lines = (src / "measured.csv").read_text().splitlines()
    trace_name = lines[1].rsplit(",", 1)[1]
    trace = [ln for ln in (src / trace_name).read_text().splitlines()]
    (tmp_path / trace_name).write_text("\n".join(trace[:41]) + "\n")
    (tmp_path / "measured.csv").write_text("\n".join(lines[:2]) + "\n")
    frame = load_apex_measured(tmp_path / "measured.csv")
    pred = predict_apex_rows(frame, tmp_path / "measured.csv")
    assert pred["pred_ttft_mean_s"].iloc[0] > 0 and pred["pred_tpot_mean_s"].iloc[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["measured.csv", trace_name])
