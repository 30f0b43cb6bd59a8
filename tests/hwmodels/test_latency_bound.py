"""The bounded (fixed, device-independent) latency of fit_class / fit_profile (docs/trust.md "Bounded latency")."""
import math

import numpy as np
import pytest

from llmsim.hwmodels import efficiency as eff
from llmsim.validation.calibrate import fit_class
from llmsim.workloads import operators as ops

SLOW = np.array([300e12, 2e12, 108.0, 1e11])
FAST = np.array([900e12, 3e12, 132.0, 1e11])


def _gemm_rows(rng, n):
    m, nn, k = 2.0 ** rng.uniform(0, 12, n), 2.0 ** rng.uniform(8, 14, n), 2.0 ** rng.uniform(8, 14, n)
    f, b = ops.gemm_work_v(m, nn, k, 2.0, 2.0)
    return np.ascontiguousarray(np.column_stack([m, nn, k, f, b]))


def _data(lat):
    rng = np.random.default_rng(3)
    shapes = _gemm_rows(rng, 300)
    ncol = eff.NUM_FEATURES["gemm"] + eff.NUM_LATENCY["gemm"]
    Xs, bases, ys = [], [], []
    for d in (SLOW, FAST):
        X, base = eff.features(0, shapes, d, ncol)
        Xs.append(X), bases.append(base), ys.append(lat + np.exp(base) / 0.7)
    return shapes, np.concatenate(Xs), np.concatenate(bases), np.concatenate(ys)


def test_fixed_latency_is_held_not_fitted_and_prices_as_a_constant():
    shapes, X, base, y = _data(4e-6)
    nf = eff.NUM_FEATURES["gemm"]
    log_floor, theta, mdape = fit_class(X[:, :nf], base, y, Z=X[:, nf:], max_iter=40, fixed_latency=4e-6)
    assert theta.size == X.shape[1]
    assert theta[nf] == pytest.approx(math.log(4e-6)) and np.all(theta[nf + 1:] == 0.0)
    assert mdape < 0.02
    t_slow = eff.predict_rows(0, shapes, SLOW, log_floor, theta)
    t_fast = eff.predict_rows(0, shapes, FAST, log_floor, theta)
    no_lat = eff.predict_rows(0, shapes, SLOW, log_floor, theta[:nf])
    assert np.allclose(t_slow - no_lat, 4e-6)  # the same seconds on every device
    assert np.all(t_fast <= t_slow) and np.all(t_slow >= 4e-6)


def test_a_wrong_fixed_latency_is_not_absorbed_into_the_latency():
    # data with 1 us latency fitted with a 4 us bound: the latency stays 4 us (the fit cannot move it)
    _, X, base, y = _data(1e-6)
    nf = eff.NUM_FEATURES["gemm"]
    _, theta, _ = fit_class(X[:, :nf], base, y, Z=X[:, nf:], max_iter=40, fixed_latency=4e-6)
    assert math.exp(theta[nf]) == pytest.approx(4e-6)


def test_fixed_latency_needs_latency_columns():
    _, X, base, y = _data(1e-6)
    nf = eff.NUM_FEATURES["gemm"]
    with pytest.raises(ValueError):
        fit_class(X[:, :nf], base, y, fixed_latency=1e-6)
    with pytest.raises(ValueError):
        fit_class(X[:, :nf], base, y, Z=X[:, nf:], fixed_latency=0.0)

