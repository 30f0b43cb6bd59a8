"""Error bars, the latency term of the efficiency model and the fallback flags (issue 13)."""
import math

import numpy as np
import pytest

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.costmodel import fallback_kind
from llmsim.hwmodels.deployment import Deployment
from llmsim.hwmodels.uncertainty import ErrorModel, default_error_model, error_model_from_json, run_intervals
from llmsim.validation.calibrate import fit_class
from llmsim.workloads import operators as ops
from llmsim.workloads.errors import ConfigError


def test_fallback_kind_names_class_and_family_fallbacks():
    assert fallback_kind("hopper/gemm/bf16:torch", "hopper", "gemm", "bf16:torch") == ""
    assert fallback_kind("hopper/gemm/bf16", "hopper", "gemm", "bf16") == ""
    assert fallback_kind("hopper/attn_decode/bf16", "hopper", "attn_decode", "bf16:flash_attn") == "family"
    assert fallback_kind("generic/gemm/bf16", "blackwell", "gemm", "bf16") == "class"


def test_a_class_fallback_takes_the_wider_leave_one_out_band():
    em = ErrorModel(bands={"hopper/gemm/bf16:torch|large": (-0.05, 0.05, 100), "gemm|large": (-0.1, 0.1, 500)},
                    extrapolated={"gemm": (-0.4, 0.3, 200)}, aliases={"hopper/gemm/bf16": "hopper/gemm/bf16:torch"})
    assert em.band("hopper/gemm/bf16", "gemm", 1e-3)[:2] == (-0.05, 0.05)  # the alias: the family's band
    assert em.band("ampere/gemm/bf16", "gemm", 1e-3)[:2] == (-0.1, 0.1)  # no entry band: the class's
    assert em.band("generic/gemm/bf16", "gemm", 1e-3, "class")[:2] == (-0.4, 0.3)
    lo, hi = em.intervals(np.array([1e-3, np.nan]), np.array(["hopper/gemm/bf16", "x"], dtype=object),
                          np.array(["gemm", "gemm"], dtype=object))
    assert lo[0] == pytest.approx(1e-3 * math.exp(-0.05)) and hi[0] == pytest.approx(1e-3 * math.exp(0.05))
    assert np.isnan(lo[1])


def test_run_intervals_bracket_latencies_and_invert_rates():
    out = run_intervals({"ttft_p99_s": 2.0, "throughput_output_tok_s": 100.0, "tpot_mean_s": float("nan")}, (0.9, 1.2))
    assert out["ttft_p99_s_interval"] == pytest.approx([1.8, 2.4])
    assert out["throughput_output_tok_s_interval"] == pytest.approx([100 / 1.2, 100 / 0.9])
    assert "tpot_mean_s_interval" not in out


def test_a_malformed_uncertainty_file_is_a_config_error():
    with pytest.raises(ConfigError):
        error_model_from_json({"schema": 1, "bands": {"x|small": [0.1]}})


def test_the_shipped_bands_are_ordered_and_leave_one_out_bands_are_wider():
    em = default_error_model()
    assert em.bands, "hwmodels/data/calibration/uncertainty.json ships bands"
    for lo, hi, n in list(em.bands.values()) + list(em.extrapolated.values()):
        assert lo < hi and n > 0
    for cls, (lo, hi, _) in em.extrapolated.items():
        own = em.bands.get(f"{cls}|large")
        if own is not None:
            assert hi - lo > own[1] - own[0]


def test_deployments_say_what_priced_them_and_flag_uncalibrated_classes():
    h = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm").calibration_info()
    b = Deployment("llama-3.1-8b", "b200", tp=1, engine="vllm").calibration_info()
    assert h["device_class_calibrated"] and h["priced_by"]["mlp_up_proj"].startswith("hopper/gemm/")
    assert not b["device_class_calibrated"] and b["extrapolated"]
    assert b["fallback_ops"]["mlp_up_proj"] == "class"


def test_iteration_band_brackets_one_and_is_wider_off_calibration():
    lo_h, hi_h = Deployment("llama-3.1-8b", "h100", tp=1, engine="vllm").time_band()
    lo_b, hi_b = Deployment("llama-3.1-8b", "b200", tp=1, engine="vllm").time_band()
    assert lo_h < 1.0 < hi_h
    assert hi_b - lo_b > hi_h - lo_h


def _gemm_rows(rng, n):
    m, nn, k = 2.0 ** rng.uniform(0, 12, n), 2.0 ** rng.uniform(8, 14, n), 2.0 ** rng.uniform(8, 14, n)
    f, b = ops.gemm_work_v(m, nn, k, 2.0, 2.0)
    return np.ascontiguousarray(np.column_stack([m, nn, k, f, b]))


def test_the_latency_term_is_device_independent_and_keeps_faster_devices_faster():
    nf, nl = eff.NUM_FEATURES["gemm"], eff.NUM_LATENCY["gemm"]
    theta = np.zeros(nf + nl)
    theta[nf] = math.log(5e-6)  # 5 us, whatever the shape
    shapes = _gemm_rows(np.random.default_rng(0), 50)
    slow = np.array([300e12, 1e12, 100.0, 1e11])
    fast = np.array([900e12, 3e12, 130.0, 1e11])
    t_slow = eff.predict_rows(0, shapes, slow, math.log(1e-7), theta)
    t_fast = eff.predict_rows(0, shapes, fast, math.log(1e-7), theta)
    no_lat = eff.predict_rows(0, shapes, slow, math.log(1e-7), theta[:nf])
    assert np.allclose(t_slow - no_lat, 5e-6)
    assert np.all(t_fast <= t_slow)


def test_fit_class_recovers_a_device_independent_latency():
    rng = np.random.default_rng(1)
    shapes = _gemm_rows(rng, 400)
    devs = [np.array([300e12, 2e12, 108.0, 1e11]), np.array([900e12, 3e12, 132.0, 1e11])]
    Xs, bases, ys = [], [], []
    for d in devs:
        X, base = eff.features(0, shapes, d, eff.NUM_FEATURES["gemm"] + eff.NUM_LATENCY["gemm"])
        Xs.append(X), bases.append(base), ys.append(8e-6 + np.exp(base) / 0.7)
    X, base, y = np.concatenate(Xs), np.concatenate(bases), np.concatenate(ys)
    nf = eff.NUM_FEATURES["gemm"]
    _, theta, mdape = fit_class(X[:, :nf], base, y, Z=X[:, nf:], max_iter=40)
    assert theta.size == X.shape[1] and mdape < 0.02


def test_validate_reports_priced_by_fallbacks_and_interval_coverage():
    from llmsim.validation.validate import format_table, validate_kernels

    rep = validate_kernels(["validation/data/kernels/llmcompass/matmul_A100.csv"])
    g = rep["groups"][0]
    assert sum(g["priced_by"].values()) == g["rows"]
    assert g["fallback"] == {"family": g["rows"]}  # the LLMCompass GEMMs name no kernel family A100 was fitted on
    assert rep["fallback"] == g["rows"] and "fallback:" in format_table(rep)
    assert g["interval_rel"][0] < 1.0 < g["interval_rel"][1]
    assert "interval_coverage" in rep


def test_a_device_never_measured_in_a_calibrated_class_is_flagged_and_gets_the_wider_band():
    l40s, rtx = Deployment("llama-3.1-8b", "l40s", tp=1, engine="vllm"), Deployment("llama-3.1-8b", "rtx_4090", tp=1, engine="vllm")
    info = l40s.calibration_info()
    assert info["device_class_calibrated"] and not info["device_measured"] and info["extrapolated"]
    assert rtx.calibration_info()["device_measured"]
    (a, b), (c, d) = l40s.time_band(), rtx.time_band()
    assert b - a > d - c


def test_a_deployments_collectives_take_the_alpha_beta_models_own_band():
    from llmsim.hwmodels.uncertainty import NETWORK_PARAM_KEY

    em = default_error_model()
    info = Deployment("llama-3.1-8b", "h100", tp=2, engine="vllm").calibration_info()
    net_ops = {op: key for op, key in info["priced_by"].items() if key.startswith(NETWORK_PARAM_KEY + ":")}
    assert net_ops, "a TP2 deployment prices its all-reduces with the alpha-beta model"
    assert net_ops["allreduce_nccl"] == "network:nccl_all_reduce"
    assert net_ops["allreduce_custom_one_shot"] == "network:custom_all_reduce"
    for seconds, regime in ((5e-6, "small"), (1e-3, "large")):
        for key in net_ops.values():
            lo, hi, source = em.band(key, "collective", seconds)
            # the kind's own band where it had enough rows, else the pooled alpha-beta band
            assert source in (f"{key}|{regime}", f"{NETWORK_PARAM_KEY}|{regime}") and lo < hi
            assert (lo, hi) != em.bands[f"collective|{regime}"][:2]  # not the kernel-calibrated class's band
    lo, hi, source = em.band("network:nccl_all_reduce", "collective", 1e-3)
    assert source == "network:nccl_all_reduce|large"


def test_an_unknown_collective_kind_is_refused():
    from llmsim.hwmodels.uncertainty import network_param_key

    with pytest.raises(ValueError, match="unknown collective kind"):
        network_param_key("broadcast")


def test_a_kernel_band_refit_keeps_the_collective_bands_and_their_split():
    from llmsim.hwmodels.uncertainty import ErrorModel, with_network_bands

    shipped = default_error_model()
    kernel_only = ErrorModel(bands={"hopper/gemm/bf16|large": (-0.1, 0.1, 40), "network|large": (-9.0, 9.0, 1)},
                             extrapolated={}, split={"salt": "s"})
    merged = with_network_bands(kernel_only, shipped)
    assert merged.bands["hopper/gemm/bf16|large"] == (-0.1, 0.1, 40)
    net = {k: v for k, v in shipped.bands.items() if k.startswith("network")}
    assert net and all(merged.bands[k] == v for k, v in net.items())  # the refit's stray network band is replaced
    assert merged.split["network"] == shipped.split["network"] and merged.split["salt"] == "s"
    assert with_network_bands(kernel_only, None) is kernel_only
