"""Serving runs of a current engine: LLMServingSim's measured vLLM 0.19 runs (format ``llmservingsim``).

A run is a folder ``<GPU>/<model>/vllm/`` holding ``meta.json`` (vLLM's engine arguments and, where
recorded, its resolved config and KV blocks), ``requests.jsonl`` (one request a line: ``input_toks``,
``output_toks``, ``queued_ts``, ``first_token_ts``, ``last_token_ts``, monotonic seconds) and
``timeseries.csv`` (per-second prompt and generation throughput). Each run is simulated with the
model, device, plan and limits it ran with, under the engine profile of its vLLM version
(``vllm==<vllm_version>``), the requests arriving at their ``queued_ts``; compared are the mean TTFT
(``first_token_ts - queued_ts``), mean TPOT (``(last - first) / (output - 1)`` over requests with
more than one output token, the mean of per-request values), mean end-to-end latency and the
makespan (first arrival to last finish). The generation throughput over time is compared in 10 s
windows (MAPE over the windows where the measured run generated tokens) and reported, not scored.

Where a run used the KV blocks vLLM reported (``kv_cache.num_gpu_blocks``), the simulation uses them
(an input of the run, like ``max_num_seqs``); otherwise the KV capacity is predicted from memory.

Approximation: the Qwen3-30B-A3B run is data-parallel 2 with expert parallelism across the two
ranks, which step together (their MoE layers exchange tokens). It is simulated as one scheduler over
the group (the per-rank limits and KV doubled) whose every step is split over the two ranks and
takes the slower rank's time; each rank holds half the experts and runs its MoE layers on twice its
own tokens with an all-gather and a reduce-scatter (``Deployment(dp_ep=2)``). vLLM's router sends
each request to one rank; the shared queue here is the balanced limit of that.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmsim.workloads.errors import TraceError

FORMAT = "llmservingsim"
METRICS = ("ttft_mean_s", "tpot_mean_s", "e2e_mean_s", "makespan_s")
#: Seconds per window of the generation-throughput series comparison (the measured per-second series
#: swings 2x between seconds with and without prompt chunks).
SERIES_WINDOW_S = 10
#: The data folder's name, used in ``EngineOverhead.fitted_on`` ("llmservingsim:<folder>:<run>+<run>").
DATA_NAME = "llmservingsim_vllm019"


@dataclass(frozen=True)
class Run:
    """One measured run: where it is, what ran, and what was measured."""

    path: Path
    name: str
    model: str
    device: str
    tp: int
    dp: int
    ep: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_gpu_blocks: int | None
    gpu_memory_utilization: float
    prefix_caching: bool | None
    vllm_version: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    measured: dict
    gen_per_s: np.ndarray

    @property
    def approximation(self) -> str:
        if self.dp > 1 and self.ep:
            return (f"data-parallel {self.dp} with expert parallelism across the ranks: one scheduler over the "
                    f"group (its limits x{self.dp}), each step split over the ranks, which step together; each "
                    f"rank holds 1/{self.dp} of the experts and runs the MoE layers on {self.dp}x its own tokens")
        return ""


def is_run_dir(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "requests.jsonl").is_file()


def find_runs(path: str | Path) -> list[Path]:
    """Run folders at or below ``path``."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if is_run_dir(p):
        return [p]
    return sorted(d.parent for d in p.rglob("meta.json") if is_run_dir(d.parent))


def _device_of(meta: dict, path: Path) -> str:
    name = (meta.get("hardware") or {}).get("device_name")
    if name:
        return str(name)
    # <GPU>/<model>/vllm/: the GPU folder names the device (RTX4090, RTXPRO6000)
    return path.parent.parent.name


def _run_name(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}"


def load_run(path: str | Path) -> Run:
    """A measured run folder; malformed files raise TraceError naming file and line."""
    p = Path(path)
    meta_path = p / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TraceError(f"{meta_path}: cannot read as JSON: {e}") from None
    kw = meta.get("engine_kwargs")
    if not isinstance(kw, dict) or "model" not in meta or "vllm_version" not in meta:
        raise TraceError(f"{meta_path}: needs `model`, `vllm_version` and `engine_kwargs`")
    kv = meta.get("kv_cache") or {}
    cols = {k: [] for k in ("input_toks", "output_toks", "queued_ts", "first_token_ts", "last_token_ts")}
    req_path = p / "requests.jsonl"
    with open(req_path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                for k in cols:
                    v = float(r[k])
                    if not math.isfinite(v):
                        raise ValueError(f"{k} is not finite")
                    cols[k].append(v)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise TraceError(f"{req_path}, line {i}: expected a JSON object with "
                                 f"{', '.join(cols)}: {e}") from None
    if not cols["queued_ts"]:
        raise TraceError(f"{req_path}: no requests")
    q = np.array(cols["queued_ts"])
    first = np.array(cols["first_token_ts"])
    last = np.array(cols["last_token_ts"])
    out = np.array(cols["output_toks"], dtype=np.int64)
    inp = np.array(cols["input_toks"], dtype=np.int64)
    if (inp < 1).any() or (out < 1).any():
        raise TraceError(f"{req_path}: token counts must be >= 1")
    order = np.argsort(q, kind="stable")
    t0 = float(q.min())
    multi = out > 1
    measured = {
        "ttft_mean_s": float(np.mean(first - q)),
        "tpot_mean_s": float(np.mean((last[multi] - first[multi]) / (out[multi] - 1))),
        "e2e_mean_s": float(np.mean(last - q)),
        "makespan_s": float(last.max() - t0),
    }
    gen = np.zeros(0)
    ts_path = p / "timeseries.csv"
    if ts_path.is_file():
        import pandas as pd

        ts = pd.read_csv(ts_path)
        if "gen_throughput" in ts.columns:
            gen = ts["gen_throughput"].to_numpy(np.float64)
    return Run(path=p, name=_run_name(p), model=str(meta["model"]), device=_device_of(meta, p),
               tp=int(kw.get("tensor_parallel_size") or 1), dp=int(kw.get("data_parallel_size") or 1),
               ep=bool(kw.get("enable_expert_parallel")), max_num_seqs=int(kw.get("max_num_seqs") or 256),
               max_num_batched_tokens=int(kw.get("max_num_batched_tokens") or 2048),
               block_size=int(kv.get("block_size") or 16),
               num_gpu_blocks=int(kv["num_gpu_blocks"]) if kv.get("num_gpu_blocks") else None,
               gpu_memory_utilization=float(kv.get("gpu_memory_utilization") or 0.9),
               prefix_caching=kv.get("enable_prefix_caching"), vllm_version=str(meta["vllm_version"]),
               arrival_s=(q - t0)[order], prompt_tokens=inp[order], output_tokens=out[order], measured=measured,
               gen_per_s=gen)


def simulate_run(run: Run, *, engine=None, profile=None, keep_requests: bool = False):
    """The simulated :class:`~llmsim.sim.cluster.SimResult` of ``run`` (``engine`` default: its vLLM
    version), as :func:`build_run` builds it."""
    from llmsim.sim.runner import run_built

    return run_built(build_run(run, engine=engine, profile=profile), keep_requests=keep_requests).result


def build_run(run: Run, *, engine=None, profile=None):
    """``run`` assembled (:func:`llmsim.sim.runner.assemble`) as ``simulate run`` builds a run: ``dp``
    replicas (DP + EP groups of ``dp`` ranks when the run enabled expert parallelism) behind vLLM's
    least-outstanding router, the run's limits and KV blocks (else its ``gpu_memory_utilization``)."""
    from llmsim.hwmodels.engines import get_engine
    from llmsim.sim.config import config_from_dict
    from llmsim.sim.runner import assemble
    from llmsim.workloads.traces import RequestTrace

    eng = get_engine(engine if engine is not None else f"vllm=={run.vllm_version}")
    group = run.dp if run.ep else 1
    caching = eng.prefix_caching if run.prefix_caching is None else bool(run.prefix_caching)
    cfg = config_from_dict({
        "deployment": {"model": run.model, "device": run.device, "tp": run.tp, "dp": run.dp // group,
                       "engine": eng, "profile": profile},
        "serving": {"max_batch_size": run.max_num_seqs, "max_batched_tokens": run.max_num_batched_tokens,
                    "block_size": run.block_size, "gpu_memory_utilization": run.gpu_memory_utilization,
                    "prefix_caching": caching},
        "cluster": {"router": "least-outstanding"}})
    prefix = private_prefixes(run.prompt_tokens, run.block_size) if caching else None
    trace = RequestTrace(run.arrival_s.copy(), run.prompt_tokens.copy(), run.output_tokens.copy(),
                         np.arange(len(run.arrival_s)), run.name, prefix=prefix)
    return assemble(cfg, trace=trace, kv_blocks=run.num_gpu_blocks, dp_ep=group)


def private_prefixes(prompt_tokens: np.ndarray, block_size: int):
    """Prefix identities under which no two requests share a block (the runs' ShareGPT prompts carry
    no prefix information): with prefix caching on, a preempted request then finds its own prompt
    blocks again if they were not evicted, as vLLM's cache does."""
    from llmsim.workloads.prefix import PrefixIds

    counts = -(-prompt_tokens // block_size)
    offsets = np.zeros(len(prompt_tokens) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ids = np.arange(int(offsets[-1]), dtype=np.int64)
    return PrefixIds(offsets=offsets, ids=ids, tokens=prompt_tokens.astype(np.int64), block_tokens=block_size)


def _gen_series(result, seconds: int) -> np.ndarray:
    """Generated tokens per second of a simulated run, each request's tokens spread evenly from its
    first token to its finish (the first token at the first-token time)."""
    rec = result.records
    ok = rec["status"] == "finished"
    first = rec["first_token_s"][ok] - float(np.min(rec["arrival_s"]))
    fin = rec["finish_s"][ok] - float(np.min(rec["arrival_s"]))
    out = rec["output_tokens"][ok].astype(np.float64)
    edges = np.arange(seconds + 1, dtype=np.float64)
    series = np.zeros(seconds)
    for f, z, n in zip(first, fin, out):
        series[min(int(f), seconds - 1)] += 1.0
        if n > 1 and z > f:
            rate = (n - 1) / (z - f)
            lo = np.clip(edges[:-1], f, z)
            hi = np.clip(edges[1:], f, z)
            series += rate * (hi - lo)
    return series


def run_values(run: Run, *, engine=None, profile=None) -> tuple[list[dict], dict]:
    """Compared values of one run (dicts as validation/serving.py ``_report`` takes) and its extras."""
    from llmsim.hwmodels.engines import get_engine

    res = simulate_run(run, engine=engine, profile=profile, keep_requests=True)
    s = res.summary
    rec = res.records
    ok = rec["status"] == "finished"
    pred = {"ttft_mean_s": s["ttft_mean_s"], "tpot_mean_s": s["tpot_mean_s"], "e2e_mean_s": s["e2e_mean_s"],
            "makespan_s": float(rec["finish_s"][ok].max() - rec["arrival_s"].min()) if ok.any() else math.nan}
    eng = get_engine(engine if engine is not None else f"vllm=={run.vllm_version}")
    from llmsim.hwmodels.devices import get_device

    host = eng.overhead_for(get_device(run.device))
    parts = host.fitted_on.split(":")
    in_fit = len(parts) == 3 and parts[0] == FORMAT and parts[1] == DATA_NAME and run.name in parts[2].split("+")
    hw = f"{run.name} tp{run.tp} dp{run.dp}"
    values = [{"group": f"{DATA_NAME} | {m}", "hardware": hw, "pred": float(pred[m]), "meas": float(run.measured[m]),
               "in_fit": bool(in_fit)} for m in METRICS]
    extra = {"run": run.name, "engine": f"{eng.name}@{eng.version}" if eng.version else eng.name,
             "unfinished": int((~ok).sum()), "approximation": run.approximation,
             "predicted": pred, "measured": dict(run.measured), "in_fit": bool(in_fit)}
    if run.gen_per_s.size >= SERIES_WINDOW_S:
        n = run.gen_per_s.size - run.gen_per_s.size % SERIES_WINDOW_S
        sim = _gen_series(res, n).reshape(-1, SERIES_WINDOW_S).sum(axis=1)
        meas = run.gen_per_s[:n].reshape(-1, SERIES_WINDOW_S).sum(axis=1)
        m = meas > 0
        extra["gen_throughput_10s_mape"] = float(np.mean(np.abs(sim[m] - meas[m]) / meas[m]))
    return values, extra


#: The runs the vllm-v1 host times are fitted on (never reported as predictions).
FIT_RUNS = ("RTX4090/Llama-3.1-8B", "RTXPRO6000/Llama-3.1-8B")


def fit_sync(run: Run, *, profile=None, steps: int = 18) -> float:
    """The serial host seconds per step (``sync_s`` of the run's vLLM profile, other host times as
    shipped) that make the simulated mean TPOT of ``run`` match the measured one; bisection on
    [0, 10 ms], 0 when even none makes the simulation too slow."""
    import dataclasses

    from llmsim.hwmodels.devices import get_device
    from llmsim.hwmodels.engines import get_engine

    base = get_engine(f"vllm=={run.vllm_version}")
    host = base.overhead_for(get_device(run.device))

    def err(sync: float) -> float:
        eng = dataclasses.replace(base, hosts={"default": dataclasses.replace(host, sync_s=sync)})
        return simulate_run(run, engine=eng, profile=profile).summary["tpot_mean_s"] - run.measured["tpot_mean_s"]

    lo, hi = 0.0, 0.01
    if err(lo) >= 0:
        return 0.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if err(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_hosts(root: str | Path, *, profile=None) -> dict[str, dict]:
    """Host entries of the vllm-v1 profile fitted on :data:`FIT_RUNS` under ``root``: one per device
    (``sync_s`` fitted on that device's run, the rest as shipped) and ``default`` (the mean
    ``sync_s``), each naming the rows it was fitted on."""
    from llmsim.hwmodels.devices import get_device
    from llmsim.hwmodels.engines import get_engine

    runs = {load_run(p).name: load_run(p) for p in find_runs(root)}
    missing = [n for n in FIT_RUNS if n not in runs]
    if missing:
        raise TraceError(f"{root}: the fit needs the runs {', '.join(missing)}")
    base = get_engine("vllm").hosts["default"]
    fields = {k: getattr(base, k) for k in ("iteration_s", "prefill_s", "prefill_per_seq_s", "per_seq_s",
                                            "per_token_s", "layer_launch_s", "piece_launch_s",
                                            "allreduce_bus_bytes_per_s")}
    out, syncs = {}, []
    for name in FIT_RUNS:
        run = runs[name]
        sync = fit_sync(run, profile=profile)
        syncs.append(sync)
        dev = get_device(run.device).name.split("@", 1)[0]
        out[dev] = {**fields, "sync_s": sync,
                    "source": f"[fit] sync_s on the mean TPOT of the {name} run of {DATA_NAME} (vLLM "
                              f"{run.vllm_version}); the other host times as in `default`",
                    "fitted_on": f"{FORMAT}:{DATA_NAME}:{name}"}
    out["default"] = {**fields, "sync_s": float(np.mean(syncs)),
                      "source": f"[fit] sync_s = mean of the per-device fits on {' and '.join(FIT_RUNS)} "
                                f"({DATA_NAME}); iteration_s, per_seq_s, layer and piece launch times [U] "
                                f"(V1 host work per step overlapped by async scheduling; attention launch per "
                                f"layer between graph pieces, ~15 us; eager compiled layer ~40 us)",
                      "fitted_on": f"{FORMAT}:{DATA_NAME}:{'+'.join(FIT_RUNS)}"}
    return out


def fit_mixed_attention(kernel_root: str | Path, *, profile=None) -> dict[str, dict]:
    """Per architecture class, the exponent ``alpha`` of the V1 mixed-step decode attention
    (``EngineProfile.mixed_decode_factor``): measured mixed prefill+decode attention rows of the
    LLMServingSim kernel profiles are priced as prefill + decode x group ** alpha with the shipped
    calibration, and ``alpha`` (a grid of 0.01 over [0, 1]) minimises the median |log(pred / meas)|
    over the rows on the TRAIN side of the kernel split (``llmsim.validation.loaders.split_of``, the
    calibration's salt). Returns {class: {alpha, rows_in_fit, held_out: {median_ape, mape, signed},
    held_out_sum_only: {...}}}."""
    from llmsim.hwmodels.costmodel import OperatorCostModel
    from llmsim.hwmodels.devices import get_device
    from llmsim.validation.calibrate import DEFAULT_SALT as SALT
    from llmsim.validation.loaders import load_measurements, split_of

    table = load_measurements(str(kernel_root))
    mixed = table[table["kind"] == "attn_mixed"].reset_index(drop=True)
    if mixed.empty:
        raise TraceError(f"{kernel_root}: no mixed prefill+decode attention rows")
    cm = OperatorCostModel(profile) if profile is not None else OperatorCostModel()
    pre = cm.price(mixed.assign(kind="attn_prefill")).seconds
    dec = cm.price(mixed.assign(kind="attn_decode", batch=mixed["decode_batch"], ctx=mixed["decode_ctx"],
                                seq=1.0)).seconds
    group = (mixed["heads"] / mixed["kv_heads"]).to_numpy(np.float64)
    meas = mixed["measured_s"].to_numpy(np.float64)
    held = split_of(mixed["shape_key"].to_numpy(), salt=SALT, holdout_fraction=0.2)
    arch = np.array([get_device(d).arch_class for d in mixed["device"]], dtype=object)
    out = {}
    for a in sorted(set(arch)):
        sel = (arch == a) & np.isfinite(pre) & np.isfinite(dec)
        train, test = sel & ~held, sel & held
        grid = np.round(np.arange(0.0, 1.0001, 0.01), 2)
        cost = [np.median(np.abs(np.log((pre[train] + dec[train] * group[train] ** x) / meas[train]))) for x in grid]
        alpha = float(grid[int(np.argmin(cost))])

        def stats(pred):
            rel = (pred - meas[test]) / meas[test]
            return {"rows": int(test.sum()), "median_ape": float(np.median(np.abs(rel))),
                    "mape": float(np.mean(np.abs(rel))), "signed_median": float(np.median(rel))}

        out[a] = {"alpha": alpha, "rows_in_fit": int(train.sum()),
                  "held_out": stats(pre[test] + dec[test] * group[test] ** alpha),
                  "held_out_sum_only": stats(pre[test] + dec[test])}
    return out
