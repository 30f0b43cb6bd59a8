"""Long decode runs are priced in chunks as they go (sim/replica.py ``_on_chunk``); the results equal
the per-iteration loop's, with arrivals cutting runs inside later chunks and runs ending in them."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.sim import replica as replica_mod
from llmsim.sim.cluster import simulate
from llmsim.sim.costs import ToyCost
from llmsim.sim.replica import ReplicaConfig
from llmsim.sim.schedulers import SchedulerConfig
from llmsim.workloads.traces import RequestTrace


@pytest.mark.parametrize("policy", ["vllm", "sarathi"])
def test_chunked_decode_runs_match_the_per_iteration_loop(policy, monkeypatch):
    rng = np.random.default_rng(11)
    n = 60
    trace = RequestTrace(np.sort(rng.uniform(0, 120, n)), rng.integers(1, 400, n), rng.integers(1, 1500, n),
                         np.arange(n))
    chunks = []
    real = replica_mod.Replica._on_chunk

    def counted(self, token):
        chunks.append(token)
        return real(self, token)

    monkeypatch.setattr(replica_mod.Replica, "_on_chunk", counted)
    out = []
    for fuse in (True, False):
        cfg = ReplicaConfig(kv_blocks=4000, block_size=16, fuse_decode=fuse,
                            scheduler=SchedulerConfig(policy=policy, max_num_seqs=16, max_num_batched_tokens=1024))
        out.append(simulate(trace, cfg, ToyCost(), num_replicas=2, router="round-robin", seed=1))
    assert len(chunks) > 10
    assert out[0].to_json() == out[1].to_json()
    for key in ("first_token_s", "finish_s", "replica"):
        assert out[0].records[key].tobytes() == out[1].records[key].tobytes()


def test_a_reserved_entry_orders_as_if_scheduled_when_reserved():
    from llmsim.sim.kernel import Kernel

    k = Kernel()
    fired = []
    seq = k.reserve()
    k.schedule(1.0, 2, fired.append, "later")
    k.schedule_reserved(1.0, 2, seq, fired.append, "reserved")
    k.run()
    assert fired == ["reserved", "later"]
    with pytest.raises(ValueError):
        k.schedule_reserved(0.5, 2, k.reserve(), fired.append, None)
