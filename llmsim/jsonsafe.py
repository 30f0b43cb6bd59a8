"""One JSON conversion for the API and the command line (standard library only, so a run's
``--json`` does not import the API to print its summary)."""
from __future__ import annotations

import math
from collections.abc import Mapping


def json_safe(obj):
    """``obj`` with mappings as dicts of string keys, tuples as lists, numpy scalars and arrays as
    Python values, and non-finite floats as ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return json_safe(obj.item())
    return obj
