"""A request's state inside a replica, and the batch a scheduler returns.

Token accounting (one definition, used by every scheduler and the engine):

* ``cached`` -- tokens whose KV is in the cache now.
* ``prefill_target`` -- tokens a prefill must put in the cache before the request decodes: the prompt,
  or after a preemption by recompute, the prompt plus the tokens generated so far.
* A request is *prefilling* while ``cached < prefill_target``. The iteration that completes the
  prefill produces one output token (the first one sets ``first_token_s``).
* A *decoding* request has ``cached == prompt + generated - 1``; a decode iteration appends one token's
  KV (its context passed to the cost model is ``cached`` before the append) and produces one token.
* The request finishes when ``generated == output_tokens``; it never needs more than
  ``prompt + output - 1`` cached tokens.
* With prefix caching, a request admitted from the waiting queue starts with ``cached`` = the tokens
  of its leading blocks found in the cache (whole blocks, at most ``prefill_target - 1`` tokens), which
  it references (``held``) instead of computing.
* A request preempted by swap keeps ``cached`` and ``generated``; its ``swapped`` blocks sit in host
  memory until the replica brings them back. A request handed over by a prefill replica (P/D
  disaggregation) arrives decoding (``cached == prompt``, ``generated == 1``) with no blocks yet.

Schedulers get requests through read-only sequences and must not assign to them (the conformance
suite in ``tests/sim/test_schedulers.py`` snapshots every slot around ``schedule``).
"""
from __future__ import annotations

from operator import attrgetter

WAITING = 0
RUNNING = 1
FINISHED = 2
REJECTED = 3


class Request:
    __slots__ = ("index", "arrival_s", "prompt_tokens", "output_tokens", "priority", "key",
                 "prefill_target", "cached", "generated", "blocks", "state", "replica",
                 "first_scheduled_s", "first_token_s", "finish_s", "preemptions", "swapped", "ident", "hashes",
                 "held", "reg")

    def __init__(self, index: int, arrival_s: float, prompt_tokens: int, output_tokens: int, priority: int = 0):
        self.index = index
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.priority = priority
        #: Deterministic order everywhere: priority, arrival, trace position.
        self.key = (priority, arrival_s, index)
        self.prefill_target = prompt_tokens
        self.cached = 0
        self.generated = 0
        self.blocks = 0
        self.state = WAITING
        self.replica = -1
        self.first_scheduled_s = -1.0
        self.first_token_s = -1.0
        self.finish_s = -1.0
        self.preemptions = 0
        #: KV blocks this request holds in host memory (preempted by swap), else 0.
        self.swapped = 0
        #: Prefix identity ``(ids, block_tokens, tokens)``: coarse block ids naming the first ``tokens``
        #: tokens (see :func:`llmsim.sim.kv.block_hashes`), or None (every block private).
        self.ident = None
        #: Identities of its full KV blocks (computed by the replica from ``ident``), or None.
        self.hashes = None
        #: Identities of the cached blocks it references, in block order (its other blocks are private).
        self.held = ()
        #: Blocks ``[0, reg)`` were hits or offered to the prefix cache already.
        self.reg = 0

    @property
    def prefilling(self) -> bool:
        return self.cached < self.prefill_target

    def __repr__(self) -> str:
        return (f"Request(index={self.index}, arrival_s={self.arrival_s}, prompt={self.prompt_tokens}, "
                f"output={self.output_tokens}, cached={self.cached}, generated={self.generated})")


#: ``r.key`` of a request: the order of queues (a C getter: it runs on every insertion's comparisons)
request_key = attrgetter("key")


class Batch:
    """What one iteration runs: prefill chunks, decodes, and the preemptions that make room first.

    ``prefill[i]`` processes ``prefill_tokens[i]`` new prompt tokens; every request in ``decode``
    produces one token; every request in ``preempt`` (a running request) is evicted by recompute
    before the iteration: its blocks are freed and it returns to the waiting queue.
    """

    __slots__ = ("prefill", "prefill_tokens", "decode", "preempt")

    def __init__(self, prefill=None, prefill_tokens=None, decode=None, preempt=None):
        self.prefill: list[Request] = [] if prefill is None else prefill
        self.prefill_tokens: list[int] = [] if prefill_tokens is None else prefill_tokens
        self.decode: list[Request] = [] if decode is None else decode
        self.preempt: list[Request] = [] if preempt is None else preempt

    def __bool__(self) -> bool:
        return bool(self.prefill or self.decode)

    def __repr__(self) -> str:
        return (f"Batch(prefill={[(r.index, n) for r, n in zip(self.prefill, self.prefill_tokens)]}, "
                f"decode={[r.index for r in self.decode]}, preempt={[r.index for r in self.preempt]})")
