"""Uneven pipeline layer splits sized to each stage's speed (Holmes' self-adapting partition).

Stages differ in speed when their devices differ or when their data-parallel groups sync gradients
over different NICs (Holmes, arXiv 2312.03549, Sec. 3.4). ``best_layer_split`` searches the splits
by local moves of one layer between neighbouring stages, starting from the even split, keeping a
move only when the simulated step gets strictly faster, so the result is never slower than even.
:func:`train_self_adapting` and :func:`simulate_config` (a `simulate train` config) apply it to a
nic-aware placement of a pipeline that leaves its split open.
"""
from __future__ import annotations

from dataclasses import replace

from llmsim.hwmodels.cluster import get_cluster
from llmsim.hwmodels.plans import ParallelPlan, Placement, place
from llmsim.sim.training import TrainConfig, TrainResult, simulate_training, train
from llmsim.sim.training_config import TrainRunConfig
from llmsim.workloads.errors import ConfigError, LLMSimError
from llmsim.workloads.models import ModelSpec, get_model


def best_layer_split(cfg, placement: Placement, *, max_evaluations: int = 200) -> ParallelPlan:
    """The plan of ``cfg`` with the layer split that minimises the simulated step time."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be a llmsim.sim.training.TrainConfig")
    model = get_model(cfg.model) if isinstance(cfg.model, str) else cfg.model
    plan = cfg.plan
    if plan.pp == 1:
        return plan
    cache: dict[tuple[int, ...], float] = {}

    def step(split: tuple[int, ...]) -> float:
        if split not in cache:
            p = replace(plan, layer_split=split)
            pl = Placement(placement.cluster, p, placement.devices, placement.strategy, placement.transport_policy)
            try:
                cache[split] = simulate_training(replace(cfg, plan=p), pl).step_s
            except LLMSimError:  # e.g. a stage that no longer fits in memory
                cache[split] = float("inf")
        return cache[split]

    best = plan.stage_layers(model)
    best_t = step(best)
    while len(cache) < max_evaluations:
        moves = []
        for s in range(plan.pp - 1):
            for d in (-1, 1):
                cand = list(best)
                cand[s] += d
                cand[s + 1] -= d
                if min(cand) >= 1:
                    moves.append(tuple(cand))
        scored = sorted((step(c), c) for c in moves)
        if not scored or scored[0][0] >= best_t:
            break
        best_t, best = scored[0]
    return replace(plan, layer_split=tuple(best))


def train_self_adapting(model: str | ModelSpec, cluster, plan: ParallelPlan, *, placement: str = "nic-aware",
                        **kwargs) -> TrainResult:
    """Like :func:`llmsim.sim.training.train`, but a nic-aware placement of a pipeline without a
    ``layer_split`` gets the split :func:`best_layer_split` picks; naive keeps the even one."""
    if placement == "nic-aware" and plan.pp > 1 and plan.layer_split is None:
        cfg = TrainConfig(model=model, plan=plan, **kwargs)
        plan = best_layer_split(cfg, place(plan, cluster, placement))
    return train(model, cluster, plan, placement=placement, **kwargs)


def simulate_config(rc: TrainRunConfig, placement: str) -> TrainResult:
    """The TrainResult of ``rc`` under ``placement`` ('nic-aware' or 'naive'); ``layer_split: auto``
    is sized by :func:`train_self_adapting`."""
    cluster = get_cluster(rc.cluster, num_nodes=rc.num_nodes)
    dp = rc.dp if rc.dp is not None else cluster.num_devices // (rc.tp * rc.pp)
    if dp < 1:
        raise ConfigError(f"cluster {cluster.name} has {cluster.num_devices} devices, fewer than tp x pp = "
                          f"{rc.tp * rc.pp}")
    split = None if rc.layer_split in ("auto", None) else tuple(rc.layer_split)
    plan = ParallelPlan(tp=rc.tp, pp=rc.pp, dp=dp, ep=rc.ep, layer_split=split)
    plan.check(get_model(rc.model))
    return train_self_adapting(rc.model, cluster, plan, placement=placement, global_batch=rc.global_batch,
                               micro_batch=rc.micro_batch, seq_len=rc.seq_len, recompute=rc.recompute,
                               grad_bytes=rc.grad_bytes, overlap_grad_reduce=rc.overlap_grad_reduce,
                               distributed_optimizer=rc.distributed_optimizer)
