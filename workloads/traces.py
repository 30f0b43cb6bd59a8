"""Request sources: traces read from files, synthetic arrivals and lengths, bundled named workloads.

Every source gives a :class:`RequestTrace` of numpy arrays sorted by arrival: ``arrival_s`` (float64,
seconds from the start of the trace), ``prompt_tokens`` and ``output_tokens`` (int64, >= 1) and
``request_id``. Formats (``load_trace`` picks one from the header):

* canonical CSV: ``request_id, arrival_s, prompt_tokens, output_tokens``
  (as ``/work/shared/data/serving/apex_vllm_h100/lmsys_05_8TP.csv``);
* Azure LLM inference 2023 CSV: ``TIMESTAMP, ContextTokens, GeneratedTokens``; arrival = seconds since
  the earliest timestamp;
* APEX-style JSONL: one object per line with ``ContextTokens``, ``GeneratedTokens`` and
  ``StartTimeOffset`` (nanoseconds from the start of the trace);
* length-only CSV: ``num_prefill_tokens, num_decode_tokens`` (vidur's), arrivals from a synthetic process.

A malformed file (missing column, non-numeric or non-integer value, length < 1, negative or
non-finite time) raises :class:`~workloads.errors.TraceError` naming the file, the 1-based line and the
column. Random draws come from one numpy ``SeedSequence`` stream per subsystem (``arrivals``,
``prompt``, ``output``, ``resample``): the same seed gives identical arrays.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workloads.errors import ConfigError, TraceError
from workloads.naming import NameIndex

NS_PER_S = 1_000_000_000
DATA_DIR = Path(__file__).resolve().parent / "data" / "workloads"


def _stream(seed: int, subsystem: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(subsystem.encode()),)))


@dataclass(frozen=True, eq=False)
class RequestTrace:
    """Requests as arrays, sorted by arrival. ``closed_loop = (users, think_time_s)`` makes the simulator
    ignore ``arrival_s`` and send each user's next request ``think_time_s`` after its last one completes."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    request_id: np.ndarray
    name: str = ""
    closed_loop: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not (len(self.prompt_tokens) == len(self.output_tokens) == len(self.request_id) == n):
            raise ConfigError("arrival_s, prompt_tokens, output_tokens and request_id must have the same length")
        for a in (self.arrival_s, self.prompt_tokens, self.output_tokens, self.request_id):
            a.setflags(write=False)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def head(self, n: int) -> RequestTrace:
        """The first ``n`` requests."""
        return RequestTrace(self.arrival_s[:n].copy(), self.prompt_tokens[:n].copy(), self.output_tokens[:n].copy(),
                            self.request_id[:n].copy(), self.name, self.closed_loop)

    def time_scaled(self, factor: float) -> RequestTrace:
        """Arrival times multiplied by ``factor`` (``0.5`` doubles the request rate)."""
        if not factor > 0:
            raise ConfigError(f"factor must be > 0, got {factor!r}")
        return RequestTrace(self.arrival_s * factor, self.prompt_tokens.copy(), self.output_tokens.copy(),
                            self.request_id.copy(), self.name, self.closed_loop)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    def to_csv(self, path: str | Path) -> Path:
        """Write the canonical CSV (``request_id, arrival_s, prompt_tokens, output_tokens``)."""
        import pandas as pd

        path = Path(path)
        pd.DataFrame({"request_id": self.request_id, "arrival_s": self.arrival_s,
                      "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens}).to_csv(
            path, index=False, float_format="%.9f")
        return path


def _sorted_trace(arrival, prompt, output, ids, name, closed_loop=None) -> RequestTrace:
    order = np.argsort(arrival, kind="stable")
    return RequestTrace(np.ascontiguousarray(arrival[order], dtype=np.float64),
                        np.ascontiguousarray(prompt[order], dtype=np.int64),
                        np.ascontiguousarray(output[order], dtype=np.int64),
                        np.asarray(ids)[order], name, closed_loop)


# ---------------------------------------------------------------------------------------------- parsing
def _read_csv(path: Path, required: tuple[str, ...]):
    import pandas as pd

    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot parse as CSV: {exc}") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    for col in required:
        if col not in frame.columns:
            raise TraceError(f"{path}, line 1, column {col!r}: missing column {col!r} "
                             f"(header has {', '.join(map(repr, frame.columns))})")
    return frame


def _where(path: Path, frame, row: int, col: str) -> str:
    return f"{path}, line {row + 2}, column {list(frame.columns).index(col) + 1} ({col!r})"


def _numeric(path: Path, frame, col: str, *, integer: bool, minimum: float) -> np.ndarray:
    """Column ``col`` as numbers; TraceError at the first bad cell (line numbers count the header as 1)."""
    import pandas as pd

    text = frame[col].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(f"{_where(path, frame, i, col)}: expected a number, got {frame[col].iloc[i]!r}")
    if integer:
        frac = values != np.round(values)
        if frac.any():
            i = int(np.argmax(frac))
            raise TraceError(f"{_where(path, frame, i, col)}: expected a whole number of tokens, got {frame[col].iloc[i]!r}")
    low = values < minimum
    if low.any():
        i = int(np.argmax(low))
        raise TraceError(f"{_where(path, frame, i, col)}: must be >= {minimum:g}, got {frame[col].iloc[i]!r}")
    return values.astype(np.int64) if integer else values


def load_canonical_csv(path: str | Path) -> RequestTrace:
    """``request_id, arrival_s, prompt_tokens, output_tokens`` (arrival in seconds)."""
    path = Path(path)
    frame = _read_csv(path, ("request_id", "arrival_s", "prompt_tokens", "output_tokens"))
    arrival = _numeric(path, frame, "arrival_s", integer=False, minimum=0.0)
    prompt = _numeric(path, frame, "prompt_tokens", integer=True, minimum=1)
    output = _numeric(path, frame, "output_tokens", integer=True, minimum=1)
    ids = frame["request_id"].to_numpy(dtype=object)
    return _sorted_trace(arrival, prompt, output, ids, path.stem)


def load_azure_csv(path: str | Path) -> RequestTrace:
    """Azure LLM inference trace 2023: ``TIMESTAMP, ContextTokens, GeneratedTokens``."""
    import pandas as pd

    path = Path(path)
    frame = _read_csv(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
    stamps = pd.to_datetime(frame["TIMESTAMP"].str.strip(), format="ISO8601", errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(f"{_where(path, frame, i, 'TIMESTAMP')}: expected a timestamp, got {frame['TIMESTAMP'].iloc[i]!r}")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    arrival = (ns - ns.min()) / NS_PER_S
    prompt = _numeric(path, frame, "ContextTokens", integer=True, minimum=1)
    output = _numeric(path, frame, "GeneratedTokens", integer=True, minimum=1)
    return _sorted_trace(arrival, prompt, output, np.arange(len(frame), dtype=np.int64), path.stem)


def load_apex_jsonl(path: str | Path) -> RequestTrace:
    """APEX-style JSONL: ``ContextTokens``, ``GeneratedTokens``, ``StartTimeOffset`` (ns) per line."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    keys = ("ContextTokens", "GeneratedTokens", "StartTimeOffset")
    rows: list[tuple[int, int, int]] = []
    ids: list[object] = []
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}, line {lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise TraceError(f"{path}, line {lineno}, column 1: expected a JSON object, got {type(obj).__name__}")
            values = []
            for key in keys:
                if key not in obj:
                    raise TraceError(f"{path}, line {lineno}, column {key!r}: missing key {key!r}")
                v = obj[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
                    raise TraceError(f"{path}, line {lineno}, column {key!r}: expected a whole number, got {v!r}")
                low = 0 if key == "StartTimeOffset" else 1
                if v < low:
                    raise TraceError(f"{path}, line {lineno}, column {key!r}: must be >= {low}, got {v!r}")
                values.append(int(v))
            rows.append(tuple(values))
            ids.append(obj.get("RequestId", obj.get("request_id", len(ids))))
    data = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return _sorted_trace(data[:, 2] / NS_PER_S, data[:, 0], data[:, 1], np.array(ids, dtype=object), path.stem)


def load_lengths_csv(path: str | Path, arrivals: ArrivalProcess, *, seed: int = 0) -> RequestTrace:
    """Length-only CSV (``num_prefill_tokens, num_decode_tokens``) with arrivals from ``arrivals``."""
    path = Path(path)
    frame = _read_csv(path, ("num_prefill_tokens", "num_decode_tokens"))
    prompt = _numeric(path, frame, "num_prefill_tokens", integer=True, minimum=1)
    output = _numeric(path, frame, "num_decode_tokens", integer=True, minimum=1)
    n = len(prompt)
    return RequestTrace(arrivals.times(n, _stream(seed, "arrivals")), prompt, output,
                        np.arange(n, dtype=np.int64), path.stem, arrivals.closed_loop)


def load_trace(path: str | Path, *, arrivals: ArrivalProcess | None = None, seed: int = 0) -> RequestTrace:
    """Read a trace, choosing the format from its header (``.jsonl`` files are APEX-style)."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        return load_apex_jsonl(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    with path.open() as f:
        header = {c.strip().lstrip("\ufeff") for c in f.readline().split(",")}
    if {"request_id", "arrival_s"} <= header:
        return load_canonical_csv(path)
    if "TIMESTAMP" in header:
        return load_azure_csv(path)
    if "num_prefill_tokens" in header:
        if arrivals is None:
            raise ConfigError(f"{path} has lengths only; give arrivals=PoissonArrivals(rate_per_s=...) or another process")
        return load_lengths_csv(path, arrivals, seed=seed)
    raise TraceError(f"{path}, line 1: unknown trace header {sorted(header)}; expected the canonical, Azure, "
                     "APEX JSONL or length-only format")


# ---------------------------------------------------------------------------------------------- arrivals
class ArrivalProcess:
    closed_loop: tuple[int, float] | None = None

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PoissonArrivals(ArrivalProcess):
    """Exponential gaps with mean ``1 / rate_per_s``; the first request arrives after one gap."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.cumsum(rng.exponential(1.0 / self.rate_per_s, size=n))


@dataclass(frozen=True, kw_only=True)
class GammaArrivals(ArrivalProcess):
    """Gamma gaps with mean ``1 / rate_per_s`` and coefficient of variation ``cv`` (1 is Poisson, > 1 bursty)."""

    rate_per_s: float
    cv: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)
        _positive("cv", self.cv)

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        shape = 1.0 / (self.cv * self.cv)
        return np.cumsum(rng.gamma(shape, 1.0 / (self.rate_per_s * shape), size=n))


@dataclass(frozen=True, kw_only=True)
class FixedRateArrivals(ArrivalProcess):
    """Request ``i`` arrives at ``i / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(n, dtype=np.float64) / self.rate_per_s


@dataclass(frozen=True, kw_only=True)
class ClosedLoop(ArrivalProcess):
    """``users`` concurrent users; each sends its next request ``think_time_s`` after the previous one
    completes (or is rejected). Arrival times are decided by the simulation; ``times`` gives zeros."""

    users: int
    think_time_s: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.users, int) and self.users >= 1):
            raise ConfigError(f"users must be an int >= 1, got {self.users!r}")
        if not (math.isfinite(self.think_time_s) and self.think_time_s >= 0):
            raise ConfigError(f"think_time_s must be a finite number >= 0, got {self.think_time_s!r}")

    @property
    def closed_loop(self) -> tuple[int, float]:  # type: ignore[override]
        return (self.users, float(self.think_time_s))

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(n)


# ---------------------------------------------------------------------------------------------- lengths
class LengthDistribution:
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class FixedLength(LengthDistribution):
    tokens: int

    def __post_init__(self) -> None:
        if not (isinstance(self.tokens, int) and self.tokens >= 1):
            raise ConfigError(f"tokens must be an int >= 1, got {self.tokens!r}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class UniformLength(LengthDistribution):
    """Integers uniform in ``[low, high]`` (both included)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int) and 1 <= self.low <= self.high):
            raise ConfigError(f"need ints 1 <= low <= high, got low={self.low!r}, high={self.high!r}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class LognormalLength(LengthDistribution):
    """Lognormal with the given ``median`` and log-space ``sigma``, rounded and clipped to ``[low, high]``."""

    median: float
    sigma: float
    low: int = 1
    high: int | None = None

    def __post_init__(self) -> None:
        _positive("median", self.median)
        _positive("sigma", self.sigma)
        if not (isinstance(self.low, int) and self.low >= 1):
            raise ConfigError(f"low must be an int >= 1, got {self.low!r}")
        if self.high is not None and not (isinstance(self.high, int) and self.high >= self.low):
            raise ConfigError(f"high must be an int >= low ({self.low}) or None, got {self.high!r}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x = np.rint(rng.lognormal(math.log(self.median), self.sigma, size=n))
        return np.clip(x, self.low, self.high if self.high is not None else np.inf).astype(np.int64)


@dataclass(frozen=True, kw_only=True, eq=False)
class EmpiricalLength(LengthDistribution):
    """Draws with replacement from observed lengths (e.g. ``trace.prompt_tokens``)."""

    values: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.int64)
        if v.ndim != 1 or len(v) == 0 or v.min() < 1:
            raise ConfigError("values must be a non-empty 1-D array of lengths >= 1")
        object.__setattr__(self, "values", v)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.values[rng.integers(0, len(self.values), size=n)]


def synthesize(n: int, *, arrivals: ArrivalProcess, prompt: LengthDistribution, output: LengthDistribution,
               seed: int = 0, name: str = "synthetic") -> RequestTrace:
    """``n`` requests with independent arrival, prompt and output streams derived from ``seed``."""
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ConfigError(f"n must be an int >= 0, got {n!r}")
    n = int(n)
    return RequestTrace(arrivals.times(n, _stream(seed, "arrivals")), prompt.sample(n, _stream(seed, "prompt")),
                        output.sample(n, _stream(seed, "output")), np.arange(n, dtype=np.int64), name,
                        arrivals.closed_loop)


def resample(trace: RequestTrace, n: int, *, arrivals: ArrivalProcess, seed: int = 0) -> RequestTrace:
    """``n`` requests whose (prompt, output) pairs are drawn jointly from ``trace`` (keeping their
    correlation), with arrivals from ``arrivals``."""
    if len(trace) == 0:
        raise ConfigError("cannot resample an empty trace")
    rows = _stream(seed, "resample").integers(0, len(trace), size=n)
    return RequestTrace(arrivals.times(n, _stream(seed, "arrivals")), trace.prompt_tokens[rows].copy(),
                        trace.output_tokens[rows].copy(), np.arange(n, dtype=np.int64), f"{trace.name}-resampled",
                        arrivals.closed_loop)


# ---------------------------------------------------------------------------------------------- named workloads
WORKLOADS = NameIndex("workload")
WORKLOADS.add("azure-conv", ("azure-conversation", "azure-2023-conv", "conv"))
WORKLOADS.add("azure-code", ("azure-2023-code", "code"))
WORKLOADS.add("arxiv-summarization", ("arxiv", "arxiv-summarisation", "arxiv-summarization-llama2"))

_WORKLOAD_FILES = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "arxiv-summarization": "arxiv_summarization_llama2.csv",
}


def workload_names() -> tuple[str, ...]:
    return WORKLOADS.names()


def load_workload(name: str, *, arrivals: ArrivalProcess | None = None, seed: int = 0,
                  limit: int | None = None) -> RequestTrace:
    """A bundled workload by name (see ``workloads/data/workloads/README.md``).

    The Azure traces keep their recorded arrivals unless ``arrivals`` replaces them; the length-only
    ``arxiv-summarization`` needs ``arrivals`` (default ``PoissonArrivals(rate_per_s=1.0)``).
    ``limit`` keeps the first ``limit`` requests.
    """
    canonical = WORKLOADS.resolve(name)
    path = DATA_DIR / _WORKLOAD_FILES[canonical]
    if canonical == "arxiv-summarization":
        trace = load_lengths_csv(path, arrivals or PoissonArrivals(rate_per_s=1.0), seed=seed)
    else:
        trace = load_azure_csv(path)
        if arrivals is not None:
            n = len(trace)
            trace = RequestTrace(arrivals.times(n, _stream(seed, "arrivals")), trace.prompt_tokens.copy(),
                                 trace.output_tokens.copy(), trace.request_id.copy(), trace.name, arrivals.closed_loop)
    trace = RequestTrace(trace.arrival_s, trace.prompt_tokens, trace.output_tokens, trace.request_id, canonical,
                         trace.closed_loop)
    return trace.head(limit) if limit is not None else trace
