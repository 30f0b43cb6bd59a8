"""Instructions a simulation executes, counted by valgrind's callgrind: a speed figure that a shared,
noisy machine does not move (repeat runs of one tree agree within ~0.7%; wall time here varies by
+-20% between runs of the same code).

    python benchmarks/bench_instructions.py [--requests 10000] [--scenario synthetic|conv]

Runs the scenario twice under callgrind (``PYTHONHASHSEED=0``): with ``--requests`` requests and with
10, and prints both totals and their difference, the instructions of the simulation beyond start-up
(imports, catalogues, the deployment). ``synthetic`` is the 1M scenario of ``bench_serving.py --million``
at this size (Poisson 80 req/s, lognormal lengths, Llama-3.1-8B on 8 replicas of one H100, vLLM v0
policy); ``conv`` the start of the conversation hour of ``bench_vs_peers.py`` (Llama-2-70B, TP8 x 4,
``simulate run``). To compare two revisions, run it in a worktree of each (docs/speed.md). Needs
``valgrind`` on the PATH (not a Python dependency); says so and exits 2 without it. Slow: callgrind runs
Python about 40x slower (10,000 synthetic requests: ~90 s a run).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_UP_REQUESTS = 10

SYNTHETIC = """
import sys
sys.path.insert(0, {bench!r})
import bench_serving
from llmsim.hwmodels.deployment import Deployment
from llmsim.workloads.traces import LazyTrace, LognormalLength, PoissonArrivals
dep = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm")
trace = LazyTrace(n={n}, arrivals=PoissonArrivals(rate_per_s=80.0),
                  prompt=LognormalLength(median=800, sigma=1.0, high=8000),
                  output=LognormalLength(median=150, sigma=1.0, high=2000), seed=0)
bench_serving.run("callgrind", trace, dep, 8, keep=False)
"""


def command(scenario: str, n: int) -> list[str]:
    if scenario == "synthetic":
        return [sys.executable, "-c", SYNTHETIC.format(bench=str(ROOT / "benchmarks"), n=n)]
    exe = Path(sys.executable).parent / "simulate"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "llmsim.cli"]
    return [*base, "run", "--model", "llama-2-70b", "--device", "h100", "--tp", "8", "--dp", "4",
            "--workload", "azure-conv", "--num-requests", str(n), "--json"]


def instructions(cmd: list[str]) -> int:
    """Instructions (callgrind's Ir) the whole process executed."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", *cmd],
                             capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"the scenario failed under valgrind (exit {out.returncode}):\n{out.stderr[-2000:]}")
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit("valgrind printed no instruction count (is it callgrind 3.x?)")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000, help="requests of the measured run (default 10000)")
    ap.add_argument("--scenario", choices=("synthetic", "conv"), default="synthetic")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not on the PATH: install it (e.g. apt install valgrind) to count instructions; "
              "wall-time benchmarks: bench_serving.py, bench_vs_peers.py", file=sys.stderr)
        raise SystemExit(2)
    if args.requests <= START_UP_REQUESTS:
        print(f"--requests must be > {START_UP_REQUESTS} (the start-up run), got {args.requests}", file=sys.stderr)
        raise SystemExit(2)
    total = instructions(command(args.scenario, args.requests))
    start = instructions(command(args.scenario, START_UP_REQUESTS))
    sim = total - start
    print(f"{args.scenario}, {args.requests:,} requests: {total / 1e9:.3f} G instructions; {START_UP_REQUESTS} requests "
          f"(start-up): {start / 1e9:.3f} G; simulation beyond start-up {sim / 1e9:.3f} G "
          f"({sim / (args.requests - START_UP_REQUESTS) / 1e3:.0f} k a request)", flush=True)


if __name__ == "__main__":
    main()
