"""A serving simulation you can step, feed and fork: the object a scheduler experiment drives.

:class:`Simulation` is the run of a :class:`~llmsim.api.Scenario` held open: the same replicas,
cost models, router and requests that :func:`llmsim.simulate` runs (both go through
:func:`llmsim.sim.runner.assemble`), on a clock you move with :meth:`~Simulation.advance` or
:meth:`~Simulation.step`. :meth:`~Simulation.submit` adds a request now or later, to the router or
to a replica you name; :meth:`~Simulation.state` reads the queues, the running batch and the KV
usage of every replica and the metrics so far; :meth:`~Simulation.fork` copies the whole simulator
state (the past is not re-run), so two futures can be compared.

    >>> import llmsim
    >>> sc = llmsim.Scenario(model="llama-3.1-8b", device="h100", tp=1, dp=2, workload="azure-code",
    ...                      num_requests=40, rate=4.0)
    >>> sim = llmsim.Simulation(sc)
    >>> sim.advance(5.0)
    5.0
    >>> [r.replica for r in sim.state().replicas]
    [0, 1]
    >>> a, b = sim.fork(), sim.fork()
    >>> ia = a.submit(llmsim.Request(prompt_tokens=4000, output_tokens=200, replica=0))
    >>> ib = b.submit(llmsim.Request(prompt_tokens=4000, output_tokens=200, replica=1))
    >>> ra, rb = a.run(), b.run()
    >>> ra.metrics.requests_completed == rb.metrics.requests_completed == 41
    True
    >>> sim.run().summary == llmsim.simulate(sc).summary   # the original never saw the extra request
    True

Time is in seconds of simulated time. Without requests from the scenario (``feed=False``) the
simulation starts empty and serves only what is submitted. A static batch or a disaggregated
scenario cannot be stepped (``ConfigError``; run those with :func:`llmsim.simulate`).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from llmsim.sim.cluster import Cluster, ReplicaStatus, collect_result, request_arrays
from llmsim.sim.kernel import PRIORITY_ARRIVAL, Kernel
from llmsim.sim.metrics import MetricsCollector
from llmsim.sim.request import Request as _SimRequest
from llmsim.sim.runner import serving_summary, slo_of
from llmsim.workloads.errors import ConfigError

__all__ = ["ReplicaState", "Request", "SimState", "Simulation", "Snapshot"]


@dataclass(frozen=True, kw_only=True)
class Request:
    """A request to :meth:`Simulation.submit`: ``prompt_tokens`` and ``output_tokens`` (>= 1);
    ``arrival_s``: when it arrives (seconds of simulated time, ``None`` = now, never in the past);
    ``replica``: the replica to queue it on (``None`` = the scenario's router decides);
    ``priority``: lower is served first by priority schedulers (default 0)."""

    prompt_tokens: int
    output_tokens: int
    arrival_s: float | None = None
    replica: int | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "output_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"`{name}` must be an integer >= 1, got {v!r}")
        if self.arrival_s is not None and not (isinstance(self.arrival_s, (int, float)) and math.isfinite(self.arrival_s)
                                               and self.arrival_s >= 0):
            raise ConfigError(f"`arrival_s` must be a finite time >= 0 in seconds or None, got {self.arrival_s!r}")
        if self.replica is not None and (isinstance(self.replica, bool) or not isinstance(self.replica, int)
                                         or self.replica < 0):
            raise ConfigError(f"`replica` must be a replica index >= 0 or None, got {self.replica!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ConfigError(f"`priority` must be an integer, got {self.priority!r}")


@dataclass(frozen=True, kw_only=True)
class ReplicaState:
    """One engine (virtual engine of a pipeline-parallel replica) at a moment: requests ``waiting``
    (not yet admitted), ``running`` (admitted, prefilling or decoding), ``resuming`` (KV in host
    memory); ``batch_prefill`` and ``batch_decode``: requests in the iteration in flight (0, 0 when
    idle); ``kv_used_blocks`` of ``kv_blocks`` (blocks of ``block_size`` tokens); ``kv_usage`` their
    ratio; counters ``iterations``, ``finished``, ``rejected``, ``preemptions``; ``busy_s`` (s)."""

    replica: int
    waiting: int
    running: int
    resuming: int
    batch_prefill: int
    batch_decode: int
    kv_used_blocks: int
    kv_blocks: int
    block_size: int
    kv_usage: float
    iterations: int
    finished: int
    rejected: int
    preemptions: int
    busy_s: float


@dataclass(frozen=True, kw_only=True)
class SimState:
    """The simulation at ``now_s`` (s): per-engine :class:`ReplicaState`, requests ``submitted``
    (arrived so far), ``completed``, ``rejected``, ``pending`` (scheduled to arrive later), and
    ``events`` fired so far."""

    now_s: float
    replicas: tuple[ReplicaState, ...]
    submitted: int
    completed: int
    rejected: int
    pending: int
    events: int


@dataclass(frozen=True)
class Snapshot:
    """A frozen copy of a :class:`Simulation` (:meth:`Simulation.snapshot`); :meth:`restore` makes
    a new simulation from it, as often as wanted (each one independent)."""

    _sim: Simulation

    @property
    def now_s(self) -> float:
        return self._sim.now_s

    def restore(self) -> Simulation:
        """A new simulation continuing from this snapshot."""
        return self._sim.fork()


class _Ids:
    """Request ids of the scenario's requests followed by the submitted ones (their indices)."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: np.ndarray):
        self.request_id = request_id


class Simulation:
    """The serving run of ``scenario`` (a :class:`~llmsim.api.Scenario` or what
    :func:`llmsim.build` made of one), held open at ``now_s`` = 0. ``feed``: serve the scenario's
    requests (its workload or trace); ``False`` starts with none. ``keep_iterations`` records every
    iteration for :meth:`iterations_frame`; ``Scenario.keep_requests`` keeps per-request records as
    in :func:`llmsim.simulate`. Raises what :func:`llmsim.build` raises."""

    def __init__(self, scenario, *, feed: bool = True, keep_iterations: bool | None = None):
        from llmsim.api import Built, Scenario, build
        from llmsim.sim.trace import ChromeTracer

        built = scenario if isinstance(scenario, Built) else None
        if built is None:
            if not isinstance(scenario, Scenario):
                raise ConfigError(f"Simulation() takes a llmsim.Scenario or llmsim.Built, got {type(scenario).__name__}")
            if scenario.to_config().disagg is not None:
                raise ConfigError("a disaggregated scenario cannot be stepped; run it with llmsim.simulate")
            built = build(scenario)
        if built.run.static:
            raise ConfigError("a static batch cannot be stepped; run it with llmsim.simulate or use a workload")
        if not isinstance(feed, bool):
            raise ConfigError(f"`feed` must be true or false, got {feed!r}")
        self.scenario = built.scenario
        self._built = built.run
        keep_iter = bool(getattr(self.scenario, "keep_iterations", False)) if keep_iterations is None \
            else keep_iterations
        self._tracer = ChromeTracer() if keep_iter else None
        cfg = built.config
        self._config = cfg
        trace = built.run.trace
        self._keep = bool(self.scenario.keep_requests)
        self.kernel = Kernel()
        self.metrics = MetricsCollector(keep_requests=self._keep, slo=slo_of(cfg))
        self.cluster = Cluster(self.kernel, built.run.replicas, built.run.cost_models, router=built.run.router,
                               seed=cfg.seed, metrics=self.metrics, tracer=self._tracer)
        self._status = tuple(ReplicaStatus(r) for r in self.cluster.replicas)
        if feed:
            arrival, prompt, output, priority, closed_loop, order = request_arrays(trace)
            self.cluster.feed(arrival, prompt, output, priority, closed_loop, getattr(trace, "prefix", None), order,
                              getattr(trace, "sessions", None))
            self._total = len(arrival)
            self._order = order
            ids = getattr(trace, "request_id", None)
            self._ids = list(np.arange(len(arrival)) if ids is None else np.asarray(ids).tolist())
        else:
            self._total = 0
            self._order = None
            self._ids = []
        self._fed = feed
        self._submitted = 0  # requests given to submit() that have arrived
        self._pending = 0  # submitted, arriving later

    # ------------------------------------------------------------------ time
    @property
    def now_s(self) -> float:
        """Simulated time now (s)."""
        return self.kernel.now

    @property
    def done(self) -> bool:
        """Whether nothing is left to happen (no event on the clock)."""
        return len(self.kernel) == 0

    def advance(self, to_s: float) -> float:
        """Fire every event up to and including ``to_s`` (s, not before now); the clock ends at
        ``to_s``. Returns the new time."""
        if not (isinstance(to_s, (int, float)) and math.isfinite(to_s)):
            raise ConfigError(f"advance() takes a finite time in seconds, got {to_s!r}")
        if to_s < self.kernel.now:
            raise ConfigError(f"cannot advance to {to_s!r} s: the simulation is at {self.kernel.now!r} s")
        self.kernel.run(float(to_s))
        return self.kernel.now

    def step(self) -> float | None:
        """Fire every event at the time of the next one (an arrival, the end of an iteration or a
        decode run, ...); returns that time (s), or ``None`` when nothing is left."""
        k = self.kernel
        if not len(k):
            return None
        k.run(k.peek())
        return k.now

    def run(self):
        """Run to the end; the :class:`~llmsim.api.Result` of everything served (also returned
        later by :meth:`result`)."""
        self.kernel.run()
        return self.result()

    # ------------------------------------------------------------------ requests
    def submit(self, request: Request) -> int:
        """Queue ``request`` (a :class:`Request`) at its ``arrival_s`` (default now); returns its
        index (the position after the scenario's requests; ``requests_frame``'s ``index``)."""
        if isinstance(request, Mapping):
            request = Request(**request)
        if not isinstance(request, Request):
            raise ConfigError(f"submit() takes a llmsim.Request, got {type(request).__name__}")
        n = len(self.cluster.replicas)
        if request.replica is not None and request.replica >= n:
            raise ConfigError(f"`replica` {request.replica} does not exist; this simulation has {n} "
                              f"(0 to {n - 1})")
        now = self.kernel.now
        at = now if request.arrival_s is None else float(request.arrival_s)
        if at < now:
            raise ConfigError(f"`arrival_s` {at} s is in the past: the simulation is at {now} s")
        index = self._total
        self._total += 1
        self._ids.append(index)
        self._pending += 1
        self.kernel.schedule(at, PRIORITY_ARRIVAL, self._arrive, (index, request))
        return index

    def _arrive(self, arg) -> None:
        index, spec = arg
        now = self.kernel.now
        self._pending -= 1
        self._submitted += 1
        r = _SimRequest(index, now, int(spec.prompt_tokens), int(spec.output_tokens), int(spec.priority))
        self.metrics.note_arrival(now)
        k = self.cluster.router.route(r, self._status, now) if spec.replica is None else spec.replica
        if not self.cluster.replicas[k].submit(r):
            self.metrics.on_reject(r)

    # ------------------------------------------------------------------ reading
    def state(self) -> SimState:
        """The queues, running batch and KV usage of every engine, and the request counts, now."""
        reps = []
        for rep in self.cluster.replicas:
            b = rep._batch if rep._busy else None
            used = rep.used_blocks()
            reps.append(ReplicaState(
                replica=rep.index, waiting=rep.num_waiting, running=rep.num_running, resuming=rep.num_resuming,
                batch_prefill=0 if b is None else len(b.prefill), batch_decode=0 if b is None else len(b.decode),
                kv_used_blocks=used, kv_blocks=rep.kv.num_blocks, block_size=rep.kv.block_size,
                kv_usage=used / rep.kv.num_blocks, iterations=rep.iterations, finished=rep.finished,
                rejected=rep.rejected, preemptions=rep.preemptions, busy_s=rep.busy_s))
        fed = self.cluster.fed + self._submitted
        return SimState(now_s=self.kernel.now, replicas=tuple(reps), submitted=fed,
                        completed=self.metrics.completed, rejected=self.metrics.rejected,
                        pending=self._total - fed, events=self.kernel.events_processed)

    def result(self):
        """The :class:`~llmsim.api.Result` so far: metrics over the requests finished by now (the
        rest count as unfinished); after :meth:`run`, the same numbers as :func:`llmsim.simulate`."""
        from llmsim.api import Metrics, Result

        fed = self.cluster.fed + self._submitted
        order = self._order
        if order is not None and len(order) < self._total:  # submitted requests keep their indices
            order = np.concatenate([order, np.arange(len(order), self._total, dtype=order.dtype)])
        sim = collect_result(_Ids(np.asarray(self._ids)), self.kernel, self.metrics, self.cluster.replicas,
                             fed=fed, total=self._total, order=order, keep_requests=self._keep)
        summary = serving_summary(self._built, sim, self._total)
        if not self._fed:
            summary["workload"] = "submitted"
        records = sim.records if self._keep else None
        return Result(scenario=self.scenario, config=self._config,
                      metrics=Metrics.from_summary(summary, records), summary=MappingProxyType(summary), _sim=sim,
                      _tracer=self._tracer)

    def metrics_so_far(self):
        """The :class:`~llmsim.api.Metrics` of :meth:`result`."""
        return self.result().metrics

    def iterations_frame(self):
        """Per-iteration rows so far (pandas DataFrame; see :meth:`llmsim.api.Result.iterations_frame`);
        needs ``keep_iterations``."""
        return self.result().iterations_frame()

    # ------------------------------------------------------------------ what if
    def fork(self) -> Simulation:
        """An independent copy continuing from now: the whole simulator state is copied (queues,
        KV caches, events on the clock, the router's random stream, metrics so far); the cost models,
        configs and request arrays, never written during a run, are shared."""
        memo: dict = {}
        shared = [self._built, self.scenario, self._config, *self._built.cost_models, *self._built.replicas]
        c = self.cluster
        shared += [a for a in (c._arrival, c._prompt, c._output, c._priority, c._prefix, c._order, c._feed,
                               c._think) if a is not None]
        for rep in c.replicas:
            shared += [rep.cost, rep.config]
        for obj in shared:
            memo[id(obj)] = obj
        return copy.deepcopy(self, memo)

    def snapshot(self) -> Snapshot:
        """A frozen copy of now (:meth:`Snapshot.restore` continues from it, as often as wanted)."""
        return Snapshot(self.fork())

    def __repr__(self) -> str:
        return f"Simulation(now_s={self.kernel.now!r}, engines={len(self.cluster.replicas)})"
