"""`simulate fit-kernels` (the efficiency model's coefficients, the shipped calibration profile),
`simulate fit-engine` (an engine profile's host times from serving measurements) and
`simulate fit-network` (the alpha-beta collective models from the shipped network measurements)."""
from __future__ import annotations

import contextlib
import json
import sys
import time

#: ``simulate fit-engine`` target -> the engine profile its hosts go into
ENGINE_OF = {"splitwise": "vllm-0.2", "apex": "vllm-0.6", "llmservingsim": "vllm-v1"}


def _emit(obj: dict) -> None:
    """One JSON object on stdout (``--json``)."""
    from llmsim.jsonsafe import json_safe

    print(json.dumps(json_safe(obj), sort_keys=True, default=str))


def _lines_to_stderr(args):
    """With ``--json``: the command's progress lines go to stderr, keeping stdout one JSON object."""
    return contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False) else contextlib.nullcontext()


def cmd_fit_kernels(args) -> int:
    with _lines_to_stderr(args):
        out = _fit_kernels(args)
    if args.json:
        _emit(out)
    return 0


def _fit_kernels(args) -> dict:
    import dataclasses
    from pathlib import Path

    import pandas as pd

    from llmsim.hwmodels.calibration import load_profile
    from llmsim.validation import calibrate as cal
    from llmsim.validation.loaders import load_measurements
    from llmsim.workloads.errors import ConfigError

    if not args.default and not (args.paths and args.out):
        raise ConfigError("give --default, or measurement paths and --out")
    paths = [str(cal.SHIPPED_DATA)] if args.default else args.paths
    out = cal.SHIPPED_PROFILE if args.default else Path(args.out)
    holdout = cal.DEFAULT_HOLDOUT if args.holdout_fraction is None else args.holdout_fraction
    table = pd.concat([load_measurements(p) for p in paths], ignore_index=True)
    if args.uncertainty:
        import json

        from llmsim.hwmodels.uncertainty import FILE_NAME, default_error_model, with_network_bands

        profile = load_profile(out)
        old = default_error_model() if args.default else None
        model = cal.fit_uncertainty(table, profile, extrapolated=old.extrapolated if old else None)
        model = with_network_bands(model, old)  # the collective bands are simulate fit-network's
        dest = out.parent / FILE_NAME
        dest.write_text(json.dumps(model.to_json(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {dest}: {len(model.bands)} bands")
        return 0
    if args.small_classes:
        profile, added = cal.fit_small_classes(table, load_profile(out))
        for a in added:
            print(f"{a['class']}: {a['rows']} training rows, from {a['from']}; training median APE "
                  f"{100 * a['train_median_ape_before']:.1f}% -> {100 * a['train_median_ape_after']:.1f}%")
        profile.save(out)
        return {"out": str(out), "added": added}
    base = load_profile(out) if args.ranges else None
    if base is not None:
        excluded = tuple(base.split.get("excluded_devices", ()))
        profile = cal.fit_profile(table, salt=base.split.get("salt", cal.DEFAULT_SALT),
                                  holdout_fraction=float(base.split.get("holdout_fraction", 0.0)),
                                  exclude_devices=excluded, coefficients_from=base)
        profile = dataclasses.replace(profile, params={a: {c: {g: profile.params.get(a, {}).get(c, {}).get(g, p)
                                                              for g, p in gs.items()} for c, gs in cs.items()}
                                                       for a, cs in base.params.items()})
    else:
        profile = cal.fit_profile(table, holdout_fraction=holdout, exclude_devices=tuple(args.exclude_device),
                                  arch_classes=tuple(args.arch))
    if args.arch:
        profile = cal.merge_profiles(load_profile(out), profile, tuple(args.arch))
    out.parent.mkdir(parents=True, exist_ok=True)
    profile.save(out)
    n = sum(len(g) for c in profile.params.values() for g in c.values())
    print(f"wrote {out}: {n} parameter sets")
    return {"out": str(out), "parameter_sets": n}


def cmd_fit_engine(args) -> int:
    from llmsim.validation import serving

    profile = None
    if args.profile:
        from llmsim.hwmodels.calibration import load_profile

        profile = load_profile(args.profile)
    engine = ENGINE_OF[args.source]
    if args.source == "llmservingsim":
        from llmsim.validation.llmservingsim import fit_hosts

        hosts = fit_hosts(args.path, profile=profile)
    elif args.source == "splitwise":
        hosts = serving.fit_splitwise_overheads(args.path, subset=args.subset, profile=profile)
    else:
        hosts = {"default": serving.fit_apex_overhead(args.path, args.run, profile=profile)}
    if not args.json:
        print(serving._yaml_hosts(hosts))
    if args.write:
        serving.write_hosts(engine, hosts)
        print(f"wrote the {engine} hosts into {serving.ENGINES_FILE}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        _emit({"source": args.source, "engine": engine, "hosts": hosts,
               "written": str(serving.ENGINES_FILE) if args.write else None})
    return 0


def cmd_fit_network(args) -> int:
    from llmsim.hwmodels.collectives import default_network_params
    from llmsim.validation import network as nw

    t0 = time.perf_counter()
    table = nw._shipped_table()
    holdout = nw.DEFAULT_HOLDOUT if args.holdout_fraction is None else args.holdout_fraction
    with _lines_to_stderr(args):
        data = nw.fit_network(table, holdout_fraction=holdout, verbose=True)
    params = nw.network_params_from_dict(data, "fit")
    if args.write:
        nw.SHIPPED_YAML.write_text(nw.yaml_text(data))
        default_network_params.cache_clear()
        print(f"wrote {nw.SHIPPED_YAML}", file=sys.stderr)
        bands = nw.write_network_bands(table, default_network_params())  # residuals of the new parameters
        cov = nw.band_coverage(table)
        print(f"wrote {len(bands)} collective error bands; 80% interval coverage on {cov['rows']} held-out "
              f"collective rows no band saw: {100 * cov['interval_coverage']:.1f}%", file=sys.stderr)
    reports = {}
    for split in ("test", "all"):
        rep = reports[split] = nw.network_report(table, params=params, split=split)
        if not args.json:
            print(f"split={split}")
            print(nw.format_network_table(rep))
    if args.json:
        _emit({"fit": data, "reports": reports, "written": str(nw.SHIPPED_YAML) if args.write else None})
    print(f"fit took {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


JSON_HELP = "print one JSON object (what was fitted and written) instead of the lines"


def add_parsers(sub) -> None:
    k = sub.add_parser("fit-kernels", help="fit the efficiency model's coefficients (the shipped calibration "
                                           "profile with --default) on measured kernels")
    k.add_argument("paths", nargs="*", help="measurement files or folders (with --out)")
    k.add_argument("--default", action="store_true", help="rebuild the shipped profile from the shipped data")
    k.add_argument("--out", help="profile JSON to write")
    k.add_argument("--exclude-device", action="append", default=[], help="leave this device's rows out")
    k.add_argument("--holdout-fraction", type=float, default=None,
                   help="fraction of shapes held out of the fit (default: the shipped split's)")
    k.add_argument("--arch", action="append", default=[],
                   help="refit only this architecture class into the existing --out profile (repeatable)")
    k.add_argument("--ranges", action="store_true",
                   help="refit nothing: record each class's fitted shape range in the existing --out profile")
    k.add_argument("--small-classes", action="store_true",
                   help="refit nothing else: add attention classes too small for a full fit to the --out profile "
                        "(fallback coefficients adjusted on their rows; fit_small_classes)")
    k.add_argument("--uncertainty", action="store_true",
                   help="refit nothing else: write the error bands (hwmodels/uncertainty.py) beside the --out profile "
                        "from half of its held-out rows")
    k.add_argument("--json", action="store_true", help=JSON_HELP)
    k.set_defaults(func=cmd_fit_kernels)
    e = sub.add_parser("fit-engine", help="fit an engine profile's host overheads on serving measurements")
    src = e.add_subparsers(dest="source", required=True, help="whose measurements: splitwise, apex, llmservingsim")
    a = src.add_parser("splitwise", help="fit vllm-0.2 host overheads on the train half of a perf_model.csv")
    a.add_argument("path")
    a.add_argument("--subset", default="train", choices=["train", "all"])
    b = src.add_parser("apex", help="fit vllm-0.6 host overheads on one APEX run (the others stay held out)")
    b.add_argument("path")
    b.add_argument("--run", required=True, help="the run's trace stem, e.g. lmsys_05_8TP")
    c = src.add_parser("llmservingsim", help="fit the vllm-v1 host times on the Llama-3.1-8B runs of "
                                             "LLMServingSim's vLLM 0.19 data (the Qwen3 runs stay held out)")
    c.add_argument("path", help="the llmservingsim_vllm019 folder")
    for x in (a, b, c):
        x.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
        x.add_argument("--write", action="store_true", help="write the hosts into hwmodels/data/engines.yaml")
        x.add_argument("--json", action="store_true", help=JSON_HELP)
        x.set_defaults(func=cmd_fit_engine)
    n = sub.add_parser("fit-network", help="fit the alpha-beta collective models on the shipped network "
                                           "measurements (training split)")
    n.add_argument("--write", action="store_true", help="rewrite hwmodels/data/network_calibration.yaml and the "
                                                         "collective error bands in hwmodels/data/calibration/uncertainty.json")
    n.add_argument("--holdout-fraction", type=float, default=None,
                   help="fraction of shapes held out of the fit (default: the shipped split's)")
    n.add_argument("--json", action="store_true", help=JSON_HELP)
    n.set_defaults(func=cmd_fit_network)
