"""Prefix caching: prefill work cut by the shared fraction, LRU eviction, KV never over capacity,
identical results when off, and the hit rate in `simulate run --json`, the table and the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.cli import main
from llmsim.sim.cluster import simulate
from llmsim.sim.costs import ToyCost
from llmsim.sim.kv import BlockManager, KVView, block_hashes
from llmsim.sim.replica import Replica, ReplicaConfig
from llmsim.sim.schedulers import SCHEDULERS, SchedulerConfig
from llmsim.workloads.prefix import PrefixIds
from llmsim.workloads.traces import FixedRateArrivals, PoissonArrivals, RequestTrace, multi_turn, shared_prefix


def run(trace, *, caching, policy="vllm", kv_blocks=4000, bs=16, **kw):
    cfg = ReplicaConfig(kv_blocks=kv_blocks, block_size=bs, prefix_caching=caching,
                        scheduler=SchedulerConfig(policy=policy, max_num_seqs=32, max_num_batched_tokens=4096), **kw)
    return simulate(trace, cfg, ToyCost())


@pytest.mark.parametrize("policy", ["vllm", "sarathi"])
def test_prefix_caching_cuts_prefill_work_by_the_shared_fraction(policy):
    # G x U distinct prompts, each once: a group's system prompt (S tokens, a whole number of blocks)
    # is computed by its first request only; arrivals 2 s apart so every prefill has finished.
    G, U, S, Q = 4, 6, 2048, 64
    t = shared_prefix(num_groups=G, num_prompts_per_group=U, system_prompt_len=S, question_len=Q, output_len=8,
                      arrivals=FixedRateArrivals(rate_per_s=0.5), seed=3)
    off, on = run(t, caching=False, policy=policy), run(t, caching=True, policy=policy)
    shared = (G * U - G) * S / (G * U * (S + Q))
    assert off.summary["prefill_tokens_computed"] == G * U * (S + Q)
    assert on.summary["prefill_tokens_computed"] == G * U * (S + Q) - (G * U - G) * S
    ratio = on.summary["prefill_tokens_computed"] / off.summary["prefill_tokens_computed"]
    assert ratio == pytest.approx(1 - shared, rel=1e-12)
    assert on.summary["prefix_cache_hit_rate"] == pytest.approx(shared, rel=1e-12)
    assert off.summary["prefix_cache_hit_rate"] == 0.0 and off.summary["prefix_cache_hit_tokens"] == 0
    assert on.summary["ttft_mean_s"] < 0.5 * off.summary["ttft_mean_s"]
    assert on.summary["requests_completed"] == off.summary["requests_completed"] == G * U


def test_unaligned_system_prompt_and_repeated_questions_stay_within_block_rounding():
    # S not a multiple of the block; 3 rounds of the G x U prompts, so questions repeat too.
    G, U, S, Q, bs = 3, 4, 1000, 40, 16
    n = 3 * G * U
    t = shared_prefix(num_groups=G, num_prompts_per_group=U, system_prompt_len=S, question_len=Q, output_len=4,
                      num_requests=n, arrivals=FixedRateArrivals(rate_per_s=1.0), seed=1)
    on = run(t, caching=True, bs=bs)
    P = S + Q
    # token-exact sharing: the first of a group computes P, another prompt of the group Q, a repeat 1 token
    exact = G * P + (G * U - G) * Q + (n - G * U) * 1
    got = on.summary["prefill_tokens_computed"]
    assert exact <= got <= exact + n * bs
    assert got < 0.2 * n * P


def test_whole_prompt_hit_recomputes_its_last_block():
    # vLLM caps a hit at prompt - 1 tokens, in whole blocks: a 64-token repeat computes its last block.
    for prompt, computed in ((64, 16), (70, 6)):
        row = list(range(7, 7 + -(-prompt // 16)))
        ids = PrefixIds.from_lists([row, row], [prompt, prompt], 16)
        t = RequestTrace(np.array([0.0, 5.0]), np.array([prompt, prompt]), np.array([3, 3]), np.arange(2), "x",
                         None, ids)
        res = run(t, caching=True)
        assert res.summary["prefill_tokens_computed"] == prompt + computed
        assert res.summary["prefix_cache_hit_tokens"] == prompt - computed


def test_block_hashes_name_prefixes_at_any_block_size():
    a, b = [1, 2, 3], [1, 2, 4]
    for bs in (8, 16, 48, 512):
        ha, hb = block_hashes(a, 512, 1500, bs), block_hashes(b, 512, 1500, bs)
        assert len(ha) == 1500 // bs
        same = sum(1 for x, y in zip(ha, hb) if x == y)
        assert same == 1024 // bs  # blocks ending inside the first two coarse blocks
    assert block_hashes([1], 512, 300, 16) == block_hashes([1, 99], 512, 300, 16)  # ids past `tokens` unused
    assert block_hashes([1], 512, 300, 16) != block_hashes([2], 512, 300, 16)


def test_lru_evicts_least_recently_released_and_a_prompt_tail_first():
    kv = BlockManager(num_blocks=6, block_size=4, prefix_caching=True)
    kv.allocate(3)
    assert kv.register([10, 11, 12]) == [10, 11, 12]
    kv.release([10, 11, 12], 0)  # released last block first: 12 is the LRU end
    kv.allocate(2)
    assert kv.register([20, 21]) == [20, 21]
    kv.release([20, 21], 0)
    assert (kv.free_blocks, kv.evictable_blocks, kv.resident_blocks) == (6, 5, 5)
    assert kv.lookup([10, 11, 12], 3) == (3, 3)
    kv.allocate(2)  # one never-used block, then evicts 12 (released first)
    assert kv.lookup([10, 11, 12], 3) == (2, 2) and kv.evictions == 1
    kv.touch([10])
    assert kv.register([10]) == []  # already resident: a duplicate stays private
    kv.allocate(2)  # evicts 11, then 21 (10 is referenced)
    assert kv.lookup([10, 11], 2) == (1, 0) and kv.lookup([20, 21], 2) == (1, 1)
    kv.check()
    assert kv.resident_blocks == kv.num_blocks


@pytest.mark.parametrize("policy", SCHEDULERS.names())
@pytest.mark.parametrize("preemption", ["recompute", "swap"])
@pytest.mark.parametrize("kv_blocks", [140, 200])
def test_kv_never_exceeds_capacity_under_eviction_pressure(monkeypatch, policy, preemption, kv_blocks):
    checks = []
    original = Replica._on_end

    def checked(self, token):
        original(self, token)
        self.kv.check()
        checks.append(self.kv.resident_blocks <= self.kv.num_blocks)

    monkeypatch.setattr(Replica, "_on_end", checked)
    rng = np.random.default_rng(11)
    sp = shared_prefix(num_groups=6, num_prompts_per_group=5, system_prompt_len=int(rng.integers(300, 900)),
                       question_len=50, output_len=40, num_requests=120, arrivals=PoissonArrivals(rate_per_s=8.0),
                       seed=5)
    mt = multi_turn(num_sessions=15, turns=4, system_prompt_len=200, user_tokens=60, output_len=50,
                    think_time_s=1.0, arrivals=PoissonArrivals(rate_per_s=3.0), seed=6)
    rows = [sp.prefix.row(i) for i in range(len(sp))] + [mt.prefix.row(i) for i in range(len(mt))]
    tokens = np.concatenate([sp.prefix.tokens, mt.prefix.tokens])
    prefix = PrefixIds.from_lists([r[0].tolist() for r in rows], tokens, 16)
    t = RequestTrace(np.concatenate([sp.arrival_s, mt.arrival_s]), np.concatenate([sp.prompt_tokens, mt.prompt_tokens]),
                     np.concatenate([sp.output_tokens, mt.output_tokens]), np.arange(len(rows)), "mix", None, prefix)
    t = t.with_arrivals(t.arrival_s)  # sorted by arrival
    kw = {"swap_blocks": 200, "swap_s_per_block": 1e-4} if preemption == "swap" else {}
    res = run(t, caching=True, policy=policy, kv_blocks=kv_blocks, preemption=preemption, **kw)
    s = res.summary
    assert s["requests_completed"] + s["requests_rejected"] == len(t) and s["requests_unfinished"] == 0
    assert checks and all(checks)
    rep = res.replicas[0]
    assert rep["peak_resident_kv_blocks"] <= rep["kv_blocks"] == kv_blocks
    assert rep["prefix_cache_evicted_blocks"] > 0 and s["prefix_cache_hit_rate"] > 0.1  # pressure, and hits
    assert s["preemptions"] > 0 or policy == "static"


def test_off_or_without_identities_the_results_are_identical():
    t = shared_prefix(num_groups=3, num_prompts_per_group=4, system_prompt_len=500, question_len=30, output_len=30,
                      num_requests=60, arrivals=PoissonArrivals(rate_per_s=6.0), seed=2)
    bare = RequestTrace(t.arrival_s, t.prompt_tokens, t.output_tokens, t.request_id, t.name)
    for policy in ("vllm", "sarathi"):
        a = run(t, caching=False, policy=policy, kv_blocks=200)
        b = run(bare, caching=False, policy=policy, kv_blocks=200)
        c = run(bare, caching=True, policy=policy, kv_blocks=200)
        assert a.to_json() == b.to_json()
        sc = dict(c.summary)
        assert sc.pop("prefix_caching") is True
        sb = dict(b.summary)
        sb.pop("prefix_caching")
        assert json.dumps(sb, sort_keys=True) == json.dumps(sc, sort_keys=True)
        for key in ("first_token_s", "finish_s", "preemptions"):
            assert np.array_equal(a.records[key], c.records[key])


def test_session_output_is_the_next_turns_prefix():
    # turn 2 (arriving after turn 1 finished) finds turn 1's prompt and output cached, in whole blocks
    m = multi_turn(num_sessions=1, turns=3, user_tokens=100, output_len=50, think_time_s=30.0,
                   arrivals=FixedRateArrivals(rate_per_s=1.0))
    assert m.prompt_tokens.tolist() == [100, 250, 400]
    res = run(m, caching=True)
    cached_at_finish = [100 + 50 - 1, 250 + 50 - 1]
    assert res.summary["prefix_cache_hit_tokens"] == sum(c // 16 * 16 for c in cached_at_finish)


def test_a_turn_is_sent_its_think_time_after_the_previous_turn_completes():
    m = multi_turn(num_sessions=3, turns=4, user_tokens=80, output_len=30, think_time_s=2.5,
                   arrivals=FixedRateArrivals(rate_per_s=4.0))
    res = run(m, caching=True)
    rec = res.records
    by_id = {m.request_id[i]: i for i in range(len(m))}
    for s in range(3):
        for t in range(1, 4):
            cur, prev = by_id[f"s{s}-t{t}"], by_id[f"s{s}-t{t - 1}"]
            assert rec["arrival_s"][cur] == pytest.approx(rec["finish_s"][prev] + 2.5, abs=1e-12)
    assert res.summary["requests_completed"] == 12
    # each later turn finds its whole previous context (prompt + output - 1 tokens) in whole blocks
    hits = sum((int(m.prompt_tokens[by_id[f"s{s}-t{t - 1}"]]) + 30 - 1) // 16 * 16 for s in range(3) for t in range(1, 4))
    assert res.summary["prefix_cache_hit_tokens"] == hits


def _cli(capsys, *argv):
    assert main(["run", *argv]) == 0
    return capsys.readouterr().out


SP = ["--workload", "shared-prefix", "--workload-param", "num_groups=3", "--workload-param", "num_prompts_per_group=4",
      "--workload-param", "system_prompt_len=1024", "--workload-param", "question_len=32",
      "--workload-param", "output_len=16", "--num-requests", "36", "--rate", "2", "--seed", "4"]


def test_cli_json_reports_the_hit_rate_deterministically(capsys, tmp_path):
    on = _cli(capsys, *SP, "--prefix-caching", "--json")
    assert on == _cli(capsys, *SP, "--prefix-caching", "--json")
    d = json.loads(on)
    off = json.loads(_cli(capsys, *SP, "--no-prefix-caching", "--json"))
    assert d["prefix_caching"] is True and off["prefix_caching"] is False
    assert d["config"]["serving"]["prefix_caching"] is True
    assert 0.8 < d["prefix_cache_hit_rate"] < 1.0 and off["prefix_cache_hit_rate"] == 0.0
    assert d["prefix_cache_hit_tokens"] > 0 and d["prefill_tokens_computed"] < 0.2 * off["prefill_tokens_computed"]
    assert d["ttft_mean_s"] < off["ttft_mean_s"]
    table = _cli(capsys, *SP, "--prefix-caching")
    assert "prefix_cache_hit_rate" in table
    report = tmp_path / "r.html"
    _cli(capsys, *SP, "--prefix-caching", "--report", str(report))
    assert "prefix_cache_hit_rate" in report.read_text()


def test_yaml_workload_params_and_engine_default(tmp_path, capsys):
    from llmsim.cli import build_parser, run_config

    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text("workload: {name: multi-turn, rate: 1, params: {num_sessions: 4, turns: 3, user_tokens: 64,"
                        " output_len: 32, think_time_s: 20}}\n")
    cfg = run_config(build_parser().parse_args(["run", str(cfg_path)]))
    assert cfg.serving.prefix_caching is None and cfg.workload.params["turns"] == 3
    from llmsim.sim.runner import prefix_caching

    class Dep:
        class engine:
            prefix_caching = True
    assert prefix_caching(cfg, Dep) is True
    d = json.loads(_cli(capsys, str(cfg_path), "--prefix-caching", "--json"))
    assert d["requests"] == 12 and d["prefix_cache_hit_rate"] > 0.3
    assert main(["run", str(cfg_path), "--workload-param", "turnz=3"]) == 2
    assert "did you mean 'turns'" in capsys.readouterr().err


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(8, 60), st.sampled_from(list(SCHEDULERS.names())),
       st.integers(2, 6), st.sampled_from([8, 16, 32]))
def test_random_prefix_workloads_keep_the_invariants(seed, kv_blocks, policy, groups, bs):
    """Random shared prefixes, lengths and capacity: every request finishes or is rejected, resident
    KV never exceeds capacity, all blocks come back, and hits never exceed the prompt."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    prompt = rng.integers(1, 12 * bs, n)
    output = rng.integers(1, 4 * bs, n)
    group = rng.integers(0, groups, n)
    bt = int(rng.choice([bs // 2, bs, 3 * bs]))
    rows = [[int(group[i])] + [int(group[i]) * 1000 + k for k in range(1, -(-int(prompt[i]) // bt))]
            for i in range(n)]
    t = RequestTrace(np.sort(rng.uniform(0, 3, n)), prompt, output, np.arange(n), "h", None,
                     PrefixIds.from_lists(rows, prompt, bt))
    cfg = ReplicaConfig(kv_blocks=kv_blocks, block_size=bs, prefix_caching=True, watermark_fraction=0.0,
                        scheduler=SchedulerConfig(policy=policy, max_num_seqs=8, max_num_batched_tokens=4 * bs))
    from llmsim.sim.kernel import Kernel
    from llmsim.sim.metrics import MetricsCollector
    from llmsim.sim.cluster import Cluster

    kernel = Kernel()
    metrics = MetricsCollector()
    cluster = Cluster(kernel, [cfg], [ToyCost()], metrics=metrics)
    rep = cluster.replicas[0]
    seen = []

    class Checked(BlockManager):
        __slots__ = ()

        def allocate(self, blocks):
            super().allocate(blocks)
            self.check()
            seen.append(self.resident_blocks)

        def touch(self, hashes):
            super().touch(hashes)
            self.check()

        def release(self, hashes, private):
            super().release(hashes, private)
            self.check()

    rep.kv = Checked(num_blocks=kv_blocks, block_size=bs, prefix_caching=True)
    rep._kv_view = KVView(rep.kv)
    cluster.feed(t.arrival_s, t.prompt_tokens, t.output_tokens, prefix=t.prefix)
    kernel.run()
    assert metrics.completed + metrics.rejected == n
    assert max(seen, default=0) <= kv_blocks
    assert rep.kv.free_blocks == kv_blocks and rep.kv.used_blocks == 0
    rec = metrics.records()
    done = rec["prompt_tokens"][rec["status"] == "finished"].sum()
    assert rep.hit_tokens <= rep.prompt_tokens_admitted and rep.prefill_tokens + rep.hit_tokens >= done
