"""`simulate search`: rank the deployments of a design space by goodput, throughput, latency, cost or energy.

The space comes from a YAML file and/or flags (each dimension a comma list, or ``free``); every
candidate is checked for memory and screened analytically, and only those that can still win
reach the event simulator. Prints a ranked table with why the runners-up lost (``--json``: one
object); exits 2 with the closest miss and its binding constraint when no candidate qualifies.
"""
from __future__ import annotations

import json
import math
import sys

SPACE_FLAGS = ("model", "devices", "num_devices", "tp", "pp", "ep", "quant", "kv_dtype", "scheduler",
               "max_num_seqs", "max_num_batched_tokens", "decode_devices", "prefill_replicas")


def add_space_flags(p, *, counts: bool = True) -> None:
    """The space's dimensions as flags (comma lists; ``free`` leaves one open)."""
    p.add_argument("space", nargs="?", help="YAML search space (keys: " + ", ".join(SPACE_FLAGS) + ")")
    p.add_argument("--model", help="model name, HF id or config.json path (simulate list models)")
    p.add_argument("--devices", help="device kinds, e.g. h100,a100-80gb,l40s")
    if counts:
        p.add_argument("--num-devices", help="devices per deployment, e.g. 8 or 8,16")
    p.add_argument("--tp", help="tensor-parallel degrees, e.g. 1,2,4,8 or free")
    p.add_argument("--pp", help="pipeline-parallel degrees (default 1)")
    p.add_argument("--ep", help="expert-parallel degrees (default 1)")
    p.add_argument("--quant", help="weight formats (quant_formats.yaml), or free: all the device runs")
    p.add_argument("--kv-dtype", help="KV-cache formats (default auto)")
    p.add_argument("--scheduler", help="schedulers, e.g. vllm,sarathi (default: the engine's)")
    p.add_argument("--max-num-seqs", help="max sequences per batch")
    p.add_argument("--max-num-batched-tokens", help="token budget per iteration (the prefill chunk)")
    if counts:
        p.add_argument("--decode-devices", help="also P/D-disaggregated candidates: prompts on --devices, tokens "
                                                "on these (e.g. a100-80gb); the replicas of --num-devices split")
        p.add_argument("--prefill-replicas", help="prompt replicas of a disaggregated candidate (default: every split)")
    p.add_argument("--workload", help="bundled workload name (default azure-conv)")
    p.add_argument("--trace", help="request trace file instead of a workload")
    p.add_argument("--num-requests", type=int, default=None, help="requests per simulation (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the workload draws (default 0)")
    p.add_argument("--slo-ttft-p99", type=float, help="TTFT target, seconds")
    p.add_argument("--slo-tpot-p99", type=float, help="TPOT target, seconds")
    p.add_argument("--slo-percentile", type=int, default=99, choices=[50, 90, 99],
                   help="the percentile the SLO targets apply to (default 99)")
    p.add_argument("--pessimistic", action="store_true",
                   help="meet the SLOs at the upper end of each latency's 80%% interval (the calibration's "
                        "kernel-time error; queueing amplification not included), not at the estimate")
    p.add_argument("--engine", help="serving-engine profile (simulate engines)")
    p.add_argument("--price-basis", default="on_demand", choices=["on_demand", "amortised"],
                   help="rented per hour, or bought and amortised (hwmodels/data/prices; default on_demand)")
    p.add_argument("--max-quality-loss", type=float, help="drop formats whose expected accuracy loss exceeds this "
                                                          "fraction (workloads/data/quality_loss.yaml)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local process pool (default) or Ray (pip install '.[ray]')")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: a local ray.init())")
    p.add_argument("--workers", type=int, help="local processes (default: all cores)")
    p.add_argument("--store", help="SQLite results store; each evaluated candidate is written as it completes")
    p.add_argument("--resume", action="store_true", help="reuse what --store holds for the same question")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--report", help="self-contained HTML report (plotly.js embedded): Pareto scatter, cost and "
                                    "latency of the best candidates")


def space_of(args, *, counts: bool = True):
    from llmsim.search.space import load_space

    flags = {k: getattr(args, k, None) for k in SPACE_FLAGS}
    if not counts:
        flags.update(num_devices=None, decode_devices=None, prefill_replicas=None)
    return load_space(args.space, **flags)


def context_of(args):
    from llmsim.search.evaluate import SLOTarget, WorkloadSpec

    wl = WorkloadSpec(name=args.workload, trace=args.trace, rate=getattr(args, "rate", None),
                      num_requests=args.num_requests or 200, seed=args.seed)
    slo = SLOTarget(ttft_s=args.slo_ttft_p99, tpot_s=args.slo_tpot_p99, percentile=args.slo_percentile,
                    pessimistic=args.pessimistic)
    return wl, slo


def _fmt(v, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def run_search_cmd(args) -> int:
    from llmsim.search.explore import closest_miss, run_search

    from llmsim.cli.progress import Bar

    space = space_of(args)
    wl, slo = context_of(args)
    if args.report:
        from llmsim.search.report import check_report_path

        check_report_path(args.report)
    objective = args.objective or ("goodput" if slo.active else "throughput")
    with Bar("simulate search", unit="candidates simulated") as bar:
        res = run_search(space, workload=wl, slo=slo, objective=objective, engine=args.engine,
                         price_basis=args.price_basis, max_quality_loss=args.max_quality_loss, top_k=args.top_k,
                         margin=args.margin, use_screen=not args.no_screen, executor=args.executor,
                         workers=args.workers, ray_address=args.ray_address, store=args.store, resume=args.resume,
                         progress=bar.update if bar.enabled else None)
    if args.export:
        _export(res.frame, args.export)
    if args.report:
        from llmsim.search.report import question_rows, write_search_report

        q = question_rows(space, wl, slo, wl.rate, args.price_basis, extra=(
            ("search", f"objective {res.objective}; {res.candidates_evaluated} distinct candidates, "
                       f"{res.simulated} simulated"),))
        write_search_report(args.report, res.frame, question=q, slo=slo, price_basis=args.price_basis,
                            pareto=res.pareto, title=f"simulate search: {space.model}")
    if args.json:
        print(json.dumps(res.to_dict(top=args.top), sort_keys=True, default=str))
    else:
        _print_table(res, args.top, slo)
    if res.best is None:
        miss = closest_miss(res.frame, slo)
        what = "meets the SLO" if slo.active else "runs"
        msg = f"simulate search: no candidate of {res.candidates_evaluated} {what}"
        if miss:
            msg += f"; closest: {miss[0]} (binding constraint: {miss[1]}): {miss[2]}"
        print(msg, file=sys.stderr)
        return 2
    return 0


def _export(df, path: str) -> None:
    from pathlib import Path

    from llmsim.workloads.errors import ConfigError

    p = Path(path)
    if p.suffix == ".csv":
        df.to_csv(p, index=False)
    elif p.suffix in (".parquet", ".pq"):
        df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(p, index=False)
    else:
        raise ConfigError(f"--export must end in .csv or .parquet, got {path!r}")


def _print_table(res, top: int, slo) -> None:
    df = res.frame
    print(f"search {res.objective}: {res.space_size} candidates, {res.candidates_evaluated} distinct, "
          f"{int(df['feasible'].sum())} feasible (memory, price, quality), {res.simulated} simulated ({res.simulations} runs), "
          f"{res.wall_s:.1f} s")
    head = (f"{'#':>3s}  {'candidate':54s} {'goodput':>8s} {'tok/s':>8s} {'TTFT':>7s} {'TPOT':>7s} {'$/h':>7s} "
            f"{'$/Mtok':>7s} {'J/tok':>6s}  why")
    print(head)
    for _, r in df.head(top).iterrows():
        rank = "" if r.get("rank") is None or (isinstance(r.get("rank"), float) and math.isnan(r["rank"])) \
            else str(int(r["rank"]))
        print(f"{rank:>3s}  {r['label']:54s} {_fmt(r.get('goodput_rps')):>8s} {_fmt(r.get('throughput_tok_s'), '.0f'):>8s} "
              f"{_fmt(r.get('ttft_p_s')):>7s} {_fmt(r.get('tpot_p_s')):>7s} {_fmt(r.get('usd_per_hour'), '.2f'):>7s} "
              f"{_fmt(r.get('usd_per_mtok')):>7s} {_fmt(r.get('energy_per_token_j')):>6s}  {r['why']}")
    if res.pareto:
        print("Pareto front (goodput or throughput / $ per Mtok / J per token): "
              + "; ".join(df.loc[i, "label"] for i in res.pareto))


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="rank the deployments of a design space (goodput, cost, energy, ...)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    add_space_flags(p)
    p.add_argument("--rate", type=float, help="requests/s of the workload (Poisson; default: its own arrivals)")
    p.add_argument("--objective", choices=["goodput", "throughput", "latency", "cost", "energy"],
                   help="default: goodput with an SLO, else throughput")
    p.add_argument("--top-k", type=int, default=4, help="candidates simulated at least (default 4)")
    p.add_argument("--margin", type=float, default=0.25,
                   help="relative slack by which an estimate may trail the best and still be simulated")
    p.add_argument("--no-screen", action="store_true", help="simulate every feasible candidate (brute force)")
    p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    p.add_argument("--export", help="write every candidate to FILE.csv or FILE.parquet")
    p.set_defaults(func=run_search_cmd)
