"""Parallel plans and placements: validation errors, invariant P1, NIC-aware vs naive placement."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels.cluster import get_cluster, list_clusters, natural_cluster
from llmsim.hwmodels.plans import ParallelPlan, Placement, place, rdma_sets
from llmsim.workloads.errors import ConfigError, PlanError
from llmsim.workloads.models import get_model


def test_plan_checks_name_the_problem():
    m = get_model("llama-2-70b")
    with pytest.raises(PlanError, match="divide the 64 attention heads"):
        ParallelPlan(tp=3).check(m)
    with pytest.raises(PlanError, match="must equal"):
        ParallelPlan(tp=8, dp=2).check(m, num_devices=8)
    with pytest.raises(PlanError, match="layers"):
        ParallelPlan(pp=2, layer_split=(40, 30)).check(m)
    with pytest.raises(PlanError, match="no experts"):
        ParallelPlan(tp=2, ep=2).check(m)
    moe = get_model("mixtral-8x7b")
    with pytest.raises(PlanError, match="ep=3"):
        ParallelPlan(tp=8, ep=3).check(moe)
    with pytest.raises(PlanError, match="one layer count per stage"):
        ParallelPlan(pp=2, layer_split=(80,))
    with pytest.raises(PlanError, match="positive integer"):
        ParallelPlan(tp=0)


def test_even_and_uneven_stage_layers():
    m = get_model("gpt-7.5b")
    assert ParallelPlan(pp=4).stage_layers(m) == (9, 9, 9, 9)
    assert ParallelPlan(pp=5).stage_layers(m) == (8, 7, 7, 7, 7)
    assert ParallelPlan(pp=2, layer_split=(20, 16)).stage_layers(m) == (20, 16)


def test_naive_is_megatron_rank_order():
    c = get_cluster("holmes-ib-roce")
    p = place(ParallelPlan(tp=4, pp=2, dp=8), c, "naive")
    # rank = (s * dp + d) * tp + t
    for d in range(8):
        for s in range(2):
            assert p.tp_group(d, s) == tuple((s * 8 + d) * 4 + t for t in range(4))
    assert p.transport_policy == "job"


def test_nic_aware_keeps_dp_and_tp_groups_inside_one_nic_type():
    c = get_cluster("holmes-ib-roce")
    assert rdma_sets(c) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    p = place(ParallelPlan(tp=4, pp=2, dp=8), c, "nic-aware")
    for s in range(2):
        kinds = {c.node_kind(c.node_of(i)) for i in p.stage_devices(s)}
        assert len(kinds) == 1
        for t in range(4):
            assert p.group_topology(p.dp_group(s, t)).inter.transport in ("ib", "roce")
    # only the pipeline crosses NIC types, over TCP
    assert p.stage_link(0).inter.transport == "tcp"


def test_naive_placement_runs_every_cross_server_group_over_the_job_transport():
    c = get_cluster("holmes-ib-roce")
    p = place(ParallelPlan(tp=4, pp=2, dp=8), c, "naive")
    for s in range(2):
        assert p.group_topology(p.dp_group(s, 0)).inter.transport == "tcp"
    # on an all-IB cluster the job transport is IB
    q = place(ParallelPlan(tp=4, pp=2, dp=8), get_cluster("holmes-all-ib"), "naive")
    assert q.group_topology(q.dp_group(0, 0)).inter.transport == "ib"


def test_nic_aware_refuses_stages_that_cannot_stay_homogeneous():
    c = get_cluster("holmes-ib-roce")
    with pytest.raises(PlanError, match="NIC-homogeneous"):
        place(ParallelPlan(tp=8, pp=1, dp=8), c, "nic-aware")
    with pytest.raises(PlanError, match="needs dp x pp x tp = 128"):
        place(ParallelPlan(tp=8, pp=2, dp=8), c, "naive")


def test_explicit_placement_rejects_duplicates_and_bad_shapes():
    c = natural_cluster("h100", 8)
    plan = ParallelPlan(tp=2, pp=2, dp=2)
    with pytest.raises(PlanError, match="several ranks on device 3"):
        place(plan, c, "explicit", devices=np.array([[[0, 1], [2, 3]], [[3, 4], [5, 6]]]))
    with pytest.raises(PlanError, match="shape"):
        place(plan, c, "explicit", devices=np.arange(8))
    with pytest.raises(ConfigError, match="placement must be one of"):
        place(plan, c, "random")


@settings(max_examples=60, deadline=None)
@given(cluster=st.sampled_from(sorted(list_clusters())), tp=st.sampled_from([1, 2, 4, 8]),
       pp=st.sampled_from([1, 2, 4]), strategy=st.sampled_from(["naive", "nic-aware"]), nodes=st.integers(1, 4))
def test_placements_never_put_two_ranks_on_one_device(cluster, tp, pp, strategy, nodes):
    c = get_cluster(cluster)
    if c.num_nodes == 1:
        c = get_cluster(cluster, num_nodes=nodes)
    dp = c.num_devices // (tp * pp)
    if dp < 1:
        return
    try:
        p = place(ParallelPlan(tp=tp, pp=pp, dp=dp), c, strategy)
    except PlanError:
        return  # e.g. a stage that cannot stay NIC-homogeneous
    flat = p.devices.ravel()
    assert np.unique(flat).size == flat.size == tp * pp * dp
    assert flat.min() >= 0 and flat.max() < c.num_devices
    for d in range(dp):
        for s in range(pp):
            assert len(set(p.tp_group(d, s))) == tp


def test_placement_is_immutable():
    c = natural_cluster("a100", 8)
    p = place(ParallelPlan(tp=8), c)
    with pytest.raises(ValueError):
        p.devices[0, 0, 0] = 5
    assert isinstance(p, Placement)
