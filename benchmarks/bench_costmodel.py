"""Microseconds per ``Deployment.iteration`` query after warm-up, for a few batch mixes.

    .venv/bin/python benchmarks/bench_costmodel.py [--profile PROFILE.json]

Target: <= 20 us per query (the simulator calls it once per iteration; decode runs use ``decode_run``,
reported per step too).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.hwmodels.deployment import Deployment  # noqa: E402
from llmsim.workloads import jitcache  # noqa: E402

jitcache.compile_all()  # time the compiled query (a process compiles once it has enough work)

TARGET_US = 20.0


def bench(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    args = ap.parse_args()
    profile = None
    if args.profile:
        from llmsim.hwmodels.calibration import load_profile

        profile = load_profile(args.profile)
    rng = np.random.default_rng(0)
    e = np.zeros(0, np.int64)
    mixes = {
        "decode 1 @ 512": (e, e, np.array([512], np.int64)),
        "decode 32 @ ~1K": (e, e, rng.integers(100, 2000, 32).astype(np.int64)),
        "decode 256 @ ~2K": (e, e, rng.integers(100, 4000, 256).astype(np.int64)),
        "prefill 1 x 2048": (np.array([2048], np.int64), np.zeros(1, np.int64), e),
        "chunk 512 + decode 64": (np.array([512], np.int64), np.array([1024], np.int64),
                                  rng.integers(100, 2000, 64).astype(np.int64)),
        "prefill 8 x 512 + decode 128": (np.full(8, 512, np.int64), np.zeros(8, np.int64),
                                         rng.integers(100, 4000, 128).astype(np.int64)),
    }
    for name, model, device, tp in (("Llama-2-70B TP8 H100", "llama-2-70b", "h100", 8),
                                    ("Mixtral-8x7B TP2 A100", "mixtral-8x7b", "a100", 2)):
        dep = Deployment(model, device, tp=tp, engine="vllm", profile=profile)
        print(f"{name}: {len(dep.op_names)} operators")
        for label, (p, o, d) in mixes.items():
            us = bench(lambda: dep.iteration(p, o, d), 2000)
            verdict = "PASS" if us <= TARGET_US else "MISS"
            print(f"  iteration {label:<30} {us:7.2f} us  {verdict} (target <= {TARGET_US:g} us)")
        ctx = rng.integers(100, 2000, 32).astype(np.int64)
        us = bench(lambda: dep.decode_run(ctx, 256), 50) / 256
        print(f"  decode_run 32 seqs, 256 steps      {us:7.2f} us per step")


if __name__ == "__main__":
    main()
