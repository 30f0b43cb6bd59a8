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


SERVING_FORMATS = ("splitwise", "apex-vllm", "llmservingsim")
KERNEL_FORMATS = ("aiconfigurator", "vidur", "llmcompass", "llmservingsim")


def _cmd_validate(args) -> int:
    from llmsim.hwmodels.calibration import load_profile
    from llmsim.workloads.errors import ConfigError

    if args.format == "published":
        from llmsim.validation.published import format_table as published_table
        from llmsim.validation.published import validate_published

        if len(args.paths) != 1:
            raise ConfigError("--format published takes one paper_figures.csv path")
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
        report = validate_serving(paths, fmt=args.format, engine=args.engine, profile=profile, split=args.split)
    else:
        from llmsim.validation.validate import format_table, validate_kernels

        if args.engine:
            raise ConfigError("--engine applies to serving measurements (splitwise, apex-vllm)")
        report = validate_kernels(paths, fmt=args.format, device=args.device, model=args.model,
                                  profile=profile, split=args.split)
    if args.json:
        print(json.dumps(report, sort_keys=False))
    else:
        print(format_table(report))
    return 0


# Flags of `simulate run` -> the dotted config field they set (see sim/config.py).
RUN_FLAGS = {
    "model": "deployment.model", "device": "deployment.device", "num_devices": "deployment.num_devices",
    "cluster": "deployment.cluster", "num_nodes": "deployment.num_nodes", "placement": "deployment.placement",
    "layer_split": "deployment.layer_split",
    "tp": "deployment.tp", "pp": "deployment.pp", "dp": "deployment.dp", "ep": "deployment.ep",
    "quant": "deployment.quant", "kv_dtype": "deployment.kv_dtype", "engine": "deployment.engine",
    "profile": "deployment.profile",
    "scheduler": "serving.scheduler", "max_batch_size": "serving.max_batch_size",
    "max_batched_tokens": "serving.max_batched_tokens", "block_size": "serving.block_size",
    "gpu_memory_utilization": "serving.gpu_memory_utilization", "watermark": "serving.watermark",
    "preemption": "serving.preemption", "swap_space_gib": "serving.swap_space_gib",
    "overhead_s": "serving.overhead_s", "prefix_caching": "serving.prefix_caching",
    "workload_params": "workload.params", "trace_block_tokens": "workload.block_tokens",
    "workload": "workload.name", "trace": "workload.trace", "rate": "workload.rate",
    "arrival": "workload.arrival", "cv": "workload.cv", "num_requests": "workload.num_requests",
    "router": "cluster.router", "seed": "seed",
    "batch_size": "static_batch.batch_size", "prompt_tokens": "static_batch.prompt_tokens",
    "output_tokens": "static_batch.output_tokens",
    "prefill_device": "disagg.prefill.device", "prefill_tp": "disagg.prefill.tp",
    "prefill_replicas": "disagg.prefill.replicas", "decode_device": "disagg.decode.device",
    "decode_tp": "disagg.decode.tp", "decode_replicas": "disagg.decode.replicas",
    "kv_link": "disagg.link", "kv_link_gb_s": "disagg.link_bandwidth_gb_s",
    "ttft_slo": "slo.ttft_s", "tpot_slo": "slo.tpot_s",
    "json": "output.json", "out": "output.out", "chrome_trace": "output.chrome_trace", "report": "output.report",
}


def run_config(args):
    """The RunConfig of `simulate run`: the YAML file (if any), then the flags on top."""
    from llmsim.sim.config import apply, config_from_dict, load_yaml
    from llmsim.workloads.errors import ConfigError

    data = load_yaml(args.config) if args.config else {}
    where = str(args.config) if args.config else ""
    # file paths in a config are relative to the config file
    for section, key in (("workload", "trace"), ("deployment", "profile")):
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key])
            if not p.is_absolute():
                sec[key] = str(Path(args.config).parent / p)
    flags = {dest: getattr(args, dest) for dest in RUN_FLAGS}
    if not flags["json"]:
        flags["json"] = None
    if flags["workload_params"]:
        wl0 = data.get("workload") if isinstance(data.get("workload"), dict) else {}
        base = wl0.get("params") if isinstance(wl0.get("params"), dict) else {}
        flags["workload_params"] = {**base, **dict(flags["workload_params"])}
    # a trace on the command line replaces a YAML workload name, and the reverse
    wl = data.get("workload") if isinstance(data.get("workload"), dict) else None
    if wl is not None and flags["trace"] is not None:
        wl.pop("name", None)
    if wl is not None and flags["workload"] is not None:
        wl.pop("trace", None)
    static = [flags[k] for k in ("batch_size", "prompt_tokens", "output_tokens")]
    if any(v is not None for v in static) and not all(v is not None for v in static) \
            and not isinstance(data.get("static_batch"), dict):
        raise ConfigError("static-batch mode needs all of --batch-size, --prompt-tokens and --output-tokens")
    if args.disagg and data.get("disagg") is None:
        data["disagg"] = {}
    merged = apply(data, {RUN_FLAGS[k]: v for k, v in flags.items()})
    return config_from_dict(merged, where)


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    v: object
    try:
        v = int(value)
    except ValueError:
        try:
            v = float(value)
        except ValueError:
            v = value
    return key.strip(), v


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _cmd_run(args) -> int:
    from llmsim.sim.metrics import to_json_dict
    from llmsim.sim.runner import run

    cfg = run_config(args)
    out = run(cfg)
    summary = dict(out.summary)
    summary["config"] = cfg.to_dict()
    o = cfg.output
    if o.out:
        out.result.write_requests(o.out)
    if o.chrome_trace and out.tracer is not None:
        out.tracer.write(o.chrome_trace)
    if o.report:
        from llmsim.sim.report import write_report

        title = (f"{summary.get('mode')}: {cfg.deployment.model} on {summary.get('num_devices')} x "
                 f"{cfg.deployment.device}")
        write_report(o.report, out.summary, out.result.records or None, out.tracer, title=title)
    if o.json:
        print(json.dumps(_json_safe(summary), sort_keys=True, allow_nan=False))
    else:
        keys = (("prefill_time_s", "per_token_time_s", "e2e_time_s") if out.static else ()) + (
            "requests_completed", "requests_rejected", "ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s",
            "tpot_p50_s", "tpot_p99_s", "e2e_mean_s", "throughput_output_tok_s", "preemptions", "energy_j",
            "makespan_s") + (("prefix_cache_hit_rate", "prefix_cache_hit_tokens", "prefill_tokens_computed")
                             if summary.get("prefix_caching") else ())
        if "deployment" in summary:
            dep = summary["deployment"]
            where = f" of {summary['placement']['cluster']}" if cfg.deployment.cluster else ""
            engines = (f", {summary['virtual_engines']} virtual engines"
                       if summary.get("virtual_engines", summary["replicas"]) != summary["replicas"] else "")
            print(f"{summary['mode']}: {dep['model']} on {summary['num_devices']} x {dep['device']}{where} "
                  f"({summary['replicas']} replica(s) of tp={dep['tp']} pp={dep['pp']}{engines}, engine "
                  f"{dep['engine']}{' ' + dep['engine_version'] if dep.get('engine_version') else ''}, "
                  f"KV {dep['kv_capacity_tokens']} tokens/replica)")
        else:
            pools = [summary["prefill_pool"], summary["decode_pool"]]
            print(f"{summary['mode']}: {pools[0]['model']} on " + " + ".join(
                f"{p['replicas']} x {p['device']} tp={p['tp']} ({name}, KV {p['kv_capacity_tokens']} tokens/replica)"
                for name, p in zip(("prefill", "decode"), pools)) + f", engine {pools[0]['engine']}")
        for k in keys:
            if k in summary:
                print(f"  {k:26s} {_fmt_value(to_json_dict({k: summary[k]})[k])}")
    return 0


def _json_safe(obj):
    import math

    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _json_safe(obj.item())
    return obj


def _cmd_calibrate(args) -> int:
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
    print(f"wrote {args.out}: {n} parameter sets fitted on {fitted} rows "
          f"({args.holdout_fraction:.0%} of shapes held out)")
    return 0


def _cmd_models(args) -> int:
    from llmsim.workloads.models import get_model, list_models

    for name in list_models():
        m = get_model(name)
        print(f"{name:24s} {m.param_count() / 1e9:8.2f} B params  layers={m.num_layers} hidden={m.hidden_size}")
    return 0


def _cmd_devices(args) -> int:
    from llmsim.hwmodels.devices import get_device, list_devices

    for name in list_devices():
        d = get_device(name)
        print(f"{name:20s} {d.arch_class:10s} bf16 {d.peak_flops('bf16') / 1e12:7.1f} TFLOP/s  "
              f"{d.memory_capacity_bytes / 1e9:6.0f} GB  {d.memory_bandwidth_bytes_per_s / 1e12:5.2f} TB/s")
    return 0


def _cmd_engines(args) -> int:
    from llmsim.hwmodels.engines import get_engine, list_engines

    for name in list_engines():
        e = get_engine(name)
        since = f"{e.family} >= {e.since}" if e.family else "-"
        graphs = f"{e.graph_mode} graphs" if e.cuda_graphs else "eager"
        print(f"{name:10s} {since:14s} {graphs:16s} {e.scheduler:8s} {e.max_num_seqs:5d} seqs "
              f"{e.max_num_batched_tokens:6d} tokens  prefix caching {'on' if e.prefix_caching else 'off'}")
        for v in e.versions:
            print(f"{'':10s}   since {v['since']:8s} {v.get('note', '')}")
    print("resolve a version with --engine vllm==X.Y.Z (the nearest profile not newer, at that version's defaults)")
    return 0


def _cmd_clusters(args) -> int:
    from llmsim.hwmodels.cluster import get_cluster, list_clusters

    for name in list_clusters():
        c = get_cluster(name)
        kinds = ", ".join(c.device_kinds())
        print(f"{name:22s} {c.num_nodes:3d} server(s) {c.num_devices:4d} x {kinds:16s} {c.description[:70]}")
    return 0


def _cmd_train(args) -> int:
    from llmsim.sim.train_cli import run_train

    return run_train(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate", description="Simulate and validate LLM serving on heterogeneous hardware.")
    sub = p.add_subparsers(dest="command", required=True)

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
    v.set_defaults(func=_cmd_validate)

    r = sub.add_parser("run", help="simulate serving (or one static batch) and report latency metrics",
                       description="Simulate LLM serving. With no arguments: Llama-2-70B on 8 H100s (TP8, "
                                   "vLLM 0.6 engine) serving the first 1000 requests of the Azure conversation "
                                   "trace. A YAML config gives any of the settings (see sim/config.py); flags "
                                   "override it.")
    r.add_argument("config", nargs="?", help="YAML run config (nested sections; unknown keys are errors)")
    g = r.add_argument_group("deployment")
    g.add_argument("--model")
    g.add_argument("--device")
    g.add_argument("--num-devices", type=int, help="devices in all; num_devices / (tp x pp) replicas behind the router")
    g.add_argument("--cluster", help="built-in cluster (simulate clusters) or a cluster YAML; default: the natural "
                                     "cluster of --device")
    g.add_argument("--num-nodes", type=int, help="servers of a one-group --cluster")
    g.add_argument("--placement", choices=["nic-aware", "naive"], help="how ranks are placed on the cluster")
    g.add_argument("--layer-split", type=_int_list, help="layers per pipeline stage, e.g. 40,40")
    g.add_argument("--tp", type=int)
    g.add_argument("--pp", type=int)
    g.add_argument("--dp", type=int, help="data-parallel replicas (instead of --num-devices)")
    g.add_argument("--ep", type=int)
    g.add_argument("--quant", help="weight format (bf16, fp8, w4a16, ...)")
    g.add_argument("--kv-dtype", help="KV-cache format (auto, bf16, fp8, ...)")
    g.add_argument("--engine", help="serving-engine profile: vllm (= vllm-v1, newest defaults; the default), "
                                    "vllm==0.15.1 (a version's defaults), vllm-0.6, vllm-0.2, kernels")
    g.add_argument("--profile", help="calibration profile JSON (default: the shipped one)")
    g = r.add_argument_group("serving engine")
    g.add_argument("--scheduler", help="vllm, sarathi (chunked prefill), static, decode-priority")
    g.add_argument("--max-batch-size", type=int)
    g.add_argument("--max-batched-tokens", type=int)
    g.add_argument("--block-size", type=int)
    g.add_argument("--gpu-memory-utilization", type=float)
    g.add_argument("--watermark", type=float)
    g.add_argument("--preemption", choices=["recompute", "swap"])
    g.add_argument("--swap-space-gib", type=float, help="host memory per device for swapped KV (GiB)")
    g.add_argument("--overhead-s", type=float, help="extra fixed seconds per iteration")
    g.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                   help="share KV blocks of equal prompt prefixes between requests (vLLM's automatic prefix "
                        "caching; default: the engine profile's)")
    g = r.add_argument_group("workload")
    g.add_argument("--workload", help="bundled workload: azure-conv, azure-code, arxiv-summarization, "
                                      "mooncake-conversation, mooncake-synthetic, shared-prefix, multi-turn")
    g.add_argument("--workload-param", dest="workload_params", action="append", type=_param, metavar="KEY=VALUE",
                   help="a setting of a generated workload, e.g. num_groups=8 (repeatable; see sim/config.py)")
    g.add_argument("--trace", help="trace file (canonical CSV with optional hash_ids/session_id, Azure CSV, "
                                   "APEX or Mooncake JSONL (.gz too), length-only CSV)")
    g.add_argument("--trace-block-tokens", type=int, help="tokens per hash_ids id of a canonical CSV trace")
    g.add_argument("--rate", type=float, help="requests/s: replace the arrivals with this rate")
    g.add_argument("--arrival", choices=["poisson", "gamma", "fixed"])
    g.add_argument("--cv", type=float, help="coefficient of variation of gamma arrivals")
    g.add_argument("--num-requests", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--router", help="round-robin, least-outstanding, least-kv, power-of-two")
    g = r.add_argument_group("static batch (instead of a workload)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--prompt-tokens", type=int)
    g.add_argument("--output-tokens", type=int)
    g = r.add_argument_group("prefill/decode disaggregation")
    g.add_argument("--disagg", action="store_true", help="separate prefill and decode pools")
    g.add_argument("--prefill-device")
    g.add_argument("--prefill-tp", type=int)
    g.add_argument("--prefill-replicas", type=int)
    g.add_argument("--decode-device")
    g.add_argument("--decode-tp", type=int)
    g.add_argument("--decode-replicas", type=int)
    g.add_argument("--kv-link", choices=["ib", "nvlink", "pcie"], help="link carrying the KV cache between pools")
    g.add_argument("--kv-link-gb-s", type=float, help="per-device KV link bandwidth (GB/s)")
    g = r.add_argument_group("output")
    g.add_argument("--ttft-slo", type=float, help="seconds; goodput counts requests meeting both SLOs")
    g.add_argument("--tpot-slo", type=float)
    g.add_argument("--json", action="store_true", default=None, help="print one JSON object")
    g.add_argument("--out", help="per-request records (.csv or .parquet)")
    g.add_argument("--chrome-trace", help="Perfetto/Chrome trace of iterations per replica (JSON)")
    g.add_argument("--report", help="self-contained HTML report (plotly.js embedded)")
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("calibrate", help="fit a calibration profile from measurements")
    c.add_argument("paths", nargs="+")
    c.add_argument("--out", required=True)
    c.add_argument("--format", default="auto", choices=["auto", *KERNEL_FORMATS])
    c.add_argument("--device")
    c.add_argument("--holdout-fraction", type=float, default=0.0,
                   help="fraction of shapes held out of the fit for later scoring (default 0: fit on all)")
    c.add_argument("--exclude-device", action="append", default=[], help="leave this device's rows out")
    c.set_defaults(func=_cmd_calibrate)

    m = sub.add_parser("models", help="list the built-in model catalogue")
    m.set_defaults(func=_cmd_models)
    d = sub.add_parser("devices", help="list the built-in device catalogue")
    d.set_defaults(func=_cmd_devices)
    cl = sub.add_parser("clusters", help="list the built-in clusters")
    cl.set_defaults(func=_cmd_clusters)
    en = sub.add_parser("engines", help="list the serving-engine profiles and their version history")
    en.set_defaults(func=_cmd_engines)

    from llmsim.sim.train_cli import add_parser as add_train_parser

    add_train_parser(sub, _cmd_train, _int_list)

    from llmsim.validation.profiler import build_parser as add_profile_parser  # light: imports no torch

    add_profile_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from llmsim.workloads.errors import LLMSimError

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
