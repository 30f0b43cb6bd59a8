"""The command line's dataclass code cache compiles what ``exec`` would: the same classes."""
from __future__ import annotations

import dataclasses
import marshal
import sys

import pytest

from llmsim.cli import codecache


def _define():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Point:
        x: int
        y: float = 2.5
        tags: tuple = ()

    return Point


@pytest.mark.skipif("_create_fn" not in vars(dataclasses), reason="another dataclasses generator")
def test_cached_code_defines_the_same_class(monkeypatch, tmp_path):
    monkeypatch.setattr(codecache, "_FILE", tmp_path / "code.marshal")
    monkeypatch.setattr(codecache, "_codes", None)
    monkeypatch.setattr(codecache, "_added", False)
    monkeypatch.delattr(dataclasses, "exec", raising=False)
    plain = _define()
    monkeypatch.setattr(dataclasses, "exec", codecache._exec, raising=False)
    compiled = _define()  # a miss: compiled and kept
    codecache.save()
    assert (tmp_path / "code.marshal").is_file()
    version, entries = marshal.loads((tmp_path / "code.marshal").read_bytes())
    assert version == sys.version and entries
    monkeypatch.setattr(codecache, "_codes", None)
    cached = _define()  # a hit: unmarshalled
    for cls in (compiled, cached):
        p, q = plain(x=1), cls(x=1)
        assert repr(p).split("Point")[1] == repr(q).split("Point")[1]
        assert cls.__init__.__annotations__ == plain.__init__.__annotations__
        assert cls.__init__.__code__.co_code == plain.__init__.__code__.co_code
        assert cls(x=1, y=3.0) == cls(x=1, y=3.0) and hash(cls(x=1)) == hash(cls(x=1))
        with pytest.raises(dataclasses.FrozenInstanceError):
            q.x = 2
