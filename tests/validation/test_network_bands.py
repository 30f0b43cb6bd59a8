"""validate's collective rows and the network error bands come from the alpha-beta model a deployment uses."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsim.hwmodels.collectives import default_network_params
from llmsim.hwmodels.uncertainty import NETWORK_KINDS, NETWORK_PARAM_KEY, default_error_model
from llmsim.validation import network as nw
from llmsim.validation.validate import validate_kernels

REPO = Path(__file__).resolve().parents[2]
NCCL_H100 = REPO / "validation" / "data" / "kernels" / "aiconfigurator" / "h100_sxm" / "nccl_perf.parquet"
CUSTOM_A100 = REPO / "validation" / "data" / "kernels" / "aiconfigurator" / "a100_sxm" / "custom_allreduce_perf.parquet"
SHIPPED_BANDS = REPO / "hwmodels" / "data" / "calibration" / "uncertainty.json"


@pytest.fixture(scope="module")
def table():
    return nw._shipped_table()


def test_validate_prices_collective_rows_with_the_alpha_beta_model():
    report = validate_kernels([str(NCCL_H100)], split="all")
    rows = nw.load_measurements(str(NCCL_H100))
    pred, _ = nw.price(rows, default_network_params())
    meas = rows["measured_s"].to_numpy(np.float64)
    ok = np.isfinite(pred) & (meas > 0)
    assert report["rows"] == int(ok.sum())
    assert report["mape"] == pytest.approx(float(np.mean(np.abs(pred[ok] - meas[ok]) / meas[ok])))
    for g in report["groups"]:
        assert set(g["priced_by"]) == {"alpha-beta:nvlink@hopper"} and g["fallback"] == {}
    # the network fit's training rows count as in the fit; held out, none does
    assert 0 < report["rows_in_fit"] < report["rows"]
    assert validate_kernels([str(NCCL_H100)], split="test")["rows_in_fit"] == 0


def test_custom_allreduce_rows_name_their_family_and_take_the_network_band():
    report = validate_kernels([str(CUSTOM_A100)], split="test")
    (g,) = report["groups"]
    assert set(g["priced_by"]) == {"alpha-beta:custom_graph@ampere", "alpha-beta:custom_eager@ampere"}
    bands = [default_error_model().bands[f"{NETWORK_PARAM_KEY}|{r}"] for r in ("small", "large")]
    assert any(g["interval_rel"] == pytest.approx([np.exp(lo), np.exp(hi)]) for lo, hi, _ in bands)
    assert g["interval_coverage"] is not None


def test_a_device_class_without_sets_of_its_own_is_a_class_fallback():
    rows = pd.DataFrame({"kind": ["all_reduce", "all_reduce"], "device": ["b200", "h100"], "num_gpus": [8.0, 8.0],
                         "variant": ["", ""], "kernel": ["", ""], "source": ["x.csv", "x.csv"],
                         "message_bytes": [1e6, 1e6]})
    names, fb = nw.param_set_names(rows)
    assert list(names) == ["alpha-beta:nvlink", "alpha-beta:nvlink@hopper"] and list(fb) == ["class", ""]


def test_band_rows_are_half_of_the_held_out_collectives(table):
    params = default_network_params()
    held = nw._network_held(table, params)
    band = nw.band_fit_rows(table, params)
    assert not (band & ~held).any()  # never a training row
    assert 0.4 < band.sum() / held.sum() < 0.6


def test_shipped_network_bands_are_the_refit_and_keep_the_kernel_bands(table, tmp_path):
    copy = tmp_path / "uncertainty.json"
    copy.write_text(SHIPPED_BANDS.read_text())
    try:
        bands = nw.write_network_bands(table, path=copy)
    finally:
        default_error_model.cache_clear()
    assert copy.read_text() == SHIPPED_BANDS.read_text()  # the shipped bands are this refit, nothing else moved
    # the pooled bands, and a band per kind of collective where it had enough rows
    assert {f"{NETWORK_PARAM_KEY}|small", f"{NETWORK_PARAM_KEY}|large"} <= set(bands)
    assert "network:nccl_all_reduce|large" in bands
    assert all(k.split("|")[0] == NETWORK_PARAM_KEY or k.split("|")[0].removeprefix("network:") in NETWORK_KINDS
               for k in bands)
    assert "network" in json.loads(copy.read_text())["split"]


def test_network_band_coverage_on_rows_no_band_saw_meets_the_target(table):
    cov = nw.band_coverage(table)
    assert cov["rows"] > 1000
    assert 0.70 <= cov["interval_coverage"] <= 0.90


def test_each_kind_of_collective_is_covered_no_worse_than_by_the_pooled_band(table):
    """Bands per kind of collective: on rows no band saw, the kinds with a band of their own are
    covered closer to 80% than the pooled band alone covers them."""
    from llmsim.hwmodels.uncertainty import ErrorModel

    em = default_error_model()
    pooled = ErrorModel(bands={k: v for k, v in em.bands.items() if not k.startswith(NETWORK_PARAM_KEY + ":")},
                        extrapolated=em.extrapolated, measured_devices=em.measured_devices)
    per_kind = {g["name"]: g["interval_coverage"] for g in nw.band_coverage(table)["groups"]}
    alone = {g["name"]: g["interval_coverage"] for g in nw.band_coverage(table, error_model=pooled)["groups"]}
    own = [n for n in per_kind if n.startswith(("nccl all_reduce", "send_recv"))]
    assert own
    assert sum(abs(per_kind[n] - 0.8) for n in own) < sum(abs(alone[n] - 0.8) for n in own)
