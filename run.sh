#!/usr/bin/env bash
# Set up (a virtual environment with the package) and run the main job on built-in defaults:
# validate the calibrated cost model against the shipped measured kernel runs.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/simulate validate --split test "$@"
