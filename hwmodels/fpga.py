"""FPGA LLM engines (AccLLM, FlightLLM) priced from first principles: the cost backend ``fpga-engine``.

An engine is a fixed design on one board (``hwmodels/data/fpga_engines/<engine>.yaml``; the board is a
catalogue device of family ``fpga-engine``). One iteration runs the batch's prefill in the
matrix-matrix (MM) mode and its decodes in the matrix-vector (MV) mode, one after the other:

* linear layers, decode: weights streamed once per step from HBM at ``bw x hbm_efficiency_stream``,
  overlapped with ``batch x MACs / (mv_macs_per_cycle x clock)``: ``max(load, compute)``;
* linear layers, prefill: ``tokens x MACs / (mm_macs_per_cycle x clock)`` with the weights streamed
  once per ``prefill_tile_tokens`` tile, added (``prefill_overlap: false``) or overlapped;
* attention: the KV read (``hbm_efficiency_gather``) against its MACs in the same mode; Lambda
  attention reads ``sink_tokens + window_tokens`` keys at most whatever the context;
* weight bytes: the quant format's bytes per weight, times ``sparse_density`` and plus
  ``sparse_index_bits_per_weight`` on the engine's ``sparse_layers``; MACs skip the pruned weights;
* energy: ``static_w x t + hbm_pj_per_bit x bits moved + mac_pj x MACs``.

Norms, activations and softmax (special-function units) are not priced. Units: s, J, bytes, W.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from llmsim.hwmodels.deployment import IterationCost
from llmsim.hwmodels.devices import DeviceSpec, get_device
from llmsim.hwmodels.engines import get_engine
from llmsim.workloads.catalogue import read_data_text
from llmsim.workloads.errors import ConfigError, OutOfMemoryError
from llmsim.workloads.models import ModelSpec, get_model
from llmsim.workloads.quant import get_kv_format, get_quant_format
from llmsim.workloads.yamlio import check_fields

__all__ = ["FpgaEngine", "FpgaDeployment", "get_fpga_engine", "engine_for_device", "list_fpga_engines",
           "fpga_backend", "LINEAR_NAMES"]

#: the decoder's linear layers, as named in ``sparse_layers``
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_REQUIRED = ("schema_version", "name", "device", "description", "quant", "kv_dtype", "sources", "clock_hz",
             "clock_source", "mm_macs_per_cycle", "mm_source", "mv_macs_per_cycle", "mv_source",
             "prefill_tile_tokens", "prefill_overlap", "prefill_source", "hbm_efficiency_stream",
             "hbm_efficiency_gather", "hbm_source", "sparse_layers", "sparse_density",
             "sparse_index_bits_per_weight", "sparse_source", "lm_head_bits", "lm_head_source", "attention",
             "sink_tokens", "window_tokens", "attention_source", "max_batch", "max_context", "limits_source",
             "static_w", "hbm_pj_per_bit", "mac_pj", "power_source")


@dataclass(frozen=True)
class FpgaEngine:
    """One FPGA engine design (see the module docstring for how each field prices work)."""

    name: str
    device: str
    description: str
    quant: str
    kv_dtype: str
    clock_hz: float
    mm_macs_per_cycle: int
    mv_macs_per_cycle: int
    prefill_tile_tokens: int
    prefill_overlap: bool
    hbm_efficiency_stream: float
    hbm_efficiency_gather: float
    sparse_layers: tuple[str, ...]
    sparse_density: float
    sparse_index_bits_per_weight: float
    lm_head_bits: float
    attention: str
    sink_tokens: int
    window_tokens: int
    max_batch: int
    max_context: int
    static_w: float
    hbm_pj_per_bit: float
    mac_pj: float
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for k in ("clock_hz", "hbm_pj_per_bit", "mac_pj", "lm_head_bits"):
            if not (isinstance(getattr(self, k), (int, float)) and getattr(self, k) > 0):
                raise ConfigError(f"engine {self.name}: `{k}` must be > 0, got {getattr(self, k)!r}")
        for k in ("hbm_efficiency_stream", "hbm_efficiency_gather", "sparse_density"):
            if not 0 < getattr(self, k) <= 1:
                raise ConfigError(f"engine {self.name}: `{k}` must be in (0, 1], got {getattr(self, k)!r}")
        for k in ("mm_macs_per_cycle", "mv_macs_per_cycle", "prefill_tile_tokens", "max_batch", "max_context"):
            if not (isinstance(getattr(self, k), int) and getattr(self, k) >= 1):
                raise ConfigError(f"engine {self.name}: `{k}` must be a positive integer, got {getattr(self, k)!r}")
        if self.attention not in ("dense", "lambda"):
            raise ConfigError(f"engine {self.name}: `attention` must be 'dense' or 'lambda', got {self.attention!r}")
        if self.attention == "lambda" and self.sink_tokens + self.window_tokens < 1:
            raise ConfigError(f"engine {self.name}: Lambda attention needs sink_tokens + window_tokens >= 1")
        bad = [s for s in self.sparse_layers if s not in LINEAR_NAMES]
        if bad:
            raise ConfigError(f"engine {self.name}: unknown sparse layer(s) {bad}; use {', '.join(LINEAR_NAMES)}")
        if self.static_w < 0 or self.sparse_index_bits_per_weight < 0:
            raise ConfigError(f"engine {self.name}: `static_w` and `sparse_index_bits_per_weight` must be >= 0")

    @property
    def attended_keys_cap(self) -> int | None:
        """Most keys one query reads (Lambda attention), None for dense attention."""
        return self.sink_tokens + self.window_tokens if self.attention == "lambda" else None


def _parse_engine(data: Any, where: str) -> FpgaEngine:
    d = check_fields(data, where, _REQUIRED)
    if d["schema_version"] != 1:
        raise ConfigError(f"{where}: `schema_version` must be 1, got {d['schema_version']!r}")
    kw = {k: d[k] for k in FpgaEngine.__dataclass_fields__ if k in d and k not in ("sparse_layers", "sources")}
    try:
        return FpgaEngine(sparse_layers=tuple(d["sparse_layers"] or ()), sources=tuple(d["sources"] or ()), **kw)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


@functools.cache
def _engines() -> dict[str, FpgaEngine]:
    root = resources.files("llmsim.hwmodels").joinpath("data", "fpga_engines")
    out: dict[str, FpgaEngine] = {}
    for item in sorted(root.iterdir(), key=lambda e: e.name):
        if item.name.endswith(".yaml"):
            where = f"hwmodels/data/fpga_engines/{item.name}"
            e = _parse_engine(read_data_text(item.read_text(encoding="utf-8"), where), where)
            out[e.name] = e
    return out


def list_fpga_engines() -> tuple[str, ...]:
    return tuple(_engines())


def get_fpga_engine(name: str) -> FpgaEngine:
    try:
        return _engines()[name]
    except KeyError:
        raise ConfigError(f"no FPGA engine {name!r}; shipped: {', '.join(_engines())}") from None


def engine_for_device(device: DeviceSpec | str) -> FpgaEngine:
    """The engine built into an ``fpga-engine`` device (the engine file naming it as ``device``)."""
    spec = get_device(device)
    for e in _engines().values():
        if e.device == spec.name:
            return e
    raise ConfigError(f"device {spec.name!r} has no FPGA engine file naming it (hwmodels/data/fpga_engines); "
                      f"engines: {', '.join(f'{e.name} on {e.device}' for e in _engines().values())}")


class FpgaDeployment:
    """One FPGA card running ``engine`` for ``model`` (the ReplicaCost of hwmodels/backend.py)."""

    def __init__(self, model: ModelSpec | str, device: DeviceSpec | str, *, engine_design: FpgaEngine | None = None,
                 quant: Any = "auto", kv_dtype: Any = "auto", tp: int = 1, ep: int = 1, pp: int = 1,
                 engine: Any = "kernels", max_num_seqs: int | None = None, **_ignored):
        self.model = get_model(model) if isinstance(model, str) else model
        self.device = get_device(device)
        self.design = engine_design if engine_design is not None else engine_for_device(self.device)
        d, m = self.design, self.model
        native_q = get_quant_format(d.quant)
        q = native_q if quant in ("auto", None) else (get_quant_format(quant) if isinstance(quant, str) else quant)
        if q.name != native_q.name:
            raise ConfigError(f"{self.device.name}: the {d.name} engine runs only the {native_q.name} format "
                              f"(got {q.name}); pass --quant {native_q.name}")
        self.quant = q
        native_kv = get_kv_format(d.kv_dtype)
        kv = native_kv if kv_dtype in ("auto", None) else (get_kv_format(kv_dtype) if isinstance(kv_dtype, str) else kv_dtype)
        if kv.name != native_kv.name:
            raise ConfigError(f"{self.device.name}: the {d.name} engine stores the KV cache only as {native_kv.name} "
                              f"(got {kv.name}); pass --kv-dtype {native_kv.name}")
        self.kv = kv
        if (tp, pp, ep) != (1, 1, 1):
            raise ConfigError(f"{self.device.name}: the {d.name} engine runs a model on one card (tp=pp=ep=1), got "
                              f"tp={tp}, pp={pp}, ep={ep}; use data-parallel replicas (--num-devices) instead")
        self.tp = self.pp = self.ep = 1
        if m.moe is not None or m.mla is not None:
            raise ConfigError(f"{self.device.name}: the {d.name} engine runs dense decoder models, not {m.name} "
                              f"(MoE/MLA layers are not in its instruction set)")
        if max_num_seqs is not None and int(max_num_seqs) > d.max_batch:
            raise ConfigError(f"{self.device.name}: the {d.name} engine decodes at most {d.max_batch} sequences per "
                              f"batch (engine limit max_batch), got max_num_seqs={max_num_seqs}; pass "
                              f"--max-batch-size {d.max_batch} or lower")
        self.engine = get_engine(engine)
        self._build()
        if self.weight_bytes_per_device > self.device.memory_capacity_bytes:
            raise OutOfMemoryError(f"{m.name} needs {self.weight_bytes_per_device / 2**30:.2f} GiB of weights in the "
                                   f"{d.name} format but {self.device.name} has "
                                   f"{self.device.memory_capacity_bytes / 2**30:.1f} GiB of HBM",
                                   required_bytes=self.weight_bytes_per_device,
                                   available_bytes=self.device.memory_capacity_bytes)

    # -- static tables --------------------------------------------------------------------------
    def _build(self) -> None:
        m, d = self.model, self.design
        H, hd = m.hidden_size, m.head_dim
        q_w, kv_w = m.num_heads * hd, m.num_kv_heads * hd
        mats = {"q_proj": (q_w, H), "k_proj": (kv_w, H), "v_proj": (kv_w, H), "o_proj": (H, q_w)}
        if m.mlp_gated:
            mats.update(gate_proj=(m.intermediate_size, H), up_proj=(m.intermediate_size, H))
        else:
            mats.update(up_proj=(m.intermediate_size, H))
        mats["down_proj"] = (H, m.intermediate_size)
        bpw = self.quant.bytes_per_weight
        layer_bytes = layer_macs = 0.0
        for name, (n, k) in mats.items():
            dense = float(n * k)
            if name in d.sparse_layers:
                layer_macs += dense * d.sparse_density
                layer_bytes += dense * (d.sparse_density * bpw + d.sparse_index_bits_per_weight / 8.0)
            else:
                layer_macs += dense
                layer_bytes += dense * bpw
        L = m.num_layers
        head = float(m.vocab_size * m.token_embed_dim)
        self.layer_macs_per_token = layer_macs * L           # MACs of every decoder linear, one token
        self.lm_head_macs = head                              # one sampled row
        self._linear_bytes = layer_bytes * L
        self._head_bytes = head * d.lm_head_bits / 8.0
        self._embed_bytes = float(m.embedding_params()) * d.lm_head_bits / 8.0
        self._kv_token_bytes = L * 2 * kv_w * self.kv.bytes_per_element
        self._attn_macs_per_key = L * 2.0 * m.num_heads * hd  # QK^T and PV, per query and key
        bw = self.device.memory_bandwidth_bytes_per_s
        self._bw_stream = bw * d.hbm_efficiency_stream
        self._bw_gather = bw * d.hbm_efficiency_gather
        self._mm = d.mm_macs_per_cycle * d.clock_hz
        self._mv = d.mv_macs_per_cycle * d.clock_hz

    # -- ReplicaCost -----------------------------------------------------------------------------
    dp_ep = 1

    @property
    def layout(self):
        """The deployment itself: this family keeps its own memory accounting (its tiers and formats
        are not the GPU layout's), and answers the layout's questions (plan, formats, weight and KV
        bytes, KV capacity, swap) that the runner asks of ``Deployment.layout``."""
        return self

    num_devices = property(lambda self: 1)
    stage_layers = property(lambda self: (self.model.num_layers,))

    @property
    def weight_bytes_per_device(self) -> float:
        """Stored weights: pruned/quantized decoder layers, LM head and embedding table."""
        return self._linear_bytes + self._head_bytes + self._embed_bytes

    @property
    def streamed_weight_bytes(self) -> float:
        """Bytes one decode step reads: decoder layers and LM head (one embedding row is negligible)."""
        return self._linear_bytes + self._head_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        return self._kv_token_bytes

    def kv_capacity_tokens(self, memory_utilization: float = 0.9) -> int:
        free = self.device.memory_capacity_bytes * memory_utilization - self.weight_bytes_per_device
        if free <= self._kv_token_bytes:
            raise OutOfMemoryError(f"no HBM left for KV on {self.device.name} after the weights of {self.model.name}",
                                   required_bytes=self.weight_bytes_per_device,
                                   available_bytes=self.device.memory_capacity_bytes * memory_utilization)
        return int(free // self._kv_token_bytes)

    def host_swap_capacity_tokens(self, swap_space_bytes: float) -> int:
        return int(swap_space_bytes // self._kv_token_bytes)

    def swap_seconds_per_token(self) -> float:
        return self._kv_token_bytes / self.device.host_link.bandwidth_bytes_per_s

    def _keys(self, context: np.ndarray) -> np.ndarray:
        """Keys one query at position ``context`` (0-based count of earlier tokens + itself) reads."""
        cap = self.design.attended_keys_cap
        return context if cap is None else np.minimum(context, cap)

    def _check(self, lens: np.ndarray, offs: np.ndarray, ctx: np.ndarray) -> None:
        d = self.design
        n = lens.size + ctx.size
        if n > d.max_batch:
            raise ConfigError(f"{self.device.name}: a batch of {n} sequences exceeds the {d.name} engine's max_batch "
                              f"{d.max_batch}; lower --max-batch-size")
        longest = max(int((lens + offs).max()) if lens.size else 0, int(ctx.max()) + 1 if ctx.size else 0)
        if longest > d.max_context:
            raise ConfigError(f"{self.device.name}: a context of {longest} tokens exceeds the {d.name} engine's "
                              f"max_context {d.max_context} (its on-chip buffers / compiled length)")

    def parts(self, prefill_lens, prefill_offsets, decode_ctx) -> dict:
        """Seconds of each phase and the bytes and MACs moved, for one iteration (no limit checks)."""
        lens = np.asarray(prefill_lens, np.int64)
        offs = np.asarray(prefill_offsets, np.int64)
        ctx = np.asarray(decode_ctx, np.int64)
        d = self.design
        out = {"prefill_linear": 0.0, "prefill_attention": 0.0, "decode_linear": 0.0, "decode_attention": 0.0,
               "bytes": 0.0, "macs": 0.0}
        if lens.size:
            tokens = float(lens.sum())
            macs = tokens * self.layer_macs_per_token + lens.size * self.lm_head_macs
            tiles = float(sum(math.ceil(int(s) / d.prefill_tile_tokens) for s in lens))
            load_bytes = tiles * self._linear_bytes + self._head_bytes
            compute, load = macs / self._mm, load_bytes / self._bw_stream
            out["prefill_linear"] = max(compute, load) if d.prefill_overlap else compute + load
            keys = 0.0
            for s, c in zip(lens.tolist(), offs.tolist()):
                pos = np.arange(c + 1, c + s + 1, dtype=np.int64)
                keys += float(self._keys(pos).sum())
            a_macs = keys * self._attn_macs_per_key
            out["prefill_attention"] = a_macs / self._mm
            out["bytes"] += load_bytes + tokens * self._kv_token_bytes
            out["macs"] += macs + a_macs
        if ctx.size:
            b = float(ctx.size)
            macs = b * (self.layer_macs_per_token + self.lm_head_macs)
            out["decode_linear"] = max(self.streamed_weight_bytes / self._bw_stream, macs / self._mv)
            keys = float(self._keys(ctx + 1).sum())
            kv_bytes = keys * self._kv_token_bytes
            a_macs = keys * self._attn_macs_per_key
            out["decode_attention"] = max(kv_bytes / self._bw_gather, a_macs / self._mv)
            out["bytes"] += self.streamed_weight_bytes + kv_bytes
            out["macs"] += macs + a_macs
        return out

    def cost(self, prefill_lens, prefill_offsets, decode_ctx) -> IterationCost:
        lens = np.asarray(prefill_lens, np.int64)
        ctx = np.asarray(decode_ctx, np.int64)
        if lens.size + ctx.size == 0:
            return IterationCost(0.0, 0.0, {})
        offs = np.asarray(prefill_offsets, np.int64)
        self._check(lens, offs, ctx)
        p = self.parts(lens, offs, ctx)
        br = {k: float(p[k]) for k in ("prefill_linear", "prefill_attention", "decode_linear", "decode_attention")
              if p[k] > 0}
        t = float(sum(br.values()))
        d = self.design
        e = d.static_w * t + d.hbm_pj_per_bit * 1e-12 * 8.0 * p["bytes"] + d.mac_pj * 1e-12 * p["macs"]
        return IterationCost(t, float(e), br)

    def iteration(self, prefill_lens, prefill_offsets, decode_ctx) -> tuple[float, float]:
        c = self.cost(prefill_lens, prefill_offsets, decode_ctx)
        return c.time_s, c.energy_j

    def decode_power_w(self, context: int, batch: int = 1) -> float:
        """Average board power (W) of a decode step at ``context`` cached tokens."""
        t, e = self.iteration([], [], [context] * batch)
        return e / t


def fpga_backend(model, device: DeviceSpec, **kw) -> FpgaDeployment:
    """The cost backend of family ``fpga-engine``."""
    return FpgaDeployment(model, device, **kw)
