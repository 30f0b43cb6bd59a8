"""Achieved-peak priors: the share of a device's datasheet peaks that real kernels reach, per
architecture class (hwmodels/data/calibration/priors.yaml, each figure with its source).

The achieved roofline of an operator is ``max(FLOPs / (peak x e_compute), bytes / (bandwidth x
e_memory))``: ``e_compute`` is the class's share of the dense peak FLOP/s that large GEMMs sustain (per
compute dtype where it differs), ``e_memory`` the share of DRAM bandwidth that streaming kernels reach.
Both are dimensionless and in (0, 1]. A calibration profile with ``roofline: achieved``
(hwmodels/calibration.py) builds every operator's device vector this way, in the fit and in pricing,
so a class with no measurements of its own is predicted from its own priors instead of inheriting
another class's share of peak through the fitted coefficients.
"""
from __future__ import annotations

from dataclasses import fields
from functools import lru_cache
from importlib import resources

import numpy as np

from llmsim.hwmodels.calibration import Profile
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.yamlio import read_yaml

PRIORS_FILE = "priors.yaml"
#: compute dtypes tried, in order, when only a device vector's peak is known (``achieved_vector``)
_COMPUTE_DTYPES = ("bf16", "fp16", "fp8", "int8", "fp4", "tf32", "fp32", "fp64")


def _check_share(where: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
        raise ConfigError(f"{where} must be a number in (0, 1], got {v!r}")
    return float(v)


def _entry(where: str, e) -> tuple[dict[str, float], float]:
    if not isinstance(e, dict) or set(e) - {"compute", "memory", "source"} or "compute" not in e or "memory" not in e:
        raise ConfigError(f"{where}: needs `compute` (a mapping with `default`), `memory` and `source`")
    comp = e["compute"]
    if not isinstance(comp, dict) or "default" not in comp:
        raise ConfigError(f"{where}.compute must be a mapping with a `default` share")
    return ({str(k): _check_share(f"{where}.compute.{k}", v) for k, v in comp.items()},
            _check_share(f"{where}.memory", e["memory"]))


@lru_cache(maxsize=1)
def priors() -> dict[str, tuple[dict[str, float], float]]:
    """{architecture class: ({compute dtype or 'default': share}, memory share)}; key '' is the default."""
    ref = resources.files("llmsim.hwmodels") / "data" / "calibration" / PRIORS_FILE
    where = f"hwmodels/data/calibration/{PRIORS_FILE}"
    data = read_yaml(ref.read_text(), where)
    if not isinstance(data, dict) or data.get("schema_version") != 1 or "default" not in data:
        raise ConfigError(f"{where}: needs schema_version 1, `classes` and `default`")
    out = {a: _entry(f"{where}: classes.{a}", e) for a, e in (data.get("classes") or {}).items()}
    out[""] = _entry(f"{where}: default", data["default"])
    return out


def roofline_shares(arch_class: str, compute_dtype: str) -> tuple[float, float]:
    """(compute share, memory share) of the datasheet peaks for ``arch_class`` and ``compute_dtype``."""
    comp, mem = priors().get(arch_class, priors()[""])
    return comp.get(compute_dtype, comp["default"]), mem


def _compute_dtype_of(device, peak: float) -> str:
    """The compute dtype whose dense peak on ``device`` is ``peak`` (the first in _COMPUTE_DTYPES)."""
    for dt in _COMPUTE_DTYPES:
        try:
            if device.peak_flops(dt) == peak:
                return dt
        except Exception:  # a dtype the device lacks
            continue
    return "default"


def achieved_vector(device, dev: np.ndarray, compute_dtype: str | None = None) -> np.ndarray:
    """A copy of the device vector ``dev`` (peak FLOP/s, bandwidth B/s, SMs, link B/s) with the peak and
    the bandwidth scaled by the device class's achieved shares (``compute_dtype`` inferred from the peak
    when not given)."""
    dt = compute_dtype if compute_dtype is not None else _compute_dtype_of(device, float(dev[0]))
    c, m = roofline_shares(device.arch_class, dt)
    out = np.array(dev, dtype=np.float64, copy=True)
    out[0] *= c
    out[1] *= m
    return out


# --------------------------------------------------------------------------- optional L2 term
def l2_tier(device):
    """The device's on-chip L2 tier (catalogue ``memory`` entry named 'l2') when both its capacity and its
    bandwidth are given, else None (the L2 term stays off for that device)."""
    for t in getattr(device, "memory", ()):
        if t.role == "on_chip" and t.name == "l2" and t.bandwidth_bytes_per_s and t.capacity_bytes > 0:
            return t
    return None


def l2_vector(device, dev: np.ndarray) -> np.ndarray:
    """``dev`` (peak FLOP/s, bandwidth B/s, SMs, link B/s) extended by the L2 capacity (bytes) and the L2
    bandwidth (B/s) of the catalogue, which switch on the L2 term of the memory roofline
    (hwmodels/efficiency.py ``_mem_time``); a device without a sourced L2 bandwidth gets zeros (term off).
    Meant for kernel microbenchmarks, whose inputs stay hot in L2 between timed calls; serving prices
    with the 4-entry vector (weights and KV do not stay in L2)."""
    t = l2_tier(device)
    out = np.zeros(6)
    out[:4] = np.asarray(dev, dtype=np.float64)[:4]
    if t is not None:
        out[4] = float(t.capacity_bytes)
        out[5] = float(t.bandwidth_bytes_per_s)
    return out


class L2Profile(Profile):
    """A profile whose device vectors carry the L2 entries (``l2_vector``)."""

    def device_vector(self, device, dev, compute_dtype=None):
        return l2_vector(device, super().device_vector(device, dev, compute_dtype))


def with_l2(profile: Profile) -> Profile:
    """A copy of ``profile`` whose device vectors carry the L2 entries (``l2_vector``): the coefficients are
    the profile's, so use it with a profile fitted with the L2 term (validation/calibrate.py
    ``fit_profile(l2=True)``). Not saved in the profile file (an in-memory option, off by default)."""
    return L2Profile(**{f.name: getattr(profile, f.name) for f in fields(Profile)})
