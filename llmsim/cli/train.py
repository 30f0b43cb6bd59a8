"""`simulate train`: one training step of a parallel plan on a cluster (sim/training.py).

With no arguments it runs the Holmes scenario: GPT-7.5B on the mixed 4 InfiniBand + 4 RoCE A100
cluster with tensor parallel 4, pipeline parallel 2, data parallel 8, the NIC-aware placement and
the layer split sized to each stage's speed. A YAML file gives any of the keys of
:class:`TrainRunConfig` (strict: unknown keys are errors); flags override it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields

from llmsim.sim.training_config import TrainRunConfig, load_train_config


def _print(res, title: str) -> None:
    d = res.to_dict()
    print(f"{title}: step {d['step_s']:.3f} s, {d['samples_per_s']:.1f} samples/s, "
          f"{d['tflops_per_gpu']:.1f} TFLOPS/GPU (Megatron count; {d['model_tflops_per_gpu']:.1f} without "
          f"recomputation), pipeline bubble {100 * d['bubble_fraction']:.1f}%")
    print(f"  {'stage':>5s} {'layers':>6s} {'fwd ms':>8s} {'bwd ms':>8s} {'send ms':>8s} {'grad sync s':>11s} "
          f"{'mem GiB':>8s}  nodes")
    for st, pl in zip(d["stages"], d["placement"]["stages"]):
        print(f"  {st['stage']:5d} {st['layers']:6d} {1e3 * st['forward_s']:8.1f} {1e3 * st['backward_s']:8.1f} "
              f"{1e3 * st['send_s']:8.2f} {st['grad_sync_s']:11.3f} {st['memory_gib']:8.1f}  "
              f"{','.join(pl['node_kinds'])} {pl['nodes']}")


def run_train(args) -> int:
    flags = {f.name: getattr(args, f.name, None) for f in fields(TrainRunConfig)}
    if not flags.get("json"):
        flags["json"] = None
    for k in ("overlap_grad_reduce", "distributed_optimizer"):
        if flags.get(k) is False:
            flags[k] = None
    rc = load_train_config(args.config, flags)
    from llmsim.search.partition import simulate_config

    placements = ("naive", "nic-aware") if rc.placement == "both" else (rc.placement,)
    results = {p: simulate_config(rc, p) for p in placements}
    if rc.json:
        out = {"config": asdict(rc), "results": {p: r.to_dict() for p, r in results.items()}}
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"train {rc.model} on {rc.cluster}: tp={rc.tp} pp={rc.pp} global batch {rc.global_batch}, micro-batch "
          f"{rc.micro_batch}, recompute {rc.recompute}")
    for p, r in results.items():
        _print(r, p)
    if len(results) == 2:
        print(f"nic-aware / naive: {results['nic-aware'].tflops_per_gpu / results['naive'].tflops_per_gpu:.2f}x")
    return 0


def add_parser(sub) -> None:
    from llmsim.cli.run import int_list

    t = sub.add_parser("train", help="simulate one training step of a parallel plan on a cluster",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    t.add_argument("config", nargs="?", help="YAML train config (keys of sim/training_config.TrainRunConfig)")
    t.add_argument("--model", help="model name or config.json path (default: gpt-7.5b)")
    t.add_argument("--cluster", help="built-in cluster (simulate list clusters) or a cluster YAML (default: holmes-ib-roce)")
    t.add_argument("--num-nodes", type=int, help="servers of a one-group --cluster (default: the cluster's)")
    t.add_argument("--tp", type=int, help="tensor-parallel degree (default: 4)")
    t.add_argument("--pp", type=int, help="pipeline-parallel degree (default: 2)")
    t.add_argument("--dp", type=int, help="default: the cluster's devices / (tp x pp)")
    t.add_argument("--ep", type=int, help="expert-parallel degree of a MoE model (default: 1)")
    t.add_argument("--placement", choices=["nic-aware", "naive", "both"],
                   help="rank placement on the cluster; both = compare the two (default: nic-aware)")
    t.add_argument("--layer-split", type=int_list, help="layers per stage, e.g. 19,17 (default: auto)")
    t.add_argument("--global-batch", type=int, help="samples per optimizer step (default: 512)")
    t.add_argument("--micro-batch", type=int, help="samples per pipeline micro-batch (default: 4)")
    t.add_argument("--seq-len", type=int, help="tokens per sample (default: 2048)")
    t.add_argument("--recompute", choices=["none", "full"], help="activation recomputation (default: full)")
    t.add_argument("--grad-bytes", type=float, help="bytes per gradient in the DP all-reduce (4 fp32, 2 bf16)")
    t.add_argument("--overlap-grad-reduce", action="store_true", default=False,
                   help="overlap the gradient all-reduce with the last backward")
    t.add_argument("--distributed-optimizer", action="store_true", default=False,
                   help="reduce-scatter gradients and shard Adam state over DP (ZeRO-1), all-gather weights")
    t.add_argument("--json", action="store_true", default=None, help="print one JSON object instead of the table")
    t.set_defaults(func=run_train)
