"""Fitted efficiency parameters: a small versioned file, keyed by architecture class.

Layout of a profile (JSON):
  schema, feature_set     versions the file was written for (a mismatch is an error, not a guess)
  split                   the deterministic fit/hold-out rule used when fitting (salt, holdout_fraction)
  sources                 every measurement file fitted on: sha256 of its bytes, rows, rows in the fit
  params[arch][class][group] = {log_floor, theta, rows, fit_median_ape}
  roofline                'achieved' when the features saw the achieved roofline (datasheet peaks x the
                          class's priors, hwmodels/priors.py); absent: the datasheet roofline
``group`` is the dtype family of the operator (gemm: quant format; attention: KV dtype; moe: quant
format; elementwise: 'any'; collective: backend). The class ``generic`` is fitted on every device
together; it serves architecture classes that have no measurements (e.g. Blackwell, CDNA).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from llmsim.hwmodels.efficiency import (DEV_WITH_CYCLES, DEV_WITH_REF, FEATURE_SET_VERSION, NUM_FEATURES, NUM_LATENCY, RANGE_COLUMNS,
                                       no_range)
from llmsim.workloads.errors import ConfigError, LLMSimError, MissingDataError

SCHEMA_VERSION = 1
GENERIC = "generic"
ROOFLINES = ("datasheet", "achieved")
DEFAULT_GROUP = {"gemm": "bf16", "attn_prefill": "bf16", "attn_decode": "bf16", "moe": "bf16",
                 "elementwise": "any", "collective": "nccl"}


@dataclass(frozen=True)
class ClassParams:
    """Coefficients of one (architecture class, operator class, dtype group).

    ``shape_lo`` / ``shape_hi``: the fitted rows' range of the class's RANGE_COLUMNS
    (hwmodels/efficiency.py; sizes in elements/tokens), None when not recorded (nothing is clamped).
    ``fitted_device``: catalogue name of the one device whose rows fitted the entry ('' when several
    devices did, or not recorded); another device priced by the entry is priced by sibling transfer
    (``Profile.sibling_vector``). ``stream_share``: the share of DRAM bandwidth the entry's kernels reach on
    large memory-bound shapes of that device (validation/calibrate.py ``stream_share``; 0: not recorded,
    the class's prior stands in). ``host_floor_s``: seconds; > 0 where the entry was fitted on eagerly timed
    calls (loaders ``timing``), whose measured time is max(host dispatch of a call, GPU time): the fitted
    dispatch floor, which only rows timed that way pay; ``log_floor`` and ``theta`` are the GPU's."""

    log_floor: float
    theta: np.ndarray
    rows: int = 0
    fit_median_ape: float = float("nan")
    shape_lo: np.ndarray | None = None
    shape_hi: np.ndarray | None = None
    fitted_device: str = ""
    stream_share: float = 0.0
    host_floor_s: float = 0.0

    def shape_range(self, op_class: str) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) for the predictor: the recorded range, or one that clamps nothing."""
        if self.shape_lo is None or self.shape_hi is None:
            return no_range(op_class)
        return self.shape_lo, self.shape_hi


@dataclass(frozen=True)
class Profile:
    """A loaded calibration profile; ``lookup`` walks the documented fallback chain."""

    params: dict = field(repr=False)
    split: dict
    sources: tuple
    path: str = ""
    roofline: str = "datasheet"

    def device_vector(self, device, dev: np.ndarray, compute_dtype: str | None = None) -> np.ndarray:
        """The device vector the features see: ``dev`` itself on the datasheet roofline, else a copy with
        the peak and the bandwidth scaled by the device class's achieved shares (hwmodels/priors.py)."""
        if self.roofline == "datasheet":
            return dev
        from llmsim.hwmodels.priors import achieved_vector

        return achieved_vector(device, dev, compute_dtype)

    def sibling_vector(self, p: ClassParams, device, dev: np.ndarray, raw_peak: float,
                       compute_dtype: str | None = None, reference_peaks=None) -> np.ndarray:
        """The device vector that prices entry ``p`` on ``device``: ``dev`` itself (from ``device_vector``)
        when the entry was fitted on several devices or on one with this peak and bandwidth, else ``dev`` extended to
        efficiency.DEV_WITH_REF entries with the fitted device's peak and bandwidth (after the same
        roofline) and the share of DRAM bandwidth its kernels stream at (``p.stream_share``, else the
        class's prior in hwmodels/data/calibration/priors.yaml),
        so that the part of the fitted time above the roofline that is memory-side latency stays in
        seconds on a sibling (efficiency.py ``_combine_sibling``); where both devices give an SM clock,
        a tenth entry (DEV_WITH_CYCLES) with the fitted device's SM cycles per second over this one's, by
        which the compute-side excess (work per SM cycle) scales instead of by the FLOP roofline. ``raw_peak``: the operator's
        datasheet peak on ``device`` (FLOP/s); ``reference_peaks(ref_spec)`` gives the fitted device's
        (peak, bandwidth) for the operator when it is not ``ref.peak_flops(compute_dtype)`` and its
        main-memory bandwidth. A fitted device without the operator's compute format (an H100 for an
        FP4 GEMM priced by 16-bit coefficients) is given the sibling's speed-up of that format over
        bf16, so the transfer sees the devices' difference, not the format's."""
        name = p.fitted_device
        if not name or device is None:
            return dev
        from llmsim.hwmodels.devices import get_device

        try:
            ref = get_device(name)
        except LLMSimError:  # fitted on a device this catalogue does not know (a user's own YAML): plain form
            return dev
        bw = ref.memory_bandwidth_bytes_per_s
        try:
            peak, bw = reference_peaks(ref) if reference_peaks is not None else \
                (ref.peak_flops(compute_dtype or "bf16"), bw)
        except LLMSimError:
            peak = ref.peak_flops("bf16") * raw_peak / device.peak_flops("bf16")
        rv = self.device_vector(ref, np.array((peak, bw, float(ref.num_sms), bw)), compute_dtype)
        if rv[0] == dev[0] and rv[1] == dev[1]:
            return dev  # the fitted device's own peaks: the fitted form, bit for bit
        from llmsim.hwmodels.priors import roofline_shares

        cycles_ref, cycles_dev = ref.sm_cycles_per_s(), device.sm_cycles_per_s()
        out = np.zeros(DEV_WITH_CYCLES if cycles_ref and cycles_dev else DEV_WITH_REF)
        out[:dev.size] = dev
        out[DEV_WITH_REF - 3], out[DEV_WITH_REF - 2] = rv[0], rv[1]
        out[DEV_WITH_REF - 1] = p.stream_share or roofline_shares(ref.arch_class, compute_dtype or "bf16")[1]
        if out.size == DEV_WITH_CYCLES:  # compute-side excess in SM cycles: the fitted device's over this one's
            out[DEV_WITH_REF] = cycles_ref / cycles_dev
        return out

    def lookup(self, arch: str, op_class: str, group: str) -> tuple[ClassParams, str]:
        """Parameters for an operator, and the key they came from (for reports).

        Order: (arch, group), (arch, group without kernel family), (arch, default group), then the
        same three in the generic class. A bare dtype group names that dtype's principal kernel.
        """
        base = group.split(":", 1)[0]
        chain = []
        for a in (arch, GENERIC):
            for g in (group, base, DEFAULT_GROUP[op_class]):
                if (a, g) not in chain:
                    chain.append((a, g))
        for a, g in chain:
            p = self.params.get(a, {}).get(op_class, {}).get(g)
            if p is not None:
                return p, f"{a}/{op_class}/{g}"
        raise MissingDataError(
            f"no calibrated parameters for {op_class} ({group}) on architecture class {arch!r} "
            f"nor the generic class in profile {self.path or '<default>'}; run `simulate calibrate` "
            f"on measurements of this operator class")

    def source_hashes(self) -> dict[str, dict]:
        return {s["sha256"]: s for s in self.sources}

    def to_json(self) -> dict:
        params = {a: {c: {g: _params_json(c, p) for g, p in groups.items()} for c, groups in classes.items()}
                  for a, classes in self.params.items()}
        out = {"schema": SCHEMA_VERSION, "feature_set": FEATURE_SET_VERSION, "split": self.split,
               "sources": list(self.sources), "params": params}
        if self.roofline != "datasheet":
            out["roofline"] = self.roofline
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")


def _params_json(op_class: str, p: ClassParams) -> dict:
    out = {"log_floor": p.log_floor, "theta": [float(v) for v in p.theta], "rows": p.rows,
           "fit_median_ape": p.fit_median_ape}
    if p.fitted_device:
        out["fitted_device"] = p.fitted_device
    if p.stream_share > 0:
        out["stream_share"] = p.stream_share
    if p.host_floor_s > 0:
        out["host_floor_s"] = p.host_floor_s
    if p.shape_lo is not None and p.shape_hi is not None and RANGE_COLUMNS[op_class]:
        out["shape_range"] = {"columns": list(RANGE_COLUMNS[op_class]), "min": [float(v) for v in p.shape_lo],
                              "max": [float(v) for v in p.shape_hi]}
    return out


def _range_from_json(where: str, op_class: str, p: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    r = p.get("shape_range")
    if r is None:
        return None, None
    cols = list(RANGE_COLUMNS[op_class])
    if not isinstance(r, dict) or r.get("columns") != cols:
        raise ConfigError(f"{where}: shape_range.columns must be {cols}, got {r.get('columns') if isinstance(r, dict) else r!r}")
    lo, hi = np.asarray(r.get("min"), dtype=np.float64), np.asarray(r.get("max"), dtype=np.float64)
    if lo.shape != (len(cols),) or hi.shape != (len(cols),) or np.any(lo > hi):
        raise ConfigError(f"{where}: shape_range.min/max must be {len(cols)} values each with min <= max")
    return lo, hi


def _host_floor(where: str, p: dict) -> float:
    v = p.get("host_floor_s", 0.0)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
        raise ConfigError(f"{where}.host_floor_s must be seconds in [0, 1), got {v!r}")
    return float(v)


def profile_from_json(data: dict, path: str = "") -> Profile:
    """Validate and load a profile dict; errors name the file and the bad key."""
    where = path or "<profile>"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a calibration profile must be a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise ConfigError(f"{where}: `schema` must be {SCHEMA_VERSION}, got {data.get('schema')!r}; "
                          f"refit with `simulate calibrate`")
    if data.get("feature_set") != FEATURE_SET_VERSION:
        raise ConfigError(f"{where}: `feature_set` must be {FEATURE_SET_VERSION!r}, got "
                          f"{data.get('feature_set')!r}; refit with `simulate calibrate`")
    roofline = data.get("roofline", "datasheet")
    if roofline not in ROOFLINES:
        raise ConfigError(f"{where}: `roofline` must be one of {', '.join(ROOFLINES)}, got {roofline!r}")
    params: dict = {}
    for arch, classes in data.get("params", {}).items():
        for cls, groups in classes.items():
            if cls not in NUM_FEATURES:
                raise ConfigError(f"{where}: unknown operator class {cls!r} under params.{arch}")
            for group, p in groups.items():
                theta = np.asarray(p["theta"], dtype=np.float64)
                sizes = sorted({NUM_FEATURES[cls], NUM_FEATURES[cls] + NUM_LATENCY[cls]})
                if theta.ndim != 1 or theta.size not in sizes:
                    raise ConfigError(f"{where}: params.{arch}.{cls}.{group}.theta must have "
                                      f"{' or '.join(map(str, sizes))} values (efficiency features, then the "
                                      f"latency features), got {theta.size}")
                lo, hi = _range_from_json(f"{where}: params.{arch}.{cls}.{group}", cls, p)
                params.setdefault(arch, {}).setdefault(cls, {})[group] = ClassParams(
                    float(p["log_floor"]), theta, int(p.get("rows", 0)),
                    float(p.get("fit_median_ape", float("nan"))), lo, hi, str(p.get("fitted_device", "")),
                    float(p.get("stream_share", 0.0)), _host_floor(f"{where}: params.{arch}.{cls}.{group}", p))
    return Profile(params=params, split=dict(data.get("split", {})),
                   sources=tuple(data.get("sources", ())), path=path, roofline=roofline)


def load_profile(path: str | Path | Profile) -> Profile:
    """The calibration profile at ``path`` (JSON); a :class:`Profile` is returned as it is."""
    if isinstance(path, Profile):
        return path
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"calibration profile {str(p)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return profile_from_json(data, str(p))


DEFAULT_PROFILE_NAME = "default.json"


@lru_cache(maxsize=1)
def default_profile() -> Profile:
    """The calibration shipped with the package (fitted on the training split of the shipped data)."""
    ref = resources.files("llmsim.hwmodels") / "data" / "calibration" / DEFAULT_PROFILE_NAME
    if not ref.is_file():
        raise MissingDataError("the package ships no calibration profile (hwmodels/data/calibration/"
                               "default.json); build it with `simulate fit-kernels --default`")
    return profile_from_json(json.loads(ref.read_text()), "hwmodels/data/calibration/default.json")
