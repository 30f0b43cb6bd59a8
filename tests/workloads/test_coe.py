"""The Composition-of-Experts workload: popularity, determinism, LRU switching."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.workloads.coe import CoEPlatform, CoEWorkload, run_coe
from llmsim.workloads.errors import ConfigError


def test_popularity_and_determinism():
    w = CoEWorkload(num_requests=500)
    p = w.popularity()
    assert p.sum() == pytest.approx(1.0) and p[0] > p[-1]
    assert np.array_equal(w.experts(), CoEWorkload(num_requests=500).experts())
    assert not np.array_equal(w.experts(), CoEWorkload(num_requests=500, seed=1).experts())
    assert np.allclose(CoEWorkload(popularity_exponent=0).popularity(), 1 / 150)


def test_lru_switches():
    w = CoEWorkload(num_requests=300)
    plat = lambda n: CoEPlatform("x", n, switch_s=1.0, router_s=0.0, expert_prefill_s=0.0,  # noqa: E731
                                 expert_decode_s_per_token=0.0)
    all_fit = run_coe(w, plat(150))
    assert all_fit.switches == len(set(w.experts().tolist()))  # only first uses
    tight = run_coe(w, plat(1))
    e = w.experts()
    assert tight.switches == 1 + int((e[1:] != e[:-1]).sum())
    assert tight.total_s == tight.switches * 1.0
    with pytest.raises(ConfigError):
        plat(0)
    with pytest.raises(ConfigError):
        CoEWorkload(num_experts=0)
