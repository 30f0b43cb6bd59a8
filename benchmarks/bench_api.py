"""Scheduler-facing API speed: per-call cost of predict_iteration, and fork against a re-run.

    .venv/bin/python benchmarks/bench_api.py [--requests N]

predict_iteration on Llama-3.1-8B / H100 (vllm-v1 profile), a mixed batch (one 512-token prefill
chunk beside 32 decodes at 1-2k context) and a decode-only batch of 128, after warm-up (numba
compiled, first calls discarded); median of 5 repeats of 2,000 calls. Target: <= 20 us per call.

Fork: the Azure code trace (N requests at 8 requests/s, two replicas) advanced to half its
arrivals; one ``fork()`` plus running the fork to the end, against re-running the whole scenario
from t = 0 to the same end. Both futures are checked equal.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import llmsim  # noqa: E402


def per_call_us(fn, calls: int = 2000, repeats: int = 5) -> float:
    for _ in range(200):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests of the fork benchmark (default 400)")
    args = ap.parse_args()
    dep = llmsim.deployment("llama-3.1-8b", "h100")
    rng = np.random.default_rng(0)
    mixed = dict(prefill_tokens=[512], prefill_cached=[0], decode_context=rng.integers(1000, 2000, 32).tolist())
    decode = dict(decode_context=rng.integers(1000, 2000, 128))
    mixed_batch = llmsim.IterationBatch(**mixed)
    print("predict_iteration, Llama-3.1-8B on H100 (us per call, median of 5 x 2000, after warm-up)")
    rows = [("mixed, lists, breakdown", lambda: llmsim.predict_iteration(dep, mixed_batch)),
            ("mixed, lists, no breakdown", lambda: llmsim.predict_iteration(dep, mixed_batch, breakdown=False)),
            ("decode 128, array, breakdown", lambda: llmsim.predict_iteration(dep, **decode)),
            ("decode 128, array, no breakdown", lambda: llmsim.predict_iteration(dep, **decode, breakdown=False)),
            ("Deployment.iteration (the floor)", lambda: dep.iteration(np.array([512]), np.array([0]),
                                                                         np.array(mixed["decode_context"])))]
    for label, fn in rows:
        us = per_call_us(fn)
        print(f"  {label:34s} {us:7.1f} us   target <= 20 us: {'met' if us <= 20 else 'MISSED'}")

    sc = llmsim.Scenario(model="llama-3.1-8b", device="h100", tp=1, dp=2, workload="azure-code",
                         num_requests=args.requests, rate=8.0)
    built = llmsim.build(sc)
    half = float(built.trace.arrival_s[len(built.trace) // 2])
    sim = llmsim.Simulation(built)
    sim.advance(half)
    t0 = time.perf_counter()
    fork = sim.fork()
    t_fork = time.perf_counter() - t0
    t0 = time.perf_counter()
    future = fork.run()
    t_rest = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = llmsim.simulate(built)
    t_rerun = time.perf_counter() - t0
    assert future.to_dict() == again.to_dict(), "the fork's future differs from a re-run"
    print(f"fork vs re-run: azure-code, {args.requests} requests at 8/s on 2 x H100, forked at t = {half:.1f} s "
          f"({sim.state().events} events in the past)")
    print(f"  fork()                     {t_fork * 1e3:8.2f} ms")
    print(f"  fork() + run the rest      {(t_fork + t_rest) * 1e3:8.2f} ms")
    print(f"  re-run from t = 0          {t_rerun * 1e3:8.2f} ms   (fork is {t_rerun / t_fork:.0f}x cheaper than "
          f"a re-run; fork + rest {t_rerun / (t_fork + t_rest):.1f}x)")


if __name__ == "__main__":
    main()
