"""Splitwise's cluster ratios and APEX's plan figures, expressed through the search/simulation path."""
import math
from pathlib import Path

import pytest

from llmsim.validation.published import EXPRESSERS, load_published
from llmsim.validation.published_search import apex_study, splitwise_study

CSV = Path(__file__).resolve().parents[2] / "validation" / "data" / "published" / "paper_figures.csv"
ROWS = {"iso-power": "Splitwise | throughput_ratio | iso-power", "iso-cost": "Splitwise | throughput_ratio | iso-cost",
        "speedup": "APEX | plan_speedup", "energy": "APEX | energy_reduction"}


@pytest.fixture(scope="module")
def report():
    """name -> (published, predicted) of the Splitwise and APEX rows, through published.py's hook."""
    rows = [r for r in load_published(CSV) if r.system in ("Splitwise", "APEX")]
    return {r.name: (r.value, EXPRESSERS[r.system](r)) for r in rows}


def _group(report, prefix):
    (name,) = [n for n in report if n.startswith(prefix)]
    published, predicted = report[name]
    return {"published": published, "predicted": predicted, "ape": abs(predicted - published) / published}


def test_rows_expressed_beside_published(report):
    for prefix in ROWS.values():
        g = _group(report, prefix)
        assert isinstance(g["predicted"], float) and math.isfinite(g["predicted"]) and g["predicted"] >= 0
    (reason,) = [v for n, (_, v) in report.items() if n.startswith("APEX | search_time")]
    assert isinstance(reason, str) and "wall-clock" in reason


def test_splitwise_study_is_consistent():
    s = splitwise_study()
    # disaggregating the same DGX-A100s beats serving both phases on each (measured 1.30x)
    assert 1.0 < s["iso_power_ratio"] < 3.0
    assert s["aa_cost_usd_per_hour"] <= s["budget_usd_per_hour"]
    assert s["aa_goodput_by_prompt_machines"][s["aa_best_prompt_machines"]] == max(s["aa_goodput_by_prompt_machines"].values())


def test_apex_heuristic_is_one_of_the_plans():
    a = apex_study()
    assert a["plans"] >= 4 and a["speedup"] >= 1.0 and 0.0 <= a["energy_reduction"] < 1.0


# Published targets within 25 %: missed. Measured: iso-power 1.30x (2.15x), iso-cost 0.62x (1.4x),
# APEX speedup 1.00x (up to 3.37x), energy reduction 0.0 (up to 0.45).
@pytest.mark.xfail(strict=True, reason="iso-power 1.30x vs published 2.15x; iso-cost 0.62x vs 1.4x")
@pytest.mark.parametrize("key", ["iso-power", "iso-cost"])
def test_splitwise_within_25_percent(report, key):
    assert _group(report, ROWS[key])["ape"] <= 0.25


@pytest.mark.xfail(strict=True, reason="APEX setting: TP8 heuristic is latency- and energy-optimal here (1.00x, 0 %)")
@pytest.mark.parametrize("key", ["speedup", "energy"])
def test_apex_within_25_percent(report, key):
    assert _group(report, ROWS[key])["ape"] <= 0.25
