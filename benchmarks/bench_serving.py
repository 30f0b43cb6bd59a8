"""Serving-simulator speed with the real cost model: wall seconds, simulated requests per wall-second,
simulated time / wall time, peak memory.

    .venv/bin/python benchmarks/bench_serving.py [--startup] [--scenarios N] [--million] [--ten-million]
                                                 [--requests N] [--arrays] [--skip-conv] [--profile PROFILE.json]

Groups: the one-hour Azure conversation trace (19,366 requests) served by Llama-2-70B on one DGX-H100
(8 x H100, TP8) and on four of them (4 replicas of TP8 behind a least-outstanding router), both with
``llmsim.hwmodels.deployment.Deployment`` under the default vLLM engine profile (vllm-v1) and the KV capacity it computes.
``--startup``: ``simulate run --num-requests 10 --json`` as a whole process after one warm run
(median wall and CPU seconds of 5; target <= 0.3 s wall). ``--scenarios N``: N scenarios one
after another in one process through ``llmsim.api.simulate`` (the first 1,000 requests of the Azure
conversation trace on Llama-3.1-70B, the candidates cycling over plans), scenarios per second after
the first. ``--million``: one million synthetic requests (Poisson 80 req/s, lognormal lengths) on
Llama-3.1-8B, 8 replicas of one H100, streaming metrics, the requests generated lazily (target <= 60 s,
peak RSS < 1 GiB); ``--ten-million`` the same with ten million (bounded memory), ``--requests N`` with
N; ``--arrays`` generates them as whole arrays instead. Peak RSS is the process's: one size per
process to compare. Pinned to one core.
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
from llmsim.workloads.traces import LazyTrace, LognormalLength, PoissonArrivals, load_workload, synthesize  # noqa: E402

TARGETS = {"1x TP8": 5.0, "4x TP8": 3.0, "1M": 60.0, "startup": 0.3}
RSS_TARGET_MIB = 1024.0


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


def startup(repeats: int = 5) -> None:
    """Whole-process wall and CPU seconds of a 10-request ``simulate run`` (caches warm)."""
    import statistics
    import subprocess

    exe = Path(sys.executable).parent / "simulate"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "llmsim.cli"]
    cmd += ["run", "--num-requests", "10", "--json"]
    # caches warm, as after a pip install: bytecode may be written even where the caller's
    # environment says not to (PYTHONDONTWRITEBYTECODE), else every start compiles the sources again
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    wall = statistics.median(walls)
    verdict = "PASS" if wall <= TARGETS["startup"] else "MISS"
    print(f"{'start-up: simulate run, 10 requests':<46} wall {wall:7.2f} s {verdict} (target <= "
          f"{TARGETS['startup']:g} s) | CPU {statistics.median(cpus):.2f} s | median of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)


def scenarios(n: int) -> None:
    """Scenarios per second, one after another in this process (the search's use)."""
    from llmsim import api

    plans = [dict(tp=8), dict(tp=4, dp=2), dict(tp=2, dp=4), dict(tp=4)]
    walls = []
    for i in range(n):
        sc = api.Scenario(model="llama-3.1-70b", device="h100", workload="azure-conv", num_requests=1000,
                          **plans[i % len(plans)])
        t0 = time.perf_counter()
        api.simulate(sc)
        walls.append(time.perf_counter() - t0)
    rest = walls[1:] or walls
    print(f"{'scenarios: 1,000 azure-conv reqs, Llama-3.1-70B':<46} first {walls[0]:6.2f} s (start-up "
          f"included) | then {len(rest) / sum(rest):6.2f} scenarios/s ({sum(rest) / len(rest):.3f} s each, "
          f"{len(rest)} scenarios over {len(plans)} plans) | peak RSS {rss_mib():.0f} MiB", flush=True)


def synthetic_8b(n: int, lazy: bool = True) -> None:
    """``n`` synthetic requests on Llama-3.1-8B, 8 replicas of one H100, streaming metrics; ``lazy``:
    the requests generated in pieces as the simulation reaches them (``LazyTrace``: the same bits as
    ``synthesize``), so memory does not grow with ``n``. The peak RSS printed is this process's
    (run one size per process to compare sizes)."""
    dep = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm")
    args = dict(arrivals=PoissonArrivals(rate_per_s=80.0), prompt=LognormalLength(median=800, sigma=1.0, high=8000),
                output=LognormalLength(median=150, sigma=1.0, high=2000), seed=0)
    trace = LazyTrace(n=n, **args) if lazy else synthesize(n, **args)
    target = TARGETS["1M"] if n == 1_000_000 else None
    run(f"synthetic {n:,}, Llama-3.1-8B, 8 x H100, {'lazy' if lazy else 'arrays'}", trace, dep, 8, keep=False,
        target=target)
    rss = rss_mib()
    print(f"{'':<46} peak RSS {rss:.0f} MiB {'PASS' if rss < RSS_TARGET_MIB else 'MISS'} (target < "
          f"{RSS_TARGET_MIB:.0f} MiB)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--million", action="store_true", help="also run one million synthetic requests")
    ap.add_argument("--ten-million", action="store_true", help="also run ten million synthetic requests")
    ap.add_argument("--requests", type=int, default=0, help="also run this many synthetic requests (e.g. 200000)")
    ap.add_argument("--arrays", action="store_true", help="synthetic requests as whole arrays, not generated lazily")
    ap.add_argument("--startup", action="store_true", help="time a 10-request simulate run process")
    ap.add_argument("--scenarios", type=int, default=0, help="scenarios one after another in one process")
    ap.add_argument("--skip-conv", action="store_true", help="skip the conversation-hour groups")
    ap.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    from llmsim.hwmodels import aot

    print(f"kernels: {aot.ensure()}", flush=True)
    profile = None
    if args.profile:
        from llmsim.hwmodels.calibration import load_profile

        profile = load_profile(args.profile)
    if args.startup:
        startup()
    if args.scenarios:
        scenarios(args.scenarios)
    if not args.skip_conv:
        dep = Deployment("llama-2-70b", "h100", tp=8, engine="vllm", profile=profile)
        warm = synthesize(50, arrivals=PoissonArrivals(rate_per_s=5.0), prompt=LognormalLength(median=500, sigma=1.0),
                          output=LognormalLength(median=100, sigma=1.0), seed=1)
        run("warm-up (JIT)", warm, dep, 1)
        conv = load_workload("azure-conv")
        print(f"azure-conv: {len(conv)} requests over {conv.duration_s:.0f} s; Llama-2-70B TP8 on H100, engine "
              f"{dep.engine.name}, KV {dep.kv_capacity_tokens(0.9)} tokens per replica")
        run("azure-conv, 1 replica TP8 (8 x H100)", conv, dep, 1, target=TARGETS["1x TP8"])
        run("azure-conv, 4 replicas TP8 (32 x H100)", conv, dep, 4, target=TARGETS["4x TP8"])
    if args.requests:
        synthetic_8b(args.requests, lazy=not args.arrays)
    if args.million:
        synthetic_8b(1_000_000, lazy=not args.arrays)
    if args.ten_million:
        synthetic_8b(10_000_000, lazy=not args.arrays)


if __name__ == "__main__":
    main()
