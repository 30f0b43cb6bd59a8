"""The ``simulate`` command line (llmsim.cli): its subcommands, the catalogues' JSON and the fit commands."""
from __future__ import annotations

import json

import pytest

from llmsim.cli import build_parser, main

SUBCOMMANDS = {"run", "train", "validate", "calibrate", "profile", "list", "models", "devices", "clusters", "engines",
               "fit-kernels", "fit-engine", "fit-network", "search", "size"}


def test_one_parser_has_every_subcommand():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert SUBCOMMANDS <= set(sub.choices)  # other commands may join


@pytest.mark.parametrize("command, lister", [
    ("models", "llmsim.workloads.models:list_models"), ("devices", "llmsim.hwmodels.devices:list_devices"),
    ("clusters", "llmsim.hwmodels.cluster:list_clusters"), ("engines", "llmsim.hwmodels.engines:list_engines")])
def test_catalogues_print_one_json_list(capsys, command, lister):
    import importlib

    mod, fn = lister.split(":")
    assert main([command, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(getattr(importlib.import_module(mod), fn)())
    assert main([command]) == 0
    assert rows[0]["name"] in capsys.readouterr().out


HOSTS = {"h100-sxm": {"iteration_s": 0.004, "per_seq_s": 0.0003, "source": "test", "fitted_on": "test"}}


@pytest.mark.parametrize("argv, target, engine", [
    (["splitwise", "perf.csv", "--subset", "all"], "fit_splitwise_overheads", "vllm-0.2"),
    (["apex", "measured.csv", "--run", "lmsys_05_8TP"], "fit_apex_overhead", "vllm-0.6"),
])
def test_fit_engine_prints_the_hosts_and_writes_only_when_asked(monkeypatch, capsys, argv, target, engine):
    from llmsim.validation import serving

    calls, written = [], []
    result = HOSTS if target == "fit_splitwise_overheads" else HOSTS["h100-sxm"]
    monkeypatch.setattr(serving, target, lambda *a, **k: calls.append((a, k)) or result)
    monkeypatch.setattr(serving, "write_hosts", lambda e, h: written.append((e, h)))
    assert main(["fit-engine", *argv]) == 0
    out = capsys.readouterr().out
    assert out.startswith("    hosts:\n") and "iteration_s: 0.004" in out and calls and not written
    assert calls[0][0][0] == argv[1] and calls[0][1]["profile"] is None
    assert main(["fit-engine", *argv, "--write"]) == 0
    assert written[0][0] == engine and f"wrote the {engine} hosts" in capsys.readouterr().out


def test_fit_engine_errors_are_one_line_exit_2(capsys):
    assert main(["fit-engine", "apex", "no-such.csv", "--run", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simulate fit-engine: error:") and err.count("\n") == 1


def test_fit_network_scores_the_fit_and_writes_only_when_asked(monkeypatch, capsys):
    import yaml

    from llmsim.validation import network as nw

    shipped = yaml.safe_load(nw.SHIPPED_YAML.read_text())
    seen = {}
    monkeypatch.setattr(nw, "fit_network", lambda table, **k: seen.update(k) or shipped)
    monkeypatch.setattr(nw, "network_report", lambda table, **k: {"split": k["split"]})
    monkeypatch.setattr(nw, "format_network_table", lambda rep: f"table {rep['split']}")
    monkeypatch.setattr(nw, "_shipped_table", lambda: None)
    assert main(["fit-network"]) == 0
    assert seen["holdout_fraction"] == nw.DEFAULT_HOLDOUT
    assert capsys.readouterr().out == "split=test\ntable test\nsplit=all\ntable all\n"


def test_fit_kernels_fits_the_paths_into_out(monkeypatch, tmp_path, capsys):
    import pandas as pd

    from llmsim.hwmodels.calibration import load_profile
    from llmsim.validation import calibrate as cal
    from llmsim.validation import loaders

    seen = {}
    monkeypatch.setattr(loaders, "load_measurements", lambda p: pd.DataFrame({"path": [p]}))
    monkeypatch.setattr(cal, "fit_profile", lambda table, **k: seen.update(k, paths=list(table["path"]))
                        or load_profile(cal.SHIPPED_PROFILE))
    out = tmp_path / "p" / "profile.json"
    assert main(["fit-kernels", "a.csv", "b.csv", "--out", str(out), "--exclude-device", "h100"]) == 0
    assert seen["paths"] == ["a.csv", "b.csv"] and seen["holdout_fraction"] == cal.DEFAULT_HOLDOUT
    assert seen["exclude_devices"] == ("h100",) and out.exists()
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    assert main(["fit-kernels"]) == 2
    assert capsys.readouterr().err.startswith("simulate fit-kernels: error: give --default")
