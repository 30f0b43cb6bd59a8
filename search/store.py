"""The results store: one SQLite row per evaluated candidate, written as it completes.

A row's key is a hash of the candidate, the evaluation context (model, workload, SLOs, engine,
prices basis) and the code version (a digest of the simulator's sources and data), so a stored
result is reused only for the same question asked of the same code. ``evaluations`` counts how
often a key was written (a resumed search writes each key once). Readable with pandas
(:meth:`ResultStore.frame`), exportable to CSV or Parquet (:meth:`ResultStore.export`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import sqlite3
from pathlib import Path

from llmsim.workloads.errors import ConfigError

__all__ = ["ResultStore", "code_version", "result_key"]

_PACKAGES = ("workloads", "hwmodels", "sim", "search")
_SKIP_DIRS = ("workloads",)  # bundled request traces: data, not code (workloads/data/workloads)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the sources and model data the results depend on (hex, 16 characters)."""
    from importlib import resources

    h = hashlib.sha256()
    for pkg in _PACKAGES:
        root = Path(str(resources.files(f"llmsim.{pkg}")))
        for p in sorted(root.rglob("*")):
            if p.suffix not in (".py", ".yaml", ".yml", ".json") or "__pycache__" in p.parts:
                continue
            rel = p.relative_to(root)
            if pkg == "workloads" and len(rel.parts) > 2 and rel.parts[:2] == ("data", *_SKIP_DIRS):
                continue
            h.update(str(rel).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def result_key(kind: str, candidate: dict, context: dict) -> str:
    """The store key of evaluating ``candidate`` in ``context`` (``kind``: explore or size)."""
    blob = json.dumps({"kind": kind, "candidate": candidate, "context": context, "code": code_version()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def _unclean(obj):
    if obj == "inf":
        return math.inf
    if obj == "-inf":
        return -math.inf
    if isinstance(obj, dict):
        return {k: _unclean(v) for k, v in obj.items()}
    return obj


class ResultStore:
    """A SQLite file of evaluated candidates (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path))
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT, candidate TEXT, "
                             "row TEXT, evaluations INTEGER, seq INTEGER)")
            self._db.commit()
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open results store {str(self.path)!r}: {e}") from None

    def get(self, key: str) -> dict | None:
        r = self._db.execute("SELECT row FROM results WHERE key = ?", (key,)).fetchone()
        return None if r is None else _unclean(json.loads(r[0]))

    def put(self, key: str, kind: str, candidate: dict, row: dict) -> None:
        """Write one result now (committed, so an interrupted search keeps it)."""
        cur = self._db.execute("SELECT evaluations FROM results WHERE key = ?", (key,)).fetchone()
        n = 1 if cur is None else cur[0] + 1
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM results").fetchone()[0]
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                         (key, kind, json.dumps(candidate, sort_keys=True),
                          json.dumps(_clean(row), sort_keys=True, default=str), n, seq))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def frame(self):
        """All rows as a pandas DataFrame (candidate and result columns, ``key``, ``evaluations``)."""
        import pandas as pd

        rows = []
        for key, kind, cand, row, n, seq in self._db.execute("SELECT * FROM results ORDER BY seq"):
            rows.append({"key": key, "kind": kind, "evaluations": n, **json.loads(cand), **_unclean(json.loads(row))})
        return pd.DataFrame(rows)

    def export(self, path: str | Path) -> Path:
        """Write every row to ``path`` (.csv, .parquet or .pq)."""
        path = Path(path)
        df = self.frame()
        if path.suffix == ".csv":
            df.to_csv(path, index=False)
        elif path.suffix in (".parquet", ".pq"):
            df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(path, index=False)
        else:
            raise ConfigError(f"export path must end in .csv or .parquet, got {str(path)!r}")
        return path

    def close(self) -> None:
        self._db.close()
