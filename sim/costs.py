"""How the simulator asks for the cost of one engine iteration, and a toy model for tests.

The simulator programs against :class:`IterationCostModel` only. A cost model may also implement
:class:`DecodeRunCostModel` (``decode_run``), the cost of ``steps`` consecutive decode-only
iterations of a fixed batch; the replica then plans a run of identical decode iterations with one
call and one event. Without it the replica calls ``iteration`` once per step (same results, slower).
A ``decode_run`` must agree exactly with repeated ``iteration`` calls (see ``tests/sim/test_costs.py``).

Units: seconds and joules. Token counts are int64 arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class IterationCostModel(Protocol):
    def iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray,
                  decode_ctx: np.ndarray) -> tuple[float, float]:
        """(time_s, energy_j) of one engine iteration on one replica: prefill chunks of prefill_lens[i] new tokens whose
        request already has prefill_offsets[i] tokens in the KV cache, plus one decode token for each request whose
        context (tokens in cache) is decode_ctx[j]. int64 arrays. Deterministic."""
        ...


@runtime_checkable
class DecodeRunCostModel(IterationCostModel, Protocol):
    def decode_run(self, decode_ctx: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(time_s[steps], energy_j[steps]) of ``steps`` consecutive decode-only iterations: step ``k`` (from 0)
        costs exactly ``iteration(empty, empty, decode_ctx + k)``."""
        ...



@dataclass(frozen=True, kw_only=True)
class ToyCost:
    """Analytic iteration cost, linear in the work of the batch (for tests and benchmarks).

    ``time_s = overhead_s + prefill_token_s * sum(prefill_lens)
    + attention_pair_s * sum(prefill_lens * (prefill_offsets + (prefill_lens + 1) / 2))
    + decode_seq_s * len(decode_ctx) + decode_ctx_token_s * sum(decode_ctx)``; ``energy_j = power_w * time_s``.
    An empty batch costs 0.
    """

    overhead_s: float = 0.012
    prefill_token_s: float = 3.0e-5
    attention_pair_s: float = 5.0e-10
    decode_seq_s: float = 1.0e-4
    decode_ctx_token_s: float = 1.6e-8
    power_w: float = 4000.0

    def __post_init__(self) -> None:
        for name in ("overhead_s", "prefill_token_s", "attention_pair_s", "decode_seq_s", "decode_ctx_token_s",
                     "power_w"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def llama2_70b_tp8_h100(cls) -> ToyCost:
        """Rough Llama-2-70B, TP8 on H100-SXM (not a prediction; for benchmarks).

        Weights 140 GB / 8 GPUs read at ~2.5 TB/s ≈ 7 ms plus launch/all-reduce overhead -> 12 ms per
        iteration; prefill 2 * 70e9 FLOP/token over 8 x ~600 TFLOP/s -> 30 us/token; KV 320 KB/token
        over 8 GPUs at 2.5 TB/s -> 16 ns per cached token read; 8 x ~500 W average power. A decode batch of
        32 at 1K context takes ~16 ms, of 128 at 2K ~29 ms.
        """
        return cls()

    def scaled(self, factor: float) -> ToyCost:
        """The same model with every time multiplied by ``factor`` (energy follows)."""
        return ToyCost(overhead_s=self.overhead_s * factor, prefill_token_s=self.prefill_token_s * factor,
                       attention_pair_s=self.attention_pair_s * factor, decode_seq_s=self.decode_seq_s * factor,
                       decode_ctx_token_s=self.decode_ctx_token_s * factor, power_w=self.power_w)

    def iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray,
                  decode_ctx: np.ndarray) -> tuple[float, float]:
        n_dec = len(decode_ctx)
        if len(prefill_lens):
            lens = prefill_lens.astype(np.float64)
            p_tokens = float(lens.sum())
            pairs = float((lens * (prefill_offsets + (lens + 1.0) * 0.5)).sum())
        else:
            if n_dec == 0:
                return 0.0, 0.0
            p_tokens = 0.0
            pairs = 0.0
        ctx_sum = float(int(decode_ctx.sum())) if n_dec else 0.0
        t = (self.overhead_s + self.decode_seq_s * n_dec + self.decode_ctx_token_s * ctx_sum
             + (self.prefill_token_s * p_tokens + self.attention_pair_s * pairs))
        return t, self.power_w * t

    def decode_run(self, decode_ctx: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        n_dec = len(decode_ctx)
        if n_dec == 0:
            z = np.zeros(steps)
            return z, z.copy()
        ctx_sum = (int(decode_ctx.sum()) + n_dec * np.arange(steps, dtype=np.int64)).astype(np.float64)
        # Same operations in the same order as ``iteration`` so both agree to the last bit.
        t = (self.overhead_s + self.decode_seq_s * n_dec + self.decode_ctx_token_s * ctx_sum + (0.0 + 0.0))
        return t, self.power_w * t


class ScaledCost:
    """``inner`` with every iteration's time and energy multiplied by ``factor``: the replica's costs at
    one end of an error band (a run simulated there shows how queueing amplifies the band). It has
    ``iteration`` and ``decode_run`` only, so the replica sums decode runs itself; other attributes
    are the inner model's."""

    def __init__(self, inner, factor: float):
        self.inner = inner
        self.factor = float(factor)

    def iteration(self, prefill_lens, prefill_offsets, decode_ctx) -> tuple[float, float]:
        t, e = self.inner.iteration(prefill_lens, prefill_offsets, decode_ctx)
        return t * self.factor, e * self.factor

    def decode_run(self, decode_ctx, steps: int):
        t, e = self.inner.decode_run(decode_ctx, steps)
        return t * self.factor, e * self.factor

    def __getattr__(self, name: str):
        if name in ("decode_run_sums", "decode_run_into", "inner", "factor"):
            raise AttributeError(name)
        return getattr(self.inner, name)
