"""LLMServingSim's measured vLLM 0.19 runs: loading, what is compared, and the DP + EP deployment."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmsim.hwmodels.deployment import Deployment
from llmsim.validation.llmservingsim import find_runs, load_run, run_values
from llmsim.validation.serving import validate_serving
from llmsim.workloads.errors import PlanError, TraceError

DATA = Path(__file__).resolve().parents[2] / "validation" / "data" / "serving" / "llmservingsim_vllm019"
E = np.zeros(0, np.int64)


def test_the_four_runs_load_with_their_settings():
    runs = {load_run(p).name: load_run(p) for p in find_runs(DATA)}
    assert sorted(runs) == ["RTX4090/Llama-3.1-8B", "RTXPRO6000/Llama-3.1-8B",
                            "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507", "RTXPRO6000/Qwen3-32B"]
    r4090 = runs["RTX4090/Llama-3.1-8B"]
    assert (r4090.device, r4090.max_num_seqs, r4090.num_gpu_blocks, r4090.vllm_version) == \
        ("NVIDIA GeForce RTX 4090", 256, 2588, "0.19.0")
    moe = runs["RTXPRO6000/Qwen3-30B-A3B-Instruct-2507"]
    assert (moe.tp, moe.dp, moe.ep, moe.num_gpu_blocks) == (1, 2, True, None)
    assert runs["RTXPRO6000/Qwen3-32B"].tp == 2
    for r in runs.values():
        assert len(r.arrival_s) == 300 and r.arrival_s[0] == 0.0 and np.all(np.diff(r.arrival_s) >= 0)


def test_measured_metrics_follow_the_stated_definitions():
    run = load_run(DATA / "RTXPRO6000" / "Qwen3-32B" / "vllm")
    rows = [json.loads(line) for line in open(run.path / "requests.jsonl")]
    ttft = np.mean([r["first_token_ts"] - r["queued_ts"] for r in rows])
    tpot = np.mean([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1)
                    for r in rows if r["output_toks"] > 1])
    assert run.measured["ttft_mean_s"] == pytest.approx(ttft)
    assert run.measured["tpot_mean_s"] == pytest.approx(tpot)


def test_a_run_is_predicted_under_its_own_vllm_version():
    values, extra = run_values(load_run(DATA / "RTXPRO6000" / "Qwen3-32B" / "vllm"))
    assert extra["engine"] == "vllm-v1@0.19.0" and extra["unfinished"] == 0
    assert {v["group"].split("| ")[1] for v in values} == {"ttft_mean_s", "tpot_mean_s", "e2e_mean_s", "makespan_s"}
    assert not extra["in_fit"]  # no engine parameter was fitted on a Qwen3 run
    assert all(v["pred"] > 0 for v in values)


def test_validate_reports_runs_and_rows_in_fit(tmp_path):
    report = validate_serving([str(DATA / "RTXPRO6000" / "Qwen3-32B" / "vllm")], fmt="llmservingsim")
    assert report["rows"] == 4 and report["rows_in_fit"] == 0
    assert report["runs"][0]["run"] == "RTXPRO6000/Qwen3-32B"


def test_malformed_run_files_name_the_line(tmp_path):
    run = tmp_path / "RTXPRO6000" / "Qwen3-32B" / "vllm"
    shutil.copytree(DATA / "RTXPRO6000" / "Qwen3-32B" / "vllm", run)
    lines = (run / "requests.jsonl").read_text().splitlines()
    lines[4] = '{"input_toks": 10}'
    (run / "requests.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match="line 5"):
        load_run(run)
    (run / "meta.json").write_text("{}")
    with pytest.raises(TraceError, match="vllm_version"):
        load_run(run)


def test_dp_ep_shards_the_experts_and_gathers_every_ranks_tokens():
    one = Deployment("qwen3-30b-a3b", "rtx-pro-6000")
    two = Deployment("qwen3-30b-a3b", "rtx-pro-6000", dp_ep=2)
    experts = one.model.param_breakdown()["moe_experts"] * 2.0
    assert one.weight_bytes_per_device - two.weight_bytes_per_device == pytest.approx(experts / 2)
    assert "moe_all_gather" in two.op_names and "moe_all_gather" not in one.op_names
    ctx = np.full(64, 1000, np.int64)
    a, b = one.cost(E, E, ctx).breakdown, two.cost(E, E, ctx).breakdown
    # half the experts' weights per rank, but the same expert assignments per rank: never slower than
    # one rank's share of the work and never more than the single-GPU MoE
    assert b["experts"] <= a["experts"] * (1 + 1e-9)
    with pytest.raises(PlanError, match="dp_ep"):
        Deployment("llama-3.1-8b", "rtx-pro-6000", dp_ep=2)


def test_a_preempted_request_finds_its_own_prompt_blocks_with_prefix_caching():
    from llmsim.validation.llmservingsim import private_prefixes, simulate_run

    run = load_run(DATA / "RTX4090" / "Llama-3.1-8B" / "vllm")  # KV-bound: vLLM preempts
    assert run.prefix_caching is True
    ids = private_prefixes(run.prompt_tokens, 16)
    assert len(set(ids.ids.tolist())) == len(ids.ids)  # no block shared between requests
    on = simulate_run(run).summary
    off = simulate_run(dataclasses.replace(run, prefix_caching=False)).summary
    assert off["prefix_cache_hit_tokens"] == 0 and on["preemptions"] > 0
    assert 0 < on["prefix_cache_hit_tokens"] and on["prefill_tokens_computed"] < off["prefill_tokens_computed"]


def test_mixed_attention_exponent_is_fitted_on_train_rows_and_beats_the_sum_on_held_out_ones():
    from llmsim.validation.llmservingsim import fit_mixed_attention

    fit = fit_mixed_attention(DATA.parents[1] / "kernels" / "llmservingsim" / "RTX4090")
    ada = fit["ada"]
    assert 0.0 < ada["alpha"] < 1.0 and ada["rows_in_fit"] > 0 and ada["held_out"]["rows"] > 0
    assert ada["held_out"]["median_ape"] < ada["held_out_sum_only"]["median_ape"]
