"""SambaNova SN40L RDU priced from first principles: the cost backend ``rdu-dataflow``.

A replica is ``tp`` sockets (8 = a node, 16 = a rack) holding one model, each socket a 1/tp share of
every layer. Tier placement: weights and KV in HBM (weights past HBM spill to DDR and are read from
there), the fused operators' working sets in SRAM (PMUs), the expert library of a
Composition of Experts in DDR (:func:`switch_seconds`: a model switch is a DDR->HBM copy, every socket
copying its share at once).

Dataflow fusion (``fusion``): ``"decoder"`` runs each decoder layer as one kernel call whose
intermediates stay in SRAM; ``"none"`` runs every operator as its own call and writes each
intermediate to HBM and reads it back. One decode or prefill step::

    t = max(HBM/DDR bytes / bandwidth, FLOPs / (peak x compute_efficiency))
        + kernel calls x call_overhead_s + 2 all-reduces per layer over the inter-RDU network

Operational intensity (:meth:`RduDeployment.operational_intensity`) is FLOPs over the HBM bytes of a
step, so it rises with the fusion level. Units: s, J, bytes, FLOP, W.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsim.hwmodels.deployment import IterationCost
from llmsim.hwmodels.devices import DeviceSpec, get_device
from llmsim.hwmodels.engines import get_engine
from llmsim.workloads.coe import CoEPlatform
from llmsim.workloads.errors import ConfigError, OutOfMemoryError
from llmsim.workloads.models import ModelSpec, get_model
from llmsim.workloads.quant import get_kv_format, get_quant_format

__all__ = ["RduParams", "RDU_PARAMS", "RduDeployment", "rdu_backend", "switch_seconds", "FUSION_LEVELS",
           "coe_platform"]

FUSION_LEVELS = ("none", "decoder")


@dataclass(frozen=True)
class RduParams:
    """Achievable fractions and per-call costs of the RDU model, all assumptions [U] (no SN40L kernel
    traces are public): ``hbm_efficiency`` of streaming reads, ``compute_efficiency`` of the PCUs on
    the big GEMMs of a prefill, ``call_overhead_s`` per kernel call (the host launches each call and the
    sockets synchronise), ``ops_per_layer_unfused`` kernel calls per decoder layer without fusion
    (norm, q/k/v, rope, attention, o, add, norm, gate/up, act, down, add = 12)."""

    hbm_efficiency: float = 0.8
    compute_efficiency: float = 0.6
    call_overhead_s: float = 10e-6
    ops_per_layer_unfused: int = 12


RDU_PARAMS = RduParams()


def switch_seconds(model_bytes: float, device: DeviceSpec | str, sockets: int) -> float:
    """Seconds to bring a model of ``model_bytes`` from DDR into HBM on ``sockets`` sockets, each
    copying its 1/sockets share at its DDR bandwidth (the slower tier bounds the copy)."""
    spec = get_device(device)
    ddr = [t for t in spec.memory if t.role in ("ddr", "host")]
    if not ddr:
        raise ConfigError(f"device {spec.name!r} has no DDR tier to switch models from")
    return model_bytes / (sockets * ddr[0].bandwidth_bytes_per_s)


class RduDeployment:
    """``model`` on ``tp`` SN40L sockets (the ReplicaCost of hwmodels/backend.py)."""

    def __init__(self, model: ModelSpec | str, device: DeviceSpec | str, *, quant: Any = "bf16", kv_dtype: Any = "auto",
                 tp: int = 1, ep: int = 1, pp: int = 1, engine: Any = "kernels", fusion: str = "decoder",
                 params: RduParams = RDU_PARAMS, memory_utilization: float = 0.9, **_ignored):
        self.model = get_model(model) if isinstance(model, str) else model
        self.device = get_device(device)
        self.quant = get_quant_format(quant) if isinstance(quant, str) else quant
        if not self.device.supports(self.quant.compute_dtype):
            raise ConfigError(f"{self.device.name} has no {self.quant.compute_dtype} units for {self.quant.name}; "
                              f"use one of {', '.join(self.device.dtypes)}")
        kv = self.quant.kv_default or "bf16" if kv_dtype in ("auto", None) else kv_dtype
        self.kv = get_kv_format(kv) if isinstance(kv, str) else kv
        if pp != 1:
            raise ConfigError(f"{self.device.name}: pipeline stages are not modelled on the RDU (pp={pp}); spread the "
                              f"model over sockets with tp")
        if tp not in (1, 2, 4, 8, 16):
            raise ConfigError(f"{self.device.name}: tp (sockets per replica) must be 1, 2, 4, 8 (a node) or 16 (a "
                              f"rack), got {tp}")
        if fusion not in FUSION_LEVELS:
            raise ConfigError(f"`fusion` must be one of {', '.join(FUSION_LEVELS)}, got {fusion!r}")
        self.tp, self.pp, self.ep = int(tp), 1, int(ep)
        self.fusion = fusion
        self.params = params
        self.engine = get_engine(engine)
        m = self.model
        self._total_params = float(m.param_count())
        self._active_params = float(m.active_param_count())
        wb = self.quant.bytes_per_weight
        self._weight_bytes = self._total_params * wb
        self._active_bytes = self._active_params * wb
        hbm = self.device.main_memory
        cap = hbm.capacity_bytes * memory_utilization
        per_socket = self._weight_bytes / self.tp
        self._hbm_fraction = min(1.0, cap * 0.95 / per_socket)  # 5% of HBM kept for KV at least [U]
        ddr = [t for t in self.device.memory if t.role in ("ddr", "host")]
        if self._hbm_fraction < 1.0 and (not ddr or per_socket > cap + ddr[0].capacity_bytes):
            raise OutOfMemoryError(f"{m.name} needs {per_socket / 2**30:.0f} GiB per socket on {self.tp} sockets, more "
                                   f"than HBM + DDR of {self.device.name}", required_bytes=per_socket,
                                   available_bytes=cap)
        self._ddr_bw = ddr[0].bandwidth_bytes_per_s if ddr else hbm.bandwidth_bytes_per_s
        self._hbm_bw = hbm.bandwidth_bytes_per_s * params.hbm_efficiency
        self._peak = self.device.peak_flops(self.quant.compute_dtype) * params.compute_efficiency
        if m.mla is not None:
            per_tok = m.num_layers * m.kv_cache_elements_per_token()
        else:
            per_tok = m.num_layers * 2 * m.num_kv_heads * m.head_dim
        self._kv_token_bytes = per_tok * self.kv.bytes_per_element
        self._attn_flops_per_key = m.num_layers * 4.0 * m.num_heads * m.head_dim
        H, inter = m.hidden_size, (m.moe.expert_intermediate_size * m.moe.top_k if m.moe else m.intermediate_size)
        # intermediates one token writes and reads back per layer without fusion (16-bit) [D]
        self._act_bytes_per_token = m.num_layers * 2.0 * 2.0 * (6 * H + 3 * inter)
        link = self.device.scale_up_link
        self._link_bw, self._link_lat = link.bandwidth_bytes_per_s, link.latency_s

    # -- ReplicaCost -----------------------------------------------------------------------------
    dp_ep = 1

    @property
    def layout(self):
        """The deployment itself: this family keeps its own memory accounting (its tiers and formats
        are not the GPU layout's), and answers the layout's questions (plan, formats, weight and KV
        bytes, KV capacity, swap) that the runner asks of ``Deployment.layout``."""
        return self

    num_devices = property(lambda self: self.tp)
    stage_layers = property(lambda self: (self.model.num_layers,))

    @property
    def weight_bytes_per_device(self) -> float:
        return self._weight_bytes / self.tp

    @property
    def hbm_weight_fraction(self) -> float:
        """Share of the weights placed in HBM (the rest is read from DDR)."""
        return self._hbm_fraction

    @property
    def kv_bytes_per_token(self) -> float:
        return self._kv_token_bytes

    def kv_capacity_tokens(self, memory_utilization: float = 0.9) -> int:
        cap = self.device.memory_capacity_bytes * memory_utilization
        free = cap - self.weight_bytes_per_device * self._hbm_fraction
        return max(1, int(free // (self._kv_token_bytes / self.tp)))

    def host_swap_capacity_tokens(self, swap_space_bytes: float) -> int:
        return int(swap_space_bytes // (self._kv_token_bytes / self.tp))

    def swap_seconds_per_token(self) -> float:
        return self._kv_token_bytes / self.tp / self._ddr_bw

    def _read_seconds(self, weight_bytes: float) -> float:
        """Seconds for every socket to read its share of ``weight_bytes`` of weights from HBM and DDR."""
        per = weight_bytes / self.tp
        return per * self._hbm_fraction / self._hbm_bw + per * (1.0 - self._hbm_fraction) / self._ddr_bw

    def _step_bytes_flops(self, tokens: float, keys: float, decode_keys: float, cached: float,
                          decode_seqs: int) -> tuple[float, float, float]:
        """(weight bytes read, other HBM bytes, FLOPs) of one step, whole replica: ``keys`` attended
        (query x key pairs), of which ``decode_keys`` by decodes (each read from HBM); a prefill reads its
        ``cached`` earlier tokens' KV once (attention tiles stay in SRAM)."""
        m = self.model
        if m.moe is not None and decode_seqs and tokens == decode_seqs:
            e = m.moe
            # distinct experts a decode batch touches, expected under uniform routing [D]
            touched = e.num_experts * (1.0 - (1.0 - e.top_k / e.num_experts) ** decode_seqs)
            expert_all = self._total_params - self._active_params
            per_expert = expert_all / (e.num_experts - e.top_k) if e.num_experts > e.top_k else 0.0
            wbytes = (self._active_params + per_expert * (touched - e.top_k)) * self.quant.bytes_per_weight
        elif m.moe is not None:
            wbytes = self._weight_bytes
        else:
            wbytes = self._weight_bytes
        other = (decode_keys + cached + tokens) * self._kv_token_bytes
        if self.fusion == "none":
            other += tokens * self._act_bytes_per_token
        flops = 2.0 * self._active_params * tokens + keys * self._attn_flops_per_key
        return wbytes, other, flops

    def parts(self, prefill_lens, prefill_offsets, decode_ctx) -> dict:
        lens = np.asarray(prefill_lens, np.int64)
        offs = np.asarray(prefill_offsets, np.int64)
        ctx = np.asarray(decode_ctx, np.int64)
        tokens = float(lens.sum()) + ctx.size
        decode_keys = float((ctx + 1).sum()) if ctx.size else 0.0
        keys = decode_keys + float(sum(s * c + s * (s + 1) / 2 for s, c in zip(lens.tolist(), offs.tolist())))
        wbytes, other, flops = self._step_bytes_flops(tokens, keys, decode_keys, float(offs.sum()),
                                                      ctx.size if not lens.size else 0)
        mem = self._read_seconds(wbytes) + other / self.tp / self._hbm_bw
        compute = flops / (self.tp * self._peak)
        L = self.model.num_layers
        calls = L * (1 if self.fusion == "decoder" else self.params.ops_per_layer_unfused)
        overhead = calls * self.params.call_overhead_s
        comm = 0.0
        if self.tp > 1:
            msg = tokens * self.model.hidden_size * 2.0
            comm = 2 * L * (self._link_lat + msg * 2.0 * (self.tp - 1) / self.tp / self._link_bw)
        return {"memory": mem, "compute": compute, "kernel_calls": overhead, "collectives": comm,
                "hbm_bytes": wbytes * self._hbm_fraction + other, "flops": flops}

    def operational_intensity(self, prefill_lens, prefill_offsets, decode_ctx) -> float:
        """FLOPs per HBM byte of one step at this fusion level."""
        p = self.parts(prefill_lens, prefill_offsets, decode_ctx)
        return p["flops"] / p["hbm_bytes"]

    def cost(self, prefill_lens, prefill_offsets, decode_ctx) -> IterationCost:
        if len(prefill_lens) + len(decode_ctx) == 0:
            return IterationCost(0.0, 0.0, {})
        p = self.parts(prefill_lens, prefill_offsets, decode_ctx)
        body = max(p["memory"], p["compute"])
        br = {("memory" if p["memory"] >= p["compute"] else "compute"): body,
              "kernel_calls": p["kernel_calls"], "collectives": p["collectives"]}
        br = {k: float(v) for k, v in br.items() if v > 0}
        t = float(sum(br.values()))
        pw = self.device.power
        util = max(p["memory"], p["compute"]) / t if t > 0 else 0.0
        e = self.tp * (pw.idle_w + (pw.tdp_w - pw.idle_w) * util) * t
        return IterationCost(t, float(e), br)

    def iteration(self, prefill_lens, prefill_offsets, decode_ctx) -> tuple[float, float]:
        c = self.cost(prefill_lens, prefill_offsets, decode_ctx)
        return c.time_s, c.energy_j

    def switch_seconds(self, model_bytes: float | None = None) -> float:
        """Seconds to switch this replica to another model of ``model_bytes`` (default: its own size)."""
        return switch_seconds(self._weight_bytes if model_bytes is None else model_bytes, self.device, self.tp)


def rdu_backend(model, device: DeviceSpec, **kw) -> RduDeployment:
    """The cost backend of family ``rdu-dataflow``."""
    return RduDeployment(model, device, **kw)


def coe_platform(name: str, expert_dep, router_dep, workload, switch_bytes_per_s: float,
                 memory_utilization: float = 0.9):
    """A :class:`~llmsim.workloads.coe.CoEPlatform` from the cost models of one expert replica and of
    the router (any ReplicaCost, same devices): experts resident = what the replica's fast memory holds
    beside the router and one request's KV; a switch copies one expert at ``switch_bytes_per_s``;
    decode priced at the mean context of a request."""
    n = expert_dep.num_devices
    expert_bytes = expert_dep.weight_bytes_per_device * n
    fast = expert_dep.device.memory_capacity_bytes * memory_utilization * n
    kv = (workload.prompt_tokens + workload.output_tokens) * expert_dep.kv_bytes_per_token
    resident = int((fast - router_dep.weight_bytes_per_device * router_dep.num_devices - kv) // expert_bytes)
    P, O = workload.prompt_tokens, workload.output_tokens
    return CoEPlatform(
        name=name, resident_experts=resident, switch_s=expert_bytes / switch_bytes_per_s,
        router_s=router_dep.iteration([P], [0], [])[0],
        expert_prefill_s=expert_dep.iteration([P], [0], [])[0],
        expert_decode_s_per_token=expert_dep.iteration([], [], [P + O // 2])[0])
