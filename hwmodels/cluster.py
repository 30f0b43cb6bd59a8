"""Clusters: servers of catalogued devices, their intra-node fabric, NICs and switched networks.

A :class:`ClusterSpec` is a list of node groups (identical servers) plus the networks their NICs
attach to. It numbers devices globally (node group order, then servers, then local index) and
resolves a set of devices into the :class:`~llmsim.hwmodels.network.GroupTopology` and
:class:`~llmsim.hwmodels.network.LinkClass` values collective and transfer models consume.

Reading guide: ``ClusterSpec.group_topology`` (how a group is priced), ``ClusterSpec.transport``
(the Holmes rule), ``natural_cluster`` (what ``--device D --num-devices N`` means) and
``hwmodels/data/clusters/README.md`` (the YAML schema and the sources of each built-in).

Units: bytes/s per direction, seconds. NIC bandwidths are written in decimal Gb/s in YAML
(``bandwidth_gbit_s``) and held in bytes/s (x 1e9 / 8).

Transport rule (Holmes, arXiv 2312.03549): RDMA needs both ends on the same RDMA network. Servers that
share an ``ib`` network talk ``ib``; else a shared ``roce`` network gives ``roce``; else a shared
ethernet network gives ``tcp`` (NCCL's socket transport); else there is no path (PlanError). A group
spanning several servers uses one network all of them attach to, so a group mixing IB-only and
RoCE-only servers runs TCP over their common ethernet network.
"""
from __future__ import annotations

import functools
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmsim.hwmodels.devices import DeviceSpec, Link, _check_int, _check_number, get_device
from llmsim.hwmodels.network import INTRA_TRANSPORTS, GroupTopology, LinkClass, shared_bottleneck
from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError, MissingDataError, PlanError, UnknownNameError
from llmsim.workloads.naming import NameIndex
from llmsim.workloads.yamlio import check_fields

if TYPE_CHECKING:  # networkx is imported where the graph is built, not on every run
    import networkx as nx

__all__ = [
    "NETWORK_KINDS", "FABRIC_KINDS", "TRANSPORT_OF_NETWORK",
    "NetworkSpec", "NicSpec", "FabricSpec", "PcieSwitchSpec", "HostTopologySpec", "NodeGroupSpec", "ClusterSpec",
    "cluster_from_dict", "load_cluster_file", "get_cluster", "list_clusters", "natural_cluster",
    "with_bandwidth_scale",
]

#: Kinds of switched network (and of the NICs attached to them).
NETWORK_KINDS: tuple[str, ...] = ("ib", "roce", "ethernet")
#: Intra-node fabrics a YAML file may name (the hwmodels.network intra transports).
FABRIC_KINDS: tuple[str, ...] = INTRA_TRANSPORTS
#: The transport NCCL runs over each network kind.
TRANSPORT_OF_NETWORK: Mapping[str, str] = {"ib": "ib", "roce": "roce", "ethernet": "tcp"}
# Preference between shared networks (lower is better) and strength of a transport (higher is better).
_NETWORK_PREFERENCE = {"ib": 0, "roce": 1, "ethernet": 2}
_TRANSPORT_STRENGTH = {"tcp": 0, "roce": 1, "ib": 2}
_SOURCE_TAGS = ("[P]", "[S]", "[D]", "[U]")
_SCHEMA_VERSION = 1
_GBIT = 1e9 / 8.0  # bytes/s per Gb/s (decimal)


def _check_source(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {value!r}")
    if not any(tag in value for tag in _SOURCE_TAGS):
        raise ConfigError(f"`{name}` must carry a source tag ({', '.join(_SOURCE_TAGS)}), got {value!r}")
    return value


def _check_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {value!r}")
    return value


def _check_kind(name: str, value: Any, kinds: tuple[str, ...]) -> str:
    if value not in kinds:
        raise ConfigError(f"`{name}` must be one of {', '.join(kinds)}, got {value!r}")
    return value


# --------------------------------------------------------------------------- specs

@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """A switched network. Bandwidth across it is the NICs' bandwidth / ``oversubscription`` (>= 1)."""

    name: str
    kind: str
    source: str
    oversubscription: float = 1.0

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        _check_kind("kind", self.kind, NETWORK_KINDS)
        ratio = _check_number("oversubscription", self.oversubscription)
        if ratio < 1.0:
            raise ConfigError(f"`oversubscription` must be >= 1 (1 = non-blocking), got {self.oversubscription!r}")
        object.__setattr__(self, "oversubscription", ratio)
        _check_source("source", self.source)

    @property
    def transport(self) -> str:
        """The transport NCCL runs over this network: ib, roce or tcp."""
        return TRANSPORT_OF_NETWORK[self.kind]


@dataclass(frozen=True, kw_only=True)
class NicSpec:
    """``count`` NICs per server of ``bandwidth_bytes_per_s`` each (per direction) on ``network``.

    ``per_device``: the NICs are rails, one per device (DGX style); otherwise the server's devices
    share all of them.
    """

    kind: str
    count: int
    bandwidth_bytes_per_s: float
    latency_s: float
    network: str
    source: str
    per_device: bool = False

    def __post_init__(self) -> None:
        _check_kind("kind", self.kind, NETWORK_KINDS)
        object.__setattr__(self, "count", _check_int("count", self.count))
        object.__setattr__(self, "bandwidth_bytes_per_s",
                           _check_number("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s))
        object.__setattr__(self, "latency_s", _check_number("latency_s", self.latency_s, strict=False))
        _check_name("network", self.network)
        if not isinstance(self.per_device, bool):
            raise ConfigError(f"`per_device` must be true or false, got {self.per_device!r}")
        _check_source("source", self.source)

    @property
    def total_bandwidth_bytes_per_s(self) -> float:
        """All of the server's NICs on this network together, bytes/s per direction."""
        return self.count * self.bandwidth_bytes_per_s

    @property
    def bandwidth_gbit_s(self) -> float:
        """Per-NIC bandwidth in decimal Gb/s."""
        return self.bandwidth_bytes_per_s / _GBIT

    def rank_share(self, ranks: int) -> float:
        """Bytes/s one of ``ranks`` ranks on a server gets when all of them send at once (before the
        network's oversubscription): rails give each rank at most its own NIC; shared NICs are split."""
        share = self.total_bandwidth_bytes_per_s / ranks
        return min(self.bandwidth_bytes_per_s, share) if self.per_device else share

    @property
    def single_rank_bandwidth(self) -> float:
        """Bytes/s one rank gets alone: its rail, or all the shared NICs."""
        return self.bandwidth_bytes_per_s if self.per_device else self.total_bandwidth_bytes_per_s


@dataclass(frozen=True, kw_only=True)
class FabricSpec:
    """The intra-node fabric: ``bandwidth_bytes_per_s`` per device per direction, ``latency_s`` per hop.

    ``kind`` is nvlink, xgmi or pcie; a fabric taken from a device whose scale-up link has another
    kind (Gaudi2's on-die RoCE) keeps that kind and cannot be priced as an intra-node LinkClass.
    """

    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float
    source: str

    def __post_init__(self) -> None:
        _check_name("kind", self.kind)
        object.__setattr__(self, "bandwidth_bytes_per_s",
                           _check_number("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s))
        object.__setattr__(self, "latency_s", _check_number("latency_s", self.latency_s, strict=False))
        _check_name("source", self.source)


@dataclass(frozen=True, kw_only=True)
class PcieSwitchSpec:
    """A PCIe switch (or a root port, for one card straight under the CPU) on CPU socket ``socket``
    holding the server's local ``devices``; its uplink to the socket's root complex carries
    ``uplink_bandwidth_bytes_per_s`` per direction and adds ``uplink_latency_s`` per crossing."""

    socket: int
    devices: tuple[int, ...]
    uplink_bandwidth_bytes_per_s: float
    uplink_latency_s: float
    source: str

    def __post_init__(self) -> None:
        if isinstance(self.socket, bool) or not isinstance(self.socket, int) or self.socket < 0:
            raise ConfigError(f"`socket` must be an integer >= 0, got {self.socket!r}")
        devs = self.devices
        if not isinstance(devs, (list, tuple)) or not devs or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in devs):
            raise ConfigError(f"`devices` must be a non-empty list of local device indices (integers >= 0), "
                              f"got {devs!r}")
        object.__setattr__(self, "devices", tuple(devs))
        object.__setattr__(self, "uplink_bandwidth_bytes_per_s",
                           _check_number("uplink_bandwidth_bytes_per_s", self.uplink_bandwidth_bytes_per_s))
        object.__setattr__(self, "uplink_latency_s",
                           _check_number("uplink_latency_s", self.uplink_latency_s, strict=False))
        _check_source("source", self.source)


@dataclass(frozen=True, kw_only=True)
class HostTopologySpec:
    """How a PCIe server's cards reach each other (docs/pcie_topologies.md).

    ``switches`` partition the local devices 0..devices_per_node-1; sockets are numbered 0..k-1. Each
    socket's root complex forwards at most ``root_complex_bandwidth_bytes_per_s`` (all flows through it
    together); ``socket_link_*`` is the inter-socket link (UPI / Infinity Fabric) per direction, needed
    when there are two or more sockets. ``p2p``: cards under one switch talk peer-to-peer; otherwise every
    transfer is staged through host memory (two copies: each pays the card-link latency, and the
    sender's root complex is crossed twice). Bandwidths bytes/s,
    latencies seconds.
    """

    switches: tuple[PcieSwitchSpec, ...]
    root_complex_bandwidth_bytes_per_s: float
    root_complex_latency_s: float
    p2p: bool
    source: str
    socket_link_bandwidth_bytes_per_s: float | None = None
    socket_link_latency_s: float | None = None

    def __post_init__(self) -> None:
        sw = tuple(self.switches)
        if not sw or any(not isinstance(x, PcieSwitchSpec) for x in sw):
            raise ConfigError(f"`switches` must list at least one PCIe switch, got {self.switches!r}")
        object.__setattr__(self, "switches", sw)
        object.__setattr__(self, "root_complex_bandwidth_bytes_per_s",
                           _check_number("root_complex_bandwidth_bytes_per_s", self.root_complex_bandwidth_bytes_per_s))
        object.__setattr__(self, "root_complex_latency_s",
                           _check_number("root_complex_latency_s", self.root_complex_latency_s, strict=False))
        if not isinstance(self.p2p, bool):
            raise ConfigError(f"`p2p` must be true or false, got {self.p2p!r}")
        _check_source("source", self.source)
        sockets = sorted({x.socket for x in sw})
        if sockets != list(range(len(sockets))):
            raise ConfigError(f"switch sockets must be numbered 0..k-1 without gaps, got {sockets}")
        if len(sockets) > 1:
            if self.socket_link_bandwidth_bytes_per_s is None or self.socket_link_latency_s is None:
                raise ConfigError(f"{len(sockets)} sockets need `socket_link` (bandwidth_bytes_per_s, latency_s, "
                                  f"source): the link between them")
            object.__setattr__(self, "socket_link_bandwidth_bytes_per_s",
                               _check_number("socket_link.bandwidth_bytes_per_s", self.socket_link_bandwidth_bytes_per_s))
            object.__setattr__(self, "socket_link_latency_s",
                               _check_number("socket_link.latency_s", self.socket_link_latency_s, strict=False))
        elif self.socket_link_bandwidth_bytes_per_s is not None:
            raise ConfigError("`socket_link` is given but every switch sits on socket 0; remove it or place "
                              "switches on socket 1")
        where: dict[int, int] = {}
        for i, x in enumerate(sw):
            for d in x.devices:
                if d in where:
                    raise ConfigError(f"device {d} sits under switches {where[d]} and {i}; each card sits under "
                                      f"exactly one switch")
                where[d] = i
        object.__setattr__(self, "_switch_of", where)

    @property
    def num_sockets(self) -> int:
        return 1 + max(x.socket for x in self.switches)

    def check_devices(self, devices_per_node: int) -> None:
        """ConfigError unless the switches hold exactly the local devices 0..devices_per_node-1."""
        held = set(self._switch_of)  # type: ignore[attr-defined]
        want = set(range(devices_per_node))
        if held != want:
            missing, extra = sorted(want - held), sorted(held - want)
            raise ConfigError(f"the switches must hold each local device 0..{devices_per_node - 1} once: "
                              + (f"missing {missing}" if missing else "") + ("; " if missing and extra else "")
                              + (f"not on this server {extra}" if extra else ""))

    def scaled(self, factor: float, note: str) -> HostTopologySpec:
        """A copy with every host link's bandwidth x ``factor``."""
        sw = tuple(replace(x, uplink_bandwidth_bytes_per_s=x.uplink_bandwidth_bytes_per_s * factor,
                           source=x.source + note) for x in self.switches)
        link = self.socket_link_bandwidth_bytes_per_s
        return replace(self, switches=sw, source=self.source + note,
                       root_complex_bandwidth_bytes_per_s=self.root_complex_bandwidth_bytes_per_s * factor,
                       socket_link_bandwidth_bytes_per_s=None if link is None else link * factor)

    def _path(self, a: int, b: int) -> tuple[list[str], float]:
        """Directed links (and latency beyond the cards' own links) of one transfer a -> b. Without p2p
        the sender writes a staging buffer in its socket's memory and the receiver reads it: the sender's
        root complex is crossed twice."""
        sa, sb = self._switch_of[a], self._switch_of[b]  # type: ignore[attr-defined]
        if self.p2p and sa == sb:
            return [], 0.0
        xa, xb = self.switches[sa], self.switches[sb]
        links = [f"up:{sa}", f"rc:{xa.socket}"]
        lat = xa.uplink_latency_s + self.root_complex_latency_s
        if not self.p2p:
            links.append(f"rc:{xa.socket}")
            lat += self.root_complex_latency_s
        if xa.socket != xb.socket:
            links += [f"socket:{xa.socket}>{xb.socket}", f"rc:{xb.socket}"]
            lat += self.socket_link_latency_s + self.root_complex_latency_s  # type: ignore[operator]
        links.append(f"down:{sb}")
        lat += xb.uplink_latency_s
        return links, lat

    def ring_link(self, local: Sequence[int], fabric: FabricSpec) -> LinkClass:
        """The per-rank pcie LinkClass of a ring over the server's ``local`` devices (>= 2), ordered as
        NCCL's ring search would (socket, switch, device): bandwidth = the shared bottleneck of the ring's
        concurrent edges (each card's own link at the fabric rate; switch uplinks; each socket's root
        complex, shared by every flow through it; the inter-socket link per direction); latency per hop =
        the slowest edge's."""
        order = sorted(local, key=lambda d: (self.switches[self._switch_of[d]].socket,  # type: ignore[attr-defined]
                                             self._switch_of[d], d))  # type: ignore[attr-defined]
        copies = 1 if self.p2p else 2
        cap: dict[str, float] = {}
        paths = []
        latency = 0.0
        for i, a in enumerate(order):
            b = order[(i + 1) % len(order)]
            links, lat = self._path(a, b)
            paths.append([f"out:{a}", f"in:{b}", *links])
            latency = max(latency, fabric.latency_s * copies + lat)
            cap[f"out:{a}"] = cap[f"in:{b}"] = fabric.bandwidth_bytes_per_s
        for i, x in enumerate(self.switches):
            cap[f"up:{i}"] = cap[f"down:{i}"] = x.uplink_bandwidth_bytes_per_s
        for k in range(self.num_sockets):
            cap[f"rc:{k}"] = self.root_complex_bandwidth_bytes_per_s
            for j in range(self.num_sockets):
                if j != k:
                    cap[f"socket:{k}>{j}"] = self.socket_link_bandwidth_bytes_per_s  # type: ignore[assignment]
        return LinkClass("pcie", shared_bottleneck(paths, cap), latency)


@dataclass(frozen=True, kw_only=True)
class NodeGroupSpec:
    """``count`` identical servers, each with ``devices_per_node`` ``device``s, a fabric and NICs."""

    name: str
    device: DeviceSpec
    devices_per_node: int
    fabric: FabricSpec
    source: str
    count: int = 1
    nics: tuple[NicSpec, ...] = ()
    host: HostTopologySpec | None = None

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if not isinstance(self.device, DeviceSpec):
            raise ConfigError(f"`device` must be a DeviceSpec, got {self.device!r}")
        object.__setattr__(self, "devices_per_node", _check_int("devices_per_node", self.devices_per_node))
        object.__setattr__(self, "count", _check_int("count", self.count))
        if not isinstance(self.fabric, FabricSpec):
            raise ConfigError(f"`fabric` must be a FabricSpec, got {self.fabric!r}")
        nics = tuple(self.nics)
        if any(not isinstance(n, NicSpec) for n in nics):
            raise ConfigError(f"`nics` must hold NicSpec objects, got {nics!r}")
        seen: set[str] = set()
        for i, nic in enumerate(nics):
            if nic.network in seen:
                raise ConfigError(f"nics[{i}]: two NIC entries attach to network {nic.network!r}; "
                                  f"give one entry per network (sum the counts)")
            seen.add(nic.network)
            if nic.per_device and nic.count != self.devices_per_node:
                raise ConfigError(f"nics[{i}]: `per_device: true` means one NIC per device, so `count` must be "
                                  f"devices_per_node = {self.devices_per_node}, got {nic.count}")
        object.__setattr__(self, "nics", nics)
        _check_source("source", self.source)
        if self.host is not None:
            if not isinstance(self.host, HostTopologySpec):
                raise ConfigError(f"`host` must be a HostTopologySpec, got {self.host!r}")
            if self.fabric.kind != "pcie":
                raise ConfigError(f"`host` describes a PCIe server, but the fabric is {self.fabric.kind!r}; "
                                  f"set fabric kind: pcie or remove `host`")
            try:
                self.host.check_devices(self.devices_per_node)
            except ConfigError as exc:
                raise ConfigError(f"host: {exc}") from None

    @property
    def num_devices(self) -> int:
        return self.count * self.devices_per_node


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A cluster: ``node_groups`` of identical servers and the ``networks`` their NICs attach to.

    Devices are numbered 0..N-1 node by node (group order, servers in a group, local index); servers
    0..S-1 in the same order. Derived tables (device -> server, server -> group) are built once; the
    networkx ``graph`` is built on first use and frozen.
    """

    name: str
    node_groups: tuple[NodeGroupSpec, ...]
    networks: tuple[NetworkSpec, ...] = ()
    description: str = ""
    sources: tuple[str, ...] = ()
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if not isinstance(self.description, str):
            raise ConfigError(f"`description` must be a string, got {self.description!r}")
        groups = tuple(self.node_groups)
        nets = tuple(self.networks)
        if not groups:
            raise ConfigError("`node_groups` must list at least one node group, got none")
        if any(not isinstance(g, NodeGroupSpec) for g in groups):
            raise ConfigError(f"`node_groups` must hold NodeGroupSpec objects, got {groups!r}")
        if any(not isinstance(n, NetworkSpec) for n in nets):
            raise ConfigError(f"`networks` must hold NetworkSpec objects, got {nets!r}")
        for label, names in (("node group", [g.name for g in groups]), ("network", [n.name for n in nets])):
            dup = next((x for i, x in enumerate(names) if x in names[:i]), None)
            if dup is not None:
                raise ConfigError(f"{label} name {dup!r} is used twice; names must be unique")
        by_name = {n.name: n for n in nets}
        used: set[str] = set()
        for gi, g in enumerate(groups):
            for ni, nic in enumerate(g.nics):
                net = by_name.get(nic.network)
                if net is None:
                    raise ConfigError(f"node_groups[{gi}] ({g.name}): nics[{ni}]: unknown network {nic.network!r}; "
                                      f"networks: {', '.join(by_name) or '(none)'}")
                if net.kind != nic.kind:
                    raise ConfigError(f"node_groups[{gi}] ({g.name}): nics[{ni}]: a {nic.kind} NIC cannot attach to "
                                      f"{net.kind} network {net.name!r}; make the kinds match")
                used.add(nic.network)
        for net in nets:
            if net.name not in used:
                raise ConfigError(f"network {net.name!r} has no NICs attached; attach a node group's NICs "
                                  f"to it or remove it")
        object.__setattr__(self, "node_groups", groups)
        object.__setattr__(self, "networks", nets)
        object.__setattr__(self, "sources", tuple(_check_name("sources", s) for s in self.sources))
        object.__setattr__(self, "_derived", {})
        # Per-server and per-device tables (lists for O(1) lookups in the hot path).
        node_group: list[int] = []
        node_first: list[int] = []
        dev_node: list[int] = []
        for gi, g in enumerate(groups):
            for _ in range(g.count):
                node = len(node_group)
                node_group.append(gi)
                node_first.append(len(dev_node))
                dev_node.extend([node] * g.devices_per_node)
        object.__setattr__(self, "_node_group", node_group)
        object.__setattr__(self, "_node_first", node_first)
        object.__setattr__(self, "_dev_node", dev_node)
        object.__setattr__(self, "_net_index", {n.name: i for i, n in enumerate(nets)})
        object.__setattr__(self, "_group_nics", [{nic.network: nic for nic in g.nics} for g in groups])
        object.__setattr__(self, "_net_cache", {})

    # ------------------------------------------------------------------ shape
    @property
    def num_devices(self) -> int:
        return len(self._dev_node)  # type: ignore[attr-defined]

    @property
    def num_nodes(self) -> int:
        return len(self._node_group)  # type: ignore[attr-defined]

    def _node(self, node: Any) -> int:
        try:
            i = operator.index(node)
        except TypeError:
            raise PlanError(f"server index must be an integer, got {node!r}") from None
        if isinstance(node, bool) or not 0 <= i < self.num_nodes:
            raise PlanError(f"server {node!r} is out of range: cluster {self.name!r} has {self.num_nodes} "
                            f"servers (0..{self.num_nodes - 1})")
        return i

    def _dev(self, device: Any) -> int:
        try:
            i = operator.index(device)
        except TypeError:
            raise PlanError(f"device index must be an integer, got {device!r}") from None
        if isinstance(device, bool) or not 0 <= i < self.num_devices:
            raise PlanError(f"device {device!r} is out of range: cluster {self.name!r} has {self.num_devices} "
                            f"devices (0..{self.num_devices - 1})")
        return i

    def node_group(self, node: int) -> NodeGroupSpec:
        """The node group server ``node`` belongs to."""
        return self.node_groups[self._node_group[self._node(node)]]  # type: ignore[attr-defined]

    def devices_per_node(self, node: int) -> int:
        """Number of devices on server ``node``."""
        return self.node_group(node).devices_per_node

    def node_devices(self, node: int) -> range:
        """The global indices of server ``node``'s devices."""
        first = self._node_first[self._node(node)]  # type: ignore[attr-defined]
        return range(first, first + self.devices_per_node(node))

    def node_kind(self, node: int) -> str:
        """The name of server ``node``'s node group."""
        return self.node_group(node).name

    def node_of(self, device: int) -> int:
        """The server holding ``device``."""
        return self._dev_node[self._dev(device)]  # type: ignore[attr-defined]

    def nodes_of(self, devices: Sequence[int]) -> tuple[int, ...]:
        """The distinct servers holding ``devices``, ascending."""
        dev_node = self._dev_node  # type: ignore[attr-defined]
        return tuple(sorted({dev_node[self._dev(d)] for d in devices}))

    def device(self, i: int) -> DeviceSpec:
        """The DeviceSpec of device ``i``."""
        return self.node_group(self.node_of(i)).device

    def device_kinds(self) -> tuple[str, ...]:
        """Names of the DeviceSpecs present, in node-group order, without repeats."""
        return tuple(dict.fromkeys(g.device.name for g in self.node_groups))

    # ------------------------------------------------------------------ graph
    @property
    def graph(self) -> nx.Graph:
        """A frozen networkx.Graph: vertices 'dev:<i>', 'node:<i>', 'net:<name>' (attribute ``role``);
        device-server edges (``kind`` = fabric kind) and server-network edges (``kind`` = NIC kind,
        ``nics``, ``per_device``), each with ``bandwidth_bytes_per_s`` (server-network: all NICs) and
        ``latency_s``."""
        g = self._derived.get("graph")
        if g is None:
            g = self._build_graph()
            self._derived["graph"] = g
        return g

    def _build_graph(self) -> nx.Graph:
        import networkx as nx

        g = nx.Graph(name=self.name)
        for net in self.networks:
            g.add_node(f"net:{net.name}", role="network", kind=net.kind, oversubscription=net.oversubscription)
        dev = 0
        node = 0
        for group in self.node_groups:
            for _ in range(group.count):
                server = f"node:{node}"
                g.add_node(server, role="node", group=group.name, device=group.device.name,
                           devices=group.devices_per_node)
                for local in range(group.devices_per_node):
                    g.add_node(f"dev:{dev}", role="device", device=group.device.name, node=node, local=local)
                    g.add_edge(f"dev:{dev}", server, kind=group.fabric.kind,
                               bandwidth_bytes_per_s=group.fabric.bandwidth_bytes_per_s,
                               latency_s=group.fabric.latency_s)
                    dev += 1
                for nic in group.nics:
                    g.add_edge(server, f"net:{nic.network}", kind=nic.kind,
                               bandwidth_bytes_per_s=nic.total_bandwidth_bytes_per_s, nics=nic.count,
                               latency_s=nic.latency_s, per_device=nic.per_device)
                node += 1
        return nx.freeze(g)

    # ------------------------------------------------------------------ networks between servers
    def _common_network(self, groups: tuple[int, ...]) -> NetworkSpec | None:
        """The network a set of node groups (sorted indices) communicates over, or None."""
        cache = self._net_cache  # type: ignore[attr-defined]
        if groups in cache:
            return cache[groups]
        nics = self._group_nics  # type: ignore[attr-defined]
        best: tuple | None = None
        chosen: NetworkSpec | None = None
        for index, net in enumerate(self.networks):
            if all(net.name in nics[g] for g in groups):
                per_node = min(nics[g][net.name].total_bandwidth_bytes_per_s for g in groups) / net.oversubscription
                key = (_NETWORK_PREFERENCE[net.kind], -per_node, index)
                if best is None or key < best:
                    best, chosen = key, net
        cache[groups] = chosen
        return chosen

    def _network_or_raise(self, groups: tuple[int, ...], servers: Sequence[int],
                          devices: Sequence[int] | None = None) -> NetworkSpec:
        net = self._common_network(groups)
        if net is not None:
            return net
        nics = self._group_nics  # type: ignore[attr-defined]
        node_group = self._node_group  # type: ignore[attr-defined]
        # Name the first two servers that share no network at all.
        for i, a in enumerate(servers):
            for b in servers[i + 1:]:
                if not set(nics[node_group[a]]) & set(nics[node_group[b]]):
                    if devices is not None:
                        da = next(d for d in devices if self._dev_node[d] == a)  # type: ignore[attr-defined]
                        db = next(d for d in devices if self._dev_node[d] == b)  # type: ignore[attr-defined]
                        what = f"devices {da} and {db} (servers {a} and {b})"
                    else:
                        what = f"servers {a} and {b}"
                    raise PlanError(
                        f"{what} of cluster {self.name!r} share no network; attach both node groups "
                        f"({self.node_kind(a)}, {self.node_kind(b)}) to a common network (e.g. an ethernet "
                        f"front-end) or keep the group inside one of them")
        names = ", ".join(self.node_groups[g].name for g in groups)
        raise PlanError(f"the servers of node groups {names} of cluster {self.name!r} have no single network in "
                        f"common; a communication group needs one network that spans all its servers")

    def transport(self, node_a: int, node_b: int) -> str:
        """How servers ``node_a`` and ``node_b`` talk: 'ib', 'roce' or 'tcp' (Holmes rule: a shared IB
        network, else a shared RoCE network, else TCP over a shared ethernet network); the fabric kind
        when they are the same server. PlanError when they share no network."""
        a, b = self._node(node_a), self._node(node_b)
        if a == b:
            return self.node_group(a).fabric.kind
        node_group = self._node_group  # type: ignore[attr-defined]
        groups = tuple(sorted({node_group[a], node_group[b]}))
        return self._network_or_raise(groups, (a, b)).transport

    # ------------------------------------------------------------------ link classes
    def _fabric_link(self, group: NodeGroupSpec) -> LinkClass:
        fabric = group.fabric
        if fabric.kind not in INTRA_TRANSPORTS:
            raise MissingDataError(
                f"node group {group.name!r} ({group.device.name}): its intra-node fabric is {fabric.kind!r}, which "
                f"the collective models have no transport for (they know {', '.join(INTRA_TRANSPORTS)}); "
                f"place one rank per server or give the node group an explicit `fabric:`")
        return LinkClass(fabric.kind, fabric.bandwidth_bytes_per_s, fabric.latency_s)

    def _host_link(self, node: int, devices: Sequence[int]) -> LinkClass:
        """The intra LinkClass of the group's ranks on server ``node``: the host topology's ring bottleneck
        where the node group describes one, else its fabric."""
        group = self.node_groups[self._node_group[node]]  # type: ignore[attr-defined]
        if group.host is None:
            return self._fabric_link(group)
        first = self._node_first[node]  # type: ignore[attr-defined]
        local = tuple(sorted(d - first for d in devices if self._dev_node[d] == node))  # type: ignore[attr-defined]
        key = ("host", self._node_group[node], local)  # type: ignore[attr-defined]
        hit = self._derived.get(key)
        if hit is None:
            hit = group.host.ring_link(local, group.fabric)
            self._derived[key] = hit
        return hit

    def _checked_devices(self, devices: Sequence[int], what: str) -> list[int]:
        try:
            items = list(devices)
        except TypeError:
            raise PlanError(f"{what} must be a sequence of device indices, got {devices!r}") from None
        if not items:
            raise PlanError(f"{what} must hold at least one device, got none")
        if all(type(d) is int for d in items) and 0 <= min(items) and max(items) < self.num_devices:
            out = items  # fast path: plain in-range ints
        else:
            out = [self._dev(d) for d in items]
        if len(set(out)) != len(out):
            seen: set[int] = set()
            for d in out:
                if d in seen:
                    raise PlanError(f"device {d} appears twice in {what}; a group needs distinct devices")
                seen.add(d)
        return out

    def group_topology(self, devices: Sequence[int]) -> GroupTopology:
        """The :class:`GroupTopology` of a communication group of distinct ``devices``.

        ``intra``: the slowest fabric among servers holding >= 2 of the group's ranks (per device).
        ``inter``: the group's network (one all its servers attach to; ib over roce over ethernet/tcp)
        with per-rank bandwidth = min over servers of ``rank_share(ranks on that server)`` / the
        network's oversubscription (rails: min(one NIC, all NICs / ranks); shared NICs: all NICs / ranks)
        and the largest NIC latency. Duplicates or indices out of range raise PlanError.
        """
        devs = self._checked_devices(devices, "the group")
        if len(devs) == 1:
            return GroupTopology(ranks=1, nodes=1, ranks_per_node=1, intra=None, inter=None)
        dev_node = self._dev_node  # type: ignore[attr-defined]
        node_group = self._node_group  # type: ignore[attr-defined]
        per_node = Counter(map(dev_node.__getitem__, devs))
        ranks_per_node = max(per_node.values())
        # The most ranks any server of each group holds (the tightest NIC share in that group).
        group_ranks: dict[int, int] = {}
        for n, r in per_node.items():
            g = node_group[n]
            if r > group_ranks.get(g, 0):
                group_ranks[g] = r
        intra = None
        host_topology = False
        if ranks_per_node > 1:
            if any(self.node_groups[g].host is not None for g, r in group_ranks.items() if r > 1):
                links = [self._host_link(n, devs) for n, r in per_node.items() if r > 1]
                host_topology = True
            else:
                links = [self._fabric_link(self.node_groups[g]) for g, r in group_ranks.items() if r > 1]
            intra = min(links, key=lambda lc: (lc.bandwidth_bytes_per_s, -lc.latency_s, lc.transport))
        inter = None
        if len(per_node) > 1:
            groups = tuple(sorted(group_ranks))
            net = self._network_or_raise(groups, sorted(per_node), devs)
            nics = self._group_nics  # type: ignore[attr-defined]
            bw = min(nics[g][net.name].rank_share(r) for g, r in group_ranks.items()) / net.oversubscription
            lat = max(nics[g][net.name].latency_s for g in groups)
            inter = LinkClass(net.transport, bw, lat)
        return GroupTopology(ranks=len(devs), nodes=len(per_node), ranks_per_node=ranks_per_node,
                             intra=intra, inter=inter, host_topology=host_topology)

    def _pair_network(self, a_node: int, b_node: int) -> NetworkSpec:
        node_group = self._node_group  # type: ignore[attr-defined]
        groups = tuple(sorted({node_group[a_node], node_group[b_node]}))
        return self._network_or_raise(groups, (a_node, b_node))

    def p2p(self, a: int, b: int) -> LinkClass:
        """The link one transfer from device ``a`` to device ``b`` uses alone: the fabric on one server,
        else the servers' network with one rank's share (its rail, or all shared NICs) / oversubscription."""
        da, db = self._dev(a), self._dev(b)
        if da == db:
            raise PlanError(f"p2p needs two distinct devices, got device {da} twice")
        na, nb = self._dev_node[da], self._dev_node[db]  # type: ignore[attr-defined]
        if na == nb:
            return self._host_link(na, (da, db))
        net = self._pair_network(na, nb)
        nic_a, nic_b = self.node_group(na).nics, self.node_group(nb).nics
        nic_a = next(n for n in nic_a if n.network == net.name)
        nic_b = next(n for n in nic_b if n.network == net.name)
        bw = min(nic_a.single_rank_bandwidth, nic_b.single_rank_bandwidth) / net.oversubscription
        return LinkClass(net.transport, bw, max(nic_a.latency_s, nic_b.latency_s))

    def transfer_link(self, src: Sequence[int], dst: Sequence[int]) -> LinkClass:
        """A bulk transfer from devices ``src`` to devices ``dst`` (disjoint sets).

        Lanes: ``min(len(src), len(dst))`` pairs ``(src[i], dst[i])`` run in parallel. Bandwidth: the sum
        of the pairs' :meth:`p2p` bandwidths, where the cross-server pairs are scaled down together so
        that no server sends (or receives) more than all its NICs on that network carry / oversubscription.
        Latency: the slowest pair's. Transport: the weakest cross-server transport (tcp < roce < ib), else
        the fabric of the slowest pair.
        """
        s = self._checked_devices(src, "src")
        d = self._checked_devices(dst, "dst")
        both = set(s) & set(d)
        if both:
            raise PlanError(f"device {min(both)} is in both src and dst; a transfer joins two disjoint sets")
        dev_node = self._dev_node  # type: ignore[attr-defined]
        lanes = min(len(s), len(d))
        local_bw = 0.0
        latency = 0.0
        slowest_local: LinkClass | None = None
        cross_bw = 0.0
        cross_transport: str | None = None
        loads: dict[tuple[str, int, str], float] = {}   # (direction, server, network) -> nominal bytes/s
        caps: dict[tuple[str, int, str], float] = {}
        for a, b in zip(s[:lanes], d[:lanes]):
            link = self.p2p(a, b)
            latency = max(latency, link.latency_s)
            na, nb = dev_node[a], dev_node[b]
            if na == nb:
                local_bw += link.bandwidth_bytes_per_s
                if slowest_local is None or link.bandwidth_bytes_per_s < slowest_local.bandwidth_bytes_per_s:
                    slowest_local = link
                continue
            net = self._pair_network(na, nb)
            cross_bw += link.bandwidth_bytes_per_s
            if cross_transport is None or _TRANSPORT_STRENGTH[link.transport] < _TRANSPORT_STRENGTH[cross_transport]:
                cross_transport = link.transport
            for direction, server in (("out", na), ("in", nb)):
                key = (direction, server, net.name)
                loads[key] = loads.get(key, 0.0) + link.bandwidth_bytes_per_s
                if key not in caps:
                    nic = next(n for n in self.node_group(server).nics if n.network == net.name)
                    caps[key] = nic.total_bandwidth_bytes_per_s / net.oversubscription
        scale = min([1.0, *(caps[k] / loads[k] for k in loads)])
        total = local_bw + cross_bw * scale
        if cross_transport is not None:
            transport = cross_transport
        else:
            transport = slowest_local.transport  # type: ignore[union-attr]
        return LinkClass(transport, total, latency)


# --------------------------------------------------------------------------- what-if copies

_SCALE_KINDS = ("nvlink", "xgmi", "pcie", "ib", "roce", "ethernet", "tcp")


def with_bandwidth_scale(cluster: ClusterSpec, factor: float, *, kind: str | None = None) -> ClusterSpec:
    """A copy of ``cluster`` with every link's bandwidth x ``factor`` (> 0), or only the fabrics/NICs of
    ``kind`` (nvlink, xgmi, pcie, ib, roce, ethernet; 'tcp' means ethernet). Latencies are kept."""
    if not isinstance(cluster, ClusterSpec):
        raise ConfigError(f"`cluster` must be a ClusterSpec, got {cluster!r}")
    f = _check_number("factor", factor)
    if kind is not None:
        _check_kind("kind", kind, _SCALE_KINDS)
        kind = "ethernet" if kind == "tcp" else kind
    note = f"; bandwidth x{f:g} (what-if scaling) [U]"
    groups = []
    for g in cluster.node_groups:
        fabric = g.fabric
        if kind is None or fabric.kind == kind:
            fabric = replace(fabric, bandwidth_bytes_per_s=fabric.bandwidth_bytes_per_s * f,
                             source=fabric.source + note)
        nics = tuple(replace(n, bandwidth_bytes_per_s=n.bandwidth_bytes_per_s * f, source=n.source + note)
                     if kind is None or n.kind == kind else n for n in g.nics)
        host = g.host
        if host is not None and (kind is None or kind == "pcie"):
            host = host.scaled(f, note)
        groups.append(replace(g, fabric=fabric, nics=nics, host=host))
    suffix = f"bandwidth x{f:g}" + (f" on {kind}" if kind else "")
    return ClusterSpec(name=f"{cluster.name} ({suffix})", node_groups=tuple(groups), networks=cluster.networks,
                       description=cluster.description, sources=(*cluster.sources, f"what-if: {suffix} [U]"))


def _with_num_nodes(cluster: ClusterSpec, num_nodes: Any) -> ClusterSpec:
    n = _check_int("num_nodes", num_nodes)
    if len(cluster.node_groups) != 1:
        names = ", ".join(g.name for g in cluster.node_groups)
        raise ConfigError(f"cluster {cluster.name!r} has {len(cluster.node_groups)} node groups ({names}); "
                          f"`num_nodes` only replicates a single-group cluster - set each group's `count` "
                          f"in a copy of its YAML instead")
    group = cluster.node_groups[0]
    if group.count == n:
        return cluster
    source = f"{group.source}; count set to {n} servers by num_nodes [U]"
    return replace(cluster, name=f"{cluster.name} ({n} nodes)",
                   node_groups=(replace(group, count=n, source=source),))


# --------------------------------------------------------------------------- YAML loading

_TOP_REQUIRED = ("schema_version", "name", "node_groups")
_TOP_OPTIONAL = ("description", "sources", "networks")
_NET_REQUIRED = ("name", "kind", "source")
_NET_OPTIONAL = ("oversubscription",)
_GROUP_REQUIRED = ("name", "device", "devices_per_node", "source")
_GROUP_OPTIONAL = ("count", "fabric", "nics", "host")
_HOST_REQUIRED = ("switches", "root_complex", "p2p", "source")
_HOST_OPTIONAL = ("socket_link",)
_SWITCH_REQUIRED = ("socket", "devices", "uplink_bandwidth_bytes_per_s", "uplink_latency_s", "source")
_LINK_REQUIRED = ("bandwidth_bytes_per_s", "latency_s", "source")
_FABRIC_REQUIRED = ("kind",)
_FABRIC_OPTIONAL = ("bandwidth_bytes_per_s", "latency_s", "source")
_NIC_REQUIRED = ("kind", "count", "bandwidth_gbit_s", "latency_s", "network", "source")
_NIC_OPTIONAL = ("per_device",)


def _build(cls: type, where: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _as_list(value: Any, where: str, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: key {key!r} must be a list, got {type(value).__name__}")
    return value


def _device_link(device: DeviceSpec, kind: str) -> Link | None:
    """The device's link of ``kind``, preferring its scale-up link, then host, then a pair bridge."""
    order = {"scale_up": 0, "host": 1, "pair": 2, "scale_out": 3}
    links = sorted((l for l in device.links if l.kind == kind), key=lambda l: order[l.scope])
    return links[0] if links else None


def _link_fabric(device: DeviceSpec, link: Link, devices_per_node: int) -> FabricSpec:
    if link.domain_size is not None and devices_per_node > link.domain_size:
        raise ConfigError(f"device {device.name!r}'s {link.kind} link {link.name!r} joins at most {link.domain_size} "
                          f"devices, fewer than devices_per_node = {devices_per_node}; give `fabric:` "
                          f"(e.g. kind: pcie) or fewer devices per node")
    return FabricSpec(kind=link.kind, bandwidth_bytes_per_s=link.bandwidth_bytes_per_s, latency_s=link.latency_s,
                      source=f"device catalogue {device.name} link {link.name}: {link.source}")


def _parse_fabric(data: Any, where: str, device: DeviceSpec, devices_per_node: int) -> FabricSpec:
    """``fabric:``: ``kind`` plus optional numbers; a missing number comes from the device's link of that
    kind. A given number needs a ``source``."""
    d = check_fields(data, where, _FABRIC_REQUIRED, _FABRIC_OPTIONAL)
    given = {k: d[k] for k in ("bandwidth_bytes_per_s", "latency_s") if k in d}
    try:
        kind = _check_kind("kind", d["kind"], FABRIC_KINDS)
        if given and "source" not in d:
            raise ConfigError(f"missing key 'source' (required when {', '.join(given)} is given)")
        if "source" in d:
            _check_source("source", d["source"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len(given) == 2:
        return _build(FabricSpec, where, kind=kind, source=d["source"], **given)
    link = _device_link(device, kind)
    if link is None:
        raise ConfigError(f"{where}: device {device.name!r} has no {kind} link to take the fabric's numbers from; "
                          f"give bandwidth_bytes_per_s and latency_s with a source")
    try:
        base = _link_fabric(device, link, devices_per_node)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    source = base.source if "source" not in d else f"{d['source']}; other numbers from {base.source}"
    values = {"bandwidth_bytes_per_s": base.bandwidth_bytes_per_s, "latency_s": base.latency_s, **given}
    return _build(FabricSpec, where, kind=kind, source=source, **values)


def _parse_host(data: Any, where: str) -> HostTopologySpec:
    """``host:``: switches (socket, devices, uplink), root_complex, optional socket_link, p2p."""
    d = check_fields(data, where, _HOST_REQUIRED, _HOST_OPTIONAL)
    switches = []
    for i, item in enumerate(_as_list(d["switches"], where, "switches")):
        at = f"{where}.switches[{i}]"
        switches.append(_build(PcieSwitchSpec, at, **check_fields(item, at, _SWITCH_REQUIRED)))
    rc = check_fields(d["root_complex"], f"{where}.root_complex", _LINK_REQUIRED)
    _build(_check_source, f"{where}.root_complex", name="source", value=rc["source"])
    extra: dict[str, Any] = {}
    if d.get("socket_link") is not None:
        link = check_fields(d["socket_link"], f"{where}.socket_link", _LINK_REQUIRED)
        _build(_check_source, f"{where}.socket_link", name="source", value=link["source"])
        extra = {"socket_link_bandwidth_bytes_per_s": link["bandwidth_bytes_per_s"],
                 "socket_link_latency_s": link["latency_s"]}
    return _build(HostTopologySpec, where, switches=tuple(switches), p2p=d["p2p"], source=d["source"],
                  root_complex_bandwidth_bytes_per_s=rc["bandwidth_bytes_per_s"],
                  root_complex_latency_s=rc["latency_s"], **extra)


def _parse_group(data: Any, where: str) -> NodeGroupSpec:
    d = check_fields(data, where, _GROUP_REQUIRED, _GROUP_OPTIONAL)
    name = d["device"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: `device` must be a device name, got {name!r}")
    try:
        device = get_device(name)
    except UnknownNameError as exc:
        exc.args = (f"{where}: {exc}",)
        raise
    try:
        per_node = _check_int("devices_per_node", d["devices_per_node"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if d.get("fabric") is None:
        try:
            fabric = _link_fabric(device, device.scale_up_link, per_node)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    else:
        fabric = _parse_fabric(d["fabric"], f"{where}.fabric", device, per_node)
    nics = []
    for i, item in enumerate(_as_list(d.get("nics"), where, "nics")):
        at = f"{where}.nics[{i}]"
        n = check_fields(item, at, _NIC_REQUIRED, _NIC_OPTIONAL)
        try:
            gbit = _check_number("bandwidth_gbit_s", n["bandwidth_gbit_s"])
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        nics.append(_build(NicSpec, at, kind=n["kind"], count=n["count"], bandwidth_bytes_per_s=gbit * _GBIT,
                           latency_s=n["latency_s"], network=n["network"], source=n["source"],
                           per_device=n.get("per_device", False)))
    host = None if d.get("host") is None else _parse_host(d["host"], f"{where}.host")
    return _build(NodeGroupSpec, where, name=d["name"], device=device, devices_per_node=per_node, fabric=fabric,
                  source=d["source"], count=d.get("count", 1), nics=tuple(nics), host=host)


def cluster_from_dict(data: Any, where: str) -> ClusterSpec:
    """A ClusterSpec from parsed YAML ``data`` (schema in hwmodels/data/clusters/README.md); errors are
    ConfigError (UnknownNameError for an unknown device) naming ``where`` and the key."""
    top = check_fields(data, where, _TOP_REQUIRED, _TOP_OPTIONAL)
    if top["schema_version"] != _SCHEMA_VERSION:
        raise ConfigError(f"{where}: `schema_version` must be {_SCHEMA_VERSION}, got {top['schema_version']!r}")
    networks = []
    for i, item in enumerate(_as_list(top.get("networks"), where, "networks")):
        at = f"{where}: networks[{i}]"
        networks.append(_build(NetworkSpec, at, **check_fields(item, at, _NET_REQUIRED, _NET_OPTIONAL)))
    groups = [_parse_group(item, f"{where}: node_groups[{i}]")
              for i, item in enumerate(_as_list(top["node_groups"], where, "node_groups"))]
    sources = _as_list(top.get("sources"), where, "sources")
    return _build(ClusterSpec, where, name=top["name"], node_groups=tuple(groups), networks=tuple(networks),
                  description=top.get("description", "") or "", sources=tuple(sources))


def _cluster_entries(data: Any, where: str) -> list[tuple[str, ClusterSpec, tuple[str, ...]]]:
    spec = cluster_from_dict(data, where)
    return [(spec.name, spec, ())]


#: the built-in clusters, one YAML file each in ``hwmodels/data/clusters`` (file name = cluster name)
CATALOGUE: Catalogue[ClusterSpec] = Catalogue.from_folder("cluster", "llmsim.hwmodels", "data/clusters",
                                                          _cluster_entries, exact_file_names=True)


def load_cluster_file(path: str | Path) -> ClusterSpec:
    """A ClusterSpec from a user YAML (or JSON) file (not added to the built-ins)."""
    return CATALOGUE.load_path(path)


@functools.cache
def _catalogue() -> tuple[dict[str, ClusterSpec], NameIndex]:
    return CATALOGUE.table(), CATALOGUE.index()


def list_clusters() -> tuple[str, ...]:
    """Names of the built-in clusters (hwmodels/data/clusters/*.yaml)."""
    return _catalogue()[1].names()


def get_cluster(name_or_path: str | ClusterSpec, *, num_nodes: int | None = None) -> ClusterSpec:
    """A built-in cluster by (loose) name, or a file by path (ending .yaml/.yml/.json).

    ``num_nodes`` replicates a single-node-group cluster to that many servers (ConfigError for several
    node groups). Unknown names raise UnknownNameError with the closest built-ins.
    """
    if isinstance(name_or_path, ClusterSpec):
        spec = name_or_path
    elif isinstance(name_or_path, (str, Path)):
        text = str(name_or_path)
        if is_path(text):
            spec = load_cluster_file(text)
        else:
            specs, index = _catalogue()
            spec = specs[index.resolve(text)]
    else:
        raise ConfigError(f"cluster must be a name or a path to a .yaml file, got {name_or_path!r}")
    return spec if num_nodes is None else _with_num_nodes(spec, num_nodes)


# --------------------------------------------------------------------------- natural clusters

# [U] One hop of NIC latency, placeholders like the device catalogue's link latencies: IB verbs ~2 us,
# RoCE 5 us (hwmodels/data/devices/README.md), TCP sockets 30 us ("tens of microseconds", hardware.md [P]).
NIC_LATENCY_S: Mapping[str, float] = {"ib": 2.0e-6, "roce": 5.0e-6, "ethernet": 30.0e-6}
_NIC_LATENCY_SOURCE = {
    "ib": "latency 2 us assumed (one IB verbs hop) [U]",
    "roce": "latency 5 us assumed (device catalogue RoCE placeholder) [U]",
    "ethernet": "latency 30 us assumed (hardware.md: TCP sockets 'tens of microseconds' [P]) [U]",
}
_NDR_SOURCE = ("one 400 Gb/s NDR InfiniBand rail per GPU: DGX H100/H200 'four OSFP ports serving eight single-port "
               "ConnectX-7' and DGX B200 the same [P] NVIDIA DGX BasePOD reference architecture; NDR 400 Gb/s per NIC "
               "and 'a DGX node has 8 compute NICs (one rail per GPU)' [P] hardware.md")
_NDR_AMD_SOURCE = ("one 400 Gb/s rail per GPU assumed as on HGX/DGX H100 (MI300X platforms pair each OAM with a 400G "
                   "NIC) [U]; NDR 400 Gb/s per NIC [P] hardware.md")
_HDR_SOURCE = ("one 200 Gb/s HDR InfiniBand rail per GPU: DGX A100 has eight single-port ConnectX-6 HDR NICs "
               "[S] DGX A100 User Guide; HDR 200 Gb/s per NIC and one rail per GPU [P] hardware.md")
_HDR_OTHER_SOURCE = "one 200 Gb/s HDR-class rail per device assumed (no reference design in hardware.md) [U]"
_PCIE_SOURCE = ("2 x 100 GbE per PCIe server assumed [U]: no reference design fixes PCIe servers' NICs; 100 Gb/s is "
                "the top of hardware.md's Ethernet TCP range 25-100 Gb/s [P]")


def _natural_nic(device: DeviceSpec, devices: int) -> NicSpec:
    for link in device.links:
        if link.scope == "scale_out" and link.kind in NETWORK_KINDS:
            return NicSpec(kind=link.kind, count=devices, bandwidth_bytes_per_s=link.bandwidth_bytes_per_s,
                           latency_s=link.latency_s, network="scale-out", per_device=True,
                           source=f"the device's own scale-out ports, one set per device: device catalogue "
                                  f"{device.name} link {link.name}: {link.source}")
    if device.scale_up_link.scope == "scale_up":
        if device.arch_class in ("hopper", "blackwell"):
            gbit, source = 400, _NDR_SOURCE
        elif device.arch_class == "cdna3":
            gbit, source = 400, _NDR_AMD_SOURCE
        elif device.arch_class == "ampere":
            gbit, source = 200, _HDR_SOURCE
        else:
            gbit, source = 200, _HDR_OTHER_SOURCE
        return NicSpec(kind="ib", count=devices, bandwidth_bytes_per_s=gbit * _GBIT, latency_s=NIC_LATENCY_S["ib"],
                       network="scale-out", per_device=True, source=f"{source}; {_NIC_LATENCY_SOURCE['ib']}")
    return NicSpec(kind="ethernet", count=2, bandwidth_bytes_per_s=100 * _GBIT, latency_s=NIC_LATENCY_S["ethernet"],
                   network="scale-out", per_device=False, source=f"{_PCIE_SOURCE}; {_NIC_LATENCY_SOURCE['ethernet']}")


def natural_cluster(device: str | DeviceSpec, num_devices: int) -> ClusterSpec:
    """The cluster ``--device D --num-devices N`` means: ceil(N / S) servers of S devices, S = the device's
    scale-up domain (``scale_up_link.domain_size``, else 8; PCIe parts 8), the last one partial; fabric from
    the device; NICs: one 400 Gb/s NDR IB rail per device (Hopper, Blackwell SXM, MI300X), one 200 Gb/s HDR
    IB rail (A100 SXM and other scale-up parts), the device's own scale-out ports where it has them
    (Gaudi2 RoCE), 2 x 100 GbE per server for PCIe parts; all servers on one non-blocking network."""
    spec = get_device(device)
    n = _check_int("num_devices", num_devices)
    return _natural_cluster(spec, n)


@functools.lru_cache(maxsize=256)
def _natural_cluster(spec: DeviceSpec, n: int) -> ClusterSpec:
    link = spec.scale_up_link
    per_server = link.domain_size if (link.scope == "scale_up" and link.domain_size) else 8
    full, rest = divmod(n, per_server)
    fabric = _link_fabric(spec, link, min(n, per_server))
    shape = [(per_server, full)] if full else []
    if rest:
        shape.append((rest, 1))
    groups = []
    nic_kind = None
    for size, count in shape:
        nic = _natural_nic(spec, size)
        nic_kind = nic.kind
        groups.append(NodeGroupSpec(
            name=f"{spec.name} x{size}", device=spec, devices_per_node=size, fabric=fabric, count=count,
            nics=(nic,), source=f"{size} devices per server: the device's scale-up domain (domain_size, else 8) [D]; "
                                f"{count} such server(s) for {n} devices [D]"))
    network = NetworkSpec(name="scale-out", kind=nic_kind, oversubscription=1.0,
                          source="one non-blocking network for all servers assumed (rail-optimised fat tree as in "
                                 "NVIDIA's DGX SuperPOD reference architecture) [U]")
    servers = full + (1 if rest else 0)
    nic = groups[0].nics[0]
    nic_text = (f"{nic.bandwidth_gbit_s:g} Gb/s {nic.kind} rail per device" if nic.per_device
                else f"{nic.count} x {nic.bandwidth_gbit_s:g} Gb/s {nic.kind} per server")
    return ClusterSpec(
        name=f"{spec.name} x{n}", node_groups=tuple(groups), networks=(network,),
        description=(f"{n} x {spec.name} on {servers} server(s) of up to {per_server} over {fabric.kind}, "
                     f"{nic_text}, one non-blocking network (the cluster --device/--num-devices means)"),
        sources=(f"natural_cluster({spec.name!r}, {n}) [D]",))
