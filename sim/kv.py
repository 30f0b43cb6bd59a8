"""Paged KV cache accounting for one replica.

The cache holds ``num_blocks`` blocks of ``block_size`` tokens. A request holds
``ceil(tokens_in_cache / block_size)`` blocks, allocated as it grows and all freed when it finishes
or is preempted (no prefix sharing). Only counts are tracked: which physical block a request holds
never changes a timing. A watermark of ``watermark_blocks`` is kept free when *admitting* a request
(vLLM's ``watermark``), so running requests have room to grow before preemption starts.

Invariant KV1: ``0 <= used_blocks <= num_blocks`` at all times (``allocate`` raises otherwise);
checked by ``tests/sim/test_kv.py`` and the property tests in ``tests/sim/test_properties.py``.
"""
from __future__ import annotations


class KVCapacityError(RuntimeError):
    """A scheduler asked for more blocks than are free: a scheduler bug, never a user error."""


class BlockManager:
    """Block counts of one replica's KV cache."""

    __slots__ = ("block_size", "num_blocks", "watermark_blocks", "free_blocks", "peak_used_blocks")

    def __init__(self, *, num_blocks: int, block_size: int, watermark_blocks: int = 0):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}")
        if not 0 <= watermark_blocks < num_blocks:
            raise ValueError(f"watermark_blocks must be in [0, num_blocks), got {watermark_blocks!r}")
        self.block_size = int(block_size)
        self.num_blocks = int(num_blocks)
        self.watermark_blocks = int(watermark_blocks)
        self.free_blocks = self.num_blocks
        self.peak_used_blocks = 0

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - self.free_blocks

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
        if blocks > self.free_blocks or blocks < 0:
            raise KVCapacityError(f"allocate {blocks} blocks with {self.free_blocks} free of {self.num_blocks}")
        self.free_blocks -= blocks
        used = self.num_blocks - self.free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def free(self, blocks: int) -> None:
        if blocks < 0 or self.free_blocks + blocks > self.num_blocks:
            raise KVCapacityError(f"free {blocks} blocks with {self.free_blocks} free of {self.num_blocks}")
        self.free_blocks += blocks


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
