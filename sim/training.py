"""Training-step simulation: one optimizer step of data x pipeline x tensor parallel training.

A step runs ``global_batch / dp`` samples on every DP replica as ``m`` micro-batches of
``micro_batch`` sequences through ``pp`` stages in the 1F1B order of Megatron-LM (PipeDream-Flush,
Narayanan et al. 2021): stage ``s`` runs ``min(pp - s - 1, m)`` warm-up forwards, then alternates one
forward and one backward, then drains its backwards. A forward of micro-batch ``i`` on stage ``s``
starts when the stage is free and the activations of stage ``s - 1`` have arrived (a send/recv over
the link joining the stages, ``micro_batch x seq x hidden`` 16-bit values split over the TP ranks,
Megatron's scatter-gather); a backward when the gradient of stage ``s + 1`` has arrived. After its
last backward each stage all-reduces its gradients over its DP group (``grad_bytes`` per
parameter, Megatron's fp32 gradient buffers by default; not overlapped with compute unless
``overlap_grad_reduce``) and runs the optimizer. The step ends when the last stage has. With
``distributed_optimizer`` (Megatron's ``--use-distributed-optimizer``, ZeRO-1) the gradients are
reduce-scattered instead, each rank updates its ``1/dp`` shard (Adam state sharded too) and the
updated 16-bit weights are all-gathered.

Per micro-batch costs come from the device family's cost backend (hwmodels/backend.make_deployment,
the same op table and cost query as serving) with engine ``megatron``, whose op table runs the LM
head and the softmax cross-entropy over every token: a forward is the stage's share of the layers' operators for ``micro_batch``
sequences of ``seq_len`` tokens, plus the embedding (first stage) and the LM head and loss over
every token (last stage). Backward multipliers, per operator class: GEMMs 2 (data and weight
gradients, each the forward's FLOPs), attention 2.5 (FlashAttention-2's backward does 2.5x the
forward's matmul FLOPs, Dao 2023, Sec. 3.1), elementwise 2 (reads the input and the incoming
gradient), tensor-parallel all-reduces 1 (one per forward all-reduce, Megatron's f/g operators).
``recompute='full'`` reruns the forward (with its all-reduces) before each backward.
Optimizer: Adam with fp32 master weights, memory-bound: ``OPTIMIZER_BYTES_PER_PARAM`` bytes of HBM
traffic per parameter on each rank.

Reported TFLOPS per GPU use Megatron-LM's formula (Narayanan et al. 2021, Appendix; the figure
Megatron logs and Holmes reports): ``24 c B s l h^2 (1 + s / 6h + V / 16 l h)`` per step with
``c = 4`` under full recomputation and 3 without, divided by step time and GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmsim.hwmodels.collectives import collective_seconds
from llmsim.hwmodels.backend import make_deployment
from llmsim.hwmodels.plans import ParallelPlan, Placement, place
from llmsim.workloads.errors import ConfigError, OutOfMemoryError
from llmsim.workloads.models import ModelSpec, get_model

RECOMPUTE = ("none", "full")
#: the engine profile micro-batches are priced with (hwmodels/data/engines.yaml: logits over every token)
TRAINING_ENGINE = "megatron"
BACKWARD_FACTOR = {"gemm": 2.0, "attention": 2.5, "elementwise": 2.0, "collective": 1.0}
# Adam, mixed precision: read fp32 grad, master weight, m, v (16 B); write master, m, v (12 B) and the
# 16-bit weight (2 B). [U] counted from the update rule (Megatron's fused Adam reads/writes these once).
OPTIMIZER_BYTES_PER_PARAM = 30.0
# Resident training state per parameter: 16-bit weight (2) + fp32 gradient (4) + fp32 master weight and
# two Adam moments (12). [S] ZeRO paper (Rajbhandari et al. 2020), Sec. 3.1: 16 B with 16-bit grads; fp32 grads add 2.
STATE_BYTES_PER_PARAM = 18.0
OPTIMIZER_STATE_BYTES_PER_PARAM = 12.0  # the part a distributed optimizer shards over DP


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training job: ``model`` on ``placement`` (or on ``cluster`` with ``plan`` and a placement
    ``strategy``). ``global_batch`` sequences of ``seq_len`` tokens per step (``seq_len`` defaults
    to the model's context length), ``micro_batch`` sequences per micro-batch."""

    model: str | ModelSpec
    plan: ParallelPlan
    global_batch: int = 512
    micro_batch: int = 1
    seq_len: int | None = None
    recompute: str = "full"
    grad_bytes: float = 4.0
    overlap_grad_reduce: bool = False
    distributed_optimizer: bool = False
    memory_utilization: float = 0.95  # [U] share of device memory usable: CUDA context and allocator slack take the rest

    def __post_init__(self) -> None:
        for k in ("global_batch", "micro_batch"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{k}` must be a positive integer, got {v!r}")
        if self.seq_len is not None and (isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int)
                                         or self.seq_len < 1):
            raise ConfigError(f"`seq_len` must be a positive integer, got {self.seq_len!r}")
        if self.recompute not in RECOMPUTE:
            raise ConfigError(f"`recompute` must be one of {', '.join(RECOMPUTE)}, got {self.recompute!r}")
        if not (isinstance(self.grad_bytes, (int, float)) and self.grad_bytes in (2, 4, 2.0, 4.0)):
            raise ConfigError(f"`grad_bytes` must be 2 (16-bit) or 4 (fp32), got {self.grad_bytes!r}")
        for k in ("overlap_grad_reduce", "distributed_optimizer"):
            if not isinstance(getattr(self, k), bool):
                raise ConfigError(f"`{k}` must be true or false, got {getattr(self, k)!r}")
        if self.global_batch % (self.plan.dp * self.micro_batch):
            raise ConfigError(f"global_batch ({self.global_batch}) must be a multiple of dp x micro_batch = "
                              f"{self.plan.dp} x {self.micro_batch}")


@dataclass(frozen=True)
class StageCost:
    """Seconds per micro-batch on one stage and its resident memory per device (bytes)."""

    layers: int
    forward_s: float
    backward_s: float          # includes the recomputed forward when recompute='full'
    send_s: float              # activations (or their gradient) to the next stage; 0 on the last
    grad_sync_s: float         # gradient all-reduce (or reduce-scatter) over the stage's DP group
    optimizer_s: float
    weight_gather_s: float     # distributed optimizer: all-gather of the updated weights
    params_per_device: float
    memory_bytes: float
    breakdown: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    step_s: float
    samples_per_s: float
    tokens_per_s: float
    tflops_per_gpu: float
    model_tflops_per_gpu: float
    pipeline_s: float
    bubble_fraction: float
    num_devices: int
    micro_batches: int
    stages: tuple[StageCost, ...]
    placement: dict

    def to_dict(self) -> dict:
        return {"step_s": self.step_s, "samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s,
                "tflops_per_gpu": self.tflops_per_gpu, "model_tflops_per_gpu": self.model_tflops_per_gpu,
                "pipeline_s": self.pipeline_s, "bubble_fraction": self.bubble_fraction,
                "num_devices": self.num_devices, "micro_batches": self.micro_batches,
                "placement": self.placement,
                "stages": [{"stage": i, "layers": s.layers, "forward_s": s.forward_s, "backward_s": s.backward_s,
                            "send_s": s.send_s, "grad_sync_s": s.grad_sync_s, "optimizer_s": s.optimizer_s,
                            "weight_gather_s": s.weight_gather_s,
                            "memory_gib": s.memory_bytes / 2**30, "breakdown_s": s.breakdown}
                           for i, s in enumerate(self.stages)]}


def megatron_flops_per_step(model: ModelSpec, batch: int, seq: int, recompute: bool) -> float:
    """Megatron-LM's FLOPs count of one step (Narayanan et al. 2021, Appendix, eq. 3)."""
    h, L, V = model.hidden_size, model.num_layers, model.vocab_size
    c = 4.0 if recompute else 3.0
    return 24.0 * c * batch * seq * L * h * h * (1.0 + seq / (6.0 * h) + V / (16.0 * L * h))


_OP_CLASS = {"attn_prefill": "attention"}
_ONCE = ("embedding", "final_norm", "lm_head", "sampling", "loss")


def _op_class(name: str) -> str:
    if name in _OP_CLASS:
        return _OP_CLASS[name]
    if name.startswith("allreduce"):
        return "collective"
    if name in ("mlp_act", "norms", "residual_adds", "rope", "embedding", "final_norm", "sampling"):
        return "elementwise"
    return "gemm"


class _StageModel:
    """Per-micro-batch forward cost of one layer and of the once-per-model parts on a device kind."""

    def __init__(self, model: ModelSpec, device, tp: int, ep: int, micro_batch: int, seq: int, tp_topology):
        dep = make_deployment(model, device, tp=tp, ep=ep, engine=TRAINING_ENGINE)
        lens = np.full(micro_batch, seq, dtype=np.int64)
        cost = dep.cost(lens, np.zeros(micro_batch, np.int64), np.zeros(0, np.int64))
        L = model.num_layers
        self.per_layer: dict[str, float] = {}
        for name, t in cost.breakdown.items():
            if name in _ONCE or name == "engine_overhead":
                continue
            cls = _op_class(name)
            if cls == "collective" and tp_topology is not None and tp_topology.nodes > 1:
                # a TP group across servers: price its all-reduces on the network model instead
                msg = micro_batch * seq * model.hidden_size * 2.0
                t = 2 * L * collective_seconds("all_reduce", msg, tp_topology)
            self.per_layer[cls] = self.per_layer.get(cls, 0.0) + t / L
        self.embedding_s = cost.breakdown.get("embedding", 0.0)
        # the training engine's LM head runs over every token (the loss needs all logits), then the loss
        self.head_s = cost.breakdown.get("lm_head", 0.0) + cost.breakdown.get("final_norm", 0.0)
        self.loss_s = cost.breakdown.get("loss", 0.0)

    def forward(self, layers: int, first: bool, last: bool) -> dict[str, float]:
        out = {cls: t * layers for cls, t in self.per_layer.items()}
        if first:
            out["elementwise"] = out.get("elementwise", 0.0) + self.embedding_s
        if last:
            out["gemm"] = out.get("gemm", 0.0) + self.head_s
            out["elementwise"] = out.get("elementwise", 0.0) + self.loss_s
        return out


def _one_f_one_b(f: np.ndarray, b: np.ndarray, send: np.ndarray, m: int) -> tuple[np.ndarray, float]:
    """End time of every stage's last backward under 1F1B, and the time the first stage ends.

    ``f[s]``/``b[s]``: seconds of a forward/backward of one micro-batch on stage ``s``; ``send[s]``:
    seconds to move activations (forward) or their gradients (backward) between ``s`` and ``s+1``."""
    p = f.size
    fwd_end = np.zeros((p, m))
    bwd_end = np.zeros((p, m))
    free = np.zeros(p)
    # each stage's op sequence
    seqs = []
    for s in range(p):
        warm = min(p - s - 1, m)
        ops = [("F", i) for i in range(warm)]
        nf, nb = warm, 0
        while nb < m:
            if nf < m:
                ops.append(("F", nf))
                nf += 1
            ops.append(("B", nb))
            nb += 1
        seqs.append(ops)
    pos = [0] * p
    done = 0
    total = sum(len(x) for x in seqs)
    # advance any stage whose next op's dependency is met; 1F1B never deadlocks
    while done < total:
        progressed = False
        for s in range(p):
            while pos[s] < len(seqs[s]):
                kind, i = seqs[s][pos[s]]
                if kind == "F":
                    if s > 0 and fwd_end[s - 1, i] == 0.0:
                        break
                    ready = fwd_end[s - 1, i] + send[s - 1] if s > 0 else 0.0
                    start = max(free[s], ready)
                    fwd_end[s, i] = start + f[s]
                    free[s] = fwd_end[s, i]
                else:
                    if s < p - 1 and bwd_end[s + 1, i] == 0.0:
                        break
                    ready = bwd_end[s + 1, i] + send[s] if s < p - 1 else fwd_end[s, i]
                    start = max(free[s], ready)
                    bwd_end[s, i] = start + b[s]
                    free[s] = bwd_end[s, i]
                pos[s] += 1
                done += 1
                progressed = True
        if not progressed:  # pragma: no cover - a broken schedule, not a user error
            raise RuntimeError("1F1B schedule made no progress")
    return bwd_end[:, m - 1], float(bwd_end[0, m - 1])


def simulate_training(cfg: TrainConfig, placement: Placement) -> TrainResult:
    """Simulate one training step of ``cfg`` on ``placement`` (see the module docstring)."""
    model = get_model(cfg.model) if isinstance(cfg.model, str) else cfg.model
    plan = placement.plan
    if plan != cfg.plan:
        raise ConfigError("the placement was made for another plan than the training config's")
    plan.check(model, placement.devices.size)
    seq = cfg.seq_len or int(model.max_context or 2048)
    m = cfg.global_batch // (plan.dp * cfg.micro_batch)
    layers = plan.stage_layers(model)
    recompute = cfg.recompute == "full"
    models: dict[tuple, _StageModel] = {}
    stages = []
    br = model.param_breakdown()
    layer_params = (sum(br.values()) - br["embedding"] - br["lm_head"]) / model.num_layers
    tied = bool(model.tied_embeddings)
    for s in range(plan.pp):
        device = placement.stage_device_spec(s)
        tp_topo = placement.group_topology(placement.tp_group(0, s), placement.stage_devices(s))
        key = (device.name, tp_topo)
        if key not in models:
            models[key] = _StageModel(model, device, plan.tp, plan.ep, cfg.micro_batch, seq, tp_topo)
        sm = models[key]
        first, last = s == 0, s == plan.pp - 1
        fwd = sm.forward(layers[s], first, last)
        bwd = {c: t * BACKWARD_FACTOR[c] for c, t in fwd.items()}
        f_s = sum(fwd.values())
        b_s = sum(bwd.values()) + (f_s if recompute else 0.0)
        # parameters held by one device of this stage (embedding on the first stage, LM head on the last)
        params = layer_params * layers[s] / plan.tp
        if first:
            params += br["embedding"] / plan.tp
        if last and (br["lm_head"] > 0 or not tied):
            params += (br["lm_head"] or br["embedding"]) / plan.tp
        elif last and plan.pp > 1:
            params += br["embedding"] / plan.tp  # tied embedding kept as a copy on the last stage
        send = 0.0
        if s < plan.pp - 1:
            link = placement.stage_link(s)
            send = collective_seconds("send_recv", cfg.micro_batch * seq * model.hidden_size * 2.0 / plan.tp, link)
        dp_topo = placement.group_topology(placement.dp_group(s, 0), placement.stage_devices(s))
        shard = plan.dp if cfg.distributed_optimizer else 1
        gather = 0.0
        if plan.dp == 1:
            grad_sync = 0.0
        elif cfg.distributed_optimizer:
            # reduce-scatter the gradients, then all-gather the updated 16-bit weights (after the update)
            grad_sync = collective_seconds("reduce_scatter", params * cfg.grad_bytes, dp_topo)
            gather = collective_seconds("all_gather", params * 2.0, dp_topo)
        else:
            grad_sync = collective_seconds("all_reduce", params * cfg.grad_bytes, dp_topo)
        optim = params / shard * OPTIMIZER_BYTES_PER_PARAM / device.memory_bandwidth_bytes_per_s
        in_flight = min(plan.pp - s, m)
        # activation bytes of one layer for one micro-batch, tensor parallel without sequence
        # parallelism: s b h (10 + 24/t + 5 a s / (h t)) (Korthikanti et al. 2022, Sec. 4.2.1)
        sbh = cfg.micro_batch * seq * model.hidden_size
        per_layer = sbh * (10 + 24 / plan.tp + 5 * model.num_heads * seq / (model.hidden_size * plan.tp))
        if recompute:
            # only each layer's 16-bit input is kept; the layer being recomputed holds its full set
            activations = in_flight * layers[s] * 2.0 * sbh + per_layer
        else:
            activations = in_flight * layers[s] * per_layer
        state = params * (STATE_BYTES_PER_PARAM - OPTIMIZER_STATE_BYTES_PER_PARAM * (1 - 1 / shard))
        memory = state + activations
        cap = device.memory_capacity_bytes * cfg.memory_utilization
        if memory > cap:
            raise OutOfMemoryError(
                f"stage {s} needs {memory / 2**30:.1f} GiB per device ({state / 2**30:.1f} "
                f"GiB weights, gradients and Adam state + {activations / 2**30:.1f} GiB activations) but "
                f"{device.name} offers {cap / 2**30:.1f} GiB; raise tp or pp, lower micro_batch, or "
                f"recompute activations", required_bytes=memory, available_bytes=cap)
        stages.append(StageCost(layers[s], f_s, b_s, send, grad_sync, optim, gather, params, memory,
                                {**{f"forward_{k}": v for k, v in fwd.items()},
                                 **{f"backward_{k}": v for k, v in bwd.items()}}))
    f = np.array([st.forward_s for st in stages])
    b = np.array([st.backward_s for st in stages])
    sends = np.array([st.send_s for st in stages])
    last_bwd, pipeline = _one_f_one_b(f, b, sends, m)
    ends = []
    for s, st in enumerate(stages):
        sync = st.grad_sync_s
        if cfg.overlap_grad_reduce:
            # buckets reduce under the backward of the last micro-batch; what does not fit is exposed
            sync = max(0.0, sync - (st.backward_s - (st.forward_s if recompute else 0.0)))
        ends.append(last_bwd[s] + sync + st.optimizer_s + st.weight_gather_s)
    step = float(max(ends))
    ideal = m * float(np.max(f + b))
    n_dev = plan.num_devices
    flops = megatron_flops_per_step(model, cfg.global_batch, seq, recompute)
    model_flops = megatron_flops_per_step(model, cfg.global_batch, seq, False)
    return TrainResult(
        step_s=step, samples_per_s=cfg.global_batch / step, tokens_per_s=cfg.global_batch * seq / step,
        tflops_per_gpu=flops / step / n_dev / 1e12, model_tflops_per_gpu=model_flops / step / n_dev / 1e12,
        pipeline_s=pipeline, bubble_fraction=max(0.0, 1.0 - ideal / pipeline), num_devices=n_dev,
        micro_batches=m, stages=tuple(stages), placement=placement.describe())


def train(model: str | ModelSpec, cluster, plan: ParallelPlan, *, placement: str = "nic-aware",
          **kwargs) -> TrainResult:
    """Place ``plan`` on ``cluster`` with ``placement`` and simulate one step (kwargs: TrainConfig).

    The plan's ``layer_split`` is used as given (even when None); search/partition.py sizes one to
    each stage's speed."""
    cfg = TrainConfig(model=model, plan=plan, **kwargs)
    return simulate_training(cfg, place(plan, cluster, placement))
