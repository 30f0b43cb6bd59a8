"""Model descriptions: typed specs, Hugging Face ``config.json`` parsing and the built-in catalogue.

Counts are numbers of parameters (elements), widths are numbers of elements; bytes depend on the
weight format, which is another module's business. ``get_model`` takes a catalogue name, an HF id
or a path to a ``config.json`` (or a directory holding one).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llmsim.workloads.errors import ConfigError, UnknownNameError
from llmsim.workloads.naming import NameIndex

__all__ = [
    "MoESpec",
    "MLASpec",
    "ModelSpec",
    "from_hf_dict",
    "load_hf_config",
    "get_model",
    "list_models",
    "catalogue_entry",
    "catalogue_config",
    "resolve_model_name",
]

NORM_TYPES = ("rmsnorm", "layernorm")
POSITION_EMBEDDINGS = ("rope", "alibi", "learned")
ROUTER_SCORINGS = ("softmax", "sigmoid")
#: Per-layer attention kinds: 'full' (causal over the whole context), 'sliding' (the last
#: ``sliding_window`` tokens), 'chunked' (Llama-4: keys of the query's own ``attention_chunk_size`` chunk).
LAYER_TYPES = ("full", "sliding", "chunked")
PARAM_KINDS = (
    "attention", "dense_mlp", "expert", "shared_experts", "router", "moe", "norms", "dense_layer", "moe_layer",
)


# --------------------------------------------------------------------------------------------
# validation helpers (spec level: messages name the spec field)
# --------------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need_int(owner: str, field: str, value: Any, *, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{owner}: `{field}` must be {what}, got {value!r}")


def _need_opt_int(owner: str, field: str, value: Any) -> None:
    if value is not None:
        _need_int(owner, field, value)


def _need_bool(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: `{field}` must be true or false, got {value!r}")


def _need_str(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{owner}: `{field}` must be a non-empty string, got {value!r}")


def _need_choice(owner: str, field: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{owner}: `{field}` must be one of {', '.join(map(repr, choices))}, got {value!r}")


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """Mixture-of-experts MLP. Widths in elements.

    A layer ``i`` is MoE when ``i >= first_dense_layers and i % layer_freq == layer_offset``
    (DeepSeek: offset 0; Llama-4 ``interleave_moe_layer_step`` and Qwen ``decoder_sparse_step``:
    offset ``layer_freq - 1``); the other layers use the dense MLP of width
    ``ModelSpec.intermediate_size``.
    """

    num_experts: int
    top_k: int
    expert_intermediate_size: int
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0  # total width of the shared expert(s) MLP
    first_dense_layers: int = 0
    layer_freq: int = 1
    layer_offset: int = 0
    shared_expert_gate: bool = False  # Qwen2-MoE: a hidden->1 sigmoid gate on the shared expert
    router_bias: bool = False  # one bias per expert: DeepSeek-V3 noaux_tc score correction, gpt-oss router bias
    scoring: str = "softmax"

    def __post_init__(self) -> None:
        owner = "MoESpec"
        _need_int(owner, "num_experts", self.num_experts)
        _need_int(owner, "top_k", self.top_k)
        _need_int(owner, "expert_intermediate_size", self.expert_intermediate_size)
        _need_int(owner, "num_shared_experts", self.num_shared_experts, minimum=0)
        _need_int(owner, "shared_expert_intermediate_size", self.shared_expert_intermediate_size, minimum=0)
        _need_int(owner, "first_dense_layers", self.first_dense_layers, minimum=0)
        _need_int(owner, "layer_freq", self.layer_freq)
        _need_int(owner, "layer_offset", self.layer_offset, minimum=0)
        if self.layer_offset >= self.layer_freq:
            raise ConfigError(f"{owner}: `layer_offset` ({self.layer_offset}) must be below `layer_freq` ({self.layer_freq})")
        _need_bool(owner, "shared_expert_gate", self.shared_expert_gate)
        _need_bool(owner, "router_bias", self.router_bias)
        _need_choice(owner, "scoring", self.scoring, ROUTER_SCORINGS)
        if self.top_k > self.num_experts:
            raise ConfigError(f"{owner}: `top_k` ({self.top_k}) exceeds `num_experts` ({self.num_experts})")
        if (self.num_shared_experts == 0) != (self.shared_expert_intermediate_size == 0):
            raise ConfigError(
                f"{owner}: `num_shared_experts` ({self.num_shared_experts}) and "
                f"`shared_expert_intermediate_size` ({self.shared_expert_intermediate_size}) must both be 0 or both positive"
            )


@dataclass(frozen=True, kw_only=True)
class MLASpec:
    """DeepSeek multi-head latent attention. Ranks and head dims in elements."""

    q_lora_rank: int | None  # None: plain q_proj (DeepSeek-V2-Lite)
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        owner = "MLASpec"
        _need_opt_int(owner, "q_lora_rank", self.q_lora_rank)
        _need_int(owner, "kv_lora_rank", self.kv_lora_rank)
        _need_int(owner, "qk_nope_head_dim", self.qk_nope_head_dim, minimum=0)
        _need_int(owner, "qk_rope_head_dim", self.qk_rope_head_dim)
        _need_int(owner, "v_head_dim", self.v_head_dim)

    @property
    def qk_head_dim(self) -> int:
        """Per-head width of Q and K after up-projection: nope + rope."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, enough to count weights, FLOPs and KV cache.

    ``head_dim`` is the Q/K head width (for MLA: qk_nope_head_dim + qk_rope_head_dim).
    ``intermediate_size`` is the width of one branch of the dense MLP (gate and up each have it).
    ``max_context`` is in tokens. ``embed_dim`` is None unless the token embedding width differs
    from ``hidden_size`` (OPT ``word_embed_proj_dim``). ``num_position_embeddings`` is the row
    count of a learned position table (0 unless ``position_embedding == 'learned'``).

    Attention pattern: ``layer_types`` gives each layer's kind (see ``LAYER_TYPES``); None means every
    layer is 'sliding' when ``sliding_window`` is set, else 'full'. ``attention_chunk_size`` (tokens)
    is the chunk of 'chunked' layers; ``no_rope_layers`` lists layers without rotary embedding
    (Llama-4 NoPE). ``attention_sinks``: a learned per-head sink logit in the softmax (gpt-oss;
    ``num_heads`` parameters per layer). ``query_pre_attn_scalar``: scores are scaled by its
    ``-1/2`` power instead of ``head_dim``'s (Gemma). ``expert_weight_format``: the quant format
    (``quant_formats.yaml`` name) the published checkpoint stores routed experts in, None when they
    are in ``torch_dtype`` (gpt-oss: 'mxfp4'). ``vision_params``: parameters of a vision encoder
    and projector (multimodal checkpoints), counted in ``param_count`` but never priced.
    """

    name: str
    hf_id: str | None = None
    architecture: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    mlp_gated: bool = True
    activation: str = "silu"
    norm_type: str = "rmsnorm"
    norms_per_layer: int = 2
    final_norm: bool = True
    embedding_norm: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    qk_norm: bool = False
    position_embedding: str = "rope"
    rotary_fraction: float = 1.0
    rope_theta: float | None = None
    rope_scaling: str | None = None
    num_position_embeddings: int = 0
    sliding_window: int | None = None
    parallel_residual: bool = False
    tied_embeddings: bool = False
    embed_dim: int | None = None
    torch_dtype: str = "bfloat16"
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    layer_types: tuple[str, ...] | None = None
    attention_chunk_size: int | None = None
    no_rope_layers: tuple[int, ...] = ()
    attention_sinks: bool = False
    query_pre_attn_scalar: float | None = None
    expert_weight_format: str | None = None
    vision_params: int = 0

    def __post_init__(self) -> None:
        _need_str("ModelSpec", "name", self.name)
        owner = f"model {self.name!r}"
        if self.hf_id is not None:
            _need_str(owner, "hf_id", self.hf_id)
        _need_str(owner, "architecture", self.architecture)
        for field in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "vocab_size", "max_context"):
            _need_int(owner, field, getattr(self, field))
        _need_int(owner, "intermediate_size", self.intermediate_size, minimum=0)
        _need_int(owner, "norms_per_layer", self.norms_per_layer, minimum=0)
        _need_int(owner, "num_position_embeddings", self.num_position_embeddings, minimum=0)
        _need_opt_int(owner, "sliding_window", self.sliding_window)
        _need_opt_int(owner, "embed_dim", self.embed_dim)
        for field in ("mlp_gated", "final_norm", "embedding_norm", "qkv_bias", "o_bias", "mlp_bias",
                      "lm_head_bias", "qk_norm", "parallel_residual", "tied_embeddings"):
            _need_bool(owner, field, getattr(self, field))
        _need_str(owner, "activation", self.activation)
        _need_str(owner, "torch_dtype", self.torch_dtype)
        _need_choice(owner, "norm_type", self.norm_type, NORM_TYPES)
        _need_choice(owner, "position_embedding", self.position_embedding, POSITION_EMBEDDINGS)
        if self.rope_scaling is not None:
            _need_str(owner, "rope_scaling", self.rope_scaling)
        fraction = self.rotary_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"{owner}: `rotary_fraction` must be in (0, 1], got {fraction!r}")
        theta = self.rope_theta
        if theta is not None and (isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0):
            raise ConfigError(f"{owner}: `rope_theta` must be a positive number, got {theta!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"{owner}: `num_heads` ({self.num_heads}) must be a multiple of `num_kv_heads` ({self.num_kv_heads})"
            )
        if (self.position_embedding == "learned") != (self.num_position_embeddings > 0):
            raise ConfigError(
                f"{owner}: `num_position_embeddings` must be positive exactly when `position_embedding` is "
                f"'learned', got {self.num_position_embeddings} with {self.position_embedding!r}"
            )
        if self.moe is not None:
            if not isinstance(self.moe, MoESpec):
                raise ConfigError(f"{owner}: `moe` must be a MoESpec or None, got {type(self.moe).__name__}")
            if self.moe.first_dense_layers > self.num_layers:
                raise ConfigError(
                    f"{owner}: `moe.first_dense_layers` ({self.moe.first_dense_layers}) exceeds `num_layers` ({self.num_layers})"
                )
        if self.mla is not None:
            if not isinstance(self.mla, MLASpec):
                raise ConfigError(f"{owner}: `mla` must be an MLASpec or None, got {type(self.mla).__name__}")
            if self.head_dim != self.mla.qk_head_dim:
                raise ConfigError(
                    f"{owner}: with MLA `head_dim` must be qk_nope_head_dim + qk_rope_head_dim "
                    f"({self.mla.qk_head_dim}), got {self.head_dim}"
                )
            if self.num_kv_heads != self.num_heads:
                raise ConfigError(f"{owner}: with MLA `num_kv_heads` must equal `num_heads` ({self.num_heads})")
        if self.num_dense_layers and self.intermediate_size == 0:
            raise ConfigError(f"{owner}: `intermediate_size` must be a positive integer, got 0")
        self._check_attention_pattern(owner)

    def _check_attention_pattern(self, owner: str) -> None:
        _need_opt_int(owner, "attention_chunk_size", self.attention_chunk_size)
        _need_bool(owner, "attention_sinks", self.attention_sinks)
        _need_int(owner, "vision_params", self.vision_params, minimum=0)
        if self.expert_weight_format is not None:
            _need_str(owner, "expert_weight_format", self.expert_weight_format)
            if self.moe is None:
                raise ConfigError(f"{owner}: `expert_weight_format` given but the model has no experts")
        scalar = self.query_pre_attn_scalar
        if scalar is not None and (isinstance(scalar, bool) or not isinstance(scalar, (int, float)) or not scalar > 0):
            raise ConfigError(f"{owner}: `query_pre_attn_scalar` must be a positive number, got {scalar!r}")
        for field in ("layer_types", "no_rope_layers"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, (list, tuple)):
                raise ConfigError(f"{owner}: `{field}` must be a list, got {value!r}")
        if self.layer_types is not None:
            types = tuple(self.layer_types)
            object.__setattr__(self, "layer_types", types)
            if len(types) != self.num_layers:
                raise ConfigError(
                    f"{owner}: `layer_types` has {len(types)} entries but the model has {self.num_layers} layers"
                )
            for t in types:
                _need_choice(owner, "layer_types[]", t, LAYER_TYPES)
            if "sliding" in types and self.sliding_window is None:
                raise ConfigError(f"{owner}: `layer_types` has 'sliding' layers but `sliding_window` is not set")
            if "chunked" in types and self.attention_chunk_size is None:
                raise ConfigError(f"{owner}: `layer_types` has 'chunked' layers but `attention_chunk_size` is not set")
        nope = tuple(self.no_rope_layers)
        object.__setattr__(self, "no_rope_layers", nope)
        for i in nope:
            if not _is_int(i) or not 0 <= i < self.num_layers:
                raise ConfigError(f"{owner}: `no_rope_layers` entries must be layer indices in [0, {self.num_layers}), got {i!r}")
        if len(set(nope)) != len(nope):
            raise ConfigError(f"{owner}: `no_rope_layers` repeats a layer: {list(nope)}")

    # ---- layer structure --------------------------------------------------------------------

    def is_moe_layer(self, layer: int) -> bool:
        """Whether decoder layer ``layer`` (0-based) has a MoE MLP."""
        m = self.moe
        return m is not None and layer >= m.first_dense_layers and layer % m.layer_freq == m.layer_offset

    def layer_type(self, layer: int) -> str:
        """Attention kind of decoder layer ``layer`` (0-based): 'full', 'sliding' or 'chunked'."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer {layer} out of range for {self.num_layers} layers")
        if self.layer_types is not None:
            return self.layer_types[layer]
        return "sliding" if self.sliding_window else "full"

    def attention_window(self, layer: int) -> int:
        """Most keys (tokens) one query of layer ``layer`` attends to; 0 = the whole context.

        'chunked' layers return the chunk size: a query sees only its own chunk's earlier tokens,
        between 1 and ``attention_chunk_size`` of them, so the chunk is an upper bound of the span.
        """
        kind = self.layer_type(layer)
        if kind == "sliding":
            return int(self.sliding_window)
        if kind == "chunked":
            return int(self.attention_chunk_size)
        return 0

    @property
    def attention_window_groups(self) -> tuple[tuple[int, int], ...]:
        """(window, number of layers) for each distinct attention window, window 0 (full) first."""
        counts: dict[int, int] = {}
        for i in range(self.num_layers):
            w = self.attention_window(i)
            counts[w] = counts.get(w, 0) + 1
        return tuple(sorted(counts.items()))

    @property
    def num_rope_layers(self) -> int:
        """Layers that apply rotary embedding (all of them unless ``no_rope_layers``; 0 without RoPE)."""
        return self.num_layers - len(self.no_rope_layers) if self.position_embedding == "rope" else 0

    @property
    def moe_layer_indices(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_layers) if self.is_moe_layer(i))

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_indices)

    @property
    def num_dense_layers(self) -> int:
        """Layers with a dense MLP."""
        return self.num_layers - self.num_moe_layers

    @property
    def token_embed_dim(self) -> int:
        """Width of the token embedding (and lm_head input): ``embed_dim`` or ``hidden_size``."""
        return self.embed_dim or self.hidden_size

    @property
    def q_dim(self) -> int:
        """Output width of the Q projection: num_heads * head_dim (MLA: num_heads * (nope + rope))."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width projected from the hidden state for K (and again for V): num_kv_heads * head_dim.

        MLA: the compressed latent plus the shared rope key, kv_lora_rank + qk_rope_head_dim.
        """
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return self.num_kv_heads * self.head_dim

    @property
    def attn_out_dim(self) -> int:
        """Input width of the output projection: q_dim (MLA: num_heads * v_head_dim)."""
        if self.mla is not None:
            return self.num_heads * self.mla.v_head_dim
        return self.q_dim

    # ---- parameter counts (elements) --------------------------------------------------------

    def _norm(self, width: int) -> int:
        return width * (2 if self.norm_type == "layernorm" else 1)

    def _mlp(self, width: int) -> int:
        h = self.hidden_size
        if self.mlp_gated:
            return 3 * h * width + ((2 * width + h) if self.mlp_bias else 0)
        return 2 * h * width + ((width + h) if self.mlp_bias else 0)

    def _attention(self) -> int:
        h, heads = self.hidden_size, self.num_heads
        m = self.mla
        if m is not None:
            if m.q_lora_rank:
                q = h * m.q_lora_rank + self._norm(m.q_lora_rank) + m.q_lora_rank * heads * m.qk_head_dim
                q_out = m.q_lora_rank
            else:
                q = h * heads * m.qk_head_dim
                q_out = heads * m.qk_head_dim
            kv_a = m.kv_lora_rank + m.qk_rope_head_dim
            kv = h * kv_a + self._norm(m.kv_lora_rank) + m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
            o = heads * m.v_head_dim * h
            bias = ((q_out + kv_a) if self.qkv_bias else 0) + (h if self.o_bias else 0)
            return q + kv + o + bias
        weights = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        bias = ((self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0) + (h if self.o_bias else 0)
        qk_norm = 2 * self._norm(self.head_dim) if self.qk_norm else 0
        sinks = self.num_heads if self.attention_sinks else 0
        return weights + bias + qk_norm + sinks

    def params_per_layer(self, kind: str) -> int:
        """Parameters of one layer's part ``kind``.

        Kinds: 'attention' (projections, their biases and internal norms), 'dense_mlp', 'expert'
        (one routed expert), 'shared_experts' (all shared experts and their gate), 'router',
        'moe' (all experts + shared + router), 'norms' (the layer's pre/post norms),
        'dense_layer' and 'moe_layer' (whole decoder layer of that type). 0 where absent.
        """
        m = self.moe
        if kind == "attention":
            return self._attention()
        if kind == "dense_mlp":
            return self._mlp(self.intermediate_size) if self.intermediate_size else 0
        if kind == "expert":
            return self._mlp(m.expert_intermediate_size) if m else 0
        if kind == "shared_experts":
            if not m or not m.shared_expert_intermediate_size:
                return 0
            return self._mlp(m.shared_expert_intermediate_size) + (self.hidden_size if m.shared_expert_gate else 0)
        if kind == "router":
            return (m.num_experts * self.hidden_size + (m.num_experts if m.router_bias else 0)) if m else 0
        if kind == "moe":
            if not m:
                return 0
            return (m.num_experts * self.params_per_layer("expert") + self.params_per_layer("shared_experts")
                    + self.params_per_layer("router"))
        if kind == "norms":
            return self.norms_per_layer * self._norm(self.hidden_size)
        if kind == "dense_layer":
            return self._attention() + self.params_per_layer("norms") + self.params_per_layer("dense_mlp")
        if kind == "moe_layer":
            if not m:
                return 0
            return self._attention() + self.params_per_layer("norms") + self.params_per_layer("moe")
        raise ValueError(f"unknown parameter kind {kind!r}; expected one of {', '.join(PARAM_KINDS)}")

    def embedding_params(self) -> int:
        """Token embeddings, learned positions, embedding norm (BLOOM) and OPT's project_in/out."""
        e, h = self.token_embed_dim, self.hidden_size
        total = self.vocab_size * e + self.num_position_embeddings * h
        if self.embedding_norm:
            total += self._norm(h)
        if e != h:
            total += 2 * e * h  # project_in and project_out, no bias
        return total

    def lm_head_params(self) -> int:
        """Output projection: 0 when tied to the embeddings (plus its bias, if any)."""
        weights = 0 if self.tied_embeddings else self.vocab_size * self.token_embed_dim
        return weights + (self.vocab_size if self.lm_head_bias else 0)

    def final_norm_params(self) -> int:
        return self._norm(self.hidden_size) if self.final_norm else 0

    def param_breakdown(self) -> dict[str, int]:
        """Totals over the model by part; the values sum to ``param_count()``.

        Keys: embedding, attention, dense_mlp, moe_experts (routed), moe_shared, moe_router,
        norms (per-layer and final), lm_head, vision (encoder and projector of a multimodal checkpoint).
        """
        moe_layers, dense_layers = self.num_moe_layers, self.num_dense_layers
        m = self.moe
        return {
            "embedding": self.embedding_params(),
            "attention": self.num_layers * self._attention(),
            "dense_mlp": dense_layers * self.params_per_layer("dense_mlp"),
            "moe_experts": moe_layers * (m.num_experts if m else 0) * self.params_per_layer("expert"),
            "moe_shared": moe_layers * self.params_per_layer("shared_experts"),
            "moe_router": moe_layers * self.params_per_layer("router"),
            "norms": self.num_layers * self.params_per_layer("norms") + self.final_norm_params(),
            "lm_head": self.lm_head_params(),
            "vision": self.vision_params,
        }

    def param_count(self) -> int:
        """Total parameters, embeddings and lm_head included (counted once when tied)."""
        return sum(self.param_breakdown().values())

    def active_param_count(self) -> int:
        """Parameters used per text token: total less the vision encoder and the routed experts a
        token skips (num_experts - top_k). Embedding and lm_head are included."""
        m = self.moe
        text = self.param_count() - self.vision_params
        if m is None:
            return text
        skipped = (m.num_experts - m.top_k) * self.params_per_layer("expert")
        return text - self.num_moe_layers * skipped

    # ---- KV cache ----------------------------------------------------------------------------

    def kv_cache_elements_per_token(self) -> int:
        """Elements cached per token per layer: 2 * num_kv_heads * head_dim (K and V).

        MLA caches the compressed latent and the rope key instead: kv_lora_rank + qk_rope_head_dim.
        """
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_cache_elements_per_token_total(self) -> int:
        """Elements cached per token over all layers (every layer keeps every token)."""
        return self.num_layers * self.kv_cache_elements_per_token()

    def kv_cache_elements_for_context(self, context: int, *, windowed: bool) -> int:
        """Elements cached for one sequence of ``context`` tokens, over all layers.

        ``windowed=False``: every layer keeps all tokens (vLLM V0, and V1 with the hybrid KV-cache
        manager disabled). ``windowed=True``: sliding/chunked layers keep at most their window
        (vLLM V1's hybrid KV-cache manager; block granularity ignored).
        """
        _need_int("kv_cache_elements_for_context", "context", context, minimum=0)
        if not windowed:
            return context * self.kv_cache_elements_per_token_total()
        held = sum(n * (min(context, w) if w else context) for w, n in self.attention_window_groups)
        return held * self.kv_cache_elements_per_token()


# --------------------------------------------------------------------------------------------
# HF config.json parsing
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _fmt_keys(keys: tuple[str, ...]) -> str:
    first = f"`{keys[0]}`"
    if len(keys) == 1:
        return first
    return f"{first} (or {' or '.join(f'`{k}`' for k in keys[1:])})"


class _Fields:
    """Typed reads of HF config fields; errors name the file, the field and the architecture."""

    def __init__(self, config: Mapping[str, Any], source: str, arch: str):
        self.config = config
        self.source = source
        self.arch = arch

    def _find(self, keys: tuple[str, ...]) -> tuple[str | None, Any]:
        for key in keys:
            value = self.config.get(key)
            if value is not None:
                return key, value
        return None, None

    def has(self, *keys: str) -> bool:
        return self._find(keys)[0] is not None

    def _missing(self, keys: tuple[str, ...]) -> ConfigError:
        return ConfigError(f"{self.source}: missing field {_fmt_keys(keys)} needed for {self.arch}")

    def _bad(self, key: str, what: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.source}: field `{key}` must be {what}, got {value!r}")

    def int(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> Any:
        key, value = self._find(keys)
        if key is None:
            if default is _MISSING:
                raise self._missing(keys)
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self._bad(key, what, value)
        return value

    def float(self, *keys: str, default: Any = _MISSING, positive: bool = True) -> Any:
        key, value = self._find(keys)
        if key is None:
            if default is _MISSING:
                raise self._missing(keys)
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (positive and value <= 0):
            raise self._bad(key, "a positive number" if positive else "a number", value)
        return float(value)

    def bool(self, *keys: str, default: Any = _MISSING) -> Any:
        key, value = self._find(keys)
        if key is None:
            if default is _MISSING:
                raise self._missing(keys)
            return default
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def str(self, *keys: str, default: Any = _MISSING) -> Any:
        key, value = self._find(keys)
        if key is None:
            if default is _MISSING:
                raise self._missing(keys)
            return default
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string", value)
        return value

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.config.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._bad(key, "an object", value)
        return value


def _arch_of(config: Mapping[str, Any]) -> str:
    archs = config.get("architectures")
    if isinstance(archs, (list, tuple)) and archs and isinstance(archs[0], str) and archs[0]:
        return archs[0]
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type:
        return model_type
    return "an unknown architecture (no `architectures` or `model_type`)"


def _family(config: Mapping[str, Any], arch: str) -> str:
    model_type = str(config.get("model_type") or "").lower()
    a = arch.lower()
    if a == "qwenlmheadmodel" or model_type == "qwen":
        return "qwen"
    if a.startswith("opt") or model_type == "opt":
        return "opt"
    if a.startswith("bloom") or model_type == "bloom":
        return "bloom"
    if a.startswith("gptneox") or model_type == "gpt_neox":
        return "gpt_neox"
    if a.startswith("phiforcausallm") or model_type == "phi":
        return "phi"
    if a.startswith("gpt2") or model_type == "gpt2":
        return "gpt2"
    if a.startswith("gemma3") or model_type in ("gemma3", "gemma3_text"):
        return "gemma3"
    if a.startswith("gptoss") or model_type == "gpt_oss":
        return "gpt_oss"
    if a.startswith("llama4") or model_type in ("llama4", "llama4_text"):
        return "llama4"
    return "llama"


def _head_dim(f: _Fields, hidden: int, heads: int, *keys: str) -> int:
    explicit = f.int(*keys, default=None) if keys else None
    if explicit is not None:
        return explicit
    if hidden % heads:
        raise ConfigError(
            f"{f.source}: hidden size {hidden} is not divisible by {heads} attention heads; "
            f"add `head_dim` to the config ({f.arch})"
        )
    return hidden // heads


def _rope_scaling(f: _Fields) -> str | None:
    scaling = f.mapping("rope_scaling")
    if not scaling:
        return None
    kind = scaling.get("rope_type") or scaling.get("type")
    return str(kind) if kind else None


def _dtype(f: _Fields, default: str) -> str:
    return f.str("torch_dtype", "dtype", default=default)


def _moe(f: _Fields, intermediate: int | None) -> MoESpec | None:
    experts = f.int("num_local_experts", "n_routed_experts", "num_experts", default=0, minimum=0)
    if experts <= 1:
        return None
    top_k = f.int("num_experts_per_tok", "num_experts_per_token", "moe_top_k")
    width = f.int("moe_intermediate_size", default=intermediate)
    if width is None:
        raise f._missing(("moe_intermediate_size", "intermediate_size"))
    shared = f.int("n_shared_experts", "num_shared_experts", default=0, minimum=0)
    shared_gate = False
    if shared:
        shared_width = shared * width
    else:
        shared_width = f.int("shared_expert_intermediate_size", default=0, minimum=0)
        if shared_width:
            shared, shared_gate = 1, True  # Qwen2-MoE: one gated shared expert
    step = f.int("decoder_sparse_step", default=1)
    only_dense = f.config.get("mlp_only_layers") or []
    if only_dense:
        raise ConfigError(f"{f.source}: `mlp_only_layers` is not supported ({f.arch})")
    if step != 1 and f.has("moe_layer_freq", "first_k_dense_replace"):
        raise ConfigError(f"{f.source}: `decoder_sparse_step` cannot be combined with `moe_layer_freq` ({f.arch})")
    return MoESpec(
        num_experts=experts,
        top_k=top_k,
        expert_intermediate_size=width,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        first_dense_layers=f.int("first_k_dense_replace", default=0, minimum=0),
        layer_freq=step if step != 1 else f.int("moe_layer_freq", default=1),
        layer_offset=step - 1,  # Qwen-MoE: layer i is sparse when (i + 1) % decoder_sparse_step == 0
        shared_expert_gate=shared_gate,
        router_bias=f.str("topk_method", default="") == "noaux_tc",
        scoring=f.str("scoring_func", default="softmax"),
    )


def _parse_llama_like(f: _Fields) -> dict[str, Any]:
    """Llama, Mistral, Mixtral, Qwen2(-MoE), InternLM, DeepSeek-V2/V3 and unknown llama-like configs."""
    model_type = str(f.config.get("model_type") or "").lower()
    layers = f.int("num_hidden_layers", "n_layer", "n_layers", "num_layers")
    hidden = f.int("hidden_size", "n_embd", "d_model", "dim")
    heads = f.int("num_attention_heads", "n_head", "n_heads", "num_heads")
    vocab = f.int("vocab_size", "padded_vocab_size")
    max_ctx = f.int("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions", "max_seq_len")
    mla = None
    if f.has("kv_lora_rank"):
        mla = MLASpec(
            q_lora_rank=f.int("q_lora_rank", default=None),
            kv_lora_rank=f.int("kv_lora_rank"),
            qk_nope_head_dim=f.int("qk_nope_head_dim", minimum=0),
            qk_rope_head_dim=f.int("qk_rope_head_dim"),
            v_head_dim=f.int("v_head_dim"),
        )
        kv_heads, head_dim = heads, mla.qk_head_dim
    else:
        kv_heads = f.int("num_key_value_heads", "n_kv_heads", "num_kv_heads", default=heads)
        if heads % kv_heads:
            raise ConfigError(
                f"{f.source}: field `num_key_value_heads` ({kv_heads}) must divide `num_attention_heads` ({heads})"
            )
        head_dim = _head_dim(f, hidden, heads, "head_dim")
    intermediate = f.int("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", default=None)
    moe = _moe(f, intermediate)
    if intermediate is None:
        needs_dense = moe is None or moe.first_dense_layers > 0 or moe.layer_freq > 1
        if needs_dense:
            raise f._missing(("intermediate_size", "ffn_dim", "n_inner"))
        intermediate = 0
    if model_type.startswith("qwen2"):
        qkv_bias, o_bias = True, False  # Qwen2 always has q/k/v biases, no o bias
    else:
        qkv_bias = o_bias = f.bool("attention_bias", "bias", default=False)  # InternLM: `bias`
    sliding = f.int("sliding_window", default=None)
    if f.bool("use_sliding_window", default=True) is False:
        sliding = None
    return dict(
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        intermediate_size=intermediate, vocab_size=vocab, max_context=max_ctx,
        mlp_gated=True, activation=f.str("hidden_act", "activation_function", default="silu"),
        norm_type="rmsnorm", qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=f.bool("mlp_bias", default=False),
        qk_norm=model_type in ("qwen3", "qwen3_moe") or f.bool("qk_layernorm", default=False),
        position_embedding="rope", rotary_fraction=f.float("partial_rotary_factor", "rotary_pct", default=1.0),
        rope_theta=f.float("rope_theta", "rotary_emb_base", default=None), rope_scaling=_rope_scaling(f),
        sliding_window=sliding, tied_embeddings=f.bool("tie_word_embeddings", default=False),
        torch_dtype=_dtype(f, "float32"), moe=moe, mla=mla,
    )


def _parse_qwen(f: _Fields) -> dict[str, Any]:
    """Original Qwen (QWenLMHeadModel): `intermediate_size` is twice the width of w1/w2."""
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    doubled = f.int("intermediate_size")
    if doubled % 2:
        raise ConfigError(
            f"{f.source}: field `intermediate_size` must be even for {f.arch} (it is twice the MLP width), got {doubled}"
        )
    no_bias = f.bool("no_bias", default=True)
    dtype = f.config.get("torch_dtype")
    if not dtype:
        flags = [d for flag, d in (("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32")) if f.config.get(flag)]
        dtype = flags[0] if flags else "bfloat16"  # auto-selects bf16 where supported
    return dict(
        num_layers=f.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads, "kv_channels"), intermediate_size=doubled // 2,
        vocab_size=f.int("vocab_size"), max_context=f.int("max_position_embeddings", "seq_length"),
        mlp_gated=True, activation="silu", norm_type="rmsnorm",
        qkv_bias=True, o_bias=not no_bias, mlp_bias=not no_bias,  # c_attn always has a bias
        position_embedding="rope", rotary_fraction=f.float("rotary_pct", default=1.0),
        rope_theta=f.float("rotary_emb_base", "rope_theta", default=10000.0),
        tied_embeddings=f.bool("tie_word_embeddings", default=False), torch_dtype=str(dtype),
    )


def _parse_opt(f: _Fields) -> dict[str, Any]:
    """OPT: learned positions with offset 2, LayerNorm, ReLU MLP of width `ffn_dim`, biases."""
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    max_pos = f.int("max_position_embeddings")
    proj = f.int("word_embed_proj_dim", default=hidden)
    bias = f.bool("enable_bias", default=True)
    pre_ln = f.bool("do_layer_norm_before", default=True)
    return dict(
        num_layers=f.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads), intermediate_size=f.int("ffn_dim"), vocab_size=f.int("vocab_size"),
        max_context=max_pos, mlp_gated=False, activation=f.str("activation_function", default="relu"),
        norm_type="layernorm", final_norm=pre_ln and not f.bool("_remove_final_layer_norm", default=False),
        qkv_bias=bias, o_bias=bias, mlp_bias=bias, position_embedding="learned",
        num_position_embeddings=max_pos + 2, tied_embeddings=f.bool("tie_word_embeddings", default=True),
        embed_dim=proj if proj != hidden else None, torch_dtype=_dtype(f, "float32"),
    )


def _parse_bloom(f: _Fields) -> dict[str, Any]:
    """BLOOM: ALiBi, LayerNorm (also after the embeddings), 4h GELU MLP, biases, tied embeddings."""
    hidden = f.int("hidden_size", "n_embed")
    heads = f.int("n_head", "num_attention_heads")
    return dict(
        num_layers=f.int("n_layer", "num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads), intermediate_size=4 * hidden, vocab_size=f.int("vocab_size"),
        max_context=f.int("seq_length", "max_position_embeddings", default=2048),  # trained at 2048
        mlp_gated=False, activation="gelu", norm_type="layernorm", embedding_norm=True,
        qkv_bias=True, o_bias=True, mlp_bias=True, position_embedding="alibi",
        tied_embeddings=f.bool("tie_word_embeddings", default=True), torch_dtype=_dtype(f, "bfloat16"),
    )


def _parse_gpt_neox(f: _Fields) -> dict[str, Any]:
    """GPT-NeoX: partial rotary (`rotary_pct`), parallel residual, LayerNorm, biases."""
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    bias = f.bool("attention_bias", default=True)
    return dict(
        num_layers=f.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads), intermediate_size=f.int("intermediate_size", default=4 * hidden),
        vocab_size=f.int("vocab_size"), max_context=f.int("max_position_embeddings"),
        mlp_gated=False, activation=f.str("hidden_act", default="gelu"), norm_type="layernorm",
        qkv_bias=bias, o_bias=bias, mlp_bias=True, position_embedding="rope",
        rotary_fraction=f.float("rotary_pct", "partial_rotary_factor", default=0.25),
        rope_theta=f.float("rotary_emb_base", "rope_theta", default=10000.0), rope_scaling=_rope_scaling(f),
        parallel_residual=f.bool("use_parallel_residual", default=True),
        tied_embeddings=f.bool("tie_word_embeddings", default=False), torch_dtype=_dtype(f, "float32"),
    )


def _parse_phi(f: _Fields) -> dict[str, Any]:
    """Phi-1/1.5/2: one LayerNorm per layer feeding attention and MLP in parallel, partial rotary, biases."""
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    return dict(
        num_layers=f.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads,
        num_kv_heads=f.int("num_key_value_heads", default=heads), head_dim=_head_dim(f, hidden, heads),
        intermediate_size=f.int("intermediate_size"), vocab_size=f.int("vocab_size"),
        max_context=f.int("max_position_embeddings"), mlp_gated=False,
        activation=f.str("hidden_act", default="gelu_new"), norm_type="layernorm", norms_per_layer=1,
        qkv_bias=True, o_bias=True, mlp_bias=True, lm_head_bias=True,
        qk_norm=f.bool("qk_layernorm", default=False), position_embedding="rope",
        rotary_fraction=f.float("partial_rotary_factor", default=0.5),
        rope_theta=f.float("rope_theta", default=10000.0), rope_scaling=_rope_scaling(f),
        parallel_residual=True, tied_embeddings=f.bool("tie_word_embeddings", default=False),
        torch_dtype=_dtype(f, "float32"),
    )


def _parse_gpt2(f: _Fields) -> dict[str, Any]:
    """GPT-2 style (also our GPT-3 175B): learned positions, LayerNorm, 4h GELU MLP, biases, tied."""
    hidden = f.int("n_embd", "hidden_size")
    heads = f.int("n_head", "num_attention_heads")
    positions = f.int("n_positions", "n_ctx", "max_position_embeddings")
    return dict(
        num_layers=f.int("n_layer", "num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads), intermediate_size=f.int("n_inner", default=4 * hidden),
        vocab_size=f.int("vocab_size"), max_context=positions, mlp_gated=False,
        activation=f.str("activation_function", default="gelu_new"), norm_type="layernorm",
        qkv_bias=True, o_bias=True, mlp_bias=True, position_embedding="learned",
        num_position_embeddings=positions, tied_embeddings=f.bool("tie_word_embeddings", default=True),
        torch_dtype=_dtype(f, "float32"),
    )


def _layer_types(f: _Fields, allowed: Mapping[str, str]) -> tuple[str, ...] | None:
    """HF ``layer_types`` (e.g. 'sliding_attention') mapped to ``LAYER_TYPES``; None when absent."""
    raw = f.config.get("layer_types")
    if raw is None:
        return None
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        raise f._bad("layer_types", "a list of layer kinds", raw)
    out = []
    for t in raw:
        if t not in allowed:
            raise f._bad("layer_types", f"a list of {', '.join(map(repr, allowed))}", t)
        out.append(allowed[t])
    return tuple(out)


def _parse_gemma3(f: _Fields) -> dict[str, Any]:
    """Gemma-3 text model: 4 RMSNorms per layer plus q/k norms, GeGLU MLP, tied embeddings, local
    sliding-window layers with one global layer every `sliding_window_pattern` (5 local : 1 global).

    Missing fields take ``transformers.Gemma3TextConfig``'s defaults, as the Hub configs rely on them.
    """
    layers = f.int("num_hidden_layers", default=26)
    sliding = f.int("sliding_window", default=4096)
    types = _layer_types(f, {"sliding_attention": "sliding", "full_attention": "full"})
    if types is None:
        pattern = f.int("sliding_window_pattern", "_sliding_window_pattern", default=6)
        types = tuple("sliding" if (i + 1) % pattern else "full" for i in range(layers))
    return dict(
        num_layers=layers, hidden_size=f.int("hidden_size", default=2304),
        num_heads=f.int("num_attention_heads", default=8), num_kv_heads=f.int("num_key_value_heads", default=4),
        head_dim=f.int("head_dim", default=256), intermediate_size=f.int("intermediate_size", default=9216),
        vocab_size=f.int("vocab_size", default=262_208), max_context=f.int("max_position_embeddings", default=131_072),
        mlp_gated=True, activation=f.str("hidden_activation", "hidden_act", default="gelu_pytorch_tanh"),
        norm_type="rmsnorm", norms_per_layer=4, qk_norm=True,
        qkv_bias=f.bool("attention_bias", default=False), o_bias=f.bool("attention_bias", default=False),
        position_embedding="rope", rope_theta=f.float("rope_theta", default=1_000_000.0), rope_scaling=_rope_scaling(f),
        sliding_window=sliding, layer_types=types,
        query_pre_attn_scalar=f.float("query_pre_attn_scalar", default=256.0),
        tied_embeddings=f.bool("tie_word_embeddings", default=True), torch_dtype=_dtype(f, "bfloat16"),
    )


def _parse_gpt_oss(f: _Fields) -> dict[str, Any]:
    """gpt-oss: MoE in every layer (experts with biases, router with bias), q/k/v/o biases, a learned
    sink logit per head, alternating sliding-window (128) and full layers, MXFP4 experts."""
    layers = f.int("num_hidden_layers")
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    width = f.int("intermediate_size")
    moe = MoESpec(
        num_experts=f.int("num_local_experts"), top_k=f.int("num_experts_per_tok", "experts_per_token"),
        expert_intermediate_size=width, router_bias=True,
    )
    types = _layer_types(f, {"sliding_attention": "sliding", "full_attention": "full"})
    if types is None:
        types = tuple("sliding" if i % 2 == 0 else "full" for i in range(layers))
    quant = f.mapping("quantization_config") or {}
    method = quant.get("quant_method")
    skipped = " ".join(map(str, quant.get("modules_to_not_convert") or ()))
    experts_fmt = "mxfp4" if method == "mxfp4" and "experts" not in skipped else None
    bias = f.bool("attention_bias", default=True)
    return dict(
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=f.int("num_key_value_heads"),
        head_dim=_head_dim(f, hidden, heads, "head_dim"), intermediate_size=0, vocab_size=f.int("vocab_size"),
        max_context=f.int("max_position_embeddings"), mlp_gated=True, activation=f.str("hidden_act", default="silu"),
        norm_type="rmsnorm", qkv_bias=bias, o_bias=bias, mlp_bias=True, position_embedding="rope",
        rope_theta=f.float("rope_theta", default=150000.0), rope_scaling=_rope_scaling(f),
        sliding_window=f.int("sliding_window", default=128), layer_types=types, attention_sinks=True,
        tied_embeddings=f.bool("tie_word_embeddings", default=False), torch_dtype=_dtype(f, "bfloat16"),
        moe=moe, expert_weight_format=experts_fmt,
    )


def _parse_llama4(f: _Fields) -> dict[str, Any]:
    """Llama-4 text model: MoE with one shared expert (width `intermediate_size`) on every
    `interleave_moe_layer_step`-th layer, dense MLP of width `intermediate_size_mlp` between;
    iRoPE: RoPE layers use chunked attention (`attention_chunk_size`), every
    `no_rope_layer_interval`-th layer is a global NoPE layer. `use_qk_norm` is a weightless L2 norm.
    """
    layers = f.int("num_hidden_layers")
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    width = f.int("intermediate_size")
    step = f.int("interleave_moe_layer_step", default=1)
    moe = MoESpec(
        num_experts=f.int("num_local_experts"), top_k=f.int("num_experts_per_tok"), expert_intermediate_size=width,
        num_shared_experts=1, shared_expert_intermediate_size=width, layer_freq=step, layer_offset=step - 1,
        scoring="sigmoid",
    )
    listed = f.config.get("moe_layers")
    if listed is not None:
        rule = [i for i in range(layers) if i % step == step - 1]
        if not isinstance(listed, (list, tuple)) or list(listed) != rule:
            raise ConfigError(
                f"{f.source}: field `moe_layers` must be every {step}th layer {rule[:4]}... as "
                f"`interleave_moe_layer_step` says; other layouts are not supported ({f.arch})"
            )
    rope_flags = f.config.get("no_rope_layers")
    if rope_flags is None or rope_flags == []:
        interval = f.int("no_rope_layer_interval", default=4)
        rope_flags = [int((i + 1) % interval != 0) for i in range(layers)]
    if not isinstance(rope_flags, (list, tuple)) or len(rope_flags) != layers or any(v not in (0, 1) for v in rope_flags):
        raise f._bad("no_rope_layers", f"a list of {layers} flags (1 = RoPE, 0 = NoPE)", rope_flags)
    chunk = f.int("attention_chunk_size", default=None)
    types = tuple("chunked" if (chunk and rope) else "full" for rope in rope_flags)
    return dict(
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=f.int("num_key_value_heads"),
        head_dim=_head_dim(f, hidden, heads, "head_dim"),
        intermediate_size=f.int("intermediate_size_mlp") if step > 1 else f.int("intermediate_size_mlp", default=0),
        vocab_size=f.int("vocab_size"), max_context=f.int("max_position_embeddings"), mlp_gated=True,
        activation=f.str("hidden_act", default="silu"), norm_type="rmsnorm",
        qkv_bias=f.bool("attention_bias", default=False), o_bias=f.bool("attention_bias", default=False),
        position_embedding="rope", rope_theta=f.float("rope_theta", default=500000.0), rope_scaling=_rope_scaling(f),
        layer_types=types, attention_chunk_size=chunk,
        no_rope_layers=tuple(i for i, rope in enumerate(rope_flags) if not rope),
        tied_embeddings=f.bool("tie_word_embeddings", default=False), torch_dtype=_dtype(f, "bfloat16"), moe=moe,
    )


def _vit_params(v: Mapping[str, Any], *, class_token: bool, patch_bias: bool) -> int:
    """A pre-norm ViT with biases everywhere: layers of q/k/v/o + a 2-matrix MLP + 2 LayerNorms,
    a patch embedding, a position table (plus a class token) and a final LayerNorm."""
    h, i, n = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["num_hidden_layers"])
    patch, image, ch = int(v["patch_size"]), int(v["image_size"]), int(v.get("num_channels", 3))
    layer = 4 * (h * h + h) + 2 * h * i + i + h + 2 * 2 * h
    positions = (image // patch) ** 2 + (1 if class_token else 0)
    embed = ch * patch * patch * h + (h if patch_bias else 0) + positions * h + (h if class_token else 0)
    return n * layer + embed + 2 * h


def _vision_params(config: Mapping[str, Any], text_hidden: int, family: str, source: str) -> int:
    """Parameters of the vision encoder and projector of a Gemma-3 (SigLIP) or Llama-4 checkpoint.

    Counted from ``vision_config`` to within a few MB (norm and bias details of the towers are
    approximated); 0 for other families or text-only configs.
    """
    v = config.get("vision_config")
    if not isinstance(v, Mapping) or family not in ("gemma3", "llama4"):
        return 0
    try:
        if family == "gemma3":  # SigLIP tower, then RMSNorm + projection to the text width
            h = int(v["hidden_size"])
            return _vit_params(v, class_token=False, patch_bias=True) + h + h * text_hidden
        # Llama-4: ViT with class token and pre/post LayerNorms, pixel-shuffle MLP adapter, projector
        h = int(v["hidden_size"])
        adapter = int(v["intermediate_size"]) * int(v["projector_input_dim"]) \
            + int(v["projector_input_dim"]) * int(v["projector_output_dim"])
        return (_vit_params(v, class_token=True, patch_bias=False) + 2 * h + adapter
                + int(v["vision_output_dim"]) * text_hidden)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{source}: `vision_config` lacks a usable field ({err})") from None


_PARSERS = {
    "llama": _parse_llama_like,
    "qwen": _parse_qwen,
    "opt": _parse_opt,
    "bloom": _parse_bloom,
    "gpt_neox": _parse_gpt_neox,
    "phi": _parse_phi,
    "gpt2": _parse_gpt2,
    "gemma3": _parse_gemma3,
    "gpt_oss": _parse_gpt_oss,
    "llama4": _parse_llama4,
}

_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")


def _tail(hf_id: str) -> str:
    return hf_id.rstrip("/").rsplit("/", 1)[-1]


def from_hf_dict(
    config: Mapping[str, Any], *, name: str | None = None, hf_id: str | None = None, source: str | None = None
) -> ModelSpec:
    """Build a ``ModelSpec`` from the fields of an HF ``config.json``.

    ``source`` names the file in error messages. Without ``name`` the spec is named after the
    ``_llmsim`` block, ``hf_id`` or ``_name_or_path`` when present, else the architecture.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source or 'config'}: expected a JSON object, got {type(config).__name__}")
    meta = config.get("_llmsim") if isinstance(config.get("_llmsim"), Mapping) else {}
    if hf_id is None:
        ids = meta.get("hf_ids") or []
        name_or_path = config.get("_name_or_path")
        if ids:
            hf_id = ids[0]
        elif isinstance(name_or_path, str) and name_or_path.count("/") == 1 and not os.path.isabs(name_or_path):
            hf_id = name_or_path
    arch = _arch_of(config)
    if name is None:
        name = meta.get("name") or (_tail(hf_id) if hf_id else None) or arch
    source = source or name or "config"
    text_config = config.get("text_config")
    if isinstance(text_config, Mapping) and not any(k in config for k in _LAYER_KEYS):
        inner = dict(text_config)
        inner.setdefault("architectures", [arch])
        spec = from_hf_dict(inner, name=name, hf_id=hf_id, source=f"{source} (text_config)")
        vision = _vision_params(config, spec.hidden_size, _family(inner, arch), source)
        return dataclasses.replace(spec, vision_params=vision) if vision else spec
    f = _Fields(config, source, arch)
    try:
        fields = _PARSERS[_family(config, arch)](f)
        return ModelSpec(name=name, hf_id=hf_id, architecture=arch, **fields)
    except ConfigError as err:
        if str(err).startswith(f"{source}:"):
            raise
        raise ConfigError(f"{source}: {err}") from None


def load_hf_config(path: str | os.PathLike[str], *, name: str | None = None) -> ModelSpec:
    """Load a ``config.json`` (or a directory holding one). The spec is named after the directory
    for ``config.json`` files, else the file stem, unless the file has an ``_llmsim`` block."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{p}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read config ({err})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{p}: expected a JSON object, got {type(config).__name__}")
    meta = config.get("_llmsim") if isinstance(config.get("_llmsim"), dict) else {}
    if name is None:
        name = meta.get("name") or (p.parent.resolve().name if p.name == "config.json" else p.stem)
    return from_hf_dict(config, name=name or p.stem, source=str(p))


# --------------------------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------------------------

_DATA = ("data", "models")


@functools.lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, tuple[str, dict[str, Any]]], NameIndex]:
    """canonical name -> (file name, raw JSON), and the name index. Read once, on first use."""
    root = resources.files("llmsim.workloads").joinpath(*_DATA)
    entries: dict[str, tuple[str, dict[str, Any]]] = {}
    index = NameIndex("model")
    for item in sorted(root.iterdir(), key=lambda t: t.name):
        if not item.name.endswith(".json"):
            continue
        where = "workloads/data/models/" + item.name
        try:
            raw = json.loads(item.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not valid JSON (line {err.lineno}: {err.msg})") from None
        meta = raw.get("_llmsim") if isinstance(raw, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise ConfigError(f"{where}: missing `_llmsim` block with a `name`")
        name = meta["name"]
        if name in entries:
            raise ConfigError(f"{where}: model {name!r} is also defined in {entries[name][0]}")
        hf_ids = list(meta.get("hf_ids", ()))
        aliases = [*meta.get("aliases", ()), *hf_ids, *(_tail(h) for h in hf_ids)]
        index.add(name, aliases)
        entries[name] = (where, raw)
    return entries, index


def resolve_model_name(name: str) -> str:
    """Canonical catalogue name for ``name`` (a canonical name, alias or HF id; any org prefix).

    Raises ``UnknownNameError`` with close suggestions.
    """
    _, index = _catalogue()
    try:
        return index.resolve(name)
    except UnknownNameError as first:
        if "/" not in str(name):
            raise
        try:
            return index.resolve(_tail(str(name)))
        except UnknownNameError as second:
            merged = list(dict.fromkeys([*first.suggestions, *second.suggestions]))
            raise UnknownNameError("model", name, merged[:5]) from None


@functools.lru_cache(maxsize=None)
def _catalogue_spec(canonical: str) -> ModelSpec:
    entries, _ = _catalogue()
    where, raw = entries[canonical]
    meta = raw["_llmsim"]
    config = {k: v for k, v in raw.items() if k != "_llmsim"}
    hf_ids = meta.get("hf_ids") or []
    return from_hf_dict(config, name=canonical, hf_id=hf_ids[0] if hf_ids else None, source=where)


def _looks_like_path(text: str) -> bool:
    return text.endswith(".json") or text.startswith(("/", "./", "../", "~", "\\"))


def get_model(name_or_path: str | os.PathLike[str]) -> ModelSpec:
    """A ``ModelSpec`` from a path to a config (file or directory), else from the catalogue.

    Unknown names raise ``UnknownNameError`` with suggestions; a missing path raises ``ConfigError``.
    """
    text = os.fspath(name_or_path)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"model name must be a non-empty string, got {name_or_path!r}")
    path = Path(text).expanduser()
    if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
        return load_hf_config(path)
    if _looks_like_path(text):
        raise ConfigError(f"{text}: no such model config file or directory")
    try:
        return _catalogue_spec(resolve_model_name(text))
    except UnknownNameError:
        if path.is_dir():
            raise ConfigError(f"{path}: directory has no config.json and {text!r} is not a catalogue model") from None
        raise


def list_models() -> tuple[str, ...]:
    """Canonical names of the catalogue models."""
    return _catalogue()[1].names()


def catalogue_entry(name: str) -> dict[str, Any]:
    """The ``_llmsim`` metadata of a catalogue model (a copy): name, aliases, hf_ids,
    published_params, params_source, ..."""
    entries, _ = _catalogue()
    return copy.deepcopy(entries[resolve_model_name(name)][1]["_llmsim"])


def catalogue_config(name: str) -> dict[str, Any]:
    """The HF ``config.json`` fields bundled for a catalogue model (a copy, without ``_llmsim``)."""
    entries, _ = _catalogue()
    raw = entries[resolve_model_name(name)][1]
    return copy.deepcopy({k: v for k, v in raw.items() if k != "_llmsim"})
