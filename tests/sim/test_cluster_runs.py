"""Serving on clusters: every plan kind on every built-in cluster, pipelines, cross-server TP,
disaggregation over the cluster path, and the CLI's --cluster / train / published validation."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels.cluster import get_cluster, list_clusters, with_bandwidth_scale
from llmsim.hwmodels.deployment import Deployment, PlanNetwork
from llmsim.hwmodels.plans import ParallelPlan, place
from llmsim.cli import main
from llmsim.sim.config import config_from_dict
from llmsim.sim.runner import run
from llmsim.workloads.errors import PlanError

PAPER_FIGURES = Path(__file__).resolve().parents[2] / "validation" / "data" / "published" / "paper_figures.csv"


def _serve(**deployment):
    deployment = {k: v for k, v in deployment.items() if v is not None}
    cfg = config_from_dict({"deployment": {"model": "llama-3.1-8b", "engine": "vllm", **deployment},
                            "workload": {"name": "azure-conv", "num_requests": 40}})
    return run(cfg, keep_requests=False).summary


# data parallel only, TP, TP x PP, PP only, TP over a whole server, TP across servers, PP across servers
PLAN_KINDS = [dict(tp=1), dict(tp=2), dict(tp=2, pp=2), dict(tp=1, pp=4), dict(tp=8), dict(tp=16),
              dict(tp=8, pp=2)]


@pytest.mark.parametrize("cluster", sorted(list_clusters()))
@pytest.mark.parametrize("plan", PLAN_KINDS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_run_accepts_every_plan_kind_on_every_builtin_cluster(cluster, plan):
    nodes = 2 if get_cluster(cluster).num_nodes == 1 else None  # room for plans across servers
    s = _serve(cluster=cluster, num_nodes=nodes, **plan)
    assert s["requests_completed"] == 40
    tp, pp = plan.get("tp", 1), plan.get("pp", 1)
    assert s["num_devices"] == s["replicas"] * tp * pp
    assert s["virtual_engines"] == s["replicas"] * pp
    assert s["placement"]["cluster"].startswith(cluster)


def test_moe_expert_parallel_plan_runs_on_a_cluster():
    cfg = config_from_dict({"deployment": {"model": "mixtral-8x7b", "cluster": "dgx-h100", "tp": 8, "ep": 8},
                            "workload": {"name": "azure-conv", "num_requests": 20}})
    assert run(cfg, keep_requests=False).summary["requests_completed"] == 20


def test_pipeline_iteration_passes_through_every_stage():
    none = np.zeros(0, np.int64)
    ctx = np.full(8, 1000, np.int64)
    one = Deployment("llama-2-70b", "h100", tp=4)
    two = Deployment("llama-2-70b", "h100", tp=4, pp=2)
    t1 = one.iteration(none, none, ctx)[0]
    t2 = two.iteration(none, none, ctx)[0]
    assert t2 > t1  # the same layers plus a stage-to-stage send
    assert "pp_send_0" in two.cost(none, none, ctx).breakdown
    assert two.kv_capacity_tokens() > one.kv_capacity_tokens()  # half the layers per device


def test_tp_across_servers_is_priced_on_the_network():
    c = get_cluster("dgx-h100", num_nodes=2)
    p = place(ParallelPlan(tp=16), c, "naive")
    topo = p.group_topology(p.tp_group(0, 0))
    assert topo.nodes == 2
    dep = Deployment("llama-3.1-405b", c.device(0), quant="fp8", tp=16, network=PlanNetwork(tp=topo))
    none = np.zeros(0, np.int64)
    br = dep.cost(none, none, np.full(16, 2000, np.int64)).breakdown
    assert "allreduce_network" in br and "allreduce_nccl" not in br
    with pytest.raises(PlanError, match="TP group has 16 ranks"):
        Deployment("llama-2-70b", c.device(0), tp=8, network=PlanNetwork(tp=topo))


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["ib", "nvlink", "ethernet", "roce"]), factor=st.floats(0.05, 0.99),
       tp=st.sampled_from([8, 16]), pp=st.sampled_from([1, 2, 4]), tokens=st.integers(1, 8192))
def test_a_plans_cost_never_drops_when_a_link_gets_slower(kind, factor, tp, pp, tokens):
    base = get_cluster("holmes-ib-roce")
    slow = with_bandwidth_scale(base, factor, kind=kind)
    plan = ParallelPlan(tp=tp, pp=pp, dp=1)
    times = []
    for c in (base, slow):
        p = place(plan, c, "naive")
        net = PlanNetwork(tp=p.group_topology(p.tp_group(0, 0)),
                          stage_links=tuple(p.stage_link(s, 0, replica_only=True) for s in range(pp - 1)))
        dep = Deployment("gpt-39.1b", c.device(0), tp=tp, pp=pp, network=net)
        times.append(dep.iteration(np.array([tokens]), np.zeros(1, np.int64), np.full(4, 512, np.int64))[0])
    assert times[1] >= times[0] - 1e-15


def test_disaggregation_moves_kv_over_the_cluster_path():
    base = {"model": "llama-2-70b", "engine": "vllm"}
    wl = {"name": "azure-conv", "num_requests": 30}
    pools = {"prefill": {"tp": 8, "replicas": 1}, "decode": {"tp": 8, "replicas": 1}}
    same_node = run(config_from_dict({"deployment": {**base, "cluster": "dgx-h100", "num_nodes": 2},
                                      "disagg": {**pools}, "workload": wl}), keep_requests=False).summary
    slow = {"deployment": {**base, "cluster": "holmes-all-ethernet"}, "disagg": {**pools}, "workload": wl}
    eth = run(config_from_dict(slow), keep_requests=False).summary
    # across servers over NDR IB rails vs over one 100 GbE NIC per server
    assert eth["kv_transfer_s_per_token"] > 5 * same_node["kv_transfer_s_per_token"]
    pools_nv = {"prefill": {"tp": 4, "replicas": 1}, "decode": {"tp": 4, "replicas": 1}}
    nv = run(config_from_dict({"deployment": {**base, "cluster": "dgx-h100"}, "disagg": pools_nv, "workload": wl}),
             keep_requests=False).summary
    assert nv["kv_transfer_s_per_token"] < same_node["kv_transfer_s_per_token"] * 2  # NVLink inside one server


def test_cli_run_with_cluster_and_bad_cluster(capsys):
    assert main(["run", "--cluster", "dgx-a100", "--model", "llama-3.1-8b", "--tp", "2", "--pp", "2",
                 "--num-requests", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replicas"] == 2 and out["virtual_engines"] == 4
    assert main(["run", "--cluster", "dgx-a1000", "--num-requests", "5"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["run", "--cluster", "dgx-a100", "--tp", "16", "--num-requests", "5"]) == 2
    assert "devices" in capsys.readouterr().err


def test_cli_clusters_and_train(capsys):
    assert main(["clusters"]) == 0
    assert "holmes-ib-roce" in capsys.readouterr().out
    assert main(["train", "--cluster", "dgx-h100", "--num-nodes", "2", "--model", "gpt-7.5b", "--tp", "8",
                 "--pp", "2", "--global-batch", "64", "--micro-batch", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    res = out["results"]["nic-aware"]
    assert res["num_devices"] == 16 and res["tflops_per_gpu"] > 0
    assert main(["train", "--model", "gpt-7.5b", "--tp", "3"]) == 2
    assert "attention heads" in capsys.readouterr().err


@pytest.mark.skipif(not PAPER_FIGURES.is_file(), reason="shared published figures not present")
def test_validate_published_lists_every_row(capsys):
    assert main(["validate", str(PAPER_FIGURES), "--format", "published", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    total = sum(1 for _ in PAPER_FIGURES.open()) - 1
    assert rep["rows"] == len(rep["groups"])
    assert rep["rows"] + len(rep["not_expressed"]) == total
    names = {g["name"] for g in rep["groups"]}
    assert any(n.startswith("Holmes | tflops_per_gpu") for n in names)
    assert any(n.startswith("Splitwise | kv_transfer_time") for n in names)
    for g in rep["groups"]:
        assert set(g) >= {"name", "system", "metric", "setting", "published", "predicted", "ape"}
        assert g["ape"] == pytest.approx(abs(g["predicted"] - g["published"]) / g["published"])
    assert all(ne["reason"] for ne in rep["not_expressed"])


MIXED = """
schema_version: 1
name: mixed-h100-a100
description: one DGX H100 and one DGX A100 on one InfiniBand network (a test cluster)
sources: ["test fixture [U]"]
networks:
  - {name: ib, kind: ib, oversubscription: 1, source: "test [U]"}
node_groups:
  - name: h100
    count: 1
    device: h100-sxm
    devices_per_node: 8
    source: "test [U]"
    nics:
      - {kind: ib, count: 8, bandwidth_gbit_s: 400, latency_s: 2.0e-6, network: ib, per_device: true, source: "test [U]"}
  - name: a100
    count: 1
    device: a100-sxm-80gb
    devices_per_node: 8
    source: "test [U]"
    nics:
      - {kind: ib, count: 8, bandwidth_gbit_s: 200, latency_s: 2.0e-6, network: ib, per_device: true, source: "test [U]"}
"""


def test_heterogeneous_cluster_file_serves_replicas_of_each_kind(tmp_path, capsys):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    assert main(["run", "--cluster", str(path), "--model", "llama-3.1-8b", "--tp", "8", "--num-requests", "60",
                 "--router", "round-robin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replicas"] == 2 and out["requests_completed"] == 60
    kinds = {k for st in out["placement"]["stages"] for k in st["node_kinds"]}
    assert kinds == {"h100", "a100"}
    # naming one kind keeps the deployment on it
    assert main(["run", "--cluster", str(path), "--device", "a100", "--model", "llama-3.1-8b", "--tp", "8",
                 "--num-requests", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replicas"] == 1 and out["deployment"]["device"] == "a100-sxm-80gb"


def test_uneven_split_gives_the_faster_stage_more_layers(tmp_path):
    from llmsim.hwmodels.cluster import load_cluster_file
    from llmsim.search.partition import best_layer_split
    from llmsim.sim.training import TrainConfig, simulate_training

    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    c = load_cluster_file(path)
    plan = ParallelPlan(tp=8, pp=2, dp=1)
    cfg = TrainConfig(model="gpt-7.5b", plan=plan, global_batch=32, micro_batch=1, seq_len=2048)
    placement = place(plan, c, "nic-aware")
    assert placement.stage_device_spec(0).name == "h100-sxm"
    best = best_layer_split(cfg, placement)
    assert best.layer_split[0] > best.layer_split[1]  # the H100 stage takes more of the 36 layers
    from dataclasses import replace

    even = simulate_training(cfg, placement).step_s
    tuned = simulate_training(replace(cfg, plan=best), place(best, c, "nic-aware")).step_s
    assert tuned < even


def test_the_search_chooses_the_split_and_the_simulator_keeps_the_one_given(tmp_path):
    from llmsim.hwmodels.cluster import load_cluster_file
    from llmsim.search.partition import train_self_adapting
    from llmsim.sim.training import train

    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    c = load_cluster_file(path)
    plan = ParallelPlan(tp=8, pp=2, dp=1)
    kw = dict(global_batch=32, micro_batch=1, seq_len=2048)
    layers = lambda r: [s["layers"] for s in r.to_dict()["stages"]]  # noqa: E731
    assert layers(train("gpt-7.5b", c, plan, **kw)) == [18, 18]
    tuned = train_self_adapting("gpt-7.5b", c, plan, **kw)
    assert layers(tuned)[0] > layers(tuned)[1]
    assert layers(train_self_adapting("gpt-7.5b", c, plan, placement="naive", **kw)) == [18, 18]
