"""The generic catalogue: lazy loading, loose names and aliases, the path rule, plug-ins."""
from __future__ import annotations

import json

import pytest

from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError, UnknownNameError


def _parse(data, where):
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"{where}: missing key 'name'")
    return [(data["name"], dict(data), tuple(data.get("aliases", ())))]


def _catalogue(calls: list) -> Catalogue:
    def load():
        calls.append(1)
        return [("alpha-one", {"name": "alpha-one"}, ("a1",)), ("beta-two", {"name": "beta-two"}, ())]

    return Catalogue("widget", load, _parse)


def test_entries_load_on_first_use_only_and_names_are_loose():
    calls: list = []
    cat = _catalogue(calls)
    assert not cat.loaded and calls == []
    assert cat.get("Alpha_One")["name"] == "alpha-one" and cat.get("A1")["name"] == "alpha-one"
    assert cat.names() == ("alpha-one", "beta-two") and "beta two" in cat
    cat.get("beta-two")
    assert calls == [1]


def test_a_miss_suggests_the_closest_names():
    with pytest.raises(UnknownNameError) as e:
        _catalogue([]).get("alpha-on")
    assert "alpha-one" in e.value.suggestions


def test_a_yaml_or_json_path_is_parsed_and_validated_by_the_catalogues_parser(tmp_path):
    cat = _catalogue([])
    (tmp_path / "w.yaml").write_text("name: gamma\n")
    (tmp_path / "w.json").write_text(json.dumps({"name": "delta"}))
    assert cat.get(str(tmp_path / "w.yaml"))["name"] == "gamma"
    assert cat.get(tmp_path / "w.json")["name"] == "delta"
    assert "gamma" not in cat
    (tmp_path / "bad.yaml").write_text("size: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: missing key 'name'"):
        cat.get(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read widget file"):
        cat.get(str(tmp_path / "nope.yaml"))
    (tmp_path / "broken.yaml").write_text("name: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML at line \d+") as e:
        cat.get(str(tmp_path / "broken.yaml"))
    assert "\n" not in str(e.value)


def test_is_path_needs_a_data_suffix():
    assert is_path("x/dev.yaml") and is_path("DEV.YML") and is_path("d.json")
    assert not is_path("h100") and not is_path("h100@0.7") and not is_path(None)


def test_register_and_unregister():
    cat = _catalogue([])
    cat.register("gamma", {"name": "gamma"}, ("g",))
    assert cat.get("g")["name"] == "gamma"
    with pytest.raises(ConfigError, match="already in the catalogue"):
        cat.register("gamma", {}, ())
    with pytest.raises(ConfigError, match="alias"):
        cat.register("zeta", {}, ("a1",))
    assert "zeta" not in cat
    cat.unregister("gamma")
    assert "gamma" not in cat
    with pytest.raises(UnknownNameError):
        cat.unregister("gamma")


def test_streams_are_per_subsystem_and_reproducible():
    import numpy as np

    from llmsim.workloads.rng import stream

    a, b = stream(3, "arrivals").random(4), stream(3, "prompt").random(4)
    assert np.array_equal(a, stream(3, "arrivals").random(4)) and not np.array_equal(a, b)
    assert not np.array_equal(a, stream(4, "arrivals").random(4))
