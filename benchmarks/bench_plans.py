"""Speed of the cluster-level models: placing plans, resolving groups, one training step, the
layer-split search, and a serving iteration whose plan spans servers.

    python benchmarks/bench_plans.py

Prints wall-clock figures (this machine); nothing here is asserted.
"""
from __future__ import annotations

import time

import numpy as np

from llmsim.hwmodels.cluster import get_cluster
from llmsim.hwmodels.deployment import Deployment, PlanNetwork
from llmsim.hwmodels.plans import ParallelPlan, place
from llmsim.search.partition import best_layer_split
from llmsim.sim.training import TrainConfig, simulate_training


def timeit(fn, repeat: int) -> float:
    fn()  # warm (numba, caches)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    big = get_cluster("dgx-h100", num_nodes=128)  # 1,024 GPUs
    plan = ParallelPlan(tp=8, pp=4, dp=32)
    t = timeit(lambda: place(plan, big, "nic-aware"), 20)
    print(f"place tp8 x pp4 x dp32 on 1,024 H100s           {1e3 * t:8.2f} ms")
    p = place(plan, big, "nic-aware")
    t = timeit(lambda: big.group_topology(p.dp_group(0, 0)), 200)
    print(f"group_topology of a 32-rank DP group             {1e6 * t:8.1f} us")

    holmes = get_cluster("holmes-ib-roce")
    hplan = ParallelPlan(tp=4, pp=2, dp=8)
    cfg = TrainConfig(model="gpt-7.5b", plan=hplan, global_batch=512, micro_batch=4, seq_len=2048)
    hp = place(hplan, holmes, "nic-aware")
    t = timeit(lambda: simulate_training(cfg, place(hplan, holmes, "nic-aware")), 10)
    print(f"one GPT-7.5B training step on 64 A100s           {1e3 * t:8.1f} ms")
    t = timeit(lambda: best_layer_split(cfg, hp), 3)
    print(f"layer-split search (Holmes, pp=2)                {1e3 * t:8.1f} ms")
    cfg8 = TrainConfig(model="gpt-39.1b", plan=ParallelPlan(tp=8, pp=8, dp=1), global_batch=64, micro_batch=1,
                       seq_len=2048)
    p8 = place(cfg8.plan, holmes, "naive")
    t = timeit(lambda: best_layer_split(cfg8, p8), 1)
    print(f"layer-split search (GPT-39.1B, pp=8)             {1e3 * t:8.1f} ms")

    two = get_cluster("dgx-h100", num_nodes=2)
    sp = place(ParallelPlan(tp=16), two, "naive")
    dep = Deployment("llama-3.1-405b", two.device(0), quant="fp8", tp=16,
                     network=PlanNetwork(tp=sp.group_topology(sp.tp_group(0, 0))))
    none = np.zeros(0, np.int64)
    ctx = np.full(64, 2000, np.int64)
    t = timeit(lambda: dep.iteration(none, none, ctx), 2000)
    print(f"iteration query, TP16 across two servers         {1e6 * t:8.2f} us (target <= 20 us)")
    pp = place(ParallelPlan(tp=8, pp=2), two, "naive")
    dep2 = Deployment("llama-3.1-405b", two.device(0), quant="fp8", tp=8, pp=2,
                      network=PlanNetwork(stage_links=(pp.stage_link(0, 0, replica_only=True),)))
    t = timeit(lambda: dep2.iteration(none, none, ctx), 2000)
    print(f"iteration query, TP8 x PP2 over two servers      {1e6 * t:8.2f} us (target <= 20 us)")


if __name__ == "__main__":
    main()
