"""Side by side with splitwise-sim on its own scenario, in one run: wall seconds of both, the ratio,
and our simulated requests per wall-second.

    .venv/bin/python benchmarks/bench_vs_peers.py [--repeats 3] [--peer-repeats 1] [--ours-only]

The scenario: the Azure LLM inference conversation hour (19,366 requests), Llama-2-70B on 4 DGX-H100
(4 replicas of TP8). Ours is the command line, timed as a whole process (start-up included):
``simulate run --model llama-2-70b --device h100 --tp 8 --dp 4 --workload azure-conv --json``, after
one untimed run that warms the on-disk caches. The peer is ``../shared/peers/run-splitwise.sh``
(relative to the repository root; it builds the peer's venv on first use and prints its own wall
seconds, process start-up included, on its last line). Without that folder the script says so and
prints ours alone. Machines here are shared and noisy: both sides are repeated, interleaved, and
the ratio of the medians is printed.

The shared copy of splitwise-sim leaves out its ``traces/`` folder (its .gitignore); when
``traces/azure_conv_1h.csv`` is missing, the script runs the peer from a temporary copy with that
trace written as the peer README describes: the Azure conversation trace
(``../shared/data/traces/AzureLLMInferenceTrace_conv.csv``) in splitwise-sim's format, arrival
seconds from the first request + 1 s, request_type 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
AZURE_CONV = ROOT.parent / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
OURS = ["run", "--model", "llama-2-70b", "--device", "h100", "--tp", "8", "--dp", "4", "--workload", "azure-conv",
        "--json"]
TARGET_RATIO = 10.0


def simulate_exe() -> list[str]:
    exe = Path(sys.executable).parent / "simulate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "llmsim.cli"]


def run_ours() -> tuple[float, dict]:
    """(wall seconds of the whole process, its JSON summary)."""
    t0 = time.perf_counter()
    out = subprocess.run([*simulate_exe(), *OURS], check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    return wall, json.loads(out.stdout)


def _parse_ts(text: str) -> datetime:
    date, _, frac = text.strip().partition(".")
    return datetime.strptime(f"{date}.{(frac + '000000')[:6]}", "%Y-%m-%d %H:%M:%S.%f")


def write_peer_trace(path: Path) -> int:
    """The Azure conversation trace in splitwise-sim's CSV format; returns the number of requests."""
    with AZURE_CONV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    t0 = _parse_ts(rows[0]["TIMESTAMP"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "request_type", "application_id", "arrival_timestamp", "batch_size",
                    "prompt_size", "token_size"])
        for i, r in enumerate(rows):
            arrival = (_parse_ts(r["TIMESTAMP"]) - t0).total_seconds() + 1.0
            w.writerow([i, 2, 0, f"{arrival:.6f}", 1, int(r["ContextTokens"]), int(r["GeneratedTokens"])])
    return len(rows)


def peer_script(tmp: Path) -> Path | None:
    """run-splitwise.sh of a peers folder that holds the conversation trace (a temporary copy with the
    trace added when the shared one lacks it); None when the peer or the trace is absent."""
    script = PEERS / "run-splitwise.sh"
    if not script.is_file():
        return None
    if (PEERS / "splitwise-sim" / "traces" / "azure_conv_1h.csv").is_file():
        return script
    if not AZURE_CONV.is_file():
        return None
    copy = tmp / "peers"
    shutil.copytree(PEERS, copy, ignore=shutil.ignore_patterns("__pycache__", "outputs", "multirun"))
    for p in copy.rglob("*"):  # the shared copy is read-only
        p.chmod(p.stat().st_mode | 0o200)
    n = write_peer_trace(copy / "splitwise-sim" / "traces" / "azure_conv_1h.csv")
    print(f"peer trace: {n} requests written to a temporary copy (the shared copy has no traces/)", flush=True)
    return copy / "run-splitwise.sh"


def run_peer(script: Path) -> tuple[float, float]:
    """(wall seconds of the script as timed here, the peer's own wall seconds from its last line)."""
    t0 = time.perf_counter()
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    last = out.stdout.strip().splitlines()[-1]
    return wall, float(last.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median printed)")
    ap.add_argument("--peer-repeats", type=int, default=1, help="timed runs of the peer (median printed)")
    ap.add_argument("--ours-only", action="store_true", help="skip the peer")
    args = ap.parse_args()
    print(f"scenario: Azure conversation hour, Llama-2-70B on 4 DGX-H100 (4 x TP8); cores {os.cpu_count()}",
          flush=True)
    from llmsim.hwmodels import aot

    print(f"kernels: {aot.ensure()}", flush=True)
    _, summary = run_ours()  # warms the caches
    n = summary["requests"]
    with tempfile.TemporaryDirectory() as tmpd:
        script = None if args.ours_only else peer_script(Path(tmpd))
        if script is None and not args.ours_only:
            print(f"peer: splitwise-sim not found at {PEERS} (or its trace is missing): ours alone", flush=True)
        ours, peer = [], []
        for i in range(max(args.repeats, args.peer_repeats)):
            if i < args.repeats:
                ours.append(run_ours()[0])
                print(f"  ours  run {i + 1}: {ours[-1]:6.2f} s", flush=True)
            if script is not None and i < args.peer_repeats:
                wall, own = run_peer(script)
                peer.append(own)
                print(f"  peer  run {i + 1}: {own:6.2f} s (its own timer; {wall:.2f} s with the copy)", flush=True)
    mine = statistics.median(ours)
    print(f"llmsim (simulate run, whole process): {mine:6.2f} s wall (median of {len(ours)}) | {n / mine:8.0f} "
          f"simulated req/wall-s | {n} requests, makespan {summary['makespan_s']:.0f} s, "
          f"{summary['iterations']} iterations")
    if peer:
        theirs = statistics.median(peer)
        ratio = theirs / mine
        verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
        print(f"splitwise-sim (run-splitwise.sh):     {theirs:6.2f} s wall (median of {len(peer)}) | "
              f"{n / theirs:8.0f} simulated req/wall-s")
        print(f"ratio splitwise-sim / llmsim: {ratio:.1f}x {verdict} (target >= {TARGET_RATIO:g}x)")


if __name__ == "__main__":
    main()
