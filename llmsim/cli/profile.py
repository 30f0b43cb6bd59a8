"""`simulate profile`: the GPU profiler of :mod:`llmsim.validation.profiler` as a subcommand."""
from __future__ import annotations


def add_parser(sub):
    """Add ``profile`` to a ``simulate`` subparsers object (its func is the profiler's ``run``)."""
    from llmsim.validation import profiler  # light: imports no torch

    p = sub.add_parser("profile", help="time GEMMs, attention and collectives on this machine's GPU",
                       description=profiler.__doc__.splitlines()[0])
    profiler.add_arguments(p)
    p.set_defaults(func=profiler.run)
    return p
