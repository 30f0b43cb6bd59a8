"""The `simulate` command line.

Subcommands import their machinery lazily so `simulate --help` stays instant. Every expected
failure (an ``LLMSimError``: unknown name, malformed file, impossible plan) prints one line to
stderr and exits with status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_KERNEL_DATA = Path(__file__).resolve().parent.parent / "validation" / "data" / "kernels"


def _cmd_validate(args) -> int:
    from hwmodels.calibration import load_profile
    from validation.validate import format_table, validate_kernels

    paths = args.paths or [str(DEFAULT_KERNEL_DATA)]
    profile = load_profile(args.profile) if args.profile else None
    report = validate_kernels(paths, fmt=args.format, device=args.device, model=args.model,
                              profile=profile, split=args.split)
    if args.json:
        print(json.dumps(report, sort_keys=False))
    else:
        print(format_table(report))
    return 0


def _cmd_calibrate(args) -> int:
    import pandas as pd

    from validation.calibrate import fit_profile
    from validation.loaders import load_measurements

    table = pd.concat([load_measurements(p, args.format, device=args.device) for p in args.paths],
                      ignore_index=True)
    profile = fit_profile(table, holdout_fraction=args.holdout_fraction,
                          exclude_devices=tuple(args.exclude_device))
    profile.save(args.out)
    n = sum(len(g) for c in profile.params.values() for g in c.values())
    fitted = sum(s["rows_in_fit"] for s in profile.sources)
    print(f"wrote {args.out}: {n} parameter sets fitted on {fitted} rows "
          f"({args.holdout_fraction:.0%} of shapes held out)")
    return 0


def _cmd_models(args) -> int:
    from workloads.models import get_model, list_models

    for name in list_models():
        m = get_model(name)
        print(f"{name:24s} {m.param_count() / 1e9:8.2f} B params  layers={m.num_layers} hidden={m.hidden_size}")
    return 0


def _cmd_devices(args) -> int:
    from hwmodels.devices import get_device, list_devices

    for name in list_devices():
        d = get_device(name)
        print(f"{name:20s} {d.arch_class:10s} bf16 {d.peak_flops('bf16') / 1e12:7.1f} TFLOP/s  "
              f"{d.memory_capacity_bytes / 1e9:6.0f} GB  {d.memory_bandwidth_bytes_per_s / 1e12:5.2f} TB/s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate", description="Simulate and validate LLM serving on heterogeneous hardware.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="predict measured runs and report errors")
    v.add_argument("paths", nargs="*", help="measurement files or folders (default: the shipped kernel data)")
    v.add_argument("--format", default="auto", choices=["auto", "aiconfigurator", "vidur", "llmcompass"])
    v.add_argument("--device", help="device of every row (overrides what the file says)")
    v.add_argument("--model", help="model of every row (vidur files name it in their path)")
    v.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    v.add_argument("--split", default="all", choices=["all", "test", "train"],
                   help="score all rows, only those the profile held out (test), or only its fitted rows")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=_cmd_validate)

    c = sub.add_parser("calibrate", help="fit a calibration profile from measurements")
    c.add_argument("paths", nargs="+")
    c.add_argument("--out", required=True)
    c.add_argument("--format", default="auto", choices=["auto", "aiconfigurator", "vidur", "llmcompass"])
    c.add_argument("--device")
    c.add_argument("--holdout-fraction", type=float, default=0.0,
                   help="fraction of shapes held out of the fit for later scoring (default 0: fit on all)")
    c.add_argument("--exclude-device", action="append", default=[], help="leave this device's rows out")
    c.set_defaults(func=_cmd_calibrate)

    m = sub.add_parser("models", help="list the built-in model catalogue")
    m.set_defaults(func=_cmd_models)
    d = sub.add_parser("devices", help="list the built-in device catalogue")
    d.set_defaults(func=_cmd_devices)
    return p


def main(argv: list[str] | None = None) -> int:
    from workloads.errors import LLMSimError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LLMSimError as e:
        print(f"simulate {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
