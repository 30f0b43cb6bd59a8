"""`simulate train`: one training step of a parallel plan on a cluster (sim/training.py).

With no arguments it runs the Holmes scenario: GPT-7.5B on the mixed 4 InfiniBand + 4 RoCE A100
cluster with tensor parallel 4, pipeline parallel 2, data parallel 8, the NIC-aware placement and
the layer split sized to each stage's speed. A YAML file gives any of the keys of
:class:`TrainRunConfig` (strict: unknown keys are errors); flags override it.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, fields

from llmsim.workloads.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TrainRunConfig:
    """``cluster`` a built-in name or a YAML (``num_nodes`` replicates a one-group cluster);
    ``placement`` nic-aware | naive | both (prints the two side by side); ``layer_split`` a list of
    layers per stage or ``auto`` (sized to each stage's speed; even for naive)."""

    model: str = "gpt-7.5b"
    cluster: str = "holmes-ib-roce"
    num_nodes: int | None = None
    tp: int = 4
    pp: int = 2
    dp: int | None = None
    ep: int = 1
    placement: str = "nic-aware"
    layer_split: object = "auto"
    global_batch: int = 512
    micro_batch: int = 4
    seq_len: int | None = 2048
    recompute: str = "full"
    grad_bytes: float = 4.0
    overlap_grad_reduce: bool = False
    distributed_optimizer: bool = False
    json: bool = False

    def __post_init__(self) -> None:
        if self.placement not in ("nic-aware", "naive", "both"):
            raise ConfigError(f"`placement` must be nic-aware, naive or both, got {self.placement!r}")
        ls = self.layer_split
        if not (ls == "auto" or ls is None or (isinstance(ls, (list, tuple)) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in ls))):
            raise ConfigError(f"`layer_split` must be 'auto' or a list of layer counts, got {ls!r}")


def load_train_config(path: str | None, overrides: dict) -> TrainRunConfig:
    data = {}
    if path:
        from llmsim.workloads.yamlio import read_yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = read_yaml(fh.read(), path) or {}
        except OSError as e:
            raise ConfigError(f"cannot read train config {path!r}: {e.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of train settings")
    names = [f.name for f in fields(TrainRunConfig)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; allowed keys: {', '.join(names)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainRunConfig(**data)
    except TypeError as e:
        raise ConfigError(f"train config: {e}") from None


def simulate_config(rc: TrainRunConfig, placement: str):
    """The TrainResult of ``rc`` under ``placement`` ('nic-aware' or 'naive')."""
    from llmsim.hwmodels.cluster import get_cluster
    from llmsim.hwmodels.plans import ParallelPlan
    from llmsim.sim.training import train
    from llmsim.workloads.models import get_model

    cluster = get_cluster(rc.cluster, num_nodes=rc.num_nodes)
    dp = rc.dp if rc.dp is not None else cluster.num_devices // (rc.tp * rc.pp)
    if dp < 1:
        raise ConfigError(f"cluster {cluster.name} has {cluster.num_devices} devices, fewer than tp x pp = "
                          f"{rc.tp * rc.pp}")
    split = None if rc.layer_split in ("auto", None) else tuple(rc.layer_split)
    plan = ParallelPlan(tp=rc.tp, pp=rc.pp, dp=dp, ep=rc.ep, layer_split=split)
    plan.check(get_model(rc.model))
    return train(rc.model, cluster, plan, placement=placement, global_batch=rc.global_batch,
                 micro_batch=rc.micro_batch, seq_len=rc.seq_len, recompute=rc.recompute, grad_bytes=rc.grad_bytes,
                 overlap_grad_reduce=rc.overlap_grad_reduce, distributed_optimizer=rc.distributed_optimizer)


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


def add_parser(sub, func, int_list) -> None:
    t = sub.add_parser("train", help="simulate one training step of a parallel plan on a cluster",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    t.add_argument("config", nargs="?", help="YAML train config (keys of sim/train_cli.TrainRunConfig)")
    t.add_argument("--model")
    t.add_argument("--cluster", help="built-in cluster (simulate clusters) or a cluster YAML")
    t.add_argument("--num-nodes", type=int)
    t.add_argument("--tp", type=int)
    t.add_argument("--pp", type=int)
    t.add_argument("--dp", type=int, help="default: the cluster's devices / (tp x pp)")
    t.add_argument("--ep", type=int)
    t.add_argument("--placement", choices=["nic-aware", "naive", "both"])
    t.add_argument("--layer-split", type=int_list, help="layers per stage, e.g. 19,17 (default: auto)")
    t.add_argument("--global-batch", type=int)
    t.add_argument("--micro-batch", type=int)
    t.add_argument("--seq-len", type=int)
    t.add_argument("--recompute", choices=["none", "full"])
    t.add_argument("--grad-bytes", type=float, help="bytes per gradient in the DP all-reduce (4 fp32, 2 bf16)")
    t.add_argument("--overlap-grad-reduce", action="store_true", default=False,
                   help="overlap the gradient all-reduce with the last backward")
    t.add_argument("--distributed-optimizer", action="store_true", default=False,
                   help="reduce-scatter gradients and shard Adam state over DP (ZeRO-1), all-gather weights")
    t.add_argument("--json", action="store_true", default=None)
    t.set_defaults(func=func)
