#!/usr/bin/env bash
# Usage: bash .ci/check_outputs.sh OUTDIR   (from the repository root, after test.sh made .venv)
# Writes the README/docs scenario outputs, one file each, for byte-identity comparison (diff -r A B).
set -u
out=${1:?outdir}; mkdir -p "$out"; S=.venv/bin/simulate
$S run --json > "$out/run_default.json" 2>&1
for f in docs/examples/*.yaml; do $S run "$f" --json > "$out/run_$(basename "$f" .yaml).json" 2>&1; done
$S train --json > "$out/train.json" 2>&1
$S train --placement both --json > "$out/train_both.json" 2>&1
for f in docs/examples/train/*.yaml; do [ -f "$f" ] && $S train "$f" --json > "$out/train_$(basename "$f" .yaml).json" 2>&1; done
$S validate --split test --json > "$out/validate_kernels.json" 2>&1
$S validate validation/data/serving/splitwise/perf_model.csv --split test --json > "$out/validate_splitwise.json" 2>&1
$S validate validation/data/serving/apex_vllm_h100/measured.csv --json > "$out/validate_apex.json" 2>&1
$S validate --format llmservingsim validation/data/serving/llmservingsim_vllm019 --json > "$out/validate_lss.json" 2>&1
$S validate validation/data/published/paper_figures.csv --format published --json > "$out/validate_published.json" 2>&1
$S run --model llama-3.1-8b --device h100 --workload azure-code --num-requests 300 --json > "$out/run_code.json" 2>&1
echo "wrote $(ls "$out" | wc -l) files to $out"
