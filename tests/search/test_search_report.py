"""`--report out.html` of `simulate search` and `simulate size`: written, with its figures and header;
a bad path is refused before any candidate runs."""
import re

import pytest

from llmsim.cli import main
from llmsim.search.report import FIGURE_TITLES

pytest.importorskip("plotly")

SMALL = ["--model", "llama-3.1-8b", "--devices", "h100,a100-80gb", "--tp", "1,2", "--slo-ttft-p99", "1",
         "--slo-tpot-p99", "0.1", "--num-requests", "40", "--workers", "1"]


@pytest.mark.parametrize("cmd", [["search", "--num-devices", "2"], ["size", "--rate", "3"]])
def test_report_written_with_figures_and_header(tmp_path, capsys, cmd):
    out = tmp_path / "r.html"
    assert main([*cmd, *SMALL, "--report", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for title in FIGURE_TITLES:
        assert title in page
    for head in ("model", "hardware space", "workload", "rate", "SLOs"):
        assert f"<th>{head}</th>" in page
    assert "TTFT &lt;= 1 s, TPOT &lt;= 0.1 s at p99" in page
    for axis in ("cost (USD per million output tokens)", "J per output token", "goodput (requests"):
        assert axis in page
    # the scatter has points, the cost bars a component per device kind simulated
    assert re.search(r'"name":"simulated candidates"', page)
    assert re.search(r'"name":"(h100-sxm|a100-sxm-80gb) on-demand rent"', page)


@pytest.mark.parametrize("cmd", [["search"], ["size", "--rate", "3"]])
@pytest.mark.parametrize("bad, msg", [("nope/r.html", "does not exist"), ("r.txt", "must end in .html")])
def test_bad_report_path_exits_2_before_searching(tmp_path, capsys, monkeypatch, cmd, bad, msg):
    import importlib

    capacity = importlib.import_module("llmsim.search.capacity")
    explore = importlib.import_module("llmsim.search.explore")

    def boom(*a, **k):
        raise AssertionError("the search ran before the report path was checked")

    monkeypatch.setattr(explore, "run_search", boom)
    monkeypatch.setattr(capacity, "run_sizing", boom)
    assert main([*cmd, *SMALL, "--report", str(tmp_path / bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
