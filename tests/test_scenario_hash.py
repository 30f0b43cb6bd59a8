"""Scenario is hashable (a search can key results by it) and its mapping fields stay read-only."""
import copy
import pickle

import pytest

import llmsim
from llmsim.workloads.frozen import FrozenMap


def test_equal_scenarios_hash_equal_and_key_a_dict():
    a = llmsim.Scenario(model="llama-3.1-8b", device="h100", serving={"scheduler": "sarathi", "max_batch_size": 64},
                        slo={"ttft_s": 0.5})
    b = llmsim.Scenario(model="llama-3.1-8b", device="h100", serving={"max_batch_size": 64, "scheduler": "sarathi"},
                        slo={"ttft_s": 0.5})
    c = llmsim.Scenario(model="llama-3.1-8b", device="h100", serving={"scheduler": "vllm", "max_batch_size": 64},
                        slo={"ttft_s": 0.5})
    assert a == b and hash(a) == hash(b) and a != c
    assert len({a: 1, b: 2, c: 3}) == 2
    assert a.serving == {"scheduler": "sarathi", "max_batch_size": 64}
    assert a.config_dict()["serving"] == {"scheduler": "sarathi", "max_batch_size": 64}


def test_mapping_fields_are_read_only_copies():
    settings = {"scheduler": "sarathi"}
    s = llmsim.Scenario(model="llama-3.1-8b", serving=settings)
    settings["scheduler"] = "vllm"
    assert s.serving["scheduler"] == "sarathi" and isinstance(s.serving, FrozenMap)
    with pytest.raises(TypeError):
        s.serving["scheduler"] = "vllm"
    assert copy.deepcopy(s) == s and pickle.loads(pickle.dumps(s)) == s
