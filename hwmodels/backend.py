"""Cost backends: how a device family prices a deployment, chosen by ``DeviceSpec.family``.

A backend is a callable ``backend(model, device, **kw) -> ReplicaCost`` taking the runner's keywords
(``quant``, ``kv_dtype``, ``tp``, ``ep``, ``pp``, ``engine``, ``overhead_s``, ``profile``,
``layer_split``, ``network``, ``max_num_seqs``, ``max_num_batched_tokens``, ``dp_ep``; a backend may
reject the ones it cannot honour with ConfigError). The runner builds every replica, and training
(sim/training.py, engine ``megatron``) every stage's micro-batch model, through
:func:`make_deployment`::

    dep = make_deployment("llama-3.1-8b", "h100", tp=1)   # -> hwmodels.deployment.Deployment
    t_s, e_j = dep.iteration(prefill_lens, prefill_offsets, decode_ctx)

The built-in families (``gpu``, ``fpga``, ``rdu``, ``accelerator``) all use the kernel-calibrated
:class:`~llmsim.hwmodels.deployment.Deployment` until a family registers its own model.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from llmsim.hwmodels.devices import FAMILIES, DeviceSpec, get_device, register_family
from llmsim.hwmodels.layout import DeploymentLayout
from llmsim.workloads.errors import ConfigError

__all__ = ["ReplicaCost", "CostBackend", "register_backend", "unregister_backend", "registered_backends",
           "get_backend", "kernel_calibrated", "make_deployment"]


@runtime_checkable
class ReplicaCost(Protocol):
    """What the simulator and the runner read from one replica's cost model.

    ``layout`` is what the replica is (plan, formats, memory per tier: a
    :class:`~llmsim.hwmodels.layout.DeploymentLayout`, computed once); the runner sizes KV cache,
    swap space and swap speed from it alone. ``iteration``/``cost`` are how it is priced: the
    simulator's cost protocol (llmsim.sim.costs.IterationCostModel; seconds and joules of one
    iteration on all the replica's devices); ``decode_run`` is optional. ``model``/``device``/
    ``quant``/``kv``/``engine`` are the resolved catalogue objects (ModelSpec, DeviceSpec,
    QuantFormat, KVCacheFormat, EngineProfile).
    """

    model: Any
    device: DeviceSpec
    quant: Any
    kv: Any
    engine: Any
    tp: int
    pp: int
    ep: int
    layout: DeploymentLayout

    def iteration(self, prefill_lens: np.ndarray, prefill_offsets: np.ndarray,
                  decode_ctx: np.ndarray) -> tuple[float, float]: ...

    def cost(self, prefill_lens, prefill_offsets, decode_ctx) -> Any:
        """``iteration`` as an IterationCost with a per-operator breakdown (seconds)."""
        ...


CostBackend = Callable[..., ReplicaCost]

_BACKENDS: dict[str, CostBackend] = {}


def register_backend(family: str, backend: CostBackend, *, replace: bool = False) -> None:
    """Price devices of ``family`` with ``backend`` (a new family becomes a valid ``DeviceSpec.family``).

    A family that already has a backend raises ConfigError unless ``replace``."""
    if not callable(backend):
        raise ConfigError(f"backend for family {family!r} must be callable, got {backend!r}")
    if family in _BACKENDS and not replace:
        raise ConfigError(f"device family {family!r} already has a cost backend; pass replace=True")
    register_family(family)
    _BACKENDS[family] = backend


def unregister_backend(family: str) -> None:
    """Remove the backend of ``family`` (a built-in family gets the GPU backend back)."""
    if family not in _BACKENDS:
        raise ConfigError(f"device family {family!r} has no cost backend; registered: "
                          f"{', '.join(registered_backends())}")
    if family in FAMILIES:
        _BACKENDS[family] = _gpu_backend
    else:
        del _BACKENDS[family]


def registered_backends() -> tuple[str, ...]:
    """Device families that have a cost backend."""
    return tuple(_BACKENDS)


def kernel_calibrated(family: str) -> bool:
    """Whether ``family`` is priced by the kernel-calibrated GPU model (so a device of it without its
    own calibration class is extrapolated); False for a family with its own backend."""
    return _BACKENDS.get(family) is _gpu_backend


def get_backend(family: str) -> CostBackend:
    """The backend of ``family``; an unknown family raises ConfigError naming the registered ones."""
    try:
        return _BACKENDS[family]
    except KeyError:
        raise ConfigError(f"no cost backend for device family {family!r}; registered families: "
                          f"{', '.join(registered_backends())}") from None


def make_deployment(model, device: DeviceSpec | str, **kw) -> ReplicaCost:
    """The cost model of one replica of ``model`` on ``device`` (a spec or catalogue name), built by
    the backend of ``device.family``; ``kw`` as for :class:`~llmsim.hwmodels.deployment.Deployment`."""
    spec = get_device(device)
    return get_backend(spec.family)(model, spec, **kw)


def _gpu_backend(model, device: DeviceSpec, **kw) -> ReplicaCost:
    """The kernel-calibrated GPU model (hwmodels/deployment.py)."""
    from llmsim.hwmodels.deployment import Deployment

    return Deployment(model, device, **kw)


for _family in FAMILIES:
    _BACKENDS[_family] = _gpu_backend

def _fpga_backend(model, device: DeviceSpec, **kw) -> ReplicaCost:
    """The FPGA engines' backend (hwmodels/fpga.py), imported when first used (not on a GPU run's start-up)."""
    from llmsim.hwmodels.fpga import fpga_backend

    return fpga_backend(model, device, **kw)


def _rdu_backend(model, device: DeviceSpec, **kw) -> ReplicaCost:
    """The SN40L RDU's backend (hwmodels/rdu.py), imported when first used."""
    from llmsim.hwmodels.rdu import rdu_backend

    return rdu_backend(model, device, **kw)


register_backend("fpga-engine", _fpga_backend)
register_backend("rdu-dataflow", _rdu_backend)
