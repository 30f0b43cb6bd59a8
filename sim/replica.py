"""One serving replica: a waiting queue, a running set, a KV block manager and the iteration loop.

Each iteration the replica asks its scheduler for a :class:`~llmsim.sim.request.Batch`, applies its
preemptions, allocates KV, asks the cost model for the iteration's time and energy, and schedules
one ``PRIORITY_ITERATION`` event at its end. At the end it advances every request, emits first tokens
and completions, and plans the next iteration in the same callback.

Decode runs. When the batch is decode-only, has no preemption, and the scheduler is
``steady_decode`` (contract S5 in :mod:`llmsim.sim.schedulers`), the next iterations are the same batch with
each context one token longer until a request finishes or the KV cache cannot hold the growth. The
replica then plans up to that many iterations with one cost call (``decode_run`` when the cost model
has it) and one event; an arrival at this replica ends the run at the end of the iteration in flight,
exactly where the per-iteration loop would have consulted the scheduler. End times are accumulated
in the same order as the per-iteration loop, so both give bit-identical results
(``tests/sim/test_replica.py::test_decode_runs_match_per_iteration_loop``).

Preemption. The scheduler names victims; with ``preemption="recompute"`` (vLLM's default for
single-sequence requests) a victim's blocks are freed and it prefills prompt + generated tokens again.
With ``preemption="swap"`` a decoding victim's blocks are copied to host memory (if
``swap_blocks`` has room, else it is recomputed): the iteration takes ``swap_s_per_block`` longer per
block, and the request waits in the *resume* queue. Before each iteration the replica brings resume
requests back FCFS while their blocks fit beside the running requests' growth and the watermark
(swap-in costs the same per block), and, as vLLM v0 does, admits no new prompt while any waits.

Prefix caching (``prefix_caching``, :mod:`llmsim.sim.kv`). Before the scheduler runs, the waiting requests
it can reach get their cache hit as ``cached`` (whole blocks, at most ``prefill_target - 1`` tokens)
and as ``blocks`` the hit blocks already referenced by others, so a scheduler's usual arithmetic
charges only new blocks (plus one per evictable hit) and prefills only the missed tokens. Admitted
requests reference their hits before the iteration allocates; blocks are registered when the
iteration that computed them ends, and a session turn's output blocks when it finishes.

Hand-over (P/D disaggregation). ``submit_decoding`` queues a request whose prefill ran elsewhere and
whose KV has arrived; it joins the resume queue (no swap cost) and decodes from there.

Invariants: R1 every admitted request finishes exactly once (``FINISHED``), or the replica rejects it
at arrival (``REJECTED``) because ``prompt + output`` tokens can never fit beside the watermark.
R2 KV blocks in use, plus evictable cached blocks, never exceed capacity (``BlockManager`` raises);
host blocks never exceed ``swap_blocks``. R3 iterations on one replica never overlap and their end times never decrease.
"""
from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field

import numpy as np

from llmsim.sim.kernel import PRIORITY_ITERATION, Kernel
from llmsim.sim.kv import BlockManager, KVView, block_hashes
from llmsim.sim.request import FINISHED, REJECTED, RUNNING, WAITING, Batch, Request, request_key
from llmsim.sim.schedulers import ReplicaView, SchedulerConfig, idle_decode_cap, make_scheduler
from llmsim.workloads.errors import ConfigError

_EMPTY = np.zeros(0, dtype=np.int64)
_INT64 = np.dtype(np.int64)
#: Per-iteration cost calls planned at once for a decode run when the cost model has no ``decode_run``.
_FALLBACK_RUN = 16
#: Decode-run steps priced when a run is planned; the rest are priced in growing chunks as the run
#: reaches them (an arrival usually cuts a run long before it ends).
_FIRST_CHUNK = 48
#: More tokens than any request has left to generate.
_NO_LIMIT = 1 << 62
#: Most single-prompt prefill prices a replica's ``prices`` table keeps (then it stops adding).
_MAX_PRICES = 1 << 16


def _running_sums(times: np.ndarray, energies: np.ndarray, start_s: float, start_j: float):
    """(end times, energy so far) after each step: ``times`` and ``energies`` summed in step order from
    ``start_s`` and ``start_j``."""
    n = len(times)
    ends = np.empty(n + 1)
    ends[0] = start_s
    ends[1:] = times
    np.add.accumulate(ends, out=ends)
    spent = np.empty(n + 1)
    spent[0] = start_j
    spent[1:] = energies
    np.add.accumulate(spent, out=spent)
    return ends[1:], spent[1:]


@dataclass(frozen=True, kw_only=True)
class ReplicaConfig:
    """One replica's serving settings.

    Give the KV capacity as ``kv_blocks`` (blocks of ``block_size`` tokens) or ``kv_capacity_tokens``
    (rounded down to whole blocks), computed by the caller from the memory left after weights.
    ``watermark_fraction`` of the blocks stays free when admitting (vLLM's default 0.01).
    ``idle_power_w`` is drawn while the replica has nothing to run. ``fuse_decode`` plans runs of
    identical decode iterations with one event (same results; off only to check that claim);
    ``max_fused_steps`` bounds one run. ``preemption`` is ``"recompute"`` or ``"swap"``; swap needs
    ``swap_blocks`` (host memory, in blocks) and ``swap_s_per_block`` (seconds to copy one block
    either way over the host link). ``prefix_caching`` shares full KV blocks of equal token prefixes
    between requests (requests carry identities in ``Request.ident``; see :mod:`llmsim.sim.kv`).
    """

    kv_blocks: int | None = None
    kv_capacity_tokens: int | None = None
    block_size: int = 16
    watermark_fraction: float = 0.01
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    idle_power_w: float = 0.0
    fuse_decode: bool = True
    max_fused_steps: int = 2048
    preemption: str = "recompute"
    swap_blocks: int = 0
    swap_s_per_block: float = 0.0
    prefix_caching: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.block_size, int) and self.block_size >= 1):
            raise ConfigError(f"block_size must be an int >= 1, got {self.block_size!r}")
        if (self.kv_blocks is None) == (self.kv_capacity_tokens is None):
            raise ConfigError("give exactly one of kv_blocks and kv_capacity_tokens, got "
                              f"kv_blocks={self.kv_blocks!r}, kv_capacity_tokens={self.kv_capacity_tokens!r}")
        if self.kv_blocks is not None and not (isinstance(self.kv_blocks, int) and self.kv_blocks >= 1):
            raise ConfigError(f"kv_blocks must be an int >= 1, got {self.kv_blocks!r}")
        if self.kv_capacity_tokens is not None and not (
                isinstance(self.kv_capacity_tokens, int) and self.kv_capacity_tokens >= self.block_size):
            raise ConfigError(f"kv_capacity_tokens must be an int >= block_size ({self.block_size}), "
                              f"got {self.kv_capacity_tokens!r}")
        if not 0.0 <= self.watermark_fraction < 1.0:
            raise ConfigError(f"watermark_fraction must be in [0, 1), got {self.watermark_fraction!r}")
        if not (self.idle_power_w >= 0.0):
            raise ConfigError(f"idle_power_w must be >= 0, got {self.idle_power_w!r}")
        if not isinstance(self.scheduler, SchedulerConfig):
            raise ConfigError(f"scheduler must be a SchedulerConfig, got {type(self.scheduler).__name__}")
        if not (isinstance(self.max_fused_steps, int) and self.max_fused_steps >= 1):
            raise ConfigError(f"max_fused_steps must be an int >= 1, got {self.max_fused_steps!r}")
        if self.preemption not in ("recompute", "swap"):
            raise ConfigError(f"preemption must be 'recompute' or 'swap', got {self.preemption!r}")
        if not (isinstance(self.swap_blocks, int) and self.swap_blocks >= 0):
            raise ConfigError(f"swap_blocks must be an int >= 0, got {self.swap_blocks!r}")
        if not (isinstance(self.swap_s_per_block, (int, float)) and 0.0 <= self.swap_s_per_block < float("inf")):
            raise ConfigError(f"swap_s_per_block must be a finite number >= 0, got {self.swap_s_per_block!r}")
        if not isinstance(self.prefix_caching, bool):
            raise ConfigError(f"prefix_caching must be true or false, got {self.prefix_caching!r}")

    @property
    def num_blocks(self) -> int:
        if self.kv_blocks is not None:
            return self.kv_blocks
        return self.kv_capacity_tokens // self.block_size

    @property
    def watermark_blocks(self) -> int:
        return int(self.watermark_fraction * self.num_blocks)


class Replica:
    """The engine of one replica. Read-only status for routers: ``outstanding``, ``kv_load()``."""

    __slots__ = ("index", "config", "kernel", "scheduler", "cost", "_decode_run", "_decode_into", "_run_left", "kv", "_kv_view",
                 "_waiting", "_running", "_busy", "_kick_pending", "_token", "_on_finish", "_tracer",
                 "_batch", "_run_k", "_run_ends", "_run_energy", "_run_start", "_run_ctx", "_fuse",
                 "_steady", "_max_steps", "_run_seq", "outstanding", "iterations", "preemptions", "energy_j",
                 "busy_s", "finished", "rejected", "_resume", "_swap", "_swap_s", "swap_used",
                 "swapped_out_blocks", "swapped_in_blocks", "_pending_s", "_prefix", "prefill_tokens",
                 "prompt_tokens_admitted", "hit_tokens", "_prices", "_lead", "_lead_held", "_run_decode", "_lead_end", "_lead_energy",
                 "_idle_cap", "_ends_buf", "_spent_buf", "_whole", "_next_plan")

    def __init__(self, index: int, config: ReplicaConfig, cost_model, kernel: Kernel, on_finish,
                 tracer=None, prices: dict | None = None):
        if not hasattr(cost_model, "iteration"):
            raise ConfigError(f"cost model for replica {index} has no iteration() method: {cost_model!r}")
        self.index = index
        self.config = config
        self.kernel = kernel
        self.scheduler = make_scheduler(config.scheduler)
        self.cost = cost_model
        self._decode_run = getattr(cost_model, "decode_run", None)
        #: ``decode_run`` as running sums from given start seconds and joules, written into the run's
        #: buffers ``_ends_buf`` and ``_spent_buf`` (``_run_ends``/``_run_energy`` view their priced
        #: part), where the cost model has it
        self._decode_into = getattr(cost_model, "decode_run_into", None)
        self.kv = BlockManager(num_blocks=config.num_blocks, block_size=config.block_size,
                               watermark_blocks=config.watermark_blocks, prefix_caching=config.prefix_caching)
        self._prefix = config.prefix_caching
        self._kv_view = KVView(self.kv)
        self._waiting: list[Request] = []
        self._running: list[Request] = []
        self._busy = False
        self._kick_pending = False
        self._token = 0
        self._on_finish = on_finish
        self._tracer = tracer
        self._batch: Batch | None = None
        self._run_k = 0
        self._run_ends: np.ndarray | None = None
        self._run_energy: np.ndarray | None = None
        self._run_start = 0.0
        self._run_ctx: np.ndarray | None = None
        self._run_seq = 0
        self._run_left = 0  # the fewest tokens a decode of the current run has left when planned
        self._fuse = config.fuse_decode
        self._steady = bool(getattr(self.scheduler, "steady_decode", False))
        self._max_steps = config.max_fused_steps
        #: S6 of the scheduler (None: no promise), and whether a batch may run on into its decodes
        self._idle_cap = idle_decode_cap(self.scheduler) if self._fuse and self._steady else None
        #: 1 while the planned run starts with a prefill step (``_plan_lead``): then ``_run_ctx`` is
        #: the context at the first decode step, ``_run_decode`` that step's batch and ``_lead_held``
        #: the blocks its requests hold after the prefill step
        self._lead = 0
        self._lead_held = 0
        self._run_decode: list[Request] | None = None
        self._ends_buf = np.empty(self._max_steps if self._decode_into is not None else 0)
        self._spent_buf = np.empty(self._ends_buf.size)
        #: whether the planned run's decodes are every running request (``_plan_idle``, ``_plan_lead``),
        #: and the arguments of ``_plan_idle`` that ``_advance_next`` computed at its end, or None
        self._whole = False
        self._next_plan: tuple | None = None
        self._lead_end = 0.0  # when the prefill step of such a run ends, and the replica's joules then
        self._lead_energy = 0.0
        self.outstanding = 0
        self.iterations = 0
        self.preemptions = 0
        self.energy_j = 0.0
        self.busy_s = 0.0
        self.finished = 0
        self.rejected = 0
        self._resume: list[Request] = []
        self._swap = config.preemption == "swap" and config.swap_blocks > 0
        self._swap_s = float(config.swap_s_per_block)
        self.swap_used = 0
        self.swapped_out_blocks = 0
        self.swapped_in_blocks = 0
        self._pending_s = 0.0
        #: Prompt tokens computed by prefill chunks; prefill targets of admitted requests; of those,
        #: the tokens found in the prefix cache.
        self.prefill_tokens = 0
        self.prompt_tokens_admitted = 0
        self.hit_tokens = 0
        #: (new tokens, cached tokens) -> the cost model's (seconds, joules) of an iteration that prefills
        #: one prompt chunk and decodes nothing; the cost model is deterministic (its protocol), so a
        #: remembered price is the one a new call returns. Replicas sharing a cost model may share it.
        self._prices = {} if prices is None else prices

    # ------------------------------------------------------------------ status for routers and tests
    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_resuming(self) -> int:
        """Requests whose KV waits in host memory or arrived from a prefill replica."""
        return len(self._resume)

    def used_blocks(self) -> int:
        """KV blocks in use now, including the growth of decode-run iterations already completed."""
        used = self.kv.num_blocks - self.kv.free_blocks
        if self._busy and self._run_k > 1:
            now = self.kernel.now
            if self._lead:
                # the decodes' blocks are taken when their step is planned, the first at the prefill's end
                if now > self._lead_end:
                    done = int(np.searchsorted(self._run_ends, now, "left"))  # decode steps completed
                    bs = self.kv.block_size
                    used += int(((self._run_ctx + (done + bs)) // bs).sum()) - self._lead_held
                return used
            done = int(np.searchsorted(self._run_ends, now, "left"))
            if done > 0:
                ctx = self._run_ctx
                bs = self.kv.block_size
                used += int(((ctx + (done + bs)) // bs).sum()) - int(((ctx + bs) // bs).sum())
        return used

    def kv_load(self) -> float:
        """(Blocks in use + blocks the waiting prompts need) / capacity."""
        bs = self.kv.block_size
        queued = 0
        for r in self._waiting:
            queued += (r.prefill_target + bs - 1) // bs
        for r in self._resume:
            queued += (r.cached + bs) // bs
        return (self.used_blocks() + queued) / self.kv.num_blocks

    def admissible(self, r: Request) -> bool:
        """Whether ``r`` can ever run here (its whole ``prompt + output`` fits beside the watermark)."""
        kv = self.kv
        return kv.blocks_for(r.prompt_tokens + r.output_tokens) <= kv.num_blocks - kv.watermark_blocks

    # ------------------------------------------------------------------ arrivals
    def submit(self, r: Request) -> bool:
        """Queue ``r`` now; ``False`` (and ``r.state = REJECTED``) when it can never fit."""
        if not self._admit(r):
            return False
        insort(self._waiting, r, key=request_key)
        self._wake()
        return True

    def submit_decoding(self, r: Request) -> bool:
        """Queue ``r`` whose prefill ran on another replica and whose KV is here now (``r.cached``
        tokens, ``r.generated >= 1``); ``False`` (``REJECTED``) when it can never fit."""
        if not self._admit(r):
            return False
        r.blocks = 0
        r.swapped = 0
        r.held = ()
        r.reg = 0
        insort(self._resume, r, key=request_key)
        self._wake()
        return True

    def _admit(self, r: Request) -> bool:
        """Assign ``r`` to this replica as WAITING, or count it REJECTED when it can never fit."""
        r.replica = self.index
        if not self.admissible(r):
            r.state = REJECTED
            self.rejected += 1
            return False
        r.state = WAITING
        self.outstanding += 1
        return True

    def _wake(self) -> None:
        """After a new request: start iterating if idle, else cut a planned decode run short."""
        if not self._busy:
            if not self._kick_pending:
                self._kick_pending = True
                self.kernel.schedule(self.kernel.now, PRIORITY_ITERATION, self._kick, None)
        elif self._run_k > 1:
            self._truncate()

    def _bring_back(self) -> None:
        """Move resume requests into ``running`` FCFS while their blocks fit (see the module doc)."""
        kv = self.kv
        bs = kv.block_size
        running = self._running
        room = kv.free_blocks - kv.watermark_blocks
        for r in running:
            if r.cached >= r.prefill_target:
                room -= (r.cached + bs) // bs - r.blocks
        slots = self.config.scheduler.max_num_seqs - len(running)
        resume = self._resume
        moved = 0
        for r in resume:
            need = (r.cached + bs) // bs  # its blocks and the next token's
            if slots <= 0 or need > room:
                break
            room -= need
            slots -= 1
            moved += 1
            have = (r.cached + bs - 1) // bs
            kv.allocate(have)
            r.blocks = have
            if r.swapped:
                self.swap_used -= r.swapped
                self.swapped_in_blocks += r.swapped
                self._pending_s += r.swapped * self._swap_s
                r.swapped = 0
            r.state = RUNNING
            if r.first_scheduled_s < 0.0:
                r.first_scheduled_s = self.kernel.now
            insort(running, r, key=request_key)
        if moved:
            del resume[:moved]

    def _kick(self, _arg) -> None:
        self._kick_pending = False
        if not self._busy:
            self._plan()

    def _truncate(self) -> None:
        """End the current decode run at the end of the iteration in flight."""
        ends = self._run_ends
        now = self.kernel.now
        if self._lead:
            if now <= self._lead_end:
                j, end = 0, self._lead_end
            else:
                j = int(ends.searchsorted(now))
                end = float(ends[j])
                j += 1
        else:
            j = int(ends.searchsorted(now))
            end = float(ends[j]) if j + 1 < self._run_k else 0.0
        if j + 1 < self._run_k:
            self._run_k = j + 1
            self._token += 1
            self.kernel.schedule(end, PRIORITY_ITERATION, self._on_end, self._token)

    # ------------------------------------------------------------------ the iteration loop
    def _plan(self) -> None:
        kernel = self.kernel
        now = kernel.now
        kv = self.kv
        bs = kv.block_size
        waiting = self._waiting
        running = self._running
        if self._resume:
            self._bring_back()
        after = self._next_plan  # what the run that just ended computed for this plan, if anything
        if after is not None:
            self._next_plan = None
        if (not waiting and self._idle_cap is not None and not self._resume and not self._pending_s
                and 0 < len(running) <= self._idle_cap):
            # S6: with nothing waiting the scheduler decodes every running request when their next
            # tokens' blocks fit; plan that batch without asking it
            if after is not None and len(after[0]) == len(running):
                cached, left, growing, grow = after  # computed by _advance_next's pass
                if grow <= kv.free_blocks:
                    return self._plan_idle(cached, left, now, growing)
            else:  # the same rule as _advance_next's survivors (kept in step by tests/sim/test_replica.py)
                grow = 0
                left = _NO_LIMIT  # the fewest tokens any decode has left to generate
                cached = []
                append = cached.append
                growing = None  # (request, blocks) of the decodes whose next token needs blocks
                for r in running:
                    c = r.cached
                    if c < r.prefill_target:
                        break
                    append(c)
                    g = (c + bs) // bs - r.blocks
                    if g:
                        grow += g
                        if g > 0:
                            if growing is None:
                                growing = [(r, g)]
                            else:
                                growing.append((r, g))
                    d = r.output_tokens - r.generated
                    if d < left:
                        left = d
                else:
                    if grow <= kv.free_blocks:
                        return self._plan_idle(cached, left, now, growing)
        # vLLM v0 admits no new prompt while requests wait to come back from host memory
        visible = () if self._resume else tuple(waiting)
        if self._prefix and visible:
            self._lookup(visible, len(running))
        batch = self.scheduler.schedule(ReplicaView(now, visible, tuple(running), self._kv_view))
        preempt = batch.preempt
        if preempt:
            for v in preempt:
                running.remove(v)
                if self._prefix:
                    self._release(v)
                    v.reg = 0
                else:
                    kv.free(v.blocks)
                v.preemptions += 1
                v.state = WAITING
                if (self._swap and v.cached >= v.prefill_target
                        and self.swap_used + v.blocks <= self.config.swap_blocks):
                    self.swap_used += v.blocks
                    self.swapped_out_blocks += v.blocks
                    self._pending_s += v.blocks * self._swap_s
                    v.swapped = v.blocks
                    v.blocks = 0
                    insort(self._resume, v, key=request_key)
                else:
                    v.blocks = 0
                    v.cached = 0
                    v.prefill_target = v.prompt_tokens + v.generated
                    insort(waiting, v, key=request_key)
            self.preemptions += len(preempt)
        if not batch:
            if waiting or running or self._resume:
                if preempt:
                    return self._plan()
                raise RuntimeError(f"scheduler {type(self.scheduler).__name__} returned an empty batch with "
                                   f"{len(waiting)} waiting and {len(running)} running on replica {self.index}")
            self._busy = False
            self._batch = None
            return
        prefill = batch.prefill
        price = None
        if prefill:
            lens = batch.prefill_tokens
            offsets = []
            if self._prefix:
                self._take_hits(prefill)
            for r, n in zip(prefill, lens):
                if r.state == WAITING:
                    self.prompt_tokens_admitted += r.prefill_target
                    self.hit_tokens += r.cached
                    waiting.remove(r)
                    insort(running, r, key=request_key)
                    r.state = RUNNING
                    if r.first_scheduled_s < 0.0:
                        r.first_scheduled_s = now
                offsets.append(r.cached)
                need = (r.cached + n + bs - 1) // bs - r.blocks
                if need > 0:
                    kv.allocate(need)
                    r.blocks += need
            self.prefill_tokens += sum(lens)
            if len(lens) == 1 and not batch.decode:
                key = (lens[0], offsets[0])
                price = self._prices.get(key)
                if price is None:
                    price = self.cost.iteration(np.array(lens, dtype=np.int64), np.array(offsets, dtype=np.int64),
                                                _EMPTY)
                    if len(self._prices) < _MAX_PRICES:
                        self._prices[key] = price
            else:
                p_lens = np.array(lens, dtype=np.int64)
                p_offs = np.array(offsets, dtype=np.int64)
        decode = batch.decode
        grow = 0
        if decode:
            cached = []
            append = cached.append
            left = _NO_LIMIT  # the fewest tokens any decode has left to generate
            for r in decode:
                c = r.cached
                append(c)
                need = (c + bs) // bs - r.blocks
                if need > 0:
                    grow += need
                    r.blocks += need
                d = r.output_tokens - r.generated
                if d < left:
                    left = d
            ctx = np.fromiter(cached, _INT64, len(cached))
        else:
            ctx = _EMPTY
        if grow:
            kv.allocate(grow)
        self._batch = batch
        self._busy = True
        self._run_start = now
        self._token += 1
        self._lead = 0
        self._whole = False
        extra = self._pending_s
        if extra:
            self._pending_s = 0.0
        if not prefill and self._fuse and self._steady and not preempt and not extra:
            k = self._max_steps
            if decode and left < k:
                k = left
            if k > 1:
                self._run_left = left
                self._plan_run(ctx, k, now)
                return
        if price is not None:
            t, e = price
        elif prefill:
            t, e = self.cost.iteration(p_lens, p_offs, ctx)
        else:
            t, e = self.cost.iteration(_EMPTY, _EMPTY, ctx)
        self._run_k = 1
        if extra:  # host-link copies of swapped KV: the devices wait at idle power
            end = now + t + extra
            e += self.config.idle_power_w * extra
        else:
            end = now + t
            if (prefill and self._idle_cap is not None and not preempt and not waiting and not self._resume
                    and self._decode_run is not None and self._plan_lead(batch, end, e)):
                return
        self._run_ends = None
        self._run_energy = e
        kernel.schedule(end, PRIORITY_ITERATION, self._on_end, self._token)

    def _plan_idle(self, cached: list[int], left: int, now: float, growing: list | None) -> None:
        """``_plan`` of the batch S6 gives: decode every running request (contexts ``cached``, the
        fewest tokens any has left ``left``, ``growing`` the (request, blocks) whose next token needs
        blocks), no prefill, no preemption, no host copies pending."""
        running = self._running
        if growing is not None:
            grow = 0
            for r, g in growing:
                grow += g
                r.blocks += g
            self.kv.allocate(grow)
        ctx = np.fromiter(cached, _INT64, len(cached))
        self._batch = Batch(decode=running.copy())
        self._busy = True
        self._run_start = now
        self._token += 1
        self._lead = 0
        self._whole = True
        k = self._max_steps
        if left < k:
            k = left
        if k > 1:
            self._run_left = left
            self._plan_run(ctx, k, now)
            return
        t, e = self.cost.iteration(_EMPTY, _EMPTY, ctx)
        self._run_k = 1
        self._run_ends = None
        self._run_energy = e
        self.kernel.schedule(now + t, PRIORITY_ITERATION, self._on_end, self._token)

    def _plan_lead(self, batch: Batch, end: float, energy: float) -> bool:
        """Plan the prefill step ``batch`` (ending at ``end``, costing ``energy`` joules) and the decode
        run that follows it as one run, when the per-iteration loop would plan exactly that run at
        ``end``: every prefill chunk completes its prompt, no request finishes in the step, every
        running request decodes after it, and, nothing waiting, the scheduler then decodes them all
        (S6: within ``idle_decode_cap`` and the next tokens' blocks fit). Step 0 of the run is the
        prefill step; the decode steps' prices, the blocks they take and the run's length are those
        the loop would compute at ``end``. The step decodes every decoding request or none of them
        (vLLM v0 runs prefills alone: then the others wait the step out and decode from the next).
        False (nothing planned) when the conditions do not hold."""
        running = self._running
        n = len(running)
        n_p = len(batch.prefill)
        stepped = len(batch.decode)  # decodes in the step: all decoding requests or none
        if n > self._idle_cap or (stepped and n_p + stepped != n):
            return False
        left = _NO_LIMIT  # tokens the decodes have left after the prefill step
        for r, m in zip(batch.prefill, batch.prefill_tokens):
            d = r.output_tokens - r.generated - 1
            if r.cached + m < r.prefill_target or d < 1:
                return False
            if d < left:
                left = d
        kv = self.kv
        bs = kv.block_size
        free = kv.free_blocks
        held = 0
        first = 0  # blocks the first decode step's requests hold then
        cached = []
        append = cached.append
        step = 1 if stepped else 0
        prefilling = 0
        for r in running:
            c = r.cached
            if c < r.prefill_target:
                c = r.prefill_target
                prefilling += 1
            else:  # a decode (in the step when ``step``): it must have a token left after it
                c += step
                d = r.output_tokens - r.generated - step
                if d < left:
                    if d < step:
                        return False
                    left = d
            append(c)
            held += r.blocks
            first += (c + bs) // bs
        if prefilling != n_p:  # a prompt left without a chunk this step
            return False
        # blocks the decode steps 1..k take beyond those held after the prefill step: the first must
        # fit (else the scheduler preempts at ``end``), then as many steps as fit, as _plan_run counts
        if first - held > free:
            return False
        k = self._max_steps
        if left < k:
            k = left
        if k > 1 and n * ((k - 1) // bs + 1) > free - (first - held):
            bound = lambda steps: sum((c + steps + bs - 1) // bs for c in cached) - held  # noqa: E731
            if bound(k) > free:
                lo, hi = 1, k  # lo fits, hi does not
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if bound(mid) > free:
                        hi = mid
                    else:
                        lo = mid
                k = lo
        ctx = np.fromiter(cached, _INT64, len(cached))
        start_j = self.energy_j + energy  # the replica's energy after the prefill step
        have = k if k <= _FIRST_CHUNK else _FIRST_CHUNK
        if self._decode_into is not None:
            self._decode_into(ctx, have, end, start_j, self._ends_buf, self._spent_buf, 0, 0)
            ends, spent = self._ends_buf[:have], self._spent_buf[:have]
        else:
            times, energies = self._decode_run(ctx, have)
            ends, spent = _running_sums(times, energies, end, start_j)
        self._lead_end = end
        self._lead_energy = start_j
        self._run_ends = ends
        self._run_energy = spent
        self._run_ctx = ctx
        self._run_k = k + 1
        self._run_left = left
        self._run_decode = list(running)
        self._lead = 1
        self._whole = True
        self._lead_held = held
        if have == k:
            self.kernel.schedule(float(ends[k - 1]), PRIORITY_ITERATION, self._on_end, self._token)
        else:
            self._run_seq = self.kernel.reserve()
            self.kernel.schedule(float(ends[have - 1]), PRIORITY_ITERATION, self._on_chunk, self._token)
        return True

    def _plan_run(self, ctx: np.ndarray, k: int, now: float) -> None:
        """Plan up to ``k`` decode iterations of the current batch (step 1 is already allocated)."""
        kv = self.kv
        bs = kv.block_size
        free = kv.free_blocks
        # a decode grows by at most (k - 1) // bs + 1 blocks over steps 2..k: count exactly only when
        # that bound does not fit
        if ctx.size * ((k - 1) // bs + 1) > free and (
                int(((ctx + (k + bs - 1)) // bs).sum()) - int(((ctx + bs) // bs).sum()) > free):
            held = int(((ctx + bs) // bs).sum())
            lo, hi = 1, k  # lo fits, hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if int(((ctx + (mid + bs - 1)) // bs).sum()) - held > free:
                    hi = mid
                else:
                    lo = mid
            k = lo
        if k > 1:
            if self._decode_into is not None:
                have = k if k <= _FIRST_CHUNK else _FIRST_CHUNK
                self._decode_into(ctx, have, now, self.energy_j, self._ends_buf, self._spent_buf, 0, 0)
                ends, spent = self._ends_buf[:have], self._spent_buf[:have]
            else:
                if self._decode_run is not None:
                    have = k if k <= _FIRST_CHUNK else _FIRST_CHUNK
                    times, energies = self._decode_run(ctx, have)
                else:
                    k = have = min(k, _FALLBACK_RUN)
                    iteration = self.cost.iteration
                    pairs = [iteration(_EMPTY, _EMPTY, ctx + j) for j in range(k)]
                    times = np.array([p[0] for p in pairs])
                    energies = np.array([p[1] for p in pairs])
                ends, spent = _running_sums(times, energies, now, self.energy_j)
            # end times and the replica's energy after each step, summed in step order as the
            # per-iteration loop does, so both agree to the bit
            self._run_ends = ends
            self._run_energy = spent
            self._run_ctx = ctx
            self._run_k = k
            if have == k:
                self.kernel.schedule(float(ends[k - 1]), PRIORITY_ITERATION, self._on_end, self._token)
            else:
                # the run's end keeps the place among same-time events it has when priced at once
                self._run_seq = self.kernel.reserve()
                self.kernel.schedule(float(ends[have - 1]), PRIORITY_ITERATION, self._on_chunk, self._token)
        else:
            t, e = self.cost.iteration(_EMPTY, _EMPTY, ctx)
            self._run_k = 1
            self._run_ends = None
            self._run_energy = e
            self.kernel.schedule(now + t, PRIORITY_ITERATION, self._on_end, self._token)

    def _on_chunk(self, token: int) -> None:
        """The end of a decode run's priced steps while more are planned: price the next ones.

        Step ``j`` of a run costs ``decode_run(ctx + j, .)[0]`` exactly (the cost contract), and end
        times and energies continue the same running sums, so pricing a run in chunks gives the
        same bits as pricing it at once; steps after an arrival cut the run short are never priced."""
        if token != self._token:
            return
        ends = self._run_ends
        have = len(ends)
        steps = self._run_k - self._lead  # decode steps of the run
        more = steps - have
        if more > 3 * have:
            more = 3 * have  # chunks grow fourfold: few events for long runs, little waste for cut ones
        spent = self._run_energy
        if self._decode_into is not None:
            buf = self._ends_buf
            self._decode_into(self._run_ctx, more, float(ends[have - 1]), float(spent[have - 1]), buf,
                              self._spent_buf, have, have)
            have += more
            grown = self._run_ends = buf[:have]
            self._run_energy = self._spent_buf[:have]
        else:
            times, energies = self._decode_run(self._run_ctx + have, more)
            t, e = _running_sums(times, energies, ends[have - 1], spent[have - 1])
            grown = np.concatenate((ends, t))
            self._run_ends = grown
            self._run_energy = np.concatenate((spent, e))
            have += more
        if have == steps:
            self.kernel.schedule_reserved(float(grown[have - 1]), PRIORITY_ITERATION, self._run_seq, self._on_end,
                                          token)
        else:
            self.kernel.schedule(float(grown[have - 1]), PRIORITY_ITERATION, self._on_chunk, token)

    def _on_end(self, token: int) -> None:
        if token != self._token:
            return  # a decode run that an arrival cut short
        now = self.kernel.now
        k = self._run_k
        if self._lead:
            return self._end_lead(k, now)
        batch = self._batch
        if self._run_ends is None:
            self.energy_j += self._run_energy
        else:
            self.energy_j = float(self._run_energy[k - 1])  # summed in step order when planned
        self.busy_s += now - self._run_start
        self.iterations += k
        if self._tracer is not None:
            self._trace(batch, k, now)
        finished = None
        if batch.prefill:
            prefix = self._prefix
            for r, n in zip(batch.prefill, batch.prefill_tokens):
                c = r.cached + n
                r.cached = c
                if prefix and r.hashes:
                    self._register(r, c)
                if c >= r.prefill_target:
                    r.generated += 1
                    if r.first_token_s < 0.0:
                        r.first_token_s = now
                    if r.generated >= r.output_tokens:
                        if finished is None:
                            finished = [r]
                        else:
                            finished.append(r)
        if k == 1:
            for r in batch.decode:
                r.cached += 1
                g = r.generated + 1
                r.generated = g
                if g >= r.output_tokens:
                    if finished is None:
                        finished = [r]
                    else:
                        finished.append(r)
        elif self._whole and self._idle_cap is not None and not self._waiting and not self._resume \
                and not self._pending_s:  # a decode run of every running request, S6 next
            finished = self._advance_next(batch.decode, k)
        else:  # a decode run (no prefill in it)
            finished = self._advance(batch.decode, k)
        if finished is not None:
            self._finish(finished, now)
        self._plan()

    def _advance(self, decode: list[Request], steps: int) -> list[Request] | None:
        """Advance the requests of a decode run by its ``steps`` completed steps (contexts, tokens,
        the blocks those steps took past the first, allocated now); the finished ones in order, or
        None. A run cut before ``_run_left`` steps finishes nobody."""
        bs = self.kv.block_size
        grow = 0
        finished = None
        if steps < self._run_left:
            for r in decode:
                c = r.cached + steps
                r.cached = c
                need = (c + bs - 1) // bs - r.blocks
                if need > 0:
                    grow += need
                    r.blocks += need
                r.generated += steps
        else:
            for r in decode:
                c = r.cached + steps
                r.cached = c
                need = (c + bs - 1) // bs - r.blocks
                if need > 0:
                    grow += need
                    r.blocks += need
                g = r.generated + steps
                r.generated = g
                if g >= r.output_tokens:
                    if finished is None:
                        finished = [r]
                    else:
                        finished.append(r)
        if grow:
            self.kv.allocate(grow)
        return finished

    def _advance_next(self, decode: list[Request], steps: int) -> list[Request] | None:
        """``_advance`` of a run whose decodes are every running request, when nothing waits, resumes
        or copies: in the same pass, the arguments ``_plan`` computes for S6's next batch from the
        requests that do not finish (contexts, the fewest tokens left, the blocks their next tokens
        need and their sum), kept in ``_next_plan`` for it: one pass over the batch instead of two,
        the same values."""
        bs = self.kv.block_size
        grow = 0
        finished = None
        cached = []
        append = cached.append
        left = _NO_LIMIT
        growing = None
        grow_next = 0
        for r in decode:
            c = r.cached + steps
            r.cached = c
            b = r.blocks
            need = (c + bs - 1) // bs - b
            if need > 0:
                grow += need
                b += need
                r.blocks = b
            g = r.generated + steps
            r.generated = g
            d = r.output_tokens - g
            if d <= 0:
                if finished is None:
                    finished = [r]
                else:
                    finished.append(r)
            else:
                append(c)
                n = (c + bs) // bs - b
                if n:
                    grow_next += n
                    if n > 0:
                        if growing is None:
                            growing = [(r, n)]
                        else:
                            growing.append((r, n))
                if d < left:
                    left = d
        if grow:
            self.kv.allocate(grow)
        self._next_plan = (cached, left, growing, grow_next)
        return finished

    def _end_lead(self, k: int, now: float) -> None:
        """The end of a run planned by ``_plan_lead`` after ``k`` steps: the prefill step, then
        ``k - 1`` decode steps, each accounted as the per-iteration loop accounts it."""
        batch = self._batch
        self._lead = 0
        end = self._lead_end
        self.energy_j = self._lead_energy if k == 1 else float(self._run_energy[k - 2])
        self.busy_s += end - self._run_start
        self.iterations += 1
        tracer = self._tracer
        if tracer is not None:
            tracer.iteration(self.index, self._run_start, end, int(sum(batch.prefill_tokens)), len(batch.decode))
        prefix = self._prefix
        for r, m in zip(batch.prefill, batch.prefill_tokens):  # each completes its prompt (planned so)
            c = r.cached + m
            r.cached = c
            if prefix and r.hashes:
                self._register(r, c)
            r.generated += 1
            if r.first_token_s < 0.0:
                r.first_token_s = end
        for r in batch.decode:
            r.cached += 1
            r.generated += 1
        if k > 1:
            steps = k - 1
            decode = self._run_decode
            self.busy_s += now - end
            self.iterations += steps
            if tracer is not None:
                if steps == 1:
                    tracer.iteration(self.index, end, now, 0, len(decode))
                else:
                    self._trace_run(end, self._run_ends[:steps], len(decode))
            if self._idle_cap is not None and not self._waiting and not self._resume and not self._pending_s:
                finished = self._advance_next(decode, steps)
            else:
                finished = self._advance(decode, steps)
            if finished is not None:
                self._finish(finished, now)
        self._run_decode = None
        self._plan()

    def _finish(self, finished: list[Request], now: float) -> None:
        """Retire ``finished`` (in order) at ``now``: free or release their blocks, report them."""
        running = self._running
        kv = self.kv
        on_finish = self._on_finish
        prefix = self._prefix
        for r in finished:
            running.remove(r)
            if prefix:
                if r.hashes:
                    self._register(r, r.cached)  # a session's output blocks, for its next turn
                self._release(r)
            else:
                kv.free(r.blocks)
            r.blocks = 0
            r.state = FINISHED
            r.finish_s = now
            self.outstanding -= 1
            self.finished += 1
            on_finish(r)

    # ------------------------------------------------------------------ prefix cache
    def _lookup(self, waiting, n_running: int) -> None:
        """Set ``cached`` of the waiting requests a scheduler may reach this iteration to their prefix
        hit (whole blocks, capped so one prompt token is computed, as vLLM does) and ``blocks`` to the
        hit blocks other requests reference (taking those costs no free block; an evictable hit
        costs one). Schedulers stop before the rest (out of slots or token budget), left at 0."""
        kv = self.kv
        bs = kv.block_size
        slots = self.config.scheduler.max_num_seqs - n_running
        budget = self.config.scheduler.max_num_batched_tokens
        tokens = 0
        for r in waiting:
            if slots <= 0 or tokens >= budget:
                break
            slots -= 1
            h = r.hashes
            if h is None and r.ident is not None:
                ids, bt, ntok = r.ident
                h = r.hashes = block_hashes(ids, bt, ntok, bs)
            if h:
                hit, evictable = kv.lookup(h, (r.prefill_target - 1) // bs)
                r.cached = hit * bs
                r.blocks = hit - evictable
            tokens += r.prefill_target - r.cached

    def _take_hits(self, prefill) -> None:
        """Reference the hit blocks of newly admitted requests before any block is allocated this
        iteration (so the allocations cannot evict them)."""
        kv = self.kv
        bs = kv.block_size
        for r in prefill:
            if r.state == WAITING:
                hit = r.cached // bs
                if hit:
                    held = r.hashes[:hit]
                    kv.touch(held)
                    r.held = held
                else:
                    r.held = []
                r.blocks = hit
                r.reg = hit

    def _register(self, r: Request, tokens: int) -> None:
        """Offer ``r``'s computed full blocks among its first ``tokens`` tokens to the prefix cache."""
        h = r.hashes
        end = tokens // self.kv.block_size
        if end > len(h):
            end = len(h)
        j = r.reg
        if j < end:
            new = self.kv.register(h[j:end])
            if new:
                held = r.held
                if isinstance(held, list):
                    held.extend(new)
                else:
                    r.held = list(held) + new
            r.reg = end

    def _release(self, r: Request) -> None:
        """Drop ``r``'s blocks: cached ones become evictable at refcount 0, private ones free."""
        held = r.held
        if held:
            self.kv.release(held, r.blocks - len(held))
            r.held = ()
        else:
            self.kv.free(r.blocks)

    def _trace(self, batch: Batch, k: int, now: float) -> None:
        n_prefill = int(sum(batch.prefill_tokens))
        n_decode = len(batch.decode)
        if k == 1:
            self._tracer.iteration(self.index, self._run_start, now, n_prefill, n_decode)
        else:
            self._trace_run(self._run_start, self._run_ends[:k], n_decode)

    def _trace_run(self, start: float, ends: np.ndarray, n_decode: int) -> None:
        """Trace the decode steps ending at ``ends``, the first starting at ``start``."""
        starts = np.empty(ends.size)
        starts[0] = start
        starts[1:] = ends[:-1]
        self._tracer.decode_run(self.index, starts, ends, n_decode)
