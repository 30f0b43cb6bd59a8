"""End-to-end validation against measured serving runs: ``splitwise`` and ``apex-vllm`` formats.

* ``splitwise`` -- a ``perf_model.csv`` (Splitwise's vLLM profiling on DGX-A100/H100): every row is
  simulated as one static batch of ``batch_size`` requests of ``prompt_size`` tokens generating
  ``token_size`` tokens on its ``hardware`` with ``tensor_parallel`` GPUs, comparing ``prompt_time``
  (the whole prefill, ms) and ``token_time`` (ms per output token), and ``e2e_time`` only where the
  run generated all its tokens: ``e2e_time`` within ``E2E_IDENTITY_TOL`` of ``prompt_time +
  token_time x (token_size - 1)``. A row whose e2e exceeds that identity by more than
  ``NOT_ONE_BATCH_RATIO`` did not run as one static batch (the 64-request TP2 runs: their
  prompt_time is shorter than the 32-request batch's) and is not compared at all; it is listed
  under ``not_expressed``.
* ``apex-vllm`` -- a ``measured.csv`` (APEX's vLLM 0.6.0 runs): each row's trace (next to it) is
  simulated with the row's model, device and plan under the vLLM 0.6.0 engine and the settings the
  APEX scripts launched it with (``APEX_SERVING``), comparing ``ttft_mean_s`` (mean TTFT) and
  ``tpot_mean_s`` (token-weighted: the simulator's ``tpot_token_weighted_s``).

The report has the kernel validation's schema (``validation/validate.py``): ``rows``, ``mape``,
``median_ape``, ``p90_ape``, ``rows_in_fit``, ``groups`` (per metric, then per metric and hardware)
and ``not_expressed``. ``rows_in_fit`` counts compared values whose row was used to fit an engine
parameter (``EngineOverhead.fitted_on``); ``split='test'`` scores only the others.

Fitting (``simulate fit-engine splitwise`` / ``apex``) estimates an engine's host
overheads from a stated subset -- the splitwise rows on the ``train`` side of a deterministic hash
split of their configuration (``serving_split``), or one named APEX run -- and prints the YAML to
paste into ``hwmodels/data/engines.yaml``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.validation.stats import error_stats
from llmsim.workloads.errors import ConfigError, TraceError, UnknownNameError

SERVING_FORMATS = ("splitwise", "apex-vllm", "llmservingsim")
SPLITWISE_COLUMNS = ("model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time", "token_time",
                     "e2e_time", "tensor_parallel")
APEX_COLUMNS = ("model", "device", "dp", "tp", "pp", "ttft_mean_s", "tpot_mean_s", "trace")
#: e2e_time is compared where |e2e / (prompt + token x (tokens - 1)) - 1| <= this.
E2E_IDENTITY_TOL = 0.03
#: A row whose e2e exceeds prompt + token x (tokens - 1) by this factor did not run as one batch.
NOT_ONE_BATCH_RATIO = 1.5
#: Deterministic split of the splitwise configurations for fitting engine overheads.
SERVING_SALT = "llmsim-serving-v1"
HOLDOUT_FRACTION = 0.5
DEFAULT_ENGINE = {"splitwise": "vllm-0.2", "apex-vllm": "vllm-0.6", "llmservingsim": None}
#: How APEX launched vLLM 0.6.0 (microsoft/apex_plus vllm/8TP.sh: --gpu-memory-utilization 0.97, no
#: max_model_len) and what vLLM 0.6.0 defaults to then: chunked prefill is on for models with more than
#: 32K context, with a 512-token budget; 256 sequences at most; 16-token blocks.
APEX_SERVING = {"scheduler": "sarathi", "max_batched_tokens": 512, "max_batch_size": 256, "block_size": 16,
                "gpu_memory_utilization": 0.97}
#: Splitwise's vLLM: whole-batch prefill (prefill-first scheduler), 16-token blocks, 0.9 utilisation.
SPLITWISE_SERVING = {"block_size": 16, "gpu_memory_utilization": 0.9}


# --------------------------------------------------------------------------------------------- loading
def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return [c.strip().lstrip("\ufeff") for c in line.split(",")]
    except (OSError, UnicodeDecodeError):
        return []
    return []


def detect_serving_format(path: str | Path) -> str | None:
    """'splitwise' or 'apex-vllm' when ``path`` is such a file, else ``None``."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".csv":
        return None
    header = set(_csv_header(p))
    if {"prompt_time", "token_time", "prompt_size", "hardware"} <= header:
        return "splitwise"
    if {"ttft_mean_s", "tpot_mean_s", "trace"} <= header:
        return "apex-vllm"
    return None


def _read_table(path: Path, required: tuple[str, ...], numeric: tuple[str, ...], positive: tuple[str, ...]):
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot parse as CSV: {e}") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    for col in required:
        if col not in frame.columns:
            raise TraceError(f"{path}, line 1, column {col!r}: missing column {col!r} "
                             f"(header has {', '.join(map(repr, frame.columns))})")
    out = frame.copy()
    for col in numeric:
        vals = pd.to_numeric(frame[col].str.strip(), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(vals)
        if col in positive:
            bad |= ~(vals > 0)
        if bad.any():
            i = int(np.argmax(bad))
            what = "a number > 0" if col in positive else "a number"
            raise TraceError(f"{path}, line {i + 2}, column {list(frame.columns).index(col) + 1} ({col!r}): "
                             f"expected {what}, got {frame[col].iloc[i]!r}")
        out[col] = vals
    return out


def load_splitwise(path: str | Path) -> pd.DataFrame:
    """The rows of a splitwise ``perf_model.csv`` (times in ms); malformed cells name file, line, column."""
    p = Path(path)
    ints = ("prompt_size", "batch_size", "token_size", "tensor_parallel")
    frame = _read_table(p, SPLITWISE_COLUMNS, (*ints, "prompt_time", "token_time", "e2e_time"),
                        (*ints, "prompt_time", "token_time", "e2e_time"))
    for col in ints:
        frac = frame[col] != np.round(frame[col])
        if frac.any():
            i = int(np.argmax(frac.to_numpy()))
            raise TraceError(f"{p}, line {i + 2}, column {list(frame.columns).index(col) + 1} ({col!r}): "
                             f"expected a whole number, got {frame[col].iloc[i]!r}")
        frame[col] = frame[col].astype(np.int64)
    frame["line"] = np.arange(len(frame)) + 2
    return frame


def load_apex_measured(path: str | Path) -> pd.DataFrame:
    """The rows of an APEX ``measured.csv``; each names its trace file (next to it)."""
    p = Path(path)
    frame = _read_table(p, APEX_COLUMNS, ("dp", "tp", "pp", "ttft_mean_s", "tpot_mean_s"),
                        ("dp", "tp", "pp", "ttft_mean_s", "tpot_mean_s"))
    for col in ("dp", "tp", "pp"):
        frame[col] = frame[col].astype(np.int64)
    frame["line"] = np.arange(len(frame)) + 2
    return frame


# --------------------------------------------------------------------------------------------- splits
def splitwise_keys(frame: pd.DataFrame) -> np.ndarray:
    """One key per configuration (the five repeats of a configuration share it)."""
    return np.array([f"{m}|{h}|tp{t}|p{p}|b{b}|o{o}" for m, h, t, p, b, o in zip(
        frame["model"], frame["hardware"], frame["tensor_parallel"], frame["prompt_size"], frame["batch_size"],
        frame["token_size"])], dtype=object)


def serving_split(keys) -> np.ndarray:
    """True where a configuration is HELD OUT of any serving fit (blake2b hash rule, half of them)."""
    from llmsim.validation.loaders import split_of

    return split_of(keys, salt=SERVING_SALT, holdout_fraction=HOLDOUT_FRACTION)


def _one_batch_ratio(frame: pd.DataFrame) -> np.ndarray:
    return frame["e2e_time"].to_numpy() / (frame["prompt_time"].to_numpy()
                                          + frame["token_time"].to_numpy() * (frame["token_size"].to_numpy() - 1))


# --------------------------------------------------------------------------------------------- simulation
def _run_config(model, device, tp, pp=1, dp=1, *, engine, profile=None, serving=None, static_batch=None,
                router=None):
    """The run config of one measured setup (the schema of ``simulate run CONFIG.yaml``)."""
    from llmsim.sim.config import config_from_dict

    data = {"deployment": {"model": model, "device": device, "tp": int(tp), "pp": int(pp), "dp": int(dp),
                           "engine": engine, "profile": profile},
            "serving": dict(serving or {})}
    if static_batch is not None:
        data["static_batch"] = static_batch
    if router is not None:
        data["cluster"] = {"router": router}
    return config_from_dict(data)


def static_batch_times(model, device, tp: int, batch: int, prompt: int, output: int, *, engine, profile=None,
                       block_size: int = 16, gpu_memory_utilization: float = 0.9) -> tuple[float, float, float]:
    """(prefill s, per-token s, end-to-end s) of one static batch of ``model`` on ``tp`` ``device``s.

    The batch arrives at once, is prefilled in one iteration and decoded together to the end
    (``simulate run``'s ``static_batch``); per-token time = (end-to-end - prefill) / (output - 1).
    """
    from llmsim.sim.runner import assemble, run_built

    cfg = _run_config(model, device, tp, engine=engine, profile=profile,
                      serving={"block_size": block_size, "gpu_memory_utilization": gpu_memory_utilization},
                      static_batch={"batch_size": int(batch), "prompt_tokens": int(prompt),
                                    "output_tokens": int(output)})
    s = run_built(assemble(cfg)).summary
    return s["prefill_time_s"], s["per_token_time_s"], s["e2e_time_s"]


def _deployment_cache(engine, profile):
    """``(model, device, tp, pp) -> Deployment`` as ``simulate run`` builds it (each built once)."""
    from llmsim.sim.runner import build_deployment

    cache: dict = {}

    def get(model, device, tp, pp=1):
        key = (model, device, int(tp), int(pp))
        if key not in cache:
            cache[key] = build_deployment(_run_config(model, device, tp, pp, engine=engine, profile=profile))
        return cache[key]

    return get


def predict_splitwise(frame: pd.DataFrame, *, engine, profile=None) -> pd.DataFrame:
    """Predicted prompt/token/e2e times (ms) for every row (rows sharing a configuration simulated once)."""
    cols = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    configs = frame[cols].drop_duplicates()
    pred = {}
    for row in configs.itertuples(index=False):
        pred[tuple(row)] = static_batch_times(row.model, row.hardware, row.tensor_parallel, row.batch_size,
                                              row.prompt_size, row.token_size, engine=engine, profile=profile,
                                              **SPLITWISE_SERVING)
    keys = [tuple(r) for r in frame[cols].itertuples(index=False)]
    out = np.array([pred[k] for k in keys]) * 1e3
    return pd.DataFrame({"prompt_time": out[:, 0], "token_time": out[:, 1], "e2e_time": out[:, 2]},
                        index=frame.index)


def _fitted_rows(fitted_on: str, fmt: str, file_name: str) -> str | None:
    """The subset named by ``fitted_on`` when it refers to ``fmt`` and ``file_name``, else None."""
    parts = fitted_on.split(":")
    if len(parts) != 3 or parts[0] != fmt or parts[1] != file_name:
        return None
    return parts[2]


# --------------------------------------------------------------------------------------------- statistics
def _report(values: list[dict], not_expressed: list[dict], split: str, extra: dict) -> dict:
    """``values``: dicts with name, hardware, metric, pred, meas, in_fit (one compared number each)."""
    if split != "all":
        values = [v for v in values if v["in_fit"] == (split == "train")]
    pred = np.array([v["pred"] for v in values], dtype=np.float64)
    meas = np.array([v["meas"] for v in values], dtype=np.float64)
    fit = np.array([v["in_fit"] for v in values], dtype=bool)
    report = error_stats(pred, meas)
    report["rows_in_fit"] = int(fit.sum())
    report["split"] = split
    report.update(extra)
    groups = []
    names = [v["group"] for v in values]
    subs = [f"{v['group']} | {v['hardware']}" for v in values]
    for key_list in (names, subs):
        arr = np.array(key_list, dtype=object)
        for name in sorted(set(key_list)):
            sel = arr == name
            g = {"name": name, **error_stats(pred[sel], meas[sel]), "rows_in_fit": int(fit[sel].sum())}
            if (~fit[sel]).any():
                g["held_out"] = error_stats(pred[sel & ~fit], meas[sel & ~fit])
            groups.append(g)
    report["groups"] = groups
    report["not_expressed"] = not_expressed
    return report


# --------------------------------------------------------------------------------------------- validate
def splitwise_values(path: str | Path, *, engine: str | None = None, profile=None) -> tuple[list[dict], list[dict]]:
    """Compared values and not-expressed rows of a splitwise file."""
    from llmsim.hwmodels.deployment import get_engine
    from llmsim.hwmodels.devices import get_device

    p = Path(path)
    frame = load_splitwise(p)
    eng = get_engine(engine or DEFAULT_ENGINE["splitwise"])
    ratio = _one_batch_ratio(frame)
    one_batch = ratio <= NOT_ONE_BATCH_RATIO
    not_expressed = []
    if (~one_batch).any():
        bad = frame[~one_batch]
        for (hw, tp, b, ps), grp in bad.groupby(["hardware", "tensor_parallel", "batch_size", "prompt_size"]):
            not_expressed.append({
                "name": f"{p.stem} | {hw} tp{tp} batch {b} prompt {ps}", "rows": int(len(grp)),
                "reason": (f"e2e_time is {ratio[grp.index].mean():.1f}x prompt_time + token_time x (token_size - 1): "
                           f"the batch was not served as one static batch (lines "
                           f"{', '.join(str(x) for x in grp['line'])}); none of its metrics is compared")})
    frame = frame[one_batch]
    ratio = ratio[one_batch]
    pred = predict_splitwise(frame, engine=eng, profile=profile)
    held = serving_split(splitwise_keys(frame))
    values = []
    e2e_ok = np.abs(ratio - 1.0) <= E2E_IDENTITY_TOL
    for i, (idx, row) in enumerate(frame.iterrows()):
        host = eng.overhead_for(get_device(row["hardware"]))
        subset = _fitted_rows(host.fitted_on, "splitwise", p.name)
        in_fit = subset == "all" or (subset == "train" and not held[i])
        hw = f"{row['hardware']} tp{row['tensor_parallel']}"
        for metric in ("prompt_time", "token_time", "e2e_time"):
            if metric == "e2e_time" and not e2e_ok[i]:
                continue
            values.append({"group": f"{p.stem} | {metric}", "hardware": hw, "pred": float(pred.at[idx, metric]),
                           "meas": float(row[metric]), "in_fit": bool(in_fit)})
    n_e2e = int((~e2e_ok).sum())
    if n_e2e:
        not_expressed.append({"name": f"{p.stem} | e2e_time", "rows": n_e2e,
                              "reason": f"e2e_time differs from prompt_time + token_time x (token_size - 1) by more "
                                        f"than {E2E_IDENTITY_TOL:.0%} (generation stopped early)"})
    return values, not_expressed


def apex_predictions(path: str | Path, *, engine: str | None = None, profile=None) -> pd.DataFrame:
    """Each APEX row of the ``measured.csv`` at ``path`` with the simulated ``ttft_mean_s`` and
    token-weighted ``tpot_mean_s``."""
    p = Path(path)
    return predict_apex_rows(load_apex_measured(p), p, engine=engine, profile=profile)


def predict_apex_rows(frame: pd.DataFrame, path: str | Path, *, engine=None, profile=None) -> pd.DataFrame:
    """``frame`` (rows of :func:`load_apex_measured`; traces named relative to the file ``path``)
    with the simulated ``pred_ttft_mean_s`` and token-weighted ``pred_tpot_mean_s`` (seconds)."""
    from llmsim.sim.runner import assemble, run_built
    from llmsim.workloads.traces import load_trace

    p = Path(path)
    engine = engine or DEFAULT_ENGINE["apex-vllm"]
    ttft, tpot = [], []
    for row in frame.itertuples(index=False):
        trace_path = p.parent / str(row.trace).strip()
        if not trace_path.is_file():
            raise TraceError(f"{p}, line {row.line}, column 'trace': trace file {trace_path} does not exist")
        cfg = _run_config(row.model, row.device, row.tp, row.pp, row.dp, engine=engine, profile=profile,
                          serving=APEX_SERVING, router="round-robin")
        res = run_built(assemble(cfg, trace=load_trace(trace_path)), keep_requests=False)
        ttft.append(res.summary["ttft_mean_s"])
        tpot.append(res.summary["tpot_token_weighted_s"])
    out = frame.copy()
    out["pred_ttft_mean_s"] = ttft
    out["pred_tpot_mean_s"] = tpot
    return out


def apex_values(path: str | Path, *, engine: str | None = None, profile=None) -> tuple[list[dict], list[dict]]:
    from llmsim.hwmodels.deployment import get_engine
    from llmsim.hwmodels.devices import get_device

    p = Path(path)
    eng = get_engine(engine or DEFAULT_ENGINE["apex-vllm"])
    frame = apex_predictions(p, engine=eng, profile=profile)
    values = []
    for row in frame.itertuples(index=False):
        host = eng.overhead_for(get_device(row.device))
        subset = _fitted_rows(host.fitted_on, "apex-vllm", p.name)
        stem = Path(str(row.trace)).stem
        in_fit = subset == "all" or subset == stem
        hw = f"{row.device} dp{row.dp} tp{row.tp} pp{row.pp} {stem}"
        values.append({"group": f"{p.stem} | ttft_mean_s", "hardware": hw, "pred": float(row.pred_ttft_mean_s),
                       "meas": float(row.ttft_mean_s), "in_fit": bool(in_fit)})
        values.append({"group": f"{p.stem} | tpot_mean_s", "hardware": hw, "pred": float(row.pred_tpot_mean_s),
                       "meas": float(row.tpot_mean_s), "in_fit": bool(in_fit)})
    return values, []


def _serving_files(path: Path) -> list[tuple[Path, str]]:
    from llmsim.validation.llmservingsim import find_runs

    if path.is_dir():
        found = []
        for f in sorted(path.rglob("*.csv")):
            fmt = detect_serving_format(f)
            if fmt is not None:
                found.append((f, fmt))
        found.extend((run, "llmservingsim") for run in find_runs(path))
        return found
    if path.name in ("meta.json", "requests.jsonl"):
        return [(run, "llmservingsim") for run in find_runs(path)]
    fmt = detect_serving_format(path)
    return [(path, fmt)] if fmt else []


def is_serving_path(path: str | Path) -> bool:
    """Whether ``path`` is a serving measurement file or a folder holding some."""
    p = Path(path)
    return bool(_serving_files(p)) if p.exists() else False


def validate_serving(paths: list[str], *, fmt: str = "auto", engine: str | None = None, profile=None,
                     split: str = "all") -> dict:
    """Simulate every measured serving row of ``paths`` and report errors (module docstring)."""
    if split not in ("all", "test", "train"):
        raise ConfigError(f"`split` must be one of all, test, train, got {split!r}")
    if fmt not in ("auto", *SERVING_FORMATS):
        raise UnknownNameError("serving format", fmt, list(SERVING_FORMATS))
    files: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise TraceError(f"{p}: no such file or directory")
        if fmt == "auto":
            found = _serving_files(p)
            if not found:
                raise TraceError(f"{p}: not a splitwise perf_model.csv (prompt_time, token_time, ...), an APEX "
                                 f"measured.csv (ttft_mean_s, tpot_mean_s, trace), nor an LLMServingSim run folder "
                                 f"(meta.json + requests.jsonl)")
            files.extend(found)
        elif p.is_dir() or fmt == "llmservingsim":
            picked = [(f, f_fmt) for f, f_fmt in _serving_files(p) if f_fmt == fmt]
            if not picked:
                raise TraceError(f"{p}: holds no {fmt} serving measurements")
            files.extend(picked)
        else:
            files.append((p, fmt))
    values, not_expressed, engines, runs = [], [], {}, []
    for f, f_fmt in files:
        eng = engine or DEFAULT_ENGINE[f_fmt]
        if f_fmt == "splitwise":
            v, ne = splitwise_values(f, engine=eng, profile=profile)
        elif f_fmt == "apex-vllm":
            v, ne = apex_values(f, engine=eng, profile=profile)
        else:
            from llmsim.validation.llmservingsim import load_run, run_values

            v, run_extra = run_values(load_run(f), engine=eng, profile=profile)
            eng = run_extra["engine"]
            runs.append(run_extra)
            ne = []
        engines[str(f)] = eng
        values.extend(v)
        not_expressed.extend(ne)
    extra = {"profile": getattr(profile, "path", None) or "<default>", "engines": engines}
    if runs:
        extra["runs"] = runs
    return _report(values, not_expressed, split, extra)


def format_table(report: dict) -> str:
    lines = [f"{'group':58s} {'rows':>6s} {'in fit':>6s} {'median':>7s} {'MAPE':>7s} {'p90':>7s} {'held-out MAPE':>14s}"]

    def row(name, g):
        if not g["rows"]:
            return f"{name[:58]:58s} {0:6d}"
        held = g.get("held_out")
        h = f"{100 * held['mape']:13.1f}%" if held and held["rows"] else f"{'-':>14s}"
        return (f"{name[:58]:58s} {g['rows']:6d} {g['rows_in_fit']:6d} {100 * g['median_ape']:6.1f}% "
                f"{100 * g['mape']:6.1f}% {100 * g['p90_ape']:6.1f}% {h}")

    for g in report["groups"]:
        lines.append(row(g["name"], g))
    lines.append(row("ALL", report))
    for run in report.get("runs", []):
        fit = "fitted" if run["in_fit"] else "predicted"
        cells = "  ".join(f"{m} {run['predicted'][m]:.3f}/{run['measured'][m]:.3f} "
                          f"({100 * (run['predicted'][m] / run['measured'][m] - 1):+.1f}%)" for m in run["measured"])
        note = f"; {run['approximation']}" if run["approximation"] else ""
        lines.append(f"run {run['run']} [{fit}, {run['engine']}]: {cells} (predicted/measured){note}")
    for ne in report.get("not_expressed", []):
        lines.append(f"not expressed: {ne['name']}: {ne['rows']} rows: {ne['reason']}")
    lines.append(f"split: {report['split']}; engines: {report.get('engines')}; errors are |pred-meas|/meas")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- fitting
def _engine_without_host(name: str):
    from llmsim.hwmodels.deployment import get_engine

    return replace(get_engine(name), hosts={})


def fit_splitwise_overheads(path: str | Path, *, engine: str = "vllm-0.2", profile=None,
                            subset: str = "train") -> dict[str, dict]:
    """Host overheads per hardware, fitted on the ``subset`` (``train``: the configurations
    ``serving_split`` keeps in; ``all``) of a splitwise file: ``iteration_s``, ``prefill_s``,
    ``prefill_per_seq_s``, ``per_seq_s``, ``layer_launch_s`` and ``allreduce_bus_bytes_per_s`` (the
    engine model of ``hwmodels/deployment.py``), minimising the relative errors of prompt_time and
    token_time (each configuration weighted by its repeats): a grid over the launch time and the
    all-reduce bandwidth with non-negative least squares for the rest, refined under a soft-L1 loss
    (the targets are mean absolute errors). Returns {device name: EngineOverhead fields}."""
    from llmsim.hwmodels.devices import get_device
    from llmsim.workloads.extras import require

    optimize = require("scipy.optimize", "fitting engine overheads")
    least_squares, nnls = optimize.least_squares, optimize.nnls

    p = Path(path)
    frame = load_splitwise(p)
    frame = frame[_one_batch_ratio(frame) <= NOT_ONE_BATCH_RATIO]
    if subset == "train":
        frame = frame[~serving_split(splitwise_keys(frame))]
    elif subset != "all":
        raise ConfigError(f"`subset` must be train or all, got {subset!r}")
    bare = _engine_without_host(engine)
    dep_of = _deployment_cache(bare, profile)
    cols = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    agg = frame.groupby(cols, as_index=False).agg(prompt_time=("prompt_time", "mean"),
                                                  token_time=("token_time", "mean"), n=("prompt_time", "size"))
    empty = np.zeros(0, np.int64)
    out = {}
    for hw, grp in agg.groupby("hardware"):
        # Kernel times of each configuration without the engine, all-reduces apart (they get a floor).
        items = []
        for r in grp.itertuples(index=False):
            dep = dep_of(r.model, r.hardware, r.tensor_parallel)
            B, P, O = r.batch_size, r.prompt_size, r.token_size
            L = math.ceil(dep.model.num_layers / dep.pp)
            n_ar = 2 * L if dep.tp > 1 else 0
            traffic = 2.0 * (dep.tp - 1) / dep.tp
            cp = dep.cost(np.full(B, P, np.int64), np.zeros(B, np.int64), empty)
            ar_p = sum(v for k, v in cp.breakdown.items() if k.startswith("allreduce"))
            ctx = np.full(B, P, np.int64)
            g_d, _ = dep.decode_run(ctx, O - 1)
            cd = dep.cost(empty, empty, ctx)
            ar_d = sum(v for k, v in cd.breakdown.items() if k.startswith("allreduce"))
            bus_p = n_ar * B * P * dep.model.hidden_size * 2.0 * traffic
            bus_d = n_ar * B * dep.model.hidden_size * 2.0 * traffic
            items.append((B, L, cp.time_s - ar_p, ar_p, bus_p, g_d - ar_d, ar_d, bus_d,
                          r.prompt_time * 1e-3, r.token_time * 1e-3, math.sqrt(r.n)))

        def gpu_parts(launch, inv_bw):
            """Per configuration: (prefill time without host terms, mean decode step likewise)."""
            out = []
            for B, L, gp, arp, busp, gd, ard, busd, mp, mt, w in items:
                a = max(gp + max(arp, busp * inv_bw), L * launch)
                b = float(np.mean(np.maximum(gd + max(ard, busd * inv_bw), L * launch)))
                out.append((a, b))
            return out

        def linear_system(launch, inv_bw):
            # relative residuals are linear in (iteration_s, prefill_s, per_seq_s) for fixed launch, bw
            A, y = [], []
            for (a, b), (B, L, gp, arp, busp, gd, ard, busd, mp, mt, w) in zip(gpu_parts(launch, inv_bw), items):
                A.append([w / mp, w / mp, w * B / mp, w * B / mp])
                y.append(w * (1.0 - a / mp))
                A.append([w / mt, 0.0, 0.0, w * B / mt])
                y.append(w * (1.0 - b / mt))
            return np.array(A), np.array(y)

        def resid(x):
            it, pre, pre_seq, seq, launch, inv_bw = x
            A, y = linear_system(launch, inv_bw)
            return A @ np.array([it, pre, pre_seq, seq]) - y

        best_x, best_cost = None, np.inf
        for launch in np.linspace(0.0, 1e-3, 41):  # host seconds per layer
            for bw in (0.0, 25e9, 40e9, 60e9, 80e9, 100e9, 150e9, 200e9, 300e9):
                inv_bw = 1.0 / bw if bw else 0.0
                A, y = linear_system(launch, inv_bw)
                coef, norm = nnls(A, y)
                if norm < best_cost:
                    best_cost, best_x = norm, np.r_[coef, launch, inv_bw]
        scale = np.array([1e-2, 1e-2, 1e-2, 1e-4, 3e-4, 2e-11])
        # the targets are mean absolute percentage errors: refine under a robust (about L1) loss
        best = least_squares(resid, best_x, x_scale=scale, bounds=(0.0, np.inf), method="trf", loss="soft_l1",
                             f_scale=0.02)
        # seconds below a nanosecond are a bound hit by the fit: write them as zero
        it, pre, pre_seq, seq, launch, inv_bw = (float(v) if v > 1e-9 or i == 5 else 0.0
                                                 for i, v in enumerate(best.x))
        dev = get_device(hw).name.split("@", 1)[0]
        rows = int(grp["n"].sum())
        out[dev] = {"iteration_s": it, "prefill_s": pre, "prefill_per_seq_s": pre_seq, "per_seq_s": seq,
                    "layer_launch_s": launch,
                    "allreduce_bus_bytes_per_s": 1.0 / inv_bw if inv_bw > 1e-15 else 0.0,
                    "source": f"[fit] {rows} rows ({len(grp)} configurations) of {p.name} for {hw}, subset "
                              f"'{subset}' of the {SERVING_SALT} split; prompt_time and token_time",
                    "fitted_on": f"splitwise:{p.name}:{subset}"}
    return out


def _bisect(fn, lo: float, hi: float, steps: int = 16) -> float:
    """A root of the increasing function ``fn`` in [lo, hi] (bisection)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if fn(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_apex_overhead(path: str | Path, run: str, *, engine: str = "vllm-0.6", profile=None,
                      per_seq_s: float | None = None, rounds: int = 3) -> dict:
    """``iteration_s`` and ``layer_launch_s`` of an engine from ONE APEX ``run`` (its trace's stem):
    the host time per iteration that makes the simulated token-weighted TPOT match, and the host time
    per layer of an eager (prefill-carrying) iteration that makes the mean TTFT match, found by
    alternating bisection. ``per_seq_s`` is not identifiable from one run; by default it is taken
    from the ``vllm-0.2`` host of the run's device (fitted on splitwise rows), and the returned
    ``source`` says so."""
    from llmsim.hwmodels.deployment import EngineOverhead, get_engine
    from llmsim.hwmodels.devices import get_device

    p = Path(path)
    frame = load_apex_measured(p)
    sel = frame[[Path(str(t)).stem == run for t in frame["trace"]]]
    if sel.empty:
        raise ConfigError(f"{p} has no run whose trace is {run!r}; runs: "
                          f"{', '.join(Path(str(t)).stem for t in frame['trace'])}")
    device = get_device(str(sel["device"].iloc[0]))
    borrowed = per_seq_s is None
    if borrowed:
        per_seq_s = get_engine("vllm-0.2").overhead_for(device).per_seq_s
    base = _engine_without_host(engine)
    sel = sel.iloc[:1]

    def err(it, launch, metric):
        eng = replace(base, hosts={"default": EngineOverhead(iteration_s=it, layer_launch_s=launch,
                                                             per_seq_s=per_seq_s)})
        row = predict_apex_rows(sel, p, engine=eng, profile=profile).iloc[0]
        return float(row[f"pred_{metric}"] - row[metric])

    it, launch = 3e-3, 3e-4
    for _ in range(rounds):
        it = _bisect(lambda x: err(x, launch, "tpot_mean_s"), 0.0, 0.05)
        launch = _bisect(lambda x: err(it, x, "ttft_mean_s"), 0.0, 2e-3)
    note = (f"; per_seq_s taken from the vllm-0.2 {device.name.split('@')[0]} host (fitted on splitwise rows)"
            if borrowed else "")
    return {"iteration_s": it, "prefill_s": 0.0, "prefill_per_seq_s": 0.0, "per_seq_s": per_seq_s,
            "layer_launch_s": launch, "allreduce_bus_bytes_per_s": 0.0,
            "source": f"[fit] TPOT (iteration_s) and TTFT (layer_launch_s) of the {run} run in {p.name}{note}",
            "fitted_on": f"apex-vllm:{p.name}:{run}"}


ENGINES_FILE = Path(__file__).resolve().parent.parent / "hwmodels" / "data" / "engines.yaml"
_HOST_FIELDS = ("iteration_s", "prefill_s", "prefill_per_seq_s", "per_seq_s", "per_token_s", "layer_launch_s",
                "piece_launch_s", "sync_s", "allreduce_bus_bytes_per_s")


def _yaml_float(v: float) -> str:
    """``v`` to 4 significant digits as YAML 1.1 reads a float (``4.0e-05``, not ``4e-05``)."""
    text = f"{v:.4g}"
    mant, sep, exp = text.partition("e")
    if sep and "." not in mant:
        text = f"{mant}.0e{exp}"
    return text


def _yaml_hosts(hosts: dict[str, dict]) -> str:
    lines = ["    hosts:"]
    for dev, h in hosts.items():
        lines.append(f"      {dev}:")
        for k in _HOST_FIELDS:
            lines.append(f"        {k}: {_yaml_float(h.get(k, 0.0))}")
        lines.append(f"        source: \"{h['source']}\"")
        lines.append(f"        fitted_on: \"{h['fitted_on']}\"")
    return "\n".join(lines)


def write_hosts(engine: str, hosts: dict[str, dict], path: Path = ENGINES_FILE) -> None:
    """Replace the ``hosts:`` block of ``engine`` in the engines file (the rest is kept verbatim)."""
    text = path.read_text()
    head = f"\n  {engine}:\n"
    start = text.find(head)
    if start < 0:
        raise ConfigError(f"{path}: no engine {engine!r}")
    h = text.find("\n    hosts:", start)
    nxt = text.find("\n  ", h + 1)
    while nxt >= 0 and text[nxt + 3:nxt + 4] == " ":  # skip deeper-indented lines
        nxt = text.find("\n  ", nxt + 1)
    end = len(text.rstrip("\n")) if nxt < 0 else nxt
    path.write_text(text[:h + 1] + _yaml_hosts(hosts) + text[end:] + ("\n" if nxt < 0 else ""))
    from llmsim.hwmodels.engines import _engine_catalogue

    _engine_catalogue.cache_clear()
