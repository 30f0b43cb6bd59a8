"""`simulate profile`: the GPU profiler of :mod:`llmsim.validation.profiler` as a subcommand."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def cmd_profile(args) -> int:
    """The profiler's ``run``; with ``--json`` its lines go to stderr and stdout gets one JSON object:
    the sweep's case counts (``--dry-run``) or what ``environment.json`` records of the run."""
    from llmsim.validation import profiler

    if not args.json:
        return profiler.run(args)
    from llmsim.jsonsafe import json_safe

    with contextlib.redirect_stdout(sys.stderr):
        rc = profiler.run(args)
    if args.dry_run:
        sweeps = profiler.sweeps
        ops, models, tps = profiler._check_args(args)
        sweep = sweeps.build_sweep(models or None, quick=args.quick, ops=ops, tp_degrees=tps,
                                   fp8=not args.no_fp8, gpu_count=max(sweeps.COLLECTIVE_WORLDS))
        out = {"dry_run": True, "models": list(sweep.models), "tp_degrees": list(sweep.tp_degrees),
               "cases": sweep.counts(), "notes": list(sweep.notes)}
    else:
        env = json.loads((Path(args.out) / profiler.ENV_FILE).read_text())
        out = {"dry_run": False, "out": str(args.out), "rows": env.get("rows"), "status": env.get("status"),
               "skipped_count": env.get("skipped_count"), "notes": env.get("notes", [])}
    print(json.dumps(json_safe(out), sort_keys=True))
    return rc


def add_parser(sub):
    """Add ``profile`` to a ``simulate`` subparsers object."""
    from llmsim.validation import profiler  # light: imports no torch

    p = sub.add_parser("profile", help="time GEMMs, attention and collectives on this machine's GPU",
                       description=profiler.__doc__.splitlines()[0])
    profiler.add_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (case counts, or the rows written) instead of the lines")
    p.set_defaults(func=cmd_profile)
    return p
