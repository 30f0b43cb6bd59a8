"""The vocabulary shared by clusters (hwmodels/cluster.py) and collectives (hwmodels/collectives.py).

A cluster resolves a communication group (a set of concrete devices) into a :class:`GroupTopology`:
how many ranks, how they sit on nodes, and the link class joining ranks inside a node and between
nodes. Collective models consume only that, so they never walk the cluster graph themselves.

Bandwidths are bytes per second per rank in one direction (what one rank can push while all
ranks of the group push at once); latencies are seconds per hop.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmsim.workloads.errors import ConfigError

# Transports a collective runs over. Inside a node: nvlink, xgmi (AMD Infinity Fabric), pcie
# (through host bridges / a PCIe switch) or roce (Gaudi's on-chip RoCE ports, which join the cards of
# a server all-to-all). Between nodes: ib (InfiniBand verbs), roce (RoCE v2 verbs) or tcp (NCCL's
# socket transport over any IP network, including IPoIB and plain Ethernet).
INTRA_TRANSPORTS = ("nvlink", "xgmi", "pcie", "roce")
INTER_TRANSPORTS = ("ib", "roce", "tcp")
TRANSPORTS = ("nvlink", "xgmi", "pcie", "ib", "roce", "tcp")


@dataclass(frozen=True)
class LinkClass:
    """One class of link a group's traffic crosses: ``transport`` (see TRANSPORTS),
    ``bandwidth_bytes_per_s`` per rank per direction, ``latency_s`` per hop."""

    transport: str
    bandwidth_bytes_per_s: float
    latency_s: float

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        bw = self.bandwidth_bytes_per_s
        if isinstance(bw, bool) or not isinstance(bw, (int, float)) or not math.isfinite(bw) or bw <= 0:
            raise ConfigError(f"bandwidth_bytes_per_s must be a finite number > 0, got {bw!r}")
        lat = self.latency_s
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not math.isfinite(lat) or lat < 0:
            raise ConfigError(f"latency_s must be a finite number >= 0, got {lat!r}")
        object.__setattr__(self, "bandwidth_bytes_per_s", float(bw))
        object.__setattr__(self, "latency_s", float(lat))


@dataclass(frozen=True)
class GroupTopology:
    """A communication group as placed: ``ranks`` in all over ``nodes`` nodes with at most
    ``ranks_per_node`` on any one of them; ``intra`` joins ranks on one node (None when every
    node holds one rank), ``inter`` joins nodes (None when the group sits on one node).

    ``inter.bandwidth_bytes_per_s`` is what one rank gets when all the group's ranks on a node
    send across nodes at once (the node's NIC bandwidth on the chosen transport shared among them,
    capped by the rank's own NIC/rail). ``host_topology``: ``intra`` comes from a described PCIe host
    topology (the ring's shared bottleneck over card links, switch uplinks, root complexes and the socket
    link), so the alpha-beta model prices the group even on one node.
    """

    ranks: int
    nodes: int
    ranks_per_node: int
    intra: LinkClass | None
    inter: LinkClass | None
    host_topology: bool = False

    def __post_init__(self) -> None:
        for name in ("ranks", "nodes", "ranks_per_node"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if self.nodes > self.ranks or self.ranks_per_node > self.ranks:
            raise ConfigError(f"a group of {self.ranks} ranks cannot span {self.nodes} nodes "
                              f"with {self.ranks_per_node} per node")
        if self.nodes * self.ranks_per_node < self.ranks:
            raise ConfigError(f"{self.nodes} nodes x {self.ranks_per_node} ranks per node hold fewer than "
                              f"{self.ranks} ranks")
        if self.nodes > 1 and self.inter is None:
            raise ConfigError("a group spanning several nodes needs an `inter` link class")
        if not isinstance(self.host_topology, bool):
            raise ConfigError(f"host_topology must be true or false, got {self.host_topology!r}")
        if self.ranks_per_node > 1 and self.intra is None:
            raise ConfigError("a group with several ranks on a node needs an `intra` link class")
        if self.intra is not None and self.intra.transport not in INTRA_TRANSPORTS:
            raise ConfigError(f"intra-node transport must be one of {', '.join(INTRA_TRANSPORTS)}, "
                              f"got {self.intra.transport!r}")
        if self.inter is not None and self.inter.transport not in INTER_TRANSPORTS:
            raise ConfigError(f"inter-node transport must be one of {', '.join(INTER_TRANSPORTS)}, "
                              f"got {self.inter.transport!r}")

    @property
    def single_node(self) -> bool:
        return self.nodes == 1


def single_node_group(ranks: int, intra: LinkClass) -> GroupTopology:
    """A group of ``ranks`` devices on one node joined by ``intra``."""
    return GroupTopology(ranks=ranks, nodes=1, ranks_per_node=ranks, intra=intra if ranks > 1 else None,
                         inter=None)


def shared_bottleneck(paths: Sequence[Sequence[str]], capacity: Mapping[str, float]) -> float:
    """Bytes/s each of several concurrent flows gets when flow ``i`` crosses the links ``paths[i]``
    (a link may appear twice in one path, e.g. a host-memory bounce) and link ``l`` carries
    ``capacity[l]`` bytes/s: min over used links of capacity / flows crossing it (every flow moves
    the same bytes per step, as the edges of a ring do)."""
    count: dict[str, int] = {}
    for path in paths:
        for link in path:
            count[link] = count.get(link, 0) + 1
    if not count:
        raise ConfigError("shared_bottleneck needs at least one flow crossing a link")
    return min(capacity[link] / c for link, c in count.items())
