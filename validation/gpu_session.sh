#!/usr/bin/env bash
# One GPU session's measurements in one call, sized for a short lease (about 5 minutes on one H100/H200):
#   1. the card's two ceilings (device-to-device copy, a large bf16 matrix product), for the record;
#   2. `--quick` on every operator family (the README's validation sweep);
#   3. a broad sample: up to 300 cases per family drawn over the full grid of seven models with
#      different head layouts (head dims 64, 80, 128; MHA and GQA);
#   4. the quick bf16 GEMMs again with the L2 flushed before every call (the L2 effect, measured).
# Needs only python3 with torch, numpy, pandas, pyarrow and pyyaml (no install of this package).
#
#   OUT=/some/folder bash validation/gpu_session.sh [catalogue-device-name]
#
# Writes $OUT/session.log, $OUT/ceilings.json and $OUT/measured.tar.gz (the profile folders quick/,
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

say "ceilings"
"$PY" - "$OUT/ceilings.json" <<'EOF' 2>&1 | tee -a "$log"
import json, sys, torch
dev = torch.device("cuda", 0)
p = torch.cuda.get_device_properties(dev)
def timed(fn, n):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(n):
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3)
    ts.sort()
    return ts[len(ts) // 2]
src = torch.randn(2 ** 30, device=dev, dtype=torch.float32)        # 4 GiB
dst = torch.empty_like(src)
t_copy = timed(lambda: dst.copy_(src), 10)
x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
y = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
t_mm = timed(lambda: x @ y, 10)
out = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__, "cuda": torch.version.cuda,
       "multiprocessors": p.multi_processor_count, "l2_cache_bytes": getattr(p, "L2_cache_size", None),
       "memory_bytes": p.total_memory,
       "copy_bytes_per_s": 2 * src.numel() * 4 / t_copy,
       "copy_method": "dst.copy_(src) of 4 GiB fp32, bytes read + written over the median of 10 (CUDA events)",
       "bf16_matmul_flops_per_s": 2 * 8192 ** 3 / t_mm,
       "bf16_matmul_method": "8192^3 bf16 x @ y on random normal data, median of 10 after 3 warm-ups"}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
EOF

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
