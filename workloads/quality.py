"""Expected quality loss of each quantization format (``workloads/data/quality_loss.yaml``).

The loss is the fraction of average benchmark accuracy a format loses against its bf16 model
(0.01 = a 1 % relative drop), each figure with its source. A format without an entry has an
unknown loss: :func:`quality_loss` raises ConfigError naming the formats that have one.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources

from llmsim.workloads.errors import ConfigError
from llmsim.workloads.yamlio import check_fields, read_yaml

__all__ = ["QualityLoss", "quality_loss", "quality_table"]


@dataclass(frozen=True)
class QualityLoss:
    """``loss``: fraction of accuracy lost vs bf16 (0..1); ``source``: where the figure comes from."""

    format: str
    loss: float
    source: str


@functools.lru_cache(maxsize=1)
def quality_table() -> dict[str, QualityLoss]:
    """Format name -> its expected loss."""
    where = "workloads/data/quality_loss.yaml"
    text = resources.files("llmsim.workloads").joinpath("data/quality_loss.yaml").read_text(encoding="utf-8")
    data = check_fields(read_yaml(text, where), where, required=("schema_version", "formats"))
    out = {}
    for name, entry in data["formats"].items():
        e = check_fields(entry, f"{where}: {name}", required=("loss", "source"))
        loss = e["loss"]
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not (0 <= loss <= 1) or not math.isfinite(loss):
            raise ConfigError(f"{where}: {name}: `loss` must be a fraction in [0, 1], got {loss!r}")
        out[str(name)] = QualityLoss(str(name), float(loss), str(e["source"]))
    return out


def quality_loss(fmt: str) -> float:
    """The expected quality loss of the weight format ``fmt`` (a name or alias)."""
    from llmsim.workloads.quant import get_quant_format

    name = get_quant_format(fmt).name
    table = quality_table()
    if name not in table:
        raise ConfigError(f"no expected quality loss for format {name!r}; formats with one: {', '.join(table)}")
    return table[name].loss
