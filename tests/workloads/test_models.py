"""Model specs, HF config parsing and the built-in catalogue (workloads/models.py)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.workloads.errors import ConfigError, LLMSimError, UnknownNameError
from llmsim.workloads.quant import get_quant_format
from llmsim.workloads.models import (
    MLASpec,
    ModelSpec,
    MoESpec,
    catalogue_config,
    catalogue_entry,
    from_hf_dict,
    get_model,
    list_models,
    load_hf_config,
)

REPO = Path(__file__).resolve().parents[2]

REQUIRED = {
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3.1-8b", "llama-3.1-70b",
    "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "qwen-72b", "qwen2.5-72b", "codellama-34b",
    "internlm-20b", "phi-2", "opt-66b", "opt-175b", "bloom-176b", "gpt3-175b", "deepseek-v3",
    "gpt-7.5b", "gpt-39.1b",
    "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "mistral-nemo-12b",
    "gemma-3-1b", "gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "gpt-oss-20b", "gpt-oss-120b",
    "llama-4-scout-17b-16e", "llama-4-maverick-17b-128e",
}

# Published totals written down here independently of the JSON files, so the 1% check cannot be
# circular (sources: Hub parameter counts, model cards and papers; see data/models/README.md).
HARD_CODED_TOTALS = {
    "llama-2-7b": 6.74e9,
    "llama-2-13b": 13.0e9,
    "llama-2-70b": 69.0e9,
    "llama-3-8b": 8.03e9,
    "llama-3.1-8b": 8.03e9,
    "llama-3.1-70b": 70.6e9,
    "llama-3.1-405b": 405.9e9,
    "mistral-7b": 7.24e9,
    "mixtral-8x7b": 46.7e9,
    "mixtral-8x22b": 141e9,
    "qwen2.5-72b": 72.7e9,
    "codellama-34b": 33.7e9,
    "phi-2": 2.78e9,
    "opt-66b": 66e9,
    "opt-175b": 175e9,
    "bloom-176b": 176.2e9,
    "gpt3-175b": 175e9,
    "deepseek-v3": 671e9,
    "gpt-7.5b": 7.5e9,  # Megatron-LM (Narayanan et al. 2021) Table 1
    "gpt-39.1b": 39.1e9,  # same table; Holmes (arXiv 2312.03549)
    "qwen3-8b": 8.2e9,  # Qwen3 model cards
    "qwen3-14b": 14.8e9,
    "qwen3-32b": 32.8e9,
    "qwen3-30b-a3b": 30.5e9,
    "qwen3-235b-a22b": 235e9,
    "mistral-nemo-12b": 12.2e9,  # Hub page of Mistral-Nemo-Base-2407
    "gemma-3-1b": 1.000e9,  # Gemma 3 tech report Table 1 (vision + embedding + non-embedding)
    "gemma-3-4b": 4.301e9,
    "gemma-3-12b": 12.188e9,
    "gemma-3-27b": 27.433e9,
    "gpt-oss-20b": 20.91e9,  # gpt-oss model card Table 1
    "gpt-oss-120b": 116.83e9,
    "llama-4-scout-17b-16e": 109e9,  # Llama 4 model card (vision encoder included)
    "llama-4-maverick-17b-128e": 400e9,
}

# Gemma 3 tech report Table 1 without the 417M vision encoder (embedding + non-embedding).
GEMMA3_TEXT_TOTALS = {"gemma-3-4b": 3.884e9, "gemma-3-12b": 11.771e9, "gemma-3-27b": 27.016e9}

# Exact totals known from model cards / papers / safetensors metadata.
EXACT_TOTALS = {
    "bloom-176b": 176_247_271_424,  # BLOOM model card
    "gpt-neox-20b": 20_554_567_680,  # GPT-NeoX-20B paper
    "llama-2-7b": 6_738_415_616,  # safetensors metadata of meta-llama/Llama-2-7b-hf
    "mixtral-8x7b": 46_702_792_704,  # safetensors metadata of mistralai/Mixtral-8x7B-v0.1
    "deepseek-v3": 671_026_419_200,  # 685B on the Hub less the 14B MTP layer (DeepSeek-V3 README)
}


def rel_err(value: float, expected: float) -> float:
    return abs(value - expected) / expected


# ---- catalogue and parameter counts -----------------------------------------------------------

def test_catalogue_has_required_models():
    names = list_models()
    assert REQUIRED <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(REQUIRED | {"gpt-neox-20b"}))
def test_param_count_matches_published_total_in_catalogue(name):
    spec = get_model(name)
    entry = catalogue_entry(name)
    assert entry["name"] == spec.name == name
    assert entry["params_source"]
    assert rel_err(spec.param_count(), entry["published_params"]) < 0.01, (spec.param_count(), entry)


@pytest.mark.parametrize("name, published", sorted(HARD_CODED_TOTALS.items()))
def test_param_count_matches_hard_coded_total(name, published):
    assert rel_err(get_model(name).param_count(), published) < 0.01
    assert rel_err(catalogue_entry(name)["published_params"], published) < 0.01


@pytest.mark.parametrize("name, exact", sorted(EXACT_TOTALS.items()))
def test_exact_totals(name, exact):
    assert get_model(name).param_count() == exact


def test_active_params_moe():
    v3 = get_model("deepseek-v3")
    assert rel_err(v3.active_param_count(), 37e9) < 0.03
    assert rel_err(get_model("mixtral-8x7b").active_param_count(), 12.9e9) < 0.01
    assert rel_err(get_model("mixtral-8x22b").active_param_count(), 39e9) < 0.01
    for name in ("deepseek-v3", "mixtral-8x7b", "mixtral-8x22b", "qwen3-30b-a3b", "qwen3-235b-a22b",
                 "llama-4-scout-17b-16e", "llama-4-maverick-17b-128e"):
        entry = catalogue_entry(name)
        assert rel_err(get_model(name).active_param_count(), entry["published_active_params"]) < 0.03
    assert rel_err(get_model("qwen3-235b-a22b").active_param_count(), 22e9) < 0.01
    assert rel_err(get_model("llama-4-scout-17b-16e").active_param_count(), 17e9) < 0.015
    # OpenAI counts the unembedding but not the embedding table as active (model card Table 1)
    for name, active in (("gpt-oss-20b", 3.61e9), ("gpt-oss-120b", 5.13e9)):
        spec = get_model(name)
        assert rel_err(spec.active_param_count() - spec.embedding_params(), active) < 0.01
        assert rel_err(catalogue_entry(name)["published_active_params"], active) < 0.01


@pytest.mark.parametrize("name, text", sorted(GEMMA3_TEXT_TOTALS.items()))
def test_gemma3_text_and_vision_split(name, text):
    spec = get_model(name)
    assert rel_err(spec.param_count() - spec.vision_params, text) < 0.005
    assert rel_err(spec.vision_params, 417e6) < 0.02  # SigLIP encoder, same in every size
    assert catalogue_entry(name)["published_text_params"] == text


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_breakdown_sums_to_total(name):
    spec = get_model(name)
    parts = spec.param_breakdown()
    assert sum(parts.values()) == spec.param_count()
    assert all(v >= 0 for v in parts.values())
    per_layer = spec.num_dense_layers * spec.params_per_layer("dense_layer") + spec.num_moe_layers * spec.params_per_layer(
        "moe_layer"
    )
    assert (per_layer + spec.embedding_params() + spec.lm_head_params() + spec.final_norm_params()
            + spec.vision_params == spec.param_count())
    if spec.moe is None:
        assert spec.active_param_count() == spec.param_count() - spec.vision_params
    else:
        assert spec.active_param_count() < spec.param_count()


def test_params_per_layer_kinds():
    llama = get_model("llama-2-70b")
    assert llama.params_per_layer("attention") == 8192 * (8192 + 2 * 1024) + 8192 * 8192
    assert llama.params_per_layer("dense_mlp") == 3 * 8192 * 28672
    assert llama.params_per_layer("norms") == 2 * 8192
    assert llama.params_per_layer("expert") == llama.params_per_layer("moe") == 0
    assert llama.embedding_params() == llama.lm_head_params() == 32000 * 8192
    mixtral = get_model("mixtral-8x7b")
    assert mixtral.params_per_layer("expert") == 3 * 4096 * 14336
    assert mixtral.params_per_layer("router") == 8 * 4096
    assert mixtral.num_moe_layers == 32 and mixtral.num_dense_layers == 0
    v3 = get_model("deepseek-v3")
    assert v3.params_per_layer("shared_experts") == 3 * 7168 * 2048
    assert v3.params_per_layer("router") == 256 * 7168 + 256  # gate + e_score_correction_bias
    with pytest.raises(ValueError, match="unknown parameter kind"):
        llama.params_per_layer("mlps")


# ---- parsing details ----------------------------------------------------------------------------

def test_parsed_architecture_details():
    qwen = get_model("qwen-72b")
    assert (qwen.intermediate_size, qwen.head_dim, qwen.num_kv_heads, qwen.qkv_bias, qwen.o_bias) == (24576, 128, 64, True, False)
    assert qwen.vocab_size == 152064 and qwen.architecture == "QWenLMHeadModel"

    q25 = get_model("qwen2.5-72b")
    assert q25.qkv_bias and not q25.o_bias and q25.sliding_window is None and q25.num_kv_heads == 8

    mistral = get_model("mistral-7b")
    assert mistral.sliding_window == 4096 and mistral.architecture == "MistralForCausalLM"

    l31 = get_model("llama-3.1-70b")
    assert l31.rope_scaling == "llama3" and l31.rope_theta == 500000.0 and l31.max_context == 131072
    assert l31.hf_id == "meta-llama/Llama-3.1-70B"

    phi = get_model("phi-2")
    assert phi.rotary_fraction == pytest.approx(0.4) and phi.parallel_residual and phi.norm_type == "layernorm"
    assert phi.activation == "gelu_new" and phi.lm_head_bias and phi.norms_per_layer == 1

    opt = get_model("opt-66b")
    assert opt.position_embedding == "learned" and opt.num_position_embeddings == 2050
    assert (opt.activation, opt.mlp_gated, opt.tied_embeddings, opt.qkv_bias) == ("relu", False, True, True)
    assert opt.intermediate_size == 36864

    bloom = get_model("bloom")
    assert bloom.position_embedding == "alibi" and bloom.intermediate_size == 4 * 14336 and bloom.tied_embeddings
    assert bloom.embedding_norm and bloom.num_layers == 70 and bloom.num_heads == 112

    neox = get_model("gpt-neox-20b")
    assert neox.rotary_fraction == pytest.approx(0.25) and neox.parallel_residual

    gpt3 = get_model("gpt-3")
    assert (gpt3.num_layers, gpt3.hidden_size, gpt3.num_heads, gpt3.max_context, gpt3.vocab_size) == (96, 12288, 96, 2048, 50257)
    assert gpt3.hf_id is None

    internlm = get_model("internlm-20b")
    assert internlm.architecture == "InternLMForCausalLM" and not internlm.qkv_bias and internlm.num_layers == 60

    v3 = get_model("deepseek-v3")
    assert v3.moe == MoESpec(num_experts=256, top_k=8, expert_intermediate_size=2048, num_shared_experts=1,
                             shared_expert_intermediate_size=2048, first_dense_layers=3, router_bias=True,
                             scoring="sigmoid")
    assert v3.mla == MLASpec(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    assert (v3.num_moe_layers, v3.num_dense_layers, v3.intermediate_size) == (58, 3, 18432)
    assert v3.q_dim == 128 * 192 and v3.kv_dim == 576 and v3.attn_out_dim == 128 * 128


def test_attention_patterns_of_recent_models():
    g27 = get_model("gemma-3-27b")
    full = [i for i in range(62) if g27.layer_type(i) == "full"]
    assert full == list(range(5, 62, 6))  # 5 local : 1 global
    assert g27.attention_window_groups == ((0, 10), (1024, 52))
    assert (g27.head_dim, g27.query_pre_attn_scalar, g27.norms_per_layer, g27.qk_norm) == (128, 168.0, 4, True)
    assert g27.tied_embeddings and g27.lm_head_params() == 0 and g27.vocab_size == 262208
    g4 = get_model("gemma-3-4b")  # Hub text_config relies on Gemma3TextConfig defaults
    assert (g4.num_heads, g4.num_kv_heads, g4.head_dim, g4.query_pre_attn_scalar) == (8, 4, 256, 256.0)
    assert g4.activation == "gelu_pytorch_tanh" and g4.rope_scaling == "linear"
    assert get_model("gemma-3-1b").attention_window_groups == ((0, 4), (512, 22))

    oss = get_model("gpt-oss-20b")
    assert [oss.attention_window(i) for i in range(4)] == [128, 0, 128, 0]
    assert oss.attention_sinks and oss.qkv_bias and oss.o_bias and oss.expert_weight_format == "mxfp4"
    assert get_quant_format(oss.expert_weight_format).bits_per_weight == 4.25  # e2m1 + one e8m0 per 32
    h, q, kv = 2880, 64 * 64, 8 * 64
    assert oss.params_per_layer("attention") == 2 * h * q + 2 * h * kv + (q + 2 * kv + h) + 64  # + 64 sink logits
    assert oss.params_per_layer("expert") == 3 * h * 2880 + 2 * 2880 + h  # gate_up and down biases
    assert oss.params_per_layer("router") == 32 * h + 32
    assert oss.moe.top_k == 4 and oss.num_moe_layers == 24

    scout = get_model("llama-4-scout-17b-16e")
    assert scout.no_rope_layers == tuple(range(3, 48, 4))
    assert [scout.layer_type(i) for i in range(4)] == ["chunked", "chunked", "chunked", "full"]
    assert scout.attention_window_groups == ((0, 12), (8192, 36)) and scout.num_rope_layers == 36
    assert scout.moe.num_shared_experts == 1 and scout.moe.shared_expert_intermediate_size == 8192
    assert not scout.moe.shared_expert_gate and scout.moe.scoring == "sigmoid" and scout.num_moe_layers == 48
    mav = get_model("llama-4-maverick-17b-128e")
    assert mav.moe_layer_indices == tuple(range(1, 48, 2))  # interleave_moe_layer_step 2: layers 1, 3, ...
    assert (mav.num_dense_layers, mav.intermediate_size, mav.moe.num_experts) == (24, 16384, 128)

    nemo = get_model("mistral-nemo-12b")
    assert (nemo.head_dim, nemo.q_dim, nemo.hidden_size, nemo.sliding_window) == (128, 4096, 5120, None)
    q3 = get_model("qwen3-235b-a22b")
    assert q3.qk_norm and q3.moe.num_experts == 128 and q3.moe.top_k == 8 and q3.attention_window_groups == ((0, 94),)
    assert get_model("mistral-7b").attention_window_groups == ((4096, 32),)  # one window for all layers


def test_windowed_kv_cache_elements():
    g = get_model("gemma-3-27b")
    per = g.kv_cache_elements_per_token()
    assert g.kv_cache_elements_for_context(32768, windowed=False) == 32768 * 62 * per
    assert g.kv_cache_elements_for_context(32768, windowed=True) == (10 * 32768 + 52 * 1024) * per
    assert g.kv_cache_elements_for_context(100, windowed=True) == g.kv_cache_elements_for_context(100, windowed=False)


def test_decoder_sparse_step_makes_every_kth_layer_moe():
    cfg = catalogue_config("qwen3-30b-a3b") | {"decoder_sparse_step": 2}
    spec = from_hf_dict(cfg, name="x")
    assert spec.moe_layer_indices == tuple(range(1, 48, 2))  # Qwen-MoE: (i + 1) % step == 0
    assert spec.num_dense_layers == 24 and spec.intermediate_size == 6144
    with pytest.raises(ConfigError, match="decoder_sparse_step"):
        from_hf_dict(cfg | {"moe_layer_freq": 2}, name="x")


def test_bad_attention_patterns_are_config_errors():
    with pytest.raises(ConfigError, match="`layer_types` must be a list"):
        _tiny(layer_types="full")
    with pytest.raises(ConfigError, match="`layer_types` has 3 entries but the model has 2 layers"):
        _tiny(layer_types=("full", "full", "full"))
    with pytest.raises(ConfigError, match="'sliding' layers but `sliding_window` is not set"):
        _tiny(layer_types=("sliding", "full"))
    with pytest.raises(ConfigError, match="`attention_chunk_size` is not set"):
        _tiny(layer_types=("chunked", "full"))
    with pytest.raises(ConfigError, match="layer_types"):
        _tiny(layer_types=("global", "full"))
    with pytest.raises(ConfigError, match="no_rope_layers"):
        _tiny(no_rope_layers=(2,))
    with pytest.raises(ConfigError, match="expert_weight_format"):
        _tiny(expert_weight_format="mxfp4")
    cfg = catalogue_config("gpt-oss-20b") | {"layer_types": ["local"] * 24}
    with pytest.raises(ConfigError, match="field `layer_types`"):
        from_hf_dict(cfg, name="x")
    cfg = catalogue_config("llama-4-maverick")
    cfg["text_config"] = cfg["text_config"] | {"moe_layers": [0, 2]}
    with pytest.raises(ConfigError, match="`moe_layers`"):
        from_hf_dict(cfg, name="x")
    cfg = catalogue_config("gemma-3-4b")
    del cfg["vision_config"]["patch_size"]
    with pytest.raises(ConfigError, match="vision_config"):
        from_hf_dict(cfg, name="x")


def test_internlm_bias_true_gives_qkv_and_o_bias():
    cfg = catalogue_config("internlm-20b") | {"bias": True}
    spec = from_hf_dict(cfg)
    base = get_model("internlm-20b")
    assert spec.qkv_bias and spec.o_bias
    assert spec.param_count() - base.param_count() == 60 * 4 * 5120


def test_kv_cache_elements():
    l70 = get_model("llama-2-70b")
    assert l70.kv_cache_elements_per_token() == 8 * 128 * 2 == 2048
    assert l70.kv_cache_elements_per_token_total() == 2048 * 80
    v3 = get_model("deepseek-v3")
    assert v3.kv_cache_elements_per_token() == 512 + 64 == 576
    assert v3.kv_cache_elements_per_token_total() == 576 * 61
    assert get_model("llama-2-7b").kv_cache_elements_per_token() == 2 * 32 * 128
    assert get_model("qwen-72b").kv_cache_elements_per_token() == 2 * 64 * 128


# ---- names ----------------------------------------------------------------------------------------

RESOLUTION = [
    ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
    ("meta-llama/Meta-Llama-3.1-70B", "llama-3.1-70b"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
    ("meta-llama/Llama-2-70b-hf", "llama-2-70b"),
    ("meta-llama/Llama-2-70b-chat-hf", "llama-2-70b"),
    ("meta-llama/Meta-Llama-3-70B", "llama-3-70b"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("codellama/CodeLlama-34b-Instruct-hf", "codellama-34b"),
    ("codellama/CodeLlama-34b-hf", "codellama-34b"),
    ("internlm/internlm-20b", "internlm-20b"),
    ("Qwen/Qwen-72B", "qwen-72b"),
    ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
    ("microsoft/phi-2", "phi-2"),
    ("mistralai/Mistral-7B-v0.1", "mistral-7b"),
    ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
    ("bigscience/bloom", "bloom-176b"),
    ("facebook/opt-66b", "opt-66b"),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
    ("llama-3.1-70b", "llama-3.1-70b"),
    ("llama3.1-70b", "llama-3.1-70b"),
    ("llama-3-70b", "llama-3-70b"),
    ("llama2-70b", "llama-2-70b"),
    ("llama-2-70b", "llama-2-70b"),
    ("llama2-7b", "llama-2-7b"),
    ("mixtral-8x7b", "mixtral-8x7b"),
    ("bloom-176b", "bloom-176b"),
    ("bloom", "bloom-176b"),
    ("gpt3-175b", "gpt3-175b"),
    ("gpt-3", "gpt3-175b"),
    ("opt-175b", "opt-175b"),
    ("deepseek-v3", "deepseek-v3"),
    ("qwen-72b", "qwen-72b"),
    ("phi-2", "phi-2"),
    ("codellama-34b", "codellama-34b"),
    ("internlm-20b", "internlm-20b"),
    ("mistral-7b", "mistral-7b"),
    ("LLAMA_3.1_70B", "llama-3.1-70b"),
    ("some-mirror/Llama-2-7b-hf", "llama-2-7b"),  # org prefix is ignored when the id is unknown
]


@pytest.mark.parametrize("query, canonical", RESOLUTION)
def test_name_resolution(query, canonical):
    assert get_model(query).name == canonical
    assert catalogue_entry(query)["name"] == canonical


def test_every_listed_hf_id_and_alias_resolves_to_its_model():
    for name in list_models():
        entry = catalogue_entry(name)
        for alias in (*entry["aliases"], *entry["hf_ids"]):
            assert get_model(alias).name == name, alias


def test_distinct_models_are_distinct_objects_and_cached():
    assert get_model("llama-2-70b") is get_model("meta-llama/Llama-2-70b-hf")
    assert get_model("llama-3-8b") is not get_model("llama-3.1-8b")


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as info:
        get_model("llama-3.1-7b")
    err = info.value
    assert isinstance(err, LLMSimError) and isinstance(err, KeyError)
    assert {"llama-3.1-8b", "llama-3.1-70b"} & set(err.suggestions)
    assert "llama-3.1-8b" in str(err) or "llama-3.1-70b" in str(err)
    assert err.kind == "model"


def test_unknown_hf_id_suggests():
    with pytest.raises(UnknownNameError) as info:
        get_model("meta-llama/Llama-3.1-7B-Instruct")
    assert {"llama-3.1-8b", "llama-3.1-70b"} & set(info.value.suggestions)
    with pytest.raises(UnknownNameError):
        catalogue_entry("mixtral-8x9b")


# ---- loading configs from files -----------------------------------------------------------------

def test_load_config_from_tmp_dir_and_file(tmp_path):
    cfg = catalogue_config("llama-2-70b")
    model_dir = tmp_path / "my-llama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(cfg))
    from_dir = get_model(str(model_dir))
    from_file = load_hf_config(model_dir / "config.json")
    assert from_dir.name == from_file.name == "my-llama"
    assert from_dir.param_count() == get_model("llama-2-70b").param_count()
    other = tmp_path / "tiny.json"
    other.write_text(json.dumps(cfg))
    assert get_model(str(other)).name == "tiny"
    assert dataclasses.replace(from_dir, name="llama-2-70b", hf_id="meta-llama/Llama-2-70b-hf") == get_model("llama-2-70b")


def test_missing_path_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such"):
        get_model(str(tmp_path / "nope" / "config.json"))
    with pytest.raises(ConfigError, match="no such"):
        load_hf_config(tmp_path)


def test_invalid_json_names_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        load_hf_config(bad)


def _llama_cfg(**changes):
    cfg = catalogue_config("llama-2-7b")
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def test_missing_field_names_field_and_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_llama_cfg(num_attention_heads=None)))
    with pytest.raises(ConfigError) as info:
        load_hf_config(path)
    message = str(info.value)
    assert "config.json" in message and "`num_attention_heads`" in message and "LlamaForCausalLM" in message
    assert "missing field" in message


@pytest.mark.parametrize(
    "field, value",
    [("num_hidden_layers", -3), ("hidden_size", 0), ("num_attention_heads", "32"), ("intermediate_size", 11008.5),
     ("vocab_size", True), ("num_key_value_heads", -8)],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        from_hf_dict(_llama_cfg(**{field: value}), source="cfg.json")


def test_bad_value_other_families():
    bloom = catalogue_config("bloom") | {"n_layer": 0}
    with pytest.raises(ConfigError, match="`n_layer`"):
        from_hf_dict(bloom)
    qwen = catalogue_config("qwen-72b") | {"intermediate_size": 49153}
    with pytest.raises(ConfigError, match="`intermediate_size`"):
        from_hf_dict(qwen)
    opt = {k: v for k, v in catalogue_config("opt-66b").items() if k != "ffn_dim"}
    with pytest.raises(ConfigError, match="`ffn_dim`"):
        from_hf_dict(opt)
    mixtral = catalogue_config("mixtral-8x7b") | {"num_experts_per_tok": 9}
    with pytest.raises(ConfigError, match="top_k"):
        from_hf_dict(mixtral)
    gqa = _llama_cfg(num_key_value_heads=5)
    with pytest.raises(ConfigError, match="`num_key_value_heads`"):
        from_hf_dict(gqa)
    with pytest.raises(ConfigError, match=r"^mixtral\.json: .*`top_k`"):
        from_hf_dict(mixtral, source="mixtral.json")


def test_directory_named_like_a_model_without_config_falls_back_to_catalogue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "phi-2").mkdir()
    assert get_model("phi-2").name == "phi-2"
    (tmp_path / "my-model").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        get_model("my-model")


def test_unknown_llama_like_architecture_parses():
    cfg = _llama_cfg(architectures=["FooForCausalLM"], model_type="foo")
    spec = from_hf_dict(cfg, name="foo")
    assert spec.architecture == "FooForCausalLM"
    assert spec.param_count() == get_model("llama-2-7b").param_count()


def test_unusable_config_names_what_is_missing():
    with pytest.raises(ConfigError, match="missing field `num_hidden_layers`.*BarModel"):
        from_hf_dict({"architectures": ["BarModel"], "hidden_size": 64})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        from_hf_dict([1, 2, 3])  # type: ignore[arg-type]


def test_gpt2_style_config():
    gpt2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12,
            "n_positions": 1024, "vocab_size": 50257}
    spec = from_hf_dict(gpt2, name="gpt2")
    assert spec.param_count() == 124_439_808  # GPT-2 small, tied embeddings


def test_mixtral_like_and_qwen2_moe_parse():
    qwen_moe = {
        "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 24,
        "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4, "decoder_sparse_step": 1,
        "mlp_only_layers": [], "vocab_size": 151936, "max_position_embeddings": 8192, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    spec = from_hf_dict(qwen_moe, name="qwen1.5-moe-a2.7b")
    assert spec.moe is not None and spec.moe.num_shared_experts == 1 and spec.moe.shared_expert_gate
    assert rel_err(spec.param_count(), 14.3e9) < 0.01  # Qwen1.5-MoE-A2.7B: 14.3B total
    assert rel_err(spec.active_param_count(), 2.7e9) < 0.03  # 2.7B activated (incl. embeddings)


# ---- specs ------------------------------------------------------------------------------------------

def _tiny(**changes) -> ModelSpec:
    fields = dict(name="tiny", architecture="LlamaForCausalLM", num_layers=2, hidden_size=64, num_heads=4,
                  num_kv_heads=2, head_dim=16, intermediate_size=128, vocab_size=100, max_context=256)
    fields.update(changes)
    return ModelSpec(**fields)


def test_spec_validation_messages():
    with pytest.raises(ConfigError, match=r"`num_heads` must be a positive integer, got 0"):
        _tiny(num_heads=0)
    with pytest.raises(ConfigError, match="`norm_type`"):
        _tiny(norm_type="batchnorm")
    with pytest.raises(ConfigError, match="`rotary_fraction`"):
        _tiny(rotary_fraction=1.5)
    with pytest.raises(ConfigError, match="`qkv_bias`"):
        _tiny(qkv_bias=1)
    with pytest.raises(ConfigError, match="`sliding_window`"):
        _tiny(sliding_window=-1)
    with pytest.raises(ConfigError, match="num_position_embeddings"):
        _tiny(position_embedding="learned")
    with pytest.raises(ConfigError, match="`top_k`"):
        MoESpec(num_experts=4, top_k=5, expert_intermediate_size=8)
    with pytest.raises(ConfigError, match="`kv_lora_rank`"):
        MLASpec(q_lora_rank=None, kv_lora_rank=0, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)
    with pytest.raises(TypeError):
        ModelSpec("tiny")  # type: ignore[misc]  # keyword-only


def test_spec_is_frozen_and_hashable():
    spec = get_model("mixtral-8x7b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_layers = 3  # type: ignore[misc]
    assert hash(spec) == hash(get_model("mixtral-8x7b"))


@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 8), heads=st.sampled_from([1, 2, 4, 8]), group=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([8, 16, 64]), inter=st.integers(1, 512), vocab=st.integers(1, 5000),
    tied=st.booleans(), bias=st.booleans(),
)
def test_llama_like_count_matches_closed_form(layers, heads, group, head_dim, inter, vocab, tied, bias):
    kv = max(1, heads // group)
    hidden = heads * head_dim
    cfg = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": layers, "hidden_size": hidden,
           "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab,
           "max_position_embeddings": 128, "tie_word_embeddings": tied, "attention_bias": bias}
    spec = from_hf_dict(cfg, name="x")
    attn = 2 * hidden * hidden + 2 * hidden * kv * head_dim + ((hidden + 2 * kv * head_dim + hidden) if bias else 0)
    layer = attn + 3 * hidden * inter + 2 * hidden
    expected = layers * layer + vocab * hidden * (1 if tied else 2) + hidden
    assert spec.param_count() == expected
    assert spec.kv_cache_elements_per_token_total() == layers * 2 * kv * head_dim


def test_catalogue_is_loaded_lazily():
    code = "import workloads.models as m; assert m._catalogue.cache_info().currsize == 0; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr
