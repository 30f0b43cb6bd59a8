"""Shipped YAML and bundled Azure traces parsed once and kept: the same data on a hit as on a parse."""
from __future__ import annotations

import numpy as np

from llmsim.workloads import traces, yamlio


def test_a_kept_yaml_parse_is_the_parse(monkeypatch, tmp_path):
    monkeypatch.setattr(yamlio, "_CACHE_FILE", tmp_path / "parsed.marshal")
    monkeypatch.setattr(yamlio, "_cache", None)
    monkeypatch.setattr(yamlio, "DATA_CACHE_ON", True)
    text = "a: 1e12\nb: [1, 2.5, true, null, x]\nc: {d: -0.0}\n"
    parsed = yamlio.read_yaml(text, "t.yaml")
    first = yamlio.read_yaml(text, "t.yaml", shipped=True)  # parsed and kept
    assert (tmp_path / "parsed.marshal").is_file()
    monkeypatch.setattr(yamlio, "_cache", None)  # as a new process: read back from the file
    monkeypatch.setattr(yamlio, "_parse", lambda *a: (_ for _ in ()).throw(AssertionError("parsed again")))
    hit = yamlio.read_yaml(text, "t.yaml", shipped=True)
    assert parsed == first == hit and type(hit["a"]) is float and type(hit["b"][2]) is bool
    hit["b"].append(9)  # every call gets its own objects
    assert yamlio.read_yaml(text, "t.yaml", shipped=True) == parsed


def test_changed_text_is_parsed_again(monkeypatch, tmp_path):
    monkeypatch.setattr(yamlio, "_CACHE_FILE", tmp_path / "parsed.marshal")
    monkeypatch.setattr(yamlio, "_cache", None)
    monkeypatch.setattr(yamlio, "DATA_CACHE_ON", True)
    assert yamlio.read_yaml("a: 1\n", "t.yaml", shipped=True) == {"a": 1}
    assert yamlio.read_yaml("a: 2\n", "t.yaml", shipped=True) == {"a": 2}


def test_kept_azure_arrays_are_the_parsed_ones(monkeypatch, tmp_path):
    monkeypatch.setattr(traces, "_ARRAY_CACHE", tmp_path)
    path = traces.DATA_DIR / traces._WORKLOAD_FILES["azure-code"]
    parsed = traces._azure_fast(path)
    for _ in range(2):  # a miss (written), then a hit (read back)
        got = traces._azure_shipped(path)
        for a, b in zip(parsed, got):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert list(tmp_path.iterdir())
    trace = traces.load_workload("azure-code", limit=50)
    assert np.array_equal(trace.prompt_tokens, parsed[1][np.argsort(parsed[0], kind="stable")][:50])
