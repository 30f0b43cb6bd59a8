"""Prefill/decode disaggregation (Splitwise, DistServe): two pools of replicas and a KV hand-over.

A request arrives at a prefill replica (chosen by the prefill router), which runs its prompt and
produces the first token; the request's KV cache then crosses the link between the pools
(``latency_s + prompt_tokens * transfer_s_per_token``, a ``PRIORITY_TRANSFER`` event) and joins a
decode replica (chosen by the decode router at arrival of the KV) through
:meth:`~llmsim.sim.replica.Replica.submit_decoding`, where it decodes the remaining tokens.

TTFT is the first token at the prefill replica; the transfer shows up in the TPOT of the request.
The prefill replica frees the request's blocks when its prefill ends (the copy is modelled as
streaming out of them as the layers finish, as Splitwise does), and the decode replica allocates
them when the request is brought in (no reservation ahead of the transfer). A request that could
never fit the decode pool's KV cache is rejected at arrival.

Replica indices: prefill replicas ``0 .. P-1``, decode replicas ``P .. P+D-1`` (in per-replica
counters and traces). Invariant C1 (request conservation) holds as in :mod:`llmsim.sim.cluster`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmsim.sim.cluster import (KERNEL_CALLS_PER_REQUEST, ROUTERS, ReplicaStatus, SimResult, _as_list, collect_result,
                                request_arrays, shared_prices)
from llmsim.sim.costs import IterationCostModel
from llmsim.sim.kernel import PRIORITY_ARRIVAL, PRIORITY_TRANSFER, Kernel
from llmsim.sim.metrics import SLO, MetricsCollector
from llmsim.sim.replica import Replica, ReplicaConfig
from llmsim.sim.request import REJECTED, Request
from llmsim.workloads import jitcache
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.rng import stream


class DisaggCluster:
    """A prefill pool and a decode pool on one kernel."""

    def __init__(self, kernel: Kernel, prefill: Sequence[tuple[ReplicaConfig, object]],
                 decode: Sequence[tuple[ReplicaConfig, object]], *, transfer_s_per_token: float,
                 transfer_latency_s: float = 0.0, prefill_router: str = "least-outstanding",
                 decode_router: str = "least-kv", seed: int = 0, metrics: MetricsCollector, tracer=None):
        self.kernel = kernel
        self.metrics = metrics
        n_p = len(prefill)
        prices = shared_prices([m for _, m in (*prefill, *decode)])
        self.prefill = [Replica(i, c, m, kernel, self._prefilled, tracer, prices[i])
                        for i, (c, m) in enumerate(prefill)]
        self.decode = [Replica(n_p + i, c, m, kernel, self._finished, tracer, prices[n_p + i])
                       for i, (c, m) in enumerate(decode)]
        self._p_status = tuple(ReplicaStatus(r) for r in self.prefill)
        self._d_status = tuple(ReplicaStatus(r) for r in self.decode)
        self.p_router = ROUTERS.get(prefill_router)(len(self.prefill), stream(seed, "router-prefill"))
        self.d_router = ROUTERS.get(decode_router)(len(self.decode), stream(seed, "router-decode"))
        self.transfer_s_per_token = float(transfer_s_per_token)
        self.transfer_latency_s = float(transfer_latency_s)
        self._full: dict[int, Request] = {}
        self._next = 0
        self._n = 0
        self.fed = 0
        self.transfers = 0
        self.transfer_s = 0.0

    @property
    def replicas(self) -> list[Replica]:
        return self.prefill + self.decode

    def feed(self, arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
             priority: np.ndarray | None = None, prefix=None, order: np.ndarray | None = None) -> None:
        self._prefix = prefix
        self._order = order
        self._arrival = np.ascontiguousarray(arrival_s, dtype=np.float64)
        self._prompt = np.ascontiguousarray(prompt_tokens, dtype=np.int64)
        self._output = np.ascontiguousarray(output_tokens, dtype=np.int64)
        self._priority = None if priority is None else np.ascontiguousarray(priority, dtype=np.int64)
        self._n = len(self._arrival)
        if self._n:
            self.kernel.schedule(float(self._arrival[0]), PRIORITY_ARRIVAL, self._arrive, None)

    def _arrive(self, _arg) -> None:
        i = self._next
        self._next = i + 1
        if self._next < self._n:
            self.kernel.schedule(float(self._arrival[self._next]), PRIORITY_ARRIVAL, self._arrive, None)
        now = self.kernel.now
        prio = 0 if self._priority is None else int(self._priority[i])
        prompt, output = int(self._prompt[i]), int(self._output[i])
        full = Request(i, now, prompt, output, prio)
        self.fed += 1
        self.metrics.note_arrival(now)
        if not all(d.admissible(full) for d in self.decode):
            self._reject(full, self.decode[0].index)
            return
        head = Request(i, now, prompt, 1, prio)  # the prefill replica's part: prompt + first token
        if self._prefix is not None:
            head.ident = self._prefix.row(i if self._order is None else int(self._order[i]))
        k = self.p_router.route(head, self._p_status, now)
        if self.prefill[k].submit(head):
            self._full[i] = full
        else:
            self._reject(full, head.replica)

    def _reject(self, r: Request, replica: int) -> None:
        r.state = REJECTED
        r.replica = replica
        self.metrics.on_reject(r)

    def _prefilled(self, head: Request) -> None:
        full = self._full.pop(head.index)
        full.first_scheduled_s = head.first_scheduled_s
        full.first_token_s = head.first_token_s
        full.preemptions = head.preemptions
        full.generated = 1
        full.cached = full.prompt_tokens
        full.prefill_target = full.prompt_tokens
        if full.output_tokens <= 1:
            full.finish_s = head.finish_s
            full.replica = head.replica
            self.metrics.on_finish(full)
            return
        delay = self.transfer_latency_s + full.prompt_tokens * self.transfer_s_per_token
        self.transfers += 1
        self.transfer_s += delay
        self.kernel.schedule(self.kernel.now + delay, PRIORITY_TRANSFER, self._arrive_decode, full)

    def _arrive_decode(self, full: Request) -> None:
        k = self.d_router.route(full, self._d_status, self.kernel.now)
        if not self.decode[k].submit_decoding(full):
            self.metrics.on_reject(full)

    def _finished(self, r: Request) -> None:
        self.metrics.on_finish(r)


def simulate_disagg(requests, prefill: ReplicaConfig | Sequence[ReplicaConfig], prefill_cost,
                    decode: ReplicaConfig | Sequence[ReplicaConfig], decode_cost, *,
                    num_prefill: int | None = None, num_decode: int | None = None,
                    transfer_s_per_token: float, transfer_latency_s: float = 0.0,
                    prefill_router: str = "least-outstanding", decode_router: str = "least-kv", seed: int = 0,
                    keep_requests: bool = True, slo: SLO | None = None, tracer=None,
                    until_s: float | None = None) -> SimResult:
    """Serve ``requests`` on a prefill pool and a decode pool (see the module docstring).

    ``prefill``/``decode``: one :class:`ReplicaConfig` repeated ``num_prefill``/``num_decode`` times
    (default 1) or one per replica; ``prefill_cost``/``decode_cost``: one cost model per pool or one per
    replica. ``transfer_s_per_token``: seconds to move one prompt token's KV between the pools (all the
    devices' shares in parallel); ``transfer_latency_s`` is added once per request. Closed-loop sources
    are not supported here. Other arguments as :func:`llmsim.sim.cluster.simulate`.
    """
    def expand(cfg, n, what):
        if isinstance(cfg, ReplicaConfig):
            return [cfg] * (1 if n is None else int(n))
        cfgs = list(cfg)
        if n is not None and n != len(cfgs):
            raise ConfigError(f"{what}={n} but {len(cfgs)} replica configs were given")
        return cfgs

    p_cfg = expand(prefill, num_prefill, "num_prefill")
    d_cfg = expand(decode, num_decode, "num_decode")
    if not p_cfg or not d_cfg:
        raise ConfigError(f"need at least one prefill and one decode replica, got {len(p_cfg)} and {len(d_cfg)}")
    p_cost = _as_list(prefill_cost, len(p_cfg), "prefill cost models")
    d_cost = _as_list(decode_cost, len(d_cfg), "decode cost models")
    for m in (*p_cost, *d_cost):
        if not isinstance(m, IterationCostModel):
            raise ConfigError(f"cost model {m!r} does not implement iteration(prefill_lens, prefill_offsets, decode_ctx)")
    if not (np.isfinite(transfer_s_per_token) and transfer_s_per_token >= 0):
        raise ConfigError(f"transfer_s_per_token must be a finite number >= 0, got {transfer_s_per_token!r}")
    if not (np.isfinite(transfer_latency_s) and transfer_latency_s >= 0):
        raise ConfigError(f"transfer_latency_s must be a finite number >= 0, got {transfer_latency_s!r}")
    if getattr(requests, "closed_loop", None) is not None:
        raise ConfigError("P/D disaggregation takes open-loop arrivals; closed-loop sources are not supported")
    arrival, prompt, output, priority, _closed, order = request_arrays(requests)
    kernel = Kernel()
    metrics = MetricsCollector(keep_requests=keep_requests, slo=slo)
    cluster = DisaggCluster(kernel, list(zip(p_cfg, p_cost)), list(zip(d_cfg, d_cost)),
                            transfer_s_per_token=transfer_s_per_token, transfer_latency_s=transfer_latency_s,
                            prefill_router=prefill_router, decode_router=decode_router, seed=seed,
                            metrics=metrics, tracer=tracer)
    cluster.feed(arrival, prompt, output, priority, getattr(requests, "prefix", None), order)
    jitcache.expect_calls(len(arrival) * KERNEL_CALLS_PER_REQUEST)
    kernel.run(until_s)
    result = collect_result(requests, kernel, metrics, cluster.replicas, fed=cluster.fed, total=len(arrival),
                            order=order, keep_requests=keep_requests)
    for rep in result.replicas:
        rep["pool"] = "prefill" if rep["replica"] < len(p_cfg) else "decode"
    result.summary["kv_transfers"] = cluster.transfers
    result.summary["kv_transfer_mean_s"] = cluster.transfer_s / cluster.transfers if cluster.transfers else 0.0
    return result
