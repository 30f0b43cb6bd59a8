"""The event loop: a clock and a heap of callbacks, nothing else.

Time is a float in **seconds** everywhere in ``sim/`` (the one declared unit); cost models convert
at their boundary. A heap entry is ``(time_s, priority, seq, callback, arg)``:

* ``time_s`` -- when the callback fires;
* ``priority`` -- order among entries at the same time, lower first (the named constants below);
* ``seq`` -- a counter, so entries with equal time and priority fire in the order they were
  scheduled (FIFO) and the callback itself is never compared;
* ``callback(arg)`` -- a plain function of one argument, so no closure is built per event.

The kernel imports nothing from ``hwmodels/`` or ``workloads/``; replicas, KV pools and links are
built on top of it. Cancellation is the owner's business (a callback checks a token it was given and
returns when stale), which keeps the loop body to pop, set the clock, dispatch.

Invariants (tests in ``tests/sim/test_kernel.py``):

* K1 clock monotonicity: ``now`` never decreases; scheduling into the past raises ``ValueError``.
* K2 total order: same-time entries fire by ``priority``, then by scheduling order.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

#: Same-time order of the events the serving simulator uses (lower fires first).
#: A KV transfer or swap that completes at t is visible to everything else at t.
PRIORITY_TRANSFER = 0
#: A request that arrives at t is queued before any replica decides its next batch at t,
#: so simultaneous arrivals are batched together.
PRIORITY_ARRIVAL = 1
#: An iteration ends (and the next one is planned) after every arrival at the same time.
PRIORITY_ITERATION = 2
#: Bookkeeping that must see the final state at t (samplers, stop conditions).
PRIORITY_LAST = 3

PRIORITY_NAMES = {
    PRIORITY_TRANSFER: "transfer",
    PRIORITY_ARRIVAL: "arrival",
    PRIORITY_ITERATION: "iteration",
    PRIORITY_LAST: "last",
}


class Kernel:
    """A discrete-event clock. ``now`` is in seconds and never goes backwards."""

    __slots__ = ("now", "_heap", "_seq", "events_processed")

    def __init__(self, start_s: float = 0.0):
        self.now = float(start_s)
        self._heap: list[tuple[float, int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.events_processed = 0

    def schedule(self, time_s: float, priority: int, callback: Callable[[Any], None], arg: Any = None) -> None:
        """Fire ``callback(arg)`` at absolute time ``time_s`` (seconds)."""
        if time_s < self.now:
            raise ValueError(f"cannot schedule at {time_s!r} s, before now = {self.now!r} s")
        self._seq += 1
        heapq.heappush(self._heap, (time_s, priority, self._seq, callback, arg))

    def reserve(self) -> int:
        """A sequence number for an entry whose time is not known yet: scheduled later with
        :meth:`schedule_reserved`, it orders among same-time entries as if scheduled now."""
        self._seq += 1
        return self._seq

    def schedule_reserved(self, time_s: float, priority: int, seq: int, callback: Callable[[Any], None],
                          arg: Any = None) -> None:
        """:meth:`schedule` with a sequence number from :meth:`reserve` (use each one once)."""
        if time_s < self.now:
            raise ValueError(f"cannot schedule at {time_s!r} s, before now = {self.now!r} s")
        heapq.heappush(self._heap, (time_s, priority, seq, callback, arg))

    def schedule_in(self, delay_s: float, priority: int, callback: Callable[[Any], None], arg: Any = None) -> None:
        """Fire ``callback(arg)`` ``delay_s`` seconds from now."""
        if not delay_s >= 0.0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        self.schedule(self.now + delay_s, priority, callback, arg)

    def peek(self) -> float:
        """Time of the next entry, ``math.inf`` when the heap is empty."""
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def step(self) -> None:
        """Fire exactly one entry; ``IndexError`` when there is none."""
        time_s, _priority, _seq, callback, arg = heapq.heappop(self._heap)
        self.now = time_s
        self.events_processed += 1
        callback(arg)

    def run(self, until: float | None = None) -> None:
        """Fire entries in order until the heap is empty or the next entry is later than ``until``.

        With ``until`` given the clock ends at ``until`` (entries at exactly ``until`` do fire).
        """
        heap = self._heap
        pop = heapq.heappop
        limit = math.inf if until is None else float(until)
        if limit < self.now:
            raise ValueError(f"until must be >= now = {self.now!r} s, got {until!r}")
        n = 0
        try:
            while heap and heap[0][0] <= limit:
                time_s, _priority, _seq, callback, arg = pop(heap)
                self.now = time_s
                n += 1
                callback(arg)
        finally:
            self.events_processed += n
        if until is not None:
            self.now = limit
