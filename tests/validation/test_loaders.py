"""Tests for validation.loaders: shipped measurement files -> one standard table."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsim.validation.loaders import (
    COLUMNS,
    KINDS,
    detect_format,
    load_aiconfigurator,
    load_llmcompass,
    load_measurements,
    load_vidur,
    split_of,
)
from llmsim.workloads.errors import ConfigError, TraceError, UnknownNameError

DATA = Path(__file__).resolve().parents[2] / "validation" / "data" / "kernels"
AIC = DATA / "aiconfigurator"
VIDUR = DATA / "vidur"
LLMC = DATA / "llmcompass"
L70_H100 = VIDUR / "compute" / "h100" / "meta-llama" / "Llama-2-70b-hf" / "mlp.csv"

# (file, kind -> rows) for every shipped file
AIC_COUNTS = {
    "h100_sxm/gemm_perf.parquet": {"gemm": 107_188},
    "h100_sxm/context_attention_perf.parquet": {"attn_prefill": 50_830},
    "h100_sxm/generation_attention_perf.parquet": {"attn_decode": 62_166},
    "h100_sxm/moe_perf.parquet": {"moe": 49_862},
    "h100_sxm/nccl_perf.parquet": {"all_gather": 252, "all_reduce": 252, "reduce_scatter": 252, "all_to_all": 252},
    "h100_sxm/custom_allreduce_perf.parquet": {"all_reduce": 138},
    "a100_sxm/gemm_perf.parquet": {"gemm": 9_240},
    "a100_sxm/context_attention_perf.parquet": {"attn_prefill": 5_457},
    "a100_sxm/generation_attention_perf.parquet": {"attn_decode": 5_431},
    "a100_sxm/moe_perf.parquet": {"moe": 6_360},
    "a100_sxm/nccl_perf.parquet": {"all_gather": 126, "all_reduce": 126, "reduce_scatter": 126, "all_to_all": 126},
    "a100_sxm/custom_allreduce_perf.parquet": {"all_reduce": 138},
}
VIDUR_MLP_KINDS = {"gemm": 4 * 1044, "norm": 2 * 1044, "embedding": 1044, "rope": 1044, "activation": 1044,
                   "add": 1044}
VIDUR_NET_COUNTS = {"a100_dgx/all_reduce.csv": ("all_reduce", 6958), "a100_dgx/send_recv.csv": ("send_recv", 1988),
                    "h100_dgx/all_reduce.csv": ("all_reduce", 2982), "h100_dgx/send_recv.csv": ("send_recv", 1988)}
LLMC_COUNTS = {"matmul_A100.csv": {"gemm": 20}, "softmax_A100.csv": {"softmax": 22},
               "layernorm_A100.csv": {"norm": 22}, "gelu_A100.csv": {"activation": 20},
               "transformer_A100.csv": {"gemm": 6, "softmax": 1, "norm": 1, "activation": 1, "all_reduce": 1, "": 2},
               "transformerAR_A100.csv": {"gemm": 6, "softmax": 1, "norm": 1, "activation": 1, "all_reduce": 1,
                                          "": 2}}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_measurements(DATA)


def _rows(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    return table[table["source"] == str(path)]


def _kind_counts(df: pd.DataFrame) -> dict[str, int]:
    return {k: int(v) for k, v in df["kind"].value_counts().items()}


# ---------------------------------------------------------------------------------------------- data

def test_shipped_data_layout_and_licences():
    for src in ("aiconfigurator", "vidur", "llmcompass", "llmservingsim"):
        assert (DATA / src / "LICENSE").is_file()
    assert (DATA / "README.md").is_file()
    readme = (DATA / "README.md").read_text()
    for word in ("Apache-2.0", "MIT", "BSD-3-Clause", "milliseconds", "elements"):
        assert word in readme
    parquet_bytes = sum(f.stat().st_size for f in AIC.rglob("*.parquet"))
    assert parquet_bytes < 40e6
    assert len(list(AIC.rglob("*.parquet"))) == 12
    assert len(list((VIDUR / "compute").rglob("mlp.csv"))) == 4


def test_columns_and_dtypes(table):
    assert tuple(table.columns) == COLUMNS
    assert table["row"].dtype == np.int64
    for c in ("m", "n", "k", "batch", "tokens", "message_bytes", "measured_s", "tp"):
        assert table[c].dtype == np.float64
    assert set(table["kind"]) <= set(KINDS) | {""}
    for c in ("source", "group", "kind", "op", "device", "model", "dtype", "kernel", "kv_dtype",
              "distribution", "variant", "shape_key"):
        assert not table[c].isna().any(), c
    assert (table["row"] >= 0).all()


@pytest.mark.parametrize("rel,counts", sorted(AIC_COUNTS.items()))
def test_aiconfigurator_files_load_with_kinds_and_counts(table, rel, counts):
    df = _rows(table, AIC / rel)
    assert _kind_counts(df) == counts
    assert list(df["row"]) == list(range(len(df)))  # one output row per source row, in file order
    assert df["device"].iloc[0] == ("NVIDIA H100 80GB HBM3" if rel.startswith("h100") else "NVIDIA A100-SXM4-80GB")
    assert (df["model"] == "").all() and df["tp"].isna().all()
    stem = Path(rel).stem
    assert set(df["group"]) == {f"{stem} | {k}" for k in counts}


@pytest.mark.parametrize("device", ["a100", "h100"])
@pytest.mark.parametrize("model", ["Llama-2-7b-hf", "Llama-2-70b-hf"])
def test_vidur_mlp_files_expand_one_row_per_op(table, device, model):
    df = _rows(table, VIDUR / "compute" / device / "meta-llama" / model / "mlp.csv")
    assert _kind_counts(df) == VIDUR_MLP_KINDS
    assert (df["device"] == device).all() and (df["model"] == f"meta-llama/{model}").all()
    assert (df["dtype"] == "fp16").all()
    assert "mlp | attn_pre_proj" in set(df["group"])
    # one input row -> ten ops, in the file's column order
    first = df[df["row"] == 0]
    assert list(first["op"]) == ["emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
                                 "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add"]


@pytest.mark.parametrize("rel,expected", sorted(VIDUR_NET_COUNTS.items()))
def test_vidur_network_files(table, rel, expected):
    kind, n = expected
    df = _rows(table, VIDUR / "network" / rel)
    assert _kind_counts(df) == {kind: n}
    assert (df["device"] == rel.split("/")[0].removesuffix("_dgx")).all()  # the GPU inside the DGX
    assert df["variant"].str.match(r"^devices_per_node=\d+$").all()
    raw = pd.read_csv(VIDUR / "network" / rel)
    assert np.array_equal(df["message_bytes"].to_numpy(), raw["size"].to_numpy(dtype=float))
    assert np.array_equal(df["num_gpus"].to_numpy(), raw["num_workers"].to_numpy(dtype=float))
    med = raw[f"time_stats.{kind}.median"].to_numpy()
    np.testing.assert_allclose(df["measured_s"].to_numpy(), med * 1e-3)


@pytest.mark.parametrize("name,counts", sorted(LLMC_COUNTS.items()))
def test_llmcompass_files(table, name, counts):
    df = _rows(table, LLMC / name)
    assert _kind_counts(df) == counts
    assert (df["device"] == "A100").all() and (df["dtype"] == "fp16").all()


def test_every_shipped_file_is_loaded(table):
    files = {str(f) for f in DATA.rglob("*") if f.suffix in (".csv", ".parquet")}
    skew = {f for f in files if f.endswith("skew_fit.csv")}  # LLMServingSim's fitted coefficients: no rows
    assert set(table["source"]) == files - skew
    assert len(files) == 12 + 4 + 4 + 6 + 7 * 4 + 1 and len(skew) == 7


# ---------------------------------------------------------------------------------------------- units

def test_units_are_seconds_and_bytes(table):
    gemm = _rows(table, AIC / "h100_sxm" / "gemm_perf.parquet")
    raw = pd.read_parquet(AIC / "h100_sxm" / "gemm_perf.parquet")
    np.testing.assert_allclose(gemm["measured_s"].to_numpy(), raw["latency"].to_numpy() * 1e-3)
    assert gemm["measured_s"].iloc[0] == pytest.approx(0.060324042, rel=1e-6)
    assert (table["measured_s"] > 0).all() and (table["measured_s"] < 10).all()

    # achieved GEMM throughput must stay under each chip's dense peak (a ms/s or shape mix-up breaks this)
    g = table[(table["kind"] == "gemm") & table["batch"].isna()]
    tflops = 2 * g["m"] * g["n"] * g["k"] / g["measured_s"] / 1e12
    a100 = g["device"].str.contains("A100", case=False) | g["device"].str.startswith("a100")
    h100 = g["device"].str.contains("H100", case=False) | g["device"].str.startswith("h100")
    lowp = g["dtype"].isin(["fp8", "fp8_block"])
    assert tflops[a100].max() < 312 and tflops[a100].max() > 200
    assert tflops[h100 & ~lowp].max() < 990 and tflops[h100 & ~lowp].max() > 500
    assert tflops[h100 & lowp].max() < 1979

    nccl = _rows(table, AIC / "h100_sxm" / "nccl_perf.parquet")
    raw = pd.read_parquet(AIC / "h100_sxm" / "nccl_perf.parquet")
    size = np.where(raw["nccl_dtype"] == "half", 2, 1) * raw["message_size"].to_numpy()
    np.testing.assert_array_equal(nccl["message_bytes"].to_numpy(), size.astype(float))
    assert set(nccl["dtype"]) == {"fp16", "int8"}
    custom = _rows(table, AIC / "h100_sxm" / "custom_allreduce_perf.parquet")
    assert custom["message_bytes"].iloc[0] == 256.0  # 128 bf16 elements
    assert set(custom["variant"]) == {"vllm_graph", "vllm_eager"} and set(custom["dtype"]) == {"bf16"}
    # NCCL and the custom all-reduce agree at 512 MiB once both message sizes are read as elements
    # (nccl_perf holds every case twice: two collection passes)
    big = 268_435_456
    t_nccl = nccl[(nccl.kind == "all_reduce") & (nccl.num_gpus == 8) & (nccl.message_bytes == 2 * big)
                  & (nccl.dtype == "fp16")]["measured_s"].mean()
    t_custom = custom[(custom.num_gpus == 8) & (custom.message_bytes == 2 * big)
                      & (custom.variant == "vllm_graph")]["measured_s"].item()
    assert t_custom == pytest.approx(t_nccl, rel=0.05)


def test_aiconfigurator_attention_and_moe_fields(table):
    ctx = _rows(table, AIC / "h100_sxm" / "context_attention_perf.parquet")
    raw = pd.read_parquet(AIC / "h100_sxm" / "context_attention_perf.parquet")
    r = ctx.iloc[0]
    assert (r.batch, r.seq, r.ctx, r.heads, r.kv_heads, r.head_dim, r.window) == (4, 16384, 0, 64, 64, 64, 0)
    assert (r["dtype"], r["kv_dtype"], r["kernel"]) == ("bf16", "fp8", "vllm_flash_attn_fa3")
    np.testing.assert_array_equal(ctx["window"].to_numpy(), raw["window_size"].to_numpy(dtype=float))
    gen = _rows(table, AIC / "h100_sxm" / "generation_attention_perf.parquet")
    raw = pd.read_parquet(AIC / "h100_sxm" / "generation_attention_perf.parquet")
    np.testing.assert_array_equal(gen["ctx"].to_numpy(), raw["step"].to_numpy(dtype=float))
    assert (gen["seq"] == 1).all()
    a100 = load_aiconfigurator(AIC / "a100_sxm" / "generation_attention_perf.parquet")  # direct call
    assert (a100["window"] == 0).all()  # no window_size column in the A100 tables
    moe = _rows(table, AIC / "h100_sxm" / "moe_perf.parquet")
    r = moe.iloc[0]
    assert (r.tokens, r.hidden, r.inter, r.topk, r.experts, r.moe_tp, r.moe_ep) == (1, 4096, 2048, 6, 256, 1, 1)
    assert (r["distribution"], r["dtype"]) == ("balanced", "fp8_block")
    assert set(moe["dtype"]) == {"bf16", "fp8", "fp8_block", "int4_wo", "w4a16_mxfp4"}


def test_vidur_llama2_70b_tp8_gemm_shapes():
    df = load_vidur(L70_H100)
    tp8 = df[(df["tp"] == 8)]
    by_op = {op: g for op, g in tp8.groupby("op")}
    for op, n, k in (("attn_pre_proj", (64 + 2 * 8) * 128 / 8, 8192), ("attn_post_proj", 8192, 64 * 128 / 8),
                     ("mlp_up_proj", 2 * 28672 / 8, 8192), ("mlp_down_proj", 8192, 28672 / 8)):
        g = by_op[op]
        assert (g["kind"] == "gemm").all()
        assert set(g["n"]) == {n} and set(g["k"]) == {k}, op
        assert (g["m"] > 0).all() and g["tokens"].isna().all()
    assert set(by_op["attn_pre_proj"]["n"]) == {1280}
    rope = by_op["attn_rope"]
    assert set(rope["heads"]) == {8} and set(rope["kv_heads"]) == {1} and set(rope["head_dim"]) == {128}
    act = by_op["mlp_act"]
    assert set(act["inter"]) == {3584} and set(act["variant"]) == {"silu_mul"}
    assert set(by_op["input_layernorm"]["variant"]) == {"rmsnorm"} and set(by_op["add"]["hidden"]) == {8192}
    # value: 4096 tokens at TP8, first such row, median 0.643 ms
    raw = pd.read_csv(L70_H100)
    i = raw.index[(raw.num_tokens == 4096) & (raw.num_tensor_parallel_workers == 8)][0]
    up = df[(df["row"] == i) & (df["op"] == "mlp_up_proj")]
    assert up["measured_s"].item() == pytest.approx(0.643e-3) and up["m"].item() == 4096


def test_llmcompass_values_and_shapes():
    mm = load_llmcompass(LLMC / "matmul_A100.csv")
    assert (mm.m.iloc[0], mm.n.iloc[0], mm.k.iloc[0]) == (64, 12288, 12288)
    assert mm["measured_s"].iloc[0] == pytest.approx(0.1900e-3)
    sm = load_llmcompass(LLMC / "softmax_A100.csv")
    assert (sm.m.iloc[0], sm.n.iloc[0]) == (4096, 32)
    assert sm["measured_s"].iloc[0] == pytest.approx(4096 * 32 / 9.99556025250909e9)
    ln = load_llmcompass(LLMC / "layernorm_A100.csv")
    assert (ln.tokens.iloc[0], ln.hidden.iloc[0], ln.variant.iloc[0]) == (4096, 32, "layernorm")
    ge = load_llmcompass(LLMC / "gelu_A100.csv")
    assert (ge.inter.iloc[-1], ge.variant.iloc[-1]) == (536870912, "gelu")
    assert ge["measured_s"].iloc[-1] == pytest.approx(536870912 / 390.32758080867535e9)

    pre = load_llmcompass(LLMC / "transformer_A100.csv").set_index("op")
    assert pre.loc["Q_K_V", "measured_s"] == pytest.approx(0.013721823692321777 / 3)
    assert tuple(pre.loc["Q_K_V", ["m", "n", "k"]]) == (16384, 3072, 12288)
    assert tuple(pre.loc["Q_mul_K", ["batch", "m", "n", "k"]]) == (192, 2048, 2048, 128)
    assert tuple(pre.loc["W2_proj", ["m", "n", "k"]]) == (16384, 12288, 12288)
    assert tuple(pre.loc["Softmax", ["m", "n"]]) == (8 * 24 * 2048, 2048)
    assert pre.loc["AllReduce_MHA", "message_bytes"] == 8 * 2048 * 12288 * 2
    assert pre.loc["AllReduce_MHA", "measured_s"] == pytest.approx(0.0028909)
    for dup in ("LayerNorm_FFN", "AllReduce_FFN"):
        assert pre.loc[dup, "kind"] == "" and "duplicate" in pre.loc[dup, "variant"]
    dec = load_llmcompass(LLMC / "transformerAR_A100.csv").set_index("op")
    assert tuple(dec.loc["Q_mul_K", ["batch", "m", "n", "k"]]) == (192, 1, 3073, 128)
    assert tuple(dec.loc["A_mul_V", ["batch", "m", "n", "k"]]) == (192, 1, 128, 3073)
    assert tuple(dec.loc["W1_proj", ["m", "n", "k"]]) == (8, 12288, 12288)
    assert dec.loc["AllReduce_MHA", "measured_s"] == pytest.approx(26.04e-6)


def test_device_and_model_overrides():
    df = load_measurements(L70_H100, device="H100-SXM", model="llama-2-70b")
    assert set(df["device"]) == {"H100-SXM"} and set(df["model"]) == {"llama-2-70b"}
    assert list(df["shape_key"]) == list(load_vidur(L70_H100)["shape_key"])


# ---------------------------------------------------------------------------------------------- keys

def test_shape_key_is_deterministic_and_excludes_measurement(tmp_path):
    src = AIC / "a100_sxm" / "gemm_perf.parquet"
    a = load_measurements(src)
    assert list(a["shape_key"]) == list(load_measurements(src)["shape_key"])
    assert a["shape_key"].iloc[0] == "gemm|bf16|m=8192|n=65536|k=4096"
    raw = pd.read_parquet(src)
    raw["latency"] = raw["latency"] * 3.7
    raw["device"] = "some other GPU"
    raw.to_parquet(tmp_path / "gemm_perf.parquet")
    b = load_measurements(tmp_path / "gemm_perf.parquet")
    assert list(b["shape_key"]) == list(a["shape_key"])
    assert not np.allclose(b["measured_s"], a["measured_s"])
    # one key per distinct shape
    assert a["shape_key"].nunique() == len(raw.drop_duplicates(["gemm_dtype", "m", "n", "k"]))


def test_shape_key_is_device_independent(table):
    v = table[table["source"].str.contains("/vidur/compute/")]
    keys = {dev: set(g["shape_key"]) for dev, g in v.groupby("device")}
    assert keys["a100"] == keys["h100"]
    assert not any("measured" in k for k in table["shape_key"].head(1000))


def test_split_of_fraction_repeatability_and_formula(table):
    keys = table["shape_key"]
    held = split_of(keys)
    assert held.dtype == bool and held.shape == (len(keys),)
    assert 0.17 < held.mean() < 0.23
    per_key = pd.DataFrame({"k": keys.to_numpy(), "h": held}).groupby("k")["h"].nunique()
    assert (per_key == 1).all()  # one side per shape key (e.g. the same vidur op on A100 and H100)
    sample = keys.iloc[::17]
    np.testing.assert_array_equal(split_of(sample), held[::17])
    np.testing.assert_array_equal(split_of(list(sample)[::-1]), held[::17][::-1])  # order-independent
    assert not np.array_equal(split_of(sample, salt="other"), held[::17])
    assert not split_of(keys[:100], holdout_fraction=0.0).any()
    assert split_of(keys[:100], holdout_fraction=1.0).all()
    k = "gemm|bf16|m=128|n=4096|k=8192"
    h = int.from_bytes(hashlib.blake2b(b"llmsim-calib-v1\0" + k.encode(), digest_size=8).digest(), "big")
    assert split_of([k], holdout_fraction=0.5)[0] == (h / 2**64 < 0.5)
    with pytest.raises(ConfigError):
        split_of(keys[:3], holdout_fraction=1.5)
    assert split_of([]).shape == (0,)


def test_split_of_is_fast(table):
    keys = _rows(table, AIC / "h100_sxm" / "gemm_perf.parquet")["shape_key"]
    assert len(keys) == 107_188
    t0 = time.perf_counter()
    held = split_of(keys)
    assert time.perf_counter() - t0 < 1.0
    assert 0.18 < held.mean() < 0.22


# ---------------------------------------------------------------------------------------------- formats

@pytest.mark.parametrize("path,fmt", [
    (AIC / "h100_sxm" / "gemm_perf.parquet", "aiconfigurator"),
    (AIC / "a100_sxm" / "nccl_perf.parquet", "aiconfigurator"),
    (AIC / "h100_sxm" / "custom_allreduce_perf.parquet", "aiconfigurator"),
    (L70_H100, "vidur"),
    (VIDUR / "network" / "a100_dgx" / "all_reduce.csv", "vidur"),
    (VIDUR / "network" / "h100_dgx" / "send_recv.csv", "vidur"),
    (LLMC / "matmul_A100.csv", "llmcompass"),
    (LLMC / "softmax_A100.csv", "llmcompass"),
    (LLMC / "gelu_A100.csv", "llmcompass"),
    (LLMC / "transformerAR_A100.csv", "llmcompass"),
])
def test_detect_format(path, fmt):
    assert detect_format(path) == fmt


def test_unknown_format_is_a_trace_error(tmp_path):
    f = tmp_path / "foo.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(TraceError, match="foo.csv.*known formats.*aiconfigurator.*vidur.*llmcompass"):
        detect_format(f)
    p = tmp_path / "bar.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(p)
    with pytest.raises(TraceError, match="bar.parquet"):
        detect_format(p)
    g = tmp_path / "notes.txt"
    g.write_text("hello")
    with pytest.raises(TraceError, match="notes.txt"):
        detect_format(g)
    with pytest.raises(TraceError, match="nope"):
        load_measurements(tmp_path / "nope")
    with pytest.raises(UnknownNameError):
        load_measurements(LLMC / "matmul_A100.csv", format="vidurr")


def test_explicit_format_and_directory_order(tmp_path):
    df = load_measurements(LLMC, format="llmcompass")
    assert list(dict.fromkeys(df["source"])) == sorted({str(f) for f in LLMC.glob("*.csv")})
    shutil.copy(LLMC / "gelu_A100.csv", tmp_path / "gelu_A100.csv")
    (tmp_path / "README.md").write_text("not data")
    one = load_measurements(tmp_path)
    assert len(one) == 20 and set(one["source"]) == {str(tmp_path / "gelu_A100.csv")}
    empty = tmp_path / "empty"
    empty.mkdir()
    e = load_measurements(empty)
    assert len(e) == 0 and tuple(e.columns) == COLUMNS


# ---------------------------------------------------------------------------------------------- errors

def _gemm_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "framework": ["VLLM"] * 3, "version": ["0"] * 3, "device": ["GPU"] * 3, "op_name": ["gemm"] * 3,
        "kernel_source": ["k"] * 3, "gemm_dtype": ["bfloat16"] * 3,
        "m": [1, 2, 4], "n": [64, 64, 64], "k": [64, 64, 64], "latency": [0.01, 0.02, 0.03],
    })


def test_malformed_parquet_missing_column(tmp_path):
    p = tmp_path / "gemm_perf.parquet"
    _gemm_frame().drop(columns=["k"]).to_parquet(p)
    with pytest.raises(TraceError, match=r"gemm_perf\.parquet.*column 'k'.*missing required column"):
        load_measurements(p)


def test_malformed_parquet_negative_size(tmp_path):
    p = tmp_path / "gemm_perf.parquet"
    df = _gemm_frame()
    df.loc[2, "m"] = -4
    df.to_parquet(p)
    with pytest.raises(TraceError, match=r"gemm_perf\.parquet, row 2, column 'm': negative value -4"):
        load_measurements(p)


def test_malformed_parquet_non_numeric_and_bad_latency(tmp_path):
    p = tmp_path / "gemm_perf.parquet"
    df = _gemm_frame().astype({"n": str})
    df.loc[1, "n"] = "sixty-four"
    df.to_parquet(p)
    with pytest.raises(TraceError, match=r"row 1, column 'n': non-numeric value 'sixty-four'"):
        load_measurements(p)
    df = _gemm_frame()
    df.loc[0, "latency"] = 0.0
    df.to_parquet(p)
    with pytest.raises(TraceError, match=r"row 0, column 'latency'"):
        load_measurements(p)


def test_unreadable_parquet(tmp_path):
    p = tmp_path / "gemm_perf.parquet"
    p.write_bytes(b"this is not parquet at all")
    with pytest.raises(TraceError, match="gemm_perf.parquet"):
        load_measurements(p)
    with pytest.raises(TraceError, match="gemm_perf.parquet"):
        load_aiconfigurator(p)


def _vidur_copy(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    dest = tmp_path / "compute" / "h100" / "meta-llama" / "Llama-2-70b-hf" / "mlp.csv"
    dest.parent.mkdir(parents=True)
    return dest, pd.read_csv(L70_H100).head(20)


def test_malformed_vidur_non_numeric(tmp_path):
    dest, raw = _vidur_copy(tmp_path)
    raw = raw.astype({"num_tokens": object})
    raw.loc[5, "num_tokens"] = "abc"
    raw.to_csv(dest, index=False)
    with pytest.raises(TraceError, match=r"mlp\.csv, row 5, line 7, column 'num_tokens': non-numeric value 'abc'"):
        load_measurements(dest)


def test_malformed_vidur_negative_and_missing(tmp_path):
    dest, raw = _vidur_copy(tmp_path)
    raw.loc[3, "n_embd"] = -8192
    raw.to_csv(dest, index=False)
    with pytest.raises(TraceError, match=r"row 3, line 5, column 'n_embd': negative value"):
        load_vidur(dest)
    _, raw = dest, pd.read_csv(L70_H100).head(20)
    raw.drop(columns=["n_kv_head"]).to_csv(dest, index=False)
    with pytest.raises(TraceError, match=r"mlp\.csv, line 1, column 'n_kv_head': missing required column"):
        load_vidur(dest)


def test_vidur_nan_median_is_dropped_and_layout_gives_device(tmp_path):
    dest, raw = _vidur_copy(tmp_path)
    raw.loc[2, "time_stats.attn_rope.median"] = np.nan
    raw.to_csv(dest, index=False)
    df = load_vidur(dest)
    assert len(df) == 20 * 10 - 1
    assert not ((df["row"] == 2) & (df["op"] == "attn_rope")).any()
    assert set(df["device"]) == {"h100"} and set(df["model"]) == {"meta-llama/Llama-2-70b-hf"}
    flat = tmp_path / "mlp.csv"
    raw.to_csv(flat, index=False)
    assert set(load_vidur(flat)["device"]) == {""}
    assert set(load_vidur(flat, device="h100")["device"]) == {"h100"}


def test_malformed_llmcompass(tmp_path):
    f = tmp_path / "matmul_A100.csv"
    f.write_text("64, 12288, 12288, 0.1900ms, 101.7Tflops\n128, 12288, x, 0.2003ms, 193.0Tflops\n")
    with pytest.raises(TraceError, match=r"matmul_A100\.csv, row 1, line 2, column 'K': non-numeric value 'x'"):
        load_measurements(f)
    f.write_text("64, 12288, 12288, 0.1900ms, 101.7Tflops\n128, -12288, 12288, 0.2003ms, 193.0Tflops\n")
    with pytest.raises(TraceError, match=r"line 2, column 'N': negative value"):
        load_measurements(f)
    f.write_text("64, 12288, 12288, 0.1900ms\n")
    with pytest.raises(TraceError, match=r"matmul_A100\.csv, row 0, line 1: expected 5 comma-separated fields"):
        load_measurements(f)
    t = tmp_path / "transformer_A100.csv"
    t.write_text("0.1\n0.2\n")
    with pytest.raises(TraceError, match=r"transformer_A100\.csv.*expected 12 lines"):
        load_measurements(t)


def test_unmapped_rows_are_kept_not_dropped(tmp_path):
    p = tmp_path / "mixed_perf.parquet"
    df = _gemm_frame()
    df.loc[1, "op_name"] = "mla_bmm"
    df.to_parquet(p)
    out = load_aiconfigurator(p)
    assert list(out["kind"]) == ["gemm", "", "gemm"] and list(out["row"]) == [0, 1, 2]
    assert "unmapped" in out.loc[1, "variant"] and out.loc[1, "group"] == "mixed_perf | mla_bmm"
    assert out.loc[1, "measured_s"] == pytest.approx(0.02e-3)

    dest, raw = _vidur_copy(tmp_path)
    raw["time_stats.attn.median"] = 0.5
    raw.to_csv(dest, index=False)
    v = load_vidur(dest)
    odd = v[v["op"] == "attn"]
    assert len(odd) == 20 and (odd["kind"] == "").all() and odd["variant"].str.contains("unmapped").all()


def test_vidur_heads_must_split_over_tp(tmp_path):
    dest, raw = _vidur_copy(tmp_path)
    raw.loc[4, "n_kv_head"] = 6
    raw.loc[4, "num_tensor_parallel_workers"] = 4
    raw.to_csv(dest, index=False)
    with pytest.raises(TraceError, match=r"row 4, line 6, column 'n_kv_head': 6 is not divisible"):
        load_vidur(dest)
