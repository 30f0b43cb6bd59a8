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

    from llmsim.cli import start_work
    from llmsim.cli.checks import check_outputs, run_warnings, warn
    from llmsim.cli.progress import run_bar

    cfg = run_config(args)
    check_outputs(cfg)
    for message in run_warnings(cfg):
        warn("run", message)
    with run_bar() as bar:
        out = run(cfg, progress=(lambda t, n: bar.update(t, note=f"{n:,} iterations")) if bar.enabled else None,
                  built=start_work, simulated_intervals=getattr(args, "simulated_intervals", False))
    if out.static and not out.summary.get("fits_in_one_batch", True):
        dep = out.summary["deployment"]
        warn("run", f"the static batch ({cfg.static_batch.batch_size} x {cfg.static_batch.prompt_tokens} + "
                    f"{cfg.static_batch.output_tokens} tokens) does not fit the {dep['kv_capacity_tokens']}-token KV "
                    f"cache at once; it ran in waves (lower --batch-size or raise --tp)")
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
        write_report(o.report, out.summary, out.result.records or None, out.tracer, title=title,
                     config=summary["config"])
    if o.json:
        from llmsim.jsonsafe import json_safe  # one JSON conversion for the API and the command line

        print(json.dumps(json_safe(summary), sort_keys=True, allow_nan=False))
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
        shown = to_json_dict({k: summary[k] for k in keys if k in summary})
        for k in keys:
            if k in shown:
                band = summary.get(f"{k}_interval")
                print(f"  {k:26s} {_fmt_value(shown[k])}"
                      + (f"  [{_fmt_value(band[0])}, {_fmt_value(band[1])}]" if band else ""))
        if any(f"{k}_interval" in summary for k in keys):
            if str(summary.get("interval_scope", "")).startswith("simulated"):
                print("  [lo, hi]: 80% interval, simulated at both ends of the cost band (queueing included)")
            else:
                print("  [lo, hi]: 80% interval of kernel time only (queueing amplification under load not included)")
        for line in calibration_lines(summary):
            print(line)
    return 0


def calibration_lines(summary: dict) -> list[str]:
    """The text output's lines on how each pool's costs were calibrated: extrapolated or not, and why
    (``deployment.calibration`` of the JSON; a disaggregated run: each pool's)."""
    from llmsim.sim.report import calibration_status

    return [f"  {label + 'calibration':26s} {text}" for label, text in calibration_status(summary, "see --json")]


TRACE_FORMAT = """\
trace files (--trace FILE; the format is chosen from the header or the suffix):
  canonical CSV   request_id,arrival_s,prompt_tokens,output_tokens[,hash_ids,session_id]
                  one request per row; arrival_s in seconds from the start, token counts >= 1,
                  request_id unique; e.g.
                      request_id,arrival_s,prompt_tokens,output_tokens
                      r0,0.00,512,128
                      r1,0.25,2048,64
  Parquet         .parquet / .pq with the same columns (read as Parquet)
  Azure CSV       TIMESTAMP,ContextTokens,GeneratedTokens (Azure LLM inference traces 2023)
  length-only CSV num_prefill_tokens,num_decode_tokens (needs --rate for the arrivals)
  Mooncake JSONL  timestamp (ms), input_length, output_length, hash_ids (.jsonl or .jsonl.gz)
  APEX JSONL      one object per request with its lengths and arrival"""

RUN_EXAMPLES = """\
examples:
  simulate run                                   # the default scenario (Llama-2-70B, 8 x H100, TP8)
  simulate run --model llama-3.1-8b --device h100 --tp 1 --workload azure-code --rate 4 --num-requests 500
  simulate run --model llama-3.1-8b --tp 1 --trace my.csv --ttft-slo 0.5 --tpot-slo 0.05 --report r.html
  simulate run --model llama-3.1-8b --tp 1 --batch-size 32 --prompt-tokens 1024 --output-tokens 128
  simulate run docs/examples/serving.yaml --json
"""


def _defaults() -> dict:
    """Each run flag's default: the default run config's value of the field it sets (None: unset)."""
    from llmsim.sim.config import config_from_dict

    cfg = config_from_dict({})
    out = {}
    for dest, dotted in RUN_FLAGS.items():
        value = cfg
        for part in dotted.split("."):
            value = getattr(value, part, None)
        out[dest] = value
    return out


def add_parser(sub) -> None:
    d = _defaults()

    def h(text: str, dest: str | None = None, unset: str | None = None) -> str:
        """``text`` with its default: the config default of ``dest``, else ``unset``."""
        value = d.get(dest) if dest else None
        if value is not None and value is not False:
            return f"{text} (default: {value})"
        return f"{text} (default: {unset})" if unset else text

    r = sub.add_parser("run", help="simulate serving (or one static batch) and report latency metrics",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Simulate LLM serving. With no arguments: Llama-2-70B on 8 H100s (TP8, "
                                   "the vLLM V1 engine profile) serving the first 1000 requests of the Azure "
                                   "conversation trace. A YAML config gives any of the settings (nested sections, "
                                   "see docs/examples/*.yaml); flags override it. Output paths are checked before "
                                   "the simulation starts; every user error is one line on stderr and exit 2.",
                       epilog=RUN_EXAMPLES + "\n" + TRACE_FORMAT)
    r.add_argument("config", nargs="?", help="YAML run config (nested sections; unknown keys are errors)")
    g = r.add_argument_group("deployment")
    g.add_argument("--model", help=h("model name, HF id or config.json path (simulate list models)", "model"))
    g.add_argument("--device", help=h("device name (simulate list devices) or a device YAML/JSON file in the "
                                      "catalogue schema", unset="h100, or the cluster's devices"))
    g.add_argument("--num-devices", type=int, help=h("devices in all; num_devices / (tp x pp) replicas behind the "
                                                     "router", unset="tp x pp x dp"))
    g.add_argument("--cluster", help=h("built-in cluster (simulate list clusters) or a cluster YAML/JSON",
                                       unset="the natural cluster of --device"))
    g.add_argument("--num-nodes", type=int, help=h("servers of a one-group --cluster", unset="the cluster's"))
    g.add_argument("--placement", choices=["nic-aware", "naive"], help=h("how ranks are placed on the cluster",
                                                                          "placement"))
    g.add_argument("--layer-split", type=int_list, metavar="N,N,...",
                   help=h("layers per pipeline stage, e.g. 40,40", unset="even split"))
    g.add_argument("--tp", type=int, help=h("tensor-parallel degree", "tp"))
    g.add_argument("--pp", type=int, help=h("pipeline-parallel degree", "pp"))
    g.add_argument("--dp", type=int, help=h("data-parallel replicas (instead of --num-devices)", unset="1"))
    g.add_argument("--ep", type=int, help=h("expert-parallel degree of a MoE model", "ep"))
    g.add_argument("--quant", help=h("weight format (simulate list formats: bf16, fp8, w4a16, ...)", "quant"))
    g.add_argument("--kv-dtype", help=h("KV-cache format (auto = the weight format's, bf16, fp8, ...)", "kv_dtype"))
    g.add_argument("--engine", help=h("serving-engine profile (simulate list engines): vllm (= vllm-v1, newest "
                                      "defaults), vllm==0.15.1 (a version's defaults), vllm-0.6, vllm-0.2, kernels, "
                                      "or an engines.yaml-schema file holding one engine", "engine"))
    g.add_argument("--profile", help=h("calibration profile JSON", unset="the shipped one"))
    g = r.add_argument_group("serving engine")
    g.add_argument("--scheduler", help=h("batching policy (simulate list schedulers): vllm, sarathi (chunked "
                                         "prefill), static, decode-priority", unset="the engine profile's"))
    g.add_argument("--max-batch-size", type=int, help=h("most requests in one iteration (max_num_seqs)",
                                                        unset="the engine profile's for the device"))
    g.add_argument("--max-batched-tokens", type=int, help=h("token budget of one iteration (max_num_batched_tokens)",
                                                            unset="the engine profile's for the device"))
    g.add_argument("--block-size", type=int, help=h("tokens per KV-cache block (vLLM: 8, 16 or 32; others warn)",
                                                    "block_size"))
    g.add_argument("--gpu-memory-utilization", type=float,
                   help=h("fraction of device memory for weights, activations and KV cache", "gpu_memory_utilization"))
    g.add_argument("--watermark", type=float, help=h("fraction of KV blocks kept free when admitting",
                                                     unset="the engine profile's"))
    g.add_argument("--preemption", choices=["recompute", "swap"], help=h("what a preempted request loses",
                                                                          "preemption"))
    g.add_argument("--swap-space-gib", type=float, help=h("host memory per device for swapped KV (GiB)",
                                                          "swap_space_gib"))
    g.add_argument("--overhead-s", type=float, help=h("extra fixed seconds per iteration", "overhead_s"))
    g.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                   help="share KV blocks of equal prompt prefixes between requests (vLLM's automatic prefix "
                        "caching) (default: the engine profile's)")
    g = r.add_argument_group("workload")
    g.add_argument("--workload", help=h("bundled workload (simulate list workloads): azure-conv, azure-code, "
                                        "arxiv-summarization, mooncake-conversation, mooncake-synthetic, "
                                        "shared-prefix, multi-turn", unset="azure-conv, first 1000 requests"))
    g.add_argument("--workload-param", dest="workload_params", action="append", type=param, metavar="KEY=VALUE",
                   help="a setting of a generated workload, e.g. num_groups=8 (repeatable; see sim/config.py)")
    g.add_argument("--trace", metavar="FILE", help="trace file instead of a workload (formats below)")
    g.add_argument("--trace-block-tokens", type=int, help=h("tokens per hash_ids id of a canonical CSV trace",
                                                            unset="the file's # block_tokens line"))
    g.add_argument("--rate", type=float, help=h("requests/s: replace the arrivals with this rate",
                                                unset="the trace's arrival times"))
    g.add_argument("--arrival", choices=["poisson", "gamma", "fixed"], help=h("arrival process of --rate",
                                                                               "arrival"))
    g.add_argument("--cv", type=float, help=h("coefficient of variation of gamma arrivals", "cv"))
    g.add_argument("--num-requests", type=int, help=h("serve the first N requests (resampled with --rate when the "
                                                      "trace is shorter)", unset="all"))
    g.add_argument("--seed", type=int, help=h("seed of every random stream", "seed"))
    g.add_argument("--router", help=h("replica router: round-robin, least-outstanding, least-kv, power-of-two",
                                      "router"))
    g = r.add_argument_group("static batch (instead of a workload)")
    g.add_argument("--batch-size", type=int, help="identical requests arriving together")
    g.add_argument("--prompt-tokens", type=int, help="prompt tokens of each")
    g.add_argument("--output-tokens", type=int, help="output tokens of each")
    g = r.add_argument_group("prefill/decode disaggregation")
    g.add_argument("--disagg", action="store_true", help="separate prefill and decode pools")
    g.add_argument("--prefill-device", help=h("device of the prefill pool", unset="--device"))
    g.add_argument("--prefill-tp", type=int, help=h("tensor-parallel degree of a prefill replica", unset="--tp"))
    g.add_argument("--prefill-replicas", type=int, help=h("prefill replicas", unset="1"))
    g.add_argument("--decode-device", help=h("device of the decode pool", unset="--device"))
    g.add_argument("--decode-tp", type=int, help=h("tensor-parallel degree of a decode replica", unset="--tp"))
    g.add_argument("--decode-replicas", type=int, help=h("decode replicas", unset="1"))
    g.add_argument("--kv-link", choices=["ib", "nvlink", "pcie"], help=h("link carrying the KV cache between pools",
                                                                          unset="ib"))
    g.add_argument("--kv-link-gb-s", type=float, help=h("per-device KV link bandwidth (GB/s)", unset="the link's"))
    g = r.add_argument_group("output")
    g.add_argument("--ttft-slo", type=float, help="time-to-first-token target (s); goodput and SLO attainment "
                                                  "count requests meeting every target given (default: none)")
    g.add_argument("--tpot-slo", type=float, help="time-per-output-token target (s) (default: none)")
    g.add_argument("--json", action="store_true", default=None, help="print one JSON object instead of the table")
    g.add_argument("--out", metavar="FILE", help="per-request records (.csv or .parquet)")
    g.add_argument("--chrome-trace", metavar="FILE", help="Perfetto/Chrome trace of iterations per replica (JSON)")
    g.add_argument("--report", metavar="FILE", help="self-contained HTML report (plotly.js embedded)")
    g.add_argument("--simulated-intervals", action="store_true",
                   help="serving runs: take each figure's 80%% interval from two more runs with every iteration's "
                        "cost at the band's low and high end, so queueing is included (three runs' time)")
    r.set_defaults(func=cmd_run, starts_work=True)  # cmd_run calls start_work once the run is built
