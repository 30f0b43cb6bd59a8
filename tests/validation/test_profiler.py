"""Tests for `simulate profile` (validation/profiler.py, validation/profile_sweep.py) on the CPU.

No GPU and no torch are needed: the timing backend is injected (a fake timer for the sweep, schema
and file tests; a stub ``torch`` module that checks call shapes for the torch backend's plumbing).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmsim.validation import profile_sweep as sw
from llmsim.validation import profiler as prof
from llmsim.validation.loaders import load_measurements
from llmsim.workloads.errors import ConfigError, LLMSimError, UnknownNameError

ROOT = Path(__file__).resolve().parents[2]
AIC_H100 = ROOT / "validation" / "data" / "kernels" / "aiconfigurator" / "h100_sxm"
H100 = "NVIDIA H100 80GB HBM3"


# --------------------------------------------------------------------------------------------------
# a fake timer
# --------------------------------------------------------------------------------------------------

def fake_seconds(case) -> float:
    """A deterministic, shape-dependent 'measurement' (roofline-like, always positive)."""
    if isinstance(case, sw.GemmCase):
        peak = 1.6e15 if case.dtype == "fp8" else 8e14
        return 4e-6 + 2.0 * case.m * case.n * case.k / peak + 2.0 * (case.m * case.k + case.n * case.k) / 3e12
    if isinstance(case, sw.AttentionCase):
        return 6e-6 + sw.estimate_flops(case) / 5e14 + case.kv_bytes / 3e12
    return 8e-6 + case.nbytes / 2e11 * (case.num_gpus - 1) / case.num_gpus


class FakeBackend(prof.TimingBackend):
    device_name = H100
    attention_kernel = "torch_sdpa_flash"

    def __init__(self, *, gpu_count: int = 1, fp8: bool = True, skip=lambda case: None):
        self.gpu_count = gpu_count
        self.supports_fp8 = fp8
        self.skip = skip
        self.timed: list = []
        self.closed = False

    def environment(self) -> dict:
        return {"gpu": {"name": self.device_name, "count": self.gpu_count}, "torch": "fake"}

    def _time(self, case) -> float:
        why = self.skip(case)
        if why:
            raise prof.CaseSkipped(why)
        self.timed.append(case)
        return fake_seconds(case)

    time_gemm = _time
    time_attention = _time

    def time_collectives(self, cases):
        self.timed.extend(cases)
        return [(c, fake_seconds(c)) for c in cases], []

    def close(self) -> None:
        self.closed = True


def args_for(out, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    prof.add_arguments(p)
    return p.parse_args(["--device-name", "h100-sxm", "--out", str(out), *extra])


TINY = ("--models", "llama-3.1-8b", "--tp", "1,8", "--quick")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One profiling run with the fake timer: (out dir, sweep, backend, environment)."""
    out = tmp_path_factory.mktemp("measured") / "h100_fake"
    sweep = sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(1, 8), gpu_count=2)
    backend = FakeBackend(gpu_count=2)
    env = prof.profile(sweep, backend, out, device_label="h100-sxm", log=lambda m: None)
    return out, sweep, backend, env


# --------------------------------------------------------------------------------------------------
# sweep logic
# --------------------------------------------------------------------------------------------------

def test_gemm_shapes_follow_the_model_and_tensor_parallelism():
    from llmsim.workloads.models import get_model

    m = get_model("llama-3.1-8b")  # hidden 4096, 32 heads, 8 KV heads, d 128, MLP 14336, vocab 128256
    shapes, notes = sw.gemm_shapes(m, 1)
    assert notes == []
    assert dict((op, (n, k)) for op, n, k in shapes) == {
        "qkv": ((32 + 2 * 8) * 128, 4096), "o": (4096, 4096), "mlp_up": (2 * 14336, 4096),
        "mlp_down": (4096, 14336), "lm_head": (128256, 4096)}
    shapes8 = dict((op, (n, k)) for op, n, k in sw.gemm_shapes(m, 8)[0])
    assert shapes8 == {"qkv": ((4 + 2 * 1) * 128, 4096), "o": (4096, 512), "mlp_up": (2 * 1792, 4096),
                       "mlp_down": (4096, 1792), "lm_head": (128256 // 8, 4096)}
    # KV heads replicated once tp exceeds them; a tp that does not divide the heads is skipped
    assert dict((op, n) for op, n, _ in sw.gemm_shapes(m, 16)[0])["qkv"] == (2 + 2 * 1) * 128
    none, why = sw.gemm_shapes(m, 3)
    assert none == [] and "tp=3" in why[0]
    # a plain (ungated) MLP and a vocabulary padded to 64 before the split
    g = dict((op, (n, k)) for op, n, k in sw.gemm_shapes(get_model("gpt3-175b"), 8)[0])
    assert g["mlp_up"] == (49152 // 8, 12288) and g["lm_head"] == (50304 // 8, 12288)


def test_mla_and_moe_models_get_their_own_projections():
    from llmsim.workloads.models import get_model

    ds = dict((op, (n, k)) for op, n, k in sw.gemm_shapes(get_model("deepseek-v3"), 8)[0])
    assert ds["qkv_a"] == (1536 + 512 + 64, 7168)
    assert ds["q_b"] == (16 * 192, 1536) and ds["kv_b"] == (16 * (128 + 128), 512) and ds["o"] == (7168, 16 * 128)
    assert ds["mlp_up"] == (2 * 18432 // 8, 7168) and ds["shared_expert_up"] == (2 * 2048 // 8, 7168)
    mix = {op for op, _, _ in sw.gemm_shapes(get_model("mixtral-8x7b"), 1)[0]}
    assert mix == {"qkv", "o", "lm_head"}  # every layer is MoE: routed experts are not GEMMs here
    lay, why = sw.attention_layouts(get_model("deepseek-v3"), 1)
    assert lay is None and "MLA" in why


def test_sweep_is_deduplicated_sorted_and_deterministic():
    a = sw.build_sweep(["llama-3.1-8b", "llama-3-8b", "llama-3.1-8b"], quick=True)
    b = sw.build_sweep(["llama-3-8b", "llama-3.1-8b"], quick=True)
    one = sw.build_sweep(["llama-3.1-8b"], quick=True)
    for fam in ("gemm", "prefill", "decode"):
        cases = getattr(a, fam)
        assert len(set(cases)) == len(cases), fam  # no duplicate case
        assert cases == getattr(b, fam) == getattr(one, fam), fam  # same shapes: same cases, same order
        key = sw.GemmCase.sort_key if fam == "gemm" else sw.AttentionCase.sort_key
        assert cases == sorted(cases, key=key)
    assert a.models == ("llama-3.1-8b", "llama-3-8b")
    qkv = next(c for c in a.gemm if (c.n, c.k) == (6144, 4096))
    assert "llama-3.1-8b/tp1/qkv" in qkv.uses and "llama-3-8b/tp1/qkv" in qkv.uses


def test_quick_is_a_smaller_subset_of_the_full_sweep():
    quick = sw.build_sweep(quick=True, gpu_count=8)
    full = sw.build_sweep(["llama-3.1-8b", "llama-3.1-70b"], gpu_count=8)
    assert quick.models == sw.QUICK_MODELS
    for fam in ("gemm", "prefill", "decode", "collectives"):
        q, f = getattr(quick, fam), getattr(full, fam)
        assert 0 < len(q) < len(f), fam
        if fam != "prefill":  # quick prefill lengths are a subset; batch 16 x 4096 is capped out of both
            assert set(q) <= set(f), fam
    c = quick.counts()
    assert c == {"gemm": 480, "gemm_bf16": 240, "gemm_fp8": 240, "prefill": 64, "decode": 96,
                 "collectives": 108, "total": 748}
    assert len(sw.build_sweep(gpu_count=8).gemm) > 5 * len(quick.gemm)  # the whole catalogue


def test_max_cases_draws_a_seeded_subset_of_every_family_in_run_order():
    full = sw.build_sweep(["llama-3.1-8b", "llama-3.1-70b"], gpu_count=8)
    a = sw.sample(sw.build_sweep(["llama-3.1-8b", "llama-3.1-70b"], gpu_count=8), 50, seed=3)
    b = sw.sample(sw.build_sweep(["llama-3.1-8b", "llama-3.1-70b"], gpu_count=8), 50, seed=3)
    c = sw.sample(sw.build_sweep(["llama-3.1-8b", "llama-3.1-70b"], gpu_count=8), 50, seed=4)
    for fam in ("gemm", "prefill", "decode", "collectives"):
        whole, part = getattr(full, fam), getattr(a, fam)
        assert len(part) == 50 and set(part) <= set(whole), fam
        pos = [whole.index(x) for x in part]
        assert pos == sorted(pos), fam                      # run order kept
        assert pos[-1] - pos[0] > len(whole) // 2, fam      # spread over the grid, not its first rows
        assert part == getattr(b, fam) and part != getattr(c, fam), fam
    assert any("50 of" in n and "--seed 3" in n for n in a.notes)
    small = sw.sample(sw.build_sweep(["llama-3.1-8b"], quick=True), 10_000)
    assert small.gemm == sw.build_sweep(["llama-3.1-8b"], quick=True).gemm  # under the cap: untouched
    with pytest.raises(ConfigError, match="--max-cases"):
        sw.sample(full, 0)


def test_fp8_needs_dims_divisible_by_16_and_can_be_left_out(tmp_path):
    # qkv n = 3 * 10 * 100 = 3000 and o k = 1000 are not multiples of 16; the MLP and LM head are
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 1024, "num_attention_heads": 10, "head_dim": 100,
           "num_key_value_heads": 10, "intermediate_size": 3072, "vocab_size": 1000, "num_hidden_layers": 2,
           "max_position_embeddings": 2048}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    s = sw.build_sweep([str(tmp_path)], quick=True, tp_degrees=(1,))
    fp8 = [c for c in s.gemm if c.dtype == "fp8"]
    assert fp8 and all(c.n % 16 == 0 and c.k % 16 == 0 for c in fp8)
    assert {(c.n, c.k) for c in fp8} == {(6144, 1024), (1024, 3072), (1024, 1024)}
    assert not s.prefill and any("head_dim 100" in n for n in s.notes)  # flash needs head_dim % 8 == 0
    assert {c.dtype for c in sw.build_sweep(["llama-3.1-8b"], quick=True, fp8=False).gemm} == {"bf16"}


def test_attention_and_collective_cases():
    s = sw.build_sweep(["llama-3.1-70b"], quick=True, tp_degrees=(1, 8), gpu_count=4)
    layouts = {(c.heads, c.kv_heads, c.head_dim) for c in s.prefill}
    assert layouts == {(64, 8, 128), (8, 1, 128)} == {(c.heads, c.kv_heads, c.head_dim) for c in s.decode}
    assert all(c.seq == c.kv_len and c.step == 0 and c.batch * c.seq <= sw.PREFILL_MAX_TOKENS_QUICK
               for c in s.prefill)
    assert all(c.seq == 1 and c.step == c.kv_len - 1 and c.kv_bytes <= sw.KV_BYTES_LIMIT for c in s.decode)
    assert {c.num_gpus for c in s.collectives} == {2, 4}
    assert {c.op for c in s.collectives} == set(sw.COLLECTIVE_OPS)
    assert all(c.elements % c.num_gpus == 0 for c in s.collectives)
    one = sw.build_sweep(["llama-3.1-70b"], quick=True, gpu_count=1)
    assert one.collectives == [] and any("collectives skipped" in n for n in one.notes)


def test_sweep_rejects_unknown_names():
    with pytest.raises(UnknownNameError, match="did you mean"):
        sw.build_sweep(["llama-3.1-8"])
    with pytest.raises(ConfigError, match="unknown value 'gem'"):
        sw.parse_list("gemm,gem", "--ops", choices=sw.OPS)
    with pytest.raises(ConfigError, match="not a whole number"):
        sw.parse_ints("1,two", "--tp")


# --------------------------------------------------------------------------------------------------
# schema and files
# --------------------------------------------------------------------------------------------------

def test_tables_have_the_aiconfigurator_schema(tiny_run):
    out, *_ = tiny_run
    for family, ref in (("gemm", "gemm_perf"), ("prefill", "context_attention_perf"),
                        ("decode", "generation_attention_perf"), ("collectives", "nccl_perf")):
        mine = [(f.name, f.type) for f in pq.read_schema(out / prof.FILES[family])]
        theirs = [(f.name, f.type) for f in pq.read_schema(AIC_H100 / f"{ref}.parquet")]
        if family == "gemm":  # one column more: how each row was timed (loaders `timing`)
            assert mine[-1] == ("timing", pa.string())
            mine = mine[:-1]
        assert mine == theirs, family


def test_tables_load_as_measurements(tiny_run):
    out, sweep, backend, env = tiny_run
    t = load_measurements(out)
    assert t["kind"].value_counts().to_dict() == {
        "gemm": len(sweep.gemm), "attn_decode": len(sweep.decode), "attn_prefill": len(sweep.prefill),
        **{k: len(sweep.collectives) // 4 for k in ("all_gather", "all_reduce", "all_to_all", "reduce_scatter")}}
    assert set(t["device"]) == {H100}

    g = t[t["kind"] == "gemm"]
    want = {(c.dtype, c.m, c.n, c.k): fake_seconds(c) for c in sweep.gemm}
    got = {(d, int(m), int(n), int(k)): s for d, m, n, k, s in zip(g["dtype"], g["m"], g["n"], g["k"], g["measured_s"])}
    assert got.keys() == want.keys()
    assert all(math.isclose(got[key], want[key], rel_tol=1e-12) for key in want)  # ms in the file, s here
    assert set(g["kernel"]) == {"torch.nn.functional.linear", "torch._scaled_mm"}

    d = t[t["kind"] == "attn_decode"].reset_index(drop=True)
    first = sweep.decode[0]
    assert (d.loc[0, ["batch", "seq", "ctx", "heads", "kv_heads", "head_dim"]].tolist()
            == [first.batch, 1, first.kv_len - 1, first.heads, first.kv_heads, first.head_dim])
    assert math.isclose(d.loc[0, "measured_s"], fake_seconds(first), rel_tol=1e-12)
    assert set(d["dtype"]) == {"bf16"} and set(d["kv_dtype"]) == {"bf16"} and set(d["kernel"]) == {"torch_sdpa_flash"}
    p = t[t["kind"] == "attn_prefill"]
    assert (p["seq"] > 1).all() and (p["ctx"] == 0).all() and (p["window"] == 0).all()

    c = t[t["kind"] == "all_reduce"].reset_index(drop=True)
    case = next(x for x in sweep.collectives if x.op == "all_reduce")
    assert c.loc[0, "message_bytes"] == 2 * case.elements and c.loc[0, "num_gpus"] == case.num_gpus
    assert math.isclose(c.loc[0, "measured_s"], fake_seconds(case), rel_tol=1e-12)

    raw = pd.read_parquet(out / prof.FILES["gemm"])
    assert set(raw["framework"]) == {"llmsim-profile"} and set(raw["version"]) == {prof.package_version()}
    assert raw["latency"].iloc[0] == pytest.approx(fake_seconds(sweep.gemm[0]) * 1e3)


def test_environment_record(tiny_run):
    out, sweep, backend, env = tiny_run
    saved = json.loads((out / prof.ENV_FILE).read_text())
    assert saved["status"] == "complete" and saved["finished"]
    assert saved["device_name"] == "h100-sxm" and saved["device"] == H100
    assert saved["catalogue_device"] == "h100-sxm"
    assert saved["framework"] == "llmsim-profile" and saved["version"] == prof.package_version()
    assert saved["rows"] == {prof.FILES["gemm"]: len(sweep.gemm), prof.FILES["prefill"]: len(sweep.prefill),
                             prof.FILES["decode"]: len(sweep.decode),
                             prof.FILES["collectives"]: len(sweep.collectives)}
    assert saved["sweep"]["cases"] == sweep.counts() and saved["sweep"]["models"] == ["llama-3.1-8b"]
    assert saved["timing"]["repeats"] == 10 and "median" in saved["timing"]["method"]
    assert saved["backend"]["torch"] == "fake"
    assert "not vLLM's paged" in saved["kernels"]["decode_attention"]
    assert saved["skipped"] == [] and saved["skipped_count"] == 0
    assert {"python", "platform"} <= set(saved["host"]) and "nvidia_smi_before" in saved
    assert sorted(p.name for p in out.iterdir()) == sorted([*prof.FILES.values(), prof.ENV_FILE])
    assert backend.timed[: len(sweep.gemm)] == sweep.gemm  # timed in sweep order


def test_simulate_validate_reads_the_output(tiny_run):
    from llmsim.validation.validate import validate_kernels

    out, sweep, *_ = tiny_run
    report = validate_kernels([str(out)])  # the shipped profile prices every row
    assert report["rows"] == sweep.counts()["total"] and report["not_expressed"] == []
    assert {g["name"].split(" | ")[1] for g in report["groups"]} >= {"gemm", "attn_prefill", "attn_decode", "all_reduce"}


def test_simulate_calibrate_reads_the_output(tiny_run, tmp_path, capsys):
    from llmsim.cli import main as simulate

    out, sweep, *_ = tiny_run
    fitted = tmp_path / "profile.json"
    assert simulate(["calibrate", str(out), "--out", str(fitted)]) == 0
    assert simulate(["validate", str(out), "--profile", str(fitted), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # every row is read; classes with fewer rows than the fit needs (a --quick run's GEMMs and
    # attention) have no parameters of their own and say so, the collectives are fitted
    assert report["rows"] + sum(n["rows"] for n in report["not_expressed"]) == sweep.counts()["total"]
    assert all("no calibrated parameters" in n["reason"] for n in report["not_expressed"])
    assert {g["name"].split(" | ")[1] for g in report["groups"]} >= {"all_reduce", "all_gather"}
    assert json.loads(fitted.read_text())["sources"][0]["rows_in_fit"] > 0


def test_run_end_to_end_with_an_injected_backend(tmp_path, capsys):
    out = tmp_path / "m"
    backend = FakeBackend(fp8=False)  # one GPU without fp8: no fp8 GEMMs, no collectives
    assert prof.run(args_for(out, *TINY, "--repeats", "3", "--warmup", "1"), backend=backend) == 0
    assert backend.closed
    text = capsys.readouterr().out
    assert "fp8 GEMMs skipped" in text and "collectives skipped" in text and "simulate validate" in text
    t = load_measurements(out)
    assert set(t["dtype"][t["kind"] == "gemm"]) == {"bf16"}
    assert not (out / prof.FILES["collectives"]).exists()
    env = json.loads((out / prof.ENV_FILE).read_text())
    assert env["timing"]["repeats"] == 3 and env["timing"]["warmup"] == 1
    assert env["argv"] is not None


def test_skipped_cases_and_time_budget(tmp_path):
    sweep = sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(1,), ops=("gemm", "attention"))
    backend = FakeBackend(skip=lambda c: "out of memory: fake" if getattr(c, "m", 0) == 4096 else None)
    env = prof.profile(sweep, backend, tmp_path / "a", log=lambda m: None)
    n_skip = sum(1 for c in sweep.gemm if c.m == 4096)
    assert env["skipped_count"] == n_skip and "out of memory: fake" in env["skipped"][0]
    assert env["rows"][prof.FILES["gemm"]] == len(sweep.gemm) - n_skip

    env = prof.profile(sweep, FakeBackend(), tmp_path / "b", max_seconds=1e-9, log=lambda m: None)
    assert env["status"].startswith("stopped")
    assert not (tmp_path / "b" / prof.FILES["gemm"]).exists()
    assert json.loads((tmp_path / "b" / prof.ENV_FILE).read_text())["status"].startswith("stopped")


def test_device_names_are_checked_against_the_catalogue(tmp_path):
    sweep = sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(8,), ops=("gemm",), gemm_tokens=(1,))
    env = prof.profile(sweep, FakeBackend(), tmp_path / "a", device_label="a100-sxm-80gb", log=lambda m: None)
    assert any("is catalogue device 'a100-sxm-80gb' but the GPU" in n for n in env["notes"])
    odd = FakeBackend()
    odd.device_name = "NVIDIA GeForce RTX 3090"
    env = prof.profile(sweep, odd, tmp_path / "b", device_label="rtx3090", log=lambda m: None)
    assert env["catalogue_device"] is None and any("--device <catalogue name>" in n for n in env["notes"])
    assert set(load_measurements(tmp_path / "b")["device"]) == {"NVIDIA GeForce RTX 3090"}


def test_a_crash_keeps_what_was_measured(tmp_path):
    sweep = sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(1,), ops=("gemm",))
    half = len(sweep.gemm) // 2

    class Crashing(FakeBackend):
        def time_gemm(self, case):
            if len(self.timed) == half:
                raise RuntimeError("boom")
            return super().time_gemm(case)

    with pytest.raises(RuntimeError, match="boom"):
        prof.profile(sweep, Crashing(), tmp_path, log=lambda m: None)
    env = json.loads((tmp_path / prof.ENV_FILE).read_text())
    assert env["status"] == "failed during gemm: RuntimeError: boom" and env["rows"][prof.FILES["gemm"]] == half
    assert len(load_measurements(tmp_path)) == half


def test_out_dir_with_foreign_tables_is_refused(tmp_path):
    t = pa.table({"framework": ["VLLM"], "op_name": ["gemm"]})
    pq.write_table(t, tmp_path / "gemm_perf.parquet")
    with pytest.raises(ConfigError, match="not of `simulate profile`"):
        prof.check_out_dir(tmp_path)
    assert prof.main(["--device-name", "x", "--out", str(tmp_path), "--dry-run"]) == 2
    # an earlier profile run's tables are replaced, not mixed with the new ones
    out = tmp_path / "again"
    prof.profile(sw.build_sweep(["llama-3.1-8b"], quick=True, ops=("gemm",)), FakeBackend(), out, log=lambda m: None)
    prof.profile(sw.build_sweep(["llama-3.1-8b"], quick=True, ops=("attention",)), FakeBackend(), out,
                 log=lambda m: None)
    assert not (out / prof.FILES["gemm"]).exists() and (out / prof.FILES["decode"]).exists()


# --------------------------------------------------------------------------------------------------
# the command line without a GPU
# --------------------------------------------------------------------------------------------------

def test_without_torch_the_command_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert prof.main(["--device-name", "h100-sxm", "--out", str(tmp_path / "o"), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PyTorch is not installed" in err[0] and "pip install 'llmsim[profile]'" in err[0]
    assert not (tmp_path / "o").exists()
    with pytest.raises(prof.ProfilerUnavailableError) as e:
        prof.run(args_for(tmp_path / "o", "--quick"))
    assert isinstance(e.value, LLMSimError) and e.value.exit_code == 2


def test_without_a_cuda_gpu_the_command_says_so(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("torch")
    fake.__version__ = "2.5.0+cpu"
    fake.version = types.SimpleNamespace(cuda=None)
    fake.cuda = types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert prof.main(["--device-name", "h100-sxm", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA GPU visible to PyTorch 2.5.0+cpu (a CPU-only build)" in err[0]


@pytest.mark.parametrize("extra, message", [
    (("--ops", "gemm,attn"), "unknown value 'attn'"),
    (("--models", "llama-9"), "unknown model"),
    (("--repeats", "0"), "--repeats must be at least 1"),
    (("--tp", "0"), "must be positive"),
])
def test_bad_arguments_exit_2_before_any_gpu_work(tmp_path, capsys, extra, message):
    assert prof.main(["--device-name", "x", "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_build_parser_adds_the_profile_subcommand(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="simulate")
    sub = p.add_subparsers(dest="command", required=True)
    from llmsim.cli.profile import add_parser, cmd_profile

    add_parser(sub)
    args = p.parse_args(["profile", "--device-name", "h100-sxm", "--out", str(tmp_path), "--quick", "--dry-run",
                         "--ops", "gemm"])
    assert args.func is cmd_profile and args.quick and args.repeats == 10 and args.warmup == 5
    assert args.func(args) == 0
    assert "gemm: 480 cases (240 bf16, 240 fp8)" in capsys.readouterr().out


def test_module_imports_and_runs_without_the_heavy_dependencies(tmp_path):
    """The GPU machine has torch, numpy, pandas, pyarrow but not simpy/plotly/numba/scipy."""
    code = f"""
import sys
BLOCKED = ("numba", "scipy", "simpy", "plotly", "networkx", "numpy", "pandas", "torch")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import llmsim.validation.profiler as p
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], sorted(sys.modules)
rc = p.main(["--device-name", "x", "--out", {str(tmp_path / 'o')!r}, "--quick", "--dry-run"])
assert rc == 0, rc
rc = p.main(["--device-name", "x", "--out", {str(tmp_path / 'o')!r}, "--quick"])
assert rc == 2, rc
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok") and "PyTorch is not installed" in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmsim.validation.profiler", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--device-name" in r.stdout and "--quick" in r.stdout


# --------------------------------------------------------------------------------------------------
# the torch backend's plumbing, against a stub torch that checks shapes
# --------------------------------------------------------------------------------------------------

class _T:
    """A stub tensor: a shape and a dtype."""

    def __init__(self, shape, dtype):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype

    def to(self, dtype):
        return _T(self.shape, dtype)

    def t(self):
        assert len(self.shape) == 2
        return _T(self.shape[::-1], self.dtype)

    def repeat_interleave(self, r, dim):
        s = list(self.shape)
        s[dim] *= r
        return _T(s, self.dtype)

    def zero_(self):
        return self

    def copy_(self, other):
        assert other.shape == self.shape and other.dtype == self.dtype
        return self


def make_stub_torch(*, gqa: bool = True, capability=(9, 0), graph_fails: bool = False, gpus: int = 1, log=None):
    log = log if log is not None else []
    torch = types.ModuleType("torch")
    torch.__version__ = "2.9.0+stub"
    torch.version = types.SimpleNamespace(cuda="12.8")
    torch.bfloat16, torch.float32, torch.float8_e4m3fn = "bf16", "fp32", "fp8"
    torch.device = lambda kind, index=0: (kind, index)
    state = {"flash_only": False}

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return 1.0  # ms per block

    @contextlib.contextmanager
    def _ctx(*a, **k):
        yield

    class OOM(RuntimeError):
        pass

    class CUDAGraph:
        def replay(self):
            pass

    @contextlib.contextmanager
    def graph(g):
        yield
        if graph_fails:
            raise RuntimeError("operation not permitted when stream is capturing")

    torch.cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: gpus, set_device=lambda d: None,
        get_device_properties=lambda d: types.SimpleNamespace(multi_processor_count=132, total_memory=80 << 30,
                                                              L2_cache_size=50 << 20),
        get_device_name=lambda d=0: H100, get_device_capability=lambda d=0: capability,
        synchronize=lambda: None, empty_cache=lambda: None, Event=Event, OutOfMemoryError=OOM,
        Stream=lambda: types.SimpleNamespace(wait_stream=lambda s: None), stream=_ctx,
        current_stream=lambda: types.SimpleNamespace(wait_stream=lambda s: None), CUDAGraph=CUDAGraph,
        graph=graph, nccl=types.SimpleNamespace(version=lambda: (2, 21, 5)))
    torch.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 90100),
                                           cuda=types.SimpleNamespace(sdp_kernel=_ctx))
    torch.randn = lambda *shape, device=None, dtype=None: _T(shape, dtype)
    torch.empty = lambda *shape, device=None, dtype=None: _T(shape, dtype)
    torch.ones = lambda shape, device=None, dtype=None: _T(shape, dtype)

    def linear(x, w):
        assert x.dtype == w.dtype == "bf16" and x.shape[1] == w.shape[1], (x.shape, w.shape)
        log.append(("linear", x.shape, w.shape))
        return _T((x.shape[0], w.shape[0]), "bf16")

    def scaled_mm(a, b, *, scale_a, scale_b, out_dtype):
        assert a.dtype == b.dtype == "fp8" and a.shape[1] == b.shape[0], (a.shape, b.shape)
        assert scale_a.shape == scale_b.shape == () and scale_a.dtype == "fp32" and out_dtype == "bf16"
        log.append(("scaled_mm", a.shape, b.shape))
        return _T((a.shape[0], b.shape[1]), "bf16")

    def sdpa(q, k, v, is_causal=False, enable_gqa=False):
        assert state["flash_only"], "SDPA called outside the flash-only context"
        assert q.shape[0] == k.shape[0] and k.shape == v.shape and q.shape[3] == k.shape[3]
        if q.shape[1] != k.shape[1]:
            if not gqa:
                raise RuntimeError("enable_gqa is not supported")
            assert enable_gqa and q.shape[1] % k.shape[1] == 0
        log.append(("sdpa", q.shape, k.shape, is_causal, enable_gqa))
        return _T(q.shape, q.dtype)

    def matmul(a, b):
        assert a.dtype == b.dtype == "bf16" and a.shape[1] == b.shape[0], (a.shape, b.shape)
        log.append(("matmul", a.shape, b.shape))
        return _T((a.shape[0], b.shape[1]), "bf16")

    torch._scaled_mm = scaled_mm
    torch.matmul = matmul
    torch.float64 = "fp64"
    torch.tensor = lambda data, device=None, dtype=None: types.SimpleNamespace(item=lambda: data[0])

    # torch.distributed and torch.multiprocessing: ranks run one after another in this process
    world = {}
    dist = types.ModuleType("torch.distributed")
    dist.ReduceOp = types.SimpleNamespace(MAX="max")

    def init_process_group(backend, rank, world_size):
        assert backend == "nccl"
        world.update(rank=rank, size=world_size)

    def all_gather_into_tensor(dst, src):
        assert dst.shape[0] == src.shape[0] * world["size"]
        log.append(("all_gather", world["rank"], dst.shape, src.shape))

    def reduce_scatter_tensor(dst, src):
        assert src.shape[0] == dst.shape[0] * world["size"]
        log.append(("reduce_scatter", world["rank"], dst.shape, src.shape))

    def all_to_all_single(dst, src):
        assert dst.shape == src.shape
        log.append(("alltoall", world["rank"], dst.shape))

    dist.init_process_group = init_process_group
    dist.destroy_process_group = lambda: world.clear()
    dist.barrier = lambda: None
    dist.all_reduce = lambda t, op=None: log.append(("all_reduce", world["rank"], getattr(t, "shape", None), op))
    dist.all_gather_into_tensor = all_gather_into_tensor
    dist.reduce_scatter_tensor = reduce_scatter_tensor
    dist.all_to_all_single = all_to_all_single
    mp = types.ModuleType("torch.multiprocessing")

    def spawn(fn, args, nprocs, join):
        assert join and callable(fn) and fn.__module__ == "llmsim.validation.profiler"
        for rank in range(nprocs):
            fn(rank, nprocs, *args[1:])

    mp.spawn = spawn
    torch.distributed, torch.multiprocessing = dist, mp

    @contextlib.contextmanager
    def sdpa_kernel(backends):
        assert backends == ["FLASH"]
        state["flash_only"] = True
        try:
            yield
        finally:
            state["flash_only"] = False

    attention = types.ModuleType("torch.nn.attention")
    attention.SDPBackend = types.SimpleNamespace(FLASH_ATTENTION="FLASH")
    attention.sdpa_kernel = sdpa_kernel
    nn = types.ModuleType("torch.nn")
    nn.functional = types.SimpleNamespace(linear=linear, scaled_dot_product_attention=sdpa)
    nn.attention = attention
    torch.nn = nn
    return torch, {"torch": torch, "torch.nn": nn, "torch.nn.attention": attention, "torch.distributed": dist,
                   "torch.multiprocessing": mp}, log


@pytest.mark.parametrize("gqa", [True, False])
def test_torch_backend_plumbing_with_a_stub_torch(tmp_path, monkeypatch, gqa):
    torch, mods, log = make_stub_torch(gqa=gqa)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    backend = prof.TorchBackend.create(prof.TimingConfig(warmup=1, repeats=3))
    assert backend.supports_fp8 and backend.sdpa_gqa is gqa and backend.device_name == H100

    g = sw.GemmCase("bf16", 8, 6144, 4096)
    assert backend.time_gemm(g) == pytest.approx(1e-3)  # blocks of one call (>= 0.5 ms)
    assert ("linear", (8, 4096), (6144, 4096)) in log
    assert backend.time_gemm(sw.GemmCase("fp8", 8, 6144, 4096)) > 0
    assert ("scaled_mm", (8, 4096), (4096, 6144)) in log

    pre = sw.AttentionCase("prefill", 2, 256, 256, 32, 8, 128)
    dec = sw.AttentionCase("decode", 4, 1, 1024, 32, 8, 128)
    assert backend.time_attention(pre) > 0 and backend.time_attention(dec) > 0
    if gqa:
        assert ("sdpa", (2, 32, 256, 128), (2, 8, 256, 128), True, True) in log
        assert backend.kernel_for(pre) == "torch_sdpa_flash"
    else:  # K/V expanded to the query heads, and the rows say so
        assert ("sdpa", (2, 32, 256, 128), (2, 32, 256, 128), True, False) in log
        assert backend.kernel_for(pre) == "torch_sdpa_flash_kv_expanded"
    # decode: 4 query heads per KV head packed into the query length, no mask, no K/V copy
    assert ("sdpa", (4, 8, 4, 128), (4, 8, 1024, 128), False, False) in log
    assert backend.kernel_for(dec) == "torch_sdpa_flash"

    env = backend.environment()
    assert env["gpu"]["compute_capability"] == "9.0" and env["torch"] == "2.9.0+stub" and env["nccl"] == "2.21.5"
    c = backend.ceilings()  # stub events: 1 ms each; 80 GiB card -> two 2.5 GiB... capped at 4 GiB buffers
    assert c["copy_bytes"] == 2 * 4 * 2 ** 30 and c["copy_bytes_per_s"] == pytest.approx(2 * 4 * 2 ** 30 / 1e-3)
    assert c["bf16_matmul_flops_per_s"] == pytest.approx(2 * 8192 ** 3 / 1e-3)
    assert ("matmul", (8192, 8192), (8192, 8192)) in log
    assert backend.time_collectives([sw.CollectiveCase("all_reduce", 2, 1024)])[1] == ["collectives skipped: 1 GPU visible"]

    # a whole (tiny) run through run() with the stub: tables and environment written
    out = tmp_path / "stub"
    assert prof.run(args_for(out, "--models", "llama-3.1-8b", "--tp", "8", "--quick", "--ops", "gemm,attention")) == 0
    t = load_measurements(out)
    assert len(t) == len(sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(8,), ops=("gemm", "attention")).gemm) \
        + len(sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(8,), ops=("attention",)).prefill) \
        + len(sw.build_sweep(["llama-3.1-8b"], quick=True, tp_degrees=(8,), ops=("attention",)).decode)
    assert (t["measured_s"] > 0).all()
    env = json.loads((out / "environment.json").read_text())
    assert env["ceilings"]["bf16_matmul_flops_per_s"] > 0


def test_a_failing_ceiling_measurement_is_recorded_and_the_run_goes_on(tmp_path):
    class Broken(prof.TimingBackend):
        torch = None

        def ceilings(self):
            raise RuntimeError("CUDA out of memory. Tried to allocate 4.00 GiB\nmore")

    assert prof._ceilings(Broken()) == {"error": "RuntimeError: CUDA out of memory. Tried to allocate 4.00 GiB"}


def test_gpu_session_script_runs_end_to_end_with_a_stub_torch(tmp_path):
    """validation/gpu_session.sh, the one call a short GPU lease makes, run here with python replaced by
    one that has the stub torch: every step runs, and the tarball holds the three profile folders."""
    import tarfile

    shim = tmp_path / "shim.py"
    shim.write_text(f"""
import runpy, sys
sys.path.insert(0, {str(ROOT / 'tests' / 'validation')!r})
sys.path.insert(0, {str(ROOT)!r})
import test_profiler as t
torch, mods, log = t.make_stub_torch()
sys.modules.update(mods)
sys.modules["flash_attn"] = None
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
""")
    py = tmp_path / "python"
    py.write_text(f"#!/bin/sh\nexec {sys.executable} {shim} \"$@\"\n")
    py.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(py), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run(["bash", str(ROOT / "validation" / "gpu_session.sh"), "h100-sxm"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "session.log").read_text()
    for step in ("quick sweep", "broad sample", "quick bf16 GEMMs with the L2 flushed", "done"):
        assert f" {step}" in log, step
    assert "Traceback" not in log
    with tarfile.open(out / "measured.tar.gz") as tar:
        names = set(tar.getnames())
    for folder in ("quick", "broad", "quick_flush_l2"):
        assert f"./{folder}/environment.json" in names and f"./{folder}/gemm_perf.parquet" in names, names
    assert "./broad/generation_attention_perf.parquet" in names and not (out / "work").exists()


def test_torch_backend_collectives_plumbing(monkeypatch):
    torch, mods, log = make_stub_torch(gpus=4)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    monkeypatch.setenv("MASTER_ADDR", "x")  # the workers set these; restored afterwards
    monkeypatch.setenv("MASTER_PORT", "0")
    backend = prof.TorchBackend.create(prof.TimingConfig(warmup=1, repeats=3))
    cases = sw.build_sweep(["llama-3.1-8b"], quick=True, ops=("collectives",), gpu_count=backend.gpu_count).collectives
    assert {c.num_gpus for c in cases} == {2, 4}
    measured, notes = backend.time_collectives(cases)
    assert notes == [] and [c for c, _ in measured] == cases
    assert all(sec == pytest.approx(1e-3) for _, sec in measured)  # the stub's 1 ms events
    big = max(c.elements for c in cases)
    assert ("all_gather", 3, (big,), (big // 4,)) in log and ("reduce_scatter", 1, (big // 2,), (big,)) in log
    assert ("all_reduce", 0, (big,), None) in log


def test_torch_backend_falls_back_to_eager_when_graph_capture_fails(monkeypatch):
    torch, mods, log = make_stub_torch(graph_fails=True)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    backend = prof.TorchBackend.create(prof.TimingConfig(warmup=0, repeats=2))
    assert backend.time_gemm(sw.GemmCase("bf16", 8, 64, 64)) == pytest.approx(1e-3)
    assert not backend._graphs_ok["gemm"] and backend._graphs_ok["attention"]
    assert any("CUDA graph capture failed" in n for n in backend.notes)
    assert backend.time_gemm(sw.GemmCase("bf16", 16, 64, 64)) == pytest.approx(1e-3)  # eager from then on
    assert backend.timing == "eager"  # and its rows say so (gemm_perf `timing`)
    torch, mods, log = make_stub_torch()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    backend = prof.TorchBackend.create(prof.TimingConfig(warmup=0, repeats=2))
    backend.time_gemm(sw.GemmCase("bf16", 8, 64, 64))
    assert backend.timing == "graph"


def test_torch_backend_skips_fp8_on_older_gpus_and_turns_errors_into_skips(monkeypatch):
    torch, mods, log = make_stub_torch(capability=(8, 0))
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    backend = prof.TorchBackend.create(prof.TimingConfig(warmup=0, repeats=1))
    assert not backend.supports_fp8
    with pytest.raises(prof.CaseSkipped, match="no fp8"):
        backend.time_gemm(sw.GemmCase("fp8", 8, 64, 64))

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")

    # CUDA graphs off with --flush-l2 (one call per block after the flush)
    flushing = prof.TorchBackend.create(prof.TimingConfig(warmup=0, repeats=2, flush_l2=True))
    assert not flushing.cfg.cuda_graph and flushing.time_gemm(sw.GemmCase("bf16", 8, 64, 64)) == pytest.approx(1e-3)

    monkeypatch.setattr(torch.nn.functional, "linear", oom)
    with pytest.raises(prof.CaseSkipped, match="out of memory: CUDA out of memory"):
        backend.time_gemm(sw.GemmCase("bf16", 8, 64, 64))
