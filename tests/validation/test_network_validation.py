"""The network model against the shipped collective measurements (validation/network.py)."""
from pathlib import Path

import numpy as np
import pytest

from llmsim.hwmodels.collectives import default_network_params, network_params_from_dict
from llmsim.validation.calibrate import file_sha256
from llmsim.validation.loaders import load_measurements, split_of
from llmsim.validation.network import (DEFAULT_HOLDOUT, DEFAULT_SALT, FIT_FILES, SETUPS, _shipped_table, fit_network,
                                network_report, price, row_configs, rows_in_fit)
from llmsim.validation.validate import format_table, validate_kernels
from llmsim.workloads.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
KERNELS = REPO / "validation" / "data" / "kernels"
VIDUR_A100 = KERNELS / "vidur" / "network" / "a100_dgx"
NCCL_A100 = KERNELS / "aiconfigurator" / "a100_sxm" / "nccl_perf.parquet"


@pytest.fixture(scope="module")
def table():
    return _shipped_table()


@pytest.fixture(scope="module")
def test_report(table):
    return network_report(table, split="test")


@pytest.fixture(scope="module")
def full_report(table):
    return network_report(table)


def _group(report, label):
    (g,) = [g for g in report["groups"] if g["name"] == label]
    return g


# Measured with the shipped parameters (hwmodels/data/network_calibration.yaml): >= 1 MiB MAPE is
# 13.1% held out and 13.3% on every row; each bound below is the measured figure plus a little.

def test_large_messages_meet_the_target_held_out_and_all(test_report, full_report):
    assert test_report["rows_in_fit"] == 0
    assert test_report["large"]["rows"] > 2500 and full_report["large"]["rows"] > 12000
    assert test_report["large"]["mape"] <= 0.14
    assert full_report["large"]["mape"] <= 0.14
    for key in ("rows", "mape", "median_ape", "p90_ape", "rows_in_fit", "large", "small", "groups"):
        assert key in full_report


@pytest.mark.parametrize("label, bound", [
    ("aiconfigurator/h100_sxm/nccl_perf | all_reduce | >=1MiB", 0.08),    # 6.9% held out
    ("aiconfigurator/h100_sxm/nccl_perf | all_gather | >=1MiB", 0.05),    # 3.9%
    ("aiconfigurator/a100_sxm/nccl_perf | all_reduce | >=1MiB", 0.08),    # 7.1%
    ("aiconfigurator/a100_sxm/nccl_perf | reduce_scatter | >=1MiB", 0.11),  # 9.5%
    ("vidur/network/h100_dgx/all_reduce | all_reduce | >=1MiB", 0.095),   # 8.3%, never fitted (cross-source)
    ("vidur/network/h100_dgx/send_recv | send_recv | >=1MiB", 0.04),      # 3.1%
    ("vidur/network/a100_dgx/send_recv | send_recv | >=1MiB", 0.06),      # 5.2%
    ("aiconfigurator/h100_sxm/custom_allreduce_perf | all_reduce | >=1MiB", 0.13),  # 12.0%
])
def test_held_out_groups(test_report, label, bound):
    g = _group(test_report, label)
    assert g["rows"] > 0 and g["rows_in_fit"] == 0
    assert g["mape"] <= bound


def test_a100_cross_node_all_reduce_is_the_known_miss(table):
    """vidur's A100 cross-node all-reduce misses the 15% target (28% held out, >= 1 MiB): per GPU it reaches
    ~25-30% of HDR line rate and its bandwidth does not scale with GPUs per node (node aggregates of
    ~6, 6, 23, 20 GB/s for 1, 2, 4, 8 GPUs per node), which no per-link model expresses. This bounds it
    so that it does not get worse; it is not a target."""
    held = split_of(table["shape_key"].to_numpy(), salt=DEFAULT_SALT, holdout_fraction=DEFAULT_HOLDOUT)
    idx, cfgs = row_configs(table)
    pred, _ = price(table, configs=(idx, cfgs))
    cross = np.array([j >= 0 and cfgs[j].topo is not None and cfgs[j].topo.nodes > 1 for j in idx])
    sel = cross & held & (table["kind"] == "all_reduce").to_numpy() & (table["message_bytes"] >= 2**20).to_numpy()
    ape = np.abs(pred[sel] - table["measured_s"].to_numpy()[sel]) / table["measured_s"].to_numpy()[sel]
    assert sel.sum() > 700
    assert 0.15 < ape.mean() < 0.31


def test_rows_in_fit_counts_the_training_rows_of_fitted_groups(table, full_report):
    params = default_network_params()
    in_fit = rows_in_fit(table, params)
    held = split_of(table["shape_key"].to_numpy(), salt=DEFAULT_SALT, holdout_fraction=DEFAULT_HOLDOUT)
    assert not (in_fit & held).any()
    assert in_fit.sum() == sum(s["rows_in_fit"] for s in params.fit["sources"])
    assert _group(full_report, "vidur/network/h100_dgx/all_reduce | all_reduce | >=1MiB")["rows_in_fit"] == 0
    nccl = _group(full_report, "aiconfigurator/h100_sxm/nccl_perf | all_reduce | >=1MiB")
    assert 0 < nccl["rows_in_fit"] < nccl["rows"]


def test_yaml_records_the_fitted_files_as_shipped():
    fit = default_network_params().fit
    assert fit["salt"] == DEFAULT_SALT and fit["holdout_fraction"] == DEFAULT_HOLDOUT
    by_path = {s["path"]: s for s in fit["sources"]}
    for f in FIT_FILES:
        assert by_path[f]["sha256"] == file_sha256(REPO / f), \
            f"{f} changed: refit with `simulate fit-network --write`"


def test_fit_never_reads_held_out_rows():
    small = load_measurements(str(NCCL_A100))
    held = split_of(small["shape_key"].to_numpy(), salt=DEFAULT_SALT, holdout_fraction=DEFAULT_HOLDOUT)
    assert 0.1 < held.mean() < 0.35
    scrambled = small.copy()
    scrambled.loc[held, "measured_s"] = np.random.default_rng(0).uniform(1e-6, 1.0, held.sum())
    a, b = fit_network(small), fit_network(scrambled)
    assert a["sets"] == b["sets"]
    assert network_params_from_dict(a).lookup("nvlink", "ampere").source.startswith("[fit]")


def test_topologies_of_measured_rows():
    t = load_measurements(str(VIDUR_A100 / "all_reduce.csv"))
    idx, cfgs = row_configs(t)
    topo = {(c.topo.ranks, c.topo.ranks_per_node): c.topo for c in cfgs}
    cross = topo[(8, 4)]
    assert cross.nodes == 2 and cross.intra.transport == "nvlink" and cross.inter.transport == "ib"
    assert cross.inter.bandwidth_bytes_per_s == SETUPS["a100_dgx"].nic_bytes_per_s == 25e9
    assert topo[(2, 1)].intra is None and topo[(2, 1)].nodes == 2
    assert topo[(8, 8)].nodes == 1 and topo[(8, 8)].inter is None
    # multi-node rows carry their measured setup first: its inter-node set, then the arch class
    assert {c.arch for c in cfgs} == {"ampere", "a100_dgx/ampere"}


def test_unknown_multi_node_setup_is_reported_not_priced(tmp_path):
    elsewhere = tmp_path / "my_cluster"
    elsewhere.mkdir()
    (elsewhere / "send_recv.csv").write_bytes((VIDUR_A100 / "send_recv.csv").read_bytes())
    report = network_report(load_measurements(str(elsewhere / "send_recv.csv"), device="a100"))
    assert any("setup 'my_cluster' is unknown" in n["reason"] for n in report["not_priced"])
    assert report["rows"] > 0  # the single-node rows are still priced


def test_split_must_be_known(table):
    with pytest.raises(ConfigError, match="split"):
        network_report(table, split="holdout")


def test_validate_kernels_adds_the_network_section():
    report = validate_kernels([str(VIDUR_A100 / "send_recv.csv")], split="test")
    net = report["network"]
    assert net["split"] == "test" and net["rows_in_fit"] == 0
    # the kernel table prices collectives (cross-node ones included) with the same alpha-beta model
    assert report["not_expressed"] == []
    assert net["rows"] == sum(g["rows"] for g in net["groups"]) == report["rows"]
    assert net["mape"] == pytest.approx(report["mape"])
    text = format_table(report)
    assert "network (alpha-beta collectives)" in text and "ALL >=1MiB" in text
    no_coll = validate_kernels([str(KERNELS / "llmcompass" / "matmul_A100.csv")])
    assert "network" not in no_coll and "network" not in format_table(no_coll)


# ---- the one collective model against the kernel-calibrated collective class it replaces

@pytest.fixture(scope="module")
def paths_report(table):
    from llmsim.validation.network import collective_paths_report

    return collective_paths_report(table, split="test")


def _paths_group(report, label):
    (g,) = [g for g in report["groups"] if g["name"] == label]
    return g


def test_alpha_beta_beats_the_kernel_calibrated_path_held_out(paths_report):
    """Held out of both fits (shared split): alpha-beta 12.7% MAPE against 15.2% over 2071 rows."""
    assert paths_report["rows"] > 2000
    assert paths_report["alpha_beta"]["mape"] <= 0.135
    assert paths_report["alpha_beta"]["mape"] < paths_report["kernel_calibrated"]["mape"]


@pytest.mark.parametrize("label, bound", [
    ("h100-sxm (aiconfigurator) | custom all_reduce | <1MiB", 0.05),     # 4.0% (kernel-calibrated 4.8%)
    ("h100-sxm (aiconfigurator) | custom all_reduce | >=1MiB", 0.13),    # 12.3% (10.3%)
    ("a100-sxm-80gb (aiconfigurator) | custom all_reduce | <1MiB", 0.065),  # 5.8% (3.8%)
    ("a100-sxm-80gb (aiconfigurator) | custom all_reduce | >=1MiB", 0.10),  # 8.9% (11.5%)
    ("h100-sxm (aiconfigurator) | nccl all_reduce | >=1MiB", 0.08),      # 6.9% (5.9%)
    ("h100-sxm (aiconfigurator) | all | >=1MiB", 0.095),                 # 8.6% (10.4%)
    ("a100-sxm-80gb (aiconfigurator) | all | >=1MiB", 0.095),            # 8.4% (10.2%)
])
def test_held_out_tp_allreduce_bounds(paths_report, label, bound):
    g = _paths_group(paths_report, label)
    assert g["alpha_beta"]["rows"] > 0
    assert g["alpha_beta"]["mape"] <= bound
