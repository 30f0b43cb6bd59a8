"""`simulate run`'s text output says when the costs are extrapolated and what the intervals cover."""
from __future__ import annotations

import json

from llmsim.cli import main


def _run(capsys, *args):
    assert main(["run", "--model", "llama-3.1-8b", "--tp", "1", "--num-requests", "5", *args]) == 0
    return capsys.readouterr().out


def test_text_output_flags_an_extrapolated_device(capsys):
    out = _run(capsys, "--device", "b200")
    line = next(x for x in out.splitlines() if x.strip().startswith("calibration"))
    assert "EXTRAPOLATED for b200" in line and "no calibration of its own" in line
    data = json.loads(_run(capsys, "--device", "b200", "--json"))
    assert data["deployment"]["calibration"]["extrapolated"] is True


def test_text_output_says_a_measured_device_is_not_extrapolated(capsys):
    out = _run(capsys, "--device", "h100")
    line = next(x for x in out.splitlines() if x.strip().startswith("calibration"))
    assert "not extrapolated" in line and "EXTRAPOLATED" not in line


def test_intervals_are_printed_and_labelled_kernel_time_only(capsys):
    out = _run(capsys, "--device", "h100")
    data = json.loads(_run(capsys, "--device", "h100", "--json"))
    lo, hi = data["ttft_mean_s_interval"]
    ttft = next(x for x in out.splitlines() if x.strip().startswith("ttft_mean_s"))
    assert "[" in ttft and lo <= data["ttft_mean_s"] <= hi
    assert "kernel time only" in out and "queueing" in out
    assert data["interval_scope"].startswith("kernel time only") and "queueing" in data["interval_scope"]
