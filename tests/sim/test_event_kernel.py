"""Kernel contracts: K1 clock monotonicity, K2 same-time order by priority then scheduling order."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.sim.kernel import PRIORITY_ARRIVAL, PRIORITY_ITERATION, PRIORITY_LAST, PRIORITY_TRANSFER, Kernel


def test_same_time_events_fire_by_priority_then_fifo():
    k = Kernel()
    fired = []
    for name, prio in [("iter-a", PRIORITY_ITERATION), ("last", PRIORITY_LAST), ("arrival", PRIORITY_ARRIVAL),
                       ("iter-b", PRIORITY_ITERATION), ("transfer", PRIORITY_TRANSFER)]:
        k.schedule(1.0, prio, fired.append, name)
    k.run()
    assert fired == ["transfer", "arrival", "iter-a", "iter-b", "last"]


def test_priority_constants_are_ordered_as_documented():
    assert PRIORITY_TRANSFER < PRIORITY_ARRIVAL < PRIORITY_ITERATION < PRIORITY_LAST


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.integers(0, 3)), min_size=1, max_size=60))
def test_clock_never_goes_backwards_and_order_is_time_priority_seq(entries):
    k = Kernel()
    seen = []

    def cb(arg):
        seen.append((k.now, arg[0], arg[1]))
        assert k.now == arg[2]

    for seq, (t, p) in enumerate(entries):
        k.schedule(t, p, cb, (p, seq, t))
    k.run()
    assert [(t, p, s) for t, p, s in seen] == sorted(seen)
    assert len(seen) == len(entries)


def test_callbacks_may_schedule_at_now_and_later():
    k = Kernel()
    log = []

    def first(_):
        log.append(("first", k.now))
        k.schedule(k.now, PRIORITY_ITERATION, lambda _: log.append(("same-time", k.now)))
        k.schedule_in(0.5, PRIORITY_ITERATION, lambda _: log.append(("later", k.now)))

    k.schedule(2.0, PRIORITY_ARRIVAL, first)
    k.run()
    assert log == [("first", 2.0), ("same-time", 2.0), ("later", 2.5)]


def test_scheduling_into_the_past_raises():
    k = Kernel()
    k.schedule(1.0, PRIORITY_ARRIVAL, lambda _: None)
    k.run()
    with pytest.raises(ValueError, match="before now"):
        k.schedule(0.5, PRIORITY_ARRIVAL, lambda _: None)
    with pytest.raises(ValueError):
        k.schedule_in(-1e-9, PRIORITY_ARRIVAL, lambda _: None)


def test_run_until_stops_inclusive_and_sets_the_clock():
    k = Kernel()
    fired = []
    for t in (1.0, 2.0, 3.0):
        k.schedule(t, PRIORITY_ARRIVAL, fired.append, t)
    k.run(until=2.0)
    assert fired == [1.0, 2.0] and k.now == 2.0 and k.peek() == 3.0
    k.run()
    assert fired == [1.0, 2.0, 3.0] and k.peek() == math.inf
    assert k.events_processed == 3
