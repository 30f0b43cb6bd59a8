"""`simulate models|devices|clusters|engines`: the built-in catalogues, as a table or (``--json``) one
JSON list of objects."""
from __future__ import annotations

import json


def _emit(args, rows: list[dict], lines) -> int:
    if args.json:
        print(json.dumps(rows))
    else:
        for line in lines():
            print(line)
    return 0


def cmd_models(args) -> int:
    from llmsim.workloads.models import get_model, list_models

    models = {name: get_model(name) for name in list_models()}
    rows = [{"name": n, "params": m.param_count(), "num_layers": m.num_layers, "hidden_size": m.hidden_size}
            for n, m in models.items()]
    return _emit(args, rows, lambda: (
        f"{n:24s} {m.param_count() / 1e9:8.2f} B params  layers={m.num_layers} hidden={m.hidden_size}"
        for n, m in models.items()))


def cmd_devices(args) -> int:
    from llmsim.hwmodels.devices import get_device, list_devices

    devices = {name: get_device(name) for name in list_devices()}
    def bf16(d):  # FPGA engines have no bf16 units: their widest peak is shown instead
        return d.peak_flops("bf16") if d.supports("bf16") else d.peak_flops(d.dtypes[0])

    rows = [{"name": n, "arch_class": d.arch_class, "bf16_flops": bf16(d),
             "memory_capacity_bytes": d.memory_capacity_bytes,
             "memory_bandwidth_bytes_per_s": d.memory_bandwidth_bytes_per_s} for n, d in devices.items()]
    return _emit(args, rows, lambda: (
        f"{n:20s} {d.arch_class:10s} {'bf16' if d.supports('bf16') else d.dtypes[0]:4s} {bf16(d) / 1e12:7.1f} TFLOP/s  "
        f"{d.memory_capacity_bytes / 1e9:6.0f} GB  {d.memory_bandwidth_bytes_per_s / 1e12:5.2f} TB/s"
        for n, d in devices.items()))


def _engine_lines(engines):
    for name, e in engines.items():
        since = f"{e.family} >= {e.since}" if e.family else "-"
        graphs = f"{e.graph_mode} graphs" if e.cuda_graphs else "eager"
        yield (f"{name:10s} {since:14s} {graphs:16s} {e.scheduler:8s} {e.max_num_seqs:5d} seqs "
               f"{e.max_num_batched_tokens:6d} tokens  prefix caching {'on' if e.prefix_caching else 'off'}")
        for v in e.versions:
            yield f"{'':10s}   since {v['since']:8s} {v.get('note', '')}"
    yield "resolve a version with --engine vllm==X.Y.Z (the nearest profile not newer, at that version's defaults)"


def cmd_engines(args) -> int:
    from llmsim.hwmodels.engines import get_engine, list_engines

    engines = {name: get_engine(name) for name in list_engines()}
    rows = [{"name": n, "family": e.family, "since": e.since, "cuda_graphs": e.cuda_graphs,
             "graph_mode": e.graph_mode, "scheduler": e.scheduler, "max_num_seqs": e.max_num_seqs,
             "max_num_batched_tokens": e.max_num_batched_tokens, "prefix_caching": e.prefix_caching,
             "versions": [dict(v) for v in e.versions]} for n, e in engines.items()]
    return _emit(args, rows, lambda: _engine_lines(engines))


def cmd_clusters(args) -> int:
    from llmsim.hwmodels.cluster import get_cluster, list_clusters

    clusters = {name: get_cluster(name) for name in list_clusters()}
    rows = [{"name": n, "num_nodes": c.num_nodes, "num_devices": c.num_devices,
             "device_kinds": list(c.device_kinds()), "description": c.description} for n, c in clusters.items()]
    return _emit(args, rows, lambda: (
        f"{n:22s} {c.num_nodes:3d} server(s) {c.num_devices:4d} x {', '.join(c.device_kinds()):16s} "
        f"{c.description[:70]}" for n, c in clusters.items()))


def add_parsers(sub) -> None:
    for name, func, help_ in (
            ("models", cmd_models, "list the built-in model catalogue"),
            ("devices", cmd_devices, "list the built-in device catalogue"),
            ("clusters", cmd_clusters, "list the built-in clusters"),
            ("engines", cmd_engines, "list the serving-engine profiles and their version history")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--json", action="store_true", help="print one JSON list")
        p.set_defaults(func=func)
