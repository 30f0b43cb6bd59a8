"""PCIe host topologies: cards under switches, sockets, peer-to-peer or host memory (docs/pcie_topologies.md)."""
import copy

import pytest

from llmsim.hwmodels.cluster import cluster_from_dict, get_cluster, with_bandwidth_scale
from llmsim.hwmodels.collectives import collective_seconds
from llmsim.hwmodels.network import LinkClass, shared_bottleneck
from llmsim.workloads.errors import ConfigError

_SW = {"uplink_bandwidth_bytes_per_s": 32e9, "uplink_latency_s": 0.5e-6, "source": "test [U]"}


def _host(p2p=True, sockets=2):
    per = 4 // sockets
    return {
        "p2p": p2p, "source": "test [U]",
        "switches": [{"socket": s // per, "devices": [2 * s, 2 * s + 1], **_SW} for s in range(4)],
        "root_complex": {"bandwidth_bytes_per_s": 24e9, "latency_s": 0.5e-6, "source": "test [U]"},
        **({"socket_link": {"bandwidth_bytes_per_s": 8e9, "latency_s": 1e-6, "source": "test [U]"}}
           if sockets > 1 else {}),
    }


def _cluster(host):
    return {"schema_version": 1, "name": "toy-pcie", "node_groups": [
        {"name": "box", "device": "l40s", "devices_per_node": 8, "source": "test [U]",
         "fabric": {"kind": "pcie"}, **({"host": host} if host is not None else {})}]}


def _bus_bw(cluster, devices, size=1 << 28):
    n = len(devices)
    t = collective_seconds("all_reduce", size, cluster.group_topology(devices), arch="ada")
    return size / t * 2 * (n - 1) / n


def test_shared_bottleneck_divides_a_link_among_the_flows_crossing_it():
    assert shared_bottleneck([["a", "b"], ["b"]], {"a": 10.0, "b": 30.0}) == pytest.approx(10.0)
    assert shared_bottleneck([["b"], ["b"], ["b"], ["a"]], {"a": 50.0, "b": 30.0}) == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="at least one flow"):
        shared_bottleneck([], {})


@pytest.mark.parametrize("p2p", [True, False])
def test_bus_bandwidth_does_not_rise_as_ranks_spread_over_switches_and_sockets(p2p):
    c = cluster_from_dict(_cluster(_host(p2p=p2p)), "toy")
    groups = ([0, 1], [0, 2], [0, 1, 2, 3], [0, 4], [0, 1, 4, 5], list(range(8)))
    bw = {tuple(g): c.group_topology(g).intra.bandwidth_bytes_per_s for g in groups}
    # one switch >= two switches on one socket >= across sockets; 8 ranks the least
    assert bw[(0, 1)] >= bw[(0, 2)] >= min(bw.values()) == bw[tuple(range(8))]
    assert bw[(0, 1)] >= bw[(0, 1, 2, 3)] >= bw[tuple(range(8))]
    assert bw[(0, 1)] > bw[tuple(range(8))]
    if p2p:
        assert bw[(0, 2)] >= bw[(0, 4)] and bw[(0, 1, 2, 3)] >= bw[(0, 1, 4, 5)] >= bw[tuple(range(8))]
    else:   # host-memory copies spread over two sockets' root complexes: two sockets can beat one
        assert bw[(0, 4)] > bw[(0, 2)] and bw[(0, 1, 4, 5)] > bw[(0, 1, 2, 3)]
    bus = [_bus_bw(c, g) for g in ([0, 1], [0, 1, 2, 3], list(range(8)))]
    assert bus[0] > bus[1] >= bus[2]


def test_one_switch_is_todays_independent_link_and_p2p_off_is_slower():
    with_host = cluster_from_dict(_cluster(_host()), "toy")
    without = cluster_from_dict(_cluster(None), "toy")
    assert with_host.group_topology([0, 1]).intra == without.group_topology([0, 1]).intra == LinkClass(
        "pcie", 32e9, 2e-6)
    assert with_host.p2p(0, 1) == without.p2p(0, 1)
    no_p2p = cluster_from_dict(_cluster(_host(p2p=False)), "toy")
    a, b = no_p2p.group_topology([0, 1]).intra, with_host.group_topology([0, 1]).intra
    assert a.bandwidth_bytes_per_s < b.bandwidth_bytes_per_s and a.latency_s > b.latency_s


def test_the_ring_bottleneck_is_the_most_shared_link():
    c = cluster_from_dict(_cluster(_host()), "toy")
    # 4 ranks on one socket, 2 switches: 2 ring edges share the 24 GB/s root complex
    assert c.group_topology([0, 1, 2, 3]).intra.bandwidth_bytes_per_s == pytest.approx(12e9)
    # 8 ranks: 3 edges through each root complex (8 GB/s), 1 per direction on the 8 GB/s socket link
    assert c.group_topology(range(8)).intra.bandwidth_bytes_per_s == pytest.approx(8e9)
    # the rank order given does not matter: the ring is ordered by socket and switch
    assert c.group_topology([5, 0, 3, 6, 1, 4, 7, 2]).intra == c.group_topology(range(8)).intra


def test_what_if_scaling_scales_the_host_links():
    c = cluster_from_dict(_cluster(_host()), "toy")
    fast = with_bandwidth_scale(c, 2.0, kind="pcie")
    assert fast.group_topology(range(8)).intra.bandwidth_bytes_per_s == pytest.approx(16e9)


@pytest.mark.parametrize("edit,match", [
    (lambda h: h["switches"][0].update(devices=[0]), r"missing \[1\]"),
    (lambda h: h["switches"][0].update(devices=[0, 1, 2]), "under switches 0 and 1"),
    (lambda h: h["switches"][3].update(devices=[6, 7, 9]), r"not on this server \[9\]"),
    (lambda h: h.pop("socket_link"), "need `socket_link`"),
    (lambda h: h["switches"][2].update(socket=3), "numbered 0..k-1"),
    (lambda h: h.update(p2p="yes"), "`p2p` must be true or false"),
    (lambda h: h["root_complex"].update(bandwidth_bytes_per_s=0), "root_complex_bandwidth_bytes_per_s"),
    (lambda h: h["switches"][1].update(source="no tag"), "source tag"),
    (lambda h: h["switches"][1].update(uplink_gbps=3), "unknown key 'uplink_gbps'"),
    (lambda h: h["socket_link"].pop("latency_s"), "missing key 'latency_s'"),
])
def test_bad_host_topology_yaml_is_one_clear_config_error(edit, match):
    host = copy.deepcopy(_host())
    edit(host)
    with pytest.raises(ConfigError, match=match):
        cluster_from_dict(_cluster(host), "toy")


def test_host_needs_a_pcie_fabric_and_one_socket_takes_no_socket_link():
    data = _cluster(_host())
    data["node_groups"][0]["device"] = "h100-sxm"
    data["node_groups"][0]["fabric"] = {"kind": "nvlink"}
    with pytest.raises(ConfigError, match="fabric is 'nvlink'"):
        cluster_from_dict(data, "toy")
    host = _host(sockets=1)
    host["socket_link"] = {"bandwidth_bytes_per_s": 8e9, "latency_s": 1e-6, "source": "test [U]"}
    with pytest.raises(ConfigError, match="socket_link` is given"):
        cluster_from_dict(_cluster(host), "toy")


def test_builtin_8x_l40s_pcie_is_two_sockets_of_two_switches():
    c = get_cluster("8x-l40s-pcie")
    host = c.node_groups[0].host
    assert host is not None and host.num_sockets == 2 and len(host.switches) == 4
    tp2, tp8 = c.group_topology([0, 1]), c.group_topology(range(8))
    assert tp2.intra == LinkClass("pcie", 32e9, 2e-6)   # inside one switch: as before
    size = 1 << 26
    per_byte = [collective_seconds("all_reduce", size, t, arch="ada") / size for t in (tp2, tp8)]
    assert per_byte[1] > per_byte[0]
    # unchanged elsewhere: NVLink servers carry no host topology
    assert get_cluster("dgx-h100").node_groups[0].host is None


def test_simulate_on_8x_l40s_pcie_prices_tp8_all_reduce_over_the_host_bottleneck():
    import llmsim

    seconds = {}
    for tp in (2, 8):
        built = llmsim.build(llmsim.Scenario(model="llama-2-13b", cluster="8x-l40s-pcie", tp=tp, num_requests=4))
        assert llmsim.simulate(built).metrics.requests_completed == 4
        p = llmsim.predict_iteration(built.deployments[0], decode_context=[1024] * 32)
        seconds[tp] = sum(v for k, v in p.breakdown.items() if k.startswith("allreduce"))
    # both all-reduce the same bytes (hidden x 2 B per token, twice a layer): TP8 is slower per byte
    assert seconds[8] > seconds[2] > 0
