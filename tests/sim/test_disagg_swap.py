"""Preemption by swap to host memory, and prefill/decode disaggregation (sim/replica.py, sim/disagg.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_test_helpers import Trace, run_checked
from llmsim.sim.cluster import simulate
from llmsim.sim.costs import ToyCost
from llmsim.sim.disagg import simulate_disagg
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.schedulers import SCHEDULERS, SchedulerConfig
from llmsim.workloads.errors import ConfigError


@st.composite
def workloads(draw, max_n=30):
    n = draw(st.integers(0, max_n))
    arrival = np.sort(np.array(draw(st.lists(st.floats(0, 3.0), min_size=n, max_size=n)), dtype=float))
    prompt = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    output = draw(st.lists(st.integers(1, 80), min_size=n, max_size=n))
    return Trace(arrival, prompt, output)


def swap_config(blocks=30, swap_blocks=40, s_per_block=1e-3, policy="vllm", fuse=True, max_seqs=16):
    return ReplicaConfig(kv_blocks=blocks, block_size=8, preemption="swap", swap_blocks=swap_blocks,
                         swap_s_per_block=s_per_block, fuse_decode=fuse,
                         scheduler=SchedulerConfig(policy=policy, max_num_seqs=max_seqs))


@settings(max_examples=120, deadline=None)
@given(workloads(), st.integers(6, 40), st.integers(0, 60), st.sampled_from(SCHEDULERS.names()), st.integers(1, 2))
def test_swap_conserves_requests_and_respects_both_memories(trace, blocks, swap_blocks, policy, replicas):
    cfg = swap_config(blocks, swap_blocks, policy=policy)
    cluster, metrics, _checker, times = run_checked(trace, [cfg] * replicas, ToyCost())
    n = len(trace.arrival_s)
    assert metrics.completed + metrics.rejected == n
    assert all(a <= b for a, b in zip(times, times[1:]))
    for rep in cluster.replicas:
        assert rep.kv.free_blocks == rep.kv.num_blocks and rep.outstanding == 0
        assert rep.swap_used == 0 and rep.swapped_in_blocks == rep.swapped_out_blocks
        assert rep.num_resuming == 0


@settings(max_examples=60, deadline=None)
@given(workloads(), st.integers(6, 40), st.sampled_from(["vllm", "decode-priority", "sarathi"]))
def test_swap_decode_runs_match_the_per_iteration_loop(trace, blocks, policy):
    fused = simulate(trace, swap_config(blocks, policy=policy, fuse=True), ToyCost()).records
    plain = simulate(trace, swap_config(blocks, policy=policy, fuse=False), ToyCost()).records
    assert np.array_equal(fused["status"], plain["status"])
    for key in ("first_token_s", "finish_s", "preemptions"):
        assert np.array_equal(fused[key], plain[key], equal_nan=True)


def _pressure_trace():
    n = 40
    return Trace(np.linspace(0, 0.5, n), np.full(n, 60), np.full(n, 60))


def test_swap_keeps_progress_and_costs_host_link_time():
    trace = _pressure_trace()
    free = simulate(trace, swap_config(s_per_block=0.0), ToyCost())
    slow = simulate(trace, swap_config(s_per_block=5e-3), ToyCost())
    assert free.summary["preemptions"] > 0 and free.replicas[0]["swapped_out_blocks"] > 0
    assert slow.summary["requests_completed"] == 40
    assert slow.summary["e2e_mean_s"] > free.summary["e2e_mean_s"]
    recompute = simulate(trace, ReplicaConfig(kv_blocks=30, block_size=8), ToyCost())
    assert recompute.replicas[0]["swapped_out_blocks"] == 0
    # no host memory: swap falls back to recompute, same schedule as recompute
    none = simulate(trace, swap_config(swap_blocks=0, s_per_block=5e-3), ToyCost())
    assert np.array_equal(none.records["finish_s"], recompute.records["finish_s"])


def test_replica_config_validates_swap_settings():
    with pytest.raises(ConfigError, match="preemption"):
        ReplicaConfig(kv_blocks=10, preemption="evict")
    with pytest.raises(ConfigError, match="swap_blocks"):
        ReplicaConfig(kv_blocks=10, swap_blocks=-1)


def disagg(trace, *, p_blocks=100, d_blocks=100, transfer=1e-4, latency=0.0, n_p=1, n_d=1, p_cost=None,
           d_cost=None, **kw):
    pc = ReplicaConfig(kv_blocks=p_blocks, block_size=8)
    dc = ReplicaConfig(kv_blocks=d_blocks, block_size=8)
    return simulate_disagg(trace, pc, p_cost or ToyCost(), dc, d_cost or ToyCost(), num_prefill=n_p,
                           num_decode=n_d, transfer_s_per_token=transfer, transfer_latency_s=latency, **kw)


@settings(max_examples=100, deadline=None)
@given(workloads(), st.integers(8, 80), st.integers(8, 80), st.integers(1, 2), st.integers(1, 3))
def test_disagg_conserves_requests_and_frees_every_block(trace, p_blocks, d_blocks, n_p, n_d):
    res = disagg(trace, p_blocks=p_blocks, d_blocks=d_blocks, n_p=n_p, n_d=n_d)
    s = res.summary
    n = len(trace.arrival_s)
    assert s["requests_completed"] + s["requests_rejected"] == n and s["requests_unfinished"] == 0
    rec = res.records
    fin = rec["status"] == "finished"
    assert np.all(rec["first_token_s"][fin] >= rec["arrival_s"][fin])
    assert np.all(rec["finish_s"][fin] >= rec["first_token_s"][fin])
    multi = fin & (rec["output_tokens"] > 1)
    assert s["kv_transfers"] == int(multi.sum())
    # decoded on a decode replica, finished once
    assert np.all(rec["replica"][multi] >= n_p)
    assert len(set(rec["index"].tolist())) == n


def test_disagg_ttft_comes_from_the_prefill_pool_and_transfer_shows_in_tpot():
    trace = Trace([0.0, 0.0, 0.2, 0.4], [500, 300, 800, 100], [50, 1, 40, 30])
    fast = disagg(trace, transfer=0.0, p_blocks=400, d_blocks=400)
    slow = disagg(trace, transfer=1e-4, latency=0.01, p_blocks=400, d_blocks=400)
    assert fast.summary["ttft_mean_s"] == pytest.approx(slow.summary["ttft_mean_s"])
    assert slow.summary["tpot_mean_s"] > fast.summary["tpot_mean_s"]
    rec = slow.records
    one = rec["output_tokens"] == 1
    assert np.all(rec["finish_s"][one] == rec["first_token_s"][one])  # done at the prefill replica
    assert slow.summary["kv_transfers"] == 3
    assert slow.summary["kv_transfer_mean_s"] == pytest.approx(0.01 + 1e-4 * (500 + 800 + 100) / 3)
    pools = [r["pool"] for r in slow.replicas]
    assert pools == ["prefill", "decode"]


def test_disagg_rejects_what_the_decode_pool_can_never_hold():
    trace = Trace([0.0, 0.1], [40, 1000], [10, 10])
    res = disagg(trace, p_blocks=200, d_blocks=50)
    assert res.summary["requests_rejected"] == 1 and res.summary["requests_completed"] == 1


def test_disagg_separate_devices_change_the_phases_they_run():
    trace = Trace(np.linspace(0, 2, 30), np.full(30, 400), np.full(30, 50))
    base = disagg(trace)
    slow_decode = disagg(trace, d_cost=ToyCost().scaled(3.0))
    assert slow_decode.summary["ttft_mean_s"] == pytest.approx(base.summary["ttft_mean_s"])
    assert slow_decode.summary["tpot_mean_s"] > 2 * base.summary["tpot_mean_s"]
