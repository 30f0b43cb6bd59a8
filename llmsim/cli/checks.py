"""Checks the command line makes before it spends time: output paths that could not be written,
and settings that run but deserve a one-line warning on stderr."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from llmsim.workloads.errors import ConfigError

#: Block sizes vLLM's CUDA attention backends accept (``--block-size`` choices of vLLM 0.6 to 0.11) [S].
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128)


def check_output_path(flag: str, path: str | None, suffixes: tuple[str, ...] = ()) -> None:
    """``ConfigError`` unless ``path`` (given as ``--flag``) can be written: not a folder, its folder
    exists and is writable, and its suffix one of ``suffixes`` (when given)."""
    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--{flag} {path}: is a folder; name a file in it, e.g. {p / ('out' + (suffixes or ('',))[0])}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"--{flag} {path}: folder {parent} does not exist; create it first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--{flag} {path}: folder {parent} is not writable; choose another folder")
    if suffixes and p.suffix not in suffixes:
        raise ConfigError(f"--{flag} {path}: must end in {' or '.join(suffixes)}")


def check_outputs(cfg) -> None:
    """The run config's output files, checked before the simulation starts."""
    o = cfg.output
    check_output_path("out", o.out, (".csv", ".parquet", ".pq"))
    check_output_path("report", o.report)
    check_output_path("chrome-trace", o.chrome_trace)


def warn(command: str, message: str) -> None:
    """One warning line on stderr."""
    from llmsim.cli.progress import prefix

    print(f"{prefix(command, 'warning')} {message}", file=sys.stderr)


def run_warnings(cfg) -> list[str]:
    """Warnings about a run config that runs but may not mean what was meant."""
    from llmsim.hwmodels.backend import kernel_calibrated
    from llmsim.hwmodels.calibration import default_profile, load_profile
    from llmsim.hwmodels.devices import get_device
    from llmsim.sim.config import DEFAULT_DEVICE

    out = []
    bs = cfg.serving.block_size
    if bs not in VLLM_BLOCK_SIZES:
        out.append(f"block size {bs} is not one vLLM accepts ({', '.join(map(str, VLLM_BLOCK_SIZES))}); the run "
                   "models an engine with {bs}-token KV blocks".replace("{bs}", str(bs)))
    profile = load_profile(cfg.deployment.profile) if cfg.deployment.profile else default_profile()
    devices = set()
    if cfg.deployment.device or not cfg.deployment.cluster:
        devices.add(cfg.deployment.device or DEFAULT_DEVICE)
    if cfg.disagg is not None:
        devices |= {p.device for p in (cfg.disagg.prefill, cfg.disagg.decode) if p.device}
    for name in sorted(devices):
        spec = get_device(name)
        if kernel_calibrated(spec.family) and spec.arch_class not in profile.params:
            out.append(f"{spec.name} ({spec.arch_class}) has no kernel calibration of its own; its costs are "
                       f"extrapolated from the generic fit over the measured GPUs (see docs/concepts.md)")
    return out
