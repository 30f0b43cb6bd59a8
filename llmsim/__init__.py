"""llmsim: simulate serving large language models on heterogeneous hardware.

The front door. The library lives in five subpackages, layered bottom-up:

* :mod:`llmsim.workloads`  what runs (models, quantization, operators, request traces, errors)
* :mod:`llmsim.hwmodels`   what it costs (devices, efficiency, calibration, deployments, clusters)
* :mod:`llmsim.sim`        time (event kernel, replicas, schedulers, KV blocks, metrics, the CLI)
* :mod:`llmsim.search`     choices (layer split; plan search to come)
* :mod:`llmsim.validation` measured data and everything that reads it

Nothing heavy is imported here (``import llmsim.validation.profiler`` must work with the standard
library alone); the names below load on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__: list[str] = []
