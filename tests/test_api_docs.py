"""The Python examples of docs/quickstart.md and docs/extending.md run as written (each file's blocks
in order, in one namespace)."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", ["quickstart.md", "extending.md"])
def test_the_python_examples_of_the_docs_run(name):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)
    assert blocks, f"{name} has no python example"
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for i, code in enumerate(blocks):
            exec(compile(code, f"{name}[{i}]", "exec"), namespace)  # noqa: S102 - the docs' own examples
