"""Chrome / Perfetto trace of iterations: one complete event ("ph": "X") per iteration per replica.

Recorded into flat lists (no per-event dict) and written once; open the file in ui.perfetto.dev or
chrome://tracing. Each replica is a process (``pid``); timestamps are microseconds of simulated time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class ChromeTracer:
    __slots__ = ("_replica", "_start", "_end", "_prefill", "_decode")

    def __init__(self):
        self._replica: list[int] = []
        self._start: list[float] = []
        self._end: list[float] = []
        self._prefill: list[int] = []
        self._decode: list[int] = []

    def iteration(self, replica: int, start_s: float, end_s: float, prefill_tokens: int, decodes: int) -> None:
        self._replica.append(replica)
        self._start.append(start_s)
        self._end.append(end_s)
        self._prefill.append(prefill_tokens)
        self._decode.append(decodes)

    def decode_run(self, replica: int, starts: np.ndarray, ends: np.ndarray, decodes: int) -> None:
        k = len(starts)
        self._replica.extend([replica] * k)
        self._start.extend(starts.tolist())
        self._end.extend(ends.tolist())
        self._prefill.extend([0] * k)
        self._decode.extend([decodes] * k)

    def __len__(self) -> int:
        return len(self._start)

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded iterations as columns: replica, start_s, end_s, prefill_tokens, decodes."""
        return {"replica": np.asarray(self._replica, dtype=np.int64), "start_s": np.asarray(self._start),
                "end_s": np.asarray(self._end), "prefill_tokens": np.asarray(self._prefill, dtype=np.int64),
                "decodes": np.asarray(self._decode, dtype=np.int64)}

    def events(self) -> list[dict]:
        out = []
        for rep in sorted(set(self._replica)):
            out.append({"name": "process_name", "ph": "M", "pid": rep, "tid": 0, "args": {"name": f"replica {rep}"}})
        for rep, s, e, p, d in zip(self._replica, self._start, self._end, self._prefill, self._decode):
            name = "prefill+decode" if p and d else ("prefill" if p else "decode")
            out.append({"name": name, "ph": "X", "pid": rep, "tid": 0, "ts": s * 1e6, "dur": (e - s) * 1e6,
                        "args": {"prefill_tokens": p, "decodes": d}})
        return out

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w") as f:
            json.dump({"traceEvents": self.events(), "displayTimeUnit": "ms"}, f)
        return path
