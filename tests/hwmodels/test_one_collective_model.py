"""One collective model for every path: a deployment prices each collective with the alpha-beta
candidates of hwmodels/collectives.py, whether its group comes from a placement on a cluster or is
implied by one server of the device."""
import numpy as np
import pytest

from llmsim.hwmodels.cluster import get_cluster
from llmsim.hwmodels.collectives import collective_seconds, tp_allreduce_segments
from llmsim.hwmodels.deployment import Deployment, PlanNetwork
from llmsim.hwmodels.devices import get_device
from llmsim.hwmodels.network import LinkClass, single_node_group
from llmsim.hwmodels.plans import ParallelPlan, place

NONE = np.zeros(0, np.int64)


def _allreduce(dep, tokens):
    br = dep.cost(np.array([tokens], np.int64), np.array([0], np.int64), NONE).breakdown
    return {k: v for k, v in br.items() if k.startswith("allreduce")}


@pytest.mark.parametrize("tokens", [1, 64, 200, 1024, 4096])
def test_same_group_priced_the_same_placed_or_implied(tokens):
    c = get_cluster("dgx-h100")
    p = place(ParallelPlan(tp=8), c, "naive")
    topo = p.group_topology(p.tp_group(0, 0))
    implied = Deployment("llama-2-70b", "h100", tp=8)
    placed = Deployment("llama-2-70b", c.device(0), tp=8, network=PlanNetwork(tp=topo))
    assert topo.nodes == 1 and not topo.host_topology
    a, b = _allreduce(implied, tokens), _allreduce(placed, tokens)
    assert a and a == b


@pytest.mark.parametrize("tokens", [1, 100, 511, 512, 1024, 4096])
def test_deployment_allreduce_is_the_collective_model(tokens):
    """Each all-reduce op is 2 x layers calls of collectives.py's time for its message, no more."""
    dep = Deployment("llama-2-70b", "h100", tp=8, engine="vllm")
    d = get_device("h100")
    link = d.scale_up_link
    topo = single_node_group(8, LinkClass(link.kind, link.bandwidth_bytes_per_s, link.latency_s))
    msg = tokens * 8192 * 2.0
    custom = "custom_graph" if dep.engine.cuda_graphs else "custom_eager"
    (name,) = [n for n, lo, hi, _ in tp_allreduce_segments(topo, custom=custom, arch=d.arch_class) if lo <= msg < hi]
    algo = "auto" if name == "nccl" else name
    want = 2 * 80 * collective_seconds("all_reduce", msg, topo, algorithm=algo, arch=d.arch_class)
    got = _allreduce(dep, tokens)
    assert len(got) == 1
    assert list(got.values())[0] == pytest.approx(want, rel=1e-12)


def test_pcie_host_group_and_implied_pcie_server_use_the_same_model():
    """On the PCIe host the ring's shared bottleneck sets the link; the price is collectives.py's."""
    c = get_cluster("8x-l40s-pcie")
    p = place(ParallelPlan(tp=4), c, "naive")
    topo = p.group_topology(p.tp_group(0, 0))
    dep = Deployment("llama-2-13b", c.device(0), tp=4, network=PlanNetwork(tp=topo))
    got = _allreduce(dep, 256)
    want = 2 * 40 * collective_seconds("all_reduce", 256 * 5120 * 2.0, topo, arch=c.device(0).arch_class)
    assert list(got) == ["allreduce_network"] and got["allreduce_network"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("slow", [0.5, 0.1])
def test_a_slower_scale_up_link_never_makes_the_tp_allreduce_faster(slow):
    import dataclasses

    d = get_device("h100")
    links = tuple(dataclasses.replace(lk, bandwidth_bytes_per_s=lk.bandwidth_bytes_per_s * slow)
                  if lk.scope == "scale_up" else lk for lk in d.links)
    slower = dataclasses.replace(d, links=links)
    assert slower.scale_up_link.bandwidth_bytes_per_s < d.scale_up_link.bandwidth_bytes_per_s
    for tokens in (1, 256, 4096):
        fast = sum(_allreduce(Deployment("llama-2-70b", d, tp=8), tokens).values())
        slow_t = sum(_allreduce(Deployment("llama-2-70b", slower, tp=8), tokens).values())
        assert slow_t >= fast
