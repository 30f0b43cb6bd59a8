"""Serving-simulator speed with the real cost model: wall seconds, simulated requests per wall-second,
simulated time / wall time, peak memory.

    .venv/bin/python benchmarks/bench_serving.py [--million] [--profile PROFILE.json]

Groups: the one-hour Azure conversation trace (19,366 requests) served by Llama-2-70B on one DGX-H100
(8 x H100, TP8) and on four of them (4 replicas of TP8 behind a least-outstanding router), both with
``llmsim.hwmodels.deployment.Deployment`` under the default vLLM engine profile (vllm-v1) and the KV capacity it computes;
and one million synthetic requests (Poisson, lognormal lengths) on 4 replicas with streaming metrics
(flat memory). Pinned to one core. Targets: <= 5 s, <= 3 s, <= 120 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.hwmodels.deployment import Deployment  # noqa: E402
from llmsim.sim.cluster import simulate  # noqa: E402
from llmsim.sim.replica import ReplicaConfig  # noqa: E402
from llmsim.sim.schedulers import SchedulerConfig  # noqa: E402
from llmsim.workloads.traces import LognormalLength, PoissonArrivals, load_workload, synthesize  # noqa: E402

TARGETS = {"1x TP8": 5.0, "4x TP8": 3.0, "1M": 120.0}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(label, trace, dep, replicas, *, keep=True, router="least-outstanding", target=None):
    rc = ReplicaConfig(kv_capacity_tokens=dep.kv_capacity_tokens(0.9),
                       scheduler=SchedulerConfig(policy="vllm", max_num_seqs=256, max_num_batched_tokens=8192),
                       idle_power_w=dep.device.power.idle_w * dep.num_devices)
    t0 = time.perf_counter()
    res = simulate(trace, rc, dep, num_replicas=replicas, router=router, keep_requests=keep)
    wall = time.perf_counter() - t0
    s = res.summary
    verdict = "" if target is None else (" PASS" if wall <= target else " MISS") + f" (target <= {target:g} s)"
    print(f"{label:<46} wall {wall:7.2f} s{verdict} | {len(trace) / wall:9.0f} req/wall-s | sim/real "
          f"{s['makespan_s'] / wall:7.0f}x | iterations {s['iterations']:9d} events {res.wall_events:8d} | "
          f"TTFT {s['ttft_mean_s']:.3f} s TPOT {s['tpot_mean_s'] * 1e3:.1f} ms | peak RSS {rss_mib():.0f} MiB",
          flush=True)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--million", action="store_true", help="also run one million synthetic requests")
    ap.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    profile = None
    if args.profile:
        from llmsim.hwmodels.calibration import load_profile

        profile = load_profile(args.profile)
    dep = Deployment("llama-2-70b", "h100", tp=8, engine="vllm", profile=profile)
    warm = synthesize(50, arrivals=PoissonArrivals(rate_per_s=5.0), prompt=LognormalLength(median=500, sigma=1.0),
                      output=LognormalLength(median=100, sigma=1.0), seed=1)
    run("warm-up (JIT)", warm, dep, 1)
    conv = load_workload("azure-conv")
    print(f"azure-conv: {len(conv)} requests over {conv.duration_s:.0f} s; Llama-2-70B TP8 on H100, engine "
          f"{dep.engine.name}, KV {dep.kv_capacity_tokens(0.9)} tokens per replica")
    run("azure-conv, 1 replica TP8 (8 x H100)", conv, dep, 1, target=TARGETS["1x TP8"])
    run("azure-conv, 4 replicas TP8 (32 x H100)", conv, dep, 4, target=TARGETS["4x TP8"])
    if args.million:
        for n in (100_000, 1_000_000):
            trace = synthesize(n, arrivals=PoissonArrivals(rate_per_s=20.0),
                               prompt=LognormalLength(median=800, sigma=1.0, high=8000),
                               output=LognormalLength(median=150, sigma=1.0, high=2000), seed=0)
            run(f"synthetic {n:,}, 4 replicas TP8, streaming metrics", trace, dep, 4, keep=False,
                target=TARGETS["1M"] if n == 1_000_000 else None)


if __name__ == "__main__":
    main()
