"""An FP8 KV cache halves what attention streams, not its compute time (hwmodels/costmodel.py
``attention_compute_dtype``: measured on H100, benchmarks/bench_dtype_ratio.py --attention)."""
import pytest

import llmsim
from llmsim.hwmodels.costmodel import attention_compute_dtype
from llmsim.hwmodels.devices import get_device


@pytest.mark.parametrize("device", ["h100", "l40s", "b200"])
def test_fp8_kv_attention_is_priced_from_the_16_bit_peak(device):
    dev = get_device(device)
    assert dev.supports("fp8") and dev.peak_flops("fp8") > dev.peak_flops("bf16")
    dep = llmsim.deployment("llama-3.1-8b", device, tp=1, kv_dtype="fp8")
    attn = [i for i, name in enumerate(dep.op_names) if name.startswith("attn_")]
    assert attn and all(dep._dev[i][0] == dev.peak_flops(attention_compute_dtype(dev, "fp8")) == dev.peak_flops("bf16")
                        for i in attn)


@pytest.mark.parametrize("device", ["h100", "l40s"])
def test_compute_bound_prefill_attention_is_not_twice_as_fast_with_an_fp8_kv_cache(device):
    # 16k-token prefill: compute-bound, where the measured H100 FP8/BF16 time ratio is 0.98-1.05; the L40S
    # (Ada, no measured FP8 attention) was priced 0.47x from its FP8 peak
    t = {kv: llmsim.predict_iteration(llmsim.deployment("llama-3.1-8b", device, tp=1, kv_dtype=kv),
                                      prefill_tokens=[16384]).breakdown["attn_prefill"] for kv in ("bf16", "fp8")}
    assert 0.85 < t["fp8"] / t["bf16"] < 1.25
