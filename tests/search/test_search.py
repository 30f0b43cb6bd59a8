"""Design-space search: the space, memory feasibility, the screen against brute force, the store,
the executors, capacity sizing and the two commands."""
from __future__ import annotations

import json

import pytest

from llmsim.search import SearchSpace, SLOTarget, WorkloadSpec, explore, run_search, run_sizing
from llmsim.search.evaluate import Context, goodput, simulate_at
from llmsim.search.feasibility import check
from llmsim.search.space import Candidate, load_space
from llmsim.search.store import ResultStore
from llmsim.workloads.errors import ConfigError, UnknownNameError

WL = WorkloadSpec(name="azure-conv", num_requests=60)
SLO = SLOTarget(ttft_s=1.0, tpot_s=0.05)


def small_space(**kw) -> SearchSpace:
    base = dict(model="llama-3.1-8b", devices=("h100",), num_devices=(2,), tp=(1, 2), quant=("bf16", "fp8"),
                max_num_seqs=(16, 256))
    base.update(kw)
    return SearchSpace(**base)


def test_space_pins_and_frees_dimensions():
    sp = SearchSpace(model="llama-3.1-8b", devices="h100,a100-80gb", num_devices=4, tp="free", pp=1,
                     quant="bf16")
    cands = sp.candidates()
    assert {c.device for c in cands} == {"h100-sxm", "a100-sxm-80gb"}
    assert sorted({(c.tp, c.dp) for c in cands}) == [(1, 4), (2, 2), (4, 1)]  # free tp: powers of 2 up to 4
    free_q = SearchSpace(model="llama-3.1-8b", devices="a100-80gb", num_devices=1, tp=1, quant="free")
    assert "fp8" not in {c.quant for c in free_q.candidates()}  # the A100 has no fp8 units
    assert "bf16" in {c.quant for c in free_q.candidates()}


def test_space_rejects_bad_keys_and_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'tpp'.*allowed keys: model, devices"):
        SearchSpace.from_dict({"model": "llama-3.1-8b", "tpp": [1]})
    with pytest.raises(ConfigError, match="`tp` values must be integers >= 1"):
        SearchSpace(model="llama-3.1-8b", tp=(0,))
    with pytest.raises(UnknownNameError):
        SearchSpace(model="llama-3.1-8b", devices=("h1000",))
    p = tmp_path / "space.yaml"
    p.write_text("model: llama-3.1-8b\ndevices: [h100]\nnum_devices: [2]\ntp: free\nquant: [fp8]\n")
    sp = load_space(p, pp="1")
    assert [c.label() for c in sp.candidates()] == ["h100-sxm tp1 pp1 dp2 fp8 -/-/-", "h100-sxm tp2 pp1 dp1 fp8 -/-/-"]


def test_memory_feasibility_uses_the_deployments_accounting():
    ctx = Context(model="llama-3.1-70b", workload=WL)
    f = check(Candidate("h100-sxm", 1, 1, 1, "bf16"), ctx, 4096)
    assert not f.ok and f.binding == "memory" and "GiB per device" in f.reason
    ok = check(Candidate("h100-sxm", 4, 1, 1, "bf16"), ctx, 4096)
    assert ok.ok and ok.kv_tokens >= 4096
    assert ok.weight_gib == pytest.approx(ok.deployment.weight_bytes_per_device / 2**30)
    # KV for one request: a 70B fp8 replica on one H100 fits its weights but not a 200k-token request
    tight = check(Candidate("h100-sxm", 1, 1, 1, "fp8"), ctx, 200_000)
    assert not tight.ok and tight.binding == "kv"


@pytest.mark.parametrize("objective,slo", [("goodput", SLO), ("energy", SLOTarget())])
def test_screened_optimum_equals_brute_force(objective, slo):
    kw = dict(workload=WL, slo=slo, objective=objective, workers=1, top_k=2, round_size=2, goodput_tol=0.2)
    sp = small_space(quant=("fp8",), max_num_seqs=(16, 64, 256))
    screened = run_search(sp, **kw)
    brute = run_search(sp, use_screen=False, **kw)
    assert brute.simulated == int(brute.frame["feasible"].sum())  # brute force simulated every feasible one
    assert screened.best["label"] == brute.best["label"]
    assert screened.best["objective"] == pytest.approx(brute.best["objective"])
    assert screened.simulated <= brute.simulated


def test_symmetry_reduction_and_quality_budget():
    sp = small_space(kv_dtype=("auto", "bf16"), quant=("bf16", "w4a16"), max_num_seqs=None, tp=(1,))
    res = run_search(sp, workload=WL, objective="throughput", workers=1, max_quality_loss=0.01)
    assert res.space_size == 4 and res.candidates_evaluated == 2  # kv auto == bf16 for both formats
    w4 = res.frame[res.frame["quant"] == "w4a16"].iloc[0]
    assert w4["binding"] == "quality" and not w4["simulated"]


def test_store_resume_after_interrupt(tmp_path):
    db = tmp_path / "r.sqlite"
    kw = dict(workload=WL, objective="throughput", workers=1, use_screen=False, round_size=1)

    def boom(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(small_space(), store=str(db), progress=boom, **kw)
    assert len(ResultStore(db)) == 2  # written as each completed
    resumed = run_search(small_space(), store=str(db), resume=True, **kw)
    frame = ResultStore(db).frame()
    assert len(frame) == resumed.simulated and (frame["evaluations"] == 1).all()  # none evaluated twice
    fresh = run_search(small_space(), **kw)
    assert list(resumed.frame["label"]) == list(fresh.frame["label"])
    assert list(resumed.frame["objective"]) == pytest.approx(list(fresh.frame["objective"]), nan_ok=True)
    out = ResultStore(db).export(tmp_path / "all.parquet")
    assert out.exists()


def test_local_pool_matches_in_process():
    kw = dict(workload=WL, objective="latency", use_screen=False)
    one = run_search(small_space(), workers=1, **kw)
    pool = run_search(small_space(), workers=2, **kw)
    assert list(one.frame["label"]) == list(pool.frame["label"])
    assert list(one.frame["objective"]) == list(pool.frame["objective"])


def test_ray_matches_local_pool():
    pytest.importorskip("ray")
    kw = dict(workload=WL, objective="latency", use_screen=False)
    local = run_search(small_space(), workers=1, **kw)
    ray = run_search(small_space(), executor="ray", **kw)
    assert list(local.frame["label"]) == list(ray.frame["label"])


def test_ray_absent_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match="needs Ray"):
        run_search(small_space(), workload=WL, objective="latency", executor="ray", use_screen=False)


def test_size_finds_the_fewest_replicas_that_carry_the_rate():
    sp = SearchSpace(model="llama-3.1-8b", devices=("h100",), num_devices=(1,), tp=(1,), quant=("bf16", "fp8"))
    wl = WorkloadSpec(name="azure-conv", num_requests=80)
    slo = SLOTarget(ttft_s=0.5, tpot_s=0.03)
    res = run_sizing(sp, rate=40.0, slo=slo, workload=wl, workers=1)
    opts = res.to_dict()["options"]
    assert opts and [o["usd_per_hour"] for o in opts] == sorted(o["usd_per_hour"] for o in opts)
    best = opts[0]
    ctx = Context(model=sp.model, workload=WorkloadSpec(name="azure-conv", num_requests=80, rate=40.0), slo=slo,
                  goodput=True)
    cand = Candidate(best["device"], best["tp"], best["pp"], best["replicas"], best["quant"], best["kv_dtype"], 1,
                     best["scheduler"], best["max_num_seqs"], best["max_num_batched_tokens"])
    assert not slo.violations(simulate_at(cand, ctx, 40.0))
    if best["replicas"] > 1:
        assert slo.violations(simulate_at(cand.with_dp(best["replicas"] - 1), ctx, 40.0))


def test_explore_returns_a_dataframe():
    df = explore({"model": "llama-3.1-8b", "devices": ["h100"], "num_devices": [1], "tp": [1]},
                 workload=WL, objective="throughput", workers=1)
    assert df.iloc[0]["rank"] == 1 and df.attrs["simulated"] == 1


def test_cli_search_json_and_infeasible_exit(capsys):
    from llmsim.cli import main

    rc = main(["search", "--model", "llama-3.1-8b", "--devices", "h100", "--num-devices", "2", "--tp", "1,2",
               "--num-requests", "40", "--slo-ttft-p99", "1", "--slo-tpot-p99", "0.05", "--workers", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert set(out) >= {"best", "candidates", "pareto", "candidates_evaluated", "simulated", "wall_s"}
    assert out["best"]["label"] == out["candidates"][0]["label"]
    rc = main(["search", "--model", "llama-3.1-8b", "--devices", "h100", "--num-devices", "1", "--tp", "1",
               "--num-requests", "40", "--slo-tpot-p99", "0.0001", "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "closest: h100-sxm tp1" in err and "binding constraint: tpot" in err


def test_cli_size_json(capsys):
    from llmsim.cli import main

    rc = main(["size", "--model", "llama-3.1-8b", "--rate", "5", "--slo-ttft-p99", "1", "--slo-tpot-p99", "0.05",
               "--devices", "h100", "--tp", "1", "--num-requests", "40", "--workers", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(out) >= {"best", "options", "rate"} and out["rate"] == 5.0
    b = out["best"]
    for k in ("device", "tp", "pp", "quant", "scheduler", "replicas", "usd_per_hour", "goodput_rps"):
        assert b[k] is not None
    assert b["usd_per_hour"] == pytest.approx(3.0 * b["replicas"])  # the shipped H100 on-demand rate


def test_a_pessimistic_slo_judges_the_upper_end_of_each_interval():
    summary = {"ttft_p99_s": 0.8, "ttft_p99_s_interval": [0.7, 1.2], "tpot_p99_s": 0.02,
               "tpot_p99_s_interval": [0.018, 0.03]}
    assert not SLOTarget(ttft_s=1.0, tpot_s=0.05).violations(summary)
    miss = SLOTarget(ttft_s=1.0, tpot_s=0.05, pessimistic=True).violations(summary)
    assert miss == ["upper end of the 80% interval of TTFT p99 1.2 s > 1 s"]
    assert not SLOTarget(ttft_s=1.0, pessimistic=True).violations({"ttft_p99_s": 0.8})  # no interval: the estimate
    with pytest.raises(ConfigError, match="pessimistic"):
        SLOTarget(ttft_s=1.0, pessimistic="yes")


def test_pessimistic_goodput_is_no_higher_than_the_estimate():
    cand = Candidate("h100", 1, 1, 1, "bf16", "auto", 1, "sarathi", 256, 2048)
    wl = WorkloadSpec(name="azure-conv", num_requests=60)
    got = {}
    for pessimistic in (False, True):
        slo = SLOTarget(ttft_s=0.5, tpot_s=0.02, pessimistic=pessimistic)
        ctx = Context(model="llama-3.1-8b", workload=wl, slo=slo, goodput=True, goodput_tol=0.1)
        got[pessimistic], _, _ = goodput(cand, ctx, 4.0)
    assert 0 < got[True] <= got[False]
