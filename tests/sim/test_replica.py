"""Replica engine: hand-computed timings, rejection, decode runs identical to the per-iteration loop."""
import numpy as np
import pytest

from sim_test_helpers import Trace
from llmsim.sim.cluster import ROUTERS, simulate
from llmsim.sim.costs import ToyCost
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.schedulers import SCHEDULERS, SchedulerConfig
from llmsim.sim.trace import ChromeTracer
from llmsim.workloads.errors import ConfigError

E = np.zeros(0, dtype=np.int64)


def test_one_request_timeline_matches_the_cost_model_by_hand():
    cost = ToyCost()
    t = Trace([1.0], [100], [4])
    res = simulate(t, ReplicaConfig(kv_blocks=100), cost)
    prefill, _ = cost.iteration(np.array([100]), np.array([0]), E)
    decodes = [cost.iteration(E, E, np.array([100 + k]))[0] for k in range(3)]
    rec = res.records
    assert rec["first_token_s"][0] == 1.0 + prefill
    assert rec["finish_s"][0] == pytest.approx(1.0 + prefill + sum(decodes), rel=1e-15)
    s = res.summary
    assert s["ttft_mean_s"] == pytest.approx(prefill, rel=1e-12) and s["requests_completed"] == 1 and s["iterations"] == 4
    assert s["tpot_mean_s"] == pytest.approx(sum(decodes) / 3)
    assert s["energy_j"] == pytest.approx(cost.power_w * (prefill + sum(decodes)))


def test_one_token_output_finishes_at_prefill_and_has_no_tpot():
    res = simulate(Trace([0.0], [50], [1]), ReplicaConfig(kv_blocks=10), ToyCost())
    assert res.summary["requests_completed"] == 1 and res.summary["tpot_mean_s"] != res.summary["tpot_mean_s"]
    assert res.to_json_dict()["tpot_mean_s"] is None


def test_requests_that_can_never_fit_are_rejected_and_counted():
    cfg = ReplicaConfig(kv_blocks=10, block_size=16, watermark_fraction=0.0)  # 160 tokens
    res = simulate(Trace([0.0, 0.1, 0.2], [100, 150, 60], [60, 20, 100]), cfg, ToyCost())
    s = res.summary
    assert (s["requests_completed"], s["requests_rejected"], s["requests_unfinished"]) == (2, 1, 0)
    assert list(res.records["status"]) == ["finished", "rejected", "finished"]


@pytest.mark.parametrize("policy", SCHEDULERS.names())
@pytest.mark.parametrize("router,replicas", [("round-robin", 1), ("least-kv", 3), ("power-of-two", 2),
                                             ("least-outstanding", 2)])
def test_decode_runs_match_per_iteration_loop(policy, router, replicas):
    rng = np.random.default_rng(7)
    n = 150
    t = Trace(np.sort(rng.uniform(0, 20, n)), rng.integers(1, 600, n), rng.integers(1, 200, n))
    out = []
    for fuse in (True, False):
        cfg = ReplicaConfig(kv_blocks=120, block_size=8, fuse_decode=fuse,
                            scheduler=SchedulerConfig(policy=policy, max_num_seqs=24, max_num_batched_tokens=512))
        res = simulate(t, cfg, ToyCost(), num_replicas=replicas, router=router, seed=3)
        out.append(res)
    assert out[0].to_json() == out[1].to_json()
    for key in ("first_token_s", "finish_s", "replica", "preemptions"):
        assert np.array_equal(out[0].records[key], out[1].records[key])
    assert out[0].wall_events <= out[1].wall_events


class NoRunCost:
    """Only the protocol's iteration(): the replica falls back to per-step calls inside decode runs."""

    def __init__(self):
        self.inner = ToyCost()
        self.calls = 0

    def iteration(self, a, b, c):
        self.calls += 1
        return self.inner.iteration(a, b, c)


def test_cost_model_without_decode_run_gives_identical_results():
    rng = np.random.default_rng(1)
    t = Trace(np.sort(rng.uniform(0, 5, 40)), rng.integers(1, 300, 40), rng.integers(1, 100, 40))
    cfg = ReplicaConfig(kv_blocks=200)
    assert simulate(t, cfg, NoRunCost()).to_json() == simulate(t, cfg, ToyCost()).to_json()


def test_arrival_during_a_decode_run_is_admitted_at_the_next_iteration():
    cost = ToyCost()
    # Request 0 decodes 50 tokens alone; request 1 arrives mid-run and must be prefilled at the end of
    # the iteration in flight (vLLM prefill-first), not after request 0 finishes.
    t = Trace([0.0, 0.3], [100, 100], [50, 5])
    res = simulate(t, ReplicaConfig(kv_blocks=100), cost)
    assert res.records["first_token_s"][1] < 0.4
    assert res.records["finish_s"][1] < res.records["finish_s"][0]


def test_multiple_cost_models_and_configs_per_replica():
    t = Trace(np.arange(20) * 0.05, [200] * 20, [30] * 20)
    fast, slow = ToyCost().scaled(0.5), ToyCost()
    res = simulate(t, [ReplicaConfig(kv_blocks=100), ReplicaConfig(kv_blocks=50)], [fast, slow], router="round-robin")
    reps = res.replicas
    assert reps[0]["busy_s"] < reps[1]["busy_s"] and reps[0]["finished"] == reps[1]["finished"] == 10
    with pytest.raises(ConfigError, match="one entry per replica"):
        simulate(t, [ReplicaConfig(kv_blocks=100)] * 2, [fast])


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="exactly one of kv_blocks and kv_capacity_tokens"):
        ReplicaConfig()
    with pytest.raises(ConfigError, match="watermark_fraction must be in"):
        ReplicaConfig(kv_blocks=10, watermark_fraction=1.5)
    assert ReplicaConfig(kv_capacity_tokens=1000, block_size=16).num_blocks == 62
    with pytest.raises(ConfigError, match="does not implement iteration"):
        simulate(Trace([0.0], [1], [1]), ReplicaConfig(kv_blocks=10), object())


def test_unsorted_input_is_served_by_arrival_and_reported_in_input_order():
    t = Trace([2.0, 0.0, 1.0], [10, 10, 10], [2, 2, 2])
    res = simulate(t, ReplicaConfig(kv_blocks=10), ToyCost())
    assert list(res.records["index"]) == [0, 1, 2]
    assert list(res.records["arrival_s"]) == [2.0, 0.0, 1.0]


def test_closed_loop_keeps_at_most_users_outstanding():
    t = Trace(np.zeros(30), [100] * 30, [10] * 30, closed_loop=(3, 0.5))
    res = simulate(t, ReplicaConfig(kv_blocks=200), ToyCost(), keep_requests=True)
    rec = res.records
    assert res.summary["requests_completed"] == 30
    order = np.argsort(rec["arrival_s"], kind="stable")
    arrivals, finishes = rec["arrival_s"][order], np.sort(rec["finish_s"])
    # the (k+3)-th request arrives think time after the k-th completion
    assert np.allclose(arrivals[3:], finishes[:27] + 0.5)


def test_until_leaves_requests_unfinished_and_conserved():
    t = Trace(np.arange(50) * 0.1, [500] * 50, [200] * 50)
    s = simulate(t, ReplicaConfig(kv_blocks=400), ToyCost(), until_s=2.0).summary
    assert s["requests_completed"] + s["requests_rejected"] + s["requests_unfinished"] == 50
    assert s["requests_unfinished"] > 0


def test_chrome_trace_has_one_complete_event_per_iteration(tmp_path):
    import json

    tracer = ChromeTracer()
    t = Trace([0.0, 0.01], [100, 50], [20, 10])
    res = simulate(t, ReplicaConfig(kv_blocks=50), ToyCost(), num_replicas=2, tracer=tracer)
    data = json.loads(tracer.write(tmp_path / "trace.json").read_text())
    xs = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == res.summary["iterations"] == len(tracer)
    assert {e["pid"] for e in xs} == {0, 1} and all(e["dur"] > 0 for e in xs)


@pytest.mark.parametrize("router", ROUTERS.names())
def test_every_router_serves_everything_and_is_deterministic(router):
    rng = np.random.default_rng(2)
    t = Trace(np.sort(rng.uniform(0, 10, 80)), rng.integers(1, 400, 80), rng.integers(1, 80, 80))
    a = simulate(t, ReplicaConfig(kv_blocks=80), ToyCost(), num_replicas=3, router=router, seed=11)
    b = simulate(t, ReplicaConfig(kv_blocks=80), ToyCost(), num_replicas=3, router=router, seed=11)
    assert a.to_json() == b.to_json() and a.summary["requests_completed"] == 80
    assert sum(r["finished"] for r in a.replicas) == 80


def test_least_outstanding_balances_and_round_robin_cycles():
    t = Trace(np.zeros(9), [10] * 9, [100] * 9)
    rr = simulate(t, ReplicaConfig(kv_blocks=100), ToyCost(), num_replicas=3, router="rr")
    assert list(rr.records["replica"]) == [0, 1, 2] * 3
    lo = simulate(t, ReplicaConfig(kv_blocks=100), ToyCost(), num_replicas=3, router="least-outstanding")
    assert sorted(np.bincount(lo.records["replica"])) == [3, 3, 3]


@pytest.mark.parametrize("policy", ["vllm", "sarathi", "decode-priority"])
def test_tight_kv_preempts_by_recompute_and_still_serves_everyone(policy):
    rng = np.random.default_rng(4)
    t = Trace(np.zeros(40), rng.integers(50, 200, 40), rng.integers(50, 150, 40))
    cfg = ReplicaConfig(kv_blocks=40, block_size=16, scheduler=SchedulerConfig(policy=policy, max_num_seqs=64))
    res = simulate(t, cfg, ToyCost())
    s = res.summary
    assert s["preemptions"] > 0 and s["requests_completed"] == 40
    assert res.records["preemptions"].sum() == s["preemptions"]
    assert res.replicas[0]["peak_kv_blocks"] <= 40


@pytest.mark.parametrize("policy", SCHEDULERS.names())
def test_an_arrival_in_any_iteration_of_a_decode_run_matches_the_per_iteration_loop(policy):
    # Request 0 decodes 12 tokens alone; request 1 arrives inside each iteration in turn (and exactly on
    # iteration boundaries), including the first and the last two of the run.
    cost = ToyCost()
    prefill = cost.iteration(np.array([64]), np.array([0]), E)[0]
    step = cost.iteration(E, E, np.array([64]))[0]
    arrivals = prefill + step * np.concatenate([np.arange(0, 13) + 0.5, np.arange(0, 13)])
    for a in arrivals:
        t = Trace([0.0, float(a)], [64, 32], [13, 3])
        out = [simulate(t, ReplicaConfig(kv_blocks=50, fuse_decode=f, scheduler=SchedulerConfig(policy=policy)),
                        cost).to_json() for f in (True, False)]
        assert out[0] == out[1], a


def test_remembered_prefill_prices_give_the_results_of_fresh_calls(monkeypatch):
    """Replicas remember single-prompt prefill prices (shared per cost model); with the table kept
    empty every iteration calls the cost model, and the results are the same bits."""
    import llmsim.sim.replica as replica_module

    rng = np.random.default_rng(4)
    n = 300
    t = Trace(np.sort(rng.uniform(0, 20, n)), rng.integers(1, 40, n) * 16, rng.integers(1, 60, n))
    cfg = ReplicaConfig(kv_blocks=400)
    remembered = NoRunCost()
    a = simulate(t, cfg, remembered, num_replicas=2, router="least-outstanding")
    monkeypatch.setattr(replica_module, "_MAX_PRICES", 0)
    fresh = NoRunCost()
    b = simulate(t, cfg, fresh, num_replicas=2, router="least-outstanding")
    assert a.to_json() == b.to_json()
    for key in a.records:
        np.testing.assert_array_equal(a.records[key], b.records[key])
    assert remembered.calls < fresh.calls


@pytest.mark.parametrize("policy", SCHEDULERS.names())
@pytest.mark.parametrize("caching,router", [(False, "least-kv"), (True, "least-kv"), (True, "power-of-two")])
def test_prefills_running_on_into_their_decodes_match_the_per_iteration_loop(policy, caching, router, monkeypatch):
    """At light load most prefill steps run straight on into their decodes (``Replica._plan_lead``);
    arrivals cut those runs in the prefill step and in the decodes, routers read the blocks in use
    mid-run, and prefix caching registers blocks: records, summary and the per-iteration trace are
    those of the per-iteration loop, with fewer events."""
    from llmsim.sim.cluster import LeastKVRouter
    from llmsim.workloads.traces import PoissonArrivals, shared_prefix

    seen = []

    def probe(self, request, replicas, now):  # least-kv, recording every replica's blocks in use mid-run
        loads = [r.kv_load() for r in replicas]
        seen.append((now, loads))
        return loads.index(min(loads))

    monkeypatch.setattr(LeastKVRouter, "route", probe)

    t = shared_prefix(num_groups=3, num_prompts_per_group=12, system_prompt_len=96, question_len=40, output_len=30,
                      arrivals=PoissonArrivals(rate_per_s=3.0), seed=5)
    out = []
    for fuse in (True, False):
        tracer = ChromeTracer()
        cfg = ReplicaConfig(kv_blocks=90, block_size=8, fuse_decode=fuse, prefix_caching=caching,
                            scheduler=SchedulerConfig(policy=policy, max_num_seqs=6, max_num_batched_tokens=256))
        seen = []
        res = simulate(t, cfg, ToyCost(), num_replicas=2, router=router, seed=4, tracer=tracer)
        a = tracer.arrays()
        out.append((res, sorted(zip(*(a[c].tolist() for c in sorted(a)))), list(seen)))
    (fused, trace_f, kv_f), (loop, trace_l, kv_l) = out
    assert fused.to_json() == loop.to_json() and trace_f == trace_l and kv_f == kv_l
    for key in ("first_token_s", "finish_s", "replica", "preemptions"):
        assert np.array_equal(fused.records[key], loop.records[key])
    assert fused.wall_events < loop.wall_events


@pytest.mark.parametrize("policy", ["vllm", "sarathi"])
def test_the_pass_that_ends_a_run_hands_the_next_plan_what_the_s6_loop_computes(policy, monkeypatch):
    """``_advance_next`` computes S6's next batch while it advances a run; each time ``_plan`` takes
    it, the contexts, fewest tokens left and growing blocks equal those of a fresh pass over
    ``running`` (and the path is taken, so the check is not vacuous)."""
    from llmsim.sim.replica import Replica

    taken = []
    original = Replica._plan_idle

    def checked(self, cached, left, now, growing):
        bs = self.kv.block_size
        fresh = [r.cached for r in self._running]
        grow = [(r, (r.cached + bs) // bs - r.blocks) for r in self._running]
        assert cached == fresh
        assert left == min(r.output_tokens - r.generated for r in self._running)
        assert [(r.index, g) for r, g in (growing or [])] == [(r.index, g) for r, g in grow if g > 0]
        taken.append(now)
        return original(self, cached, left, now, growing)

    fused = []
    advance_next = Replica._advance_next

    def counted(self, decode, steps):
        fused.append(steps)
        return advance_next(self, decode, steps)

    monkeypatch.setattr(Replica, "_plan_idle", checked)
    monkeypatch.setattr(Replica, "_advance_next", counted)
    rng = np.random.default_rng(11)
    n = 120
    t = Trace(np.sort(rng.uniform(0, 30, n)), rng.integers(1, 400, n), rng.integers(2, 150, n))
    cfg = ReplicaConfig(kv_blocks=150, block_size=8,
                        scheduler=SchedulerConfig(policy=policy, max_num_seqs=16, max_num_batched_tokens=512))
    res = simulate(t, cfg, ToyCost(), num_replicas=2, router="least-outstanding")
    assert res.summary["requests_completed"] == n and len(taken) > 50 and len(fused) > 20
