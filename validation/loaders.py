"""Loaders that turn measured kernel files into one standard measurement table.

Three public sources of real-GPU operator timings are understood (copies with their licences live in
``validation/data/kernels/``, see the README there):

* ``aiconfigurator`` -- ai-dynamo/aiconfigurator ``*_perf.parquet`` tables (one row per measured case,
  columns ``device``, ``op_name``, ``kernel_source``, the shape columns and ``latency`` in ms).
* ``vidur`` -- microsoft/vidur profiles: ``compute/<device>/<org>/<model>/mlp.csv`` (per-op latencies of
  one transformer layer, ``time_stats.<op>.{min,max,mean,median,std}`` in ms) and
  ``network/<device>/{all_reduce,send_recv}.csv`` (NCCL collectives, ``size`` in bytes).
* ``llmcompass`` -- PrincetonUniversity/LLMCompass artifact (``ae/figure5``) headerless CSVs
  ``matmul_A100.csv``, ``softmax_A100.csv``, ``layernorm_A100.csv``, ``gelu_A100.csv``,
  ``transformer_A100.csv`` and ``transformerAR_A100.csv``.

Every loader returns a :class:`pandas.DataFrame` with exactly :data:`COLUMNS` (string columns hold
``''`` and numeric columns ``NaN`` where a field does not apply), ``measured_s`` in **seconds**,
``message_bytes`` in **bytes**, shapes **per GPU**.  Rows come in a deterministic order: files in
sorted path order, then source rows in file order (a vidur row expands into its ops in column order).

Columns (see :data:`COLUMNS`): ``source`` (path as given or as walked), ``group`` (``"<file stem> |
<kind>"``; vidur ``mlp.csv`` and LLMCompass transformer breakdowns use the source op name instead of
the kind, e.g. ``"mlp | attn_pre_proj"``, because they hold several ops of one kind; a group name is
unique per file, not across files -- combine with ``source``), ``row`` (0-based row of the source table;
for headerless LLMCompass files the 0-based line), ``kind`` (one of :data:`KINDS`, or ``''`` for a row
that could not be mapped, with ``variant`` saying why), ``op`` (the source's own op name), ``device``
(raw: aiconfigurator's ``device``, vidur's path component such as ``a100`` / ``h100_dgx``, LLMCompass's
file suffix ``A100``), ``model`` (vidur ``<org>/<model>``), ``dtype`` / ``kv_dtype`` (normalised:
bf16, fp16, fp8, fp8_block, int8, int4_wo, w4a16_mxfp4, fp32), ``kernel`` (kernel_source / backend /
how it was timed), ``timing`` (``graph``: the harness replayed a CUDA graph of the call, so the time
is the GPU's; ``eager``: back-to-back eager calls between two events, so a call the host dispatches more
slowly than the GPU runs it measures the host; ``''``: not known), GEMM ``m, n, k`` (tokens x out x in; ``batch`` only for batched matmuls), attention
``batch, seq, ctx, heads, kv_heads, head_dim, window``, ``tokens, hidden, inter``, MoE ``topk, experts,
moe_tp, moe_ep, distribution``, ``tp`` (vidur workers; 4 for the LLMCompass TP-4 layer), collectives
``num_gpus, message_bytes``, ``measured_s``, ``variant`` and ``shape_key``.

``shape_key`` is ``kind|dtype`` followed by every shape field the row has (``|m=128|n=4096|k=8192``,
whole numbers without a decimal point) and, for norm / activation / unmapped rows, the variant.  It
leaves out device, model, kernel, tp and the measurement, so one shape measured on several devices or
by several kernels gets one key (and :func:`split_of` puts it on one side).

Unit and layout findings (checked against the sources' own code):

* aiconfigurator ``latency`` is milliseconds per call.  ``nccl_perf.message_size`` is in *elements* of
  ``nccl_dtype`` (``collect_nccl.py`` logs ``size // bytes_per_element`` where ``size`` is the
  nccl-tests byte size, so ``message_bytes`` is the nccl-tests buffer size; for all_gather /
  reduce_scatter that is the full, gathered buffer).  ``custom_allreduce_perf.message_size`` is also in
  *elements* (of ``allreduce_dtype``, bfloat16): ``collect_all_reduce.py`` builds a tensor of
  ``message_size`` elements (``[1, size]`` or ``[size // 4096, 4096]``) and logs ``size`` unchanged.
  The data agree: on 8 H100s NCCL all-reduce of 268,435,456 half elements and the custom all-reduce of
  268,435,456 bf16 elements both take 2.11 ms.  Both are multiplied by the element size here.
  Some cases are measured twice (every case of the H100 ``nccl_perf``, 408 cases of the A100
  ``context_attention_perf``, duplicated vidur rows); repeats are kept as separate rows.
* vidur profiles in **fp16** (``mlp_wrapper.py``: ``model.to(dtype=torch.float16)``; collectives use
  ``torch.float16`` buffers and log ``size * 2`` bytes).  Heads are split evenly over tensor-parallel
  workers (``num_q_heads // world_size``, ``num_kv_heads // world_size``; ``head_dim = n_embd /
  n_head``), the fused QKV projection is column-parallel with ``(n_head + 2 n_kv_head) head_dim``
  outputs, ``o_proj``/``down_proj`` are row-parallel, the gated up-projection has
  ``2 n_expanded_embd`` outputs.  ``time_stats`` are milliseconds (CUDA events / kineto ``dur * 1e-3``).
  ``emb``, the norms and ``add`` act on the full ``n_embd`` (not split).  Llama's norms are RMSNorm.
* LLMCompass micro-benchmarks (all fp16, wall-clock median including launch):
  ``matmul``: ``M, N, K, <latency>ms, <TFLOPS>Tflops`` (latency taken from the ms field);
  ``softmax`` / ``layernorm``: ``M, N, throughput`` with throughput ``M*N/latency/1e9`` (G elements/s),
  softmax over the last dim (``N``); ``gelu``: ``M, throughput`` for a 1-D tensor of ``M`` elements,
  throughput ``M/latency/1e9`` (loaded as ``tokens = 1``, ``inter = M``).  Layernorm is
  ``torch.compile(torch.layer_norm)`` (``tokens = M``, ``hidden = N``), GeLU is
  ``torch.compile(gelu(approximate='tanh'))``; ``measured_s`` is recovered from the throughput.
* LLMCompass ``transformer_A100.csv`` / ``transformerAR_A100.csv``: twelve lines, one per category of
  ``plot_transformer.py`` (Q_K_V, Q_mul_K, A_mul_V, Wo_proj, W1_proj, W2_proj, Softmax,
  LayerNorm_MHA, LayerNorm_FFN, GeLU, AllReduce_MHA, AllReduce_FFN), values in **seconds**, for one
  GPT-3 175B layer (d_model 12288, 96 heads) on one of 4 A100s (TP 4), batch 8, sequence 2048;
  the AR (decode) file is one new token against a KV cache of 2048 + 1024 tokens (3073 after the
  concat).  ``Q_K_V`` is ``3 x`` one Q projection timing (``run_on_gpu`` times Q_proj once and
  multiplies by 3), so it is loaded as one ``[b*s, d] x [d, d/4]`` GEMM with the value divided by 3.
  ``Q_mul_K`` / ``A_mul_V`` are ``torch.bmm`` over ``batch x heads/TP = 192`` matrices (``batch``
  column = 192).  ``LayerNorm_*`` values are ``run_on_gpu() - gpu_kernel_launch_overhead()`` (noted
  in ``kernel``).  LLMCompass writes one LayerNorm and one AllReduce measurement twice (MHA and FFN
  lines); the second copy gets kind ``''`` with ``variant`` saying so, so nothing is counted twice.
  The AllReduce values are not produced by ``run_on_gpu`` (it sets all-reduce time to 0); they are
  hand-entered in the artifact for the fp16 ``[b, s, d]`` all-reduce over 4 GPUs (noted in ``kernel``).
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from llmsim.workloads.errors import ConfigError, TraceError, UnknownNameError

__all__ = [
    "COLUMNS",
    "FORMATS",
    "KINDS",
    "detect_format",
    "load_aiconfigurator",
    "load_llmcompass",
    "load_llmservingsim",
    "load_measurements",
    "load_vidur",
    "normalize_dtype",
    "split_of",
]

#: The standard measurement table's columns, in order.
COLUMNS: tuple[str, ...] = (
    "source", "group", "row", "kind", "op", "device", "model", "dtype", "kernel", "timing",
    "m", "n", "k", "batch", "seq", "ctx", "heads", "kv_heads", "head_dim", "window", "kv_dtype",
    "tokens", "hidden", "inter", "topk", "experts", "moe_tp", "moe_ep", "distribution",
    "tp", "num_gpus", "message_bytes", "decode_batch", "decode_ctx", "measured_s", "variant", "shape_key",
)
STR_COLUMNS: frozenset[str] = frozenset({
    "source", "group", "kind", "op", "device", "model", "dtype", "kernel", "timing", "kv_dtype",
    "distribution", "variant", "shape_key",
})
FLOAT_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in STR_COLUMNS and c != "row")

#: Operator kinds a mapped row can have ('' marks a row that could not be mapped; see ``variant``).
KINDS: tuple[str, ...] = (
    "gemm", "attn_prefill", "attn_decode", "moe", "norm", "rope", "activation", "add", "embedding",
    "softmax", "sampling", "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "attn_mixed",
)
FORMATS: tuple[str, ...] = ("aiconfigurator", "vidur", "llmcompass", "llmservingsim")

# Fields that make up ``shape_key`` (after kind and dtype), in order.  Device, model, kernel, tp and
# the measurement are deliberately left out: the key names *what* was computed, not where or how fast.
_KEY_FIELDS: tuple[str, ...] = (
    "batch", "m", "n", "k", "seq", "ctx", "heads", "kv_heads", "head_dim", "window", "kv_dtype",
    "tokens", "hidden", "inter", "topk", "experts", "moe_tp", "moe_ep", "distribution",
    "num_gpus", "message_bytes", "decode_batch", "decode_ctx",
)
# Kinds whose ``variant`` changes the maths (rmsnorm vs layernorm, silu_mul vs gelu) and so is part of
# the key; for the others it names a backend or topology ('vllm_graph', 'devices_per_node=8').
_VARIANT_IN_KEY = frozenset({"norm", "activation", ""})

_DTYPE_ALIASES = {
    "bfloat16": "bf16", "bf16": "bf16", "torch.bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "fp16": "fp16", "torch.float16": "fp16",
    "float32": "fp32", "float": "fp32", "fp32": "fp32", "torch.float32": "fp32",
    "fp8": "fp8", "float8": "fp8", "fp8_e4m3": "fp8", "float8_e4m3fn": "fp8",
    "fp8_block": "fp8_block", "int8": "int8", "int4_wo": "int4_wo", "w4a16_mxfp4": "w4a16_mxfp4",
}
_DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "int8": 1, "fp8": 1, "uint8": 1}


def normalize_dtype(name: object) -> str:
    """Normalise a source's dtype spelling ('bfloat16' -> 'bf16', 'half' -> 'fp16'); '' stays ''."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ""
    s = str(name).strip().lower()
    return _DTYPE_ALIASES.get(s, s)


def _normalize_dtypes(values: np.ndarray) -> np.ndarray:
    if not len(values):
        return np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return np.array([normalize_dtype(u) for u in uniques], dtype=object)[codes]


# --------------------------------------------------------------------------------------------------
# errors and column helpers
# --------------------------------------------------------------------------------------------------

def _err(path: object, msg: str, *, row: int | None = None, line: int | None = None,
         column: str | None = None) -> TraceError:
    where = [str(path)]
    if row is not None:
        where.append(f"row {row}")
    if line is not None:
        where.append(f"line {line}")
    if column is not None:
        where.append(f"column {column!r}")
    return TraceError(", ".join(where) + ": " + msg)


class _Table:
    """A read source table plus what is needed to point at a bad cell (file, row, line, column)."""

    def __init__(self, path: str, df: pd.DataFrame, *, header_lines: int | None):
        self.path = path
        self.df = df
        # CSV: the 1-based line of data row i is i + header_lines + 1; parquet: no lines.
        self.header_lines = header_lines

    def line_of(self, row: int) -> int | None:
        return None if self.header_lines is None else int(row) + self.header_lines + 1

    def require(self, *cols: str) -> None:
        missing = [c for c in cols if c not in self.df.columns]
        if missing:
            shown = ", ".join(repr(str(c)) for c in list(self.df.columns)[:40])
            raise _err(self.path, f"missing required column {missing[0]!r} (columns present: {shown})",
                       line=1 if self.header_lines is not None else None, column=missing[0])

    def fail(self, row: int, column: str, msg: str) -> TraceError:
        return _err(self.path, msg, row=int(row), line=self.line_of(row), column=column)

    def num(self, col: str, rows: np.ndarray | None = None, *, allow_nan: bool = False,
            positive: bool = False, integer: bool = False) -> np.ndarray:
        """Column ``col`` (restricted to ``rows``, positions) as float64, validated."""
        self.require(col)
        s = self.df[col]
        if rows is not None:
            s = s.iloc[rows]
        pos = np.arange(len(self.df)) if rows is None else np.asarray(rows)
        if pd.api.types.is_bool_dtype(s.dtype):
            v = s.to_numpy(dtype=float)
            present = np.ones(len(v), dtype=bool)
        else:
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            present = s.notna().to_numpy()
        bad = np.flatnonzero(np.isnan(v) & present)
        if bad.size:
            i = bad[0]
            raise self.fail(pos[i], col, f"non-numeric value {s.iloc[i]!r}")
        if not allow_nan:
            miss = np.flatnonzero(np.isnan(v))
            if miss.size:
                raise self.fail(pos[miss[0]], col, "missing value")
        with np.errstate(invalid="ignore"):
            inf = np.flatnonzero(np.isinf(v))
            if inf.size:
                raise self.fail(pos[inf[0]], col, f"non-finite value {v[inf[0]]!r}")
            neg = np.flatnonzero(v < 0)
            if neg.size:
                raise self.fail(pos[neg[0]], col, f"negative value {_fmt_scalar(v[neg[0]])}")
            if positive:
                zero = np.flatnonzero(v == 0)
                if zero.size:
                    raise self.fail(pos[zero[0]], col, "value must be positive, got 0")
            if integer:
                frac = np.flatnonzero(~np.isnan(v) & (v != np.floor(v)))
                if frac.size:
                    raise self.fail(pos[frac[0]], col, f"not a whole number: {v[frac[0]]!r}")
        return v

    def text(self, col: str, rows: np.ndarray | None = None, *, default: str | None = None) -> np.ndarray:
        """Column ``col`` as an object array of str ('' for missing); ``default`` if the column is absent."""
        if col not in self.df.columns:
            if default is not None:
                n = len(self.df) if rows is None else len(rows)
                return np.full(n, default, dtype=object)
            self.require(col)
        s = self.df[col]
        if rows is not None:
            s = s.iloc[rows]
        arr = s.to_numpy(dtype=object, na_value="") if s.hasnans else s.to_numpy(dtype=object)
        codes, uniques = pd.factorize(arr)
        if all(isinstance(u, str) for u in uniques):
            return arr
        text = np.array([u if isinstance(u, str) else _fmt_scalar(u) if isinstance(u, (int, float, np.number))
                         and not isinstance(u, bool) else str(u) for u in uniques], dtype=object)
        return text[codes] if len(codes) else arr

    def boolean(self, col: str, rows: np.ndarray) -> np.ndarray:
        self.require(col)
        s = self.df[col].iloc[rows]
        if pd.api.types.is_bool_dtype(s.dtype):
            return s.to_numpy(dtype=bool)
        out = np.empty(len(s), dtype=bool)
        for i, x in enumerate(s.tolist()):
            t = str(x).strip().lower()
            if t in ("true", "1", "1.0", "yes"):
                out[i] = True
            elif t in ("false", "0", "0.0", "no"):
                out[i] = False
            else:
                raise self.fail(rows[i], col, f"not a boolean: {x!r}")
        return out


def _fmt_scalar(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _fmt_array(v: np.ndarray) -> np.ndarray:
    """Numbers as text: whole numbers without a decimal point, others with repr()."""
    uniq, inv = np.unique(v, return_inverse=True)
    text = np.empty(len(uniq), dtype=object)
    whole = np.isfinite(uniq) & (uniq == np.floor(uniq)) & (np.abs(uniq) < 2.0 ** 53)
    if whole.any():
        text[whole] = uniq[whole].astype(np.int64).astype(str).astype(object)
    for i in np.flatnonzero(~whole):
        text[i] = repr(float(uniq[i]))
    return text[inv.reshape(-1)]


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise _err(path, "empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise _err(path, f"cannot parse CSV: {e}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _err(path, f"cannot read file: {e}") from None


def _read_parquet(path: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, TypeError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise _err(path, f"cannot read parquet file: {e}") from None
    except Exception as e:  # other pyarrow errors (ArrowException) are still an unreadable file
        if type(e).__module__.startswith("pyarrow"):
            raise _err(path, f"cannot read parquet file: {e}") from None
        raise


# --------------------------------------------------------------------------------------------------
# building the standard table
# --------------------------------------------------------------------------------------------------

def _frame(n: int, cols: dict, *, order: int = 0) -> dict[str, np.ndarray]:
    """A chunk of ``n`` standard-table rows as column arrays (scalars broadcast, absent -> ''/NaN).

    ``order`` breaks ties between chunks that share source rows (vidur: one chunk per op)."""
    data: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c == "shape_key":
            continue
        v = cols.get(c)
        if c in STR_COLUMNS:
            if v is None:
                arr = np.full(n, "", dtype=object)
            elif isinstance(v, str):
                arr = np.full(n, v, dtype=object)
            else:
                arr = np.asarray(v, dtype=object)
        elif c == "row":
            arr = np.asarray(v, dtype=np.int64)
        else:
            arr = np.full(n, np.nan) if v is None else np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()
        if len(arr) != n:  # pragma: no cover - internal consistency
            raise AssertionError(f"column {c}: {len(arr)} values for {n} rows")
        data[c] = arr
    data["shape_key"] = _shape_keys(data, n)
    data["_order"] = np.full(n, order, dtype=np.int64)
    return data


def _shape_keys(data: dict[str, np.ndarray], n: int) -> np.ndarray:
    kind = data["kind"]
    unmapped = kind == ""
    base = kind.copy()
    if unmapped.any():
        base[unmapped] = "unmapped:" + data["op"][unmapped]
    keys = base + "|" + data["dtype"]
    for f in _KEY_FIELDS:
        v = data[f]
        if f in STR_COLUMNS:
            have = v != ""
            if not have.any():
                continue
            seg = np.full(n, "", dtype=object)
            seg[have] = f"|{f}=" + v[have]
        else:
            have = ~np.isnan(v)
            if not have.any():
                continue
            seg = np.full(n, "", dtype=object)
            seg[have] = f"|{f}=" + _fmt_array(v[have])
        keys = keys + seg
    with_variant = np.isin(kind, list(_VARIANT_IN_KEY)) & (data["variant"] != "")
    if with_variant.any():
        seg = np.full(n, "", dtype=object)
        seg[with_variant] = "|variant=" + data["variant"][with_variant]
        keys = keys + seg
    return keys


def _finish(chunks: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One DataFrame from chunks, ordered by (source row, chunk order), with the final dtypes."""
    if not chunks:
        chunks = [_frame(0, {"row": np.zeros(0, dtype=np.int64)})]
    data = {c: np.concatenate([ch[c] for ch in chunks]) for c in (*COLUMNS, "_order")}
    idx = np.lexsort((data["_order"], data["row"]))  # lexsort is stable
    if not np.array_equal(idx, np.arange(len(idx))):
        data = {c: v[idx] for c, v in data.items()}
    return pd.DataFrame({
        c: pd.Series(data[c], dtype=str) if c in STR_COLUMNS else pd.Series(data[c])
        for c in COLUMNS
    })


def _empty() -> pd.DataFrame:
    return _finish([])


def _override(df: pd.DataFrame, device: str | None, model: str | None) -> pd.DataFrame:
    if device is not None:
        df["device"] = str(device)
    if model is not None:
        df["model"] = str(model)
    return df


# --------------------------------------------------------------------------------------------------
# aiconfigurator
# --------------------------------------------------------------------------------------------------

_NCCL_OPS = {"all_gather": "all_gather", "alltoall": "all_to_all", "all_to_all": "all_to_all",
             "reduce_scatter": "reduce_scatter", "all_reduce": "all_reduce"}


def _aiconfigurator_gemm_timing(dtype: np.ndarray) -> np.ndarray:
    """How aiconfigurator's vLLM collector timed each GEMM: a CUDA graph of the layer, except the
    block-scaled FP8 layers, which it runs eagerly (``collector/vllm/collect_gemm.py``:
    ``benchmark_with_power(..., use_cuda_graph=gemm_type != "fp8_block")``; ``collector/helper.py`` then
    times ``num_runs`` back-to-back eager calls between two CUDA events [S: read from the collector's
    source]). A table with a ``timing`` column of its own says so itself."""
    return np.where(dtype == "fp8_block", "eager", "graph").astype(object)


def load_aiconfigurator(path: str | os.PathLike, *, device: str | None = None,
                        model: str | None = None) -> pd.DataFrame:
    """Load one aiconfigurator ``*_perf.parquet`` table into the standard table.

    Handles ``gemm``, ``context_attention``, ``generation_attention``, ``moe``, NCCL collectives
    (tables with ``nccl_dtype``) and the vLLM custom all-reduce (tables with ``allreduce_dtype``);
    rows with another ``op_name`` are kept with kind ``''`` and a ``variant`` saying so.
    """
    path = str(path)
    t = _Table(path, _read_parquet(path), header_lines=None)
    t.require("op_name", "latency")
    df = t.df
    stem = Path(path).stem
    n_all = len(df)
    ops = t.text("op_name")
    dev = t.text("device", default="")
    kern = t.text("kernel_source", default="")
    latency = t.num("latency", positive=True)
    chunks: list[pd.DataFrame] = []

    def common(rows: np.ndarray, kind: str, **cols) -> pd.DataFrame:
        base = dict(source=path, group=f"{stem} | {kind or cols.get('op_unmapped', '')}", row=rows,
                    kind=kind, op=ops[rows], device=dev[rows], kernel=kern[rows],
                    measured_s=latency[rows] * 1e-3)
        cols.pop("op_unmapped", None)
        base.update(cols)
        return _frame(len(rows), base)

    def dtype_col(col: str, rows: np.ndarray) -> np.ndarray:
        return _normalize_dtypes(t.text(col, rows, default=""))

    handled = np.zeros(n_all, dtype=bool)

    rows = np.flatnonzero(ops == "gemm")
    if rows.size:
        handled[rows] = True
        gemm_dtype = dtype_col("gemm_dtype", rows) if "gemm_dtype" in df else np.full(rows.size, "", dtype=object)
        timing = t.text("timing", rows, default="") if "timing" in df else _aiconfigurator_gemm_timing(gemm_dtype)
        chunks.append(common(rows, "gemm", dtype=gemm_dtype, timing=timing,
                             m=t.num("m", rows, positive=True, integer=True),
                             n=t.num("n", rows, positive=True, integer=True),
                             k=t.num("k", rows, positive=True, integer=True)))

    for op, kind in (("context_attention", "attn_prefill"), ("generation_attention", "attn_decode")):
        rows = np.flatnonzero(ops == op)
        if not rows.size:
            continue
        handled[rows] = True
        t.require("batch_size", "num_heads", "num_key_value_heads", "head_dim")
        if kind == "attn_prefill":
            seq = t.num("isl", rows, positive=True, integer=True)
            ctx = t.num("step", rows, integer=True) if "step" in df else np.zeros(rows.size)
        else:
            seq = np.ones(rows.size)
            ctx = t.num("step", rows, integer=True)
        window = t.num("window_size", rows, integer=True) if "window_size" in df else np.zeros(rows.size)
        chunks.append(common(
            rows, kind, dtype=dtype_col("attn_dtype", rows),
            batch=t.num("batch_size", rows, positive=True, integer=True), seq=seq, ctx=ctx,
            heads=t.num("num_heads", rows, positive=True, integer=True),
            kv_heads=t.num("num_key_value_heads", rows, positive=True, integer=True),
            head_dim=t.num("head_dim", rows, positive=True, integer=True),
            window=window, kv_dtype=dtype_col("kv_cache_dtype", rows)))

    rows = np.flatnonzero(ops == "moe")
    if rows.size:
        handled[rows] = True
        t.require("moe_dtype")
        chunks.append(common(
            rows, "moe", dtype=dtype_col("moe_dtype", rows),
            tokens=t.num("num_tokens", rows, positive=True, integer=True),
            hidden=t.num("hidden_size", rows, positive=True, integer=True),
            inter=t.num("inter_size", rows, positive=True, integer=True),
            topk=t.num("topk", rows, positive=True, integer=True),
            experts=t.num("num_experts", rows, positive=True, integer=True),
            moe_tp=t.num("moe_tp_size", rows, positive=True, integer=True),
            moe_ep=t.num("moe_ep_size", rows, positive=True, integer=True),
            distribution=t.text("distribution", rows, default="")))

    coll_rows = np.flatnonzero(np.isin(ops, list(_NCCL_OPS)))
    if coll_rows.size:
        if "nccl_dtype" in df.columns:
            dcol, custom = "nccl_dtype", False
        elif "allreduce_dtype" in df.columns:
            dcol, custom = "allreduce_dtype", True
            not_ar = coll_rows[ops[coll_rows] != "all_reduce"]
            if not_ar.size:
                raise t.fail(not_ar[0], "op_name",
                             f"{ops[not_ar[0]]!r} in a custom all-reduce table (allreduce_dtype column)")
        else:
            raise _err(path, "collective rows need an 'nccl_dtype' or 'allreduce_dtype' column",
                       column="nccl_dtype")
        handled[coll_rows] = True
        dts = dtype_col(dcol, coll_rows)
        elem = np.empty(coll_rows.size)
        for i, d in enumerate(dts):
            if d not in _DTYPE_BYTES:
                raise t.fail(coll_rows[i], dcol, f"unknown element type {d!r} (known: {sorted(_DTYPE_BYTES)})")
            elem[i] = _DTYPE_BYTES[d]
        size = t.num("message_size", coll_rows, positive=True, integer=True)
        gpus = t.num("num_gpus", coll_rows, positive=True, integer=True)
        kinds = np.array([_NCCL_OPS[o] for o in ops[coll_rows]], dtype=object)
        variant = t.text("backend", coll_rows, default="") if custom else ""
        for kind in sorted(set(kinds)):
            sel = kinds == kind
            chunks.append(common(
                coll_rows[sel], kind, dtype=dts[sel], num_gpus=gpus[sel],
                message_bytes=size[sel] * elem[sel],
                variant=variant if isinstance(variant, str) else variant[sel]))

    rest = np.flatnonzero(~handled)
    for op in sorted(set(ops[rest])):
        rows = rest[ops[rest] == op]
        chunks.append(common(rows, "", op_unmapped=op, variant=f"unmapped aiconfigurator op {op!r}"))

    return _override(_finish(chunks), device, model)


# --------------------------------------------------------------------------------------------------
# vidur
# --------------------------------------------------------------------------------------------------

_TS = re.compile(r"^time_stats\.(.+)\.median$")
_VIDUR_NET_KINDS = {"all_reduce": "all_reduce", "send_recv": "send_recv",
                    "all_gather": "all_gather", "reduce_scatter": "reduce_scatter"}


def _vidur_path_parts(path: str) -> tuple[str, str, str]:
    """(layout, device, model) from ``.../compute/<dev>/<org>/<model>/mlp.csv`` or
    ``.../network/<dev>/<coll>.csv``; '' where the path does not follow the layout."""
    parts = Path(path).parts
    if len(parts) >= 5 and parts[-5] == "compute":
        return "compute", parts[-4], f"{parts[-3]}/{parts[-2]}"
    if len(parts) >= 3 and parts[-3] == "network":
        return "network", parts[-2], ""
    return "", "", ""


def load_vidur(path: str | os.PathLike, *, device: str | None = None,
               model: str | None = None) -> pd.DataFrame:
    """Load a vidur profile: ``mlp.csv`` (one output row per input row and timed op) or a network
    ``all_reduce.csv`` / ``send_recv.csv``.  Device and model come from the path unless given."""
    path = str(path)
    t = _Table(path, _read_csv(path), header_lines=1)
    ts_ops = [(c, _TS.match(str(c)).group(1)) for c in t.df.columns if _TS.match(str(c))]
    if not ts_ops:
        raise _err(path, "no 'time_stats.<op>.median' column: not a vidur profile", line=1,
                   column="time_stats.<op>.median")
    _, dev_path, model_path = _vidur_path_parts(path)
    if "num_workers" in t.df.columns or "collective" in t.df.columns:
        # network profiles sit under '<gpu>_dgx': the GPU is the device, the node its topology
        out = _vidur_network(t, ts_ops, dev_path.removesuffix("_dgx"))
    else:
        out = _vidur_mlp(t, ts_ops, dev_path, model_path)
    return _override(out, device, model)


def _vidur_mlp(t: _Table, ts_ops: list[tuple[str, str]], dev: str, model: str) -> pd.DataFrame:
    path = t.path
    stem = Path(path).stem
    t.require("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tokens", "num_tensor_parallel_workers")
    nh = t.num("n_head", positive=True, integer=True)
    nkv = t.num("n_kv_head", positive=True, integer=True)
    emb = t.num("n_embd", positive=True, integer=True)
    ff = t.num("n_expanded_embd", positive=True, integer=True)
    tok = t.num("num_tokens", positive=True, integer=True)
    tp = t.num("num_tensor_parallel_workers", positive=True, integer=True)
    for col, num, den in (("n_embd", emb, nh), ("n_head", nh, tp), ("n_kv_head", nkv, tp),
                          ("n_expanded_embd", ff, tp), ("n_embd", emb, tp)):
        bad = np.flatnonzero(np.mod(num, den) != 0)
        if bad.size:
            what = "n_head" if den is nh else "num_tensor_parallel_workers"
            raise t.fail(bad[0], col, f"{_fmt_scalar(num[bad[0]])} is not divisible by {what}="
                                      f"{_fmt_scalar(den[bad[0]])}")
    hd = emb / nh
    needs_gate = any(op in ("mlp_up_proj", "mlp_act") for _, op in ts_ops)
    gated = t.boolean("use_gated_mlp", np.arange(len(t.df))) if needs_gate else None
    chunks = []
    for order, (col, op) in enumerate(ts_ops):
        med = t.num(col, allow_nan=True, positive=True)
        rows = np.flatnonzero(~np.isnan(med))
        if not rows.size:
            continue
        r = rows
        c: dict = dict(source=path, group=f"{stem} | {op}", row=r, op=op, device=dev, model=model,
                       dtype="fp16", tp=tp[r], measured_s=med[r] * 1e-3)
        if op == "emb":
            c.update(kind="embedding", tokens=tok[r], hidden=emb[r])
        elif op in ("input_layernorm", "post_attention_layernorm"):
            c.update(kind="norm", variant="rmsnorm", tokens=tok[r], hidden=emb[r])
        elif op == "attn_pre_proj":
            c.update(kind="gemm", m=tok[r], n=(nh[r] + 2 * nkv[r]) * hd[r] / tp[r], k=emb[r])
        elif op == "attn_post_proj":
            c.update(kind="gemm", m=tok[r], n=emb[r], k=nh[r] * hd[r] / tp[r])
        elif op == "mlp_up_proj":
            c.update(kind="gemm", m=tok[r], n=np.where(gated[r], 2.0, 1.0) * ff[r] / tp[r], k=emb[r])
        elif op == "mlp_down_proj":
            c.update(kind="gemm", m=tok[r], n=emb[r], k=ff[r] / tp[r])
        elif op == "mlp_act":
            c.update(kind="activation", variant=np.where(gated[r], "silu_mul", "gelu").astype(object),
                     tokens=tok[r], inter=ff[r] / tp[r])
        elif op == "attn_rope":
            c.update(kind="rope", tokens=tok[r], heads=nh[r] / tp[r], kv_heads=nkv[r] / tp[r], head_dim=hd[r])
        elif op == "add":
            c.update(kind="add", tokens=tok[r], hidden=emb[r])
        else:
            c.update(kind="", variant=f"unmapped vidur op {op!r}", tokens=tok[r])
        chunks.append(_frame(len(r), c, order=order))
    return _finish(chunks)


def _vidur_network(t: _Table, ts_ops: list[tuple[str, str]], dev: str) -> pd.DataFrame:
    path = t.path
    stem = Path(path).stem
    if len(ts_ops) != 1:
        raise _err(path, f"expected one 'time_stats.<collective>.median' column, found {[c for c, _ in ts_ops]}",
                   line=1, column=ts_ops[1][0])
    col, coll = ts_ops[0]
    t.require("num_workers", "size", "devices_per_node")
    med = t.num(col, allow_nan=True, positive=True)
    rows = np.flatnonzero(~np.isnan(med))
    workers = t.num("num_workers", rows, positive=True, integer=True)
    size = t.num("size", rows, positive=True, integer=True)
    dpn = t.num("devices_per_node", rows, positive=True, integer=True)
    kind = _VIDUR_NET_KINDS.get(coll, "")
    variant = np.array([f"devices_per_node={_fmt_scalar(x)}" for x in dpn], dtype=object)
    if not kind:
        variant = np.array([f"unmapped vidur collective {coll!r}; " + v for v in variant], dtype=object)
    out = _finish([_frame(len(rows), dict(
        source=path, group=f"{stem} | {kind or coll}", row=rows, kind=kind, op=coll, device=dev,
        dtype="fp16", kernel="nccl", num_gpus=workers, message_bytes=size, measured_s=med[rows] * 1e-3,
        variant=variant))])
    return out


# --------------------------------------------------------------------------------------------------
# LLMCompass
# --------------------------------------------------------------------------------------------------

_LLMC_KINDS = ("transformerAR", "transformer", "matmul", "softmax", "layernorm", "gelu")
_LLMC_FIELDS = {
    "matmul": ("M", "N", "K", "latency_ms", "tflops"),
    "softmax": ("M", "N", "throughput_gelem_s"),
    "layernorm": ("M", "N", "throughput_gelem_s"),
    "gelu": ("M", "throughput_gelem_s"),
    "transformer": ("latency_s",),
    "transformerAR": ("latency_s",),
}
_TRANSFORMER_CATEGORIES = ("Q_K_V", "Q_mul_K", "A_mul_V", "Wo_proj", "W1_proj", "W2_proj", "Softmax",
                           "LayerNorm_MHA", "LayerNorm_FFN", "GeLU", "AllReduce_MHA", "AllReduce_FFN")
# GPT-3 175B layer of LLMCompass ae/figure5/ijkl/test_transformer.py
_GPT3 = dict(d=12288, h=96, tp=4, b=8, s=2048, out=1024)


def _llmcompass_kind(path: str) -> tuple[str, str]:
    """(benchmark, device) from a file name such as ``matmul_A100.csv``; benchmark '' if unknown."""
    stem = Path(path).stem
    for kind in _LLMC_KINDS:
        if stem == kind or stem.startswith(kind + "_"):
            return kind, stem[len(kind) + 1:]
    return "", ""


def _llmcompass_lines(path: str) -> list[tuple[int, list[str]]]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise _err(path, f"cannot read file: {e}") from None
    return [(i, [f.strip() for f in ln.split(",")]) for i, ln in enumerate(text.splitlines()) if ln.strip()]


def _llmc_number(path: str, row: int, name: str, field: str, suffix: str = "") -> float:
    s = field
    if suffix:
        if not s.lower().endswith(suffix.lower()):
            raise _err(path, f"expected a value ending in {suffix!r}, got {field!r}", row=row, line=row + 1, column=name)
        s = s[: -len(suffix)].strip()
    try:
        v = float(s)
    except ValueError:
        raise _err(path, f"non-numeric value {field!r}", row=row, line=row + 1, column=name) from None
    if not np.isfinite(v):
        raise _err(path, f"non-finite value {field!r}", row=row, line=row + 1, column=name)
    if v < 0:
        raise _err(path, f"negative value {field!r}", row=row, line=row + 1, column=name)
    if v == 0:
        raise _err(path, "value must be positive, got 0", row=row, line=row + 1, column=name)
    return v


def load_llmcompass(path: str | os.PathLike, *, device: str | None = None,
                    model: str | None = None) -> pd.DataFrame:
    """Load an LLMCompass artifact CSV (``matmul_*``, ``softmax_*``, ``layernorm_*``, ``gelu_*``,
    ``transformer_*``, ``transformerAR_*``; device from the name suffix, e.g. ``A100``)."""
    path = str(path)
    bench, dev = _llmcompass_kind(path)
    if not bench:
        raise _err(path, "unknown LLMCompass benchmark: the file name must start with one of "
                         + ", ".join(f"'{k}_'" for k in _LLMC_KINDS))
    names = _LLMC_FIELDS[bench]
    parsed: list[tuple[int, list[float]]] = []
    for row, fields in _llmcompass_lines(path):
        if len(fields) != len(names):
            raise _err(path, f"expected {len(names)} comma-separated fields ({', '.join(names)}), "
                             f"got {len(fields)}", row=row, line=row + 1)
        vals = []
        for name, field in zip(names, fields):
            suffix = "ms" if name == "latency_ms" else ("Tflops" if name == "tflops" else "")
            vals.append(_llmc_number(path, row, name, field, suffix))
            if name in ("M", "N", "K") and not vals[-1].is_integer():
                raise _err(path, f"not a whole number: {field!r}", row=row, line=row + 1, column=name)
        parsed.append((row, vals))
    stem = Path(path).stem
    if bench.startswith("transformer"):
        out = _llmcompass_transformer(path, stem, bench, dev, parsed)
    else:
        rows = np.array([r for r, _ in parsed], dtype=np.int64)
        v = np.array([x for _, x in parsed], dtype=float).reshape(len(parsed), len(names))
        c: dict = dict(source=path, row=rows, op=bench, device=dev, dtype="fp16")
        if bench == "matmul":
            c.update(kind="gemm", m=v[:, 0], n=v[:, 1], k=v[:, 2], measured_s=v[:, 3] * 1e-3,
                     kernel="pytorch matmul (median wall clock)")
        elif bench == "softmax":
            c.update(kind="softmax", m=v[:, 0], n=v[:, 1], measured_s=v[:, 0] * v[:, 1] / (v[:, 2] * 1e9),
                     kernel="torch.softmax (median wall clock)")
        elif bench == "layernorm":
            c.update(kind="norm", variant="layernorm", tokens=v[:, 0], hidden=v[:, 1],
                     measured_s=v[:, 0] * v[:, 1] / (v[:, 2] * 1e9),
                     kernel="torch.compile(torch.layer_norm) (median wall clock)")
        else:  # gelu on a 1-D tensor of M elements
            c.update(kind="activation", variant="gelu", tokens=1.0, inter=v[:, 0],
                     measured_s=v[:, 0] / (v[:, 1] * 1e9),
                     kernel="torch.compile(gelu tanh) (median wall clock)")
        c["group"] = f"{stem} | {c['kind']}"
        out = _finish([_frame(len(rows), c)])
    return _override(out, device, model)


def _llmcompass_transformer(path: str, stem: str, bench: str, dev: str,
                            parsed: list[tuple[int, list[float]]]) -> pd.DataFrame:
    if len(parsed) != len(_TRANSFORMER_CATEGORIES):
        last = parsed[-1][0] if parsed else 0
        raise _err(path, f"expected {len(_TRANSFORMER_CATEGORIES)} lines "
                         f"({', '.join(_TRANSFORMER_CATEGORIES)}), got {len(parsed)}", row=last, line=last + 1)
    g = _GPT3
    d, tp, b = g["d"], g["tp"], g["b"]
    hpg, dh = g["h"] // tp, g["d"] // g["h"]
    decode = bench == "transformerAR"
    tokens = b if decode else b * g["s"]
    kv = g["s"] + g["out"] + 1 if decode else g["s"]  # LLMCompass concatenates the new token: s + 1
    q = 1 if decode else g["s"]
    launch = "median wall clock"
    shapes: dict[str, dict] = {
        "Q_K_V": dict(kind="gemm", m=tokens, n=d // tp, k=d, variant="one of Q/K/V (file value / 3)",
                      kernel=f"pytorch matmul ({launch}); file holds 3 x one projection"),
        "Q_mul_K": dict(kind="gemm", batch=b * hpg, m=q, n=kv, k=dh, variant="batched (Q K^T)",
                        kernel=f"torch.bmm ({launch})"),
        "A_mul_V": dict(kind="gemm", batch=b * hpg, m=q, n=dh, k=kv, variant="batched (A V)",
                        kernel=f"torch.bmm ({launch})"),
        "Wo_proj": dict(kind="gemm", m=tokens, n=d, k=d // tp, kernel=f"pytorch matmul ({launch})"),
        "W1_proj": dict(kind="gemm", m=tokens, n=4 * d // tp, k=d, kernel=f"pytorch matmul ({launch})"),
        "W2_proj": dict(kind="gemm", m=tokens, n=d, k=4 * d // tp, kernel=f"pytorch matmul ({launch})"),
        "Softmax": dict(kind="softmax", m=b * hpg * q, n=kv, kernel=f"torch.softmax ({launch})"),
        "LayerNorm_MHA": dict(kind="norm", variant="layernorm", tokens=tokens, hidden=d,
                              kernel="torch.compile(torch.layer_norm) (median wall clock minus launch overhead)"),
        "GeLU": dict(kind="activation", variant="gelu", tokens=tokens, inter=4 * d // tp,
                     kernel=f"torch.compile(gelu tanh) ({launch})"),
        "AllReduce_MHA": dict(kind="all_reduce", num_gpus=tp, message_bytes=tokens * d * 2,
                              kernel="nccl (value hand-entered in the LLMCompass artifact)"),
    }
    shapes["LayerNorm_FFN"] = dict(shapes["LayerNorm_MHA"])
    shapes["AllReduce_FFN"] = dict(shapes["AllReduce_MHA"])
    by_cat = {cat: vals[0] for cat, (_, vals) in zip(_TRANSFORMER_CATEGORIES, parsed)}
    line_of = {cat: r for cat, (r, _) in zip(_TRANSFORMER_CATEGORIES, parsed)}
    chunks = []
    for cat, (row, vals) in zip(_TRANSFORMER_CATEGORIES, parsed):
        c = dict(shapes[cat])
        value = vals[0] / 3.0 if cat == "Q_K_V" else vals[0]
        twin = {"LayerNorm_FFN": "LayerNorm_MHA", "AllReduce_FFN": "AllReduce_MHA"}.get(cat)
        if twin is not None and by_cat[twin] == by_cat[cat]:
            c["variant"] = f"duplicate of line {line_of[twin] + 1} ({twin}): one measurement written twice"
            c["kind"] = ""
        c.update(source=path, group=f"{stem} | {cat}", row=np.array([row]), op=cat, device=dev,
                 dtype="fp16", tp=float(tp), measured_s=value)
        chunks.append(_frame(1, c))
    return _finish(chunks)


# --------------------------------------------------------------------------------------------------
# LLMServingSim (casys-kaist/LLMServingSim per-layer profiles)
# --------------------------------------------------------------------------------------------------

#: Header of each LLMServingSim table -> its role ('skew' = fitted coefficients, not measurements).
_LSS_HEADERS = {
    ("layer", "tokens", "time_us"): "dense",
    ("layer", "sequences", "time_us"): "per_sequence",
    ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"): "attention",
    ("tokens", "activated_experts", "time_us"): "moe",
    ("pc", "n_label", "skew_rate_label", "kv_big_label", "kp_label", "alpha", "n_samples"): "skew",
}
_LSS_KERNEL = "vLLM 0.19.0 eager, one decoder layer (LLMServingSim profiler)"


def _lss_meta(path: str) -> tuple[dict, int]:
    """(meta.yaml of ``<GPU>/<org>/<model>/<variant>/tp<N>/<file>.csv``, N)."""
    from llmsim.workloads.yamlio import read_yaml

    p = Path(path)
    m = re.fullmatch(r"tp(\d+)", p.parent.name)
    if m is None or int(m.group(1)) < 1:
        raise _err(path, "an LLMServingSim table must sit in a 'tp<N>' folder (N >= 1) of "
                         "<GPU>/<org>/<model>/<variant>/, got folder " + repr(p.parent.name))
    meta_path = p.parent.parent / "meta.yaml"
    try:
        meta = read_yaml(meta_path.read_text(encoding="utf-8"), str(meta_path))
    except OSError as e:
        raise _err(meta_path, f"cannot read the LLMServingSim meta.yaml next to the tp<N> folders: {e}") from None
    if not isinstance(meta, dict):
        raise _err(meta_path, "meta.yaml must be a mapping")
    for key in ("gpu", "model"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise _err(meta_path, f"missing or empty key {key!r}")
    return meta, int(m.group(1))


def _lss_shapes(path: str, meta: dict, tp: int) -> dict:
    """Per-GPU shapes of the profiled model at TP ``tp`` (heads, KV heads and FFN width split by tp).

    The profiler emulates TP N on one GPU by shrinking the model (meta.yaml ``hf_overrides`` records
    the shrunk config of the largest profiled degree); that record is checked against the catalogue.
    """
    from llmsim.workloads.models import get_model

    meta_path = str(Path(path).parent.parent / "meta.yaml")
    try:
        model = get_model(meta["model"])
    except Exception as e:  # an unknown model is a data error here, with the catalogue's suggestions
        raise _err(meta_path, f"model {meta['model']!r} is not in the model catalogue: {e}") from None
    inter = model.moe.expert_intermediate_size if model.moe is not None else model.intermediate_size
    full = dict(num_attention_heads=model.num_heads, num_key_value_heads=model.num_kv_heads,
                intermediate_size=model.intermediate_size, vocab_size=model.vocab_size)
    degrees = meta.get("tp_degrees") or [tp]
    over = (meta.get("engine_effective") or {}).get("hf_overrides") or {}
    top = max(int(d) for d in degrees)
    for key, value in full.items():
        if key in over and int(over[key]) * top != value:
            raise _err(meta_path, f"hf_overrides.{key} = {over[key]} is not the catalogue's {value} / "
                                  f"tp {top} for {meta['model']}")
    for name, value in (("num_heads", model.num_heads), ("num_kv_heads", model.num_kv_heads),
                        ("intermediate_size", model.intermediate_size), ("vocab_size", model.vocab_size)):
        if value % tp:
            raise _err(path, f"{meta['model']} {name} = {value} is not divisible by tp {tp}")
    return dict(hidden=float(model.hidden_size), heads=model.num_heads / tp, kv_heads=model.num_kv_heads / tp,
                head_dim=float(model.head_dim), inter=model.intermediate_size / tp, vocab=model.vocab_size / tp,
                moe=model.moe, moe_inter=float(inter), model=meta["model"])


def load_llmservingsim(path: str | os.PathLike, *, device: str | None = None,
                       model: str | None = None) -> pd.DataFrame:
    """Load one LLMServingSim table (``dense.csv``, ``per_sequence.csv``, ``attention.csv``,
    ``moe.csv``; ``skew_fit.csv`` holds fitted coefficients and loads as no rows).

    ``time_us`` is microseconds; shapes are per GPU for the folder's TP degree. Device and model come
    from ``meta.yaml`` (``gpu``, ``model``) unless given. Attention rows: prefill-only rows
    (``n_decode`` 0) are ``attn_prefill`` (batch 1, ``seq`` = chunk, ``ctx`` = kv_prefill); decode-only
    rows (``prefill_chunk`` 0) are ``attn_decode`` (batch n_decode, ``ctx`` = kv_decode); mixed rows are
    ``attn_mixed`` (the prefill part in batch/seq/ctx, the decode part in decode_batch/decode_ctx).
    """
    path = str(path)
    t = _Table(path, _read_csv(path), header_lines=1)
    role = _LSS_HEADERS.get(tuple(str(c).strip() for c in t.df.columns))
    if role is None:
        raise _err(path, f"not an LLMServingSim table: header {list(map(str, t.df.columns))} is none of "
                         f"{[list(h) for h in _LSS_HEADERS]}", line=1)
    if role == "skew":
        return _override(_empty(), device, model)
    meta, tp = _lss_meta(path)
    s = _lss_shapes(path, meta, tp)
    stem = Path(path).stem
    variant_dtype = normalize_dtype(meta.get("variant", "bf16"))
    us = t.num("time_us", positive=True)
    common = dict(source=path, device=str(meta["gpu"]), model=s["model"], dtype=variant_dtype,
                  kernel=_LSS_KERNEL, tp=float(tp))
    chunks = []

    def add(rows: np.ndarray, op: str | np.ndarray, order: int = 0, **cols) -> None:
        if rows.size:
            chunks.append(_frame(rows.size, dict(common, group=f"{stem} | {cols.get('kind') or op}", row=rows, op=op,
                                                 measured_s=us[rows] * 1e-6, **cols), order=order))

    if role in ("dense", "per_sequence"):
        col = "tokens" if role == "dense" else "sequences"
        n = t.num(col, positive=True, integer=True)
        layer = t.text("layer")
        h, kvh, d, H = s["heads"], s["kv_heads"], s["head_dim"], s["hidden"]
        gemm = {"qkv_proj": ((h + 2 * kvh) * d, H), "o_proj": (H, h * d),
                "gate_up_proj": (2 * s["inter"], H), "down_proj": (H, s["inter"]), "lm_head": (s["vocab"], H)}
        for op in sorted(set(layer)):
            r = np.flatnonzero(layer == op)
            x = n[r]
            if op in gemm:
                add(r, op, kind="gemm", m=x, n=gemm[op][0], k=gemm[op][1])
            elif op in ("layernorm", "input_layernorm", "post_attention_layernorm", "final_layernorm"):
                add(r, op, kind="norm", variant="rmsnorm", tokens=x, hidden=H)
            elif op == "qk_norm":  # per-head RMSNorm of q and k: (heads + kv_heads) rows of head_dim per token
                add(r, op, kind="norm", variant="rmsnorm", tokens=x * (h + kvh), hidden=d)
            elif op == "rotary_emb":
                add(r, op, kind="rope", tokens=x, heads=h, kv_heads=kvh, head_dim=d)
            elif op == "act_fn":
                add(r, op, kind="activation", variant="silu_mul", tokens=x, inter=s["inter"])
            elif op == "embedding":
                add(r, op, kind="embedding", tokens=x, hidden=H)
            elif op == "sampler":  # over the (TP-shrunk) vocabulary's logits of each sequence
                add(r, op, kind="sampling", tokens=x, hidden=s["vocab"])
            else:
                add(r, op, kind="", variant=f"unmapped LLMServingSim layer {op!r}", tokens=x)
    elif role == "attention":
        pc = t.num("prefill_chunk", integer=True)
        kp = t.num("kv_prefill", integer=True)
        nd = t.num("n_decode", integer=True)
        kd = t.num("kv_decode", integer=True)
        heads = dict(heads=s["heads"], kv_heads=s["kv_heads"], head_dim=s["head_dim"], window=0.0, kv_dtype="bf16")
        empty = np.flatnonzero((pc == 0) & (nd == 0))
        if empty.size:
            raise t.fail(empty[0], "n_decode", "a row with prefill_chunk 0 and n_decode 0 times no attention")
        no_ctx = np.flatnonzero((nd > 0) & (kd == 0))
        if no_ctx.size:
            raise t.fail(no_ctx[0], "kv_decode", "decode rows need kv_decode > 0")
        r = np.flatnonzero((pc > 0) & (nd == 0))
        add(r, "prefill", kind="attn_prefill", batch=1.0, seq=pc[r], ctx=kp[r], **heads)
        r = np.flatnonzero((pc == 0) & (nd > 0))
        add(r, "decode", kind="attn_decode", batch=nd[r], seq=1.0, ctx=kd[r], **heads)
        r = np.flatnonzero((pc > 0) & (nd > 0))
        add(r, "mixed", kind="attn_mixed", batch=1.0, seq=pc[r], ctx=kp[r], decode_batch=nd[r],
            decode_ctx=kd[r], **heads)
    else:  # moe
        if s["moe"] is None:
            raise _err(path, f"moe.csv for {meta['model']}, which the catalogue lists as a dense model")
        tok = t.num("tokens", positive=True, integer=True)
        act = t.num("activated_experts", positive=True, integer=True)
        too_many = np.flatnonzero(act > s["moe"].num_experts)
        if too_many.size:
            raise t.fail(too_many[0], "activated_experts",
                         f"{_fmt_scalar(act[too_many[0]])} > the model's {s['moe'].num_experts} experts")
        r = np.arange(len(tok))
        # The profiler routes the tokens over `activated_experts` experts: those are the experts whose
        # weights the kernel reads, so they are the row's expert count (top-k picks spread over them).
        add(r, "fused_moe", kind="moe", tokens=tok, hidden=s["hidden"], inter=s["moe_inter"] / tp,
            topk=float(s["moe"].top_k), experts=act, moe_tp=1.0, moe_ep=1.0,
            variant=np.array([f"activated_experts={_fmt_scalar(a)} of {s['moe'].num_experts}" for a in act],
                             dtype=object))
    return _override(_finish(chunks), device, model)


# --------------------------------------------------------------------------------------------------
# format detection and the front door
# --------------------------------------------------------------------------------------------------

def _known_formats_msg() -> str:
    return ("known formats: 'aiconfigurator' (parquet with 'device' and 'op_name' columns), "
            "'vidur' (CSV with 'time_stats.<op>.median' columns), "
            "'llmcompass' (headerless numeric CSV named matmul_/softmax_/layernorm_/gelu_/transformer_/"
            "transformerAR_<device>.csv), "
            "'llmservingsim' (CSV with a 'time_us' column in <GPU>/<org>/<model>/<variant>/tp<N>/ beside meta.yaml)")


def _is_number_field(s: str) -> bool:
    s = s.strip()
    for suffix in ("ms", "tflops"):
        if s.lower().endswith(suffix):
            s = s[: -len(suffix)]
            break
    try:
        float(s)
        return True
    except ValueError:
        return False


def detect_format(path: str | os.PathLike) -> str:
    """'aiconfigurator', 'vidur', 'llmcompass' or 'llmservingsim' for one measurement file; TraceError otherwise."""
    p = Path(path)
    if not p.is_file():
        raise _err(path, "no such file")
    if p.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(str(p)).names)
        except Exception as e:  # unreadable or not parquet at all
            raise _err(path, f"cannot read parquet schema: {e}; {_known_formats_msg()}") from None
        if {"device", "op_name"} <= names:
            return "aiconfigurator"
        raise _err(path, f"parquet file without 'device' and 'op_name' columns; {_known_formats_msg()}")
    if p.suffix.lower() == ".csv":
        try:
            with open(p, encoding="utf-8") as fh:
                first = ""
                for ln in fh:
                    if ln.strip():
                        first = ln
                        break
        except (OSError, UnicodeDecodeError) as e:
            raise _err(path, f"cannot read file: {e}") from None
        fields = [f.strip() for f in first.split(",")]
        if any(f.startswith("time_stats.") for f in fields):
            return "vidur"
        if tuple(fields) in _LSS_HEADERS:
            return "llmservingsim"
        if first.strip() and all(_is_number_field(f) for f in fields):
            if _llmcompass_kind(str(p))[0]:
                return "llmcompass"
            raise _err(path, "headerless numeric CSV, but the file name does not say which LLMCompass "
                             f"benchmark it holds; {_known_formats_msg()}")
    raise _err(path, f"unknown measurement format; {_known_formats_msg()}")


_LOADERS = {"aiconfigurator": load_aiconfigurator, "vidur": load_vidur, "llmcompass": load_llmcompass,
            "llmservingsim": load_llmservingsim}


def _files_under(root: Path) -> list[Path]:
    files = [f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in (".csv", ".parquet")
             and not any(part.startswith(".") for part in f.relative_to(root).parts)]
    return sorted(files, key=lambda f: f.relative_to(root).parts)


def load_measurements(path: str | os.PathLike, format: str = "auto", *, device: str | None = None,
                      model: str | None = None) -> pd.DataFrame:
    """Load one measurement file, or every ``.csv`` / ``.parquet`` under a directory (recursively, in
    sorted path order), into the standard table (:data:`COLUMNS`).

    ``format`` is 'auto' (see :func:`detect_format`) or one of :data:`FORMATS`; ``device`` / ``model``
    replace what the files say.  Malformed files raise :class:`~llmsim.workloads.errors.TraceError`.
    """
    if format != "auto" and format not in _LOADERS:
        raise UnknownNameError("measurement format", str(format),
                               difflib.get_close_matches(str(format), ["auto", *FORMATS], n=3))
    p = Path(path)
    if p.is_dir():
        files = [str(f) for f in _files_under(p)]
    elif p.is_file():
        files = [str(path)]
    else:
        raise _err(path, "no such file or directory")
    frames = []
    for f in files:
        fmt = detect_format(f) if format == "auto" else format
        frames.append(_LOADERS[fmt](f, device=device, model=model))
    if not frames:
        return _empty()
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# fit / held-out split
# --------------------------------------------------------------------------------------------------

def split_of(shape_keys: Iterable[str], *, salt: str = "llmsim-calib-v1",
             holdout_fraction: float = 0.2) -> np.ndarray:
    """True where a row is HELD OUT of fitting.

    ``h = blake2b(utf8(salt + "\\0" + key), digest_size=8)`` read as a big-endian uint64; a row is
    held out when ``h / 2**64 < holdout_fraction``.  Stable across runs, platforms and row order; all
    rows sharing a shape key (e.g. the same GEMM on several devices or kernels) land on the same side.
    """
    try:
        frac = float(holdout_fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"holdout_fraction must be a number in [0, 1], got {holdout_fraction!r}") from None
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1], got {holdout_fraction!r}")
    keys = shape_keys.to_numpy(dtype=object) if isinstance(shape_keys, pd.Series) else np.asarray(
        list(shape_keys) if not isinstance(shape_keys, np.ndarray) else shape_keys, dtype=object)
    if keys.size == 0:
        return np.zeros(0, dtype=bool)
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    prefix = (str(salt) + "\0").encode("utf-8")
    digest = b"".join(hashlib.blake2b(prefix + str(k).encode("utf-8"), digest_size=8).digest() for k in uniques)
    h = np.frombuffer(digest, dtype=">u8").astype(np.float64) / 2.0 ** 64
    held = h < frac
    return held[codes]

