"""Design-space search speed and the APEX-style plan study (prints figures; no pass/fail).

1. Search benchmark: Llama-3.1-70B on 8, 16 or 32 H100s (up to 4 DGX nodes), every DP/PP/TP split
   (tp 1-8, pp 1-4) x 5 weight formats x 4 batching settings (max_num_seqs 128/256 x token budget
   2048/8192), a 1,000-request Azure conversation trace, goodput objective under p99 TTFT 1 s /
   TPOT 0.1 s (goodput to 10 %), local executor. Prints wall time, candidates/s, how many reached the event simulator
   and the speedup over simulating every feasible candidate (its cost estimated from a sample of
   candidates the screen skipped, simulated here).
2. APEX-style study (APEX, arXiv 2411.17651): Llama-3.1-70B on 8 H100s, bf16, every TP x PP x DP
   plan: the best plan's speedup over the TP = 8 heuristic (mean end-to-end latency and goodput),
   and the energy per token the energy-optimal plan saves against the latency-optimal one.

    python benchmarks/bench_search.py [--requests 1000] [--sample 6] [--workers N] [--skip-apex]
                                      [--skip-search] [--apex-rates 4,10]
"""
from __future__ import annotations

import argparse
import os
import random
import time

from llmsim.search import SearchSpace, SLOTarget, WorkloadSpec, run_search
from llmsim.search.evaluate import Context, evaluate

FORMATS = ("bf16", "fp8", "w8a8", "w4a16", "w4a8")


def bench_search(requests: int, sample: int, workers: int | None) -> None:
    space = SearchSpace(model="llama-3.1-70b", devices=("h100",), num_devices=(8, 16, 32), tp=(1, 2, 4, 8),
                        pp=(1, 2, 4), quant=FORMATS, scheduler=("sarathi",), max_num_seqs=(128, 256),
                        max_num_batched_tokens=(2048, 8192))
    wl = WorkloadSpec(name="azure-conv", num_requests=requests)
    slo = SLOTarget(ttft_s=1.0, tpot_s=0.1)
    t0 = time.perf_counter()
    res = run_search(space, workload=wl, slo=slo, objective="goodput", workers=workers, goodput_tol=0.1)
    wall = time.perf_counter() - t0
    df = res.frame
    feasible = int(df["feasible"].sum())
    print(f"search: {res.space_size} candidates ({res.candidates_evaluated} distinct, {feasible} fit in memory), "
          f"{res.simulated} simulated ({res.simulations} runs of {requests} requests)")
    print(f"  screen (feasibility + analytic estimates of every candidate) {res.extras['screen_s']:.1f} s")
    print(f"  wall {wall:.1f} s on {workers or os.cpu_count()} workers, {res.space_size / wall:.1f} candidates/s")
    best = res.best
    print(f"  best: {best['label']}  goodput {best['goodput_rps']:.2f} req/s, ${best['usd_per_mtok']:.3f}/Mtok, "
          f"{best['energy_per_token_j']:.3f} J/token")
    # brute force cost: simulate a sample of the candidates the screen skipped
    skipped = df[df["feasible"] & ~df["simulated"]]
    ctx = Context(model=space.model, workload=wl, slo=slo, goodput_tol=0.1)
    picks = random.Random(0).sample(range(len(skipped)), min(sample, len(skipped)))
    cols = ("device", "tp", "pp", "dp", "quant", "kv_dtype", "ep", "scheduler", "max_num_seqs",
            "max_num_batched_tokens")
    from llmsim.search.space import Candidate

    t1 = time.perf_counter()
    for k in picks:
        r = skipped.iloc[k]
        cand = Candidate(*(r[c].item() if hasattr(r[c], "item") else r[c] for c in cols))
        evaluate(cand, ctx, r["est_goodput_rps"])
    per = (time.perf_counter() - t1) / max(1, len(picks))
    brute = per * feasible / (workers or os.cpu_count() or 1)
    print(f"  one skipped candidate simulates in {per:.2f} s (sample of {len(picks)}); simulating all {feasible} "
          f"feasible ones would take ~{brute:.0f} s on the same workers: speedup {brute / wall:.1f}x")


def apex_study(requests: int, workers: int | None, rate: float) -> None:
    space = SearchSpace(model="llama-3.1-70b", devices=("h100",), num_devices=(8,), tp=(1, 2, 4, 8),
                        pp=(1, 2, 4, 8), quant=("bf16",))
    wl = WorkloadSpec(name="azure-conv", num_requests=requests, rate=rate)
    kw = dict(workload=wl, workers=workers, use_screen=False)
    lat = run_search(space, objective="latency", **kw)
    en = run_search(space, objective="energy", **kw)
    df = lat.frame.set_index("label")
    heur = df.loc[[x for x in df.index if " tp8 pp1 dp1 " in x][0]]
    b = lat.best
    print(f"APEX-style study: llama-3.1-70b on 8x H100, bf16, azure-conv {requests} requests at {rate:g} req/s "
          f"(no lmsys trace ships in workloads/data), {lat.simulated} plans simulated")
    print(f"  latency-optimal: {b['label']}  mean e2e {b['e2e_mean_s']:.2f} s vs TP=8 heuristic "
          f"{heur['e2e_mean_s']:.2f} s: speedup {heur['e2e_mean_s'] / b['e2e_mean_s']:.2f}x")
    e = en.best
    print(f"  energy-optimal: {e['label']}  {e['energy_per_token_j']:.3f} J/token vs latency-optimal "
          f"{b['energy_per_token_j']:.3f} J/token: saving {100 * (1 - e['energy_per_token_j'] / b['energy_per_token_j']):.1f}%")
    slo = SLOTarget(ttft_s=1.0, tpot_s=0.1)
    gp = run_search(space, objective="goodput", slo=slo, **kw)
    g = gp.best
    gdf = gp.frame.set_index("label")
    hg = gdf.loc[[x for x in gdf.index if " tp8 pp1 dp1 " in x][0]]["goodput_rps"]
    print(f"  goodput-optimal (p99 TTFT 1 s, TPOT 0.1 s): {g['label']}  {g['goodput_rps']:.2f} req/s vs TP=8 "
          f"{hg:.2f} req/s: {g['goodput_rps'] / hg:.2f}x; search {lat.wall_s + en.wall_s + gp.wall_s:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--sample", type=int, default=6)
    p.add_argument("--workers", type=int)
    p.add_argument("--skip-apex", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--apex-rates", default="4,10", help="request rates of the APEX-style study (req/s)")
    a = p.parse_args()
    if not a.skip_search:
        bench_search(a.requests, a.sample, a.workers)
    if not a.skip_apex:
        for rate in a.apex_rates.split(","):
            apex_study(a.requests, a.workers, float(rate))


if __name__ == "__main__":
    main()
