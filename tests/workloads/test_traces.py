"""Request sources: formats, errors naming file/line/column, seeded synthesis, bundled workloads."""
import json
from pathlib import Path

import numpy as np
import pytest

from llmsim.workloads.errors import ConfigError, TraceError, UnknownNameError
from llmsim.workloads.traces import (DATA_DIR, ClosedLoop, EmpiricalLength, FixedLength, FixedRateArrivals,
                              GammaArrivals, LognormalLength, PoissonArrivals, RequestTrace, UniformLength,
                              load_apex_jsonl, load_azure_csv, load_canonical_csv, load_trace, load_workload,
                              resample, synthesize, workload_names)

SHARED = str(Path(__file__).resolve().parents[2] / "validation" / "data" / "serving" / "apex_vllm_h100" / "lmsys_05_8TP.csv")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_canonical_csv_reads_the_apex_trace():
    t = load_trace(SHARED)
    assert len(t) == 1023 and t.request_id[0] == "4f7acdb58cf444d6d3a40b57647b7d698cf88f0f"
    assert t.arrival_s[0] == pytest.approx(1.50020348) and t.prompt_tokens[0] == 126 and t.output_tokens[0] == 390
    assert t.arrival_s.dtype == np.float64 and t.prompt_tokens.dtype == np.int64
    assert np.all(np.diff(t.arrival_s) >= 0)
    with pytest.raises(ValueError):
        t.arrival_s[0] = 3.0  # arrays are read-only


def test_azure_csv_arrivals_are_seconds_since_the_first_timestamp(tmp_path):
    p = write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                  "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    t = load_trace(p)
    assert np.allclose(t.arrival_s, [0.0, 4.314579]) and list(t.prompt_tokens) == [374, 396]


def test_apex_jsonl_offsets_are_nanoseconds(tmp_path):
    rows = [{"ContextTokens": 10, "GeneratedTokens": 3, "StartTimeOffset": 2_500_000_000},
            {"ContextTokens": 20, "GeneratedTokens": 4, "StartTimeOffset": 0}]
    p = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    t = load_trace(p)
    assert list(t.arrival_s) == [0.0, 2.5] and list(t.prompt_tokens) == [20, 10]


def test_length_only_csv_needs_an_arrival_process(tmp_path):
    p = write(tmp_path, "len.csv", "num_prefill_tokens,num_decode_tokens\n100,10\n200,20\n")
    with pytest.raises(ConfigError, match="lengths only"):
        load_trace(p)
    t = load_trace(p, arrivals=FixedRateArrivals(rate_per_s=2.0))
    assert list(t.arrival_s) == [0.0, 0.5] and list(t.output_tokens) == [10, 20]


@pytest.mark.parametrize("body,where", [
    ("request_id,arrival_s,prompt_tokens\nx,0.1,5\n", "line 1, column 'output_tokens'"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\nx,0.1,5,3\ny,0.2,-4,3\n", "line 3, column 3 ('prompt_tokens')"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\nx,0.1,5,3\ny,0.2,4,3\nz,abc,4,3\n", "line 4, column 2 ('arrival_s')"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\nx,0.1,5,2.5\n", "line 2, column 4 ('output_tokens')"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\nx,0.1,5,0\n", "line 2, column 4 ('output_tokens')"),
    ("request_id,arrival_s,prompt_tokens,output_tokens\nx,0.1,5,1\n\ny,0.3,5,1\n", "line 3, column 2 ('arrival_s')"),
])
def test_malformed_canonical_csv_names_file_line_and_column(tmp_path, body, where):
    p = write(tmp_path, "bad.csv", body)
    with pytest.raises(TraceError) as exc:
        load_canonical_csv(p)
    assert str(p) in str(exc.value) and where in str(exc.value)


def test_malformed_azure_and_jsonl_name_line_and_column(tmp_path):
    p = write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,3,4\nnot-a-time,3,4\n")
    with pytest.raises(TraceError, match=r"line 3, column 1 \('TIMESTAMP'\)"):
        load_azure_csv(p)
    p = write(tmp_path, "t.jsonl", '{"ContextTokens": 1, "GeneratedTokens": 1, "StartTimeOffset": 0}\n'
                                   '{"ContextTokens": "x", "GeneratedTokens": 1, "StartTimeOffset": 0}\n')
    with pytest.raises(TraceError, match=r"t.jsonl, line 2, column 'ContextTokens'"):
        load_apex_jsonl(p)
    p = write(tmp_path, "u.jsonl", '{"ContextTokens": 1, "GeneratedTokens": 1}\n')
    with pytest.raises(TraceError, match="line 1, column 'StartTimeOffset': missing"):
        load_apex_jsonl(p)
    p = write(tmp_path, "v.jsonl", '{"ContextTokens": 1,\n')
    with pytest.raises(TraceError, match="line 1, column"):
        load_apex_jsonl(p)
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(tmp_path / "missing.csv")


def test_synthesis_is_deterministic_per_seed_and_streams_are_independent():
    kw = dict(arrivals=PoissonArrivals(rate_per_s=5.0), prompt=LognormalLength(median=300, sigma=0.8),
              output=UniformLength(low=1, high=50))
    a, b, c = synthesize(500, seed=1, **kw), synthesize(500, seed=1, **kw), synthesize(500, seed=2, **kw)
    for f in ("arrival_s", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
        assert not np.array_equal(getattr(a, f), getattr(c, f))
    # Changing the output distribution does not change the arrivals or prompts drawn with the same seed.
    d = synthesize(500, seed=1, arrivals=kw["arrivals"], prompt=kw["prompt"], output=FixedLength(tokens=7))
    assert np.array_equal(a.arrival_s, d.arrival_s) and np.array_equal(a.prompt_tokens, d.prompt_tokens)


def test_arrival_processes_have_the_requested_rate_and_burstiness():
    rng = np.random.default_rng(0)
    for proc, cv in [(PoissonArrivals(rate_per_s=10.0), 1.0), (GammaArrivals(rate_per_s=10.0, cv=3.0), 3.0),
                     (FixedRateArrivals(rate_per_s=10.0), 0.0)]:
        gaps = np.diff(proc.times(50_000, rng))
        assert gaps.mean() == pytest.approx(0.1, rel=0.05)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, abs=0.1 * max(cv, 1))
    with pytest.raises(ConfigError, match="rate_per_s must be"):
        PoissonArrivals(rate_per_s=0)


def test_length_distributions_respect_their_bounds():
    rng = np.random.default_rng(0)
    assert set(UniformLength(low=3, high=5).sample(1000, rng).tolist()) == {3, 4, 5}
    ln = LognormalLength(median=100, sigma=1.0, low=10, high=400).sample(20_000, rng)
    assert ln.min() >= 10 and ln.max() <= 400 and np.median(ln) == pytest.approx(100, rel=0.05)
    emp = EmpiricalLength(values=np.array([7, 9])).sample(100, rng)
    assert set(emp.tolist()) <= {7, 9}
    with pytest.raises(ConfigError):
        UniformLength(low=5, high=3)


def test_resample_keeps_prompt_output_pairs():
    t = load_workload("azure-code")
    r = resample(t, 1000, arrivals=PoissonArrivals(rate_per_s=2.0), seed=4)
    pairs = set(zip(t.prompt_tokens.tolist(), t.output_tokens.tolist()))
    assert all(p in pairs for p in zip(r.prompt_tokens.tolist(), r.output_tokens.tolist()))


def test_bundled_workloads_load_by_name_with_attribution():
    assert set(workload_names()) == {"azure-conv", "azure-code", "arxiv-summarization", "mooncake-conversation",
                                     "mooncake-synthetic", "shared-prefix", "multi-turn"}
    conv = load_workload("Azure_Conv")
    assert len(conv) == 19366 and conv.arrival_s[0] == 0.0 and conv.name == "azure-conv"
    assert 3400 < conv.duration_s < 3700
    assert len(load_workload("azure-code")) == 8819
    arxiv = load_workload("arxiv", arrivals=PoissonArrivals(rate_per_s=3.0), seed=1, limit=100)
    assert len(arxiv) == 100 and arxiv.prompt_tokens[0] == 3772
    readme = (DATA_DIR / "README.md").read_text()
    assert "CC-BY-4.0" in readme and "Splitwise" in readme and "MIT" in readme
    assert (DATA_DIR / "LICENSE-azure").is_file() and (DATA_DIR / "LICENSE-vidur").is_file()
    with pytest.raises(UnknownNameError, match="azure-conv"):
        load_workload("azure-convo")


def test_closed_loop_trace_carries_users_and_think_time():
    t = synthesize(10, arrivals=ClosedLoop(users=4, think_time_s=1.5), prompt=FixedLength(tokens=5),
                   output=FixedLength(tokens=5))
    assert t.closed_loop == (4, 1.5) and np.all(t.arrival_s == 0)


def test_round_trip_through_the_canonical_csv(tmp_path):
    t = synthesize(50, arrivals=PoissonArrivals(rate_per_s=3.0), prompt=FixedLength(tokens=9),
                   output=UniformLength(low=1, high=9), seed=3)
    back = load_canonical_csv(t.to_csv(tmp_path / "t.csv"))
    assert np.allclose(back.arrival_s, t.arrival_s, atol=1e-9) and np.array_equal(back.output_tokens, t.output_tokens)
    assert isinstance(back, RequestTrace)


def test_jsonl_readers_share_one_line_reader(tmp_path):
    """APEX and Mooncake JSONL go through one reader: the same error form, gzip for both."""
    import gzip

    from llmsim.workloads.traces import load_apex_jsonl, load_mooncake_jsonl

    apex = tmp_path / "a.jsonl"
    apex.write_text('{"ContextTokens": 10, "GeneratedTokens": 2, "StartTimeOffset": 0}\n'
                    '{"ContextTokens": 5, "GeneratedTokens": 1}\n')
    moon = tmp_path / "m.jsonl"
    moon.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2}\n'
                    '{"timestamp": 5, "input_length": 5}\n')
    with pytest.raises(TraceError, match=r"a\.jsonl, line 2, column 'StartTimeOffset': missing key"):
        load_apex_jsonl(apex)
    with pytest.raises(TraceError, match=r"m\.jsonl, line 2, column 'output_length': missing key"):
        load_mooncake_jsonl(moon)
    good = tmp_path / "g.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as f:
        f.write('{"ContextTokens": 10, "GeneratedTokens": 2, "StartTimeOffset": 2000000000}\n\n'
                '{"ContextTokens": 7, "GeneratedTokens": 3, "StartTimeOffset": 0}\n')
    t = load_apex_jsonl(good)
    assert t.prompt_tokens.tolist() == [7, 10] and t.arrival_s.tolist() == [0.0, 2.0]
