#!/usr/bin/env bash
# One GPU session's measurements in one call, sized for a short lease (about 5 minutes on one H100/H200):
#   1. `--quick` on every operator family (the README's validation sweep);
#   2. a broad sample: up to 300 cases per family drawn over the full grid of seven models with
#      different head layouts (head dims 64, 80, 128; MHA and GQA);
#   3. the quick bf16 GEMMs again with the L2 flushed before every call (the L2 effect, measured).
# Needs only python3 with torch, numpy, pandas, pyarrow and pyyaml (no install of this package).
#
#   OUT=/some/folder bash validation/gpu_session.sh [catalogue-device-name]
#
# Each profile records the card's measured ceilings (copy bandwidth, a large bf16 matrix product) in its
# environment.json. Writes $OUT/session.log and $OUT/measured.tar.gz (the profile folders quick/,
# broad/ and quick_flush_l2/, each as `simulate profile` writes them). Unpack the tarball under
# validation/data/measured/<device>/ and run `simulate validate` on each folder.
set -u
OUT=${OUT:-/tmp/llmsim-gpu-session}
DEVICE=${1:-gpu}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/work"
cd "$(dirname "$0")/.."
log="$OUT/session.log"
say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

say "nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu,pstate \
  --format=csv 2>&1 | tee -a "$log"

say "quick sweep"
"$PY" validation/profiler.py --device-name "$DEVICE" --out "$OUT/work/quick" --quick --max-seconds 120 2>&1 | tee -a "$log"

say "broad sample"
"$PY" validation/profiler.py --device-name "$DEVICE" --out "$OUT/work/broad" --ops gemm,attention \
  --models llama-3.1-8b,llama-3.1-70b,qwen3-32b,mistral-7b,gpt-oss-20b,gemma-3-27b,phi-2 \
  --max-cases 300 --seed 0 --max-seconds 120 2>&1 | tee -a "$log"

say "quick bf16 GEMMs with the L2 flushed"
"$PY" validation/profiler.py --device-name "$DEVICE" --out "$OUT/work/quick_flush_l2" --quick --ops gemm \
  --no-fp8 --flush-l2 --max-seconds 45 2>&1 | tee -a "$log"

say "nvidia-smi after"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu,pstate --format=csv 2>&1 | tee -a "$log"
tar -C "$OUT/work" -czf "$OUT/measured.tar.gz" . && rm -rf "$OUT/work"
say "done"
