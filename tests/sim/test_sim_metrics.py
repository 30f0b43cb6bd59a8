"""Metric definitions (TTFT, TPOT both ways, goodput, energy) and the streaming mode's error bound."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from sim_test_helpers import Trace
from llmsim.sim.cluster import simulate
from llmsim.sim.costs import ToyCost
from llmsim.sim.metrics import JSON_KEYS, SLO, LogHistogram, MetricsCollector
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.request import Request


def finished(index, arrival, prompt, output, first_token, finish, scheduled=None):
    r = Request(index, arrival, prompt, output)
    r.first_token_s, r.finish_s = first_token, finish
    r.first_scheduled_s = arrival if scheduled is None else scheduled
    return r


def test_tpot_per_request_and_token_weighted_follow_vllm():
    m = MetricsCollector(keep_requests=True)
    m.note_arrival(0.0)
    m.on_finish(finished(0, 0.0, 10, 11, 1.0, 2.0))   # TPOT (2-1)/10 = 0.1
    m.on_finish(finished(1, 0.0, 10, 3, 0.5, 1.5))    # TPOT (1.5-0.5)/2 = 0.5
    m.on_finish(finished(2, 1.0, 10, 1, 1.2, 1.2))    # one token: no TPOT
    s = m.summary(energy_j=30.0, preemptions=0)
    assert s["tpot_mean_s"] == pytest.approx(0.3) and s["tpot_p50_s"] == pytest.approx(0.3)
    # sum(latency - ttft) / all generated tokens = (1 + 1 + 0) / 15
    assert s["tpot_token_weighted_s"] == pytest.approx(2.0 / 15)
    assert s["ttft_mean_s"] == pytest.approx((1.0 + 0.5 + 0.2) / 3)
    assert s["makespan_s"] == 2.0 and s["requests_per_s"] == 1.5
    assert s["throughput_output_tok_s"] == 7.5 and s["energy_per_token_j"] == 2.0 and s["avg_power_w"] == 15.0


def test_goodput_counts_requests_meeting_both_slos():
    m = MetricsCollector(keep_requests=False, slo=SLO(ttft_s=0.6, tpot_s=0.2))
    m.note_arrival(0.0)
    m.on_finish(finished(0, 0.0, 10, 11, 0.5, 1.5))  # ttft .5 tpot .1 -> good
    m.on_finish(finished(1, 0.0, 10, 11, 1.0, 2.0))  # ttft 1.0 -> bad
    m.on_finish(finished(2, 0.0, 10, 1, 0.3, 0.3))   # one token, ttft ok -> good
    s = m.summary(energy_j=0.0, preemptions=0)
    assert s["slo_attainment"] == pytest.approx(2 / 3) and s["goodput_requests_per_s"] == pytest.approx(1.0)


def test_json_has_every_documented_key_and_no_nan():
    rng = np.random.default_rng(0)
    t = Trace(np.sort(rng.uniform(0, 5, 50)), rng.integers(1, 500, 50), rng.integers(1, 100, 50))
    res = simulate(t, ReplicaConfig(kv_blocks=100, idle_power_w=100.0), ToyCost(), slo=SLO(ttft_s=1.0))
    d = res.to_json_dict()
    assert set(JSON_KEYS) <= set(d)
    json.loads(res.to_json())
    empty = simulate(Trace([], [], []), ReplicaConfig(kv_blocks=10), ToyCost())
    assert json.loads(empty.to_json())["ttft_mean_s"] is None


def test_idle_power_adds_energy_over_the_makespan():
    t = Trace([0.0, 100.0], [10, 10], [2, 2])
    busy = simulate(t, ReplicaConfig(kv_blocks=10), ToyCost()).summary
    idle = simulate(t, ReplicaConfig(kv_blocks=10, idle_power_w=50.0), ToyCost()).summary
    assert idle["energy_j"] - busy["energy_j"] == pytest.approx(50.0 * (busy["makespan_s"] - 0.0 - _busy(t)), rel=1e-3)


def _busy(t):
    res = simulate(t, ReplicaConfig(kv_blocks=10), ToyCost())
    return res.replicas[0]["busy_s"]


def test_streaming_percentiles_are_exact_while_few_values_and_within_1pct_beyond():
    rng = np.random.default_rng(3)
    for n, limit in ((4, 10_000), (999, 1000), (20000, 10_000), (3000, 0)):
        x = rng.lognormal(-2, 1.5, n)
        x[: n // 10] = 0.0  # zeros are kept exactly
        h = LogHistogram(exact_limit=limit)
        for v in x:
            h.add(float(v))
        assert len(h) == n
        for q in (0.0, 0.5, 0.9, 0.99, 1.0):
            exact = float(np.quantile(x, q))
            if n <= limit:
                assert h.quantile(q) == exact
            else:
                assert h.quantile(q) == pytest.approx(exact, rel=0.01, abs=1e-12)


def test_streaming_mode_agrees_with_exact_mode_and_keeps_no_records():
    rng = np.random.default_rng(5)
    t = Trace(np.sort(rng.uniform(0, 30, 400)), rng.integers(1, 800, 400), rng.integers(2, 150, 400))
    exact = simulate(t, ReplicaConfig(kv_blocks=300), ToyCost()).summary
    stream = simulate(t, ReplicaConfig(kv_blocks=300), ToyCost(), keep_requests=False)
    assert stream.records == {}
    s = stream.summary
    for k in ("ttft_mean_s", "tpot_mean_s", "e2e_mean_s", "energy_j", "tpot_token_weighted_s", "makespan_s"):
        assert s[k] == pytest.approx(exact[k], rel=1e-12)
    for k in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
              "e2e_p50_s", "e2e_p99_s"):
        assert s[k] == exact[k]


def test_streaming_percentiles_of_a_large_run_are_within_1pct_of_the_exact_ones(monkeypatch):
    import llmsim.sim.metrics as metrics

    monkeypatch.setattr(metrics.LogHistogram.__init__, "__defaults__", (1e-6, 1e6, 1.01, 50))
    rng = np.random.default_rng(7)
    t = Trace(np.sort(rng.uniform(0, 30, 400)), rng.integers(1, 800, 400), rng.integers(2, 150, 400))
    exact = simulate(t, ReplicaConfig(kv_blocks=300), ToyCost()).summary
    s = simulate(t, ReplicaConfig(kv_blocks=300), ToyCost(), keep_requests=False).summary
    for k in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
              "e2e_p50_s", "e2e_p99_s"):
        assert s[k] == pytest.approx(exact[k], rel=0.01)


def test_per_request_records_export_to_csv_and_parquet(tmp_path):
    t = Trace([0.0, 0.5, 0.7], [100, 20, 5000], [10, 1, 10])
    t.request_id = np.array(["a", "b", "c"], dtype=object)
    res = simulate(t, ReplicaConfig(kv_blocks=20), ToyCost())
    for name in ("r.csv", "r.parquet"):
        path = res.write_requests(tmp_path / name)
        frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
        assert list(frame["request_id"]) == ["a", "b", "c"]
        assert list(frame["status"]) == ["finished", "finished", "rejected"]
        assert math.isnan(frame["tpot_s"][1]) and frame["ttft_s"][0] > 0
