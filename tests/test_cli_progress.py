"""Progress lines and colour only on a terminal; the runner's progress hook leaves results unchanged."""
from __future__ import annotations

import io
import json
import time

import pytest

from llmsim.cli import main
from llmsim.cli.progress import Bar, Ticker, paint, prefix
from llmsim.sim.config import config_from_dict
from llmsim.sim.runner import ProgressTracer, run
from llmsim.sim.trace import ChromeTracer


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_silent_off_a_terminal():
    s = io.StringIO()
    bar = Bar("x", total=10, stream=s)
    assert not bar.enabled
    for i in range(11):
        bar.update(i)
    bar.close()
    assert s.getvalue() == "" and bar.updates == 0


def test_bar_draws_on_a_terminal():
    s = FakeTTY()
    with Bar("simulate search", total=4, unit="candidates", stream=s, min_interval_s=0.0) as bar:
        for i in range(1, 5):
            bar.update(i)
        assert bar.updates == 4
        assert "4/4 candidates" in s.getvalue() and "[" + "#" * 30 + "]" in s.getvalue()
    assert s.getvalue().endswith("\r\033[K")  # the line is cleared at the end


def test_bar_throttles_redraws():
    s = FakeTTY()
    bar = Bar("x", stream=s, min_interval_s=3600.0)
    for i in range(100):
        bar.update(i)
    assert bar.updates == 1


def test_ticker_only_on_a_terminal():
    off = io.StringIO()
    with Ticker("simulate validate", stream=off, interval_s=0.01) as t:
        time.sleep(0.05)
    assert t._thread is None and off.getvalue() == ""
    on = FakeTTY()
    with Ticker("simulate validate", stream=on, interval_s=0.01):
        time.sleep(0.2)
    assert "simulate validate: working" in on.getvalue()


def test_colour_only_on_a_terminal_and_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert paint("error:", "red", io.StringIO()) == "error:"
    assert paint("error:", "red", FakeTTY()) == "\033[31merror:\033[0m"
    assert prefix("run", "error", FakeTTY()) == "simulate run: \033[31merror:\033[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert paint("error:", "red", FakeTTY()) == "error:"


def _small():
    return config_from_dict({"deployment": {"model": "llama-3.1-8b", "device": "h100", "tp": 1, "num_devices": 2},
                             "workload": {"name": "azure-code", "rate": 4.0, "num_requests": 60}})


def test_progress_hook_changes_no_result():
    calls = []
    plain = run(_small(), keep_requests=True)
    hooked = run(_small(), keep_requests=True, progress=lambda t, n: calls.append((t, n)))
    assert json.dumps(plain.summary, sort_keys=True, default=str) == json.dumps(hooked.summary, sort_keys=True,
                                                                                default=str)
    for k in plain.result.records:
        assert (plain.result.records[k] == hooked.result.records[k]).all(), k
    assert calls, "the hook was never called"
    assert all(n2 > n1 for (_, n1), (_, n2) in zip(calls, calls[1:]))
    assert hooked.tracer is None  # the progress wrapper is not handed back


def test_progress_hook_passes_iterations_to_the_tracer():
    a, b = ChromeTracer(), ChromeTracer()
    run(_small(), tracer=a)
    run(_small(), tracer=b, progress=lambda t, n: None)
    assert {k: v.tolist() for k, v in a.arrays().items()} == {k: v.tolist() for k, v in b.arrays().items()}


def test_progress_tracer_calls_every_n():
    seen = []
    p = ProgressTracer(None, lambda t, n: seen.append(n), every=3)
    for i in range(7):
        p.iteration(0, i, i + 1.0, 0, 1)
    assert seen == [3, 6]


ARGS = ["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--workload", "azure-code",
        "--rate", "4", "--num-requests", "40", "--json"]


def test_run_prints_nothing_on_a_non_terminal_stderr(capsys):
    assert main(ARGS) == 0
    assert capsys.readouterr().err == ""


def test_run_draws_the_bar_on_a_terminal_and_json_is_unchanged(capsys, monkeypatch):
    import llmsim.sim.runner as runner

    assert main(ARGS) == 0
    plain = capsys.readouterr().out
    monkeypatch.setattr(runner.ProgressTracer, "__init__",
                        lambda self, inner, progress, every=1: _init(self, inner, progress, every))
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    assert main(ARGS) == 0
    assert capsys.readouterr().out == plain
    assert "simulate run:" in tty.getvalue() and "s simulated" in tty.getvalue()


def _init(self, inner, progress, every):
    self.inner, self.progress, self.every = inner, progress, 1
    self.iterations, self._next = 0, 1


@pytest.mark.parametrize("kind", ["warning", "error"])
def test_prefix_plain_off_a_terminal(kind):
    assert prefix("run", kind, io.StringIO()) == f"simulate run: {kind}:"
