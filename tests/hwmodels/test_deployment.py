"""Contracts of the per-iteration cost query (hwmodels/deployment.py) and its serving-engine model."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.hwmodels.deployment import Deployment, EngineOverhead, EngineProfile, get_engine, list_engines, parse_engines
from llmsim.hwmodels.devices import get_device
from llmsim.workloads.errors import ConfigError, OutOfMemoryError, PlanError, UnknownNameError

E = np.zeros(0, np.int64)


def arr(*xs):
    return np.array(xs, dtype=np.int64)


@pytest.fixture(scope="module")
def h100_tp8():
    return {name: Deployment("llama-2-70b", "h100", tp=8, engine=name) for name in ("kernels", "vllm-0.2", "vllm")}


def test_engine_catalogue_names_and_aliases():
    assert {"kernels", "vllm-0.2", "vllm-0.6", "vllm-v1"} <= set(list_engines())
    assert get_engine("vllm").name == "vllm-v1"  # the newest vLLM profile is the default
    assert get_engine("none").name == "kernels"
    with pytest.raises(UnknownNameError, match="did you mean"):
        get_engine("vlm-v1")
    with pytest.raises(UnknownNameError, match="vllm==<version>"):
        get_engine("sglang==0.4.1")


@pytest.mark.parametrize("name, profile, version", [
    ("vllm==0.15.1", "vllm-v1", "0.15.1"), ("vllm-0.19", "vllm-v1", "0.19"), ("vllm==0.8.0", "vllm-v1", "0.8.0"),
    ("vllm==0.7.3", "vllm-0.6", "0.7.3"), ("vllm 0.6.3", "vllm-0.6", "0.6.3"), ("vllm==0.5.4", "vllm-0.2", "0.5.4"),
])
def test_versions_resolve_to_the_nearest_profile_not_newer(name, profile, version):
    e = get_engine(name)
    assert (e.name, e.version) == (profile, version)


def test_version_defaults_follow_the_release_history():
    old, mid, new = get_engine("vllm==0.8.5"), get_engine("vllm==0.12.0"), get_engine("vllm==0.19.0")
    assert not old.full_decode_graphs and mid.full_decode_graphs  # FULL_AND_PIECEWISE from 0.11
    assert not mid.async_scheduling and new.async_scheduling  # async scheduling default from 0.14
    assert old.large_gpu_max_num_seqs is None and new.large_gpu_max_num_seqs == 1024
    assert get_engine("vllm").version == new.version
    with pytest.raises(ConfigError, match="oldest"):
        get_engine("vllm==0.0.9")


def test_v1_batching_defaults_depend_on_the_device():
    eng = get_engine("vllm==0.15.1")
    assert eng.batching_defaults(get_device("h100")) == (1024, 8192)
    assert eng.batching_defaults(get_device("a100-80gb")) == (256, 2048)  # vLLM excludes the A100
    assert eng.batching_defaults(get_device("l40s")) == (256, 2048)
    assert eng.graph_max_tokens(128, 2048) == 256 and eng.graph_max_tokens(1024, 8192) == 512


def test_v1_async_host_is_hidden_behind_a_long_gpu_step():
    host = EngineOverhead(iteration_s=0.002, per_seq_s=1e-5, sync_s=1e-4, piece_launch_s=1e-5, layer_launch_s=4e-5)
    sync = dataclasses.replace(get_engine("vllm==0.12.0"), hosts={"default": host})
    asyn = dataclasses.replace(get_engine("vllm==0.15.1"), hosts={"default": host})
    bare = Deployment("llama-3.1-8b", "h100", engine=dataclasses.replace(asyn, hosts={}))
    a = Deployment("llama-3.1-8b", "h100", engine=asyn)
    s = Deployment("llama-3.1-8b", "h100", engine=sync)
    g, _ = bare.iteration(arr(2048), arr(0), E)  # eager step, GPU-bound
    assert a.iteration(arr(2048), arr(0), E)[0] == pytest.approx(max(g, 32 * 4e-5, 0.002 + 1e-5) + 1e-4)
    assert s.iteration(arr(2048), arr(0), E)[0] == pytest.approx(max(g, 32 * 4e-5) + 0.002 + 1e-5 + 1e-4)
    ctx = arr(*range(100, 164))
    g_d, _ = bare.iteration(E, E, ctx)
    host_d = 0.002 + 64 * 1e-5
    assert a.iteration(E, E, ctx)[0] == pytest.approx(max(g_d, host_d) + 1e-4)  # full decode graph
    assert s.iteration(E, E, ctx)[0] == pytest.approx(g_d + host_d + 1e-4)
    # a fused decode run prices each step exactly as the step-by-step query
    times, _ = a.decode_run(ctx, 5)
    assert [float(x) for x in times] == [a.iteration(E, E, ctx + k)[0] for k in range(5)]


def test_engine_file_is_strict():
    with pytest.raises(ConfigError, match="unknown key 'cuda_graph'"):
        parse_engines({"schema_version": 1, "engines": {"x": {"cuda_graph": True}}}, "engines.yaml")
    with pytest.raises(ConfigError, match="iteration_s"):
        parse_engines({"schema_version": 1, "engines": {"x": {"hosts": {"default": {"iteration_s": -1}}}}}, "e")


@pytest.mark.parametrize("engine", ["kernels", "vllm-0.2", "vllm"])
def test_decode_run_equals_repeated_iterations_to_the_bit(h100_tp8, engine):
    dep = h100_tp8[engine]
    ctx = arr(5, 100, 2000, 77, 1)
    t, e = dep.decode_run(ctx, 40)
    for k in range(40):
        assert dep.iteration(E, E, ctx + k) == (t[k], e[k])
    big = np.arange(300, dtype=np.int64) + 10  # above vLLM 0.6's largest CUDA graph: eager
    t, e = dep.decode_run(big, 3)
    assert [dep.iteration(E, E, big + k) for k in range(3)] == list(zip(t, e))


def test_empty_batch_costs_nothing(h100_tp8):
    for dep in h100_tp8.values():
        assert dep.iteration(E, E, E) == (0.0, 0.0)
        t, e = dep.decode_run(E, 3)
        assert t.tolist() == [0.0] * 3 and e.tolist() == [0.0] * 3


def test_breakdown_adds_up_to_the_iteration_time(h100_tp8):
    for dep in h100_tp8.values():
        c = dep.cost(arr(300, 40), arr(0, 1000), arr(10, 2000, 3000))
        assert sum(c.breakdown.values()) == pytest.approx(c.time_s, rel=1e-12)
        assert c.energy_j > 0


def test_engine_changes_the_op_table(h100_tp8):
    kernels, old, new = h100_tp8["kernels"], h100_tp8["vllm-0.2"], h100_tp8["vllm"]
    assert "residual_adds" in kernels.op_names and "residual_adds" not in new.op_names  # fused into RMSNorm
    custom = ("allreduce_custom_one_shot", "allreduce_custom_two_shot")  # vLLM's one-shot then two-shot kernels
    assert all(c in new.op_names for c in custom) and not any(c in old.op_names for c in custom)  # NCCL only in 0.2
    assert new.engine.cuda_graphs and not old.engine.cuda_graphs


def test_eager_engine_is_never_faster_than_its_host_can_launch():
    eng = EngineProfile(name="eager-test", cuda_graphs=False, graph_max_batch=0, custom_allreduce=False,
                        hosts={"default": EngineOverhead(iteration_s=0.002, prefill_s=0.003, per_seq_s=1e-4,
                                                         layer_launch_s=5e-4)})
    dep = Deployment("llama-2-70b", "h100", tp=8, engine=eng)
    bare = Deployment("llama-2-70b", "h100", tp=8, engine=dataclasses.replace(eng, hosts={}))
    t, _ = dep.iteration(E, E, arr(100))
    assert t >= (80 * 5e-4 + 0.002 + 1e-4) * (1 - 1e-12)
    g, _ = bare.iteration(arr(4000), arr(0), E)
    tp, _ = dep.iteration(arr(4000), arr(0), E)
    assert tp == pytest.approx(max(g, 80 * 5e-4) + 0.002 + 0.003 + 1e-4)


def test_allreduce_bus_bandwidth_floor_slows_large_prefills_only():
    slow = EngineProfile(name="slow-ar", cuda_graphs=False, graph_max_batch=0, custom_allreduce=False,
                         hosts={"default": EngineOverhead(allreduce_bus_bytes_per_s=10e9)})
    fast = dataclasses.replace(slow, hosts={})
    a = Deployment("llama-2-70b", "h100", tp=8, engine=slow).cost(arr(4096), arr(0), E)
    b = Deployment("llama-2-70b", "h100", tp=8, engine=fast).cost(arr(4096), arr(0), E)
    floor = 160 * 4096 * 8192 * 2 * (2 * 7 / 8) / 10e9
    assert a.breakdown["allreduce_nccl"] == pytest.approx(max(floor, b.breakdown["allreduce_nccl"]))


def test_plan_and_memory_errors_are_user_errors():
    with pytest.raises(PlanError, match="tp=3"):
        Deployment("llama-2-70b", "h100", tp=3)
    with pytest.raises(OutOfMemoryError, match="raise tp"):
        Deployment("llama-2-70b", "a100-80gb", tp=1).kv_capacity_tokens()


def test_kv_and_swap_sizes():
    dep = Deployment("llama-2-70b", "h100", tp=8)
    # 80 layers x 2 (K, V) x 1 KV head per rank x 128 x 2 bytes
    assert dep.kv_bytes_per_token_per_device == 80 * 2 * 1 * 128 * 2
    assert dep.kv_bytes_per_token == 8 * dep.kv_bytes_per_token_per_device
    assert dep.swap_seconds_per_token() == pytest.approx(dep.kv_bytes_per_token_per_device / 64e9)
    assert dep.host_swap_capacity_tokens(4 * 2**30) == 4 * 2**30 // dep.kv_bytes_per_token_per_device


@pytest.mark.parametrize("name, tp, windows", [("gemma-3-27b", 2, (0, 1024)), ("gpt-oss-20b", 1, (0, 128)),
                                                ("llama-4-scout-17b-16e", 8, (0, 8192))])
def test_local_attention_layers_get_their_own_rows_and_cost_less(name, tp, windows):
    from llmsim.workloads.models import get_model
    model = get_model(name)
    every_global = dataclasses.replace(model, layer_types=None, sliding_window=None, attention_chunk_size=None)
    dep, ref = Deployment(model, "h100", tp=tp, engine="vllm"), Deployment(every_global, "h100", tp=tp, engine="vllm")
    w = windows[1]
    assert [n for n in dep.op_names if n.startswith("attn_decode")] == ["attn_decode", f"attn_decode_w{w}"]
    rows = [i for i, n in enumerate(dep.op_names) if n.startswith("attn_decode")]
    assert sum(dep._mult[i] for i in rows) == model.num_layers
    assert sorted(dep._par[i][5] for i in rows) == [0.0, float(w)]
    ctx = np.full(16, 32768, np.int64)
    c, r = dep.cost(E, E, ctx), ref.cost(E, E, ctx)
    local = c.breakdown["attn_decode"] + c.breakdown[f"attn_decode_w{w}"]
    assert local < 0.8 * r.breakdown["attn_decode"] and c.time_s < r.time_s
    # KV memory: every layer keeps every token (vLLM without its V1 hybrid KV-cache manager)
    assert dep.kv_bytes_per_token_per_device == ref.kv_bytes_per_token_per_device
    t, _ = dep.decode_run(ctx, 3)
    assert [dep.iteration(E, E, ctx + k)[0] for k in range(3)] == t.tolist()


def _scaled(dev, bw: float, flops: float):
    memory = tuple(dataclasses.replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * bw)
                   if t.bandwidth_bytes_per_s is not None else t for t in dev.memory)
    compute = tuple(dataclasses.replace(u, peak_flops_per_s={k: v * flops for k, v in u.peak_flops_per_s.items()})
                    for u in dev.compute)
    return dataclasses.replace(dev, memory=memory, compute=compute)


@pytest.fixture(scope="module")
def base_deployments():
    return {name: Deployment("llama-2-70b", get_device(name), tp=8, engine="vllm") for name in ("h100", "a100")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(device=st.sampled_from(["h100", "a100"]), bw=st.floats(1.0, 4.0), flops=st.floats(1.0, 4.0),
       prefill=st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 4096)), max_size=3),
       decode=st.lists(st.integers(1, 16000), max_size=64))
def test_more_bandwidth_or_flops_never_makes_an_iteration_slower(base_deployments, device, bw, flops, prefill,
                                                                 decode):
    base = base_deployments[device]
    faster = Deployment("llama-2-70b", _scaled(base.device, bw, flops), tp=8, engine="vllm")
    p = np.array([x[0] for x in prefill], np.int64)
    o = np.array([x[1] for x in prefill], np.int64)
    d = np.array(decode, np.int64)
    assert faster.iteration(p, o, d)[0] <= base.iteration(p, o, d)[0] * (1 + 1e-12)


def test_v1_mixed_steps_slow_their_decode_attention_by_the_unpacked_gqa_group():
    v1 = Deployment("llama-3.1-8b", "rtx-pro-6000", engine="vllm")
    v0 = Deployment("llama-3.1-8b", "rtx-pro-6000", engine="vllm-0.6")
    ctx = np.full(64, 2000, np.int64)
    alone = v1.cost(E, E, ctx).breakdown["attn_decode"]
    mixed = v1.cost(arr(512), arr(0), ctx).breakdown["attn_decode"]
    alpha = v1.engine.mixed_attention_gqa_exponent["blackwell-consumer"]
    assert mixed == pytest.approx(alone * 4.0 ** alpha)  # 32 query heads on 8 KV heads
    assert v0.cost(arr(512), arr(0), ctx).breakdown["attn_decode"] == pytest.approx(v0.cost(E, E, ctx).breakdown["attn_decode"])
    mha = Deployment("llama-2-7b", "rtx-pro-6000", engine="vllm")  # no GQA: nothing to unpack
    assert mha.cost(arr(512), arr(0), ctx).breakdown["attn_decode"] == pytest.approx(mha.cost(E, E, ctx).breakdown["attn_decode"])
    with pytest.raises(ConfigError, match="mixed_attention_gqa_exponent"):
        parse_engines({"schema_version": 1, "engines": {"x": {"mixed_attention_gqa_exponent": {"ada": 2}}}}, "e")
