"""Uneven pipeline layer splits sized to each stage's speed (Holmes' self-adapting partition).

Stages differ in speed when their devices differ or when their data-parallel groups sync gradients
over different NICs (Holmes, arXiv 2312.03549, Sec. 3.4). ``best_layer_split`` searches the splits
by local moves of one layer between neighbouring stages, starting from the even split, keeping a
move only when the simulated step gets strictly faster, so the result is never slower than even.
"""
from __future__ import annotations

from dataclasses import replace

from llmsim.hwmodels.plans import ParallelPlan, Placement
from llmsim.workloads.errors import LLMSimError
from llmsim.workloads.models import get_model


def best_layer_split(cfg, placement: Placement, *, max_evaluations: int = 200) -> ParallelPlan:
    """The plan of ``cfg`` with the layer split that minimises the simulated step time."""
    from llmsim.sim.training import TrainConfig, simulate_training

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
