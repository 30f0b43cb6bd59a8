"""Sibling transfer (hwmodels/efficiency.py ``_combine_sibling``, ``Profile.sibling_vector``): an entry fitted
on one device prices another device of its class with the memory-side excess over the roofline held in
seconds; on the fitted device itself nothing changes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.calibration import GENERIC, Profile, default_profile, profile_from_json
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.hwmodels.deployment import Deployment
from llmsim.hwmodels.devices import get_device
from llmsim.workloads import operators as ops


def _gemm_rows(device: str, m, n=8192.0, k=8192.0, dtype="bf16") -> pd.DataFrame:
    m = np.asarray(m, dtype=float)
    return pd.DataFrame({"device": device, "kind": "gemm", "dtype": dtype, "m": m, "n": n, "k": k,
                         "measured_s": np.nan, "source": "", "kv_dtype": "", "kernel": "", "variant": "",
                         "shape_key": [f"s{i}" for i in range(m.size)]})


def _proportional(monkeypatch):
    """The plain form everywhere: what the prices were before the transfer."""
    monkeypatch.setattr(Profile, "sibling_vector", lambda self, p, device, dev, *a, **k: dev)


def test_single_device_entries_of_a_class_record_their_device_generic_ones_do_not():
    prof = default_profile()
    assert prof.lookup("hopper", "gemm", "bf16")[0].fitted_device == "h100-sxm"
    assert prof.lookup("ampere", "attn_decode", "bf16")[0].fitted_device == "a100-sxm-80gb"
    assert prof.lookup("ada", "gemm", "bf16")[0].fitted_device == "rtx-4090"
    assert all(not p.fitted_device for groups in prof.params[GENERIC].values() for p in groups.values())
    # the field survives the JSON round trip
    again = profile_from_json(prof.to_json())
    assert again.lookup("hopper", "gemm", "bf16")[0].fitted_device == "h100-sxm"


def test_the_fitted_device_and_a_generic_entry_keep_the_plain_form():
    prof = default_profile()
    p, _ = prof.lookup("hopper", "gemm", "bf16")
    h100 = get_device("h100")
    dev = np.array([h100.peak_flops("bf16"), h100.memory_bandwidth_bytes_per_s, h100.num_sms, 450e9])
    assert prof.sibling_vector(p, h100, dev, dev[0], "bf16") is dev
    g, _ = prof.lookup(GENERIC, "gemm", "bf16")
    b200 = get_device("b200")
    assert prof.sibling_vector(g, b200, dev, dev[0], "bf16") is dev


def test_identity_when_the_reference_is_the_device_itself():
    p, _ = default_profile().lookup("hopper", "attn_decode", "bf16")
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(50):
        b, L = 2.0 ** rng.integers(0, 9), 2.0 ** rng.uniform(4, 16)
        f, by = ops.attention_decode_work(b, L, 32.0, 8.0, 128.0, 128.0, 2.0, 0)
        rows.append([b, L, 32.0, 8.0, 128.0, 0.0, f, by])
    shapes = np.array(rows)
    dev = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    ref = np.zeros(eff.DEV_WITH_REF)
    ref[:4] = dev
    ref[6:8] = dev[:2]
    ref[8] = 0.834
    lo, hi = p.shape_range("attn_decode")
    a = eff.predict_rows_ranged(2, shapes, dev, p.log_floor, p.theta, lo, hi)
    b = eff.predict_rows_ranged(2, shapes, ref, p.log_floor, p.theta, lo, hi)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_h200_small_gemms_keep_the_h100_latency_streaming_and_compute_bound_ones_scale(monkeypatch):
    model = OperatorCostModel()
    small = _gemm_rows("h200", [1.0, 16.0], n=1024.0, k=1024.0)  # 2 MB of weights: launch and DRAM latency
    big = _gemm_rows("h200", [1.0, 8192.0])  # a 134 MB GEMV streams at bandwidth; m = 8192 is compute-bound
    h100_small = model.price(small.assign(device="h100")).seconds
    h100_big = model.price(big.assign(device="h100")).seconds
    t_small, t_big = model.price(small).seconds, model.price(big).seconds
    _proportional(monkeypatch)
    plain_small = OperatorCostModel().price(small).seconds
    plain_big = OperatorCostModel().price(big).seconds
    # latency-bound rows: slower than the roofline-proportional price, still no slower than the H100
    assert np.all(t_small > plain_small * 1.05) and np.all(t_small <= h100_small)
    # the streaming GEMV scales with bandwidth (its H100 time is ~0.9 of what DRAM allows): close to plain
    assert t_big[0] == pytest.approx(plain_big[0], rel=0.02) and 3.35 / 4.8 <= t_big[0] / h100_big[0] < 0.75
    # a compute-bound GEMM: the two have the same tensor peak, so the same price (to the memory share's tail)
    assert t_big[1] == pytest.approx(h100_big[1], rel=1e-3) and t_big[1] == pytest.approx(plain_big[1], rel=1e-3)


def test_stream_share_is_recorded_from_the_fitted_rows():
    prof = default_profile()
    for arch, cls in (("hopper", "gemm"), ("ampere", "gemm"), ("ampere", "attn_decode")):
        p, _ = prof.lookup(arch, cls, "bf16")
        assert 0.5 < p.stream_share <= 1.0
    # the share bounds what is held: with share 1 every memory-side excess is latency, with a small share
    # none of it is, and the price moves between the two monotonically
    p, _ = prof.lookup("hopper", "gemm", "bf16")
    f, b = ops.gemm_work(16.0, 2048.0, 2048.0, 2.0, 2.0)
    shapes = np.array([[16.0, 2048.0, 2048.0, f, b]])
    dev = np.zeros(eff.DEV_WITH_REF)
    dev[:4] = (989.4e12, 4.8e12, 132.0, 450e9)
    dev[6:8] = (989.4e12, 3.35e12)
    lo, hi = p.shape_range("gemm")
    prices = []
    for share in (0.2, 0.5, 0.8, 1.0):
        dev[8] = share
        prices.append(eff.predict_rows_ranged(0, shapes, dev, p.log_floor, p.theta, lo, hi)[0])
    assert np.all(np.diff(prices) >= 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bw=st.floats(1.0, 4.0), flops=st.floats(1.0, 4.0), eta=st.floats(0.5, 1.0))
def test_a_faster_sibling_is_never_slower(seed, bw, flops, eta):
    """More bandwidth or FLOP/s than the fitted device (and than a slower sibling) never costs more."""
    p, _ = default_profile().lookup("hopper", "gemm", "bf16")
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(16):
        m, n, k = 2.0 ** rng.uniform(0, 14), 2.0 ** rng.uniform(7, 15), 2.0 ** rng.uniform(7, 15)
        f, b = ops.gemm_work(m, n, k, 2.0, 2.0)
        rows.append([m, n, k, f, b])
    shapes = np.array(rows)
    fitted = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    lo, hi = p.shape_range("gemm")

    def price(scale_bw, scale_flops):
        dev = np.zeros(eff.DEV_WITH_REF)
        dev[:4] = fitted
        dev[0] *= scale_flops
        dev[1] *= scale_bw
        dev[6:8] = fitted[:2]
        dev[8] = eta
        return eff.predict_rows_ranged(0, shapes, dev, p.log_floor, p.theta, lo, hi)

    base = eff.predict_rows_ranged(0, shapes, fitted, p.log_floor, p.theta, lo, hi)
    faster = price(bw, flops)
    assert np.all(faster <= base * (1 + 1e-12))
    slower = price(1.0 / bw, 1.0 / flops)
    assert np.all(slower >= base * (1 - 1e-12))
    assert np.all(price(bw * 1.5, flops) <= faster * (1 + 1e-12))


def test_deployment_prices_the_sibling_like_the_kernel_table_and_reports_it():
    h200 = Deployment("llama-3.1-8b", "h200", tp=1, engine="vllm")
    h100 = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm")
    info = h200.calibration_info()
    assert set(info["sibling_transfer_from"].values()) == {"h100-sxm"}
    assert "sibling_transfer_from" not in h100.calibration_info()
    i = h200.op_names.index("qkv_proj")
    assert h200._dev[i, 6] == get_device("h100").peak_flops("bf16") and h100._dev[i, 6] == 0.0
    # a one-token decode step: memory-bound, the H200 is faster than the H100 but by less than its bandwidth
    d = np.array([1024], np.int64)
    empty = np.zeros(0, np.int64)
    t200, t100 = h200.iteration(empty, empty, d)[0], h100.iteration(empty, empty, d)[0]
    assert 3.35 / 4.8 < t200 / t100 < 1.0


def test_a_rescaled_fitted_device_is_priced_by_transfer_too():
    """A catalogue device edited in place (same name, more bandwidth) is a sibling, not the fitted device."""
    h100 = get_device("h100")
    memory = tuple(dataclasses.replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * 4.8 / 3.35)
                   if t.bandwidth_bytes_per_s is not None else t for t in h100.memory)
    fast = dataclasses.replace(h100, memory=memory)
    model = OperatorCostModel()
    rows = _gemm_rows("h100", [1.0, 64.0], n=1024.0, k=1024.0)
    t_fast = model.price(rows, device=fast).seconds
    t_h100 = model.price(rows).seconds
    t_h200 = model.price(rows.assign(device="h200")).seconds
    assert np.all(t_fast < t_h100)
    np.testing.assert_allclose(t_fast, t_h200, rtol=1e-9)  # the H200's peaks: the H200's price


def test_validate_says_which_rows_sibling_transfer_priced():
    from llmsim.validation import calibrate as cal
    from llmsim.validation.validate import format_table, validate_kernels

    path = str(cal.SHIPPED_DATA.parent / "heldout" / "xla_gemm" / "gemm_perf_sm_90.parquet")
    as_h200 = validate_kernels([path], device="h200-sxm")
    assert [g.get("sibling_transfer_from") for g in as_h200["groups"]] == [{"h100-sxm": 125}]
    assert "125 from h100-sxm" in format_table(as_h200)
    as_h100 = validate_kernels([path])
    assert all("sibling_transfer_from" not in g for g in as_h100["groups"])


def test_an_entry_fitted_on_an_unknown_device_keeps_the_plain_form():
    prof = default_profile()
    p, _ = prof.lookup("hopper", "gemm", "bf16")
    mine = dataclasses.replace(p, fitted_device="my-own-gpu")  # a profile calibrated on a user's YAML device
    h200 = get_device("h200")
    dev = np.array([h200.peak_flops("bf16"), h200.memory_bandwidth_bytes_per_s, h200.num_sms, 450e9])
    assert prof.sibling_vector(mine, h200, dev, dev[0], "bf16") is dev


def test_the_sm_cycle_form_is_the_fitted_form_on_the_fitted_device_and_grows_with_the_ratio():
    """efficiency.py _combine_sibling with the tenth entry (the compute-side excess scaled by the fitted
    device's SM cycles per second over the priced one's)."""
    p, _ = default_profile().lookup("hopper", "gemm", "bf16")
    rows = []
    for m in (16.0, 256.0, 4096.0):
        f, b = ops.gemm_work(m, 4096.0, 4096.0, 2.0, 2.0)
        rows.append([m, 4096.0, 4096.0, f, b])
    shapes = np.array(rows)
    fitted = np.array([989.4e12, 3.35e12, 132.0, 450e9])
    lo, hi = p.shape_range("gemm")
    plain = eff.predict_rows_ranged(0, shapes, fitted, p.log_floor, p.theta, lo, hi)
    dev = np.zeros(eff.DEV_WITH_REF + 1)
    dev[:4] = fitted
    dev[6:8] = fitted[:2]
    dev[8] = 0.9
    prices = []
    for k in (1.0, 1.5, 3.0):
        dev[eff.DEV_WITH_REF] = k
        prices.append(eff.predict_rows_ranged(0, shapes, dev, p.log_floor, p.theta, lo, hi))
    np.testing.assert_allclose(prices[0], plain, rtol=1e-12)
    assert np.all(prices[1] >= prices[0]) and np.all(prices[2] >= prices[1]) and prices[2][-1] > prices[0][-1]


def test_compute_side_excess_scales_with_sm_cycles_where_the_catalogue_gives_clocks(monkeypatch):
    """The L40S's SMs do twice the RTX 4090's FLOPs a clock (full-rate FP32 accumulation), so the 4090's
    compute-side excess (work per SM cycle) does not halve on it; the H100 PCIe does the H100 SXM's work a
    clock, so its price is the FLOP-roofline one."""
    prof = default_profile()
    p, _ = prof.lookup("ada", "gemm", "bf16")
    l40s, rtx = get_device("l40s"), get_device("rtx-4090")
    dev = np.array([l40s.peak_flops("bf16"), l40s.memory_bandwidth_bytes_per_s, l40s.num_sms, 32e9])
    v = prof.sibling_vector(p, l40s, dev, dev[0], "bf16")
    assert v.size == eff.DEV_WITH_CYCLES
    assert v[eff.DEV_WITH_REF] == pytest.approx(rtx.num_sms * 2.52e9 / (l40s.num_sms * 2.49e9))
    big = _gemm_rows("l40s", [8192.0])
    with_cycles = OperatorCostModel().price(big).seconds[0]
    h_pcie = OperatorCostModel().price(_gemm_rows("h100-pcie", [8192.0])).seconds[0]
    _proportional(monkeypatch)
    plain = OperatorCostModel().price(big).seconds[0]
    plain_pcie = OperatorCostModel().price(_gemm_rows("h100-pcie", [8192.0])).seconds[0]
    assert with_cycles > plain * 1.05  # the L40S reaches a smaller share of its peak than the 4090 does
    assert h_pcie == pytest.approx(plain_pcie, rel=2e-3)
