"""What a deployment is, apart from how it is priced: the plan, the formats, and where its bytes live.

A :class:`DeploymentLayout` is computed once per replica (``Deployment.layout``; every cost backend
returns one) from the model, the device and the plan. It holds the parallel degrees and the layers
of each pipeline stage, the weight/activation/KV formats, and for every memory tier of the device
(``DeviceSpec.memory``: capacity and bandwidth) which of weights, KV cache and activations it
holds. Memory accounting (KV capacity, swap space, swap speed) reads only the layout::

    lay = make_deployment("llama-3.1-8b", "h100", tp=2).layout
    lay.kv_capacity_tokens(0.9)       # tokens of KV per device beside weights and activations

All sizes are bytes per device unless named otherwise. On the catalogued devices weights, KV and
activations all live in the ``main`` tier (HBM/GDDR); a family with other tiers (an RDU's DDR
behind its HBM) builds its layout with ``weights_tier``/``kv_tier``/``activations_tier`` naming them.
"""
from __future__ import annotations

from dataclasses import dataclass

from llmsim.hwmodels.devices import DeviceSpec, Link, MemoryTier
from llmsim.workloads.errors import ConfigError, OutOfMemoryError
from llmsim.workloads.models import ModelSpec
from llmsim.workloads.quant import KVCacheFormat, QuantFormat

__all__ = ["DeploymentLayout", "TierUse", "ACTIVATION_RESERVE_TOKENS"]

#: Tokens of the forward pass whose activations are reserved beside weights and KV (vLLM profiles
#: its peak memory with a forward of max_num_batched_tokens, 8192 by default [S] vLLM worker.py).
ACTIVATION_RESERVE_TOKENS = 8192
_CONTENTS = ("weights", "kv", "activations")


@dataclass(frozen=True)
class TierUse:
    """One memory tier of the device and which of weights, KV cache and activations it holds."""

    tier: MemoryTier
    holds: tuple[str, ...]

    @property
    def capacity_bytes(self) -> int:
        return self.tier.capacity_bytes

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        return self.tier.bandwidth_bytes_per_s


@dataclass(frozen=True, kw_only=True)
class DeploymentLayout:
    """Plan, formats and memory of one replica (see the module docstring); build with :meth:`build`.

    ``weight_bytes_per_device``: layer weights split by TP (experts also over ``dp_ep`` ranks) and
    PP (the largest stage), embeddings and LM head split by TP in 16-bit.
    ``kv_bytes_per_token_per_device``: KV of one token on one device (its stage's layers, its share
    of KV heads). ``activation_reserve_bytes``: the default activation reserve, the peak of a
    ``ACTIVATION_RESERVE_TOKENS``-token forward (hidden states and MLP intermediates in 16-bit, and
    the logits of the sampled rows)."""

    model: ModelSpec
    device: DeviceSpec
    quant: QuantFormat
    kv: KVCacheFormat
    tp: int
    pp: int
    ep: int
    dp_ep: int
    stage_layers: tuple[int, ...]
    weight_bytes_per_device: float
    kv_bytes_per_token_per_device: float
    activation_reserve_bytes: float
    tiers: tuple[TierUse, ...]

    @classmethod
    def build(cls, model: ModelSpec, device: DeviceSpec, quant: QuantFormat, kv: KVCacheFormat, *, tp: int = 1,
              pp: int = 1, ep: int = 1, dp_ep: int = 1, layer_split: tuple[int, ...] | None = None,
              weights_tier: str | None = None, kv_tier: str | None = None,
              activations_tier: str | None = None) -> DeploymentLayout:
        """The layout of ``model`` on ``tp x pp`` devices (the plan already checked); tiers by name,
        default the device's main tier."""
        if layer_split is not None:
            stage_layers = tuple(int(x) for x in layer_split)
        else:
            base, rest = divmod(model.num_layers, pp)
            stage_layers = tuple(base + (1 if s < rest else 0) for s in range(pp))
        br = model.param_breakdown()
        layer_params = sum(br.values()) - br["embedding"] - br["lm_head"]
        # experts: E/ep per rank, each sharded tp/ep ways -> a 1/tp share, like every other layer weight
        layer_params -= br.get("moe_experts", 0) * (1.0 - 1.0 / dp_ep)  # experts sharded over DP ranks
        weights = layer_params * quant.bytes_per_weight / tp * max(stage_layers) / model.num_layers
        weights += (br["embedding"] + br["lm_head"]) * 2.0 / tp
        layers = max(stage_layers)
        if model.mla is not None:
            per_layer = model.kv_cache_elements_per_token()  # the latent is replicated on every TP rank
        else:
            per_layer = 2 * max(1, model.num_kv_heads // tp) * model.head_dim
        kv_per_token = layers * per_layer * kv.bytes_per_element
        inter = max(model.intermediate_size, model.moe.expert_intermediate_size * model.moe.top_k if model.moe else 0)
        n = ACTIVATION_RESERVE_TOKENS
        reserve = n * (4 * model.hidden_size + 2 * inter / tp) * 2.0 \
            + n * model.vocab_size / tp * 4.0 / 8  # logits of sampled rows, a fraction of tokens
        main = device.main_memory.name
        where = {"weights": weights_tier or main, "kv": kv_tier or main, "activations": activations_tier or main}
        names = [t.name for t in device.memory]
        for what, name in where.items():
            if name not in names:
                raise ConfigError(f"{device.name} has no memory tier {name!r} for the {what}; its tiers: "
                                  f"{', '.join(names)}")
        tiers = tuple(TierUse(t, tuple(c for c in _CONTENTS if where[c] == t.name)) for t in device.memory)
        return cls(model=model, device=device, quant=quant, kv=kv, tp=int(tp), pp=int(pp), ep=int(ep),
                   dp_ep=int(dp_ep), stage_layers=stage_layers, weight_bytes_per_device=weights,
                   kv_bytes_per_token_per_device=kv_per_token, activation_reserve_bytes=reserve, tiers=tiers)

    # -- plan and formats
    @property
    def num_devices(self) -> int:
        return self.tp * self.pp

    @property
    def activation_dtype(self) -> str:
        """Dtype of the GEMM inputs (the weight format's)."""
        return self.quant.activation_dtype

    # -- memory
    def tier_of(self, what: str) -> TierUse:
        """The tier holding ``what`` (``weights``, ``kv`` or ``activations``)."""
        if what not in _CONTENTS:
            raise ConfigError(f"`what` must be one of {', '.join(_CONTENTS)}, got {what!r}")
        return next(t for t in self.tiers if what in t.holds)

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes of one token summed over the replica's devices."""
        return self.kv_bytes_per_token_per_device * self.tp * self.pp

    def kv_capacity_tokens(self, memory_utilization: float = 0.9, activation_bytes: float | None = None) -> int:
        """Tokens of KV cache that fit on each device in the KV tier after what shares it (weights and
        the activation reserve on the catalogued devices).

        ``memory_utilization`` is vLLM's gpu_memory_utilization (a share of the KV tier); the
        activation reserve defaults to ``activation_reserve_bytes``."""
        if activation_bytes is None:
            activation_bytes = self.activation_reserve_bytes
        kv_tier = self.tier_of("kv")
        cap = kv_tier.capacity_bytes * memory_utilization
        free = cap
        need = 0.0
        for what, size in (("weights", self.weight_bytes_per_device), ("activations", activation_bytes)):
            if what in kv_tier.holds:
                free = free - size
                need = need + size
            elif size > self.tier_of(what).capacity_bytes:
                other = self.tier_of(what)
                raise OutOfMemoryError(
                    f"{self.model.name} needs {size / 2**30:.1f} GiB per device of {what} in the "
                    f"{other.tier.name} tier of {self.device.name}, which holds {other.capacity_bytes / 2**30:.1f} "
                    f"GiB; raise tp/pp or use a smaller format", required_bytes=size,
                    available_bytes=float(other.capacity_bytes))
        if free <= self.kv_bytes_per_token_per_device:
            raise OutOfMemoryError(
                f"{self.model.name} ({self.quant.name}) needs {need / 2**30:.1f} GiB per device for weights "
                f"and activations with tp={self.tp}, pp={self.pp}, but {self.device.name} offers "
                f"{cap / 2**30:.1f} GiB at memory utilisation {memory_utilization}; raise tp/pp, use a "
                f"smaller format, or a device with more memory",
                required_bytes=need, available_bytes=cap)
        return int(free // self.kv_bytes_per_token_per_device)

    @property
    def swap_link(self) -> Link:
        """The link KV moves over between device and host memory (the device's host link)."""
        return self.device.host_link

    def swap_seconds_per_token(self) -> float:
        """Seconds to move one token's KV between device and host memory: every device moves its
        share over its own host link at the same time."""
        return self.kv_bytes_per_token_per_device / self.swap_link.bandwidth_bytes_per_s

    def host_swap_capacity_tokens(self, swap_space_bytes: float) -> int:
        """Tokens of KV that ``swap_space_bytes`` of pinned host memory per device can hold."""
        return int(swap_space_bytes // self.kv_bytes_per_token_per_device)

    def describe(self) -> dict:
        """Plain-data summary: plan, formats and per tier its capacity, bandwidth and contents."""
        return {"tp": self.tp, "pp": self.pp, "ep": self.ep, "dp_ep": self.dp_ep,
                "stage_layers": list(self.stage_layers), "quant": self.quant.name, "kv_dtype": self.kv.name,
                "activation_dtype": self.activation_dtype, "weight_bytes_per_device": self.weight_bytes_per_device,
                "kv_bytes_per_token_per_device": self.kv_bytes_per_token_per_device,
                "tiers": [{"name": t.tier.name, "role": t.tier.role, "capacity_bytes": t.capacity_bytes,
                           "bandwidth_bytes_per_s": t.bandwidth_bytes_per_s, "holds": list(t.holds)}
                          for t in self.tiers]}
