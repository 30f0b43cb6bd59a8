"""Iteration-level discrete-event simulation of LLM serving.

Reading guide -- read these three first:

1. ``sim/kernel.py``  the event loop: a clock in seconds and a heap of ``(time, priority, seq,
   callback, arg)``; the named priorities fix the order of same-time events.
2. ``sim/replica.py`` one replica's iteration loop: scheduler -> KV allocation -> cost model -> one
   event at the iteration's end (or one per run of identical decode iterations).
3. ``sim/schedulers.py`` the batch policies behind a one-method interface, and their contract.

Then: ``sim/request.py`` (token accounting), ``sim/kv.py`` (paged KV blocks), ``sim/costs.py`` (the
``IterationCostModel`` protocol a cost model implements, and ``ToyCost``), ``sim/cluster.py`` (routers
and the ``simulate`` entry point), ``sim/disagg.py`` (prefill/decode pools and the KV hand-over),
``sim/metrics.py`` (TTFT/TPOT/goodput/energy), ``sim/trace.py`` (Perfetto trace). Request sources
live in ``workloads/traces.py``.

The run side of the ``simulate`` command line (``llmsim/cli/``):
``sim/config.py`` (the frozen run-config tree and its strict YAML), ``sim/runner.py`` (config ->
``llmsim.hwmodels.deployment.Deployment`` cost models, KV capacity, swap space, requests -> run),
``sim/report.py`` (self-contained plotly HTML). Only these run-side modules import
``hwmodels/``; the kernel, replicas, schedulers, cluster and disaggregation do not.

Quick start::

    from llmsim.sim.cluster import simulate
    from llmsim.sim.costs import ToyCost
    from llmsim.sim.replica import ReplicaConfig
    from llmsim.sim.schedulers import SchedulerConfig
    from llmsim.workloads.traces import load_workload

    result = simulate(load_workload("azure-conv"),
                      ReplicaConfig(kv_capacity_tokens=1_300_000, scheduler=SchedulerConfig(policy="sarathi")),
                      ToyCost.llama2_70b_tp8_h100(), num_replicas=4, router="least-outstanding")
    print(result.to_json())
"""
