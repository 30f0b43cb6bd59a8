"""LLMServingSim per-layer profiles (RTX 4090, RTX PRO 6000): loader, shipped classes, held-out accuracy."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsim.hwmodels.calibration import default_profile, load_profile
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.validation.loaders import detect_format, load_llmservingsim, load_measurements
from llmsim.validation.validate import validate_kernels
from llmsim.workloads.errors import TraceError

LSS = Path(__file__).resolve().parents[2] / "validation" / "data" / "kernels" / "llmservingsim"
L8_4090 = LSS / "RTX4090" / "meta-llama" / "Llama-3.1-8B" / "bf16"
L8_PRO = LSS / "RTXPRO6000" / "meta-llama" / "Llama-3.1-8B" / "bf16"
MOE = LSS / "RTXPRO6000" / "Qwen" / "Qwen3-30B-A3B-Instruct-2507" / "bf16" / "tp1" / "moe.csv"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_measurements(LSS)


def test_shipped_files_load_with_attribution(table):
    assert (LSS / "LICENSE").is_file() and "MIT" in (LSS / "LICENSE").read_text()
    readme = (LSS / "README.md").read_text()
    assert "casys-kaist/LLMServingSim" in readme and "vLLM 0.19.0" in readme and "microseconds" in readme
    assert len(table) == 134_709
    counts = table.groupby(["device", "kind"]).size().to_dict()
    assert counts[("NVIDIA GeForce RTX 4090", "gemm")] == 4 * 152 + 40
    assert counts[("NVIDIA GeForce RTX 4090", "attn_mixed")] + counts[("NVIDIA GeForce RTX 4090", "attn_prefill")] \
        + counts[("NVIDIA GeForce RTX 4090", "attn_decode")] == 8643
    assert counts[("NVIDIA RTX PRO 6000 Blackwell Server Edition", "moe")] == 50
    assert set(table["kind"]) <= {"gemm", "attn_prefill", "attn_decode", "attn_mixed", "moe", "norm", "rope",
                                  "activation", "embedding", "sampling"}
    assert detect_format(L8_4090 / "tp1" / "dense.csv") == "llmservingsim"
    assert load_llmservingsim(L8_PRO / "tp1" / "skew_fit.csv").empty  # fitted coefficients, not measurements


def test_units_and_known_rows():
    dense = load_llmservingsim(L8_4090 / "tp1" / "dense.csv")
    act = dense[(dense["op"] == "act_fn") & (dense["tokens"] == 1)].iloc[0]
    assert act["measured_s"] == pytest.approx(2.592e-6) and act["inter"] == 14336  # file: act_fn,1,2.592 (us)
    att = load_llmservingsim(L8_4090 / "tp1" / "attention.csv")
    first = att.iloc[0]  # file: 0,0,1,16,9.31067
    assert (first["kind"], first["batch"], first["ctx"], first["heads"], first["kv_heads"]) == ("attn_decode", 1, 16, 32, 8)
    assert first["measured_s"] == pytest.approx(9.31067e-6)
    mixed = att[att["kind"] == "attn_mixed"].iloc[0]
    assert mixed["seq"] > 0 and mixed["decode_batch"] > 0 and mixed["decode_ctx"] > 0
    # TP2 emulated on one GPU: heads, KV heads, FFN and vocabulary halved (meta.yaml hf_overrides)
    tp2 = load_llmservingsim(L8_PRO / "tp2" / "dense.csv").drop_duplicates("op").set_index("op")
    assert (tp2.loc["gate_up_proj", "n"], tp2.loc["gate_up_proj", "k"]) == (14336, 4096)
    assert (tp2.loc["qkv_proj", "n"], tp2.loc["o_proj", "k"], tp2.loc["down_proj", "k"]) == (3072, 2048, 7168)
    assert tp2.loc["rotary_emb", "heads"] == 16 and tp2.loc["rotary_emb", "kv_heads"] == 4
    moe = load_llmservingsim(MOE)
    row = moe[(moe["tokens"] == 16) & (moe["experts"] == 128)].iloc[0]  # file: 16,128,817.612
    assert row["measured_s"] == pytest.approx(817.612e-6) and (row["hidden"], row["inter"], row["topk"]) == (2048, 768, 8)


def test_bad_layouts_raise_trace_errors(tmp_path):
    bad = tmp_path / "RTX4090" / "meta-llama" / "Llama-3.1-8B" / "bf16" / "x1"
    bad.mkdir(parents=True)
    shutil.copy(L8_4090 / "tp1" / "dense.csv", bad / "dense.csv")
    with pytest.raises(TraceError, match="must sit in a 'tp<N>' folder"):
        load_llmservingsim(bad / "dense.csv")
    good = bad.parent / "tp1"
    good.mkdir()
    shutil.copy(L8_4090 / "tp1" / "dense.csv", good / "dense.csv")
    with pytest.raises(TraceError, match="meta.yaml"):
        load_llmservingsim(good / "dense.csv")
    meta = (L8_4090 / "meta.yaml").read_text().replace("intermediate_size: 14336", "intermediate_size: 9000")
    (bad.parent / "meta.yaml").write_text(meta)
    with pytest.raises(TraceError, match="hf_overrides.intermediate_size = 9000"):
        load_llmservingsim(good / "dense.csv")
    (bad.parent / "meta.yaml").write_text((L8_4090 / "meta.yaml").read_text())
    (good / "dense.csv").write_text("layer,tokens,time_us\nqkv_proj,4,-1\n")
    with pytest.raises(TraceError, match="negative value"):
        load_llmservingsim(good / "dense.csv")


def test_new_classes_exist_and_other_classes_keep_their_fits():
    params = default_profile().params
    assert {"ada", "blackwell-consumer", "ampere", "hopper", "generic"} <= set(params)
    assert "gemm" in params["ada"] and {"gemm", "attn_prefill", "attn_decode", "moe", "elementwise"} <= set(
        params["blackwell-consumer"])
    # ampere/hopper/generic are not refitted: their coefficients are those fitted before this data came
    # (sha256 of each class's JSON as shipped before the RTX classes were added), except the fp8-KV
    # prefill entries, refitted when FP8-KV attention moved to the 16-bit peak (costmodel.attention_compute_dtype),
    # the decode entries, refitted with the per-wave latency (efficiency.LATENCY_HELD), and the block-FP8
    # GEMM entries, refitted with the eager harness's host floor apart (calibrate.fit_class host_floor)
    data = json.loads((Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "calibration"
                       / "default.json").read_text())["params"]
    coef = ("log_floor", "theta", "rows", "fit_median_ape")  # shape_range was added later: not a coefficient

    def digest(arch, keep):
        return hashlib.sha256(json.dumps({c: {g: {k: p[k] for k in coef} for g, p in gs.items() if keep(c, g)}
                                          for c, gs in data[arch].items()}, sort_keys=True).encode()).hexdigest()[:16]

    fp8_prefill = lambda c, g: c == "attn_prefill" and g.startswith("fp8")  # noqa: E731
    block_fp8 = lambda c, g: c == "gemm" and g.startswith("fp8_block")  # noqa: E731
    assert {a: digest(a, lambda c, g: not fp8_prefill(c, g) and not block_fp8(c, g) and c != "attn_decode")
            for a in ("ampere", "generic", "hopper")} == {
        "ampere": "fa13bf4af471adc2", "generic": "97b2a94c65478e2b", "hopper": "8aba83de9dd7df21"}
    assert {a: digest(a, block_fp8) for a in ("generic", "hopper")} == {"generic": "175c72aa7aad03ff",
                                                                       "hopper": "175c72aa7aad03ff"}
    assert {a: digest(a, fp8_prefill) for a in ("generic", "hopper")} == {"generic": "13a459c8fa277916",
                                                                          "hopper": "13a459c8fa277916"}
    fitted = [s for s in default_profile().sources if "llmservingsim" in s["path"]]
    assert len(fitted) == 22 and all(0 <= s["rows_in_fit"] <= 0.9 * s["rows"] for s in fitted)
    # RTX 4090 attention: 96 prefill / 99 decode rows are too few for a full class; they adjust the
    # generic class's constant and leading slopes (calibrate --small-classes); mixed rows are never fitted
    att = [s for s in fitted if s["path"].endswith("RTX4090/meta-llama/Llama-3.1-8B/bf16/tp1/attention.csv")][0]
    assert set(att["fitted_kinds"]) == {"attn_prefill", "attn_decode"} and 0 < att["rows_in_fit"] < 200
    small = default_profile().params["ada"]
    assert small["attn_decode"]["bf16"].rows < 2 * len(small["attn_decode"]["bf16"].theta)  # a small class


def test_held_out_rows_are_predicted_within_a_loose_bound():
    report = validate_kernels([str(LSS)], split="test")
    assert report["rows_in_fit"] == 0 and all(g["rows_in_fit"] == 0 for g in report["groups"])
    # every held-out shape lies inside the range its coefficients were fitted on
    assert report["extrapolated"] == 0 and all(g["extrapolated"] == 0 for g in report["groups"])
    by = {}
    for g in report["groups"]:
        gpu, kind = g["name"].split("/", 1)[0], g["name"].rsplit("| ", 1)[1]
        by.setdefault((gpu, kind), []).append(g["median_ape"])
    for key in [("RTX4090", "gemm"), ("RTXPRO6000", "gemm"), ("RTXPRO6000", "attn_decode"),
                ("RTXPRO6000", "attn_prefill")]:
        assert max(by[key]) < 0.10, (key, by[key])
    train = validate_kernels([str(L8_PRO / "tp1" / "dense.csv")], split="train")
    assert train["rows_in_fit"] == train["rows"]


def test_mixed_attention_is_priced_as_prefill_plus_decode():
    att = load_llmservingsim(L8_PRO / "tp1" / "attention.csv")
    mixed = att[att["kind"] == "attn_mixed"].head(5).reset_index(drop=True)
    model = OperatorCostModel()
    whole = model.price(mixed)
    pre = model.price(mixed.assign(kind="attn_prefill"))
    dec = model.price(mixed.assign(kind="attn_decode", batch=mixed["decode_batch"], ctx=mixed["decode_ctx"], seq=1.0))
    np.testing.assert_allclose(whole.seconds, pre.seconds + dec.seconds, rtol=1e-12)
    assert all(" + " in k for k in whole.param_key) and set(whole.op_class) == {"attn_mixed"}


def test_small_attention_classes_beat_their_fallback_on_held_out_rows(tmp_path):
    import dataclasses as dc

    from llmsim.validation.calibrate import fit_small_classes

    shipped = default_profile()
    params = {a: {c: g for c, g in cs.items() if not (a == "ada" and c.startswith("attn"))}
              for a, cs in shipped.params.items()}
    bare = dc.replace(shipped, params=params)  # ada attention falls back to generic
    table = load_measurements(str(LSS / "RTX4090"))
    refit, added = fit_small_classes(table, bare)
    assert {a["class"] for a in added} == {"ada/attn_decode/bf16", "ada/attn_prefill/bf16"}
    att = str(LSS / "RTX4090" / "meta-llama" / "Llama-3.1-8B" / "bf16" / "tp1" / "attention.csv")
    path = tmp_path / "bare.json"
    bare.save(path)
    before = validate_kernels([att], split="test", profile=load_profile(path))
    after = validate_kernels([att], split="test", profile=refit)
    med = lambda rep, kind: [g for g in rep["groups"] if g["name"].endswith("| " + kind)][0]["median_ape"]
    for kind in ("attn_decode", "attn_prefill"):
        assert med(after, kind) < med(before, kind)
