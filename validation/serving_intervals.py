"""Do the run intervals hold the measured serving figures? LLMServingSim's vLLM 0.19 runs, each
simulated as ``simulate validate --format llmservingsim`` does, with the kernel-time intervals and with
the intervals simulated at both ends of the cost band (``simulated_intervals``, queueing included).

``python -m llmsim.validation.serving_intervals [FOLDER]`` prints, per run and metric (mean TTFT, TPOT,
E2E), the measurement, the estimate and both intervals, and how many measurements each contains.
The Llama-3.1-8B runs fitted the engine's ``sync_s`` (``rows_in_fit``); the Qwen3 runs are held out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmsim.validation import llmservingsim as lss

DEFAULT_FOLDER = Path(__file__).resolve().parent / "data" / "serving" / "llmservingsim_vllm019"
METRICS = ("ttft_mean_s", "tpot_mean_s", "e2e_mean_s")


def interval_report(folder: str | Path = DEFAULT_FOLDER) -> list[dict]:
    """One row per run and metric: measured, estimate, kernel-time and simulated intervals, whether
    each holds the measurement, and whether the run was in the engine fit."""
    from llmsim.sim.runner import run_built

    rows = []
    for path in lss.find_runs(folder):
        run = lss.load_run(path)
        kern = run_built(lss.build_run(run)).summary
        simd = run_built(lss.build_run(run), simulated_intervals=True).summary
        for k in METRICS:
            m = float(run.measured[k])
            a, b = kern[f"{k}_interval"]
            c, d = simd[f"{k}_interval"]
            rows.append({"run": run.name, "metric": k, "measured": m, "predicted": kern[k], "kernel": [a, b],
                         "simulated": [c, d], "in_kernel": a <= m <= b, "in_simulated": c <= m <= d,
                         "in_fit": "Llama-3.1-8B" in run.name})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmsim.validation.serving_intervals", description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER))
    rows = interval_report(ap.parse_args(argv).folder)
    for r in rows:
        print(f"{r['run']:40s} {r['metric']:12s} measured {r['measured']:9.4g} predicted {r['predicted']:9.4g}  "
              f"kernel [{r['kernel'][0]:.4g}, {r['kernel'][1]:.4g}] {'in ' if r['in_kernel'] else 'out'}  "
              f"simulated [{r['simulated'][0]:.4g}, {r['simulated'][1]:.4g}] {'in ' if r['in_simulated'] else 'out'}"
              f"{'  (fitted run)' if r['in_fit'] else ''}")
    held = [r for r in rows if not r["in_fit"]]
    for name, sel in (("all", rows), ("held out", held)):
        print(f"{name}: kernel-time intervals hold {sum(r['in_kernel'] for r in sel)}/{len(sel)}, "
              f"simulated {sum(r['in_simulated'] for r in sel)}/{len(sel)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
