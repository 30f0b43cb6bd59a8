"""Decode attention's device-independent latency: tau per wave of CTAs (hwmodels/efficiency.py
``_fill_latency``, ``LATENCY_HELD``; validation/calibrate.py ``fit_class(held=)``; docs/trust.md
"Per-wave decode latency")."""
import math

import numpy as np
import pytest

from llmsim.hwmodels import efficiency as eff
from llmsim.validation.calibrate import DEFAULT_LATENCY_CLASSES, fit_class
from llmsim.workloads import operators as ops

NF, NL = eff.NUM_FEATURES["attn_decode"], eff.NUM_LATENCY["attn_decode"]
# peak FLOP/s, DRAM B/s, SMs, link B/s: a slow and a fast device, and one with 3x the fast one's bandwidth
SLOW = np.array([165e12, 1.0e12, 128.0, 1e11])
FAST = np.array([990e12, 3.35e12, 132.0, 1e11])
WIDE = np.array([990e12, 10.0e12, 132.0, 1e11])
TAU = 2e-6  # seconds per wave of the synthetic kernel


def _decode_rows(rng, n):
    b = np.round(2.0 ** rng.uniform(0, 8, n))
    L = np.round(2.0 ** rng.uniform(7, 15, n))
    h, kvh, d = np.full(n, 32.0), np.full(n, 8.0), np.full(n, 128.0)
    w = np.zeros(n)
    f, by = ops.attention_decode_work_v(b, L, h, kvh, d, 2.0, w)
    return np.ascontiguousarray(np.column_stack([b, L, h, kvh, d, w, f, by]))


def _features(shapes, dev):
    return eff.features(eff.CLASS_INDEX["attn_decode"], shapes, dev, NF + NL)


def _synthetic(shapes, dev):
    """A kernel whose time is a 3 us floor, tau per wave, and the roofline at 60% efficiency."""
    X, base = _features(shapes, dev)
    waves = np.exp(X[:, NF + 1])
    return X, base, 3e-6 + TAU * waves + np.exp(base) / 0.6


def _training_rows(seed):
    """Synthetic rows of the slow and the fast device (same shapes): features, log roofline, seconds."""
    shapes = _decode_rows(np.random.default_rng(seed), 300)
    parts = [_synthetic(shapes, d) for d in (SLOW, FAST)]
    return shapes, *(np.concatenate([p[i] for p in parts]) for i in range(3))


def test_waves_follow_the_split_kv_heuristic():
    rng = np.random.default_rng(0)
    shapes = _decode_rows(rng, 400)
    X, _ = _features(shapes, FAST)
    assert np.all(X[:, NF] == 1.0)
    waves = np.exp(X[:, NF + 1])
    assert np.allclose(waves, np.round(waves)) and np.all(waves >= 1.0)
    for s, wv, split in zip(shapes, waves, X[:, NF + 2]):
        mblocks = s[0] * s[3] * math.ceil(s[2] / s[3] / 64.0)
        sp = eff._fa_num_splits(mblocks, math.ceil(s[1] / eff._fa_block_n(s[4])), FAST[2])
        assert wv == pytest.approx(math.ceil(mblocks * sp / FAST[2]), rel=1e-12)
        assert split == (1.0 if sp > 1.0 else 0.0)
    # a large batch runs one CTA per (request, KV head) and no split: waves = ceil(b x kvh / SMs)
    big = shapes[shapes[:, 0] * shapes[:, 3] >= FAST[2]]
    Xb, _ = _features(big, FAST)
    assert np.allclose(np.exp(Xb[:, NF + 1]), np.ceil(big[:, 0] * big[:, 3] / FAST[2]), rtol=1e-12)
    assert np.all(Xb[:, NF + 2] == 0.0)
    # where neither device splits the KV, more SMs never run more waves (with splits the heuristic may
    # choose two short waves over one long one)
    more_sms = FAST.copy()
    more_sms[2] = 2 * FAST[2]
    full = shapes[shapes[:, 0] * shapes[:, 3] >= 0.8 * more_sms[2]]
    Xm, _ = _features(full, more_sms)
    Xo, _ = _features(full, FAST)
    assert len(full) > 20 and np.all(Xm[:, NF + 2] == 0.0)
    assert np.all(Xm[:, NF + 1] <= Xo[:, NF + 1]) and np.any(Xm[:, NF + 1] < Xo[:, NF + 1])


def test_the_waves_coefficient_is_held_and_the_latency_is_the_same_seconds_on_every_device():
    shapes, X, base, y = _training_rows(1)
    held = eff.LATENCY_HELD["attn_decode"]
    log_floor, theta, mdape = fit_class(X[:, :NF], base, y, Z=X[:, NF:], max_iter=40, held=held)
    assert theta.size == NF + NL
    assert theta[NF + 1] == 1.0  # held, not fitted
    assert theta[NF + 2] >= 0.0
    assert mdape < 0.03
    # the latency part is tau x waves whatever the device's bandwidth: the same seconds on WIDE as on FAST
    Xf, _ = _features(shapes, FAST)
    Xw, _ = _features(shapes, WIDE)
    lat_fast = np.exp(Xf[:, NF:] @ theta[NF:])
    lat_wide = np.exp(Xw[:, NF:] @ theta[NF:])
    assert np.array_equal(lat_fast, lat_wide)
    assert math.exp(theta[NF]) == pytest.approx(TAU, rel=0.35)


def test_per_wave_latency_extrapolates_to_more_bandwidth_better_than_the_roofline_proportional_fit():
    shapes, X, base, y = _training_rows(2)
    lf_w, th_w, _ = fit_class(X[:, :NF], base, y, Z=X[:, NF:], max_iter=40, held=eff.LATENCY_HELD["attn_decode"])
    lf_p, th_p, _ = fit_class(X[:, :NF], base, y, max_iter=40)
    _, _, truth = _synthetic(shapes, WIDE)
    wave = eff.predict_rows(eff.CLASS_INDEX["attn_decode"], shapes, WIDE, lf_w, th_w)
    plain = eff.predict_rows(eff.CLASS_INDEX["attn_decode"], shapes, WIDE, lf_p, th_p)
    ape_wave = np.mean(np.abs(wave - truth) / truth)
    ape_plain = np.mean(np.abs(plain - truth) / truth)
    assert ape_wave < 0.5 * ape_plain
    # a faster device is never slower, with the latency term too
    slow = eff.predict_rows(eff.CLASS_INDEX["attn_decode"], shapes, SLOW, lf_w, th_w)
    assert np.all(wave <= slow)


def test_every_fit_gives_decode_attention_the_latency_term():
    assert "attn_decode" in DEFAULT_LATENCY_CLASSES
    assert dict(eff.LATENCY_HELD["attn_decode"]) == {1: 1.0}


def test_the_shipped_decode_entries_carry_the_per_wave_latency():
    from llmsim.hwmodels.calibration import default_profile

    profile = default_profile()
    entries = [(a, g, p) for a, cs in profile.params.items() for g, p in cs.get("attn_decode", {}).items()]
    assert len(entries) >= 8
    for arch, group, p in entries:
        assert p.theta.size == NF + NL, (arch, group)
        assert p.theta[NF + 1] == 1.0 and p.theta[NF + 2] >= 0.0, (arch, group)
        assert 1e-8 < math.exp(p.theta[NF]) < 1e-4, (arch, group)  # seconds per wave
