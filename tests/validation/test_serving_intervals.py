"""The serving-interval check runs on a measured run and reports both kinds of interval."""
from llmsim.validation.serving_intervals import DEFAULT_FOLDER, METRICS, interval_report


def test_interval_report_on_one_measured_run():
    rows = interval_report(DEFAULT_FOLDER / "RTXPRO6000" / "Llama-3.1-8B")
    assert [r["metric"] for r in rows] == list(METRICS)
    for r in rows:
        assert r["kernel"][0] <= r["predicted"] <= r["kernel"][1]
        assert r["simulated"][0] <= r["predicted"] <= r["simulated"][1]
        assert r["in_fit"]  # the Llama-3.1-8B runs fitted the engine's sync_s
