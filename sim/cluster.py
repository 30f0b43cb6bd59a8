"""The cluster front end (arrivals, routing) and the ``simulate`` entry point.

Arrivals are fed one at a time (only the next arrival is on the heap), so a million-request trace
costs its input arrays and not a million heap entries. Each arrival builds a :class:`Request`, asks the
router for a replica and submits it; a replica that can never fit it rejects it.

Routers have one method, ``route(request, replicas, now) -> index``, over read-only
:class:`ReplicaStatus` views. Registry names: ``round-robin``, ``least-outstanding`` (fewest requests
queued or running), ``least-kv`` (lowest (KV blocks in use + blocks the queued prompts need) / capacity),
``power-of-two`` (two distinct replicas drawn from the router's own random stream, the one with fewer
outstanding requests wins). Ties go to the lower replica index.

Invariant C1 (request conservation): at the end, completed + rejected + unfinished = requests fed,
and without ``until_s`` unfinished = 0 (``tests/sim/test_properties.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmsim.sim.costs import IterationCostModel
from llmsim.sim.kernel import PRIORITY_ARRIVAL, Kernel
from llmsim.sim.metrics import SLO, MetricsCollector, dumps, to_json_dict, write_records
from llmsim.sim.registry import Registry
from llmsim.sim.replica import Replica, ReplicaConfig
from llmsim.sim.request import Request
from llmsim.workloads import jitcache
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.rng import stream


class ReplicaStatus:
    """What a router may see of one replica."""

    __slots__ = ("_r",)

    def __init__(self, replica: Replica):
        self._r = replica

    @property
    def index(self) -> int:
        return self._r.index

    @property
    def outstanding(self) -> int:
        return self._r.outstanding

    def kv_load(self) -> float:
        return self._r.kv_load()


class LazyStream:
    """``stream(seed, name)`` (a ``numpy.random.Generator``), made on its first use: a run whose router
    draws nothing does not import numpy.random (~5 ms of start-up). The same draws as the stream."""

    __slots__ = ("_seed", "_name", "_rng")

    def __init__(self, seed: int, name: str):
        self._seed, self._name, self._rng = seed, name, None

    def __getattr__(self, attr: str):
        rng = self._rng
        if rng is None:
            rng = self._rng = stream(self._seed, self._name)
        return getattr(rng, attr)


class RoundRobinRouter:
    def __init__(self, num_replicas: int, rng: np.random.Generator):
        self._n = num_replicas
        self._next = 0

    def route(self, request: Request, replicas: Sequence[ReplicaStatus], now: float) -> int:
        i = self._next
        self._next = (i + 1) % self._n
        return i


class LeastOutstandingRouter:
    def __init__(self, num_replicas: int, rng: np.random.Generator):
        pass

    def route(self, request: Request, replicas: Sequence[ReplicaStatus], now: float) -> int:
        best = 0
        best_n = replicas[0].outstanding
        for i in range(1, len(replicas)):
            n = replicas[i].outstanding
            if n < best_n:
                best, best_n = i, n
        return best


class LeastKVRouter:
    def __init__(self, num_replicas: int, rng: np.random.Generator):
        pass

    def route(self, request: Request, replicas: Sequence[ReplicaStatus], now: float) -> int:
        loads = [r.kv_load() for r in replicas]
        return loads.index(min(loads))


class PowerOfTwoRouter:
    def __init__(self, num_replicas: int, rng: np.random.Generator):
        self._n = num_replicas
        self._rng = rng

    def route(self, request: Request, replicas: Sequence[ReplicaStatus], now: float) -> int:
        if self._n == 1:
            return 0
        a, b = self._rng.choice(self._n, size=2, replace=False)
        a, b = (int(a), int(b)) if a < b else (int(b), int(a))
        return b if replicas[b].outstanding < replicas[a].outstanding else a


#: Cost-kernel calls one request costs a run while the kernels run in Python (a 10-request run of
#: the default scenario made 17,445): a run that will pass the Python budget compiles at once.
KERNEL_CALLS_PER_REQUEST = 1_000

ROUTERS: Registry[type] = Registry("router")
ROUTERS.register("round-robin", RoundRobinRouter, aliases=("rr",))
ROUTERS.register("least-outstanding", LeastOutstandingRouter, aliases=("least-outstanding-requests", "lor", "least-loaded"))
ROUTERS.register("least-kv", LeastKVRouter, aliases=("least-kv-load", "kv"))
ROUTERS.register("power-of-two", PowerOfTwoRouter, aliases=("p2c", "power-of-two-choices", "po2"))


@dataclass
class SimResult:
    """``summary``: the aggregate metrics (``llmsim.sim.metrics.JSON_KEYS`` and more); ``replicas``: per-replica
    counters; ``records``: per-request columns (empty without ``keep_requests``)."""

    summary: dict
    replicas: list[dict]
    records: dict[str, np.ndarray]
    request_ids: np.ndarray | None
    wall_events: int

    def to_json_dict(self) -> dict:
        return to_json_dict(self.summary)

    def to_json(self) -> str:
        return dumps(self.summary)

    def requests_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.records)
        if self.request_ids is not None and len(frame):
            frame.insert(0, "request_id", np.asarray(self.request_ids)[self.records["index"]])
        return frame

    def write_requests(self, path):
        return write_records(self.records, path, self.request_ids)


class Cluster:
    """Replicas behind a router, fed from request arrays on one kernel."""

    def __init__(self, kernel: Kernel, configs: Sequence[ReplicaConfig], cost_models: Sequence, *,
                 router: str = "round-robin", seed: int = 0, metrics: MetricsCollector, tracer=None):
        self.kernel = kernel
        self.metrics = metrics
        prices = shared_prices(cost_models)
        self.replicas = [Replica(i, c, m, kernel, self._finished, tracer, prices[i])
                         for i, (c, m) in enumerate(zip(configs, cost_models))]
        self._status = tuple(ReplicaStatus(r) for r in self.replicas)
        self.router = ROUTERS.get(router)(len(self.replicas), LazyStream(seed, "router"))
        self._arrival = self._prompt = self._output = self._priority = None
        self._next = 0
        self._n = 0
        self._closed_loop: tuple[int, float] | None = None
        self._prefix = None
        self._order = None
        self._feed = None
        self._chunks = None
        self._base = 0
        self._follow: dict = {}
        self._think = None
        self.fed = 0

    def feed(self, arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
             priority: np.ndarray | None = None, closed_loop: tuple[int, float] | None = None,
             prefix=None, order: np.ndarray | None = None, sessions=None) -> None:
        """Requests in trace order; open loop uses ``arrival_s`` (sorted), closed loop ``(users, think_s)``.
        ``prefix``: the source's :class:`~llmsim.workloads.prefix.PrefixIds` (rows in the source's order;
        ``order[i]`` is the source row of request ``i`` when the arrays were re-sorted).
        ``sessions`` (:class:`~llmsim.workloads.prefix.Sessions`, open loop only): a turn is sent its think
        time after its predecessor completes or is rejected, instead of at its ``arrival_s``."""
        self._prefix = prefix
        self._order = order
        if sessions is not None and closed_loop is None and np.any(sessions.prev >= 0):
            n = len(arrival_s)
            src = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
            pos = np.empty(n, dtype=np.int64)
            pos[src] = np.arange(n)
            p = sessions.prev[src]
            prev = np.where(p >= 0, pos[np.maximum(p, 0)], -1)
            self._feed = np.flatnonzero(prev < 0)
            for i in np.flatnonzero(prev >= 0).tolist():
                self._follow.setdefault(int(prev[i]), []).append(i)
            self._think = sessions.think_s[src]
        # Kept as arrays (not lists of Python numbers) so memory is the input's 8 bytes per value.
        self._arrival = np.ascontiguousarray(arrival_s, dtype=np.float64)
        self._prompt = np.ascontiguousarray(prompt_tokens, dtype=np.int64)
        self._output = np.ascontiguousarray(output_tokens, dtype=np.int64)
        self._priority = None if priority is None else np.ascontiguousarray(priority, dtype=np.int64)
        self._n = len(self._arrival)
        self._closed_loop = closed_loop
        if self._feed is not None:
            if len(self._feed):
                self.kernel.schedule(float(self._arrival[self._feed[0]]), PRIORITY_ARRIVAL, self._arrive_feed, None)
        elif closed_loop is None:
            if self._n:
                self.kernel.schedule(float(self._arrival[0]), PRIORITY_ARRIVAL, self._arrive, None)
        else:
            users, _think = closed_loop
            for _ in range(min(users, self._n)):
                self.kernel.schedule(self.kernel.now, PRIORITY_ARRIVAL, self._arrive_closed, None)

    def feed_chunks(self, chunks, total: int) -> None:
        """Open-loop requests from ``chunks``, an iterator of ``(arrival_s, prompt_tokens, output_tokens)``
        pieces of ``total`` requests in arrival order, each read when the simulation reaches it (memory
        for one piece): the same events as :meth:`feed` with the pieces' concatenation."""
        self._chunks = iter(chunks)
        self._n = int(total)
        self._base = 0
        self._arrival = self._prompt = self._output = np.zeros(0)
        if self._n and self._next_chunk():
            self.kernel.schedule(float(self._arrival[0]), PRIORITY_ARRIVAL, self._arrive_chunked, None)

    def _next_chunk(self) -> bool:
        """Move to the next piece of a chunked feed (checked as :func:`request_arrays` checks a trace)."""
        self._base += len(self._arrival)
        previous = float(self._arrival[-1]) if len(self._arrival) else 0.0
        for piece in self._chunks:
            arrival, prompt, output = (np.ascontiguousarray(piece[0], dtype=np.float64),
                                       np.ascontiguousarray(piece[1], dtype=np.int64),
                                       np.ascontiguousarray(piece[2], dtype=np.int64))
            if not len(arrival):
                continue
            check_request_piece(arrival, prompt, output, previous)
            self._arrival, self._prompt, self._output = arrival, prompt, output
            return True
        raise ConfigError(f"the request source ended after {self._base} of its {self._n} requests")

    def _arrive_chunked(self, _arg) -> None:
        i = self._next
        self._next = i + 1
        j = i - self._base
        prompt, output = int(self._prompt[j]), int(self._output[j])
        if self._next < self._n:
            if j + 1 == len(self._arrival):
                self._next_chunk()
            self.kernel.schedule(float(self._arrival[self._next - self._base]), PRIORITY_ARRIVAL,
                                 self._arrive_chunked, None)
        self._admit_request(Request(i, self.kernel.now, prompt, output, 0), i, self.kernel.now)

    def _admit(self, i: int, now: float) -> None:
        prio = 0 if self._priority is None else int(self._priority[i])
        self._admit_request(Request(i, now, int(self._prompt[i]), int(self._output[i]), prio), i, now)

    def _admit_request(self, r: Request, i: int, now: float) -> None:
        if self._prefix is not None:
            r.ident = self._prefix.row(i if self._order is None else int(self._order[i]))
        self.fed += 1
        self.metrics.note_arrival(now)
        k = self.router.route(r, self._status, now)
        if not self.replicas[k].submit(r):
            self.metrics.on_reject(r)
            if self._closed_loop is not None:
                self._user_done(now)
            elif self._follow:
                self._next_turns(i, now)

    def _arrive(self, _arg) -> None:
        i = self._next
        self._next = i + 1
        if self._next < self._n:
            self.kernel.schedule(float(self._arrival[self._next]), PRIORITY_ARRIVAL, self._arrive, None)
        self._admit(i, self.kernel.now)

    def _arrive_feed(self, _arg) -> None:
        """Open loop with session links: the first turns arrive at their times."""
        feed = self._feed
        k = self._next
        self._next = k + 1
        if self._next < len(feed):
            self.kernel.schedule(float(self._arrival[feed[self._next]]), PRIORITY_ARRIVAL, self._arrive_feed, None)
        self._admit(int(feed[k]), self.kernel.now)

    def _next_turns(self, i: int, now: float) -> None:
        for j in self._follow.pop(i, ()):
            self.kernel.schedule(now + float(self._think[j]), PRIORITY_ARRIVAL, self._arrive_turn, j)

    def _arrive_turn(self, j: int) -> None:
        self._admit(j, self.kernel.now)

    def _arrive_closed(self, _arg) -> None:
        i = self._next
        if i >= self._n:
            return
        self._next = i + 1
        self._admit(i, self.kernel.now)

    def _user_done(self, now: float) -> None:
        if self._next < self._n:
            self.kernel.schedule(now + self._closed_loop[1], PRIORITY_ARRIVAL, self._arrive_closed, None)

    def _finished(self, r: Request) -> None:
        self.metrics.on_finish(r)
        if self._closed_loop is not None:
            self._user_done(r.finish_s)
        elif self._follow:
            self._next_turns(r.index, r.finish_s)


def shared_prices(cost_models: Sequence) -> list[dict]:
    """One remembered-prices table per replica (``Replica(prices=...)``), shared by the replicas
    whose cost model is the same object."""
    tables: dict[int, dict] = {}
    return [tables.setdefault(id(m), {}) for m in cost_models]


def _as_list(value, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{what} must have one entry per replica ({n}), got {len(value)}")
        return list(value)
    return [value] * n


def simulate(requests, replicas: ReplicaConfig | Sequence[ReplicaConfig], cost_models, *,
             num_replicas: int | None = None, router: str = "round-robin", seed: int = 0,
             keep_requests: bool = True, slo: SLO | None = None, tracer=None,
             until_s: float | None = None) -> SimResult:
    """Serve ``requests`` on a cluster and return its metrics.

    ``requests``: any object with int/float arrays ``arrival_s``, ``prompt_tokens``, ``output_tokens``
    (and optionally ``request_id``, ``priority``; a ``closed_loop`` attribute ``(users, think_time_s)``
    makes arrivals closed-loop: each user sends its next request ``think_time_s`` after the last one
    completes) -- e.g. a :class:`llmsim.workloads.traces.RequestTrace`.
    ``replicas``: one :class:`ReplicaConfig` (repeated ``num_replicas`` times, default 1) or one per replica.
    ``cost_models``: one :class:`~llmsim.sim.costs.IterationCostModel` shared by all replicas or one per replica.
    ``seed``: master seed of the simulator's random streams (the router's). ``keep_requests=False``
    keeps memory flat (streaming percentiles, see :mod:`llmsim.sim.metrics`). ``tracer``: e.g.
    :class:`llmsim.sim.trace.ChromeTracer`. ``until_s``: stop the clock there; requests not done are unfinished.
    """
    if isinstance(replicas, ReplicaConfig):
        n = 1 if num_replicas is None else int(num_replicas)
        configs = [replicas] * n
    else:
        configs = list(replicas)
        if num_replicas is not None and num_replicas != len(configs):
            raise ConfigError(f"num_replicas={num_replicas} but {len(configs)} replica configs were given")
    n = len(configs)
    if n < 1:
        raise ConfigError(f"need at least one replica, got {n}")
    for c in configs:
        if not isinstance(c, ReplicaConfig):
            raise ConfigError(f"replicas must be ReplicaConfig, got {type(c).__name__}")
    models = _as_list(cost_models, n, "cost_models")
    for m in models:
        if not isinstance(m, IterationCostModel):
            raise ConfigError(f"cost model {m!r} does not implement iteration(prefill_lens, prefill_offsets, decode_ctx)")
    chunked = callable(getattr(requests, "chunks", None))
    if not chunked:
        arrival, prompt, output, priority, closed_loop, order = request_arrays(requests)
    kernel = Kernel()
    metrics = MetricsCollector(keep_requests=keep_requests, slo=slo)
    cluster = Cluster(kernel, configs, models, router=router, seed=seed, metrics=metrics, tracer=tracer)
    if chunked:  # e.g. a LazyTrace: pieces generated as they are reached
        total, order = len(requests), None
        cluster.feed_chunks(requests.chunks(), total)
    else:
        total = len(arrival)
        cluster.feed(arrival, prompt, output, priority, closed_loop, getattr(requests, "prefix", None), order,
                     getattr(requests, "sessions", None))
    jitcache.expect_calls(total * KERNEL_CALLS_PER_REQUEST)
    kernel.run(until_s)
    return collect_result(requests, kernel, metrics, cluster.replicas, fed=cluster.fed, total=total,
                          order=order, keep_requests=keep_requests)


def check_request_piece(arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray, previous: float) -> None:
    """ConfigError unless a piece of a chunked request source is as :func:`request_arrays` requires:
    equal lengths, lengths >= 1, finite arrivals >= 0, in order from ``previous`` (the last arrival before it)."""
    if not (len(arrival) == len(prompt) == len(output)):
        raise ConfigError("arrival_s, prompt_tokens and output_tokens must have the same length")
    if prompt.min() < 1 or output.min() < 1:
        raise ConfigError("prompt_tokens and output_tokens must be >= 1")
    if not (np.all(np.isfinite(arrival)) and arrival.min() >= 0):
        raise ConfigError("arrival_s must be finite and >= 0")
    if arrival[0] < previous or np.any(np.diff(arrival) < 0):
        raise ConfigError("a chunked request source must give its requests in arrival order")


def request_arrays(requests):
    """Checked ``(arrival, prompt, output, priority, closed_loop, order)`` of a request source, sorted
    by arrival (``order`` maps back to the caller's positions, ``None`` when already sorted)."""
    arrival = np.asarray(requests.arrival_s, dtype=np.float64)
    prompt = np.asarray(requests.prompt_tokens, dtype=np.int64)
    output = np.asarray(requests.output_tokens, dtype=np.int64)
    if not (len(arrival) == len(prompt) == len(output)):
        raise ConfigError("arrival_s, prompt_tokens and output_tokens must have the same length")
    if len(prompt) and (prompt.min() < 1 or output.min() < 1):
        raise ConfigError("prompt_tokens and output_tokens must be >= 1")
    if len(arrival) and not (np.all(np.isfinite(arrival)) and arrival.min() >= 0):
        raise ConfigError("arrival_s must be finite and >= 0")
    priority = getattr(requests, "priority", None)
    priority = None if priority is None else np.asarray(priority, dtype=np.int64)
    closed_loop = getattr(requests, "closed_loop", None)
    order = None
    if closed_loop is None and len(arrival) > 1 and np.any(np.diff(arrival) < 0):
        order = np.argsort(arrival, kind="stable")
        arrival, prompt, output = arrival[order], prompt[order], output[order]
        priority = None if priority is None else priority[order]
    return arrival, prompt, output, priority, closed_loop, order


def prefix_summary(replicas: Sequence[Replica]) -> dict:
    """Prefix-cache figures over ``replicas``: ``prefix_cache_hit_rate`` = tokens found in the cache /
    prompt tokens (prefill targets) of the requests admitted from a waiting queue (a recompute
    re-admission counts again); ``prefill_tokens_computed`` = prompt tokens the prefill chunks ran."""
    queries = sum(r.prompt_tokens_admitted for r in replicas)
    hits = sum(r.hit_tokens for r in replicas)
    return {"prefix_caching": any(r.config.prefix_caching for r in replicas),
            "prefix_cache_hit_tokens": int(hits), "prefix_cache_query_tokens": int(queries),
            "prefix_cache_hit_rate": hits / queries if queries else 0.0,
            "prefill_tokens_computed": int(sum(r.prefill_tokens for r in replicas))}


def collect_result(requests, kernel: Kernel, metrics: MetricsCollector, replicas: Sequence[Replica], *, fed: int,
                   total: int, order, keep_requests: bool) -> SimResult:
    """The :class:`SimResult` of a finished run: summary with energy (iterations + idle power over the
    makespan), per-replica counters, and per-request records in the caller's order."""
    unfinished = fed - metrics.completed - metrics.rejected + (total - fed)
    summary = metrics.summary(energy_j=0.0, preemptions=0, unfinished=unfinished)
    makespan = summary["makespan_s"]
    energy = 0.0
    per_replica = []
    for rep in replicas:
        idle = max(0.0, makespan - rep.busy_s) if makespan > 0 else 0.0
        e = rep.energy_j + rep.config.idle_power_w * idle
        energy += e
        per_replica.append({"replica": rep.index, "iterations": rep.iterations, "preemptions": rep.preemptions,
                            "finished": rep.finished, "rejected": rep.rejected, "busy_s": rep.busy_s,
                            "energy_j": e, "peak_kv_blocks": rep.kv.peak_used_blocks,
                            "kv_blocks": rep.kv.num_blocks, "swapped_out_blocks": rep.swapped_out_blocks,
                            "prefill_tokens_computed": rep.prefill_tokens,
                            "prefix_cache_hit_tokens": rep.hit_tokens,
                            "peak_resident_kv_blocks": max(rep.kv.peak_resident_blocks, rep.kv.peak_used_blocks),
                            "prefix_cache_evicted_blocks": rep.kv.evictions})
    summary = metrics.summary(energy_j=energy, preemptions=sum(r.preemptions for r in replicas),
                              unfinished=unfinished)
    summary["iterations"] = sum(r.iterations for r in replicas)
    summary.update(prefix_summary(replicas))
    records = metrics.records() if keep_requests else {}
    if keep_requests and order is not None:
        records["index"] = order[records["index"]]  # back to positions in the caller's trace
        resort = np.argsort(records["index"], kind="stable")
        records = {k: v[resort] for k, v in records.items()}
    ids = getattr(requests, "request_id", None)
    return SimResult(summary=summary, replicas=per_replica, records=records,
                     request_ids=None if ids is None else np.asarray(ids), wall_events=kernel.events_processed)
