"""Every documented example of the front door runs as written (``doctest`` on the modules)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["llmsim.api", "llmsim.simulation"]


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_the_docstrings_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see above)"
