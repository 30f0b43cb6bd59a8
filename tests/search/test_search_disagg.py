"""P/D-disaggregated candidates in the search space, evaluated through the same path as `simulate run`."""
import pytest

from llmsim.search.capacity import run_sizing
from llmsim.search.evaluate import Context, SLOTarget, WorkloadSpec, simulate_at, usd_per_hour
from llmsim.search.explore import run_search
from llmsim.search.space import Candidate, SearchSpace
from llmsim.sim.config import config_from_dict
from llmsim.sim.runner import run
from llmsim.workloads.errors import ConfigError

SPACE = dict(model="llama-3.1-8b", devices=("h100",), num_devices=(3,), tp=(1,), quant=("bf16",),
             decode_devices=("a100-80gb",))


def test_space_enumerates_every_split_after_the_colocated_candidates():
    cands = SearchSpace(**SPACE).candidates()
    assert [(c.disaggregated, c.dp, c.decode_replicas) for c in cands] == [(False, 3, 0), (True, 1, 2), (True, 2, 1)]
    assert all(c.num_devices == 3 for c in cands)
    assert cands[1].label().startswith("P:h100-sxm tp1 pp1 dp1 D:a100-sxm-80gb dp2")
    # a colocated candidate's fields (its store key) are as without the dimension
    assert "decode_device" not in cands[0].to_dict() and Candidate.from_dict(cands[1].to_dict()) == cands[1]
    assert len(SearchSpace(**SPACE, prefill_replicas=(2,)).candidates()) == 2
    with pytest.raises(ConfigError, match="decode_devices"):
        SearchSpace(**{**SPACE, "decode_devices": None}, prefill_replicas=(1,))


def test_a_disaggregated_candidate_runs_as_simulate_run_does():
    cand = SearchSpace(**SPACE).candidates()[1]
    ctx = Context(model="llama-3.1-8b", workload=WorkloadSpec(name="azure-conv", num_requests=40))
    got = simulate_at(cand, ctx, None)
    want = run(config_from_dict({"seed": 0, "deployment": {"model": "llama-3.1-8b", "device": "h100", "quant": "bf16",
                                                           "kv_dtype": "auto"},
                                 "serving": {"gpu_memory_utilization": 0.9},
                                 "disagg": {"prefill": {"device": "h100", "tp": 1, "replicas": 1},
                                            "decode": {"device": "a100-80gb", "tp": 1, "replicas": 2}, "link": "ib"},
                                 "workload": {"name": "azure-conv", "num_requests": 40}})).summary
    assert got["mode"] == "disaggregated" and got == want
    assert usd_per_hour(cand, "on_demand") == pytest.approx(3.00 + 2 * 1.30)  # hwmodels/data/prices


def test_search_ranks_disaggregated_candidates_beside_colocated_ones():
    res = run_search(SearchSpace(**SPACE), workload=WorkloadSpec(num_requests=40),
                     slo=SLOTarget(ttft_s=1.0, tpot_s=0.1), workers=1, goodput_tol=0.2)
    df = res.frame
    dis = df[df["label"].str.startswith("P:")]
    assert len(dis) == 2 and dis["simulated"].all() and (dis["goodput_rps"] > 0).all()
    assert df["rank"].notna().sum() == 3


def test_sizing_refuses_disaggregated_spaces():
    with pytest.raises(ConfigError, match="decode_devices"):
        run_sizing(SearchSpace(**SPACE), rate=1.0, slo=SLOTarget(ttft_s=1.0), workers=1)
