"""Held-out accuracy of collectives: the kernel-calibrated ``collective`` class against the alpha-beta
model that prices every collective of a deployment (validation/network.py collective_paths_report).

    python benchmarks/bench_collective_paths.py [--split test|train|all] [--json]
"""
from __future__ import annotations

import argparse
import json

from llmsim.validation import network as nw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=["test", "train", "all"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rep = nw.collective_paths_report(nw._shipped_table(), split=args.split)
    print(json.dumps(rep, indent=1) if args.json else nw.format_paths_table(rep))


if __name__ == "__main__":
    main()
