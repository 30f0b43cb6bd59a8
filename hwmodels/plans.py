"""Parallel plans and their placement on a cluster's devices.

A :class:`ParallelPlan` is ``dp`` data-parallel replicas x ``pp`` pipeline stages x ``tp``
tensor-parallel ranks, with ``ep`` expert-parallel ranks for MoE layers inside each TP group
(attention is split ``tp`` ways, experts ``ep`` ways, each expert ``tp / ep`` ways), and the layers
of each stage (``layer_split``; even by default). :func:`place` puts every rank on a concrete
device of a :class:`~llmsim.hwmodels.cluster.ClusterSpec` and returns a :class:`Placement`, whose
``devices[d, s, t]`` is the device of DP replica ``d``, stage ``s``, TP rank ``t``.

Placement strategies:

* ``naive`` -- Megatron-LM's rank order over the devices as the cluster lists them (TP ranks
  consecutive, then DP, then PP: ``rank = (s * dp + d) * tp + t``), and one network transport for
  the whole job: the one every pair of its servers shares. That is what a stock framework gets on
  a cluster whose NICs differ: NCCL cannot join an InfiniBand and a RoCE NIC over RDMA, so the
  job falls back to TCP sockets everywhere (Holmes, arXiv 2312.03549, Sec. 2).
* ``nic-aware`` -- Holmes' placement: servers are split into NIC-homogeneous sets (servers that
  reach each other over RDMA), every pipeline stage is placed inside one set so its TP and DP
  groups never cross NIC types, and each group runs over the best transport its own members share
  (Holmes' automatic NIC selection); only pipeline point-to-point traffic crosses sets.
* ``explicit`` -- the caller gives the device of every rank.

Invariant P1: a placement never puts two ranks on one device (checked on construction).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llmsim.hwmodels.network import GroupTopology, LinkClass
from llmsim.workloads.errors import ConfigError, PlanError
from llmsim.workloads.models import ModelSpec

PLACEMENTS = ("nic-aware", "naive", "explicit")
TRANSPORT_POLICIES = ("per-group", "job")


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise PlanError(f"`{name}` must be a positive integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class ParallelPlan:
    """``dp x pp x tp`` devices; ``ep`` divides ``tp`` (experts sharded inside the TP group);
    ``layer_split`` gives the layers of each stage (sums to the model's layers) or None (even)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    layer_split: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if self.layer_split is not None:
            split = tuple(self.layer_split)
            if len(split) != self.pp:
                raise PlanError(f"`layer_split` has {len(split)} stages but pp={self.pp}; give one layer "
                                f"count per stage")
            for n in split:
                if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
                    raise PlanError(f"`layer_split` entries must be positive integers, got {split}")
            object.__setattr__(self, "layer_split", tuple(int(n) for n in split))

    @property
    def num_devices(self) -> int:
        return self.dp * self.pp * self.tp

    def check(self, model: ModelSpec, num_devices: int | None = None) -> None:
        """Raise PlanError when the plan cannot run ``model`` (on ``num_devices`` devices)."""
        m, tp, ep, pp = model, self.tp, self.ep, self.pp
        if m.num_heads % tp:
            divs = [i for i in range(1, min(m.num_heads, 64) + 1) if m.num_heads % i == 0]
            raise PlanError(f"tp={tp} must divide the {m.num_heads} attention heads of {m.name}; use a tp "
                            f"among {divs}")
        if m.mla is None and m.num_kv_heads % tp and tp % m.num_kv_heads:
            raise PlanError(f"tp={tp} and the {m.num_kv_heads} KV heads of {m.name} must divide one another "
                            f"(engines replicate KV heads only when tp is a multiple of them)")
        if m.moe is not None:
            if m.moe.num_experts % ep:
                raise PlanError(f"ep={ep} must divide the {m.moe.num_experts} experts of {m.name}")
            if ep > tp or tp % ep:
                raise PlanError(f"ep={ep} must divide tp={tp}: experts are sharded inside the TP group "
                                f"(expert parallelism across DP replicas is not modelled)")
        elif ep != 1:
            raise PlanError(f"ep={ep} given but {m.name} has no experts; use ep=1")
        if m.num_layers < pp:
            raise PlanError(f"pp={pp} exceeds the {m.num_layers} layers of {m.name}")
        if self.layer_split is not None and sum(self.layer_split) != m.num_layers:
            raise PlanError(f"`layer_split` {list(self.layer_split)} sums to {sum(self.layer_split)} but "
                            f"{m.name} has {m.num_layers} layers")
        if num_devices is not None and num_devices != self.num_devices:
            raise PlanError(f"dp x pp x tp = {self.dp} x {self.pp} x {self.tp} = {self.num_devices} must equal "
                            f"the {num_devices} devices given; change dp, pp or tp")

    def stage_layers(self, model: ModelSpec) -> tuple[int, ...]:
        """Layers of each stage: ``layer_split`` or an even split (the first stages take the rest)."""
        if self.layer_split is not None:
            return self.layer_split
        base, rest = divmod(model.num_layers, self.pp)
        return tuple(base + (1 if s < rest else 0) for s in range(self.pp))


@dataclass(frozen=True, eq=False)
class Placement:
    """Where every rank of ``plan`` runs: ``devices[d, s, t]`` on ``cluster``; ``transport_policy``
    ``per-group`` (each group uses the best transport its members share) or ``job`` (every group
    crossing servers uses the transport the whole job shares)."""

    cluster: object
    plan: ParallelPlan
    devices: np.ndarray
    strategy: str
    transport_policy: str = "per-group"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self.plan
        dev = np.asarray(self.devices, dtype=np.int64)
        if dev.shape != (p.dp, p.pp, p.tp):
            raise PlanError(f"a placement of dp={p.dp} pp={p.pp} tp={p.tp} needs a (dp, pp, tp) device array, "
                            f"got shape {dev.shape}")
        n = self.cluster.num_devices
        if dev.size and (dev.min() < 0 or dev.max() >= n):
            raise PlanError(f"placement names device {int(dev.max() if dev.max() >= n else dev.min())} but cluster "
                            f"{self.cluster.name} has devices 0..{n - 1}")
        flat = dev.ravel()
        if np.unique(flat).size != flat.size:
            vals, counts = np.unique(flat, return_counts=True)
            raise PlanError(f"placement puts several ranks on device {int(vals[counts > 1][0])}; every rank "
                            f"needs its own device")
        if self.transport_policy not in TRANSPORT_POLICIES:
            raise ConfigError(f"transport_policy must be one of {', '.join(TRANSPORT_POLICIES)}, "
                              f"got {self.transport_policy!r}")
        dev.setflags(write=False)
        object.__setattr__(self, "devices", dev)

    # -- groups -------------------------------------------------------------------------------
    def tp_group(self, d: int, s: int) -> tuple[int, ...]:
        return tuple(int(x) for x in self.devices[d, s, :])

    def dp_group(self, s: int, t: int) -> tuple[int, ...]:
        return tuple(int(x) for x in self.devices[:, s, t])

    def stage_devices(self, s: int) -> tuple[int, ...]:
        return tuple(int(x) for x in self.devices[:, s, :].ravel())

    def all_devices(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.devices.ravel())

    def stage_device_spec(self, s: int):
        """The device kind of stage ``s`` (PlanError if its devices differ)."""
        kinds = {self.cluster.device(i).name for i in self.stage_devices(s)}
        if len(kinds) > 1:
            raise PlanError(f"stage {s} mixes device kinds {sorted(kinds)}; place each stage on one kind")
        return self.cluster.device(self.stage_devices(s)[0])

    # -- network ------------------------------------------------------------------------------
    def group_topology(self, group: Sequence[int], concurrent: Sequence[int] | None = None) -> GroupTopology:
        """The topology ``group`` runs over under this placement's transport policy, with the NIC
        bandwidth shared among all ``concurrent`` devices (a superset of ``group`` that communicates
        across servers at the same time, e.g. every DP group of a stage)."""
        key = (tuple(group), None if concurrent is None else tuple(concurrent))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        topo = self.cluster.group_topology(group)
        if topo.inter is not None:
            inter = topo.inter
            if concurrent is not None:
                shared = self.cluster.group_topology(concurrent).inter
                if shared is not None and shared.transport == inter.transport:
                    inter = LinkClass(inter.transport, min(inter.bandwidth_bytes_per_s, shared.bandwidth_bytes_per_s),
                                      max(inter.latency_s, shared.latency_s))
            if self.transport_policy == "job":
                job = self._job_inter()
                if job is not None and job.transport != inter.transport:
                    inter = LinkClass(job.transport, min(job.bandwidth_bytes_per_s, inter.bandwidth_bytes_per_s),
                                      max(job.latency_s, inter.latency_s))
            topo = GroupTopology(ranks=topo.ranks, nodes=topo.nodes, ranks_per_node=topo.ranks_per_node,
                                 intra=topo.intra, inter=inter, host_topology=topo.host_topology)
        self._cache[key] = topo
        return topo

    def _job_inter(self) -> LinkClass | None:
        if "job" not in self._cache:
            self._cache["job"] = self.cluster.group_topology(self.all_devices()).inter
        return self._cache["job"]

    def stage_link(self, s: int, d: int = 0, *, replica_only: bool = False) -> GroupTopology:
        """Topology of one pipeline send from stage ``s`` to ``s + 1`` of DP replica ``d`` (one TP rank
        to its peer), the NICs shared by every rank of both stages sending at once (only replica
        ``d``'s ranks when ``replica_only``: serving replicas are not in lock-step)."""
        a, b = int(self.devices[d, s, 0]), int(self.devices[d, s + 1, 0])
        if replica_only:
            concurrent = self.tp_group(d, s) + self.tp_group(d, s + 1)
        else:
            concurrent = self.stage_devices(s) + self.stage_devices(s + 1)
        return self.group_topology((a, b), concurrent)

    def replica_devices(self, d: int) -> tuple[int, ...]:
        return tuple(int(x) for x in self.devices[d].ravel())

    def describe(self) -> dict:
        p = self.plan
        return {"strategy": self.strategy, "transport_policy": self.transport_policy, "dp": p.dp, "pp": p.pp,
                "tp": p.tp, "ep": p.ep,
                "stages": [{"stage": s, "nodes": sorted({int(self.cluster.node_of(i)) for i in self.stage_devices(s)}),
                            "node_kinds": sorted({self.cluster.node_kind(self.cluster.node_of(i))
                                                  for i in self.stage_devices(s)})}
                           for s in range(p.pp)]}


def rdma_sets(cluster) -> list[list[int]]:
    """Servers grouped into NIC-homogeneous sets: two servers are in one set when they reach each
    other over RDMA (ib or roce). Sets are ordered by their first server."""
    sets: list[list[int]] = []
    for node in range(cluster.num_nodes):
        for s in sets:
            if cluster.transport(s[0], node) in ("ib", "roce"):
                s.append(node)
                break
        else:
            sets.append([node])
    return sets


def place(plan: ParallelPlan, cluster, strategy: str = "nic-aware", *, devices=None,
          dp_communicates: bool = True) -> Placement:
    """Place ``plan`` on ``cluster`` (see the module docstring for the strategies). Uses the first
    ``plan.num_devices`` devices the strategy picks; raises PlanError when they do not exist.

    ``dp_communicates=False`` (serving: DP replicas never talk to each other) relaxes nic-aware to
    keeping every TP group inside one NIC-homogeneous server set, a replica's stages next to each
    other, and falls back to the cluster's order when no TP group fits in a set."""
    if strategy not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)}, got {strategy!r}")
    p = plan
    n = p.num_devices
    if n > cluster.num_devices:
        raise PlanError(f"the plan needs dp x pp x tp = {n} devices but cluster {cluster.name} has "
                        f"{cluster.num_devices}; lower dp/pp/tp or use a larger cluster")
    if strategy == "explicit":
        if devices is None:
            raise ConfigError("placement 'explicit' needs `devices`, a (dp, pp, tp) array of device indices")
        return Placement(cluster, plan, np.asarray(devices), "explicit")
    if devices is not None:
        raise ConfigError(f"`devices` is only used with placement 'explicit', not {strategy!r}")
    if strategy == "naive":
        order = np.arange(n, dtype=np.int64)
        arr = order.reshape(p.pp, p.dp, p.tp).transpose(1, 0, 2)
        return Placement(cluster, plan, arr, "naive", transport_policy="job")
    pools = [[dev for node in s for dev in cluster.node_devices(node)] for s in rdma_sets(cluster)]
    if not dp_communicates:
        groups = []
        for pool in pools:
            for i in range(0, len(pool) - p.tp + 1, p.tp):
                groups.append(pool[i:i + p.tp])
        if len(groups) >= p.dp * p.pp:
            arr = np.array(groups[:p.dp * p.pp], dtype=np.int64).reshape(p.dp, p.pp, p.tp)
        else:  # TP groups larger than a NIC-homogeneous set: the cluster's order, per-group transports
            arr = np.arange(n, dtype=np.int64).reshape(p.dp, p.pp, p.tp)
        return Placement(cluster, plan, arr, "nic-aware", transport_policy="per-group")
    # nic-aware: fill stages from NIC-homogeneous sets of servers, never splitting a stage
    per_stage = p.dp * p.tp
    stages = []
    for pool in pools:
        while len(pool) >= per_stage and len(stages) < p.pp:
            stages.append(pool[:per_stage])
            pool = pool[per_stage:]
    if len(stages) < p.pp:
        if len(pools) == 1 or per_stage > max(len(x) for x in pools):
            sizes = ", ".join(str(len(x)) for x in pools)
            raise PlanError(f"cannot place {p.pp} stages of dp x tp = {per_stage} devices inside NIC-homogeneous "
                            f"server sets of {sizes} devices on {cluster.name}; lower dp or tp, or use "
                            f"placement 'naive'")
        raise PlanError(f"only {len(stages)} of {p.pp} stages of {per_stage} devices fit inside the NIC-homogeneous "
                        f"server sets of {cluster.name}; change pp or dp")
    arr = np.array(stages, dtype=np.int64).reshape(p.pp, p.dp, p.tp).transpose(1, 0, 2)
    return Placement(cluster, plan, arr, "nic-aware", transport_policy="per-group")


def transfer_coefficients(cluster, src: Sequence[int], dst: Sequence[int]) -> tuple[float, float]:
    """``(alpha_s, beta_s_per_byte)`` of a bulk transfer of ``B`` bytes spread evenly over the
    devices of ``src`` to those of ``dst`` (a KV-cache hand-over, a stage's activations): every
    lane (``src[i] -> dst[i]``) sends ``B / lanes`` at once as one NCCL send/recv, its bandwidth the
    lane's share of :meth:`ClusterSpec.transfer_link`; time = ``alpha + beta * B``."""
    from llmsim.hwmodels.collectives import collective_coefficients

    lanes = min(len(src), len(dst))
    link = cluster.transfer_link(src, dst)
    pair = cluster.group_topology((int(src[0]), int(dst[0])))
    per_lane = link.bandwidth_bytes_per_s / lanes
    if pair.inter is not None:
        inter = pair.inter
        topo = GroupTopology(ranks=2, nodes=2, ranks_per_node=1, intra=None,
                             inter=LinkClass(inter.transport, min(inter.bandwidth_bytes_per_s, per_lane),
                                             max(inter.latency_s, link.latency_s)))
    else:
        intra = pair.intra
        topo = GroupTopology(ranks=2, nodes=1, ranks_per_node=2, inter=None,
                             intra=LinkClass(intra.transport, min(intra.bandwidth_bytes_per_s, per_lane),
                                             max(intra.latency_s, link.latency_s)))
    coef = collective_coefficients("send_recv", topo, arch=cluster.device(int(src[0])).arch_class)
    best = int(np.argmin(coef[:, 1]))  # bulk transfers run at the bandwidth-optimal protocol
    return float(coef[best, 0]), float(coef[best, 1]) / lanes
