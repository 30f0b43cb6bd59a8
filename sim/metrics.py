"""Per-request latency metrics, aggregates, goodput and energy.

Definitions (seconds; a request's times are measured from its arrival):

* TTFT = first token time - arrival. E2E latency = finish - arrival. Queueing delay = first time
  scheduled - arrival.
* TPOT (per request, vLLM's benchmark definition) = (E2E - TTFT) / (output_tokens - 1); undefined for
  one-token outputs, which are left out of TPOT aggregates.
* ``tpot_token_weighted_s`` = sum over requests of (E2E - TTFT) / total generated tokens (first tokens
  included) -- what vLLM's Prometheus ``time_per_output_token_seconds`` sum / ``generation_tokens_total``
  gives (``validation/data/serving/apex_vllm_h100/measured.csv``).
* Makespan = last completion - first arrival; throughputs are completed requests' tokens / makespan.
* Energy = iteration energies from the cost models + ``idle_power_w`` x idle time per replica, over the
  makespan; ``energy_per_token_j`` is per generated (output) token; ``avg_power_w`` = energy / makespan.
* Goodput (with SLOs): completed requests with TTFT <= ``ttft_s`` and TPOT <= ``tpot_s`` (a one-token
  request meets any TPOT SLO) per second of makespan.

Two modes, the same percentile definition (numpy's linear interpolation between the order
statistics around rank ``q * (n - 1)``). With ``keep_requests=True`` one record per request is kept
and percentiles are exact. With ``keep_requests=False`` memory stays flat: means, counts and goodput
stay exact; percentiles are exact while a metric has at most ``EXACT_LIMIT`` values, and beyond that
come from a log-bucketed histogram with buckets 1 % wide (values from 1 us to 1e6 s; zero kept
exactly), each order statistic placed inside its bucket and interpolated as numpy does, so a
reported percentile is within 1 % (relative) of the exact one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmsim.workloads.errors import ConfigError

JSON_KEYS = (
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
    "tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "tpot_token_weighted_s",
    "e2e_mean_s", "e2e_p50_s", "e2e_p99_s", "queue_mean_s",
    "throughput_output_tok_s", "throughput_input_tok_s", "requests_per_s",
    "requests_completed", "requests_rejected", "preemptions",
    "energy_j", "energy_per_token_j", "avg_power_w", "makespan_s",
)


@dataclass(frozen=True, kw_only=True)
class SLO:
    """Latency objectives for goodput; ``None`` leaves a metric unconstrained."""

    ttft_s: float | None = None
    tpot_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name} must be a finite number > 0 or None, got {v!r}")


#: Values per metric kept exactly before the streaming histogram takes over.
EXACT_LIMIT = 10_000


class LogHistogram:
    """Non-negative values: kept exactly up to ``exact_limit`` of them, then counted in buckets
    ``[lo * r**(i-1), lo * r**i)`` with ``r = 1.01`` (bucket 0: values below ``lo``; zero apart)."""

    __slots__ = ("_counts", "_zero", "_n", "_lo", "_inv_log_r", "_r", "_exact", "_exact_limit")

    def __init__(self, lo: float = 1e-6, hi: float = 1e6, ratio: float = 1.01, exact_limit: int = EXACT_LIMIT):
        self._lo = lo
        self._r = ratio
        self._inv_log_r = 1.0 / math.log(ratio)
        self._counts = [0] * (int(math.log(hi / lo) * self._inv_log_r) + 2)
        self._zero = 0
        self._n = 0
        self._exact: list[float] | None = []
        self._exact_limit = exact_limit

    def add(self, x: float) -> None:
        exact = self._exact
        if exact is not None:
            exact.append(x)
            if len(exact) <= self._exact_limit:
                return
            self._exact = None
            for v in exact:
                self._count(v)
            return
        self._count(x)

    def _count(self, x: float) -> None:
        self._n += 1
        if x <= 0.0:
            self._zero += 1
            return
        i = int(math.log(x / self._lo) * self._inv_log_r) + 1 if x >= self._lo else 0
        counts = self._counts
        if i >= len(counts):
            i = len(counts) - 1
        counts[i] += 1

    def __len__(self) -> int:
        return len(self._exact) if self._exact is not None else self._n

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) by numpy's linear rule: exact while the values are kept, else
        the order statistics at ``floor(q * (n - 1))`` and the next, each estimated in its bucket."""
        if self._exact is not None:
            return float(np.quantile(self._exact, q)) if self._exact else math.nan
        if self._n == 0:
            return math.nan
        rank = q * (self._n - 1)
        k = math.floor(rank)
        lo = self._order_stat(k)
        frac = rank - k
        if frac == 0.0 or k + 1 >= self._n:
            return lo
        return lo + frac * (self._order_stat(k + 1) - lo)

    def _order_stat(self, k: int) -> float:
        """Estimate of the ``k``-th smallest value (0-based): the ``c`` values of a bucket are taken as
        spread evenly in log space over it, the ``j``-th at ``lo * r**(i - 1 + (j + 0.5) / c)``."""
        if k < self._zero:
            return 0.0
        seen = self._zero
        for i, c in enumerate(self._counts):
            if c and seen + c > k:
                if i == 0:
                    return self._lo
                return self._lo * self._r ** (i - 1 + (k - seen + 0.5) / c)
            seen += c
        return math.nan  # pragma: no cover


class MetricsCollector:
    """Receives finished and rejected requests from the replicas; memory is flat unless ``keep_requests``."""

    __slots__ = ("keep_requests", "slo", "_records", "_n", "_rejected", "_sum_ttft", "_sum_tpot", "_n_tpot",
                 "_sum_e2e", "_sum_queue", "_sum_decode_s", "_in_tok", "_out_tok", "_first_arrival",
                 "_last_finish", "_good", "_h_ttft", "_h_tpot", "_h_e2e", "_rejected_records")

    def __init__(self, *, keep_requests: bool = True, slo: SLO | None = None):
        self.keep_requests = keep_requests
        self.slo = slo
        self._records: list[tuple] = []
        self._rejected_records: list[tuple] = []
        self._n = 0
        self._rejected = 0
        self._sum_ttft = self._sum_tpot = self._sum_e2e = self._sum_queue = self._sum_decode_s = 0.0
        self._n_tpot = 0
        self._in_tok = self._out_tok = 0
        self._first_arrival = math.inf
        self._last_finish = -math.inf
        self._good = 0
        if not keep_requests:
            self._h_ttft = LogHistogram()
            self._h_tpot = LogHistogram()
            self._h_e2e = LogHistogram()

    def note_arrival(self, arrival_s: float) -> None:
        if arrival_s < self._first_arrival:
            self._first_arrival = arrival_s

    def on_reject(self, r) -> None:
        self._rejected += 1
        if self.keep_requests:
            self._rejected_records.append((r.index, r.replica, r.arrival_s, r.prompt_tokens, r.output_tokens))

    def on_finish(self, r) -> None:
        a = r.arrival_s
        f = r.finish_s
        ttft = r.first_token_s - a
        e2e = f - a
        queue = r.first_scheduled_s - a
        out = r.output_tokens
        decode_s = e2e - ttft
        self._n += 1
        self._sum_ttft += ttft
        self._sum_e2e += e2e
        self._sum_queue += queue
        self._sum_decode_s += decode_s
        self._in_tok += r.prompt_tokens
        self._out_tok += out
        if f > self._last_finish:
            self._last_finish = f
        tpot = decode_s / (out - 1) if out > 1 else math.nan
        if out > 1:
            self._sum_tpot += tpot
            self._n_tpot += 1
        slo = self.slo
        if slo is not None:
            if (slo.ttft_s is None or ttft <= slo.ttft_s) and (slo.tpot_s is None or out <= 1 or tpot <= slo.tpot_s):
                self._good += 1
        if self.keep_requests:
            self._records.append((r.index, r.replica, a, r.prompt_tokens, out, r.first_scheduled_s,
                                  r.first_token_s, f, r.preemptions))
        else:
            self._h_ttft.add(ttft)
            self._h_e2e.add(e2e)
            if out > 1:
                self._h_tpot.add(tpot)

    @property
    def completed(self) -> int:
        return self._n

    @property
    def rejected(self) -> int:
        return self._rejected

    def summary(self, *, energy_j: float, preemptions: int, unfinished: int = 0) -> dict[str, float | int | None]:
        """The aggregate metrics (``JSON_KEYS`` plus goodput keys when an SLO was given)."""
        n = self._n
        makespan = self._last_finish - self._first_arrival if n else 0.0
        nan = math.nan
        d: dict[str, float | int | None] = {}
        if self.keep_requests and n:
            rec = np.array([(x[2], x[6], x[7]) for x in self._records], dtype=np.float64)
            out = np.array([x[4] for x in self._records], dtype=np.int64)
            ttft = rec[:, 1] - rec[:, 0]
            e2e = rec[:, 2] - rec[:, 0]
            multi = out > 1
            tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1)
            q = [50, 90, 99]
            tq = np.percentile(ttft, q)
            eq = np.percentile(e2e, q)
            pq = np.percentile(tpot, q) if len(tpot) else [nan, nan, nan]
        elif n:
            tq = [self._h_ttft.quantile(x) for x in (0.5, 0.9, 0.99)]
            eq = [self._h_e2e.quantile(x) for x in (0.5, 0.9, 0.99)]
            pq = [self._h_tpot.quantile(x) for x in (0.5, 0.9, 0.99)]
        else:
            tq = eq = pq = [nan, nan, nan]
        d["ttft_mean_s"] = self._sum_ttft / n if n else nan
        d["ttft_p50_s"], d["ttft_p90_s"], d["ttft_p99_s"] = (float(x) for x in tq)
        d["tpot_mean_s"] = self._sum_tpot / self._n_tpot if self._n_tpot else nan
        d["tpot_p50_s"], d["tpot_p90_s"], d["tpot_p99_s"] = (float(x) for x in pq)
        d["tpot_token_weighted_s"] = self._sum_decode_s / self._out_tok if self._out_tok else nan
        d["e2e_mean_s"] = self._sum_e2e / n if n else nan
        d["e2e_p50_s"], d["e2e_p99_s"] = float(eq[0]), float(eq[2])
        d["queue_mean_s"] = self._sum_queue / n if n else nan
        d["throughput_output_tok_s"] = self._out_tok / makespan if makespan > 0 else nan
        d["throughput_input_tok_s"] = self._in_tok / makespan if makespan > 0 else nan
        d["requests_per_s"] = n / makespan if makespan > 0 else nan
        d["requests_completed"] = n
        d["requests_rejected"] = self._rejected
        d["requests_unfinished"] = int(unfinished)
        d["preemptions"] = int(preemptions)
        d["energy_j"] = float(energy_j)
        d["energy_per_token_j"] = energy_j / self._out_tok if self._out_tok else nan
        d["avg_power_w"] = energy_j / makespan if makespan > 0 else nan
        d["makespan_s"] = makespan
        if self.slo is not None:
            d["goodput_requests_per_s"] = self._good / makespan if makespan > 0 else nan
            d["slo_attainment"] = self._good / n if n else nan
        return d

    def records(self) -> dict[str, np.ndarray]:
        """Per-request columns (finished requests, then rejected ones); empty without ``keep_requests``."""
        fin = self._records
        rej = self._rejected_records
        cols = {
            "index": np.array([x[0] for x in fin] + [x[0] for x in rej], dtype=np.int64),
            "replica": np.array([x[1] for x in fin] + [x[1] for x in rej], dtype=np.int64),
            "arrival_s": np.array([x[2] for x in fin] + [x[2] for x in rej], dtype=np.float64),
            "prompt_tokens": np.array([x[3] for x in fin] + [x[3] for x in rej], dtype=np.int64),
            "output_tokens": np.array([x[4] for x in fin] + [x[4] for x in rej], dtype=np.int64),
            "first_scheduled_s": np.array([x[5] for x in fin] + [math.nan] * len(rej), dtype=np.float64),
            "first_token_s": np.array([x[6] for x in fin] + [math.nan] * len(rej), dtype=np.float64),
            "finish_s": np.array([x[7] for x in fin] + [math.nan] * len(rej), dtype=np.float64),
            "preemptions": np.array([x[8] for x in fin] + [0] * len(rej), dtype=np.int64),
        }
        cols["status"] = np.array(["finished"] * len(fin) + ["rejected"] * len(rej), dtype=object)
        order = np.argsort(cols["index"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        ttft = cols["first_token_s"] - cols["arrival_s"]
        e2e = cols["finish_s"] - cols["arrival_s"]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(cols["output_tokens"] > 1, (e2e - ttft) / (cols["output_tokens"] - 1), math.nan)
        cols["ttft_s"] = ttft
        cols["tpot_s"] = tpot
        cols["e2e_s"] = e2e
        cols["queue_s"] = cols["first_scheduled_s"] - cols["arrival_s"]
        return cols


def to_json_dict(summary: dict) -> dict:
    """JSON-safe copy: NaN and infinities become ``None``; keys as given."""
    out = {}
    for k, v in summary.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


def dumps(summary: dict) -> str:
    """Canonical JSON text (sorted keys): the same run gives the same bytes."""
    return json.dumps(to_json_dict(summary), sort_keys=True, allow_nan=False)


def write_records(columns: dict[str, np.ndarray], path: str | Path, request_ids=None) -> Path:
    """Write per-request columns as CSV or Parquet (chosen by the suffix)."""
    import pandas as pd

    path = Path(path)
    frame = pd.DataFrame(columns)
    if request_ids is not None:
        frame.insert(0, "request_id", np.asarray(request_ids)[columns["index"]])
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise ConfigError(f"per-request output must end in .csv or .parquet, got {path.name!r}")
    return path
