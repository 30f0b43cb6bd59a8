"""`simulate run`: the flags and YAML file of a serving run, its summary printed or as JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def param(text: str) -> tuple[str, object]:
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


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def cmd_run(args) -> int:
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
        from llmsim.api import _json_safe  # one JSON conversion for the API and the command line

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


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="simulate serving (or one static batch) and report latency metrics",
                       description="Simulate LLM serving. With no arguments: Llama-2-70B on 8 H100s (TP8, "
                                   "vLLM 0.6 engine) serving the first 1000 requests of the Azure conversation "
                                   "trace. A YAML config gives any of the settings (see sim/config.py); flags "
                                   "override it.")
    r.add_argument("config", nargs="?", help="YAML run config (nested sections; unknown keys are errors)")
    g = r.add_argument_group("deployment")
    g.add_argument("--model")
    g.add_argument("--device", help="device name (simulate devices) or a device YAML/JSON file in the catalogue schema")
    g.add_argument("--num-devices", type=int, help="devices in all; num_devices / (tp x pp) replicas behind the router")
    g.add_argument("--cluster", help="built-in cluster (simulate clusters) or a cluster YAML; default: the natural "
                                     "cluster of --device")
    g.add_argument("--num-nodes", type=int, help="servers of a one-group --cluster")
    g.add_argument("--placement", choices=["nic-aware", "naive"], help="how ranks are placed on the cluster")
    g.add_argument("--layer-split", type=int_list, help="layers per pipeline stage, e.g. 40,40")
    g.add_argument("--tp", type=int)
    g.add_argument("--pp", type=int)
    g.add_argument("--dp", type=int, help="data-parallel replicas (instead of --num-devices)")
    g.add_argument("--ep", type=int)
    g.add_argument("--quant", help="weight format (bf16, fp8, w4a16, ...)")
    g.add_argument("--kv-dtype", help="KV-cache format (auto, bf16, fp8, ...)")
    g.add_argument("--engine", help="serving-engine profile: vllm (= vllm-v1, newest defaults; the default), "
                                    "vllm==0.15.1 (a version's defaults), vllm-0.6, vllm-0.2, kernels, or an "
                                    "engines.yaml-schema file holding one engine")
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
    g.add_argument("--workload-param", dest="workload_params", action="append", type=param, metavar="KEY=VALUE",
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
    r.set_defaults(func=cmd_run)
