"""Request sources: traces read from files, synthetic arrivals and lengths, bundled named workloads.

Every source gives a :class:`RequestTrace` of numpy arrays sorted by arrival: ``arrival_s`` (float64,
seconds from the start of the trace), ``prompt_tokens`` and ``output_tokens`` (int64, >= 1) and
``request_id``. Formats (``load_trace`` picks one from the header):

* canonical CSV: ``request_id, arrival_s, prompt_tokens, output_tokens``
  (as ``/work/shared/data/serving/apex_vllm_h100/lmsys_05_8TP.csv``), optionally with prefix identity:
  ``hash_ids`` (space-separated integer ids, one per ``block_tokens`` prompt tokens, Mooncake's
  convention; the block size in a first line ``# block_tokens=N`` or the ``block_tokens`` argument) and
  ``session_id`` (turns of one conversation, in arrival order: each turn's prompt starts with the
  previous turn's prompt and output); a row gives one of the two or neither;
* Mooncake JSONL (kvcache-ai/Mooncake FAST'25 traces): ``timestamp`` (ms), ``input_length``,
  ``output_length``, ``hash_ids`` (one id per 512-token block), one object a line, optionally gzipped;
* Azure LLM inference 2023 CSV: ``TIMESTAMP, ContextTokens, GeneratedTokens``; arrival = seconds since
  the earliest timestamp;
* APEX-style JSONL (told from Mooncake's by its keys): one object per line with ``ContextTokens``, ``GeneratedTokens`` and
  ``StartTimeOffset`` (nanoseconds from the start of the trace);
* length-only CSV: ``num_prefill_tokens, num_decode_tokens`` (vidur's), arrivals from a synthetic process.

A malformed file (missing column, non-numeric or non-integer value, length < 1, negative or
non-finite time) raises :class:`~llmsim.workloads.errors.TraceError` naming the file, the 1-based line and the
column. Random draws come from one stream per subsystem (:func:`llmsim.workloads.rng.stream`: ``arrivals``,
``prompt``, ``output``, ``resample``): the same seed gives identical arrays.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmsim.workloads.errors import ConfigError, TraceError
from llmsim.workloads.naming import NameIndex
from llmsim.workloads.prefix import PrefixIds, Sessions, name_key, stream_ids
from llmsim.workloads.rng import stream

#: Mooncake's hash_ids block (tokens per id).
MOONCAKE_BLOCK_TOKENS = 512
#: Tokens per id of the ids derived for session rows of a CSV without ``block_tokens`` (any value
#: names a session's token stream exactly).
SESSION_BLOCK_TOKENS = 512
#: Tokens per id of the synthetic prefix workloads (a shared system prompt ends on a multiple of it).
SYNTHETIC_BLOCK_TOKENS = 16

NS_PER_S = 1_000_000_000
DATA_DIR = Path(__file__).resolve().parent / "data" / "workloads"


@dataclass(frozen=True, eq=False)
class RequestTrace:
    """Requests as arrays, sorted by arrival. ``closed_loop = (users, think_time_s)`` makes the simulator
    ignore ``arrival_s`` and send each user's next request ``think_time_s`` after its last one completes.
    ``prefix``: the requests' prefix identity (:class:`~llmsim.workloads.prefix.PrefixIds`), or None.
    ``sessions``: turn order (:class:`~llmsim.workloads.prefix.Sessions`: a turn is sent a think time after
    its predecessor completes), or None."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    request_id: np.ndarray
    name: str = ""
    closed_loop: tuple[int, float] | None = None
    prefix: PrefixIds | None = None
    sessions: Sessions | None = None

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not (len(self.prompt_tokens) == len(self.output_tokens) == len(self.request_id) == n):
            raise ConfigError("arrival_s, prompt_tokens, output_tokens and request_id must have the same length")
        if self.prefix is not None:
            if len(self.prefix) != n:
                raise ConfigError(f"prefix ids cover {len(self.prefix)} requests, the trace has {n}")
            if np.any(self.prefix.tokens > self.prompt_tokens + self.output_tokens):
                raise ConfigError("prefix ids name more tokens than a request's prompt and output")
        if self.sessions is not None and len(self.sessions) != n:
            raise ConfigError(f"sessions cover {len(self.sessions)} requests, the trace has {n}")
        for a in (self.arrival_s, self.prompt_tokens, self.output_tokens, self.request_id):
            a.setflags(write=False)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def head(self, n: int) -> RequestTrace:
        """The first ``n`` requests."""
        n = min(int(n), len(self))
        rows = np.arange(n)
        prefix = None if self.prefix is None else self.prefix.take(rows)
        sessions = None if self.sessions is None else self.sessions.take(rows)
        return RequestTrace(self.arrival_s[:n].copy(), self.prompt_tokens[:n].copy(), self.output_tokens[:n].copy(),
                            self.request_id[:n].copy(), self.name, self.closed_loop, prefix, sessions)

    def time_scaled(self, factor: float) -> RequestTrace:
        """Arrival times multiplied by ``factor`` (``0.5`` doubles the request rate)."""
        if not factor > 0:
            raise ConfigError(f"factor must be > 0, got {factor!r}")
        return RequestTrace(self.arrival_s * factor, self.prompt_tokens.copy(), self.output_tokens.copy(),
                            self.request_id.copy(), self.name, self.closed_loop, self.prefix, self.sessions)

    def with_arrivals(self, arrival_s: np.ndarray, closed_loop=None, name: str | None = None) -> RequestTrace:
        """The same requests (lengths, ids, prefix identity) arriving at ``arrival_s`` (trace order);
        session links are dropped (every request then arrives at its new time)."""
        return _sorted_trace(np.asarray(arrival_s, dtype=np.float64), self.prompt_tokens, self.output_tokens,
                             self.request_id, self.name if name is None else name, closed_loop, self.prefix)

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


def _sorted_trace(arrival, prompt, output, ids, name, closed_loop=None, prefix=None, sessions=None) -> RequestTrace:
    order = np.argsort(arrival, kind="stable")
    return RequestTrace(np.ascontiguousarray(arrival[order], dtype=np.float64),
                        np.ascontiguousarray(prompt[order], dtype=np.int64),
                        np.ascontiguousarray(output[order], dtype=np.int64),
                        np.asarray(ids)[order], name, closed_loop,
                        None if prefix is None else prefix.take(order),
                        None if sessions is None else sessions.take(order))


# ---------------------------------------------------------------------------------------------- parsing
def _directives(path: Path) -> tuple[dict[str, str], int]:
    """The leading ``# key=value`` lines of a CSV, and how many lines they take."""
    out: dict[str, str] = {}
    n = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.strip().lstrip("\ufeff")
                if not text.startswith("#"):
                    break
                n += 1
                for part in text[1:].replace(",", " ").split():
                    if "=" not in part:
                        raise TraceError(f"{path}, line {n}: expected '# key=value', got {line.strip()!r}")
                    k, v = part.split("=", 1)
                    out[k.strip()] = v.strip()
    except OSError:
        pass
    return out, n


def _read_csv(path: Path, required: tuple[str, ...]):
    import pandas as pd

    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    directives, skip = _directives(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, skiprows=skip)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot parse as CSV: {exc}") from None
    frame.attrs["line0"] = 2 + skip
    frame.attrs["directives"] = directives
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    for col in required:
        if col not in frame.columns:
            raise TraceError(f"{path}, line {skip + 1}, column {col!r}: missing column {col!r} "
                             f"(header has {', '.join(map(repr, frame.columns))})")
    return frame


def _where(path: Path, frame, row: int, col: str) -> str:
    return f"{path}, line {row + frame.attrs.get('line0', 2)}, column {list(frame.columns).index(col) + 1} ({col!r})"


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


def load_canonical_csv(path: str | Path, *, block_tokens: int | None = None) -> RequestTrace:
    """``request_id, arrival_s, prompt_tokens, output_tokens`` (arrival in seconds), and optionally
    ``hash_ids`` / ``session_id`` (see the module docstring); ``block_tokens`` (tokens per hash id)
    if the file has no ``# block_tokens=N`` line."""
    path = Path(path)
    frame = _read_csv(path, ("request_id", "arrival_s", "prompt_tokens", "output_tokens"))
    arrival = _numeric(path, frame, "arrival_s", integer=False, minimum=0.0)
    prompt = _numeric(path, frame, "prompt_tokens", integer=True, minimum=1)
    output = _numeric(path, frame, "output_tokens", integer=True, minimum=1)
    ids = frame["request_id"].to_numpy(dtype=object)
    prefix = None
    if "hash_ids" in frame.columns or "session_id" in frame.columns:
        prefix = _csv_prefix(path, frame, arrival, prompt, output, block_tokens)
    return _sorted_trace(arrival, prompt, output, ids, path.stem, prefix=prefix)


def load_canonical_parquet(path: str | Path) -> RequestTrace:
    """A Parquet file with the canonical columns ``request_id, arrival_s, prompt_tokens,
    output_tokens`` (arrival in seconds; line numbers in errors count data rows from 1)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise TraceError(f"{path}: cannot read as Parquet: {exc}") from None
    need = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (has "
                         f"{', '.join(map(repr, frame.columns))}); expected {', '.join(need)}")
    frame = frame[list(need)].astype(str)
    frame.attrs["line0"] = 1
    arrival = _numeric(path, frame, "arrival_s", integer=False, minimum=0.0)
    prompt = _numeric(path, frame, "prompt_tokens", integer=True, minimum=1)
    output = _numeric(path, frame, "output_tokens", integer=True, minimum=1)
    return _sorted_trace(arrival, prompt, output, frame["request_id"].to_numpy(dtype=object), path.stem)


def _csv_prefix(path: Path, frame, arrival, prompt, output, block_tokens) -> PrefixIds | None:
    """The :class:`PrefixIds` of a canonical CSV's ``hash_ids`` and ``session_id`` columns."""
    n = len(frame)
    skip = frame.attrs.get("line0", 2) - 2
    given = frame.attrs.get("directives", {}).get("block_tokens")
    bt = None
    if given is not None:
        try:
            bt = int(given)
        except ValueError:
            bt = 0
        if bt < 1:
            raise TraceError(f"{path}, line {skip}: block_tokens must be an integer >= 1, got {given!r}")
    if block_tokens is not None:
        if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
            raise ConfigError(f"block_tokens must be an integer >= 1, got {block_tokens!r}")
        if bt is not None and bt != block_tokens:
            raise TraceError(f"{path}, line {skip}: the file says block_tokens={bt} but {block_tokens} was given")
        bt = block_tokens
    hashes = frame["hash_ids"].str.strip().to_numpy() if "hash_ids" in frame.columns else np.full(n, "")
    sessions = frame["session_id"].str.strip().to_numpy() if "session_id" in frame.columns else np.full(n, "")
    rows: list[list[int]] = [[] for _ in range(n)]
    tokens = np.zeros(n, dtype=np.int64)
    for i in range(n):
        cell = hashes[i]
        if not cell:
            continue
        if sessions[i]:
            raise TraceError(f"{_where(path, frame, i, 'hash_ids')}: a row gives hash_ids or a session_id, not both")
        if bt is None:
            raise TraceError(f"{_where(path, frame, i, 'hash_ids')}: hash_ids need their block size: a first line "
                             "'# block_tokens=N' or block_tokens (--trace-block-tokens)")
        try:
            row = [int(x) for x in cell.split()]
        except ValueError:
            raise TraceError(f"{_where(path, frame, i, 'hash_ids')}: expected space-separated integer ids, "
                             f"got {cell!r}") from None
        want = -(-int(prompt[i]) // bt)
        if len(row) != want:
            raise TraceError(f"{_where(path, frame, i, 'hash_ids')}: {len(row)} ids, but prompt_tokens "
                             f"{prompt[i]} at {bt} tokens per id needs {want}")
        if any(abs(x) >= 1 << 63 for x in row):
            raise TraceError(f"{_where(path, frame, i, 'hash_ids')}: ids must fit in 64-bit integers")
        rows[i] = row
        tokens[i] = prompt[i]
    if bt is None:
        bt = SESSION_BLOCK_TOKENS
    order = np.argsort(arrival, kind="stable")
    last: dict[str, int] = {}
    for i in order.tolist():
        sid = sessions[i]
        if not sid:
            continue
        ctx = int(prompt[i]) + int(output[i])
        prev = last.get(sid)
        if prev is not None and prompt[i] < prev:
            raise TraceError(f"{_where(path, frame, i, 'prompt_tokens')}: session {sid!r}: a turn's prompt "
                             f"({prompt[i]} tokens) must start with the previous turn's prompt and output "
                             f"({prev} tokens)")
        last[sid] = ctx
        rows[i] = stream_ids(name_key("session", sid), ctx, bt)
        tokens[i] = ctx
    if not tokens.any():
        return None
    return PrefixIds.from_lists(rows, tokens, bt)


def _azure_fast(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(arrival_s, prompt, output) of a plain, well-formed Azure CSV without pandas (numpy parses the
    timestamps to the same nanoseconds); None for anything else (directives, blank lines, odd cells),
    which the pandas reader handles and reports."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    header, _, body = text.partition("\n")
    if header.strip().lstrip("\ufeff") != "TIMESTAMP,ContextTokens,GeneratedTokens" or "\r" in body:
        return None
    body = body[:-1] if body.endswith("\n") else body
    n = body.count("\n") + 1
    cells = body.replace("\n", ",").split(",")
    if not body or len(cells) != 3 * n:
        return None
    stamps, prompt, output = cells[0::3], cells[1::3], cells[2::3]
    digits = "".join(prompt) + "".join(output)
    if not (digits.isascii() and digits.isdigit()) or min(map(len, prompt)) == 0 or min(map(len, output)) == 0 \
            or min(map(len, stamps)) < 19:
        return None
    p = np.array(list(map(int, prompt)), dtype=np.int64)
    o = np.array(list(map(int, output)), dtype=np.int64)
    if p.min() < 1 or o.min() < 1:
        return None
    try:
        ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:
        return None
    return (ns - ns.min()) / NS_PER_S, p, o


#: where the parsed arrays of the bundled Azure traces are kept between processes (beside the bytecode)
_ARRAY_CACHE = Path(__file__).resolve().parent / "__pycache__"


def _azure_shipped(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_azure_fast` of a bundled trace, its arrays kept in ``_ARRAY_CACHE`` keyed (as bytecode is)
    by the file's and this module's size and modification time; the same float64 and int64 bytes
    come back. ``LLMSIM_DATA_CACHE=0`` parses every time (workloads/yamlio.py)."""
    import marshal
    import os
    import sys

    from llmsim.workloads import yamlio

    if not yamlio.DATA_CACHE_ON:
        return _azure_fast(path)
    try:
        key = (np.__version__, *((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in (path, Path(__file__))))
    except OSError:
        return _azure_fast(path)
    cache = _ARRAY_CACHE / f"{path.stem}.{sys.implementation.cache_tag}.arrays"
    try:
        with open(cache, "rb") as f:
            stored, arrival, prompt, output = marshal.load(f)
        if stored == key:
            return (np.frombuffer(arrival, np.float64), np.frombuffer(prompt, np.int64),
                    np.frombuffer(output, np.int64))
    except (OSError, EOFError, ValueError, TypeError):
        pass
    fast = _azure_fast(path)
    if fast is not None:
        arrival, prompt, output = fast
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        try:
            cache.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as f:
                marshal.dump((key, arrival.astype(np.float64).tobytes(), prompt.astype(np.int64).tobytes(),
                              output.astype(np.int64).tobytes()), f)
            os.replace(tmp, cache)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
    return fast


def load_azure_csv(path: str | Path, *, shipped: bool = False) -> RequestTrace:
    """Azure LLM inference trace 2023: ``TIMESTAMP, ContextTokens, GeneratedTokens``. ``shipped``: a
    bundled trace, whose parsed arrays may be kept between processes."""
    path = Path(path)
    fast = _azure_shipped(path) if shipped else _azure_fast(path)
    if fast is not None:
        arrival, prompt, output = fast
        return _sorted_trace(arrival, prompt, output, np.arange(len(prompt), dtype=np.int64), path.stem)
    import pandas as pd

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


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _read_jsonl(path: Path, fields: tuple[tuple[str, str, int], ...], check=None) -> list[tuple[int, dict, list]]:
    """``(line number, object, values)`` of every non-blank line of a JSONL trace (gzip when ``.gz``).

    ``fields``: ``(key, kind, minimum)`` per required key; kind ``whole`` (a whole number), ``number``
    (any finite number) or ``tokens`` (a number, then a whole number of tokens); ``check(lineno, obj,
    values)``, when given, validates the rest of each line in turn. Any bad line is a TraceError
    naming file, line and key."""
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    out = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                at = f"{path}, line {lineno}, column"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{at} {exc.colno}: invalid JSON: {exc.msg}") from None
                if not isinstance(obj, dict):
                    raise TraceError(f"{at} 1: expected a JSON object, got {type(obj).__name__}")
                values = []
                for key, kind, low in fields:
                    if key not in obj:
                        raise TraceError(f"{at} {key!r}: missing key {key!r}")
                    v = obj[key]
                    bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    if kind == "whole" and (bad or v != int(v)):
                        raise TraceError(f"{at} {key!r}: expected a whole number, got {v!r}")
                    if bad:
                        raise TraceError(f"{at} {key!r}: expected a number, got {v!r}")
                    if kind == "tokens" and v != int(v):
                        raise TraceError(f"{at} {key!r}: expected a whole number of tokens, got {v!r}")
                    if v < low:
                        raise TraceError(f"{at} {key!r}: must be >= {low}, got {v!r}")
                    values.append(v)
                if check is not None:
                    check(lineno, obj, values)
                out.append((lineno, obj, values))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from None
    return out


def load_apex_jsonl(path: str | Path) -> RequestTrace:
    """APEX-style JSONL: ``ContextTokens``, ``GeneratedTokens``, ``StartTimeOffset`` (ns) per line."""
    path = Path(path)
    lines = _read_jsonl(path, (("ContextTokens", "whole", 1), ("GeneratedTokens", "whole", 1),
                               ("StartTimeOffset", "whole", 0)))
    rows = [tuple(int(v) for v in values) for _, _, values in lines]
    ids = [obj.get("RequestId", obj.get("request_id", i)) for i, (_, obj, _) in enumerate(lines)]
    data = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return _sorted_trace(data[:, 2] / NS_PER_S, data[:, 0], data[:, 1], np.array(ids, dtype=object), path.stem)


def load_mooncake_jsonl(path: str | Path) -> RequestTrace:
    """Mooncake's trace format (kvcache-ai/Mooncake, FAST'25 release): one JSON object a line with
    ``timestamp`` (ms from the first request), ``input_length``, ``output_length`` and ``hash_ids``
    (one id per 512 prompt tokens; equal id prefixes = equal token prefixes). ``.gz`` is read as gzip."""
    path = Path(path)
    bt = MOONCAKE_BLOCK_TOKENS

    def hash_ids(lineno: int, obj: dict, values: list) -> None:
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in ids):
            raise TraceError(f"{path}, line {lineno}, column 'hash_ids': expected a list of integer ids, "
                             f"got {str(ids)[:60]!r}")
        if ids:
            want = -(-int(values[1]) // bt)
            if len(ids) != want:
                raise TraceError(f"{path}, line {lineno}, column 'hash_ids': {len(ids)} ids, but "
                                 f"input_length {int(values[1])} at {bt} tokens per id needs {want}")
            if any(abs(x) >= 1 << 63 for x in ids):
                raise TraceError(f"{path}, line {lineno}, column 'hash_ids': ids must fit in 64-bit integers")

    lines = _read_jsonl(path, (("timestamp", "number", 0), ("input_length", "tokens", 1),
                               ("output_length", "tokens", 1)), hash_ids)
    rows = [(float(v[0]), int(v[1]), int(v[2])) for _, _, v in lines]
    lists = [obj.get("hash_ids", []) for _, obj, _ in lines]
    n = len(rows)
    data = np.array(rows, dtype=np.float64).reshape(-1, 3)
    prompt = data[:, 1].astype(np.int64)
    tokens = np.where(np.array([len(x) > 0 for x in lists], dtype=bool), prompt, 0) if n else prompt
    prefix = PrefixIds.from_lists(lists, tokens, bt)
    return _sorted_trace(data[:, 0] / 1000.0, prompt, data[:, 2].astype(np.int64), np.arange(n, dtype=np.int64),
                         _stem(path), prefix=prefix if tokens.any() else None)


def load_lengths_csv(path: str | Path, arrivals: ArrivalProcess, *, seed: int = 0) -> RequestTrace:
    """Length-only CSV (``num_prefill_tokens, num_decode_tokens``) with arrivals from ``arrivals``."""
    path = Path(path)
    frame = _read_csv(path, ("num_prefill_tokens", "num_decode_tokens"))
    prompt = _numeric(path, frame, "num_prefill_tokens", integer=True, minimum=1)
    output = _numeric(path, frame, "num_decode_tokens", integer=True, minimum=1)
    n = len(prompt)
    return RequestTrace(arrivals.times(n, stream(seed, "arrivals")), prompt, output,
                        np.arange(n, dtype=np.int64), path.stem, arrivals.closed_loop)


def _first_object(path: Path) -> dict:
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return obj if isinstance(obj, dict) else {}
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    return {}


def load_trace(path: str | Path, *, arrivals: ArrivalProcess | None = None, seed: int = 0,
               block_tokens: int | None = None) -> RequestTrace:
    """Read a trace, choosing the format from its header (``.jsonl``/``.json`` files, gzipped or not:
    Mooncake's when the first object has ``input_length`` or ``hash_ids``, else APEX-style).
    ``block_tokens``: tokens per ``hash_ids`` id of a canonical CSV without a ``# block_tokens`` line."""
    path = Path(path)
    name = path.name
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        if not path.is_file():
            raise TraceError(f"{path}: no such trace file")
        first = _first_object(path)
        if "input_length" in first or "hash_ids" in first:
            return load_mooncake_jsonl(path)
        return load_apex_jsonl(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    if name.endswith((".parquet", ".pq")):
        return load_canonical_parquet(path)
    _, skip = _directives(path)
    with path.open() as f:
        for _ in range(skip):
            f.readline()
        header = {c.strip().lstrip("\ufeff") for c in f.readline().split(",")}
    if {"request_id", "arrival_s"} <= header:
        return load_canonical_csv(path, block_tokens=block_tokens)
    if "TIMESTAMP" in header:
        return load_azure_csv(path)
    if "num_prefill_tokens" in header:
        if arrivals is None:
            raise ConfigError(f"{path} has lengths only; give arrivals=PoissonArrivals(rate_per_s=...) or another process")
        return load_lengths_csv(path, arrivals, seed=seed)
    raise TraceError(f"{path}, line 1: unknown trace header {sorted(header)}; expected the canonical columns "
                     "request_id,arrival_s,prompt_tokens,output_tokens (Azure: TIMESTAMP,ContextTokens,"
                     "GeneratedTokens; length-only: num_prefill_tokens,num_decode_tokens; or APEX/Mooncake JSONL)")


# ---------------------------------------------------------------------------------------------- arrivals
class ArrivalProcess:
    closed_loop: tuple[int, float] | None = None

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Arrival times (s) of ``n`` requests: the running sum of :meth:`gaps`."""
        return np.cumsum(self.gaps(n, rng))

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        """``n`` gaps (s) between consecutive arrivals, the first one's from 0."""
        raise NotImplementedError

    def time_chunks(self, n: int, rng: np.random.Generator, size: int):
        """``times(n, rng)`` in consecutive pieces of at most ``size``, drawn as they are reached: the
        same values (the draws of one stream in the same order, the running sum continued), with
        memory for one piece."""
        last = None
        for start in range(0, n, size):
            g = self.gaps(min(size, n - start), rng)
            t = np.cumsum(g) if last is None else np.cumsum(np.concatenate(([last], g)))[1:]
            last = t[-1]
            yield t


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PoissonArrivals(ArrivalProcess):
    """Exponential gaps with mean ``1 / rate_per_s``; the first request arrives after one gap."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.exponential(1.0 / self.rate_per_s, size=n)


@dataclass(frozen=True, kw_only=True)
class GammaArrivals(ArrivalProcess):
    """Gamma gaps with mean ``1 / rate_per_s`` and coefficient of variation ``cv`` (1 is Poisson, > 1 bursty)."""

    rate_per_s: float
    cv: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)
        _positive("cv", self.cv)

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        shape = 1.0 / (self.cv * self.cv)
        return rng.gamma(shape, 1.0 / (self.rate_per_s * shape), size=n)


@dataclass(frozen=True, kw_only=True)
class FixedRateArrivals(ArrivalProcess):
    """Request ``i`` arrives at ``i / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(n, dtype=np.float64) / self.rate_per_s

    def time_chunks(self, n: int, rng: np.random.Generator, size: int):
        for start in range(0, n, size):
            yield np.arange(start, min(n, start + size), dtype=np.float64) / self.rate_per_s


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

    def time_chunks(self, n: int, rng: np.random.Generator, size: int):
        raise ConfigError("closed-loop arrivals are decided by the simulation; a lazy trace needs open-loop arrivals")


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
    return RequestTrace(arrivals.times(n, stream(seed, "arrivals")), prompt.sample(n, stream(seed, "prompt")),
                        output.sample(n, stream(seed, "output")), np.arange(n, dtype=np.int64), name,
                        arrivals.closed_loop)


#: requests per piece of a :class:`LazyTrace` (~1.5 MiB of arrays)
LAZY_CHUNK = 65_536


@dataclass(frozen=True, kw_only=True, eq=False)
class LazyTrace:
    """The requests of :func:`synthesize` with the same arguments, generated in pieces of ``chunk``
    requests as the simulation reaches them (:meth:`chunks`), so memory does not grow with ``n``.
    Every piece comes from the same three streams in the same order, so the requests are the same
    bits as :func:`synthesize`'s (``tests/workloads/test_lazy_trace.py``). Open-loop arrivals only.
    ``sim.cluster.simulate`` takes it where it takes a :class:`RequestTrace`; :meth:`materialize`
    gives that trace."""

    n: int
    arrivals: ArrivalProcess
    prompt: LengthDistribution
    output: LengthDistribution
    seed: int = 0
    name: str = "synthetic"
    chunk: int = LAZY_CHUNK

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not (isinstance(self.n, (int, np.integer)) and self.n >= 0):
            raise ConfigError(f"n must be an int >= 0, got {self.n!r}")
        if isinstance(self.chunk, bool) or not (isinstance(self.chunk, (int, np.integer)) and self.chunk >= 1):
            raise ConfigError(f"chunk must be an int >= 1, got {self.chunk!r}")
        if self.arrivals.closed_loop is not None:
            raise ConfigError("a LazyTrace needs open-loop arrivals (closed-loop arrivals are decided by the "
                              "simulation); use synthesize")

    closed_loop = None
    prefix = None
    sessions = None
    request_id = None

    def __len__(self) -> int:
        return int(self.n)

    def chunks(self):
        """``(arrival_s, prompt_tokens, output_tokens)`` arrays of consecutive pieces of the trace."""
        n, size = int(self.n), int(self.chunk)
        prompt_rng, output_rng = stream(self.seed, "prompt"), stream(self.seed, "output")
        for arrival in self.arrivals.time_chunks(n, stream(self.seed, "arrivals"), size):
            k = len(arrival)
            yield (np.ascontiguousarray(arrival, dtype=np.float64),
                   np.ascontiguousarray(self.prompt.sample(k, prompt_rng), dtype=np.int64),
                   np.ascontiguousarray(self.output.sample(k, output_rng), dtype=np.int64))

    def materialize(self) -> RequestTrace:
        """The whole trace as arrays (:func:`synthesize`'s)."""
        return synthesize(int(self.n), arrivals=self.arrivals, prompt=self.prompt, output=self.output,
                          seed=self.seed, name=self.name)


def resample(trace: RequestTrace, n: int, *, arrivals: ArrivalProcess, seed: int = 0) -> RequestTrace:
    """``n`` requests whose (prompt, output) pairs are drawn jointly from ``trace`` (keeping their
    correlation), with arrivals from ``arrivals``. Prefix identity is dropped: a row drawn twice
    would otherwise repeat a whole prompt, a prefix sharing the source never had."""
    if len(trace) == 0:
        raise ConfigError("cannot resample an empty trace")
    rows = stream(seed, "resample").integers(0, len(trace), size=n)
    return RequestTrace(arrivals.times(n, stream(seed, "arrivals")), trace.prompt_tokens[rows].copy(),
                        trace.output_tokens[rows].copy(), np.arange(n, dtype=np.int64), f"{trace.name}-resampled",
                        arrivals.closed_loop)


# ---------------------------------------------------------------------------------------------- prefix workloads
def _count(name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {v!r}")
    return int(v)


def shared_prefix(*, num_groups: int = 10, num_prompts_per_group: int = 10, system_prompt_len: int = 2000,
                  question_len: int = 100, output_len: int = 100, num_requests: int | None = None,
                  arrivals: ArrivalProcess | None = None, seed: int = 0, name: str = "shared-prefix") -> RequestTrace:
    """Shared system prompts with repeating questions, as inference-perf's ``shared_prefix`` data
    generator builds them: ``num_groups`` system prompts of ``system_prompt_len`` tokens, each with
    ``num_prompts_per_group`` questions of ``question_len`` tokens; the G x U prompts are shuffled (by
    ``seed``) and request ``k`` sends prompt ``k mod (G x U)`` and asks for ``output_len`` tokens.
    ``num_requests`` defaults to G x U; arrivals default to Poisson at 1 request/s."""
    G = _count("num_groups", num_groups)
    U = _count("num_prompts_per_group", num_prompts_per_group)
    S = _count("system_prompt_len", system_prompt_len, 0)
    Q = _count("question_len", question_len)
    O = _count("output_len", output_len)
    n = G * U if num_requests is None else _count("num_requests", num_requests, 0)
    arrivals = arrivals or PoissonArrivals(rate_per_s=1.0)
    order = stream(seed, "shared-prefix").permutation(G * U)
    bt = SYNTHETIC_BLOCK_TOKENS
    prompts = [stream_ids(name_key("shared-prefix-question", g, u), S + Q, bt,
                          (name_key("shared-prefix-system", g), S)) for g in range(G) for u in range(U)]
    pick = order[np.arange(n) % (G * U)]
    rows = [prompts[j] for j in pick.tolist()]
    prompt = np.full(n, S + Q, dtype=np.int64)
    prefix = PrefixIds.from_lists(rows, prompt, bt)
    ids = np.array([f"g{j // U}-p{j % U}-{k}" for k, j in enumerate(pick.tolist())], dtype=object)
    return RequestTrace(arrivals.times(n, stream(seed, "arrivals")), prompt, np.full(n, O, dtype=np.int64), ids,
                        name, arrivals.closed_loop, prefix)


def multi_turn(*, num_sessions: int = 100, turns: int = 5, system_prompt_len: int = 0, user_tokens: int = 200,
               output_len: int = 200, think_time_s: float = 10.0, arrivals: ArrivalProcess | None = None,
               seed: int = 0, name: str = "multi-turn") -> RequestTrace:
    """Multi-turn chat: ``num_sessions`` conversations of ``turns`` turns. Turn 1's prompt is the
    ``system_prompt_len``-token system prompt (shared by every session) and ``user_tokens`` new tokens;
    turn ``t + 1``'s prompt is turn ``t``'s prompt, its ``output_len`` output and ``user_tokens`` new
    tokens. Sessions start at the times of ``arrivals`` (default Poisson, 1 session/s); turn ``t + 1``
    is sent ``think_time_s`` after turn ``t`` completes (``sessions``; its ``arrival_s``, turn ``t``'s
    arrival + ``think_time_s``, orders the trace and is used where turn links are not followed:
    P/D disaggregation, or a retimed trace)."""
    N = _count("num_sessions", num_sessions)
    T = _count("turns", turns)
    S = _count("system_prompt_len", system_prompt_len, 0)
    U = _count("user_tokens", user_tokens)
    O = _count("output_len", output_len)
    if isinstance(think_time_s, bool) or not isinstance(think_time_s, (int, float)) or not (
            math.isfinite(think_time_s) and think_time_s >= 0):
        raise ConfigError(f"`think_time_s` must be a finite number >= 0, got {think_time_s!r}")
    arrivals = arrivals or PoissonArrivals(rate_per_s=1.0)
    if arrivals.closed_loop is not None:
        raise ConfigError("multi-turn sessions take open-loop session arrivals (a rate), not a closed loop")
    start = arrivals.times(N, stream(seed, "arrivals"))
    bt = SYNTHETIC_BLOCK_TOKENS
    system = (name_key("multi-turn-system"), S)
    arrival, prompt, tokens, rows, ids, prev = [], [], [], [], [], []
    for s in range(N):
        key = name_key("multi-turn-session", s)
        p = S + U
        for t in range(T):
            prev.append(len(arrival) - 1 if t else -1)
            arrival.append(float(start[s]) + t * float(think_time_s))
            prompt.append(p)
            tokens.append(p + O)
            rows.append(stream_ids(key, p + O, bt, system))
            ids.append(f"s{s}-t{t}")
            p += O + U
    prefix = PrefixIds.from_lists(rows, tokens, bt)
    sessions = Sessions(np.array(prev, dtype=np.int64), np.full(len(prev), float(think_time_s)))
    return _sorted_trace(np.array(arrival, dtype=np.float64), np.array(prompt, dtype=np.int64),
                         np.full(len(prompt), O, dtype=np.int64), np.array(ids, dtype=object), name, None, prefix,
                         sessions)


# ---------------------------------------------------------------------------------------------- named workloads
WORKLOADS = NameIndex("workload")
WORKLOADS.add("azure-conv", ("azure-conversation", "azure-2023-conv", "conv"))
WORKLOADS.add("azure-code", ("azure-2023-code", "code"))
WORKLOADS.add("arxiv-summarization", ("arxiv", "arxiv-summarisation", "arxiv-summarization-llama2"))
WORKLOADS.add("mooncake-conversation", ("mooncake-conv", "mooncake", "kimi-conversation"))
WORKLOADS.add("mooncake-synthetic", ("mooncake-synth",))
WORKLOADS.add("shared-prefix", ("generated-shared-prefix", "gsp"))
WORKLOADS.add("multi-turn", ("multi-turn-chat", "chat"))

_WORKLOAD_FILES = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "arxiv-summarization": "arxiv_summarization_llama2.csv",
    "mooncake-conversation": "mooncake_conversation_trace.jsonl.gz",
    "mooncake-synthetic": "mooncake_synthetic_trace.jsonl.gz",
}
#: Generated workloads and the function that builds them from ``params``.
_SYNTHETIC = {"shared-prefix": shared_prefix, "multi-turn": multi_turn}


def workload_names() -> tuple[str, ...]:
    return WORKLOADS.names()


def load_workload(name: str, *, arrivals: ArrivalProcess | None = None, seed: int = 0,
                  limit: int | None = None, params: dict | None = None) -> RequestTrace:
    """A bundled workload by name (see ``workloads/data/workloads/README.md``).

    The Azure and Mooncake traces keep their recorded arrivals unless ``arrivals`` replaces them; the
    length-only ``arxiv-summarization`` needs ``arrivals`` (default ``PoissonArrivals(rate_per_s=1.0)``).
    ``limit`` keeps the first ``limit`` requests. The generated ``shared-prefix`` and ``multi-turn``
    take their settings from ``params`` (the keyword arguments of :func:`shared_prefix` and
    :func:`multi_turn`; ``limit`` is shared-prefix's ``num_requests`` unless ``params`` gives it).
    """
    import difflib
    import inspect

    canonical = WORKLOADS.resolve(name)
    params = dict(params or {})
    if canonical in _SYNTHETIC:
        fn = _SYNTHETIC[canonical]
        allowed = [p for p in inspect.signature(fn).parameters if p not in ("arrivals", "seed", "name")]
        for key in params:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"workload {canonical!r}: unknown parameter {key!r}{hint}; allowed: "
                                  f"{', '.join(allowed)}")
        if canonical == "shared-prefix" and limit is not None:
            params.setdefault("num_requests", limit)
        trace = fn(arrivals=arrivals, seed=seed, name=canonical, **params)
        return trace.head(limit) if limit is not None else trace
    if params:
        raise ConfigError(f"workload {canonical!r} is a recorded trace and takes no parameters (got "
                          f"{', '.join(map(repr, params))}); parameters are for shared-prefix and multi-turn")
    path = DATA_DIR / _WORKLOAD_FILES[canonical]
    if canonical.startswith("mooncake"):
        trace = load_mooncake_jsonl(path)
        if arrivals is not None:
            trace = trace.with_arrivals(arrivals.times(len(trace), stream(seed, "arrivals")), arrivals.closed_loop)
    elif canonical == "arxiv-summarization":
        trace = load_lengths_csv(path, arrivals or PoissonArrivals(rate_per_s=1.0), seed=seed)
    else:
        trace = load_azure_csv(path, shipped=True)
        if arrivals is not None:
            n = len(trace)
            trace = RequestTrace(arrivals.times(n, stream(seed, "arrivals")), trace.prompt_tokens.copy(),
                                 trace.output_tokens.copy(), trace.request_id.copy(), trace.name, arrivals.closed_loop)
    trace = RequestTrace(trace.arrival_s, trace.prompt_tokens, trace.output_tokens, trace.request_id, canonical,
                         trace.closed_loop, trace.prefix, trace.sessions)
    return trace.head(limit) if limit is not None else trace
