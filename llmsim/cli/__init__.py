"""The ``simulate`` command line: one parser, one module per group of subcommands.

``run`` (run.py), ``train`` (train.py), ``validate`` and ``calibrate`` (validate.py), ``profile``
(profile.py), ``list KIND`` and its short forms ``models``, ``devices``, ``clusters`` and ``engines``
(catalog.py), ``fit-engine`` and ``fit-network`` (fit.py), ``search`` (search.py), ``size`` (size.py);
checks before a run in checks.py.
Subcommands import their machinery lazily so `simulate --help` stays instant. Every expected failure
(an ``LLMSimError``: unknown name, malformed file, impossible plan) prints one line to stderr and
exits with status 2 (an unknown name with the known ones or the command listing them); Ctrl-C
prints one line and exits with 130; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import gc
import sys

from llmsim.cli import codecache
from llmsim.workloads import jitcache

codecache.install()  # before any dataclass of a command is defined
jitcache.skip_blas_probe()  # this process runs only llmsim's kernels
jitcache.lean_cache_loads()

from llmsim.cli.run import RUN_FLAGS, run_config  # noqa: E402

__all__ = ["RUN_FLAGS", "build_parser", "main", "run_config"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``simulate`` parser; with ``command="run"`` only that subcommand (a run's start-up does
    not import the other commands' modules)."""
    from llmsim.cli import run

    from llmsim import __version__

    p = argparse.ArgumentParser(prog="simulate", description="Simulate and validate LLM serving on heterogeneous hardware.",
                                epilog="`simulate COMMAND --help` describes a command, its flags and their defaults, "
                                       "with examples.")
    p.add_argument("--version", action="version", version=f"simulate (llmsim) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    if command == "run":
        run.add_parser(sub)
        return p
    from llmsim.cli import catalog, config_cmd, fit, profile, search, size, train, validate

    validate.add_parsers(sub)
    run.add_parser(sub)
    catalog.add_parsers(sub)
    train.add_parser(sub)
    profile.add_parser(sub)
    fit.add_parsers(sub)
    search.add_parser(sub)
    size.add_parser(sub)
    config_cmd.add_parser(sub)
    for name, text in EXAMPLES.items():
        if name in sub.choices and not sub.choices[name].epilog:
            sub.choices[name].epilog = "examples:\n" + text
            sub.choices[name].formatter_class = argparse.RawDescriptionHelpFormatter
    return p


#: examples shown under each subcommand's --help (run and list carry their own)
EXAMPLES = {
    "validate": "  simulate validate --split test                  # the shipped kernel data, held-out rows\n"
                "  simulate validate validation/data/serving/apex_vllm_h100/measured.csv --json\n"
                "  simulate validate --format llmservingsim validation/data/serving/llmservingsim_vllm019\n",
    "calibrate": "  simulate calibrate my_measurements/ --holdout-fraction 0.2 --out mine.json\n"
                 "  simulate run --profile mine.json ...\n",
    "train": "  simulate train                                  # GPT-7.5B on holmes-ib-roce (tp 4, pp 2)\n"
             "  simulate train --placement both --json\n"
             "  simulate train --model llama-3.1-8b --cluster dgx-h100 --tp 2 --pp 1\n",
    "profile": "  simulate profile --device-name my-gpu --out measured/ --quick\n",
    "fit-kernels": "  simulate fit-kernels --default                  # refit the shipped profile (minutes)\n"
                   "  simulate fit-kernels DATA... --out mine.json\n",
    "fit-engine": "  simulate fit-engine llmservingsim validation/data/serving/llmservingsim_vllm019\n",
    "fit-network": "  simulate fit-network                            # the fit and its held-out table\n",
    "models": "  simulate models --json\n", "devices": "  simulate devices\n",
    "clusters": "  simulate clusters\n", "engines": "  simulate engines --json\n",
}


def main(argv: list[str] | None = None) -> int:
    # Start-up allocates long-lived objects (modules, classes, catalogue entries, the trace), which
    # the cyclic collector would scan again and again for nothing: it is off until the command starts
    # its work (start_work; `run` calls it once the run is built) and as it was when main returns.
    # As the process's own command line (argv None) the objects are left frozen for the exit, whose
    # final collection then has nothing to scan; called with argv (tests, scripts) they are not.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if argv is None:
            gc.freeze()
        else:
            gc.unfreeze()
        (gc.enable if collecting else gc.disable)()
        codecache.save()
        if argv is None and jitcache.compiled():
            from llmsim.hwmodels import aot

            aot.build_in_background()  # so the next run starts without numba (hwmodels/aot.py)


def start_work() -> None:
    """Before a command's main loop: what start-up allocated is set aside for good (``gc.freeze``)
    and the cyclic collector runs again, on what the work allocates."""
    gc.freeze()
    gc.enable()


def _main(argv: list[str] | None) -> int:
    from llmsim.workloads.errors import LLMSimError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    if not getattr(args, "starts_work", False):
        start_work()
    try:
        return int(args.func(args) or 0)
    except LLMSimError as e:
        from llmsim.cli.progress import prefix

        print(f"{prefix(args.command, 'error')} {e}{_known_names(e)}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except SystemError as e:  # numba re-raises a Ctrl-C inside compiled code as a SystemError
        if isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
            return _interrupted(args.command)
        raise


def _interrupted(command: str) -> int:
    print(f"simulate {command}: interrupted", file=sys.stderr)
    return 130


#: kind of an unknown name -> the `simulate list` kind naming the known ones
_LIST_OF = {"model": "models", "device": "devices", "cluster": "clusters", "engine": "engines", "KV-cache dtype": "formats",
            "quant format": "formats", "quantization format": "formats", "workload": "workloads",
            "scheduler": "schedulers", "router": "routers"}


def _known_names(e) -> str:
    """For an unknown name without close matches: the known names (up to 12) and where to list them."""
    from llmsim.workloads.errors import UnknownNameError

    if not isinstance(e, UnknownNameError) or e.suggestions:
        return ""
    kind = _LIST_OF.get(e.kind)
    if kind is None:
        return ""
    from llmsim.cli.catalog import names_of

    try:
        names = names_of(kind)
    except Exception:  # a listing that fails must not hide the error being reported
        names = ()
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"; known: {shown} (simulate list {kind})" if names else f" (simulate list {kind})"
