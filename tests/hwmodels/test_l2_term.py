"""The optional L2 term of the memory roofline (hwmodels/efficiency.py ``_mem_time``, hwmodels/priors.py
``l2_vector``): sourced catalogue fields, off reproduces today's prices bit for bit, monotone when on."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels import priors
from llmsim.hwmodels.calibration import default_profile
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.hwmodels.devices import get_device, list_devices
from llmsim.workloads import operators as ops



def _gemm(r):
    m, n, k = 2.0 ** r.uniform(0, 16), 2.0 ** r.uniform(5, 16), 2.0 ** r.uniform(5, 16)
    return np.array([m, n, k, *ops.gemm_work(m, n, k, 2.0, 2.0)])


def _decode(r):
    b, L, kvh = 2.0 ** r.integers(0, 12), 2.0 ** r.uniform(0, 17), 2.0 ** r.integers(0, 4)
    h = kvh * 2.0 ** r.integers(0, 4)
    return np.array([b, L, h, kvh, 128.0, 0.0, *ops.attention_decode_work(b, L, h, kvh, 128.0, 128.0, 2.0, 0)])


def _prefill(r):
    b, s, kvh = 2.0 ** r.integers(0, 9), 2.0 ** r.uniform(0, 14), 2.0 ** r.integers(0, 4)
    h = kvh * 2.0 ** r.integers(0, 4)
    return np.array([b, s, 0.0, h, kvh, 128.0, 0.0, *ops.attention_prefill_work(b, s, 0.0, h, kvh, 128.0, 128.0, 2.0, 0)])


SHAPES = {"gemm": _gemm, "attn_decode": _decode, "attn_prefill": _prefill}

MEASURED = ("a100-sxm-80gb", "h100-sxm", "rtx-4090", "rtx-pro-6000")  # one per class with kernel data


@pytest.mark.parametrize("name", MEASURED)
def test_every_class_with_data_has_a_sourced_l2_capacity_and_bandwidth(name):
    dev = get_device(name)
    t = priors.l2_tier(dev)
    assert t is not None and t.capacity_bytes >= 32 * 2**20
    assert t.bandwidth_bytes_per_s > dev.memory_bandwidth_bytes_per_s  # L2 streams faster than DRAM
    assert "GB/s" in t.source and re.search(r"\[(S|D|U)\]", t.source)


def test_every_catalogued_l2_bandwidth_names_its_source():
    for name in list_devices():
        t = priors.l2_tier(get_device(name))
        if t is not None:
            assert re.search(r"\[(S|D|U|P)\]", t.source) and ("GB/s" in t.source or "TB/s" in t.source), name


def test_l2_vector_appends_capacity_and_bandwidth_and_zeros_without_a_bandwidth():
    h = get_device("h100-sxm")
    v = priors.l2_vector(h, np.array([1.0, 2.0, 3.0, 4.0]))
    assert list(v) == [1.0, 2.0, 3.0, 4.0, 52428800.0, 8.4286e12]
    b = get_device("b200")  # L2 bandwidth not published: the term stays off
    assert priors.l2_tier(b) is None
    assert list(priors.l2_vector(b, np.array([1.0, 2.0, 3.0, 4.0]))[4:]) == [0.0, 0.0]


@pytest.mark.parametrize("cls", sorted(SHAPES))
def test_switched_off_the_prices_are_todays_bit_for_bit(cls):
    p, _ = default_profile().lookup("hopper", cls, "bf16")
    shapes = np.stack([SHAPES[cls](np.random.default_rng(i)) for i in range(64)])
    dev = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    t4 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, dev, p.log_floor, p.theta)
    t6 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, np.r_[dev, 0.0, 0.0], p.log_floor, p.theta)
    assert np.array_equal(t4, t6)
    on = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, np.r_[dev, 50 * 2**20, 8.4e12], p.log_floor, p.theta)
    assert np.all(on <= t4) and np.any(on < t4)  # on: small working sets get faster, none slower


def test_the_shipped_profile_prices_without_the_l2_term():
    import pandas as pd

    row = {"kind": "gemm", "device": "h100-sxm", "dtype": "bf16", "kv_dtype": "", "kernel": "", "variant": "",
           "m": 16.0, "n": 4096.0, "k": 4096.0}
    table = pd.DataFrame([row])
    prof = default_profile()
    assert prof.device_vector(get_device("h100-sxm"), np.zeros(4)).size == 4
    base = OperatorCostModel(prof).price(table).seconds[0]
    with_l2 = OperatorCostModel(priors.with_l2(prof)).price(table).seconds[0]
    assert np.isfinite(base) and with_l2 < base  # 16x4096x4096 bf16 (32 MiB) fits the 50 MiB L2


@settings(max_examples=200, deadline=None)
@given(nbytes=st.floats(1.0, 1e11), grow=st.floats(1.0, 16.0), cap=st.floats(1e6, 2e8),
       bw=st.floats(5e11, 1e13), l2bw=st.floats(1e12, 3e13), which=st.sampled_from([1, 4, 5]),
       faster=st.floats(1.0, 8.0))
def test_l2_memory_time_grows_with_bytes_and_never_slows_a_faster_device(nbytes, grow, cap, bw, l2bw, which, faster):
    dev = np.array([1e15, bw, 132.0, 4.5e11, cap, l2bw])
    base = eff.features(0, np.array([[1.0, 1.0, 1.0, 1.0, nbytes]]), dev, eff.NUM_FEATURES["gemm"])[1][0]
    more = eff.features(0, np.array([[1.0, 1.0, 1.0, 1.0, nbytes * grow]]), dev, eff.NUM_FEATURES["gemm"])[1][0]
    assert more >= base - 1e-12
    quick = dev.copy()
    quick[which] *= faster  # more DRAM bandwidth, more L2 capacity or more L2 bandwidth
    fast = eff.features(0, np.array([[1.0, 1.0, 1.0, 1.0, nbytes]]), quick, eff.NUM_FEATURES["gemm"])[1][0]
    assert fast <= base + 1e-12


@pytest.mark.parametrize("cls", sorted(SHAPES))
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from([0, 1, 4, 5]), factor=st.floats(1.01, 8.0))
def test_with_l2_a_faster_device_never_predicts_a_slower_operator(cls, seed, which, factor):
    p, _ = default_profile().lookup("generic", cls, "bf16")
    shapes = np.stack([SHAPES[cls](np.random.default_rng(seed + i)) for i in range(8)])
    dev = np.array([165.2e12, 1.008e12, 128.0, 32e9, 72 * 2**20, 4.903e12])
    faster = dev.copy()
    faster[which] *= factor
    t0 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, dev, p.log_floor, p.theta)
    t1 = eff.predict_rows(eff.CLASS_INDEX[cls], shapes, faster, p.log_floor, p.theta)
    assert np.all(np.isfinite(t0)) and np.all(t1 <= t0 * (1 + 1e-12))


def test_with_l2_gemm_time_grows_with_its_rows():
    p, _ = default_profile().lookup("generic", "gemm", "bf16")
    dev = np.array([165.2e12, 1.008e12, 128.0, 32e9, 72 * 2**20, 4.903e12])
    rows = []
    for m in 2.0 ** np.arange(0, 17):
        f, b = ops.gemm_work(m, 4096.0, 4096.0, 2.0, 2.0)
        rows.append([m, 4096.0, 4096.0, f, b])
    t = eff.predict_rows(0, np.array(rows), dev, p.log_floor, p.theta)
    off = eff.predict_rows(0, np.array(rows), dev[:4], p.log_floor, p.theta)
    assert np.all(t <= off) and t[0] < off[0]  # 1x4096x4096 (32 MiB) fits the 72 MiB L2
    assert t[-1] == off[-1]  # 65536 rows (~1 GiB): no L2 effect left at double precision


def test_a_fit_with_the_l2_term_prices_with_it_and_without_it_is_todays_fit():
    from pathlib import Path

    from llmsim.validation.calibrate import fit_profile
    from llmsim.validation.loaders import load_measurements

    path = Path(__file__).resolve().parents[2] / "validation/data/kernels/aiconfigurator/a100_sxm/generation_attention_perf.parquet"
    table = load_measurements(str(path))
    # without the per-wave latency (DEFAULT_LATENCY_CLASSES): the L2 term is what this compares
    plain = fit_profile(table, generic=False, latency_classes=())
    l2 = fit_profile(table, generic=False, l2=True, latency_classes=())
    assert isinstance(l2, priors.L2Profile) and not isinstance(plain, priors.L2Profile)
    dev = get_device("a100-sxm-80gb")
    assert l2.device_vector(dev, np.zeros(4)).size == 6 and plain.device_vector(dev, np.zeros(4)).size == 4
    p0, p1 = plain.params["ampere"]["attn_decode"]["bf16"], l2.params["ampere"]["attn_decode"]["bf16"]
    assert p0.rows == p1.rows and not np.array_equal(p0.theta, p1.theta)  # the features saw another base
    held = table.sample(200, random_state=0).reset_index(drop=True)
    t0, t1 = OperatorCostModel(plain).price(held).seconds, OperatorCostModel(l2).price(held).seconds
    assert np.all(np.isfinite(t0)) and np.all(np.isfinite(t1)) and not np.array_equal(t0, t1)
