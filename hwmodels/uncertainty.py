"""Error bars on predicted operator times, from the calibration's held-out residuals.

A band is the 10th and 90th percentile of ``log(measured / predicted)`` over held-out rows of one
calibration entry (``arch/class/group``, hwmodels/calibration.py ``Profile.lookup``) and regime
(predicted time below or above ``SMALL_S``). A predicted time ``t`` gets the 80% interval
``[t * exp(lo), t * exp(hi)]``. A bare dtype entry (``hopper/gemm/bf16``) takes the band of the kernel
family it names (``aliases``), not of the rows from other software stacks it priced. Entries with too few rows use their operator class's band; a row
priced by another architecture class's coefficients (a device class never measured) uses the
leave-one-architecture-out band of its operator class (benchmarks/bench_loao.py), which is wider; so
does every operator of a run on a device with no kernel measurements of its own (``measured_devices``).

Collectives are priced by the alpha-beta model (hwmodels/collectives.py), every one of them under the
param key :data:`NETWORK_PARAM_KEY`; their bands ``network|<regime>`` are fitted on that model's own
held-out residuals (half of the rows the network fit held out, validation/network.py
``fit_network_bands``), not on the kernel-calibrated ``collective`` class's.

File (hwmodels/data/calibration/uncertainty.json, written by ``simulate fit-kernels --uncertainty``; its
``network|*`` bands by ``python -m llmsim.validation.network --bands``, which keeps the others):
  split        how the held-out rows were divided: half fits the bands, the other half scores them
               (``split.network``: the same for the network fit's held-out rows)
  bands        {"<arch/class/group>|<regime>": [lo, hi, rows]}, {"<class>|<regime>": ...},
               {"network|<regime>": ...}
  extrapolated {"<class>": [lo, hi, rows]} from leave-one-architecture-out residuals
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

import numpy as np

from llmsim.hwmodels.costmodel import QUANT_PASS_SUFFIX
from llmsim.workloads.errors import ConfigError

SMALL_S = 30e-6  # s: below it an operator is launch- and latency-bound [U]
MIN_ROWS = 30
QUANTILES = (0.10, 0.90)
#: Used where neither the entry, its class nor a leave-one-out band exists: +-50% [U].
WIDE = (math.log(0.5), math.log(1.5), 0)
FILE_NAME = "uncertainty.json"
#: The param key of every collective a deployment prices with the alpha-beta model (hwmodels/deployment.py):
#: ``network:<what>`` per kind of collective (:func:`network_param_key`), each falling back to the pooled
#: ``network`` band where its kind had too few rows.
NETWORK_PARAM_KEY = "network"
#: What a collective row is, as a deployment prices it and validation/network.py groups it.
NETWORK_KINDS = ("custom_all_reduce", "nccl_all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


def network_param_key(what: str) -> str:
    """``network:<what>`` for one of :data:`NETWORK_KINDS`."""
    if what not in NETWORK_KINDS:
        raise ValueError(f"unknown collective kind {what!r}; known: {', '.join(NETWORK_KINDS)}")
    return f"{NETWORK_PARAM_KEY}:{what}"


def regime(seconds: float) -> str:
    return "small" if seconds < SMALL_S else "large"


@dataclass(frozen=True)
class ErrorModel:
    """Bands of log(measured / predicted) per calibration entry and regime (see module docstring)."""

    bands: dict = field(repr=False)
    extrapolated: dict = field(repr=False)
    split: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict, repr=False)  # bare dtype entry -> its principal kernel family's
    measured_devices: tuple = ()  # device names with kernel rows in the data the bands were fitted on

    def device_measured(self, name: str) -> bool:
        """True when ``name`` had kernel measurements; a device only its class was measured on is an
        extrapolation (its runs take the leave-one-architecture-out bands)."""
        return name in self.measured_devices

    def band(self, param_key: str, op_class: str, seconds: float, fallback: str = "") -> tuple[float, float, str]:
        """(lo, hi, source) in log units for a row priced by ``param_key`` at ``seconds``; ``fallback``
        'class' (another architecture class priced it) takes the leave-one-architecture-out band."""
        r = regime(seconds)
        param_key = param_key.removesuffix(QUANT_PASS_SUFFIX)  # the GEMM entry's band (the pass is a small share)
        param_key = self.aliases.get(param_key, param_key)
        if fallback == "class" and op_class in self.extrapolated:
            lo, hi, _ = self.extrapolated[op_class]
            return lo, hi, f"extrapolated:{op_class}"
        pooled = param_key.split(":", 1)[0] if ":" in param_key else param_key
        for k in (f"{param_key}|{r}", f"{pooled}|{r}", f"{op_class}|{r}"):
            b = self.bands.get(k)
            if b is not None:
                lo, hi, _ = b
                if fallback == "family" and op_class in self.extrapolated:  # another kernel family: the wider
                    elo, ehi, _ = self.extrapolated[op_class]
                    lo, hi = min(lo, elo), max(hi, ehi)
                return lo, hi, k
        if op_class in self.extrapolated:
            lo, hi, _ = self.extrapolated[op_class]
            return lo, hi, f"extrapolated:{op_class}"
        return WIDE[0], WIDE[1], "wide"

    def intervals(self, seconds: np.ndarray, param_key: np.ndarray, op_class: np.ndarray,
                  fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) seconds of the 80% interval of every predicted row (NaN where ``seconds`` is)."""
        lo = np.full(len(seconds), np.nan)
        hi = np.full(len(seconds), np.nan)
        for i, t in enumerate(seconds):
            if not np.isfinite(t):
                continue
            a, b, _ = self.band(str(param_key[i]), str(op_class[i]), float(t),
                                "" if fallback is None else str(fallback[i]))
            lo[i], hi[i] = t * math.exp(a), t * math.exp(b)
        return lo, hi

    def to_json(self) -> dict:
        return {"schema": 1, "quantiles": list(QUANTILES), "split": self.split, "aliases": dict(sorted(self.aliases.items())),
                "measured_devices": sorted(self.measured_devices),
                "bands": {k: [float(v[0]), float(v[1]), int(v[2])] for k, v in sorted(self.bands.items())},
                "extrapolated": {k: [float(v[0]), float(v[1]), int(v[2])] for k, v in sorted(self.extrapolated.items())}}


def with_network_bands(model: ErrorModel, source: ErrorModel | None) -> ErrorModel:
    """``model`` with the collective bands (``network|*``, ``network:*``) and ``split.network`` of
    ``source``: the kernel bands and the network bands are fitted by different commands
    (``simulate fit-kernels --uncertainty``, ``simulate fit-network --write``), each keeping the other's."""
    if source is None:
        return model
    net = {k: v for k, v in source.bands.items() if k.startswith(NETWORK_PARAM_KEY)}
    kept = {k: v for k, v in model.bands.items() if not k.startswith(NETWORK_PARAM_KEY)}
    split = dict(model.split)
    if "network" in source.split:
        split["network"] = source.split["network"]
    return replace(model, bands={**kept, **net}, split=split)


def fit_bands(log_ratio: np.ndarray, param_key: np.ndarray, op_class: np.ndarray, seconds: np.ndarray) -> dict:
    """Bands per entry and regime, and per operator class and regime, where at least MIN_ROWS rows."""
    regimes = np.where(seconds < SMALL_S, "small", "large")
    out = {}
    for keys in ((param_key, regimes), (op_class, regimes)):
        labels = np.array([f"{a}|{b}" for a, b in zip(*keys)], dtype=object)
        for lab in sorted(set(labels)):
            sel = labels == lab
            if sel.sum() >= MIN_ROWS:
                q = np.quantile(log_ratio[sel], QUANTILES)
                out[lab] = (float(q[0]), float(q[1]), int(sel.sum()))
    return out


def class_bands(log_ratio: np.ndarray, op_class: np.ndarray) -> dict:
    """One band per operator class (leave-one-architecture-out residuals)."""
    out = {}
    for c in sorted(set(op_class)):
        sel = op_class == c
        if sel.sum() >= MIN_ROWS:
            q = np.quantile(log_ratio[sel], QUANTILES)
            out[str(c)] = (float(q[0]), float(q[1]), int(sel.sum()))
    return out


def error_model_from_json(data: dict, where: str = "<uncertainty>") -> ErrorModel:
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise ConfigError(f"{where}: an uncertainty file must be a JSON object with schema 1")

    def rows(d, key):
        try:
            return {k: (float(v[0]), float(v[1]), int(v[2])) for k, v in d.get(key, {}).items()}
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"{where}: `{key}` entries must be [lo, hi, rows]") from None

    return ErrorModel(bands=rows(data, "bands"), extrapolated=rows(data, "extrapolated"), split=dict(data.get("split", {})),
                      aliases={str(k): str(v) for k, v in data.get("aliases", {}).items()},
                      measured_devices=tuple(str(d) for d in data.get("measured_devices", ())))


@lru_cache(maxsize=1)
def default_error_model() -> ErrorModel:
    """The bands shipped with the calibration (none: every interval is WIDE)."""
    ref = resources.files("llmsim.hwmodels") / "data" / "calibration" / FILE_NAME
    if not ref.is_file():
        return ErrorModel(bands={}, extrapolated={})
    return error_model_from_json(json.loads(ref.read_text()), f"hwmodels/data/calibration/{FILE_NAME}")


#: Run metrics (seconds) that scale with the iteration time, and rates that scale with its inverse.
LATENCY_KEYS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p90_s",
                "tpot_p99_s", "tpot_token_weighted_s", "e2e_mean_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
                "makespan_s")
RATE_KEYS = ("throughput_output_tok_s", "throughput_input_tok_s", "requests_per_s", "goodput_requests_per_s")


def run_intervals(summary: dict, band: tuple[float, float]) -> dict:
    """``{<metric>_interval: [lo, hi]}`` for a run summary's latency and throughput figures, from the
    iteration-time band (lo, hi factors). Queueing can amplify a kernel-time error in TTFT under
    load; the interval carries the kernel-time part only [U]."""
    lo, hi = band
    out = {}
    for k in LATENCY_KEYS:
        v = summary.get(k)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[f"{k}_interval"] = [float(v) * lo, float(v) * hi]
    for k in RATE_KEYS:
        v = summary.get(k)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[f"{k}_interval"] = [float(v) / hi, float(v) / lo]
    return out
