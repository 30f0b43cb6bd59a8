"""`simulate config --example KIND`: each example loads through the loader its command uses, and
every loader names an unknown key, the allowed keys and the closest one."""
from __future__ import annotations

import json

import pytest

from llmsim.cli import main
from llmsim.cli.config_cmd import EXAMPLES
from llmsim.hwmodels.cluster import ClusterSpec, cluster_from_dict, get_cluster
from llmsim.search.space import SearchSpace, load_space
from llmsim.sim.config import RunConfig, config_from_dict, load_yaml
from llmsim.sim.training_config import TrainRunConfig, load_train_config
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.yamlio import read_yaml


def _printed(kind: str, capsys) -> str:
    assert main(["config", "--example", kind]) == 0
    return capsys.readouterr().out


def _load(kind: str, path: str):
    """The config at ``path`` through the loader of the command that reads that kind."""
    if kind in ("run", "workload"):
        return config_from_dict(load_yaml(path), path)
    if kind == "cluster":
        return get_cluster(path)
    if kind == "search":
        return load_space(path)
    return load_train_config(path, {})


TYPES = {"run": RunConfig, "workload": RunConfig, "cluster": ClusterSpec, "search": SearchSpace,
         "train": TrainRunConfig}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_example_is_commented_and_loads(kind, capsys, tmp_path):
    text = _printed(kind, capsys)
    assert text.lstrip().startswith("#") and text == EXAMPLES[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    assert isinstance(_load(kind, str(path)), TYPES[kind])


def test_example_json_parses(capsys):
    assert main(["config", "--example", "train", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["kind"] == "train" and obj["yaml"] == EXAMPLES["train"]


def test_run_example_runs(capsys, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_printed("run", capsys))
    assert main(["run", str(path), "--num-requests", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 8


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["config", "--example", "nope"])
    assert e.value.code == 2


def _with_typo(kind: str, typo: str, tmp_path) -> str:
    data = read_yaml(EXAMPLES[kind], kind)
    if kind in ("run", "workload"):
        data["serving"] = {**(data.get("serving") or {}), typo: 1}
    else:
        data[typo] = 1
    path = tmp_path / f"bad-{kind}.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    return str(path)


#: kind -> (misspelt key, the key it should suggest)
TYPOS = {"run": ("max_batch_sise", "max_batch_size"), "workload": ("schedular", "scheduler"),
         "cluster": ("descripton", "description"), "search": ("num_device", "num_devices"),
         "train": ("micro_bach", "micro_batch")}


@pytest.mark.parametrize("kind", sorted(TYPOS))
def test_unknown_key_names_key_allowed_and_suggestion(kind, tmp_path):
    typo, meant = TYPOS[kind]
    with pytest.raises(ConfigError) as e:
        _load(kind, _with_typo(kind, typo, tmp_path))
    msg = str(e.value)
    assert f"unknown key {typo!r}" in msg
    assert f"did you mean {meant!r}" in msg
    assert "allowed keys:" in msg and meant in msg.split("allowed keys:")[1]


def test_cluster_dict_loader_agrees_with_file_loader(tmp_path):
    data = read_yaml(EXAMPLES["cluster"], "cluster")
    assert cluster_from_dict(data, "example").name == "my-two-node-h100"


def test_search_candidate_unknown_key_suggests():
    from llmsim.search.space import Candidate

    with pytest.raises(ConfigError, match=r"unknown key 'tpp' \(did you mean 'tp'\?\); allowed keys:"):
        Candidate.from_dict({"device": "h100", "tpp": 1})
