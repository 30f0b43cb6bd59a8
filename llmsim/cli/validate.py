"""`simulate validate` (predict measured runs, report errors) and `simulate calibrate` (fit a profile)."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_KERNEL_DATA = Path(__file__).resolve().parents[2] / "validation" / "data" / "kernels"
SERVING_FORMATS = ("splitwise", "apex-vllm", "llmservingsim")
KERNEL_FORMATS = ("aiconfigurator", "vidur", "llmcompass", "llmservingsim")


def cmd_validate(args) -> int:
    from llmsim.hwmodels.calibration import load_profile
    from llmsim.workloads.errors import ConfigError

    from llmsim.cli.progress import Ticker

    if args.format == "published":
        from llmsim.validation.published import format_table as published_table
        from llmsim.validation.published import validate_published

        if len(args.paths) != 1:
            raise ConfigError("--format published takes one paper_figures.csv path")
        with Ticker("simulate validate"):
            report = validate_published(args.paths[0])
        print(json.dumps(report) if args.json else published_table(report))
        return 0

    paths = args.paths or [str(DEFAULT_KERNEL_DATA)]
    profile = load_profile(args.profile) if args.profile else None
    serving = args.format in SERVING_FORMATS
    if args.format == "llmservingsim":
        # the same source ships kernel profiles and serving runs: the folder's content decides
        from llmsim.validation.serving import is_serving_path

        serving = all(is_serving_path(p) for p in paths)
    if args.format == "auto":
        from llmsim.validation.serving import is_serving_path

        kinds = {is_serving_path(p) for p in paths}
        if len(kinds) > 1:
            raise ConfigError("validate either serving measurements (splitwise, apex-vllm) or kernel measurements "
                              "in one call, not both: " + ", ".join(paths))
        serving = kinds == {True}
    if serving:
        from llmsim.validation.serving import format_table, validate_serving

        if args.device or args.model:
            raise ConfigError("--device/--model apply to kernel measurements; serving files name their own")
        with Ticker("simulate validate"):
            report = validate_serving(paths, fmt=args.format, engine=args.engine, profile=profile, split=args.split)
    else:
        from llmsim.validation.validate import format_table, validate_kernels

        if args.engine:
            raise ConfigError("--engine applies to serving measurements (splitwise, apex-vllm)")
        with Ticker("simulate validate"):
            report = validate_kernels(paths, fmt=args.format, device=args.device, model=args.model,
                                      profile=profile, split=args.split)
    if args.json:
        print(json.dumps(report, sort_keys=False))
    else:
        print(format_table(report))
    return 0


def cmd_calibrate(args) -> int:
    import pandas as pd

    from llmsim.validation.calibrate import fit_profile
    from llmsim.validation.loaders import load_measurements

    table = pd.concat([load_measurements(p, args.format, device=args.device) for p in args.paths],
                      ignore_index=True)
    profile = fit_profile(table, holdout_fraction=args.holdout_fraction,
                          exclude_devices=tuple(args.exclude_device))
    profile.save(args.out)
    n = sum(len(g) for c in profile.params.values() for g in c.values())
    fitted = sum(s["rows_in_fit"] for s in profile.sources)
    if getattr(args, "json", False):
        import json

        print(json.dumps({"out": str(args.out), "parameter_sets": n, "rows_fitted": fitted,
                          "holdout_fraction": args.holdout_fraction}, sort_keys=True))
        return 0
    print(f"wrote {args.out}: {n} parameter sets fitted on {fitted} rows "
          f"({args.holdout_fraction:.0%} of shapes held out)")
    return 0



def add_parsers(sub) -> None:
    v = sub.add_parser("validate", help="predict measured runs and report errors")
    v.add_argument("paths", nargs="*", help="measurement files or folders (default: the shipped kernel data)")
    v.add_argument("--format", default="auto", choices=["auto", *dict.fromkeys([*KERNEL_FORMATS, *SERVING_FORMATS]), "published"],
                   help="measurement format (auto-detected by default); splitwise and apex-vllm are serving runs; "
                        "published = a paper_figures.csv of published figures")
    v.add_argument("--device", help="device of every row (overrides what the file says)")
    v.add_argument("--model", help="model of every row (vidur files name it in their path)")
    v.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    v.add_argument("--split", default="all", choices=["all", "test", "train"],
                   help="score all rows, only those the profile held out (test), or only its fitted rows")
    v.add_argument("--engine", help="serving engine profile for serving formats (default: vllm-0.2 for "
                                    "splitwise, vllm-0.6 for apex-vllm, the run's own vLLM version for "
                                    "llmservingsim; 'kernels' = kernels only)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("calibrate", help="fit a calibration profile from measurements")
    c.add_argument("paths", nargs="+", help="kernel measurement files or folders (validation/data/measured/README.md)")
    c.add_argument("--out", required=True, help="profile JSON to write; use it with --profile FILE")
    c.add_argument("--format", default="auto", choices=["auto", *KERNEL_FORMATS],
                   help="measurement format (default: auto-detected)")
    c.add_argument("--device", help="device of every row (default: what the file says)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the line")
    c.add_argument("--holdout-fraction", type=float, default=0.0,
                   help="fraction of shapes held out of the fit for later scoring (default 0: fit on all)")
    c.add_argument("--exclude-device", action="append", default=[], help="leave this device's rows out")
    c.set_defaults(func=cmd_calibrate)
