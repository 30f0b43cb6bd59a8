"""A deployment (model + formats + plan on a device) and the per-iteration cost query.

Everything that depends only on the deployment (per-layer operator shapes on one rank, their
calibration coefficients, weight and KV bytes per device) is computed once in ``Deployment``;
``iteration`` then does only the batch-dependent arithmetic in one compiled call:

    time_s, energy_j = deployment.iteration(prefill_lens, prefill_offsets, decode_ctx)

One layer of each type (dense, MoE) is priced and multiplied by its count; the LM head and the
sampler run once per iteration for every sequence in the batch; TP all-reduces follow attention
and MLP in every layer. Energy is that of all devices of the replica (idle plus utilisation-
proportional dynamic power, hwmodels.power).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from hwmodels import efficiency as eff
from hwmodels.calibration import Profile, default_profile
from hwmodels.costmodel import DTYPE_BYTES, attention_compute_dtype
from hwmodels.devices import DeviceSpec, get_device
from workloads import operators as ops
from workloads.errors import OutOfMemoryError, PlanError
from workloads.models import ModelSpec, get_model
from workloads.quant import KVCacheFormat, QuantFormat, get_kv_format, get_quant_format

# How an op's shape is built from the batch (column `kind` of the op table).
_GEMM_TOKENS, _GEMM_SEQS, _ATTN_PREFILL, _ATTN_DECODE, _MOE, _EW_TOKENS, _EW_SEQS, _ALLREDUCE = range(8)
_MAX_FEATURES = max(eff.NUM_FEATURES.values())
_PAR_WIDTH = 10
# vLLM's custom all-reduce serves messages up to this size on NVLink; NCCL above it.
# Source: vLLM custom_all_reduce.py, max_size default 8 MiB.
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class IterationCost:
    """Cost of one engine iteration on one replica (all its devices)."""

    time_s: float
    energy_j: float
    breakdown: dict = field(default_factory=dict)


@njit(cache=True)
def _iteration_kernel(prefill_lens, prefill_offsets, decode_ctx, op_cls, op_kind, op_par, op_mult,
                      op_theta, op_nfeat, op_floor, op_dev, op_power, scratch, shape, op_time):
    """Seconds and joules of one iteration; per-op seconds (already multiplied) into ``op_time``."""
    n_p = prefill_lens.size
    n_d = decode_ctx.size
    tokens = 0.0
    for i in range(n_p):
        tokens += prefill_lens[i]
    tokens += n_d
    seqs = float(n_p + n_d)
    total_t = 0.0
    total_e = 0.0
    for o in range(op_cls.size):
        op_time[o] = 0.0
        kind = op_kind[o]
        par = op_par[o]
        if kind == _GEMM_TOKENS or kind == _GEMM_SEQS:
            m = tokens if kind == _GEMM_TOKENS else seqs
            if m <= 0:
                continue
            flops, nbytes = ops.gemm_work(m, par[0], par[1], par[2], par[3])
            flops += par[4] * par[0] * par[1]  # dequantisation work of weight-only formats
            shape[0] = m
            shape[1] = par[0]
            shape[2] = par[1]
            shape[3] = flops
            shape[4] = nbytes
        elif kind == _ATTN_PREFILL:
            if n_p == 0:
                continue
            flops = 0.0
            nbytes = 0.0
            s_sum = 0.0
            c_sum = 0.0
            for i in range(n_p):
                f, b = ops.attention_prefill_work(1.0, float(prefill_lens[i]), float(prefill_offsets[i]),
                                                  par[0], par[1], par[2], par[3], par[4], par[5])
                flops += f
                nbytes += b
                s_sum += prefill_lens[i]
                c_sum += prefill_offsets[i]
            shape[0] = n_p
            shape[1] = s_sum / n_p
            shape[2] = c_sum / n_p
            shape[3] = par[0]
            shape[4] = par[1]
            shape[5] = par[2]
            shape[6] = par[5]
            shape[7] = flops
            shape[8] = nbytes
        elif kind == _ATTN_DECODE:
            if n_d == 0:
                continue
            flops = 0.0
            nbytes = 0.0
            L_sum = 0.0
            for i in range(n_d):
                L = float(decode_ctx[i]) + 1.0
                f, b = ops.attention_decode_work(1.0, L, par[0], par[1], par[2], par[3], par[4], par[5])
                flops += f
                nbytes += b
                L_sum += L
            shape[0] = n_d
            shape[1] = L_sum / n_d
            shape[2] = par[0]
            shape[3] = par[1]
            shape[4] = par[2]
            shape[5] = par[5]
            shape[6] = flops
            shape[7] = nbytes
        elif kind == _MOE:
            if tokens <= 0:
                continue
            flops, nbytes = ops.moe_work(tokens, par[0], par[1], par[2], par[3], par[4], par[5], par[6], par[7] > 0)
            shape[0] = tokens
            shape[1] = par[0]
            shape[2] = par[1]
            shape[3] = par[2]
            shape[4] = par[3]
            shape[5] = par[4]
            shape[6] = 0.0
            shape[7] = flops
            shape[8] = nbytes
        elif kind == _EW_TOKENS or kind == _EW_SEQS:
            rows = tokens if kind == _EW_TOKENS else seqs
            if rows <= 0:
                continue
            flops, nbytes = ops.elementwise_work(int(par[0]), rows, par[1], par[2])
            shape[0] = par[0]
            shape[1] = flops
            shape[2] = nbytes
        else:  # _ALLREDUCE over the TP group: message = tokens x hidden in 16-bit
            msg = tokens * par[2]
            if tokens <= 0 or msg < par[3] or msg > par[4]:
                continue
            flops = 0.0
            nbytes = msg
            shape[0] = 0.0
            shape[1] = par[1]
            shape[2] = msg
            shape[3] = ops.collective_traffic_factor(0, par[1])
        nf = op_nfeat[o]
        t = eff.predict_one(op_cls[o], shape, op_dev[o], op_floor[o], op_theta[o, :nf], scratch[:nf])
        # utilisation of the busier of compute and memory drives dynamic power
        util = max(flops / (op_dev[o, 0] * t), nbytes / (op_dev[o, 1] * t))
        if util > 1.0:
            util = 1.0
        power = op_power[0] + op_power[1] * util
        t *= op_mult[o]
        op_time[o] = t
        total_t += t
        total_e += power * t
    return total_t, total_e


class Deployment:
    """A model served on ``tp x pp`` devices of one kind with given weight and KV formats.

    Raises PlanError for impossible degrees and OutOfMemoryError when weights do not fit.
    """

    def __init__(self, model: ModelSpec | str, device: DeviceSpec | str, *, quant: QuantFormat | str = "bf16",
                 kv_dtype: KVCacheFormat | str = "auto", tp: int = 1, ep: int = 1, pp: int = 1,
                 profile: Profile | None = None, overhead_s: float = 0.0):
        self.model = get_model(model) if isinstance(model, str) else model
        self.device = get_device(device) if isinstance(device, str) else device
        self.quant = get_quant_format(quant) if isinstance(quant, str) else quant
        if isinstance(kv_dtype, str):
            kv_name = kv_dtype
            if kv_dtype == "auto":
                kv_name = self.quant.kv_default or "bf16"
            kv_dtype = get_kv_format(kv_name)
        self.kv = kv_dtype
        self.tp, self.ep, self.pp = int(tp), int(ep), int(pp)
        self.profile = profile if profile is not None else default_profile()
        self.overhead_s = float(overhead_s)
        self._check_plan()
        self._build_ops()
        self._scratch = np.zeros(_MAX_FEATURES)
        self._shape = np.zeros(_PAR_WIDTH)
        self._op_time = np.zeros(len(self.op_names))

    # -- plan ---------------------------------------------------------------------------------
    def _check_plan(self) -> None:
        m, tp, ep, pp = self.model, self.tp, self.ep, self.pp
        for name, v in (("tp", tp), ("ep", ep), ("pp", pp)):
            if v < 1:
                raise PlanError(f"`{name}` must be a positive integer, got {v}")
        if m.num_heads % tp:
            raise PlanError(f"tp={tp} must divide the {m.num_heads} attention heads of {m.name}; "
                            f"use a tp among {_divisors(m.num_heads, 64)}")
        if m.mla is None and m.num_kv_heads % tp and tp % m.num_kv_heads:
            raise PlanError(f"tp={tp} and the {m.num_kv_heads} KV heads of {m.name} must divide one another")
        if m.moe is not None:
            if m.moe.num_experts % ep:
                raise PlanError(f"ep={ep} must divide the {m.moe.num_experts} experts of {m.name}")
            if ep > tp or tp % ep:
                raise PlanError(f"ep={ep} must divide tp={tp} (experts are sharded inside the TP group)")
        elif ep != 1:
            raise PlanError(f"ep={ep} given but {m.name} has no experts; use ep=1")
        if m.num_layers < pp:
            raise PlanError(f"pp={pp} exceeds the {m.num_layers} layers of {m.name}")
        if not self.device.supports(self.quant.compute_dtype):
            raise PlanError(f"{self.device.name} has no {self.quant.compute_dtype} units to run "
                            f"{self.quant.name}; choose a format whose compute dtype it has "
                            f"({', '.join(self.device.dtypes)})")

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp

    # -- memory -------------------------------------------------------------------------------
    @property
    def weight_bytes_per_device(self) -> float:
        """Weights on one device: layer weights split by TP (and EP for experts) and PP; embeddings
        and LM head split by TP (vocab-parallel) and kept in 16-bit."""
        br = self.model.param_breakdown()
        layer_params = sum(br.values()) - br["embedding"] - br["lm_head"]
        # experts: E/ep per rank, each sharded tp/ep ways -> a 1/tp share, like every other layer weight
        per_dev = layer_params * self.quant.bytes_per_weight / self.tp / self.pp
        per_dev += (br["embedding"] + br["lm_head"]) * 2.0 / self.tp
        return per_dev

    @property
    def kv_bytes_per_token_per_device(self) -> float:
        """KV-cache bytes one token occupies on one device (its layers, its share of KV heads)."""
        m = self.model
        layers = math.ceil(m.num_layers / self.pp)
        if m.mla is not None:
            per_layer = m.kv_cache_elements_per_token()  # the latent is replicated on every TP rank
        else:
            kv_heads_rank = max(1, m.num_kv_heads // self.tp)
            per_layer = 2 * kv_heads_rank * m.head_dim
        return layers * per_layer * self.kv.bytes_per_element

    def kv_capacity_tokens(self, memory_utilization: float = 0.9, activation_bytes: float | None = None) -> int:
        """Tokens of KV cache that fit on each device after weights and an activation reserve.

        ``memory_utilization`` is vLLM's gpu_memory_utilization; the activation reserve defaults to
        the peak of a 8192-token forward pass (hidden states and MLP intermediates in 16-bit).
        """
        cap = self.device.memory_capacity_bytes * memory_utilization
        if activation_bytes is None:
            m = self.model
            inter = max(m.intermediate_size, m.moe.expert_intermediate_size * m.moe.top_k if m.moe else 0)
            activation_bytes = 8192 * (4 * m.hidden_size + 2 * inter / self.tp) * 2.0 \
                + 8192 * m.vocab_size / self.tp * 4.0 / 8  # logits of sampled rows, a fraction of tokens
        free = cap - self.weight_bytes_per_device - activation_bytes
        if free <= self.kv_bytes_per_token_per_device:
            need = self.weight_bytes_per_device + activation_bytes
            raise OutOfMemoryError(
                f"{self.model.name} ({self.quant.name}) needs {need / 2**30:.1f} GiB per device for weights "
                f"and activations with tp={self.tp}, pp={self.pp}, but {self.device.name} offers "
                f"{cap / 2**30:.1f} GiB at memory utilisation {memory_utilization}; raise tp/pp, use a "
                f"smaller format, or a device with more memory",
                required_bytes=need, available_bytes=cap)
        return int(free // self.kv_bytes_per_token_per_device)

    # -- operator table -------------------------------------------------------------------------
    def _build_ops(self) -> None:
        m, d, q, tp = self.model, self.device, self.quant, self.tp
        rows: list[tuple] = []
        act_b = DTYPE_BYTES[q.activation_dtype]
        wb = q.bytes_per_weight
        deq = q.dequant_flops_per_weight
        gemm_group = "bf16" if q.name in ("bf16", "fp16", "fp32") else q.name
        layers_dense = m.num_dense_layers / self.pp
        layers_moe = m.num_moe_layers / self.pp
        layers_all = m.num_layers / self.pp
        H = m.hidden_size
        heads = m.num_heads // tp

        def gemm(name, n, k, mult, kind=_GEMM_TOKENS, group=gemm_group, a=act_b, w=wb, dq=deq):
            if mult > 0 and n > 0 and k > 0:
                rows.append((name, "gemm", group, kind, (n, k, a, w, dq), mult, q.compute_dtype))

        # attention projections
        if m.mla is not None:
            a = m.mla
            if a.q_lora_rank:
                gemm("q_a_proj", a.q_lora_rank, H, layers_all)
                gemm("q_b_proj", heads * a.qk_head_dim, a.q_lora_rank, layers_all)
            else:
                gemm("q_proj", heads * a.qk_head_dim, H, layers_all)
            gemm("kv_a_proj", a.kv_lora_rank + a.qk_rope_head_dim, H, layers_all)
            gemm("kv_b_proj", heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, layers_all)
            attn_dims = (heads, heads, a.qk_head_dim, a.v_head_dim)
            o_in = heads * a.v_head_dim
        else:
            kvh = max(1, m.num_kv_heads // tp)
            gemm("qkv_proj", (heads + 2 * kvh) * m.head_dim, H, layers_all)
            attn_dims = (heads, kvh, m.head_dim, m.head_dim)
            o_in = heads * m.head_dim
        gemm("o_proj", H, o_in, layers_all)
        # attention itself
        kv_group = "fp8" if self.kv.bytes_per_element <= 1.0 else "bf16"
        window = float(m.sliding_window or 0)
        par = (*attn_dims, self.kv.bytes_per_element, window)
        attn_compute = attention_compute_dtype(d, kv_group)
        rows.append(("attn_prefill", "attn_prefill", kv_group, _ATTN_PREFILL, par, layers_all, attn_compute))
        rows.append(("attn_decode", "attn_decode", kv_group, _ATTN_DECODE, par, layers_all, attn_compute))
        # MLP: dense layers, then MoE layers
        mats = 2 if m.mlp_gated else 1
        if m.intermediate_size and layers_dense > 0:
            gemm("mlp_up_proj", mats * m.intermediate_size // tp, H, layers_dense)
            gemm("mlp_down_proj", H, m.intermediate_size // tp, layers_dense)
            self._ew(rows, "mlp_act", "activation" if m.mlp_gated else "gelu", m.intermediate_size / tp, layers_dense)
        if m.moe is not None and layers_moe > 0:
            e = m.moe
            gemm("router", e.num_experts, H, layers_moe, group="bf16", a=2.0, w=2.0, dq=0.0)
            moe_tp = tp // self.ep
            rows.append(("experts", "moe", gemm_group, _MOE,
                         (H, e.expert_intermediate_size / moe_tp, e.top_k, e.num_experts, self.ep, wb, act_b,
                          1.0 if m.mlp_gated else 0.0), layers_moe, q.compute_dtype))
            if e.shared_expert_intermediate_size:
                gemm("shared_up_proj", mats * e.shared_expert_intermediate_size // tp, H, layers_moe)
                gemm("shared_down_proj", H, e.shared_expert_intermediate_size // tp, layers_moe)
        # norms, residual adds, rotary embedding
        self._ew(rows, "norms", "norm", H, m.norms_per_layer * layers_all)
        self._ew(rows, "residual_adds", "add", H, 2 * layers_all)
        if m.position_embedding == "rope":
            rot = (attn_dims[0] + attn_dims[1]) * (m.mla.qk_rope_head_dim if m.mla else m.head_dim * m.rotary_fraction)
            self._ew(rows, "rope", "rope", rot, layers_all)
        # once per iteration (first/last stage): embedding, final norm, LM head, sampling
        self._ew(rows, "embedding", "embedding", H, 1.0)
        self._ew(rows, "final_norm", "norm", H, 1.0 if m.final_norm else 0.0)
        gemm("lm_head", m.vocab_size // tp, m.token_embed_dim, 1.0, kind=_GEMM_SEQS, group="bf16", a=2.0, w=2.0, dq=0.0)
        self._ew(rows, "sampling", "sampling", m.vocab_size, 1.0, row_kind=_EW_SEQS)
        # tensor-parallel all-reduces after attention and after the MLP of every layer
        if tp > 1:
            ar = (0.0, float(tp), H * 2.0)
            has_nvlink = d.scale_up_link.kind in ("nvlink", "xgmi")
            if has_nvlink:
                rows.append(("allreduce_custom", "collective", "custom_graph", _ALLREDUCE,
                             (*ar, 0.0, float(CUSTOM_ALLREDUCE_MAX_BYTES)), 2 * layers_all, "bf16"))
                rows.append(("allreduce_nccl", "collective", "nccl", _ALLREDUCE,
                             (*ar, float(CUSTOM_ALLREDUCE_MAX_BYTES) + 1.0, math.inf), 2 * layers_all, "bf16"))
            else:
                rows.append(("allreduce_nccl", "collective", "nccl", _ALLREDUCE, (*ar, 0.0, math.inf),
                             2 * layers_all, "bf16"))
        self._pack(rows)

    @staticmethod
    def _ew(rows, name, kind, width, mult, row_kind=_EW_TOKENS):
        if mult > 0 and width > 0:
            rows.append((name, "elementwise", "any", row_kind,
                         (float(ops.ELEMENTWISE_CODE[kind]), float(width), 2.0), mult, "bf16"))

    def _pack(self, rows) -> None:
        n = len(rows)
        self.op_names = tuple(r[0] for r in rows)
        self.op_param_keys = []
        self._cls = np.zeros(n, np.int64)
        self._kind = np.zeros(n, np.int64)
        self._par = np.zeros((n, _PAR_WIDTH))
        self._mult = np.zeros(n)
        self._theta = np.zeros((n, _MAX_FEATURES))
        self._nfeat = np.zeros(n, np.int64)
        self._floor = np.zeros(n)
        self._dev = np.zeros((n, 4))
        d = self.device
        bw = d.memory_bandwidth_bytes_per_s
        link = d.scale_up_link.bandwidth_bytes_per_s if d.scale_up_link is not None else bw
        for i, (name, cls, group, kind, par, mult, compute) in enumerate(rows):
            p, key = self.profile.lookup(d.arch_class, cls, group)
            self.op_param_keys.append(key)
            self._cls[i] = eff.CLASS_INDEX[cls]
            self._kind[i] = kind
            self._par[i, :len(par)] = par
            self._mult[i] = mult
            nf = eff.NUM_FEATURES[cls]
            self._theta[i, :nf] = p.theta
            self._nfeat[i] = nf
            self._floor[i] = p.log_floor
            self._dev[i] = (d.peak_flops(compute), bw, d.num_sms, link)
        idle = d.power.idle_w
        self._power = np.array([idle, d.power.tdp_w - idle])

    # -- the query ----------------------------------------------------------------------------
    def iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray, decode_ctx: np.ndarray) -> tuple[float, float]:
        """(seconds, joules) of one iteration on this replica; arrays of int64 token counts.

        ``prefill_lens[i]`` new prompt tokens of a request with ``prefill_offsets[i]`` already cached;
        one new token for each request with ``decode_ctx[j]`` tokens cached.
        """
        t, e = _iteration_kernel(prefill_lens, prefill_offsets, decode_ctx, self._cls, self._kind, self._par,
                                 self._mult, self._theta, self._nfeat, self._floor, self._dev, self._power,
                                 self._scratch, self._shape, self._op_time)
        t += self.overhead_s
        e = (e + self._power[0] * self.overhead_s) * self.num_devices / self.pp
        return t, e

    def cost(self, prefill_lens, prefill_offsets, decode_ctx) -> IterationCost:
        """``iteration`` with a per-operator breakdown (seconds, all layers included)."""
        t, e = self.iteration(np.asarray(prefill_lens, np.int64), np.asarray(prefill_offsets, np.int64),
                              np.asarray(decode_ctx, np.int64))
        breakdown = {name: float(v) for name, v in zip(self.op_names, self._op_time) if v > 0}
        if self.overhead_s:
            breakdown["engine_overhead"] = self.overhead_s
        return IterationCost(t, e, breakdown)


def _divisors(n: int, limit: int) -> list[int]:
    return [i for i in range(1, min(n, limit) + 1) if n % i == 0]
