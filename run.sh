#!/usr/bin/env bash
# Set up (a virtual environment with the package) and run the main job on built-in defaults:
# simulate serving the first 1,000 requests of the Azure conversation trace with Llama-2-70B on
# 8x H100 (TP8, the vLLM V1 engine profile at its newest defaults) and print the latency, throughput and energy metrics.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
# the simulator's two entry kernels, compiled ahead of time once (hwmodels/aot.py): runs then start
# without numba; without a C compiler runs compile with numba as before
.venv/bin/python -m llmsim.hwmodels.aot || true
exec .venv/bin/simulate run "$@"
