"""The calibrated efficiency model: device monotonicity, finite features, sane extrapolation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.calibration import default_profile
from llmsim.workloads import operators as ops

SHAPES = {
    "gemm": lambda r: _gemm(r),
    "attn_decode": lambda r: _decode(r),
    "attn_prefill": lambda r: _prefill(r),
}


def _gemm(r):
    m, n, k = 2.0 ** r.uniform(0, 16), 2.0 ** r.uniform(5, 16), 2.0 ** r.uniform(5, 16)
    f, b = ops.gemm_work(m, n, k, 2.0, 2.0)
    return np.array([m, n, k, f, b])


def _decode(r):
    b, L, kvh = 2.0 ** r.integers(0, 12), 2.0 ** r.uniform(0, 17), 2.0 ** r.integers(0, 4)
    h = kvh * 2.0 ** r.integers(0, 4)
    f, by = ops.attention_decode_work(b, L, h, kvh, 128.0, 128.0, 2.0, 0)
    return np.array([b, L, h, kvh, 128.0, 0.0, f, by])


def _prefill(r):
    b, s, kvh = 2.0 ** r.integers(0, 9), 2.0 ** r.uniform(0, 14), 2.0 ** r.integers(0, 4)
    h = kvh * 2.0 ** r.integers(0, 4)
    f, by = ops.attention_prefill_work(b, s, 0.0, h, kvh, 128.0, 128.0, 2.0, 0)
    return np.array([b, s, 0.0, h, kvh, 128.0, 0.0, f, by])


@pytest.mark.parametrize("arch", ["hopper", "ampere", "generic"])
@pytest.mark.parametrize("cls", sorted(SHAPES))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from([0, 1]), factor=st.floats(1.01, 8.0))
def test_a_faster_device_never_predicts_a_slower_operator(arch, cls, seed, which, factor):
    p, _ = default_profile().lookup(arch, cls, "bf16")
    shapes = np.stack([SHAPES[cls](np.random.default_rng(seed + i)) for i in range(8)])
    dev = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    faster = dev.copy()
    faster[which] *= factor  # more FLOP/s or more bandwidth
    t0 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, dev, p.log_floor, p.theta)
    t1 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, faster, p.log_floor, p.theta)
    assert np.all(np.isfinite(t0)) and np.all(t0 > 0)
    assert np.all(t1 <= t0 * (1 + 1e-12))


@pytest.mark.parametrize("arch,dev", [("hopper", (989.4e12, 3.35e12, 132.0, 450e9)),
                                      ("ampere", (312e12, 2.039e12, 108.0, 300e9))])
def test_large_gemms_grow_with_their_row_count_beyond_the_measured_range(arch, dev):
    p, _ = default_profile().lookup(arch, "gemm", "bf16")
    rows = []
    for m in (4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0):
        f, b = ops.gemm_work(m, 8192.0, 8192.0, 2.0, 2.0)
        rows.append([m, 8192.0, 8192.0, f, b])
    t = eff.predict_rows(0, np.array(rows), np.array(dev), p.log_floor, p.theta)
    assert np.all(np.diff(t) > 0)
    # beyond the measured range the fitted terms are held flat: time about doubles with the rows
    # (only wave filling and arithmetic intensity still improve a little)
    ratios = t[3:] / t[2:-1]
    assert np.all((ratios > 1.8) & (ratios < 2.05)), ratios


def test_feature_rows_are_finite_for_extreme_shapes():
    dev = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    for cls, shape in (("gemm", [1.0, 1.0, 1.0, 2.0, 6.0]),
                       ("attn_decode", [1.0, 1.0, 1.0, 1.0, 64.0, 0.0, 1.0, 1.0]),
                       ("attn_prefill", [1.0, 1.0, 0.0, 1.0, 1.0, 64.0, 128.0, 1.0, 1.0]),
                       ("elementwise", [3.0, 0.0, 1.0]),
                       ("collective", [0.0, 2.0, 1.0, 1.0])):
        X, base = eff.features(eff.CLASS_INDEX[cls], np.array([shape]), dev, eff.NUM_FEATURES[cls])
        assert np.all(np.isfinite(X)) and np.isfinite(base[0])
