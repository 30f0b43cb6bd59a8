"""Composition of Experts (Samba-CoE): a router model and N expert models, one expert per request.

The workload (:class:`CoEWorkload`) draws each request's expert from a Zipf popularity over the
experts' ranks (``popularity_exponent``; 0 = uniform) with its own random stream. A platform
(:class:`CoEPlatform`, built by the caller from its cost models: ``hwmodels.rdu.coe_platform``) says
how many experts its fast memory keeps resident, how long a switch takes (an expert copied from host
memory over the host link on a GPU server, from DDR into HBM on an RDU node) and what the router and
the expert cost per request. :func:`run_coe` serves the requests one after another (batch 1, the
latency-bound setting), keeping resident experts in LRU order.

A computation, not an event simulation: requests are served back to back (no arrival process), so
the result is the service time of the request sequence. Units: s, bytes.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from llmsim.workloads.errors import ConfigError
from llmsim.workloads.rng import stream

__all__ = ["CoEWorkload", "CoEPlatform", "CoEResult", "run_coe"]


@dataclass(frozen=True)
class CoEWorkload:
    """``num_requests`` requests of ``prompt_tokens`` in and ``output_tokens`` out, each routed to one of
    ``num_experts`` copies of ``expert_model`` (Samba-CoE: 150 experts [P]) after a pass of
    ``router_model`` over the prompt."""

    expert_model: str = "llama-2-7b"
    router_model: str = "llama-2-7b"
    num_experts: int = 150
    popularity_exponent: float = 1.0
    num_requests: int = 200
    prompt_tokens: int = 512
    output_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("num_experts", "num_requests", "prompt_tokens", "output_tokens"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{k}` must be a positive integer, got {v!r}")
        if not (isinstance(self.popularity_exponent, (int, float)) and self.popularity_exponent >= 0):
            raise ConfigError(f"`popularity_exponent` must be >= 0, got {self.popularity_exponent!r}")

    def popularity(self) -> np.ndarray:
        """Probability of each expert (rank order), summing to 1."""
        w = 1.0 / np.arange(1, self.num_experts + 1, dtype=np.float64) ** self.popularity_exponent
        return w / w.sum()

    def experts(self) -> np.ndarray:
        """The expert of each request (int64), drawn from the ``coe-experts`` stream of ``seed``."""
        rng = stream(self.seed, "coe-experts")
        return rng.choice(self.num_experts, size=self.num_requests, p=self.popularity()).astype(np.int64)


@dataclass(frozen=True)
class CoEPlatform:
    """What one serving platform costs for a CoE: ``resident_experts`` kept in fast memory, ``switch_s``
    to bring in one more, ``router_s`` per request, ``expert_prefill_s`` per request and
    ``expert_decode_s_per_token``."""

    name: str
    resident_experts: int
    switch_s: float
    router_s: float
    expert_prefill_s: float
    expert_decode_s_per_token: float

    def __post_init__(self) -> None:
        if not isinstance(self.resident_experts, int) or self.resident_experts < 1:
            raise ConfigError(f"{self.name}: `resident_experts` must be >= 1 (one expert must fit), "
                              f"got {self.resident_experts!r}")


@dataclass(frozen=True)
class CoEResult:
    """Totals over the workload (seconds) and the number of expert switches."""

    platform: str
    total_s: float
    switch_s: float
    compute_s: float
    switches: int
    requests: int

    @property
    def switch_fraction(self) -> float:
        return self.switch_s / self.total_s if self.total_s else 0.0


def run_coe(workload: CoEWorkload, platform: CoEPlatform) -> CoEResult:
    """Serve ``workload`` on ``platform`` one request at a time with an LRU set of resident experts
    (it starts empty: the first use of every expert is a switch)."""
    resident: OrderedDict[int, None] = OrderedDict()
    switches = 0
    for e in workload.experts().tolist():
        if e in resident:
            resident.move_to_end(e)
            continue
        switches += 1
        resident[e] = None
        if len(resident) > platform.resident_experts:
            resident.popitem(last=False)
    per_req = (platform.router_s + platform.expert_prefill_s
               + platform.expert_decode_s_per_token * workload.output_tokens)
    compute = per_req * workload.num_requests
    sw = switches * platform.switch_s
    return CoEResult(platform.name, compute + sw, sw, compute, switches, workload.num_requests)
