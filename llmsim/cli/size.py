"""`simulate size`: the cheapest configurations that carry a request rate within latency SLOs.

For every replica candidate (device, tp x pp, format, batching) it finds the fewest replicas whose
simulated run at ``--rate`` meets the SLOs (binary search on the replica count) and prices them
($ per device-hour, hwmodels/data/prices/). Prints the options cheapest first with cost per hour
and the goodput each was simulated to carry (``--json``: one object); exits 2 with the closest miss
and its binding constraint when nothing carries the rate.
"""
from __future__ import annotations

import json
import sys

from llmsim.cli.search import _fmt, add_space_flags, context_of, space_of


def run_size_cmd(args) -> int:
    from llmsim.search.capacity import run_sizing
    from llmsim.search.explore import closest_miss

    from llmsim.cli.progress import Ticker

    space = space_of(args, counts=False)
    wl, slo = context_of(args)
    if args.report:
        from llmsim.search.report import check_report_path

        check_report_path(args.report)
    with Ticker("simulate size"):
        res = run_sizing(space, rate=args.rate, slo=slo, workload=wl, engine=args.engine,
                         price_basis=args.price_basis, max_quality_loss=args.max_quality_loss, options=args.options,
                         max_replicas=args.max_replicas, margin=args.margin, executor=args.executor,
                         workers=args.workers, ray_address=args.ray_address, store=args.store, resume=args.resume)
    out = res.to_dict()
    if args.report:
        from llmsim.search.report import question_rows, write_search_report

        q = question_rows(space, wl, slo, res.rate, args.price_basis, extra=(
            ("sizing", f"fewest replicas carrying {res.rate:g} requests/s; {res.simulated} sized by simulation"),), counts=False)
        write_search_report(args.report, res.frame, question=q, slo=slo, price_basis=args.price_basis,
                            title=f"simulate size: {space.model} at {res.rate:g} requests/s")
    if args.json:
        print(json.dumps(out, sort_keys=True, default=str))
    else:
        df = res.frame
        print(f"size {space.model} for {res.rate:g} req/s: {len(df)} replica candidates, "
              f"{int(df['feasible'].sum())} feasible (memory, price, quality), {res.simulated} sized by simulation "
              f"({res.simulations} runs), {res.wall_s:.1f} s")
        print(f"{'#':>3s}  {'replica':54s} {'replicas':>8s} {'devices':>7s} {'$/h':>8s} {'goodput':>8s} "
              f"{'TTFT':>7s} {'TPOT':>7s}")
        for k, o in enumerate(out["options"], 1):
            print(f"{k:>3d}  {o['label']:54s} {o['replicas']:>8d} {o['num_devices']:>7d} "
                  f"{_fmt(o['usd_per_hour'], '.2f'):>8s} {_fmt(o.get('goodput_rps')):>8s} "
                  f"{_fmt(o.get('ttft_p_s')):>7s} {_fmt(o.get('tpot_p_s')):>7s}")
    if out["best"] is None:
        miss = closest_miss(res.frame.assign(why=res.frame["reason"]), slo)
        msg = f"simulate size: no configuration carries {res.rate:g} req/s within the SLO"
        if miss:
            msg += f"; closest: {miss[0]} (binding constraint: {miss[1]}): {miss[2]}"
        print(msg, file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("size", help="cheapest configurations carrying a request rate within SLOs",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    add_space_flags(p, counts=False)
    p.add_argument("--rate", type=float, required=True, help="requests/s to carry (Poisson arrivals)")
    p.add_argument("--options", type=int, default=5, help="cheapest options to print (default 5)")
    p.add_argument("--max-replicas", type=int, default=64, help="largest replica count tried (default 64)")
    p.add_argument("--margin", type=float, default=0.25,
                   help="relative slack on the analytic replica estimate when pruning (default 0.25)")
    p.set_defaults(func=run_size_cmd)

