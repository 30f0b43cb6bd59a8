"""Alpha-beta collective models (hwmodels/collectives.py): properties, inputs and the shipped YAML."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.hwmodels.collectives import (COLLECTIVES, choose_algorithm, collective_candidates, collective_coefficients,
                                  collective_seconds, default_network_params, load_network_params,
                                  network_params_from_dict)
from llmsim.hwmodels.network import INTER_TRANSPORTS, INTRA_TRANSPORTS, GroupTopology, LinkClass, single_node_group
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.operators import COLLECTIVE_KINDS

YAML = Path(__file__).resolve().parents[2] / "hwmodels" / "data" / "network_calibration.yaml"
ARCHS = ("", "ampere", "hopper", "blackwell")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def topologies(draw):
    nodes = draw(st.integers(1, 6))
    per_node = draw(st.integers(1, 8))
    ranks = draw(st.integers((nodes - 1) * per_node + 1, nodes * per_node)) if nodes > 1 else per_node
    ranks = max(ranks, nodes)
    intra = inter = None
    if per_node > 1:
        intra = LinkClass(draw(st.sampled_from(INTRA_TRANSPORTS)), draw(st.floats(1e9, 1e12)),
                          draw(st.floats(0.0, 1e-5)))
    if nodes > 1:
        inter = LinkClass(draw(st.sampled_from(INTER_TRANSPORTS)), draw(st.floats(1e8, 1e11)),
                          draw(st.floats(0.0, 2e-5)))
    return GroupTopology(ranks=ranks, nodes=nodes, ranks_per_node=per_node, intra=intra, inter=inter)


def _scaled(topo, which, bw=1.0, lat=0.0):
    link = getattr(topo, which)
    new = LinkClass(link.transport, link.bandwidth_bytes_per_s * bw, link.latency_s + lat)
    return GroupTopology(ranks=topo.ranks, nodes=topo.nodes, ranks_per_node=topo.ranks_per_node,
                         intra=new if which == "intra" else topo.intra, inter=new if which == "inter" else topo.inter)


def test_kinds_match_the_operator_vocabulary():
    assert COLLECTIVES == COLLECTIVE_KINDS


@FAST
@given(topo=topologies(), kind=st.sampled_from(COLLECTIVES), arch=st.sampled_from(ARCHS),
       s1=st.floats(0, 1e10), s2=st.floats(0, 1e10))
def test_time_non_decreasing_in_message_size(topo, kind, arch, s1, s2):
    lo, hi = sorted((s1, s2))
    assert collective_seconds(kind, lo, topo, arch=arch) <= collective_seconds(kind, hi, topo, arch=arch)


@FAST
@given(topo=topologies(), kind=st.sampled_from(COLLECTIVES), arch=st.sampled_from(ARCHS),
       size=st.floats(0, 1e10), which=st.sampled_from(("intra", "inter")), slow=st.floats(0.01, 1.0),
       extra_lat=st.floats(0.0, 1e-4))
def test_never_cheaper_on_a_slower_or_higher_latency_link(topo, kind, arch, size, which, slow, extra_lat):
    if getattr(topo, which) is None:
        return
    base = collective_seconds(kind, size, topo, arch=arch)
    assert collective_seconds(kind, size, _scaled(topo, which, bw=slow), arch=arch) >= base
    assert collective_seconds(kind, size, _scaled(topo, which, lat=extra_lat), arch=arch) >= base


@FAST
@given(topo=topologies(), kind=st.sampled_from(COLLECTIVES), arch=st.sampled_from(ARCHS), size=st.floats(0, 1e10))
def test_auto_is_the_minimum_of_the_coefficients(topo, kind, arch, size):
    coef = collective_coefficients(kind, topo, arch=arch)
    assert coef.ndim == 2 and coef.shape[1] == 2 and coef.shape[0] >= 1
    if topo.ranks > 1:
        assert (coef[:, 1] > 0).all() and (coef[:, 0] >= 0).all()
    assert collective_seconds(kind, size, topo, arch=arch) == np.min(coef[:, 0] + coef[:, 1] * size)
    name = choose_algorithm(kind, size, topo, arch=arch)
    cands = {c[0]: c for c in collective_candidates(kind, topo, arch=arch)}
    if topo.ranks > 1:
        _, a, b = cands[name]
        assert a + b * size == collective_seconds(kind, size, topo, arch=arch)
        assert not name.startswith("hierarchical")  # NCCL's tuner has no such algorithm


@pytest.mark.parametrize("kind", COLLECTIVES)
def test_group_of_one_costs_nothing(kind):
    topo = GroupTopology(ranks=1, nodes=1, ranks_per_node=1, intra=None, inter=None)
    assert collective_seconds(kind, 1e9, topo) == 0.0
    np.testing.assert_array_equal(collective_coefficients(kind, topo), np.zeros((1, 2)))
    assert choose_algorithm(kind, 1e6, topo) == "none"


NV = LinkClass("nvlink", 450e9, 1e-6)
H100x8 = single_node_group(8, NV)
TWO_NODES = GroupTopology(ranks=16, nodes=2, ranks_per_node=8, intra=NV, inter=LinkClass("ib", 50e9, 1e-6))


@pytest.mark.parametrize("bad, match", [
    (dict(kind="allreduce"), "all_reduce, all_gather"),
    (dict(size=-1.0), "message_bytes"),
    (dict(size=float("nan")), "message_bytes"),
    (dict(algorithm="butterfly"), "auto"),
    (dict(algorithm="ring/ll256"), "protocol"),
    (dict(kind="send_recv", algorithm="ring"), "auto"),
    (dict(kind="all_gather", algorithm="custom_graph"), "auto"),
])
def test_bad_input_raises_config_error_naming_the_allowed_values(bad, match):
    args = dict(kind="all_reduce", size=1e6, algorithm="auto") | bad
    with pytest.raises(ConfigError, match=match):
        collective_seconds(args["kind"], args["size"], H100x8, algorithm=args["algorithm"])


def test_custom_all_reduce_is_one_node_only_and_never_auto():
    assert collective_seconds("all_reduce", 1e6, H100x8, algorithm="custom_graph", arch="hopper") > 0
    assert choose_algorithm("all_reduce", 1e3, H100x8, algorithm="custom_graph").startswith("custom_graph/")
    assert all(not c[0].startswith("custom") for c in collective_candidates("all_reduce", H100x8))
    with pytest.raises(ConfigError, match="one node"):
        collective_seconds("all_reduce", 1e6, TWO_NODES, algorithm="custom_eager")


def test_named_algorithms_and_hierarchical_by_name():
    s = 256e6
    auto = collective_seconds("all_reduce", s, TWO_NODES, arch="hopper")
    for name in ("ring", "tree", "ring/simple", "tree/ll", "hierarchical", "hierarchical/simple"):
        assert collective_seconds("all_reduce", s, TWO_NODES, algorithm=name, arch="hopper") > 0
    assert collective_seconds("all_reduce", s, TWO_NODES, algorithm="ring", arch="hopper") >= auto
    with pytest.raises(ConfigError, match="candidates"):
        collective_seconds("all_reduce", s, H100x8, algorithm="hierarchical")  # one node: no such algorithm


def test_magnitudes_are_nccl_like():
    # 8 x H100 NVLink all-reduce of 1 GiB: bus bandwidth between 250 and 450 GB/s; 1 KiB: 5-40 us
    t = collective_seconds("all_reduce", 2**30, H100x8, arch="hopper")
    busbw = 2 * 7 / 8 * 2**30 / t
    assert 250e9 < busbw < 450e9
    assert 5e-6 < collective_seconds("all_reduce", 1024, H100x8, arch="hopper") < 40e-6
    assert choose_algorithm("all_reduce", 1024, H100x8, arch="hopper").endswith("/ll")
    assert choose_algorithm("all_reduce", 2**30, H100x8, arch="hopper") in ("ring/simple", "ring/ll128")
    # crossing nodes costs more than staying inside one, and send/recv crosses on the inter link
    assert collective_seconds("all_reduce", 2**28, TWO_NODES) > collective_seconds("all_reduce", 2**28, H100x8)
    p2p_inter = GroupTopology(ranks=2, nodes=2, ranks_per_node=1, intra=None, inter=LinkClass("ib", 50e9, 1e-6))
    assert collective_seconds("send_recv", 2**26, p2p_inter) > collective_seconds("send_recv", 2**26,
                                                                                  single_node_group(2, NV))


def test_arch_keyed_sets_fall_back_to_the_generic_one():
    p = default_network_params()
    assert p.lookup("nvlink", "hopper").name == "nvlink@hopper"
    assert p.lookup("nvlink", "blackwell").name == "nvlink"
    assert p.lookup("tcp", "hopper").name == "tcp"
    tcp = GroupTopology(ranks=2, nodes=2, ranks_per_node=1, intra=None, inter=LinkClass("tcp", 12.5e9, 5e-6))
    ib = GroupTopology(ranks=2, nodes=2, ranks_per_node=1, intra=None, inter=LinkClass("ib", 12.5e9, 5e-6))
    assert collective_seconds("send_recv", 1e8, tcp) > collective_seconds("send_recv", 1e8, ib)


# ------------------------------------------------------------------------------------ the YAML

def test_shipped_yaml_loads_and_says_where_each_set_comes_from():
    p = load_network_params(YAML)
    assert p.path == str(YAML)
    for name, s in p.sets.items():
        assert s.source.startswith(("[fit]", "[U]")), name
    assert p.sets["nvlink@hopper"].source.startswith("[fit]")
    assert p.sets["tcp"].source.startswith("[U]")
    assert p.fit["salt"] and 0 < p.fit["holdout_fraction"] < 1 and p.fit["sources"]
    assert default_network_params() is default_network_params()  # cached


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(YAML.read_text())


def _mutated(raw, fn):
    data = yaml.safe_load(yaml.safe_dump(raw))
    fn(data)
    return data


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.__setitem__("extra", 1), "unknown key 'extra'"),
    (lambda d: d["sets"]["nvlink"].__setitem__("latency", 1), "unknown key 'latency'"),
    (lambda d: d["sets"]["nvlink"]["ll"].__setitem__("eff", 0.5), "unknown key 'eff'"),
    (lambda d: d["sets"]["nvlink"]["ll"].__setitem__("efficiency", -0.5), "efficiency"),
    (lambda d: d["sets"]["nvlink"]["simple"].__setitem__("step_s", "fast"), "step_s"),
    (lambda d: d["sets"]["nvlink"].pop("p2p"), "missing key 'p2p'"),
    (lambda d: d["sets"].pop("tcp"), "missing parameter sets tcp"),
    (lambda d: d["sets"].__setitem__("infiniband", d["sets"]["ib"]), "unknown parameter set 'infiniband'"),
    (lambda d: d["sets"]["custom_graph"].__setitem__("p2p", d["sets"]["ib"]["p2p"]), "unknown key 'p2p'"),
    (lambda d: d["sets"].__setitem__("nvlink@", d["sets"]["nvlink"]), "unknown parameter set 'nvlink@'"),
    (lambda d: d["fit"].__setitem__("seed", 1), "unknown key 'seed'"),
    (lambda d: d["fit"]["sources"][0].pop("sha256"), "missing key 'sha256'"),
])
def test_yaml_is_strict(raw, mutate, match):
    with pytest.raises(ConfigError, match=match):
        network_params_from_dict(_mutated(raw, mutate), "test.yaml")


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "net.yaml"
    bad.write_text("sets: {}\nsets: {}\n")
    with pytest.raises(ConfigError, match="net.yaml.*duplicate key"):
        load_network_params(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_network_params(tmp_path / "missing.yaml")


# ---- vLLM's custom all-reduce as candidates of the same model (collectives.tp_allreduce_segments)

from llmsim.hwmodels.collectives import (CUSTOM_ALLREDUCE_MAX_BYTES, custom_allreduce_protocol,  # noqa: E402
                                         tp_allreduce_segments)

NVL = LinkClass("nvlink", 450e9, 1e-6)


@pytest.mark.parametrize("ranks, size, proto", [
    (2, 0, "one_shot"), (2, CUSTOM_ALLREDUCE_MAX_BYTES - 1, "one_shot"),   # 2 ranks: always 1-stage
    (4, 512 * 1024 - 1, "one_shot"), (4, 512 * 1024, "two_shot"),
    (6, 256 * 1024 - 1, "one_shot"), (6, 256 * 1024, "two_shot"),
    (8, 256 * 1024 - 1, "one_shot"), (8, 300 * 1024, "two_shot"),
])
def test_custom_protocol_follows_vllms_size_rule(ranks, size, proto):
    assert custom_allreduce_protocol(ranks, size) == proto
    topo = single_node_group(ranks, NVL)
    assert choose_algorithm("all_reduce", size, topo, algorithm="custom_graph") == f"custom_graph/{proto}"
    named = collective_seconds("all_reduce", size, topo, algorithm=f"custom_graph/{proto}")
    assert collective_seconds("all_reduce", size, topo, algorithm="custom_graph") == named


@pytest.mark.parametrize("ranks", [2, 4, 6, 8])
def test_tp_segments_cover_every_size_once_custom_below_8_mib(ranks):
    segs = tp_allreduce_segments(single_node_group(ranks, NVL), custom="custom_graph", arch="hopper")
    assert segs[0][1] == 0.0 and segs[-1][2] == float("inf")
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))  # contiguous, no overlap
    assert segs[-1][0] == "nccl" and segs[-1][1] == CUSTOM_ALLREDUCE_MAX_BYTES
    nccl = collective_coefficients("all_reduce", single_node_group(ranks, NVL), arch="hopper")
    assert np.array_equal(segs[-1][3], nccl)  # the NCCL segment is exactly the auto candidates
    assert [s[0] for s in segs[:-1]] == (["custom_graph/one_shot"] if ranks == 2 else
                                         ["custom_graph/one_shot", "custom_graph/two_shot"])


def test_tp_segments_are_nccl_only_off_one_node_or_unsupported_sizes():
    two_nodes = GroupTopology(ranks=16, nodes=2, ranks_per_node=8, intra=NVL, inter=LinkClass("ib", 50e9, 1e-6))
    assert [s[0] for s in tp_allreduce_segments(two_nodes, custom="custom_graph")] == ["nccl"]
    assert [s[0] for s in tp_allreduce_segments(single_node_group(3, NVL), custom="custom_eager")] == ["nccl"]
    assert [s[0] for s in tp_allreduce_segments(single_node_group(8, NVL))] == ["nccl"]
    assert tp_allreduce_segments(single_node_group(1, NVL), custom="custom_graph") == []
    with pytest.raises(ConfigError, match="custom must be one of"):
        tp_allreduce_segments(single_node_group(2, NVL), custom="one_shot")


def _segment_seconds(segs, size):
    (coef,) = [c for _, lo, hi, c in segs if lo <= size < hi]
    return float(np.min(coef[:, 0] + coef[:, 1] * size))


@FAST
@given(ranks=st.sampled_from([2, 4, 8]), custom=st.sampled_from([None, "custom_graph", "custom_eager"]),
       arch=st.sampled_from(ARCHS), s1=st.floats(0, 6e7), s2=st.floats(0, 6e7), slow=st.floats(0.05, 1.0),
       lat=st.floats(0.0, 1e-5))
def test_tp_allreduce_monotonic_in_size_within_a_segment_and_in_link_speed(ranks, custom, arch, s1, s2, slow, lat):
    topo = single_node_group(ranks, NVL)
    segs = tp_allreduce_segments(topo, custom=custom, arch=arch)
    lo, hi = sorted((s1, s2))
    same = [s for s in segs if s[1] <= lo < s[2]][0]
    if hi < same[2]:  # vLLM switches kernel by size, not speed: monotonic inside each of its ranges
        assert _segment_seconds(segs, lo) <= _segment_seconds(segs, hi) * (1 + 1e-12)
    slower = tp_allreduce_segments(single_node_group(ranks, LinkClass("nvlink", 450e9 * slow, 1e-6 + lat)),
                                   custom=custom, arch=arch)
    assert [s[:3] for s in slower] == [s[:3] for s in segs]
    assert _segment_seconds(slower, lo) >= _segment_seconds(segs, lo) * (1 - 1e-12)
