"""Batch-selection policies: one method, ``schedule(view) -> Batch``.

A scheduler sees a :class:`ReplicaView` (``now``, ``waiting`` and ``running`` as read-only tuples
sorted by ``(priority, arrival, index)``, and a read-only KV view) and returns a :class:`Batch`. It never
receives the simulator or the whole config: only its :class:`SchedulerConfig`, at construction.

Contract (checked for every registered policy by ``tests/sim/test_schedulers.py``):

* S1 feasibility: after freeing the blocks of ``preempt`` (``kv.freed_by``: with prefix caching a
  victim's blocks shared with other requests stay), the blocks the batch needs fit the free
  blocks; a newly admitted request also leaves ``watermark_blocks`` free.
* S2 progress: if any request is waiting or running, the batch is non-empty.
* S3 limits: at most ``max_num_seqs`` requests are running after the batch is admitted; prefill plus
  decode tokens stay within ``max_num_batched_tokens``, except that a batch's first prefill may exceed
  it (a prompt longer than the budget is run alone rather than never).
* S4 determinism: ties break by ``(priority, arrival, index)``; victims of preemption are taken from
  the end of that order (latest, lowest priority first).
* S5 steady decode (``steady_decode = True``): if the policy returns a decode-only batch without
  preemptions, it would return the same requests again next iteration as long as nothing arrives or
  finishes and the free blocks only shrink. The replica relies on this to plan runs of decode
  iterations with one event (``ReplicaConfig.fuse_decode``).
* S6 idle decode (``idle_decode = True`` in the body of the class that defines ``schedule``): when
  nothing waits and every running request is decoding, their next tokens' blocks fit the free blocks,
  and there are at most ``idle_decode_cap`` of them, the batch decodes every running request in order
  and does nothing else. The replica relies on this to plan such batches without asking and to run a
  batch whose prefill chunks all complete straight on into its decodes (:func:`idle_decode_cap`). A
  subclass that overrides ``schedule`` promises S6 only by declaring it again.

Policies (registry names): ``vllm`` (prefill-first, vLLM v0), ``sarathi`` (alias ``chunked``:
decodes first, then prefill chunks filling the token budget, as vLLM v1), ``static`` (a batch runs to
completion before the next is admitted), ``decode-priority`` (Orca-like: decodes first, then whole
prompts that fit the remaining budget, no chunking).
"""
from __future__ import annotations

from dataclasses import dataclass

from llmsim.sim.kv import KVView
from llmsim.sim.registry import Registry
from llmsim.sim.request import Batch, Request
from llmsim.workloads.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """``policy``: a registered name; ``max_num_seqs``: running requests at most;
    ``max_num_batched_tokens``: tokens (prefill + decode) per iteration (the chunk budget of ``sarathi``);
    ``admit_full_prompt``: ``sarathi`` admits a new prompt only when KV blocks for all of it fit
    (vLLM 0.19's ``scheduler_reserve_full_isl``), not only for its first chunk."""

    policy: str = "vllm"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    admit_full_prompt: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.admit_full_prompt, bool):
            raise ConfigError(f"admit_full_prompt must be true or false, got {self.admit_full_prompt!r}")
        object.__setattr__(self, "policy", SCHEDULERS.canonical(self.policy))
        if not (isinstance(self.max_num_seqs, int) and self.max_num_seqs >= 1):
            raise ConfigError(f"max_num_seqs must be an int >= 1, got {self.max_num_seqs!r}")
        if not (isinstance(self.max_num_batched_tokens, int) and self.max_num_batched_tokens >= 1):
            raise ConfigError(f"max_num_batched_tokens must be an int >= 1, got {self.max_num_batched_tokens!r}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            # every running request may decode in one iteration; vLLM refuses this configuration too
            # (vllm/config/scheduler.py SchedulerConfig._verify_args)
            raise ConfigError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_num_seqs "
                              f"({self.max_num_seqs}), as vLLM requires: raise --max-batched-tokens or lower "
                              f"--max-batch-size")


#: ``idle_decode_cap`` of a policy whose idle-decode batch has no size limit.
NO_CAP = 1 << 62


class ReplicaView:
    """What a scheduler may see of one replica. ``waiting``/``running`` are tuples (sorted by key)."""

    __slots__ = ("now", "waiting", "running", "kv")

    def __init__(self, now: float, waiting: tuple[Request, ...], running: tuple[Request, ...], kv: KVView):
        self.now = now
        self.waiting = waiting
        self.running = running
        self.kv = kv


class Scheduler:
    """Base of the policies: holds the config; subclasses implement ``schedule``."""

    steady_decode = True
    #: S6 promised (declare it in the body of the class that defines ``schedule``)
    idle_decode = False
    #: S6: the most decodes the idle-decode batch holds
    idle_decode_cap = NO_CAP

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.max_num_seqs = config.max_num_seqs
        self.budget = config.max_num_batched_tokens

    def schedule(self, view: ReplicaView) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError


def _decode_with_preemption(running, kv: KVView, free: int, batch: Batch, budget: int | None = None) -> int:
    """Decode every decoding request of ``running`` (in order), preempting from the end of ``running``
    while the growth does not fit. Returns the free blocks left. Prefilling requests in ``running``
    are left for the caller (they may still be preempted as victims). A victim frees
    ``kv.freed_by(victim)`` blocks (its blocks shared with other requests stay)."""
    bs = kv.block_size
    decoding = [r for r in running if r.cached >= r.prefill_target]
    total = 0
    for r in decoding:
        total += (r.cached + bs) // bs - r.blocks
    if total <= free and (budget is None or len(decoding) <= budget):
        # the usual case (everything fits): the loops below would decode them all, in order
        batch.decode.extend(decoding)
        return free - total
    n = len(running)
    need = [0] * n
    total = 0
    for i in range(n):
        r = running[i]
        if r.cached >= r.prefill_target:
            g = (r.cached + bs) // bs - r.blocks  # blocks_for(cached + 1) - blocks
            need[i] = g
            total += g
    while total > free and n > 0:
        n -= 1
        victim = running[n]
        free += kv.freed_by(victim)
        total -= need[n]
        batch.preempt.append(victim)
    decode = batch.decode
    limit = n if budget is None else min(n, budget)
    count = 0
    for i in range(n):
        r = running[i]
        if r.cached >= r.prefill_target:
            if count >= limit:
                # Out of token budget: the rest wait one iteration; their growth is not allocated.
                total -= need[i]
                continue
            decode.append(r)
            count += 1
    return free - total


class VLLMScheduler(Scheduler):
    """vLLM v0 default: admit waiting prompts whole (FCFS, head-of-line), and if any is admitted the
    iteration is prefill-only; otherwise decode all running requests, preempting the latest by
    recompute when their KV cannot grow."""

    idle_decode = True

    def schedule(self, view: ReplicaView) -> Batch:
        kv = view.kv
        bs = kv.block_size
        free = kv.free_blocks
        running = view.running
        batch = Batch()
        waiting = view.waiting
        if waiting:
            room = free - kv.watermark_blocks
            slots = self.max_num_seqs - len(running)
            budget = self.budget
            tokens = 0
            prefill = batch.prefill
            for r in waiting:
                if slots <= 0:
                    break
                n = r.prefill_target - r.cached
                if tokens + n > budget and prefill:
                    break
                need = (r.prefill_target + bs - 1) // bs - r.blocks
                if need > room:
                    break
                room -= need
                tokens += n
                slots -= 1
                prefill.append(r)
                batch.prefill_tokens.append(n)
            if prefill:
                return batch
        _decode_with_preemption(running, kv, free, batch)
        return batch


class SarathiScheduler(Scheduler):
    """Chunked prefill with a token budget (Sarathi-Serve, vLLM v1): decodes first, then the chunks of
    running prefills, then new prompts FCFS, each chunk as large as the budget left. New requests are
    not admitted in an iteration that preempted."""

    idle_decode = True

    def __init__(self, config: SchedulerConfig):
        super().__init__(config)
        self.idle_decode_cap = self.budget  # decodes past the token budget wait (S6)

    def schedule(self, view: ReplicaView) -> Batch:
        kv = view.kv
        bs = kv.block_size
        running = view.running
        batch = Batch()
        free = _decode_with_preemption(running, kv, kv.free_blocks, batch, self.budget)
        left = self.budget - len(batch.decode)
        preempted = batch.preempt
        victims = set(preempted) if preempted else ()
        prefill = batch.prefill
        tokens = batch.prefill_tokens
        for r in running:
            if left <= 0:
                break
            if r.cached < r.prefill_target and r not in victims:
                n = min(r.prefill_target - r.cached, left)
                need = (r.cached + n + bs - 1) // bs - r.blocks
                if need > free:
                    # Shrink the chunk to what fits; a chunk of zero waits for blocks to free up.
                    n = min(n, (r.blocks + free) * bs - r.cached)
                    if n <= 0:
                        continue
                    need = (r.cached + n + bs - 1) // bs - r.blocks
                free -= need
                left -= n
                prefill.append(r)
                tokens.append(n)
        if preempted:
            return batch
        if not prefill and not batch.decode and running:
            # Only prefills run and none can grow: evict from the end until the first one can.
            head = running[0]
            i = len(running)
            while free < 1 and i > 1:
                i -= 1
                free += kv.freed_by(running[i])
                preempted.append(running[i])
            n = min(head.prefill_target - head.cached, left, (head.blocks + free) * bs - head.cached)
            if n > 0:
                prefill.append(head)
                tokens.append(n)
            return batch
        slots = self.max_num_seqs - len(running)
        room = free - kv.watermark_blocks
        full = self.config.admit_full_prompt
        for r in view.waiting:
            if left <= 0 or slots <= 0:
                break
            n = min(r.prefill_target - r.cached, left)
            need = (r.cached + n + bs - 1) // bs - r.blocks
            if need > room or (full and (r.prefill_target + bs - 1) // bs - r.blocks > room):
                break
            room -= need
            left -= n
            slots -= 1
            prefill.append(r)
            tokens.append(n)
        return batch


class StaticScheduler(Scheduler):
    """Static batching: when nothing runs, admit up to ``max_num_seqs`` waiting requests FCFS whose whole
    ``prompt + output`` fits the KV cache together (so they never preempt), prefill them in one
    iteration, and decode until the last finishes; nothing is admitted meanwhile."""

    idle_decode = True

    def schedule(self, view: ReplicaView) -> Batch:
        kv = view.kv
        bs = kv.block_size
        running = view.running
        batch = Batch()
        if running:
            for r in running:
                if r.cached < r.prefill_target:
                    batch.prefill.append(r)
                    batch.prefill_tokens.append(r.prefill_target - r.cached)
                else:
                    batch.decode.append(r)
            return batch
        room = kv.free_blocks - kv.watermark_blocks
        tokens = 0
        for r in view.waiting:
            if len(batch.prefill) >= self.max_num_seqs:
                break
            n = r.prefill_target - r.cached
            if tokens + n > self.budget and batch.prefill:
                break
            need = (r.prompt_tokens + r.output_tokens + bs - 1) // bs
            if need > room:
                break
            room -= need
            tokens += n
            batch.prefill.append(r)
            batch.prefill_tokens.append(n)
        return batch


class DecodePriorityScheduler(Scheduler):
    """Orca-like iteration-level batching without chunking: decode every running request first
    (preempting the latest when KV cannot grow), then admit whole prompts FCFS that fit the token
    budget left; a prompt larger than the whole budget runs alone when nothing else runs."""

    idle_decode = True

    def schedule(self, view: ReplicaView) -> Batch:
        kv = view.kv
        bs = kv.block_size
        running = view.running
        batch = Batch()
        free = _decode_with_preemption(running, kv, kv.free_blocks, batch)
        if batch.preempt:
            return batch
        left = self.budget - len(batch.decode)
        slots = self.max_num_seqs - len(running)
        room = free - kv.watermark_blocks
        for r in view.waiting:
            if slots <= 0:
                break
            n = r.prefill_target - r.cached
            if n > left and (batch.decode or batch.prefill):
                break
            need = (r.prefill_target + bs - 1) // bs - r.blocks
            if need > room:
                break
            room -= need
            left -= n
            slots -= 1
            batch.prefill.append(r)
            batch.prefill_tokens.append(n)
        return batch


SCHEDULERS: Registry[type[Scheduler]] = Registry("scheduler")
SCHEDULERS.register("vllm", VLLMScheduler, aliases=("vllm-v0", "prefill-first", "fcfs"))
SCHEDULERS.register("sarathi", SarathiScheduler, aliases=("chunked", "chunked-prefill", "sarathi-serve", "vllm-v1"))
SCHEDULERS.register("static", StaticScheduler, aliases=("static-batching",))
SCHEDULERS.register("decode-priority", DecodePriorityScheduler, aliases=("orca",))


def idle_decode_cap(scheduler) -> int | None:
    """The S6 cap of ``scheduler``, or None when the class whose ``schedule`` it runs does not itself
    declare ``idle_decode = True`` (a policy inheriting the promise but not the method makes none)."""
    for klass in type(scheduler).__mro__:
        if "schedule" in vars(klass):
            return scheduler.idle_decode_cap if vars(klass).get("idle_decode", False) else None
    return None


def make_scheduler(config: SchedulerConfig) -> Scheduler:
    return SCHEDULERS.get(config.policy)(config)
