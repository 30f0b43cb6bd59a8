"""Per-subsystem random streams: one numpy Generator per (master seed, subsystem name).

Each subsystem (``arrivals``, ``prompt``, ``router``, ...) draws from its own stream, so adding draws
to one never shifts another's, and nothing seeds numpy globally.
"""
from __future__ import annotations

import zlib

import numpy as np

__all__ = ["stream"]


def stream(seed: int, name: str) -> np.random.Generator:
    """The Generator of subsystem ``name`` under master ``seed``: ``SeedSequence(seed, spawn_key=(crc32(name),))``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(name.encode()),)))
