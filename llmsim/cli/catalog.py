"""`simulate list models|devices|clusters|formats|engines|workloads|schedulers|routers` (and the short
forms `simulate models|devices|clusters|engines`): the built-in catalogues, as a table or
(``--json``) one JSON list of objects."""
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


def cmd_formats(args) -> int:
    from llmsim.workloads.quant import get_kv_format, get_quant_format, list_kv_formats, list_quant_formats

    quant = {n: get_quant_format(n) for n in list_quant_formats()}
    kv = {n: get_kv_format(n) for n in list_kv_formats()}
    rows = [{"name": n, "kind": "weights", "bytes_per_weight": q.bytes_per_weight, "compute_dtype": q.compute_dtype,
             "kv_default": q.kv_default, "description": q.description} for n, q in quant.items()]
    rows += [{"name": n, "kind": "kv-cache", "bytes_per_element": k.bytes_per_element} for n, k in kv.items()]
    return _emit(args, rows, lambda: [
        *(f"{n:14s} weights   {q.bytes_per_weight:6.3f} B/weight  compute {q.compute_dtype:6s} KV auto = "
          f"{q.kv_default:6s} {q.description[:60]}" for n, q in quant.items()),
        *(f"{n:14s} kv-cache  {k.bytes_per_element:6.3f} B/element" for n, k in kv.items())])


def cmd_workloads(args) -> int:
    from llmsim.workloads.traces import workload_names

    rows = [{"name": n} for n in workload_names()]
    return _emit(args, rows, lambda: [*workload_names(),
                                      "or --trace FILE (simulate run --help lists the trace formats)"])


def _registry_rows(registry) -> list[dict]:
    rows = []
    for n in registry.names():
        doc = (registry.get(n).__doc__ or "").strip().splitlines()
        rows.append({"name": n, "description": doc[0] if doc else ""})
    return rows


def cmd_schedulers(args) -> int:
    from llmsim.sim.schedulers import SCHEDULERS

    rows = _registry_rows(SCHEDULERS)
    return _emit(args, rows, lambda: (f"{r['name']:16s} {r['description'][:90]}" for r in rows))


#: what each router does (llmsim.sim.cluster's module docstring)
_ROUTERS = {"round-robin": "replicas in turn",
            "least-outstanding": "fewest requests queued or running",
            "least-kv": "lowest (KV blocks in use + blocks the queued prompts need) / capacity",
            "power-of-two": "two distinct replicas drawn at random, the one with fewer outstanding requests"}


def cmd_routers(args) -> int:
    from llmsim.sim.cluster import ROUTERS

    rows = [{**r, "description": r["description"] or _ROUTERS.get(r["name"], "")} for r in _registry_rows(ROUTERS)]
    return _emit(args, rows, lambda: (f"{r['name']:18s} {r['description'][:90]}" for r in rows))


#: `simulate list KIND`: kind -> (command, what it lists)
KINDS = {
    "models": (cmd_models, "the built-in model catalogue"),
    "devices": (cmd_devices, "the built-in device catalogue"),
    "clusters": (cmd_clusters, "the built-in clusters"),
    "formats": (cmd_formats, "weight quantization and KV-cache formats"),
    "engines": (cmd_engines, "the serving-engine profiles and their version history"),
    "workloads": (cmd_workloads, "the bundled workloads"),
    "schedulers": (cmd_schedulers, "the batching policies (--scheduler)"),
    "routers": (cmd_routers, "the replica routers (--router)"),
}


def names_of(kind: str) -> tuple[str, ...]:
    """The names `simulate list KIND` lists."""
    import contextlib
    import io
    import json as _json
    from types import SimpleNamespace

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        KINDS[kind][0](SimpleNamespace(json=True))
    return tuple(row["name"] for row in _json.loads(buf.getvalue()))


def cmd_list(args) -> int:
    return KINDS[args.kind][0](args)


def add_parsers(sub) -> None:
    import argparse

    p = sub.add_parser("list", help="list a built-in catalogue: " + ", ".join(KINDS),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="List a built-in catalogue.\n\n" + "\n".join(
                           f"  {k:11s} {what}" for k, (_, what) in KINDS.items()),
                       epilog="examples:\n  simulate list devices\n  simulate list engines --json\n"
                              "  simulate list formats")
    p.add_argument("kind", choices=list(KINDS), metavar="KIND", help="one of: " + ", ".join(KINDS))
    p.add_argument("--json", action="store_true", help="print one JSON list of objects instead of the table")
    p.set_defaults(func=cmd_list)
    for name in ("models", "devices", "clusters", "engines"):
        func, what = KINDS[name]
        p = sub.add_parser(name, help=f"list {what} (= simulate list {name})",
                           description=f"List {what} (the same as `simulate list {name}`).")
        p.add_argument("--json", action="store_true", help="print one JSON list of objects instead of the table")
        p.set_defaults(func=func)
