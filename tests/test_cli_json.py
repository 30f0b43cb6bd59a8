"""`--json` on every subcommand: one JSON object (or list, for the listings) on stdout."""
from __future__ import annotations

import json

import pytest

from llmsim.cli import build_parser, main


def _leaves(name, parser):
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        yield name, parser
        return
    for n, p in subs[0].choices.items():
        yield from _leaves(f"{name} {n}".strip(), p)


def test_every_subcommand_has_json():
    missing = [name for name, p in _leaves("", build_parser())
               if not any("--json" in a.option_strings for a in p._actions)]
    assert missing == []


def _one_object(capsys) -> dict:
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    obj = json.loads(out)
    assert isinstance(obj, dict)
    return obj


def test_profile_dry_run_json(capsys, tmp_path):
    assert main(["profile", "--device-name", "x", "--out", str(tmp_path / "p"), "--quick", "--dry-run",
                 "--json"]) == 0
    obj = _one_object(capsys)
    assert obj["dry_run"] is True and obj["cases"]["total"] == sum(
        obj["cases"][k] for k in ("gemm", "prefill", "decode", "collectives"))


def test_profile_run_json_reads_the_environment(capsys, tmp_path, monkeypatch):
    from llmsim.validation import profiler

    out = tmp_path / "p"

    def fake_run(args):
        out.mkdir()
        (out / profiler.ENV_FILE).write_text(json.dumps({"rows": {"gemm": 3}, "status": "complete",
                                                         "skipped_count": 0, "notes": []}))
        print("profiling on fake")
        return 0

    monkeypatch.setattr(profiler, "run", fake_run)
    assert main(["profile", "--device-name", "x", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == {"gemm": 3} and "profiling on fake" in captured.err


def test_fit_engine_json(monkeypatch, capsys):
    from llmsim.validation import serving

    hosts = {"h100-sxm": {"iteration_s": 0.004, "per_seq_s": 0.0003}}
    monkeypatch.setattr(serving, "fit_splitwise_overheads", lambda *a, **k: hosts)
    assert main(["fit-engine", "splitwise", "perf.csv", "--json"]) == 0
    obj = _one_object(capsys)
    assert obj == {"source": "splitwise", "engine": "vllm-0.2", "hosts": hosts, "written": None}


def test_fit_network_json(monkeypatch, capsys):
    import yaml

    from llmsim.validation import network as nw

    shipped = yaml.safe_load(nw.SHIPPED_YAML.read_text())
    monkeypatch.setattr(nw, "fit_network", lambda table, **k: print("fitting") or shipped)
    monkeypatch.setattr(nw, "network_report", lambda table, **k: {"split": k["split"], "mape": 0.1})
    monkeypatch.setattr(nw, "_shipped_table", lambda: None)
    assert main(["fit-network", "--json"]) == 0
    obj = _one_object(capsys)
    assert obj["reports"]["test"] == {"split": "test", "mape": 0.1} and obj["written"] is None
    assert obj["fit"] == json.loads(json.dumps(shipped))


def test_fit_kernels_json(monkeypatch, tmp_path, capsys):
    import pandas as pd

    from llmsim.hwmodels.calibration import load_profile
    from llmsim.validation import calibrate as cal
    from llmsim.validation import loaders

    monkeypatch.setattr(loaders, "load_measurements", lambda p: pd.DataFrame({"path": [p]}))
    monkeypatch.setattr(cal, "fit_profile", lambda table, **k: load_profile(cal.SHIPPED_PROFILE))
    out = tmp_path / "profile.json"
    assert main(["fit-kernels", "a.csv", "--out", str(out), "--json"]) == 0
    obj = _one_object(capsys)
    assert obj["out"] == str(out) and obj["parameter_sets"] > 0 and out.exists()


@pytest.mark.parametrize("argv", [["config", "--example", "run", "--json"], ["list", "engines", "--json"],
                                  ["train", "--json"]])
def test_other_commands_json(argv, capsys):
    assert main(argv) == 0
    json.loads(capsys.readouterr().out)
