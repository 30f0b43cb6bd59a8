"""The command line's edges: Ctrl-C, --version, `simulate list`, help on every flag with its default,
the trace formats in `run --help`, Parquet traces read as Parquet."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from llmsim.cli import build_parser, main


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def _interrupting(exc):
    def run(*_a, **_k):
        raise exc
    return run


def _numba_interrupt():
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            raise SystemError("<numba> returned a result with an exception set")
        except SystemError as e:
            return e


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), _numba_interrupt()], ids=["KeyboardInterrupt", "numba"])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, exc):
    import llmsim.sim.runner as runner

    monkeypatch.setattr(runner, "run", _interrupting(exc))
    rc, _, err = _run(["run", "--model", "llama-3.1-8b", "--tp", "1", "--num-requests", "2"])
    assert rc == 130 and err == "simulate run: interrupted\n"


def test_a_system_error_that_is_no_interrupt_keeps_its_traceback(monkeypatch):
    import llmsim.sim.runner as runner

    monkeypatch.setattr(runner, "run", _interrupting(SystemError("a bug")))
    with pytest.raises(SystemError, match="a bug"):
        main(["run", "--model", "llama-3.1-8b", "--tp", "1", "--num-requests", "2"])


def test_version():
    from llmsim import __version__

    rc, out, _ = _run(["--version"])
    assert rc == 0 and out.strip() == f"simulate (llmsim) {__version__}"


@pytest.mark.parametrize("kind", ["models", "devices", "clusters", "formats", "engines", "workloads", "schedulers",
                                  "routers"])
def test_list_prints_a_table_or_one_json_list(kind):
    rc, out, _ = _run(["list", kind, "--json"])
    rows = json.loads(out)
    assert rc == 0 and rows and all(r["name"] for r in rows)
    rc, table, _ = _run(["list", kind])
    assert rc == 0 and rows[0]["name"] in table


@pytest.mark.parametrize("kind", ["models", "devices", "clusters", "engines"])
def test_the_short_listings_are_the_same_as_list(kind):
    assert _run([kind, "--json"])[1] == _run(["list", kind, "--json"])[1]


def _subparser(name):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


def test_every_run_flag_is_described_and_the_help_has_examples_and_trace_formats():
    p = _subparser("run")
    missing = [a.option_strings[0] for a in p._actions if a.option_strings and a.dest != "help" and not a.help]
    assert missing == []
    text = p.format_help()
    assert "examples:" in text and "request_id,arrival_s,prompt_tokens,output_tokens" in text and "Parquet" in text
    assert "(default: 16)" in text  # --block-size: the run config's default
    assert "(default: llama-2-70b)" in text


def test_a_parquet_trace_reads_as_parquet_and_equals_its_csv(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"request_id": ["a", "b", "c"], "arrival_s": [0.0, 0.5, 1.0],
                          "prompt_tokens": [100, 200, 300], "output_tokens": [10, 20, 5]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    base = ["run", "--model", "llama-3.1-8b", "--tp", "1", "--json", "--trace"]
    a = json.loads(_run(base + [str(tmp_path / "t.parquet")])[1])
    b = json.loads(_run(base + [str(tmp_path / "t.csv")])[1])
    a.pop("config"), b.pop("config")
    assert a == b and a["requests_completed"] == 3


def test_every_subcommand_describes_every_flag_and_shows_examples():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        missing = [a.option_strings[0] if a.option_strings else a.dest for a in p._actions
                   if a.dest != "help" and not a.help]
        assert missing == [], (name, missing)
        if name in ("run", "list", "validate", "calibrate", "train", "fit-kernels", "fit-engine", "fit-network"):
            assert "examples:" in (p.epilog or ""), name
