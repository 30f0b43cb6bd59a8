"""The settings of `simulate train` (:class:`TrainRunConfig`) and their YAML file.

A YAML file gives any of the keys of :class:`TrainRunConfig` (strict: unknown keys are errors);
overrides (the command line's flags) go on top. ``search.partition.simulate_config`` turns one into a
training step.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields

from llmsim.workloads.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TrainRunConfig:
    """``cluster`` a built-in name or a YAML (``num_nodes`` replicates a one-group cluster);
    ``placement`` nic-aware | naive | both (prints the two side by side); ``layer_split`` a list of
    layers per stage or ``auto`` (sized to each stage's speed; even for naive)."""

    model: str = "gpt-7.5b"
    cluster: str = "holmes-ib-roce"
    num_nodes: int | None = None
    tp: int = 4
    pp: int = 2
    dp: int | None = None
    ep: int = 1
    placement: str = "nic-aware"
    layer_split: object = "auto"
    global_batch: int = 512
    micro_batch: int = 4
    seq_len: int | None = 2048
    recompute: str = "full"
    grad_bytes: float = 4.0
    overlap_grad_reduce: bool = False
    distributed_optimizer: bool = False
    json: bool = False

    def __post_init__(self) -> None:
        if self.placement not in ("nic-aware", "naive", "both"):
            raise ConfigError(f"`placement` must be nic-aware, naive or both, got {self.placement!r}")
        ls = self.layer_split
        if not (ls == "auto" or ls is None or (isinstance(ls, (list, tuple)) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in ls))):
            raise ConfigError(f"`layer_split` must be 'auto' or a list of layer counts, got {ls!r}")


def load_train_config(path: str | None, overrides: dict) -> TrainRunConfig:
    """The YAML file at ``path`` (if any) as a TrainRunConfig, ``overrides`` (None = unset) on top."""
    data = {}
    if path:
        from llmsim.workloads.yamlio import read_yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = read_yaml(fh.read(), path) or {}
        except OSError as e:
            raise ConfigError(f"cannot read train config {path!r}: {e.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of train settings")
    names = [f.name for f in fields(TrainRunConfig)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; allowed keys: {', '.join(names)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainRunConfig(**data)
    except TypeError as e:
        raise ConfigError(f"train config: {e}") from None
