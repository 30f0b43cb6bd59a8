"""The scheduler-facing API: predict_iteration, the steppable Simulation (submit, advance, step, state,
fork, snapshot) and Result.iterations_frame."""
from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim import ConfigError

SC = dict(model="llama-3.1-8b", device="h100", tp=1, dp=2, workload="azure-code", num_requests=60, rate=6.0)


@pytest.fixture(scope="module")
def scenario():
    return llmsim.Scenario(**SC, keep_requests=True)


@pytest.fixture(scope="module")
def reference(scenario):
    return llmsim.simulate(scenario)


@pytest.fixture(scope="module")
def dep():
    return llmsim.deployment("llama-3.1-8b", "h100")


# ---------------------------------------------------------------- predict_iteration
def test_predict_iteration_is_the_deployments_iteration_as_plain_floats(dep):
    p, c, d = [512, 128], [0, 256], [1000] * 16
    got = llmsim.predict_iteration(dep, llmsim.IterationBatch(prefill_tokens=p, prefill_cached=c, decode_context=d))
    t, e = dep.iteration(np.array(p), np.array(c), np.array(d))
    assert (got.time_s, got.energy_j) == (t, e)
    assert type(got.time_s) is float and type(got.energy_j) is float
    assert abs(sum(got.breakdown.values()) - got.time_s) < 1e-12
    fast = llmsim.predict_iteration(dep, {"prefill_tokens": np.array(p), "prefill_cached": c, "decode_context": d},
                                    breakdown=False)
    assert (fast.time_s, fast.energy_j) == (t, e) and dict(fast.breakdown) == {}
    with pytest.raises(TypeError):
        got.breakdown["x"] = 1.0  # read-only


def test_predict_iteration_grows_with_the_batch(dep):
    small = llmsim.predict_iteration(dep, decode_context=[1024] * 8).time_s
    large = llmsim.predict_iteration(dep, decode_context=[1024] * 128).time_s
    longer = llmsim.predict_iteration(dep, decode_context=[8192] * 128).time_s
    assert small < large < longer


@pytest.mark.parametrize("kw, fragment", [
    (dict(decode_context=[-1]), "decode_context` entries must be >= 0"),
    (dict(prefill_tokens=[0]), "prefill_tokens` entries must be >= 1"),
    (dict(prefill_tokens=[4, 4], prefill_cached=[0]), "has 1 entries but `prefill_tokens` 2"),
    (dict(decode_context=[[1, 2]]), "flat list or array of integer"),
    (dict(decode_context=[1.5]), "flat list or array of integer"),
    (dict(batch={"decode": [1]}), "unknown batch keys"),
    (dict(batch=[1, 2]), "must be a llmsim.IterationBatch or a mapping"),
])
def test_predict_iteration_rejects_bad_batches_by_name(dep, kw, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        llmsim.predict_iteration(dep, **kw)
    assert fragment in str(e.value)


# ---------------------------------------------------------------- Simulation
def test_a_simulation_run_to_the_end_is_simulate(scenario, reference):
    r = llmsim.Simulation(scenario).run()
    assert r.to_dict() == reference.to_dict()
    assert r.requests_frame().equals(reference.requests_frame())


def test_advancing_in_pieces_and_stepping_change_nothing(scenario, reference):
    sim = llmsim.Simulation(scenario)
    for t in (0.5, 1.0, 2.5, 2.5, 7.0):
        assert sim.advance(t) == t
    times = []
    while len(times) < 50 and (t := sim.step()) is not None:
        times.append(t)
    assert len(times) > 5 and all(b > a for a, b in zip(times, times[1:]))
    assert sim.run().to_dict() == reference.to_dict()
    assert sim.done and sim.step() is None


def test_state_shows_queues_batches_and_kv_usage(scenario):
    sim = llmsim.Simulation(scenario)
    sim.advance(4.0)
    s = sim.state()
    assert s.now_s == 4.0 and len(s.replicas) == 2
    assert 0 < s.submitted < 60 and s.pending == 60 - s.submitted
    busy = [r for r in s.replicas if r.batch_prefill + r.batch_decode > 0]
    assert busy, "at 6 requests/s some engine is iterating at t = 4 s"
    for r in s.replicas:
        assert 0 <= r.kv_used_blocks <= r.kv_blocks and r.kv_usage == r.kv_used_blocks / r.kv_blocks
    assert sum(r.kv_used_blocks for r in busy) > 0
    sim.run()
    end = sim.state()
    assert end.completed == 60 and end.pending == 0
    assert all(r.waiting == r.running == r.kv_used_blocks == 0 for r in end.replicas)


def test_metrics_so_far_count_only_what_finished(scenario):
    sim = llmsim.Simulation(scenario)
    sim.advance(3.0)
    m = sim.metrics_so_far()
    assert m.requests_completed == sim.state().completed
    assert m.requests_completed + m.requests_unfinished + m.requests_rejected == 60


def test_a_fork_has_the_same_future_and_leaves_the_original_alone(scenario, reference):
    sim = llmsim.Simulation(scenario)
    sim.advance(5.0)
    before = sim.state()
    fork = sim.fork()
    assert fork.state() == before
    assert fork.run().to_dict() == reference.to_dict()
    assert sim.state() == before  # running the fork did not move the original
    assert sim.run().to_dict() == reference.to_dict()


def test_routing_one_request_elsewhere_gives_a_different_future(scenario):
    sim = llmsim.Simulation(scenario)
    sim.advance(5.0)
    futures = []
    for replica in (0, 1):
        f = sim.fork()
        i = f.submit(llmsim.Request(prompt_tokens=6000, output_tokens=300, replica=replica))
        assert i == 60
        frame = f.run().requests_frame()
        futures.append(frame)
        row = frame[frame["index"] == i].iloc[0]
        assert row["replica"] == replica and row["status"] == "finished"
    a, b = futures
    assert len(a) == len(b) == 61
    assert not np.array_equal(a["finish_s"].to_numpy(), b["finish_s"].to_numpy())
    # the request routed elsewhere shares its replica with different neighbours
    assert (a["replica"] == 0).sum() == (b["replica"] == 0).sum() + 1


def test_a_snapshot_restores_as_often_as_wanted(scenario):
    sim = llmsim.Simulation(scenario)
    sim.advance(2.0)
    snap = sim.snapshot()
    sim.submit(llmsim.Request(prompt_tokens=100, output_tokens=10))
    one, two = snap.restore().run(), snap.restore().run()
    assert snap.now_s == 2.0
    assert one.to_dict() == two.to_dict()
    assert one.metrics.requests_completed == 60
    assert sim.run().metrics.requests_completed == 61


def test_an_empty_simulation_serves_only_what_is_submitted():
    sim = llmsim.Simulation(llmsim.Scenario(**SC), feed=False)
    assert sim.done
    for k in range(4):
        sim.submit(llmsim.Request(prompt_tokens=256, output_tokens=32, arrival_s=0.1 * k))
    sim.submit({"prompt_tokens": 300, "output_tokens": 8, "arrival_s": 0.05, "replica": 1})
    r = sim.run()
    assert r.metrics.requests_completed == 5 and r.summary["requests"] == 5
    assert r.summary["workload"] == "submitted"


@pytest.mark.parametrize("request_kw, fragment", [
    (dict(prompt_tokens=0, output_tokens=1), "`prompt_tokens` must be an integer >= 1"),
    (dict(prompt_tokens=10, output_tokens=1.5), "`output_tokens` must be an integer >= 1"),
    (dict(prompt_tokens=10, output_tokens=1, arrival_s=-1.0), "`arrival_s` must be a finite time"),
    (dict(prompt_tokens=10, output_tokens=1, replica=-1), "`replica` must be a replica index"),
])
def test_bad_requests_are_config_errors(request_kw, fragment):
    with pytest.raises(ConfigError) as e:
        llmsim.Request(**request_kw)
    assert fragment in str(e.value)


def test_submitting_into_the_past_or_to_a_missing_replica_fails(scenario):
    sim = llmsim.Simulation(scenario)
    sim.advance(1.0)
    with pytest.raises(ConfigError, match="in the past"):
        sim.submit(llmsim.Request(prompt_tokens=10, output_tokens=2, arrival_s=0.5))
    with pytest.raises(ConfigError, match="does not exist; this simulation has 2"):
        sim.submit(llmsim.Request(prompt_tokens=10, output_tokens=2, replica=2))
    with pytest.raises(ConfigError, match="cannot advance to"):
        sim.advance(0.5)
    with pytest.raises(ConfigError, match="takes a llmsim.Request"):
        sim.submit(42)


def test_a_static_batch_cannot_be_stepped():
    sc = llmsim.Scenario(model="llama-3.1-8b", device="h100", tp=1,
                         static_batch={"batch_size": 4, "prompt_tokens": 128, "output_tokens": 8})
    with pytest.raises(ConfigError, match="static batch cannot be stepped"):
        llmsim.Simulation(sc)


# ---------------------------------------------------------------- iterations_frame
def test_iterations_frame_counts_every_iteration_and_changes_no_number(reference):
    r = llmsim.simulate(llmsim.Scenario(**SC, keep_requests=True, keep_iterations=True))
    assert {k: v for k, v in r.to_dict().items() if k != "config"} == \
        {k: v for k, v in reference.to_dict().items() if k != "config"}
    f = r.iterations_frame()
    assert len(f) == r.summary["iterations"]
    assert int(f["prefill_tokens"].sum()) == r.summary["prefill_tokens_computed"]
    assert (f["duration_s"] > 0).all()
    busy = {row["replica"]: row["busy_s"] for row in r._sim.replicas}
    for rep, g in f.groupby("replica"):
        assert g["duration_s"].sum() == pytest.approx(busy[rep], rel=1e-9)
        assert (g["start_s"].to_numpy()[1:] >= g["end_s"].to_numpy()[:-1] - 1e-12).all()  # no overlap (R3)
    with pytest.raises(ConfigError, match="keep_iterations=True"):
        reference.iterations_frame()


def test_a_simulation_keeps_iterations_when_asked(scenario):
    sim = llmsim.Simulation(scenario, keep_iterations=True)
    sim.advance(3.0)
    n = len(sim.iterations_frame())
    assert 0 < n == sum(r.iterations for r in sim.state().replicas)
