"""Simulator speed: prints wall seconds, simulated requests per wall-second, simulated/real time.

    .venv/bin/python benchmarks/bench_sim.py [--profile] [--million]

Groups (like SimPy's benchmarks): the one-hour Azure conversation trace (19,366 requests) on one and
four replicas of a ToyCost calibrated to resemble Llama-2-70B TP8 on H100; and one million synthetic
requests in streaming mode (flat memory). Targets: <= 5 s, <= 3 s, <= 120 s on one core.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.sim.cluster import simulate  # noqa: E402
from llmsim.sim.costs import ToyCost  # noqa: E402
from llmsim.sim.replica import ReplicaConfig  # noqa: E402
from llmsim.sim.schedulers import SchedulerConfig  # noqa: E402
from llmsim.workloads.traces import LognormalLength, PoissonArrivals, load_workload, synthesize  # noqa: E402

# Llama-2-70B TP8 on 8 x H100-80GB: ~430 GB left after 140 GB of weights, 320 KB of KV per token.
KV_TOKENS = 1_300_000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(label, trace, replicas, router, policy="vllm", keep=True, budget=8192):
    cfg = ReplicaConfig(kv_capacity_tokens=KV_TOKENS, scheduler=SchedulerConfig(policy=policy,
                                                                                max_num_batched_tokens=budget))
    t0 = time.perf_counter()
    res = simulate(trace, cfg, ToyCost.llama2_70b_tp8_h100(), num_replicas=replicas, router=router,
                   keep_requests=keep)
    wall = time.perf_counter() - t0
    s = res.summary
    print(f"{label:<44} wall {wall:6.2f} s | {len(trace) / wall:9.0f} req/wall-s | sim/real "
          f"{s['makespan_s'] / wall:7.0f}x | events {res.wall_events:8d} iterations {s['iterations']:9d} | "
          f"TTFT {s['ttft_mean_s']:.3f} s TPOT {s['tpot_mean_s'] * 1e3:.1f} ms | peak RSS {rss_mib():.0f} MiB")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true", help="cProfile the one-replica run")
    ap.add_argument("--million", action="store_true", help="also run one million synthetic requests")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    conv = load_workload("azure-conv")
    print(f"azure-conv: {len(conv)} requests over {conv.duration_s:.0f} s; ToyCost "
          f"{ToyCost.llama2_70b_tp8_h100()}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run("azure-conv, 1 replica (profiled)", conv, 1, "round-robin")
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    run("azure-conv, 1 replica, vllm", conv, 1, "round-robin")
    run("azure-conv, 1 replica, sarathi (budget 512)", conv, 1, "round-robin", policy="sarathi", budget=512)
    run("azure-conv, 4 replicas, vllm, round-robin", conv, 4, "round-robin")
    run("azure-conv, 4 replicas, vllm, least-outstanding", conv, 4, "least-outstanding")
    run("azure-conv, 4 replicas, vllm, least-kv", conv, 4, "least-kv")
    run("azure-conv, 4 replicas, sarathi, power-of-two", conv, 4, "power-of-two", policy="sarathi", budget=512)
    if args.million:
        for n in (100_000, 1_000_000):
            trace = synthesize(n, arrivals=PoissonArrivals(rate_per_s=20.0),
                               prompt=LognormalLength(median=800, sigma=1.0, high=8000),
                               output=LognormalLength(median=150, sigma=1.0, high=2000), seed=0)
            run(f"synthetic {n:,}, 4 replicas, streaming metrics", trace, 4, "least-outstanding", keep=False)


if __name__ == "__main__":
    main()
