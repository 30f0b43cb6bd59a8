"""Clusters: built-ins, the Holmes transport rule, group topologies, transfers, strict YAML."""
from __future__ import annotations

import copy
import time
from importlib import resources
from pathlib import Path

import networkx as nx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels.cluster import (
    ClusterSpec, cluster_from_dict, get_cluster, list_clusters, load_cluster_file, natural_cluster,
    with_bandwidth_scale,
)
from llmsim.hwmodels.devices import get_device
from llmsim.hwmodels.network import GroupTopology, LinkClass
from llmsim.workloads.errors import ConfigError, PlanError, UnknownNameError

GBIT = 1e9 / 8
BUILTINS = {  # name -> (servers, devices, device)
    "dgx-a100": (1, 8, "a100-sxm-80gb"),
    "dgx-h100": (1, 8, "h100-sxm"),
    "hgx-h200": (1, 8, "h200-sxm"),
    "8x-l40s-pcie": (1, 8, "l40s"),
    "holmes-ib-roce": (8, 64, "a100-sxm-80gb"),
    "holmes-all-ib": (8, 64, "a100-sxm-80gb"),
    "holmes-all-roce": (8, 64, "a100-sxm-80gb"),
    "holmes-all-ethernet": (8, 64, "a100-sxm-80gb"),
}
DATA_DIR = Path(str(resources.files("llmsim.hwmodels").joinpath("data", "clusters")))


def _two_group_dict() -> dict:
    """A small user cluster: 2 servers x 4 H100 on IB rails + 1 server x 4 L40S on shared ethernet."""
    return {
        "schema_version": 1,
        "name": "toy",
        "networks": [
            {"name": "ib", "kind": "ib", "source": "test [U]"},
            {"name": "eth", "kind": "ethernet", "oversubscription": 2, "source": "test [U]"},
        ],
        "node_groups": [
            {"name": "h", "count": 2, "device": "h100", "devices_per_node": 4, "source": "test [U]",
             "nics": [
                 {"kind": "ib", "count": 4, "bandwidth_gbit_s": 400, "latency_s": 2e-6, "network": "ib",
                  "per_device": True, "source": "test [U]"},
                 {"kind": "ethernet", "count": 1, "bandwidth_gbit_s": 100, "latency_s": 3e-5, "network": "eth",
                  "source": "test [U]"}]},
            {"name": "l", "device": "l40s", "devices_per_node": 4, "source": "test [U]",
             "nics": [{"kind": "ethernet", "count": 2, "bandwidth_gbit_s": 100, "latency_s": 3e-5,
                       "network": "eth", "source": "test [U]"}]},
        ],
    }


# --------------------------------------------------------------------------- built-ins

def test_builtins_load_with_their_stated_shapes():
    assert set(list_clusters()) == set(BUILTINS)
    for name, (servers, devices, device) in BUILTINS.items():
        c = get_cluster(name)
        assert (c.name, c.num_nodes, c.num_devices) == (name, servers, devices)
        assert c.device_kinds() == (device,)
        assert all(c.devices_per_node(n) == 8 for n in range(c.num_nodes))
        assert c.device(devices - 1) == get_device(device)


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_builtin_loads_by_path_too(path):
    assert get_cluster(str(path)) == get_cluster(path.stem) == load_cluster_file(path)


def test_builtin_key_numbers():
    h100 = get_cluster("dgx-h100", num_nodes=2)
    assert h100.p2p(0, 8) == LinkClass("ib", 400 * GBIT, 2e-6)
    assert h100.p2p(0, 1) == LinkClass("nvlink", 450e9, 1e-6)
    a100 = get_cluster("dgx-a100", num_nodes=2)
    assert a100.p2p(0, 8).bandwidth_bytes_per_s == pytest.approx(25e9)
    assert a100.transport(0, 1) == "ib"   # IB preferred over the ethernet front-end
    l40s = get_cluster("8x-l40s-pcie", num_nodes=2)
    assert l40s.p2p(0, 1).transport == "pcie" and l40s.transport(0, 1) == "tcp"


def test_unknown_cluster_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="dgx-h100"):
        get_cluster("dgx-h10")
    assert get_cluster("DGX_H100").name == "dgx-h100"


# --------------------------------------------------------------------------- Holmes transport rule

def test_holmes_transport_rule():
    c = get_cluster("holmes-ib-roce")
    assert [c.node_kind(n) for n in range(8)] == ["ib-a100"] * 4 + ["roce-a100"] * 4
    assert c.transport(0, 3) == "ib"
    assert c.transport(4, 7) == "roce"
    assert c.transport(0, 4) == c.transport(7, 2) == "tcp"
    assert c.transport(5, 5) == "nvlink"
    assert get_cluster("holmes-all-roce").transport(0, 7) == "roce"
    assert get_cluster("holmes-all-ethernet").transport(0, 7) == "tcp"


def test_a_group_spanning_ib_and_roce_runs_tcp():
    c = get_cluster("holmes-ib-roce")
    ib_only = c.group_topology([0, 8, 16, 24])
    assert ib_only.inter.transport == "ib"
    mixed = c.group_topology([0, 8, 32])   # two IB servers and one RoCE server
    assert mixed.inter.transport == "tcp"
    assert mixed.inter.bandwidth_bytes_per_s == pytest.approx(100 * GBIT)
    assert mixed.inter.latency_s == pytest.approx(30e-6)


def test_servers_sharing_no_network_raise_plan_error():
    data = _two_group_dict()
    data["node_groups"][1]["nics"][0]["network"] = "eth2"
    data["networks"].append({"name": "eth2", "kind": "ethernet", "source": "test [U]"})
    data["node_groups"][0]["nics"] = data["node_groups"][0]["nics"][:1]
    data["networks"] = [n for n in data["networks"] if n["name"] != "eth"]
    c = cluster_from_dict(data, "toy")
    with pytest.raises(PlanError, match=r"devices 0 and 8 .* share no network"):
        c.group_topology([0, 8])
    with pytest.raises(PlanError, match="share no network"):
        c.transport(0, 2)
    with pytest.raises(PlanError, match="share no network"):
        c.p2p(4, 9)


# --------------------------------------------------------------------------- group topology

def test_group_topology_shapes_and_rails():
    c = get_cluster("dgx-h100", num_nodes=4)
    assert c.group_topology([5]) == GroupTopology(ranks=1, nodes=1, ranks_per_node=1, intra=None, inter=None)
    tp8 = c.group_topology(range(8))
    assert (tp8.ranks, tp8.nodes, tp8.ranks_per_node, tp8.inter) == (8, 1, 8, None)
    assert tp8.intra == LinkClass("nvlink", 450e9, 1e-6)
    g = c.group_topology([0, 1, 2, 8, 9, 16])
    assert (g.ranks, g.nodes, g.ranks_per_node) == (6, 3, 3)
    assert g.inter == LinkClass("ib", 50e9, 2e-6)   # each rank keeps its own rail
    assert c.group_topology(range(32)).inter.bandwidth_bytes_per_s == pytest.approx(50e9)


def test_shared_nics_are_split_among_the_ranks_on_a_server():
    c = get_cluster("8x-l40s-pcie", num_nodes=2)
    assert c.group_topology([0, 8]).inter.bandwidth_bytes_per_s == pytest.approx(25e9)
    assert c.group_topology(range(16)).inter.bandwidth_bytes_per_s == pytest.approx(25e9 / 8)
    # the tightest server sets the rate: 4 ranks on server 0, 1 on server 1
    assert c.group_topology([0, 1, 2, 3, 8]).inter.bandwidth_bytes_per_s == pytest.approx(25e9 / 4)
    # 4 ranks under two PCIe switches share socket 0's root complex (tests/hwmodels/test_pcie_topology.py)
    assert c.group_topology([0, 1, 2, 3, 8]).intra == LinkClass("pcie", 16e9, 3.5e-6)


def test_oversubscription_and_mixed_groups():
    c = cluster_from_dict(_two_group_dict(), "toy")
    assert c.num_devices == 12 and c.num_nodes == 3
    assert c.device_kinds() == ("h100-sxm", "l40s")
    assert c.node_of(11) == 2 and c.nodes_of([11, 0, 4, 5]) == (0, 1, 2)
    assert list(c.node_devices(1)) == [4, 5, 6, 7]
    hh = c.group_topology([0, 4])
    assert hh.inter == LinkClass("ib", 50e9, 2e-6)
    hl = c.group_topology([0, 1, 8])   # an h100 server and the l40s server share only 'eth' (oversub 2)
    assert hl.inter.transport == "tcp"
    assert hl.inter.bandwidth_bytes_per_s == pytest.approx(12.5e9 / 2 / 2)   # 1 NIC / 2 ranks / oversub 2
    assert hl.intra.transport == "nvlink"
    mixed_fabric = c.group_topology([0, 1, 8, 9])
    assert mixed_fabric.intra.transport == "pcie"   # the slowest fabric holding 2+ ranks


def test_duplicates_and_bad_indices_raise_plan_error():
    c = get_cluster("dgx-h100")
    with pytest.raises(PlanError, match="device 3 appears twice"):
        c.group_topology([1, 3, 3])
    for bad in ([8], [-1], [True], ["0"]):
        with pytest.raises(PlanError):
            c.group_topology(bad)
    with pytest.raises(PlanError):
        c.group_topology([])
    with pytest.raises(PlanError):
        c.node_of(99)
    with pytest.raises(PlanError):
        c.transport(0, 1)
    with pytest.raises(PlanError):
        c.p2p(2, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=63), min_size=1, max_size=64, unique=True),
       st.sampled_from(["holmes-ib-roce", "holmes-all-ib", "holmes-all-ethernet"]))
def test_group_topology_never_overfills_a_server(devices, name):
    c = get_cluster(name)
    topo = c.group_topology(devices)
    assert topo.ranks == len(devices)
    assert topo.nodes == len(c.nodes_of(devices))
    assert topo.ranks_per_node <= min(c.devices_per_node(n) for n in c.nodes_of(devices))
    assert topo.nodes * topo.ranks_per_node >= topo.ranks
    with pytest.raises(PlanError, match="appears twice"):
        c.group_topology([*devices, devices[0]])


def test_group_topology_is_fast_for_1024_devices():
    c = get_cluster("dgx-h100", num_nodes=128)
    devices = list(range(1024))
    c.group_topology(devices)
    start = time.perf_counter()
    for _ in range(50):
        c.group_topology(devices)
    assert (time.perf_counter() - start) / 50 < 5e-3


# --------------------------------------------------------------------------- transfers

def test_transfer_link_lanes_and_nic_caps():
    h = get_cluster("dgx-h100", num_nodes=2)
    assert h.transfer_link(range(8), range(8, 16)) == LinkClass("ib", 8 * 50e9, 2e-6)
    assert h.transfer_link([0, 1], range(8, 16)).bandwidth_bytes_per_s == pytest.approx(2 * 50e9)
    assert h.transfer_link(range(4), range(4, 8)) == LinkClass("nvlink", 4 * 450e9, 1e-6)
    mixed = h.transfer_link([0, 1], [2, 9])   # one NVLink lane and one IB lane
    assert mixed.bandwidth_bytes_per_s == pytest.approx(450e9 + 50e9)
    assert (mixed.transport, mixed.latency_s) == ("ib", 2e-6)
    shared = get_cluster("8x-l40s-pcie", num_nodes=2)   # 8 lanes share 2 x 100 GbE
    assert shared.transfer_link(range(8), range(8, 16)).bandwidth_bytes_per_s == pytest.approx(25e9)
    holmes = get_cluster("holmes-ib-roce")
    assert holmes.transfer_link(range(8), range(32, 40)) == LinkClass("tcp", 12.5e9, 30e-6)
    with pytest.raises(PlanError, match="both src and dst"):
        h.transfer_link([0, 1], [1, 2])


# --------------------------------------------------------------------------- natural clusters

@pytest.mark.parametrize("device,n,servers,fabric,nic,gbit", [
    ("h100", 16, 2, "nvlink", "ib", 400),
    ("h100", 12, 2, "nvlink", "ib", 400),
    ("a100", 8, 1, "nvlink", "ib", 200),
    ("b200", 9, 2, "nvlink", "ib", 400),
    ("mi300x", 8, 1, "xgmi", "ib", 400),
    ("l40s", 4, 1, "pcie", "ethernet", 100),
    ("a100-pcie-80gb", 10, 2, "pcie", "ethernet", 100),
    ("mi250x", 8, 2, "xgmi", "ib", 200),
])
def test_natural_cluster_shapes(device, n, servers, fabric, nic, gbit):
    c = natural_cluster(device, n)
    assert c.num_devices == n and c.num_nodes == servers
    assert c.name == f"{get_device(device).name} x{n}"
    group = c.node_groups[0]
    assert group.fabric.kind == fabric
    assert (group.nics[0].kind, group.nics[0].bandwidth_gbit_s) == (nic, gbit)
    assert c.devices_per_node(c.num_nodes - 1) == n - (servers - 1) * c.devices_per_node(0)


def test_natural_cluster_details():
    c = natural_cluster("h100", 16)
    assert c.group_topology(range(16)) == GroupTopology(
        ranks=16, nodes=2, ranks_per_node=8, intra=LinkClass("nvlink", 450e9, 1e-6),
        inter=LinkClass("ib", 50e9, 2e-6))
    l40s = natural_cluster("l40s", 4)
    assert l40s.group_topology(range(4)).intra.transport == "pcie"
    gaudi = natural_cluster("gaudi2", 16)
    assert gaudi.group_topology([0, 8]).inter.transport == "roce"
    # Gaudi2's cards talk over their on-chip RoCE ports inside a server too
    assert gaudi.group_topology([0, 1]).intra.transport == "roce"
    with pytest.raises(ConfigError):
        natural_cluster("h100", 0)
    with pytest.raises(UnknownNameError):
        natural_cluster("h1000", 8)


# --------------------------------------------------------------------------- graph and copies

def test_graph_vertices_and_edges():
    c = cluster_from_dict(_two_group_dict(), "toy")
    g = c.graph
    assert nx.is_frozen(g)
    assert sum(1 for _, d in g.nodes(data=True) if d["role"] == "device") == 12
    named = sorted(v for v in g if v.startswith(("node:", "net:")))
    assert named == ["net:eth", "net:ib", "node:0", "node:1", "node:2"]
    assert g.edges["dev:9", "node:2"]["kind"] == "pcie"
    edge = g.edges["node:0", "net:ib"]
    assert (edge["kind"], edge["nics"], edge["bandwidth_bytes_per_s"]) == ("ib", 4, 4 * 400 * GBIT)
    assert not g.has_edge("node:2", "net:ib")


def test_num_nodes_replication():
    c = get_cluster("dgx-h100", num_nodes=3)
    assert (c.num_nodes, c.num_devices) == (3, 24)
    assert get_cluster("dgx-h100", num_nodes=1) == get_cluster("dgx-h100")
    with pytest.raises(ConfigError, match="node groups"):
        get_cluster("holmes-ib-roce", num_nodes=4)
    with pytest.raises(ConfigError):
        get_cluster("dgx-h100", num_nodes=0)


def test_with_bandwidth_scale_lowers_bandwidths():
    c = get_cluster("holmes-ib-roce")
    half = with_bandwidth_scale(c, 0.5)
    for devices in ([0, 1], [0, 8], [32, 40], [0, 32]):
        before, after = c.group_topology(devices), half.group_topology(devices)
        for a, b in ((before.intra, after.intra), (before.inter, after.inter)):
            if a is not None:
                assert b.bandwidth_bytes_per_s == pytest.approx(a.bandwidth_bytes_per_s / 2)
                assert b.latency_s == a.latency_s
    ib_only = with_bandwidth_scale(c, 0.25, kind="ib")
    assert ib_only.p2p(0, 8).bandwidth_bytes_per_s == pytest.approx(c.p2p(0, 8).bandwidth_bytes_per_s / 4)
    assert ib_only.p2p(32, 40) == c.p2p(32, 40) and ib_only.p2p(0, 1) == c.p2p(0, 1)
    assert with_bandwidth_scale(c, 2, kind="tcp").p2p(0, 32).bandwidth_bytes_per_s == pytest.approx(25e9)
    with pytest.raises(ConfigError):
        with_bandwidth_scale(c, 0)
    with pytest.raises(ConfigError):
        with_bandwidth_scale(c, 2, kind="nvswitch")


# --------------------------------------------------------------------------- strict YAML

def _mutated(path: tuple, value, *, delete: bool = False) -> dict:
    data = copy.deepcopy(_two_group_dict())
    target = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,match", [
    (("node_groups", 0, "nics", 0, "bandwith_gbit_s"), 400, r"unknown key 'bandwith_gbit_s'.*allowed keys"),
    (("colour",), "red", r"unknown key 'colour'.*allowed keys: schema_version"),
    (("node_groups", 0, "nics", 0, "bandwidth_gbit_s"), -5, r"nics\[0\].*`bandwidth_gbit_s` must be > 0"),
    (("node_groups", 0, "nics", 0, "latency_s"), "fast", r"`latency_s` must be a finite number"),
    (("node_groups", 0, "devices_per_node"), 0, r"`devices_per_node` must be > 0"),
    (("node_groups", 0, "count"), 1.5, r"`count` must be an integer"),
    (("networks", 1, "oversubscription"), 0.5, r"`oversubscription` must be >= 1"),
    (("networks", 1, "kind"), "wifi", r"`kind` must be one of ib, roce, ethernet"),
    (("node_groups", 0, "nics", 0, "network"), "nope", r"unknown network 'nope'"),
    (("node_groups", 0, "nics", 0, "kind"), "roce", r"a roce NIC cannot attach to ib network"),
    (("node_groups", 0, "nics", 0, "count"), 2, r"`per_device: true` means one NIC per device"),
    (("node_groups", 0, "source"), "no tag here", r"must carry a source tag"),
    (("node_groups", 1, "fabric"), {"kind": "nvlink"}, r"has no nvlink link"),
    (("node_groups", 1, "fabric"), {"kind": "pcie", "latency_s": 1e-6}, r"missing key 'source'"),
    (("node_groups", 0, "name"), "l", r"node group name 'l' is used twice"),
    (("schema_version",), 2, r"`schema_version` must be 1"),
])
def test_malformed_yaml_is_a_one_line_config_error(path, value, match):
    with pytest.raises(ConfigError, match=match) as info:
        cluster_from_dict(_mutated(path, value), "toy.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("toy.yaml")


def test_missing_keys_and_unused_networks():
    with pytest.raises(ConfigError, match="missing key 'device'"):
        cluster_from_dict(_mutated(("node_groups", 0, "device"), None, delete=True), "toy.yaml")
    data = _two_group_dict()
    data["networks"].append({"name": "spare", "kind": "roce", "source": "test [U]"})
    with pytest.raises(ConfigError, match="network 'spare' has no NICs attached"):
        cluster_from_dict(data, "toy.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        cluster_from_dict(["not", "a", "mapping"], "toy.yaml")


def test_unknown_device_is_the_catalogue_error_with_a_suggestion():
    match = r"toy.yaml: node_groups\[0\].*unknown device 'h1000'.*did you mean"
    with pytest.raises(UnknownNameError, match=match) as info:
        cluster_from_dict(_mutated(("node_groups", 0, "device"), "h1000"), "toy.yaml")
    assert info.value.kind == "device" and info.value.suggestions


def test_fabric_overrides_and_bridge_domains():
    data = _mutated(("node_groups", 1, "fabric"),
                    {"kind": "pcie", "bandwidth_bytes_per_s": 16e9, "source": "x16 behind a switch [U]"})
    c = cluster_from_dict(data, "toy.yaml")
    assert c.node_groups[1].fabric.bandwidth_bytes_per_s == 16e9
    assert c.node_groups[1].fabric.latency_s == get_device("l40s").host_link.latency_s
    bridged = _mutated(("node_groups", 1, "device"), "a100-pcie-80gb")
    bridged["node_groups"][1]["fabric"] = {"kind": "nvlink"}
    with pytest.raises(ConfigError, match="joins at most 2 devices"):
        cluster_from_dict(bridged, "toy.yaml")


def test_get_cluster_reads_a_user_file(tmp_path):
    path = tmp_path / "my-cluster.yml"
    path.write_text(yaml.safe_dump(_two_group_dict()), encoding="utf-8")
    c = get_cluster(str(path))
    assert isinstance(c, ClusterSpec) and c.name == "toy" and c.num_devices == 12
    assert get_cluster(str(path), num_nodes=None) == c
    with pytest.raises(ConfigError, match="cannot read cluster file"):
        get_cluster(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "dup.yaml"
    bad.write_text("schema_version: 1\nname: a\nname: b\nnode_groups: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        get_cluster(str(bad))
