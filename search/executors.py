"""Where candidates are evaluated: in this process, a local process pool, or a Ray cluster.

Every executor maps a module-level function over tasks and yields ``(index, result)`` as each
completes; callers order by index, so every executor gives the same results in the same order.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from llmsim.workloads.errors import ConfigError

__all__ = ["EXECUTORS", "run_tasks"]

EXECUTORS = ("local", "ray")


def run_tasks(fn: Callable, tasks: Sequence, *, executor: str = "local", workers: int | None = None,
              ray_address: str | None = None) -> Iterator[tuple[int, object]]:
    """``(i, fn(tasks[i]))`` for every task, as they complete. ``local``: a process pool of
    ``workers`` (default all cores; 1 or a single task: this process); ``ray``: Ray remote tasks
    (``ray_address``: an existing cluster, default a local ``ray.init()``)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        yield from _ray(fn, tasks, ray_address)
        return
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ConfigError(f"workers must be >= 1, got {n}")
    if n == 1 or len(tasks) <= 1:
        for i, t in enumerate(tasks):
            yield i, fn(t)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(n, len(tasks)), mp_context=mp.get_context("fork")) as pool:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for f in as_completed(futures):
            yield futures[f], f.result()


def _ray(fn: Callable, tasks: Sequence, address: str | None) -> Iterator[tuple[int, object]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'llmsim[ray]' (or pip install ray), "
                          "or use --executor local") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False) if address else ray.init(ignore_reinit_error=True, log_to_driver=False,
                                                                   include_dashboard=False)
    remote = ray.remote(fn)
    refs = {remote.remote(t): i for i, t in enumerate(tasks)}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for r in done:
            yield refs[r], ray.get(r)
