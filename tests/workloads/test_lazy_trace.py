"""A LazyTrace is synthesize's trace generated in pieces: the same requests, the same simulation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.workloads.errors import ConfigError
from llmsim.workloads.traces import (ClosedLoop, EmpiricalLength, FixedLength, FixedRateArrivals, GammaArrivals,
                                     LazyTrace, LognormalLength, PoissonArrivals, UniformLength, synthesize)

ARRIVALS = [PoissonArrivals(rate_per_s=80.0), GammaArrivals(rate_per_s=3.0, cv=2.5), FixedRateArrivals(rate_per_s=7.0)]
LENGTHS = [LognormalLength(median=800, sigma=1.0, high=8000), UniformLength(low=3, high=5000), FixedLength(tokens=17),
           EmpiricalLength(values=np.array([5, 90, 1200, 3]))]


@pytest.mark.parametrize("arrivals", ARRIVALS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("chunk", [1, 7, 4096, 50_000])
def test_pieces_concatenate_to_the_synthesized_trace(arrivals, chunk):
    n = 1_009 if chunk < 100 else 20_011
    for prompt, output in zip(LENGTHS, LENGTHS[::-1]):
        lazy = LazyTrace(n=n, arrivals=arrivals, prompt=prompt, output=output, seed=3, chunk=chunk)
        pieces = list(lazy.chunks())
        assert all(len(p[0]) <= chunk for p in pieces) and sum(len(p[0]) for p in pieces) == n
        eager = synthesize(n, arrivals=arrivals, prompt=prompt, output=output, seed=3)
        for k, column in enumerate((eager.arrival_s, eager.prompt_tokens, eager.output_tokens)):
            got = np.concatenate([p[k] for p in pieces])
            assert got.dtype == column.dtype and got.tobytes() == column.tobytes()


def _summary(requests, keep):
    from llmsim.hwmodels.deployment import Deployment
    from llmsim.sim.cluster import simulate
    from llmsim.sim.replica import ReplicaConfig
    from llmsim.sim.schedulers import SchedulerConfig

    dep = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm")
    rc = ReplicaConfig(kv_capacity_tokens=dep.kv_capacity_tokens(0.9),
                       scheduler=SchedulerConfig(policy="vllm", max_num_seqs=256, max_num_batched_tokens=8192),
                       idle_power_w=dep.device.power.idle_w)
    res = simulate(requests, rc, dep, num_replicas=3, router="least-outstanding", keep_requests=keep)
    return json.dumps(res.summary, sort_keys=True, default=str), res.records


@pytest.mark.parametrize("keep", [False, True])
def test_a_lazy_trace_simulates_the_same_bits(keep):
    args = dict(arrivals=PoissonArrivals(rate_per_s=40.0), prompt=LognormalLength(median=600, sigma=1.0, high=6000),
                output=LognormalLength(median=120, sigma=1.0, high=1500), seed=5)
    eager, eager_rec = _summary(synthesize(1_200, **args), keep)
    lazy, lazy_rec = _summary(LazyTrace(n=1_200, chunk=97, **args), keep)
    assert lazy == eager
    if keep:
        assert eager_rec.keys() == lazy_rec.keys()
        for k in eager_rec:
            assert np.asarray(eager_rec[k]).tobytes() == np.asarray(lazy_rec[k]).tobytes(), k


def test_bad_lazy_traces_are_config_errors():
    with pytest.raises(ConfigError, match="open-loop"):
        LazyTrace(n=10, arrivals=ClosedLoop(users=2), prompt=FixedLength(tokens=5), output=FixedLength(tokens=5))
    with pytest.raises(ConfigError, match="chunk"):
        LazyTrace(n=10, arrivals=FixedRateArrivals(rate_per_s=1.0), prompt=FixedLength(tokens=5),
                  output=FixedLength(tokens=5), chunk=0)
    with pytest.raises(ConfigError, match="n must be"):
        LazyTrace(n=-1, arrivals=FixedRateArrivals(rate_per_s=1.0), prompt=FixedLength(tokens=5),
                  output=FixedLength(tokens=5))


def test_an_unordered_chunked_source_is_rejected():
    from llmsim.sim.cluster import simulate

    class Backwards:
        def __len__(self):
            return 4

        def chunks(self):
            yield np.array([1.0, 2.0]), np.array([5, 5]), np.array([3, 3])
            yield np.array([1.5, 3.0]), np.array([5, 5]), np.array([3, 3])

    from llmsim.hwmodels.deployment import Deployment
    from llmsim.sim.replica import ReplicaConfig

    dep = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm")
    with pytest.raises(ConfigError, match="arrival order"):
        simulate(Backwards(), ReplicaConfig(kv_capacity_tokens=100_000), dep)
