"""Scheduler and router registries are uses of the generic catalogue: loose names, suggestions, no duplicates."""
import pytest

from llmsim.sim.cluster import ROUTERS
from llmsim.sim.registry import Registry
from llmsim.sim.schedulers import SCHEDULERS
from llmsim.workloads.catalogue import Catalogue
from llmsim.workloads.errors import ConfigError, UnknownNameError


def test_registries_are_catalogues_with_loose_names():
    assert isinstance(SCHEDULERS, Catalogue) and isinstance(ROUTERS, Catalogue)
    assert ROUTERS.canonical("P2C") == "power-of-two" == ROUTERS.resolve("power_of_two_choices")
    assert ROUTERS.get("RR") is ROUTERS.table()["round-robin"]
    assert "least-kv" in ROUTERS.names() and "lor" in ROUTERS


@pytest.mark.parametrize("registry, typo, expected", [(ROUTERS, "round-robbin", "round-robin"),
                                                      (SCHEDULERS, "sarathy", "sarathi")])
def test_a_miss_suggests_the_closest_names(registry, typo, expected):
    with pytest.raises(UnknownNameError) as e:
        registry.get(typo)
    assert expected in str(e.value) and expected in e.value.suggestions


def test_duplicates_and_files_are_config_errors():
    r: Registry[int] = Registry("widget")
    assert r.register("alpha", 1, aliases=("a",)) == 1
    with pytest.raises(ConfigError, match="already"):
        r.register("alpha", 2)
    with pytest.raises(ConfigError):
        r.register("beta", 3, aliases=("a",))  # the alias is taken
    assert r.names() == ("alpha",) and r.get("A") == 1
    with pytest.raises(ConfigError, match="registered in code"):
        r.load_path("widget.yaml")
    with pytest.raises(UnknownNameError):
        r.get("widget.yaml")  # a name here, never a path
