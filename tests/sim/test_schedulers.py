"""Scheduler conformance (S1-S6 of sim/schedulers.py) on every registered policy, plus each policy's rule."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_test_helpers import Trace, check_batch, decoding, run_checked, view
from llmsim.sim.costs import ToyCost
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.request import Request
from llmsim.sim.schedulers import SCHEDULERS, SchedulerConfig, VLLMScheduler, idle_decode_cap, make_scheduler
from llmsim.workloads.errors import ConfigError, UnknownNameError

POLICIES = SCHEDULERS.names()


def test_registry_lists_the_policies_and_aliases_resolve():
    assert set(POLICIES) == {"vllm", "sarathi", "static", "decode-priority"}
    assert SchedulerConfig(policy="chunked").policy == "sarathi"
    assert SchedulerConfig(policy="Decode_Priority").policy == "decode-priority"
    with pytest.raises(UnknownNameError, match="did you mean 'sarathi'"):
        SchedulerConfig(policy="sarath")
    with pytest.raises(ValueError):
        SCHEDULERS.register("vllm", object)
    with pytest.raises(ConfigError, match="max_num_seqs must be"):
        SchedulerConfig(max_num_seqs=0)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_policy_keeps_the_contract_on_random_workloads(policy, data):
    n = data.draw(st.integers(1, 25))
    arrival = np.sort(np.array(data.draw(st.lists(st.floats(0, 2.0), min_size=n, max_size=n))))
    prompt = data.draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    output = data.draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    blocks = data.draw(st.integers(25, 80))
    cfg = ReplicaConfig(kv_blocks=blocks, block_size=data.draw(st.sampled_from([1, 4, 16])),
                        watermark_fraction=data.draw(st.sampled_from([0.0, 0.05])),
                        scheduler=SchedulerConfig(policy=policy, max_num_seqs=data.draw(st.integers(1, 8)),
                                                  max_num_batched_tokens=data.draw(st.sampled_from([16, 64, 512]))))
    cluster, metrics, checker, _ = run_checked(Trace(arrival, prompt, output), [cfg], ToyCost())
    rep = cluster.replicas[0]
    assert metrics.completed + metrics.rejected == n
    assert rep.kv.free_blocks == rep.kv.num_blocks and rep.kv.peak_used_blocks <= rep.kv.num_blocks
    assert rep.scheduler.calls > 0 or metrics.rejected == n


def test_vllm_is_prefill_first_and_admits_fcfs_head_of_line():
    s = make_scheduler(SchedulerConfig(policy="vllm", max_num_batched_tokens=1000))
    run = [decoding(0, 100, 50, 5)]
    wait = [Request(1, 1.0, 600, 10), Request(2, 2.0, 600, 10), Request(3, 3.0, 10, 10)]
    v = view(wait, run)
    b = s.schedule(v)
    check_batch(s, v, b)
    # Request 2 would exceed the budget; request 3 is not admitted past it (head-of-line).
    assert [r.index for r in b.prefill] == [1] and b.prefill_tokens == [600] and not b.decode


def test_vllm_preempts_the_latest_request_when_kv_cannot_grow():
    s = make_scheduler(SchedulerConfig(policy="vllm"))
    # Three requests each exactly filling their blocks: each needs one more block to decode.
    run = [decoding(i, 31, 50, 2, arrival=float(i)) for i in range(3)]  # cached = 32 -> 2 blocks each
    v = view((), run, num_blocks=7)  # 6 held, 1 free: only one can grow
    b = s.schedule(v)
    check_batch(s, v, b)
    assert [r.index for r in b.preempt] == [2] and [r.index for r in b.decode] == [0, 1]
    # Freeing request 2 gives 3 free blocks; requests 0 and 1 need 2.


def test_sarathi_runs_decodes_first_then_chunks_fill_the_budget():
    s = make_scheduler(SchedulerConfig(policy="sarathi", max_num_batched_tokens=256))
    run = [decoding(i, 100, 50, 3, arrival=float(i)) for i in range(4)]
    wait = [Request(10, 5.0, 1000, 10), Request(11, 6.0, 1000, 10)]
    v = view(wait, run)
    b = s.schedule(v)
    check_batch(s, v, b)
    assert len(b.decode) == 4 and [r.index for r in b.prefill] == [10] and b.prefill_tokens == [252]


def test_static_admits_nothing_while_a_batch_runs():
    s = make_scheduler(SchedulerConfig(policy="static"))
    run = [decoding(0, 100, 50, 3)]
    v = view([Request(1, 1.0, 10, 10)], run)
    b = s.schedule(v)
    assert [r.index for r in b.decode] == [0] and not b.prefill
    v2 = view([Request(1, 1.0, 10, 10), Request(2, 1.5, 10, 10)], ())
    b2 = s.schedule(v2)
    assert [r.index for r in b2.prefill] == [1, 2]


def test_decode_priority_adds_whole_prompts_that_fit_the_budget_left():
    s = make_scheduler(SchedulerConfig(policy="decode-priority", max_num_batched_tokens=300))
    run = [decoding(i, 100, 50, 3, arrival=float(i)) for i in range(4)]
    v = view([Request(10, 5.0, 200, 10), Request(11, 6.0, 200, 10)], run)
    b = s.schedule(v)
    check_batch(s, v, b)
    assert len(b.decode) == 4 and [r.index for r in b.prefill] == [10] and b.prefill_tokens == [200]


@pytest.mark.parametrize("policy", POLICIES)
def test_ties_break_by_priority_then_arrival_then_index(policy):
    s = make_scheduler(SchedulerConfig(policy=policy, max_num_seqs=1))
    reqs = [Request(5, 1.0, 10, 5), Request(3, 1.0, 10, 5), Request(9, 0.5, 10, 5, priority=1)]
    b = s.schedule(view(reqs, ()))
    assert [r.index for r in b.prefill] == [3]


def test_a_token_budget_below_max_num_seqs_is_refused_as_vllm_refuses_it():
    import contextlib
    import io

    from llmsim.cli import main
    from llmsim.sim.schedulers import SchedulerConfig
    from llmsim.workloads.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max_num_batched_tokens \(8\) must be >= max_num_seqs \(9\)"):
        SchedulerConfig(max_num_seqs=9, max_num_batched_tokens=8)
    SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=8)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--num-requests", "5",
                   "--max-batch-size", "512", "--max-batched-tokens", "256"])
    assert rc == 2 and "raise --max-batched-tokens or lower --max-batch-size" in err.getvalue()


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_idle_decode_s6_decodes_every_running_request_when_nothing_waits(policy, data):
    """S6, which the replica relies on to skip the scheduler and to run a prefill straight on into its
    decodes: nothing waiting, all running decoding, their growth fits, within ``idle_decode_cap`` ->
    the batch decodes every running request in order and nothing else."""
    bs = data.draw(st.sampled_from([1, 4, 16]))
    budget = data.draw(st.sampled_from([16, 64, 512]))
    s = make_scheduler(SchedulerConfig(policy=policy, max_num_seqs=16, max_num_batched_tokens=budget))
    assert idle_decode_cap(s) is not None
    n = data.draw(st.integers(1, 16))
    running = [decoding(i, data.draw(st.integers(1, 200)), 100, data.draw(st.integers(1, 50)),
                        arrival=float(i), block_size=bs) for i in range(n)]
    held = sum(r.blocks for r in running)
    growth = sum((r.cached + bs) // bs - r.blocks for r in running)
    spare = data.draw(st.integers(0, 5))
    v = view((), running, num_blocks=held + growth + spare, block_size=bs)
    b = s.schedule(v)
    check_batch(s, v, b)
    if n <= idle_decode_cap(s):
        assert b.decode == list(v.running) and not b.prefill and not b.preempt


def test_a_policy_that_overrides_schedule_promises_s6_only_by_declaring_it():
    class OneDecodeAtATime(VLLMScheduler):
        def schedule(self, view):
            batch = super().schedule(view)
            del batch.decode[1:]
            return batch

    class Declared(OneDecodeAtATime):
        idle_decode = True

        def schedule(self, view):
            return VLLMScheduler.schedule(self, view)

    cfg = SchedulerConfig(policy="vllm")
    assert idle_decode_cap(OneDecodeAtATime(cfg)) is None
    assert idle_decode_cap(Declared(cfg)) == idle_decode_cap(VLLMScheduler(cfg))
    assert idle_decode_cap(make_scheduler(SchedulerConfig(policy="sarathi", max_num_seqs=16, max_num_batched_tokens=64))) == 64
