"""Extract XLA's GEMM performance table (proto xla.GemmPerfTable, OpenXLA's
xla/backends/gpu/cost_model/matmul_interpolator_data.h, Apache-2.0) from the text `strings` prints of the
CUDA PJRT plugin it is compiled into, and write it as aiconfigurator-style GEMM tables (the columns
validation/loaders.py reads): one parquet per GPU, b = 1 rows, bf16 and fp8 (e4m3 x e4m3).

    pip download --no-deps jax-cuda12-pjrt==0.12.0.1 && unzip -q jax_cuda12_pjrt-*.whl
    strings -n 8 jax_plugins/xla_cuda12/xla_cuda_plugin.so > strings.txt
    python validation/data/heldout/xla_gemm/extract.py strings.txt validation/data/heldout/xla_gemm

Each row's time is 2 b m n k / FLOP/s, the table's figure (the FLOP/s of one batched matmul).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

DEVICES = {"sm_100_B200": "NVIDIA B200", "sm_90": "NVIDIA H100 80GB HBM3"}  # sm_107 (Rubin): not in the catalogue
DTYPES = {"bf16xbf16->bf16": "bfloat16", "f8e4m3fnxf8e4m3fn->bf16": "fp8"}
FIELD = re.compile(r"^\s*(b|m|n|k): (\d+)\s*$")
FLOPS = re.compile(r'^\s*flops \{ key: "([^"]+)" value: (\d+) \}\s*$')
KEY = re.compile(r'^\s*key: "(sm_[0-9A-Za-z_]+)"\s*$')


def parse(lines):
    start = next(i for i, ln in enumerate(lines) if "proto-message: xla.GemmPerfTable" in ln)
    rows, arch, cur = [], None, {}
    for ln in lines[start + 1:]:
        if ln.strip() in ("entries {", "value {"):
            if ln.strip() == "entries {":
                cur = {}
            continue
        if m := KEY.match(ln):
            arch = m.group(1)
            continue
        if m := FIELD.match(ln):
            cur[m.group(1)] = int(m.group(2))
            continue
        if m := FLOPS.match(ln):
            rows.append({"arch": arch, **cur, "dtype": m.group(1), "flops_per_s": int(m.group(2))})
            continue
        break  # the table ends where the lines stop being its fields
    return pd.DataFrame(rows)


def main(strings_txt: str, out_dir: str) -> None:
    t = parse(Path(strings_txt).read_text(errors="replace").splitlines())
    t = t[(t["b"] == 1) & t["arch"].isin(DEVICES) & t["dtype"].isin(DTYPES)]
    # sm_90's fp8 rows reach up to 2.42 PFLOP/s at 4096^3, above the H100's 1.98 PFLOP/s dense fp8 peak
    # (datasheet): not kernel times of that GPU, so not copied
    t = t[~((t["arch"] == "sm_90") & (t["dtype"] == "f8e4m3fnxf8e4m3fn->bf16"))]
    for arch, g in t.groupby("arch"):
        out = pd.DataFrame({
            "framework": "xla-gemm-perf-table", "version": "jax-cuda12-pjrt 0.12.0.1", "device": DEVICES[arch],
            "op_name": "gemm", "kernel_source": "xla", "gemm_dtype": g["dtype"].map(DTYPES).to_numpy(),
            "m": g["m"].to_numpy(), "n": g["n"].to_numpy(), "k": g["k"].to_numpy(),
            "latency": (2.0 * g["b"] * g["m"] * g["n"] * g["k"] / g["flops_per_s"] * 1e3).to_numpy(),  # ms
        }).sort_values(["gemm_dtype", "m", "n", "k"], kind="stable")
        dest = Path(out_dir) / f"gemm_perf_{arch.lower()}.parquet"
        out.to_parquet(dest, index=False)
        print(f"{dest}: {len(out)} rows ({', '.join(f'{d} {c}' for d, c in out['gemm_dtype'].value_counts().sort_index().items())})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
