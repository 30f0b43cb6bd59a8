"""Paged KV cache accounting for one replica, with optional automatic prefix caching.

The cache holds ``num_blocks`` blocks of ``block_size`` tokens. A request holds
``ceil(tokens_in_cache / block_size)`` blocks, allocated as it grows and all released when it finishes
or is preempted. Only counts are tracked for blocks without an identity: which physical block a
request holds never changes a timing. A watermark of ``watermark_blocks`` is kept free when
*admitting* a request (vLLM's ``watermark``), so running requests have room to grow before
preemption starts.

Prefix caching (``prefix_caching=True``), after vLLM V1's KV cache manager
(``vllm/v1/core/kv_cache_manager.py``, ``block_pool.py``, ``kv_cache_utils.py``): a full block whose
tokens have an identity (an int hash chained on the block before it, see :func:`block_hashes`) is
*registered* once its KV is computed; requests that later find its hash reference it (refcount + 1)
instead of computing it again. A registered block whose refcount drops to 0 stays resident as
*evictable*, in LRU order (a request's blocks are released last-block-first, as vLLM's ``free``
does, so the tail of a prompt is evicted before its head). ``allocate`` takes never-registered free
blocks first and then evicts the least recently released evictable blocks (vLLM instead pops the
head of one free queue that mixes both kinds; with free blocks to spare the two agree on what stays
cached). ``free_blocks`` counts both kinds (what a scheduler may allocate).

Invariants: KV1 ``0 <= used_blocks <= num_blocks`` (``allocate`` raises otherwise); KV2 resident
blocks (``used_blocks`` + ``evictable_blocks``) never exceed ``num_blocks``
(``tests/sim/test_prefix_caching.py``).
"""
from __future__ import annotations

from collections import deque

import numpy as np

_MASK = (1 << 64) - 1


class KVCapacityError(RuntimeError):
    """A scheduler asked for more blocks than are free: a scheduler bug, never a user error."""


def _mix(h: int, x: int) -> int:
    """64-bit chain step (splitmix64 finaliser of ``h * K + x``); deterministic across runs."""
    z = (h * 0x9E3779B97F4A7C15 + (x & _MASK) + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def block_hashes(ids, block_tokens: int, tokens: int, block_size: int) -> list[int]:
    """Identities of the full ``block_size``-token blocks among the first ``tokens`` tokens.

    ``ids[k]`` names tokens ``[k * block_tokens, (k + 1) * block_tokens)`` (a trace's coarse blocks,
    e.g. Mooncake's 512-token ``hash_ids``); equal id prefixes mean equal token prefixes. Block ``j``
    (tokens ``[j * block_size, (j + 1) * block_size)``) is identified by the chain hash of ``ids`` up to
    the coarse block holding its last token and by its end offset, so equal identities mean equal
    token prefixes at any ``block_size`` (vLLM chains each block's hash on its parent's the same way).
    """
    n = min(tokens, len(ids) * block_tokens) // block_size
    if n <= 0:
        return []
    last = ((n * block_size) - 1) // block_tokens
    chain = np.empty(last + 1, dtype=np.uint64)
    h = 0x5EED
    for k in range(last + 1):
        h = _mix(h, int(ids[k]))
        chain[k] = h
    ends = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(block_size))
    z = chain[(ends - np.uint64(1)) // np.uint64(block_tokens)] * np.uint64(0xD6E8FEB86659FD93) + ends
    z ^= z >> np.uint64(32)
    z *= np.uint64(0xD6E8FEB86659FD93)
    z ^= z >> np.uint64(32)
    return z.tolist()


class BlockManager:
    """Block counts of one replica's KV cache, and its prefix cache when ``prefix_caching``."""

    __slots__ = ("block_size", "num_blocks", "watermark_blocks", "free_blocks", "peak_used_blocks",
                 "prefix_caching", "_ref", "_lru", "_queue", "_seq", "evictions", "peak_resident_blocks")

    def __init__(self, *, num_blocks: int, block_size: int, watermark_blocks: int = 0,
                 prefix_caching: bool = False):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}")
        if not 0 <= watermark_blocks < num_blocks:
            raise ValueError(f"watermark_blocks must be in [0, num_blocks), got {watermark_blocks!r}")
        self.block_size = int(block_size)
        self.num_blocks = int(num_blocks)
        self.watermark_blocks = int(watermark_blocks)
        #: Blocks a request may take: never-registered free blocks plus evictable cached ones.
        self.free_blocks = self.num_blocks
        self.peak_used_blocks = 0
        self.prefix_caching = bool(prefix_caching)
        #: hash -> refcount of every resident registered block (0 = evictable).
        self._ref: dict[int, int] = {}
        #: Evictable registered blocks -> release number; insertion order is LRU order (a touch
        #: deletes the key, a release inserts it at the end).
        self._lru: dict[int, int] = {}
        #: (hash, release number) in release order; entries no longer in ``_lru`` are skipped.
        self._queue: deque = deque()
        self._seq = 0
        self.evictions = 0
        self.peak_resident_blocks = 0

    @property
    def used_blocks(self) -> int:
        """Blocks referenced by requests (a shared block counts once)."""
        return self.num_blocks - self.free_blocks

    @property
    def evictable_blocks(self) -> int:
        """Cached blocks no request references, kept resident until allocation evicts them."""
        return len(self._lru)

    @property
    def resident_blocks(self) -> int:
        """Blocks holding KV: referenced plus evictable (never above ``num_blocks``)."""
        return self.num_blocks - self.free_blocks + len(self._lru)

    @property
    def cached_blocks(self) -> int:
        """Registered blocks resident now (referenced or evictable)."""
        return len(self._ref)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` tokens."""
        return -(-tokens // self.block_size)

    def can_allocate(self, blocks: int, *, admit: bool = False) -> bool:
        """Whether ``blocks`` more blocks fit; ``admit`` keeps the watermark free (for new requests)."""
        return blocks <= self.free_blocks - (self.watermark_blocks if admit else 0)

    def allocate(self, blocks: int) -> None:
        """Take ``blocks`` private blocks: free ones first, then the LRU evictable cached ones."""
        if blocks > self.free_blocks or blocks < 0:
            raise KVCapacityError(f"allocate {blocks} blocks with {self.free_blocks} free of {self.num_blocks}")
        lru = self._lru
        if lru:
            evict = blocks - (self.free_blocks - len(lru))
            if evict > 0:
                ref = self._ref
                pop = self._queue.popleft
                got = 0
                while got < evict:
                    h, seq = pop()
                    if lru.get(h) == seq:
                        del lru[h]
                        del ref[h]
                        got += 1
                self.evictions += evict
        self.free_blocks -= blocks
        used = self.num_blocks - self.free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
        resident = used + len(lru)
        if resident > self.peak_resident_blocks:
            self.peak_resident_blocks = resident

    def free(self, blocks: int) -> None:
        """Return ``blocks`` private blocks (never registered) to the free pool."""
        if blocks < 0 or self.free_blocks + blocks > self.num_blocks:
            raise KVCapacityError(f"free {blocks} blocks with {self.free_blocks} free of {self.num_blocks}")
        self.free_blocks += blocks

    # ------------------------------------------------------------------ prefix cache
    def lookup(self, hashes: list[int], limit: int) -> tuple[int, int]:
        """``(hit, evictable)``: the longest run of ``hashes[:limit]`` resident from the start, and how
        many of those are evictable (referencing them takes that many blocks from ``free_blocks``)."""
        ref = self._ref
        n = min(limit, len(hashes))
        hit = evictable = 0
        while hit < n:
            c = ref.get(hashes[hit])
            if c is None:
                break
            if c == 0:
                evictable += 1
            hit += 1
        return hit, evictable

    def touch(self, hashes) -> None:
        """Reference resident cached blocks ``hashes`` (a hit): an evictable one leaves the LRU."""
        ref = self._ref
        lru = self._lru
        for h in hashes:
            c = ref[h]
            if c == 0:
                del lru[h]
                self.free_blocks -= 1
            ref[h] = c + 1
        used = self.num_blocks - self.free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def register(self, hashes) -> list[int]:
        """Give the caller's computed private blocks identities ``hashes``; returns those registered
        (referenced once, by the caller). A block whose identity is already resident stays private."""
        ref = self._ref
        new = [h for h in hashes if h not in ref]
        if new:
            fresh = dict.fromkeys(new, 1)
            if len(fresh) != len(new):  # a repeated identity within one request: keep its first block
                new = list(fresh)
            ref.update(fresh)
        return new

    def release(self, hashes: list[int], private: int) -> None:
        """Drop a request's references: cached blocks ``hashes`` (in the request's block order;
        released last first, becoming evictable at refcount 0) and ``private`` uncached blocks."""
        ref = self._ref
        lru = self._lru
        zero = []
        for h in reversed(hashes):
            c = ref[h]
            if c == 1:
                zero.append(h)
            ref[h] = c - 1
        if zero:
            seqs = range(self._seq, self._seq + len(zero))
            self._seq += len(zero)
            lru.update(zip(zero, seqs))
            q = self._queue
            q.extend(zip(zero, seqs))
            if len(q) > 2 * len(lru) + 4096:
                self._queue = deque(lru.items())
        freed = private + len(zero)
        if freed < 0 or self.free_blocks + freed > self.num_blocks:
            raise KVCapacityError(f"release {freed} blocks with {self.free_blocks} free of {self.num_blocks}")
        self.free_blocks += freed

    def check(self) -> None:
        """Raise AssertionError unless the counts agree (KV1, KV2, and the LRU holds exactly the
        registered blocks of refcount 0); for tests."""
        lru = self._lru
        assert 0 <= self.free_blocks <= self.num_blocks
        assert len(lru) <= self.free_blocks, "resident blocks exceed capacity"
        assert self.resident_blocks <= self.num_blocks
        assert sum(1 for c in self._ref.values() if c == 0) == len(lru)
        assert all(self._ref[h] == 0 for h in lru)

    def exclusive(self, hashes: list[int], private: int) -> int:
        """Blocks that releasing ``hashes`` and ``private`` alone would return to ``free_blocks``."""
        ref = self._ref
        return private + sum(1 for h in hashes if ref[h] == 1)


class KVView:
    """Read-only view of a :class:`BlockManager` handed to schedulers."""

    __slots__ = ("_kv",)

    def __init__(self, kv: BlockManager):
        self._kv = kv

    @property
    def block_size(self) -> int:
        return self._kv.block_size

    @property
    def num_blocks(self) -> int:
        return self._kv.num_blocks

    @property
    def free_blocks(self) -> int:
        return self._kv.free_blocks

    @property
    def watermark_blocks(self) -> int:
        return self._kv.watermark_blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self._kv.block_size)

    def freed_by(self, r) -> int:
        """Blocks preempting ``r`` returns to ``free_blocks`` (fewer than ``r.blocks`` when it shares
        cached blocks with other running requests)."""
        held = r.held
        if not held:
            return r.blocks
        return self._kv.exclusive(held, r.blocks - len(held))
