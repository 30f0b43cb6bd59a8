"""Optional dependencies: imported where used, with a one-line error naming the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from llmsim.workloads.errors import ConfigError

#: The extra of ``pyproject.toml`` that brings each optional top-level package.
EXTRAS = {"plotly": "report", "scipy": "calibrate"}


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or a :class:`ConfigError` saying ``purpose`` needs it and which extra to install."""
    top = module.split(".", 1)[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs {top}: pip install 'llmsim[{EXTRAS[top]}]'") from None
