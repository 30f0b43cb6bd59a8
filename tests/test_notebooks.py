"""Every notebook in notebooks/ runs top to bottom (nbclient, a fresh kernel, 120 s per cell at most)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_top_to_bottom(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    book = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    assert all(c.get("outputs") is not None for c in book.cells if c.cell_type == "code")
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
