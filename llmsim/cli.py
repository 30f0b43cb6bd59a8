"""The ``simulate`` console script: the command line of :mod:`llmsim.sim.cli`."""
from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from llmsim.sim.cli import main as _main

    return _main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
