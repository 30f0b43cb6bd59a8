"""Shared test helpers for tests/sim (imported as a sibling module)."""
from __future__ import annotations

import numpy as np

from llmsim.sim.kernel import Kernel
from llmsim.sim.kv import BlockManager, KVView
from llmsim.sim.metrics import MetricsCollector
from llmsim.sim.cluster import Cluster
from llmsim.sim.request import RUNNING, Request
from llmsim.sim.schedulers import ReplicaView

SLOTS = Request.__slots__


class Trace:
    def __init__(self, arrival, prompt, output, closed_loop=None):
        self.arrival_s = np.asarray(arrival, dtype=np.float64)
        self.prompt_tokens = np.asarray(prompt, dtype=np.int64)
        self.output_tokens = np.asarray(output, dtype=np.int64)
        self.request_id = np.arange(len(self.arrival_s))
        self.closed_loop = closed_loop


def decoding(index, prompt, output, generated, arrival=0.0, block_size=16):
    r = Request(index, arrival, prompt, output)
    r.state = RUNNING
    r.generated = generated
    r.cached = prompt + generated - 1
    r.blocks = -(-r.cached // block_size)
    r.first_scheduled_s = arrival
    return r


def view(waiting=(), running=(), *, num_blocks=100, block_size=16, watermark=0, now=0.0):
    kv = BlockManager(num_blocks=num_blocks, block_size=block_size, watermark_blocks=watermark)
    held = sum(r.blocks for r in running)
    if held:
        kv.allocate(held)
    return ReplicaView(now, tuple(sorted(waiting, key=lambda r: r.key)), tuple(sorted(running, key=lambda r: r.key)),
                       KVView(kv))


def snapshot(v: ReplicaView):
    return [tuple(getattr(r, s) for s in SLOTS) for r in (*v.waiting, *v.running)] + [v.kv.free_blocks]


def check_batch(scheduler, v: ReplicaView, batch) -> None:
    """The scheduler contract S1-S4 (see sim/schedulers.py) for one decision."""
    cfg = scheduler.config
    kv = v.kv
    bs = kv.block_size
    running = list(v.running)
    waiting = list(v.waiting)
    ids = [id(r) for r in batch.prefill] + [id(r) for r in batch.decode] + [id(r) for r in batch.preempt]
    assert len(ids) == len(set(ids)), "a request appears twice in one batch"
    assert len(batch.prefill) == len(batch.prefill_tokens)
    # S4: victims are a suffix of the running order.
    if batch.preempt:
        assert [id(r) for r in running[len(running) - len(batch.preempt):]] == sorted(
            (id(r) for r in batch.preempt), key=[id(x) for x in running].index)
    free = kv.free_blocks + sum(r.blocks for r in batch.preempt)
    need = 0
    admitted = 0
    for r, n in zip(batch.prefill, batch.prefill_tokens):
        assert r in running or r in waiting
        assert 1 <= n <= r.prefill_target - r.cached
        admitted += r in waiting
        need += max(0, -(-(r.cached + n) // bs) - r.blocks)
    for r in batch.decode:
        assert r in running and r.cached >= r.prefill_target and r.generated < r.output_tokens
        need += max(0, -(-(r.cached + 1) // bs) - r.blocks)
    # S1
    assert need <= free - (kv.watermark_blocks if admitted else 0), "batch does not fit the KV cache"
    # S2
    if waiting or running:
        assert batch.prefill or batch.decode or batch.preempt, "no progress"
    # S3
    assert len(running) - len(batch.preempt) + admitted <= cfg.max_num_seqs
    tokens = sum(batch.prefill_tokens) + len(batch.decode)
    assert tokens <= cfg.max_num_batched_tokens or (len(batch.prefill) == 1 and not batch.decode)


class CheckingScheduler:
    """Wraps a scheduler: checks every decision, immutability of the view, and determinism."""

    def __init__(self, inner):
        self.inner = inner
        self.config = inner.config
        self.steady_decode = inner.steady_decode
        self.calls = 0

    def schedule(self, v):
        before = snapshot(v)
        batch = self.inner.schedule(v)
        assert snapshot(v) == before, "scheduler mutated its view"
        again = self.inner.schedule(v)
        assert repr(again) == repr(batch), "scheduler is not deterministic"
        check_batch(self.inner, v, batch)
        self.calls += 1
        return batch


class KVChecker:
    """A tracer that checks KV and clock invariants at every iteration end."""

    def __init__(self, replicas, kernel):
        self.replicas = replicas
        self.kernel = kernel
        self.last_end = {}
        self.count = 0

    def _check(self, replica, start, end):
        assert start <= end
        assert start >= self.last_end.get(replica, -1.0), "iterations overlap on one replica"
        self.last_end[replica] = end
        kv = self.replicas[replica].kv
        assert 0 <= kv.free_blocks <= kv.num_blocks
        self.count += 1

    def iteration(self, replica, start, end, prefill_tokens, decodes):
        self._check(replica, start, end)

    def decode_run(self, replica, starts, ends, decodes):
        assert np.all(np.diff(ends) >= 0) and np.all(starts <= ends)
        self._check(replica, float(starts[0]), float(ends[-1]))


def run_checked(trace, configs, cost, *, router="round-robin", seed=0):
    """Run a cluster with every scheduler wrapped in CheckingScheduler and a KVChecker tracer."""
    kernel = Kernel()
    metrics = MetricsCollector(keep_requests=True)
    cluster = Cluster(kernel, configs, [cost] * len(configs), router=router, seed=seed, metrics=metrics)
    checker = KVChecker(cluster.replicas, kernel)
    for rep in cluster.replicas:
        rep.scheduler = CheckingScheduler(rep.scheduler)
        rep._tracer = checker
    cluster.feed(trace.arrival_s, trace.prompt_tokens, trace.output_tokens, None, trace.closed_loop)
    times = []
    kernel_step = kernel.step
    while len(kernel):
        kernel_step()
        times.append(kernel.now)
    return cluster, metrics, checker, times
