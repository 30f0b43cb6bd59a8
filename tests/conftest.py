"""Tests import the installed ``llmsim``, never the checkout's folders by their bare names.

``python -m pytest`` puts the current directory (the repository root) on ``sys.path``, where ``sim/``,
``hwmodels/``, ... would import as top-level packages and hide a left-over ``import sim``; the root is
taken off again here, so such an import fails in the tests as it would for a user.
"""
import os
import sys
from pathlib import Path

# no detached background builds of the ahead-of-time kernels from the command lines the tests run
# (hwmodels/aot.py); tests/hwmodels/test_aot.py builds it in the foreground
os.environ["LLMSIM_AOT_BUILD"] = "0"

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]
