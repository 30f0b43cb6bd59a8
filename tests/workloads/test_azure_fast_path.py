"""The pandas-free reader of plain Azure CSVs gives the same arrays as the pandas reader, and leaves
anything irregular to it (same errors)."""
from __future__ import annotations

import pytest

from llmsim.workloads import traces as T
from llmsim.workloads.errors import TraceError


def _both(path, monkeypatch):
    fast = T.load_azure_csv(path)
    with monkeypatch.context() as m:
        m.setattr(T, "_azure_fast", lambda p: None)
        ref = T.load_azure_csv(path)
    return fast, ref


@pytest.mark.parametrize("name", ["AzureLLMInferenceTrace_conv.csv", "AzureLLMInferenceTrace_code.csv"])
def test_bundled_azure_traces_read_the_same_without_pandas(name, monkeypatch):
    path = T.DATA_DIR / name
    assert T._azure_fast(path) is not None
    fast, ref = _both(path, monkeypatch)
    for col in ("arrival_s", "prompt_tokens", "output_tokens", "request_id"):
        a, b = getattr(fast, col), getattr(ref, col)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), col


@pytest.mark.parametrize("body, fast", [
    ("2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:45.1000000,396,109\n", True),
    ("2023-11-16 18:15:46.6805900,374,44\n\n2023-11-16 18:15:47.0,3,1\n", False),
    ("2023-11-16 18:15:46.6805900,37x,44\n", False),
    ("2023-11-16 18:15:46.6805900,0,44\n", False),
    ("yesterday at noon,374,44\n", False),
])
def test_irregular_files_go_to_the_pandas_reader(tmp_path, monkeypatch, body, fast):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    assert (T._azure_fast(path) is not None) is fast
    if fast:
        a, b = _both(path, monkeypatch)
        assert a.arrival_s.tobytes() == b.arrival_s.tobytes() and a.prompt_tokens.tolist() == b.prompt_tokens.tolist()
    else:
        with pytest.raises(TraceError):
            T.load_azure_csv(path)
