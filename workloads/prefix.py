"""Prefix identity of requests: which leading tokens of a request equal those of others.

A trace names a request's leading tokens in coarse blocks of ``block_tokens`` tokens, as Mooncake's
trace format does (``hash_ids``: one id per 512-token block; equal id prefixes mean equal token
prefixes). :class:`PrefixIds` stores them ragged, as arrays: request ``i``'s ids are
``ids[offsets[i]:offsets[i + 1]]`` and they name its first ``tokens[i]`` tokens
(``ceil(tokens[i] / block_tokens)`` ids; ``tokens[i] = 0`` and no ids: no identity). ``tokens[i]`` is
the prompt, or for a turn of a multi-turn session the prompt and the output (the output's KV is the
next turn's prefix). The simulator derives its own KV blocks' identities from these
(:func:`llmsim.sim.kv.block_hashes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmsim.workloads.errors import ConfigError

try:
    from _blake2 import blake2b  # CPython's own; hashlib would load OpenSSL too (~5 ms of every start)
except ImportError:  # pragma: no cover - another interpreter
    from hashlib import blake2b


def name_key(*parts) -> int:
    """A stable 63-bit id for a name (a session, a system prompt); never Python's salted ``hash``."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(blake2b(text, digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True, eq=False)
class PrefixIds:
    """Ragged coarse block ids of a trace's requests (see the module docstring)."""

    offsets: np.ndarray
    ids: np.ndarray
    tokens: np.ndarray
    block_tokens: int

    def __post_init__(self) -> None:
        off = np.ascontiguousarray(self.offsets, dtype=np.int64)
        ids = np.ascontiguousarray(self.ids, dtype=np.int64)
        tok = np.ascontiguousarray(self.tokens, dtype=np.int64)
        bt = self.block_tokens
        if isinstance(bt, bool) or not isinstance(bt, (int, np.integer)) or bt < 1:
            raise ConfigError(f"block_tokens must be an int >= 1, got {bt!r}")
        if off.ndim != 1 or len(off) != len(tok) + 1 or off[0] != 0 or off[-1] != len(ids):
            raise ConfigError("prefix ids: offsets must start at 0, end at len(ids) and have one entry per request + 1")
        counts = np.diff(off)
        if np.any(counts < 0) or np.any(tok < 0) or np.any(counts != -(-tok // int(bt))):
            raise ConfigError("prefix ids: request i needs ceil(tokens[i] / block_tokens) ids")
        for name, a in (("offsets", off), ("ids", ids), ("tokens", tok)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "block_tokens", int(bt))

    def __len__(self) -> int:
        return len(self.tokens)

    def row(self, i: int):
        """``(ids, block_tokens, tokens)`` of request ``i``, or None when it has no identity."""
        t = int(self.tokens[i])
        if t == 0:
            return None
        return (self.ids[self.offsets[i]:self.offsets[i + 1]], self.block_tokens, t)

    def take(self, rows) -> PrefixIds:
        """The ids of requests ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.offsets)[rows]
        off = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        flat = np.repeat(self.offsets[:-1][rows] - off[:-1], counts) + np.arange(off[-1], dtype=np.int64)
        return PrefixIds(off, self.ids[flat], self.tokens[rows], self.block_tokens)

    @classmethod
    def from_lists(cls, rows: list, tokens, block_tokens: int) -> PrefixIds:
        """From one list of ids per request (an empty list: no identity)."""
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        off = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        flat = np.fromiter((x for r in rows for x in r), dtype=np.int64, count=int(off[-1]))
        return cls(off, flat, np.asarray(tokens, dtype=np.int64), block_tokens)

    def shared_fraction(self) -> float:
        """Fraction of identified tokens in coarse blocks whose id prefix occurred earlier in the
        trace order (an upper bound on the prefix-cache hit rate with an unbounded cache)."""
        seen: set = set()
        shared = total = 0
        bt = self.block_tokens
        for i in range(len(self)):
            t = int(self.tokens[i])
            total += t
            chain: tuple = ()
            ids = self.ids[self.offsets[i]:self.offsets[i + 1]].tolist()
            for k, x in enumerate(ids):
                chain = (hash(chain), x)
                key = chain
                if key in seen:
                    shared += min(bt, t - k * bt)
                else:
                    seen.add(key)
        return shared / total if total else 0.0


def stream_ids(key: int, tokens: int, block_tokens: int, shared: tuple[int, int] = (0, 0)) -> list[int]:
    """Coarse ids of the first ``tokens`` tokens of a token stream named ``key`` (a session). With
    ``shared = (skey, stokens)`` the stream starts with the ``stokens``-token prefix named ``skey``
    (a system prompt other streams share); its whole coarse blocks carry that name."""
    n = -(-tokens // block_tokens)
    skey, stokens = shared
    full = min(stokens // block_tokens, n)
    ids = [skey] + list(range(1, full)) if full else []
    if n > full:
        ids.append(key)
        ids.extend(range(full + 1, n))
    return ids


@dataclass(frozen=True, eq=False)
class Sessions:
    """Turn order of multi-turn sessions: request ``i`` is sent ``think_s[i]`` seconds after request
    ``prev[i]`` (a row of the same trace) completes; ``prev[i] = -1``: it arrives at its own time."""

    prev: np.ndarray
    think_s: np.ndarray

    def __post_init__(self) -> None:
        prev = np.ascontiguousarray(self.prev, dtype=np.int64)
        think = np.ascontiguousarray(self.think_s, dtype=np.float64)
        n = len(prev)
        if prev.ndim != 1 or think.shape != prev.shape:
            raise ConfigError("sessions: prev and think_s must be 1-D arrays of one length")
        if n and (prev.min() < -1 or prev.max() >= n or np.any(prev == np.arange(n))):
            raise ConfigError("sessions: prev[i] must be -1 or another row of the trace")
        if not (np.all(np.isfinite(think)) and np.all(think >= 0)):
            raise ConfigError("sessions: think_s must be finite and >= 0")
        for name, a in (("prev", prev), ("think_s", think)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    def __len__(self) -> int:
        return len(self.prev)

    def take(self, rows) -> Sessions:
        """The links of requests ``rows`` (in that order); a turn whose predecessor is not among
        them arrives at its own time."""
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.full(len(self.prev), -1, dtype=np.int64)
        pos[rows] = np.arange(len(rows))
        old = self.prev[rows]
        prev = np.where(old >= 0, pos[np.maximum(old, 0)], -1)
        return Sessions(prev, self.think_s[rows])
