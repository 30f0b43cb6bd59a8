"""Workloads that carry prefix identity: Mooncake JSONL, canonical CSV hash_ids / session_id,
the bundled Mooncake traces, and the generated shared-prefix and multi-turn workloads."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from llmsim.cli import main
from llmsim.workloads.errors import ConfigError, TraceError
from llmsim.workloads.prefix import PrefixIds
from llmsim.workloads.traces import (DATA_DIR, PoissonArrivals, load_canonical_csv, load_mooncake_jsonl, load_trace,
                              load_workload, multi_turn, resample, shared_prefix)

ROWS = [{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]},
        {"timestamp": 2500, "input_length": 1100, "output_length": 7, "hash_ids": [0, 1, 2]},
        {"timestamp": 1000, "input_length": 10, "output_length": 3, "hash_ids": [9]}]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bundled_mooncake_traces_load_with_their_ids_and_attribution():
    conv = load_workload("mooncake-conversation")
    synth = load_workload("mooncake-synthetic")
    assert (len(conv), len(synth)) == (12031, 3993)
    assert conv.name == "mooncake-conversation" and 3500 < conv.duration_s < 3600
    assert conv.prompt_tokens.mean() == pytest.approx(12035, abs=1) and synth.prompt_tokens.mean() == pytest.approx(15325, abs=1)
    for t in (conv, synth):
        counts = np.diff(t.prefix.offsets)
        assert np.array_equal(counts, -(-t.prompt_tokens // 512)) and t.prefix.block_tokens == 512
        assert np.array_equal(t.prefix.tokens, t.prompt_tokens)
    assert conv.prefix.row(0)[0].tolist() == list(range(14)) and conv.prompt_tokens[0] == 6758
    assert 0.3 < conv.prefix.shared_fraction() < 0.45 and synth.prefix.shared_fraction() > 0.5
    assert (DATA_DIR / "LICENSE-mooncake").is_file()
    readme = (DATA_DIR / "README.md").read_text()
    assert "kvcache-ai/Mooncake" in readme and "Apache-2.0" in readme


def test_mooncake_jsonl_is_detected_plain_or_gzipped_and_sorted_by_time(tmp_path):
    text = "\n".join(json.dumps(r) for r in ROWS) + "\n"
    plain = write(tmp_path, "m.jsonl", text)
    gz = tmp_path / "m.jsonl.gz"
    gz.write_bytes(gzip.compress(text.encode(), mtime=0))
    for p in (plain, gz):
        t = load_trace(p)
        assert t.name == "m" and t.arrival_s.tolist() == [0.0, 1.0, 2.5]
        assert t.prompt_tokens.tolist() == [600, 10, 1100] and t.output_tokens.tolist() == [5, 3, 7]
        assert [t.prefix.row(i)[0].tolist() for i in range(3)] == [[0, 1], [9], [0, 1, 2]]
        assert t.request_id.tolist() == [0, 2, 1]


@pytest.mark.parametrize("row,where", [
    ({"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, "a"]}, "column 'hash_ids': expected a list"),
    ({"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1.5]}, "column 'hash_ids': expected a list"),
    ({"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, True]}, "column 'hash_ids': expected a list"),
    ({"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0]}, "1 ids, but input_length 600"),
    ({"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1, 2]}, "3 ids, but input_length 600"),
    ({"timestamp": 0, "input_length": 60.5, "output_length": 5, "hash_ids": [0]}, "column 'input_length': expected a whole"),
    ({"timestamp": -1, "input_length": 60, "output_length": 5, "hash_ids": [0]}, "column 'timestamp': must be >= 0"),
    ({"timestamp": 0, "output_length": 5, "hash_ids": [0]}, "column 'input_length': missing"),
])
def test_malformed_mooncake_lines_name_file_and_line(tmp_path, row, where):
    p = write(tmp_path, "bad.jsonl", json.dumps(ROWS[0]) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(TraceError) as exc:
        load_mooncake_jsonl(p)
    assert str(p) in str(exc.value) and "line 2" in str(exc.value) and where in str(exc.value)


CSV = ("# block_tokens=4\n"
       "request_id,arrival_s,prompt_tokens,output_tokens,hash_ids,session_id\n"
       "a,0.0,10,3,1 2 3,\n"
       "b,1.0,9,3,1 2 7,\n"
       "c,2.0,8,3,,chat-1\n"
       "d,5.0,16,4,,chat-1\n"
       "e,6.0,5,2,,\n")


def test_canonical_csv_reads_hash_ids_and_sessions(tmp_path):
    t = load_trace(write(tmp_path, "p.csv", CSV))
    px = t.prefix
    assert px.block_tokens == 4 and px.tokens.tolist() == [10, 9, 11, 20, 0]
    assert px.row(0)[0].tolist() == [1, 2, 3] and px.row(1)[0].tolist() == [1, 2, 7] and px.row(4) is None
    c, d = px.row(2)[0].tolist(), px.row(3)[0].tolist()
    assert len(c) == 3 and len(d) == 5 and d[:3] == c  # turn d starts with turn c's prompt + output
    no_header = CSV.split("\n", 1)[1]
    t2 = load_canonical_csv(write(tmp_path, "q.csv", no_header), block_tokens=4)
    assert np.array_equal(t2.prefix.ids, px.ids)
    with pytest.raises(TraceError, match="line 2, column 5 \\('hash_ids'\\): hash_ids need their block size"):
        load_trace(write(tmp_path, "r.csv", no_header))
    with pytest.raises(TraceError, match="says block_tokens=4 but 8 was given"):
        load_trace(write(tmp_path, "s.csv", CSV), block_tokens=8)


@pytest.mark.parametrize("row,where", [
    ("x,3.0,10,3,1 two 3,", "line 8, column 5 ('hash_ids'): expected space-separated integer ids"),
    ("x,3.0,10,3,1 2,", "line 8, column 5 ('hash_ids'): 2 ids, but prompt_tokens 10 at 4 tokens per id needs 3"),
    ("x,3.0,10,3,1 2 3,chat-9", "line 8, column 5 ('hash_ids'): a row gives hash_ids or a session_id, not both"),
    ("x,9.0,12,3,,chat-1", "line 8, column 3 ('prompt_tokens'): session 'chat-1': a turn's prompt (12 tokens)"),
])
def test_malformed_prefix_columns_name_file_line_and_column(tmp_path, row, where):
    p = write(tmp_path, "bad.csv", CSV + row + "\n")
    with pytest.raises(TraceError) as exc:
        load_trace(p)
    assert str(p) in str(exc.value) and where in str(exc.value)


def test_gzipped_trace_runs_from_the_command_line(tmp_path, capsys):
    gz = tmp_path / "m.jsonl.gz"
    gz.write_bytes(gzip.compress(("\n".join(json.dumps(r) for r in ROWS) + "\n").encode(), mtime=0))
    assert main(["run", "--model", "llama-3.1-8b", "--tp", "1", "--trace", str(gz), "--prefix-caching", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["requests_completed"] == 3 and d["workload"] == "m"
    assert d["prefix_cache_hit_tokens"] == 600 // 16 * 16  # row 3 shares the 600 tokens of row 1


def test_bad_trace_exits_2_with_one_line(tmp_path, capsys):
    p = write(tmp_path, "bad.jsonl", json.dumps({**ROWS[0], "hash_ids": [0]}) + "\n")
    assert main(["run", "--trace", str(p), "--prefix-caching"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl, line 1, column 'hash_ids'" in err


def test_prefix_ids_follow_head_sorting_and_retiming_and_resample_drops_them():
    t = shared_prefix(num_groups=2, num_prompts_per_group=3, system_prompt_len=64, question_len=16, output_len=4,
                      seed=9)
    h = t.head(4)
    assert len(h.prefix) == 4 and [h.prefix.row(i)[0].tolist() for i in range(4)] == \
        [t.prefix.row(i)[0].tolist() for i in range(4)]
    rev = t.with_arrivals(t.arrival_s[::-1].copy())
    assert rev.request_id.tolist() == t.request_id.tolist()[::-1]
    assert rev.prefix.row(0)[0].tolist() == t.prefix.row(len(t) - 1)[0].tolist()
    assert resample(t, 10, arrivals=PoissonArrivals(rate_per_s=1.0)).prefix is None
    with pytest.raises(ConfigError, match="ceil"):
        PrefixIds.from_lists([[1, 2]], [100], 16)


def test_shared_prefix_follows_inference_perf_and_is_seeded():
    kw = dict(num_groups=3, num_prompts_per_group=4, system_prompt_len=100, question_len=20, output_len=7)
    a, b, c = shared_prefix(**kw, seed=1), shared_prefix(**kw, seed=1), shared_prefix(**kw, seed=2)
    assert len(a) == 12 and np.all(a.prompt_tokens == 120) and np.all(a.output_tokens == 7)
    assert np.array_equal(a.prefix.ids, b.prefix.ids) and np.array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.prefix.ids, c.prefix.ids)
    rows = [tuple(a.prefix.row(i)[0].tolist()) for i in range(12)]
    assert len(set(rows)) == 12  # each prompt once per round
    groups = {r[:6] for r in rows}  # 100 // 16 = 6 whole blocks of system prompt
    assert len(groups) == 3
    again = shared_prefix(**kw, num_requests=24, seed=1)
    assert [tuple(again.prefix.row(i)[0].tolist()) for i in range(12, 24)] == rows  # repeats in the same order


def test_multi_turn_prompts_grow_by_output_and_user_tokens():
    m = multi_turn(num_sessions=2, turns=3, system_prompt_len=32, user_tokens=10, output_len=5, think_time_s=4.0,
                   seed=0)
    assert len(m) == 6
    s0 = [i for i in range(6) if m.request_id[i].startswith("s0-")]
    assert m.prompt_tokens[s0].tolist() == [42, 57, 72]
    assert np.allclose(np.diff(m.arrival_s[s0]), 4.0)
    ids = [m.prefix.row(i)[0].tolist() for i in s0]
    assert ids[1][:len(ids[0])] == ids[0] and ids[2][:len(ids[1])] == ids[1]
    s1 = [i for i in range(6) if m.request_id[i].startswith("s1-")]
    assert m.prefix.row(s1[0])[0].tolist()[:2] == ids[0][:2]  # the shared system prompt
    assert m.prefix.row(s1[0])[0].tolist() != ids[0]
    with pytest.raises(ConfigError, match="turns"):
        multi_turn(turns=0)
