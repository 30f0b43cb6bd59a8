"""The ``simulate`` command line: one parser, one module per group of subcommands.

``run`` (run.py), ``train`` (train.py), ``validate`` and ``calibrate`` (validate.py), ``profile``
(profile.py), ``models``, ``devices``, ``clusters`` and ``engines``
(catalog.py), ``fit-engine`` and ``fit-network`` (fit.py). Subcommands import their machinery lazily
so `simulate --help` stays instant. Every expected failure (an ``LLMSimError``: unknown name,
malformed file, impossible plan) prints one line to stderr and exits with status 2; anything else is
a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys

from llmsim.cli.run import RUN_FLAGS, run_config

__all__ = ["RUN_FLAGS", "build_parser", "main", "run_config"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``simulate`` parser; with ``command="run"`` only that subcommand (a run's start-up does
    not import the other commands' modules)."""
    from llmsim.cli import run

    p = argparse.ArgumentParser(prog="simulate", description="Simulate and validate LLM serving on heterogeneous hardware.")
    sub = p.add_subparsers(dest="command", required=True)
    if command == "run":
        run.add_parser(sub)
        return p
    from llmsim.cli import catalog, fit, profile, train, validate

    validate.add_parsers(sub)
    run.add_parser(sub)
    catalog.add_parsers(sub)
    train.add_parser(sub)
    profile.add_parser(sub)
    fit.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from llmsim.workloads.errors import LLMSimError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LLMSimError as e:
        print(f"simulate {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
