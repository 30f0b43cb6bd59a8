"""ToyCost satisfies the protocol, and decode_run agrees bit for bit with repeated iteration calls."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.sim.costs import DecodeRunCostModel, IterationCostModel, ToyCost

E = np.zeros(0, dtype=np.int64)


def test_toy_cost_implements_both_protocols():
    assert isinstance(ToyCost(), IterationCostModel) and isinstance(ToyCost(), DecodeRunCostModel)


def test_empty_iteration_is_free_and_costs_grow_with_work():
    c = ToyCost()
    assert c.iteration(E, E, E) == (0.0, 0.0)
    t1, e1 = c.iteration(E, E, np.array([100], dtype=np.int64))
    t2, _ = c.iteration(E, E, np.array([100, 2000], dtype=np.int64))
    t3, _ = c.iteration(np.array([512], dtype=np.int64), np.array([0], dtype=np.int64), E)
    t4, _ = c.iteration(np.array([512], dtype=np.int64), np.array([1024], dtype=np.int64), E)
    assert 0 < t1 < t2 and t3 < t4 and e1 == pytest.approx(c.power_w * t1)


def test_llama70b_calibration_is_a_few_tens_of_ms_per_decode():
    t, _ = ToyCost.llama2_70b_tp8_h100().iteration(E, E, np.full(64, 1500, dtype=np.int64))
    assert 0.010 < t < 0.060


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 100_000), min_size=1, max_size=64), st.integers(1, 300),
       st.floats(0.1, 10.0))
def test_decode_run_equals_repeated_iterations_exactly(ctx, steps, scale):
    c = ToyCost().scaled(scale)
    ctx = np.array(ctx, dtype=np.int64)
    times, energies = c.decode_run(ctx, steps)
    for k in (0, steps // 2, steps - 1):
        t, e = c.iteration(E, E, ctx + k)
        assert times[k] == t and energies[k] == e


def test_invalid_parameters_raise():
    with pytest.raises(ValueError, match="overhead_s"):
        ToyCost(overhead_s=-1.0)
