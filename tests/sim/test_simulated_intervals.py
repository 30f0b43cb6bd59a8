"""Intervals simulated at both ends of the cost band: queueing included, point estimates untouched."""
import contextlib
import io
import json

from llmsim.cli import main

ARGS = ["run", "--model", "llama-3.1-8b", "--device", "h100", "--tp", "1", "--workload", "azure-code",
        "--num-requests", "150", "--rate", "12", "--json"]


def _run(*extra):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(ARGS + list(extra)) == 0
    return json.loads(buf.getvalue())


def test_simulated_intervals_keep_the_estimates_and_include_queueing():
    plain, sim = _run(), _run("--simulated-intervals")
    assert sim["interval_scope"].startswith("simulated")
    for k, v in plain.items():
        if not k.endswith("_interval") and k != "interval_scope":
            assert sim[k] == v, k  # the estimates are the same run's
    for k in ("ttft_p99_s", "tpot_p99_s", "e2e_mean_s", "throughput_output_tok_s"):
        lo, hi = sim[f"{k}_interval"]
        assert lo <= sim[k] <= hi, k
    # under load the high end's queueing stretches TTFT beyond the kernel-time scaling
    assert sim["ttft_p99_s_interval"][1] > plain["ttft_p99_s_interval"][1]
    assert _run("--simulated-intervals") == sim  # deterministic


def test_a_unit_scale_reproduces_the_run():
    from llmsim.sim.cluster import simulate
    from llmsim.sim.costs import ScaledCost
    from llmsim.sim.runner import assemble, slo_of
    from llmsim.cli import build_parser
    from llmsim.cli.run import run_config

    args = build_parser("run").parse_args(ARGS)
    built = assemble(run_config(args))
    base = simulate(built.trace, built.replicas, built.cost_models, router=built.router, seed=built.config.seed,
                    slo=slo_of(built.config)).summary
    one = simulate(built.trace, built.replicas, [ScaledCost(m, 1.0) for m in built.cost_models], router=built.router,
                   seed=built.config.seed, slo=slo_of(built.config)).summary
    assert one == base
