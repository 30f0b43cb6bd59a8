"""The run report answers its question first: a header (model, hardware, plan, workload, rate, SLOs),
goodput and SLO attainment before the other figures, one figure per panel with its own legend and axis
titles, plotly.js embedded (no network). A real browser check runs only where chromium is installed."""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess

import pytest

from llmsim.cli import main

pytest.importorskip("plotly")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "r.html"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--dp", "2",
                     "--workload", "azure-code", "--num-requests", "40", "--rate", "4", "--ttft-slo", "0.5",
                     "--tpot-slo", "0.05", "--report", str(path)]) == 0
    return path.read_text()


def test_the_header_states_model_hardware_plan_workload_rate_and_slos(report):
    header = report[report.index("<table class='header'>"):report.index("</table>")]
    for fragment in ("llama-3.1-8b (bf16 weights", "2 x h100-sxm", "2 replica(s) of tp=1 pp=1", "azure-code: 40 requests",
                     "4 requests/s (poisson arrivals)", "TTFT &lt;= 0.5 s and TPOT &lt;= 0.05 s"):
        assert fragment in header, fragment


def test_goodput_and_slo_attainment_come_first(report):
    cards = re.findall(r"<div class='k'>([^<]*)</div>", report)
    assert cards[:2] == ["goodput (requests/s within SLO)", "SLO attainment"]
    assert report.index("SLO attainment") < report.index("<h2>")


def test_each_figure_has_its_own_legend_and_axis_units(report):
    headings = re.findall(r"<h2>([^<]*)</h2>", report)
    assert headings[:5] == ["Latency distribution (CDF)", "Time per output token (CDF)",
                            "Time to first token over the run", "Prefill work per iteration",
                            "Decode batch per iteration"]
    for unit in ("latency (s)", "time per output token (ms)", "arrival time (s)",
                 "prefill tokens per iteration (tokens)", "decoding requests per iteration (requests)"):
        assert unit in report, unit
    assert report.count('"legend":{"title":{"text"') == 5


def test_the_report_is_self_contained(report):
    assert report.count("plotly.js v") == 1 or report.count("Plotly") > 0
    assert not re.search(r"<script[^>]+src=['\"]https?://", report)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium is not installed (the browser check runs where it is)")
def test_the_report_renders_in_a_headless_browser(report, tmp_path):
    path = tmp_path / "r.html"
    path.write_text(report)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.count("class=\"main-svg\"") >= 5  # plotly drew every figure


def test_the_header_says_how_the_costs_were_calibrated_and_figures_carry_their_interval(report):
    header = report[report.index("<table class='header'>"):report.index("</table>")]
    assert "measured device (h100-sxm), not extrapolated" in header
    assert "80% interval" in report and "kernel time only" in report
    ttft_card = re.search(r"<div class='v'>([^<]*)</div><div class='k'>TTFT p99</div>", report).group(1)
    assert re.fullmatch(r"[0-9.e+-]+ s \[[0-9.e+-]+, [0-9.e+-]+ s\]", ttft_card), ttft_card


def test_an_extrapolated_device_is_flagged_in_the_report(tmp_path):
    path = tmp_path / "l40s.html"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", "--model", "llama-3.1-8b", "--device", "l40s", "--tp", "1", "--workload", "azure-code",
                     "--num-requests", "10", "--report", str(path)]) == 0
    header = path.read_text()
    header = header[header.index("<table class='header'>"):header.index("</table>")]
    assert "EXTRAPOLATED for l40s" in header and "no kernel measurements of this device" in header
