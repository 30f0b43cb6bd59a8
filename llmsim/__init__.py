"""llmsim: simulate serving large language models on heterogeneous hardware.

The front door. The library lives in five subpackages, layered bottom-up:

* :mod:`llmsim.workloads`  what runs (models, quantization, operators, request traces, errors)
* :mod:`llmsim.hwmodels`   what it costs (devices, efficiency, calibration, deployments, clusters)
* :mod:`llmsim.sim`        time (event kernel, replicas, schedulers, KV blocks, metrics, the CLI)
* :mod:`llmsim.search`     choices (layer split; plan search to come)
* :mod:`llmsim.validation` measured data and everything that reads it

The front door itself (:mod:`llmsim.api`)::

    import llmsim
    result = llmsim.simulate(llmsim.Scenario(model="llama-3.1-8b", device="h100", workload="azure-code",
                                             num_requests=200))
    result.metrics.ttft_p99_s

Nothing is imported here until it is used (``import llmsim.validation.profiler`` must work with the
standard library alone): the names below load on first access.
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = ("Scenario", "Built", "Result", "Metrics", "build", "simulate", "deployment", "predict_iteration",
        "IterationBatch", "IterationPrediction")
_SIMULATION = ("Simulation", "Request", "SimState", "ReplicaState", "Snapshot")
_ERRORS = ("LLMSimError", "ConfigError", "PlanError", "OutOfMemoryError", "UnknownNameError", "TraceError",
           "MissingDataError")
__all__ = [*_API, *_SIMULATION, *_ERRORS]


def __getattr__(name: str):
    if name in _API:
        from llmsim import api

        value = getattr(api, name)
    elif name in _SIMULATION:
        from llmsim import simulation

        value = getattr(simulation, name)
    elif name in _ERRORS:
        from llmsim.workloads import errors

        value = getattr(errors, name)
    else:
        raise AttributeError(f"module 'llmsim' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
