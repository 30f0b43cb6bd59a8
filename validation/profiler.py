"""`simulate profile`: time the operators the cost model predicts on this machine's GPU.

    simulate profile --device-name h100-sxm --out validation/data/measured/h100_sxm --quick
    python validation/profiler.py --device-name h100-sxm --out DIR --quick   # without the full install

Times GEMMs over the shapes the catalogue's models produce (bf16 through ``torch.nn.functional.linear``;
fp8 through ``torch._scaled_mm`` with per-tensor scales where the GPU has fp8 units, compute capability
>= 8.9), prefill and decode attention (flash-attention if installed, else torch SDPA restricted to its
flash backend) and, when several GPUs are visible, NCCL collectives over message sizes (one process per
GPU). Which shapes is decided in :mod:`llmsim.validation.profile_sweep`.

Timing: ``--warmup`` untimed calls, then ``--repeats`` timed blocks between CUDA events; a block holds
enough back-to-back calls (captured in a CUDA graph unless ``--no-cuda-graph``) to last about half a
millisecond, and a case's time is the median over blocks of block time / calls. ``--flush-l2`` writes
a buffer twice the L2 size before every call instead (one call per block, no graph).

Decode attention is SDPA/flash-attention with one query token per sequence over a **contiguous** KV of
the given length (for GQA the query heads of one KV head are packed into the query length, as
flash-decoding does); it is not vLLM's paged-KV kernel, and its rows say so (``kernel_source``
``torch_sdpa_flash``). Prefill is causal attention without a cached prefix.

Output, in ``--out``: the aiconfigurator tables that :func:`llmsim.validation.loaders.load_aiconfigurator`
reads (``gemm_perf.parquet``, ``context_attention_perf.parquet``, ``generation_attention_perf.parquet``,
``nccl_perf.parquet``; ``latency`` in milliseconds, ``device`` = ``torch.cuda.get_device_name()``,
``framework`` ``llmsim-profile``; ``gemm_perf`` has one column more, ``timing``: ``graph`` or ``eager``, how
each row was timed), so ``simulate validate DIR`` and ``simulate calibrate DIR`` read them
unchanged, and ``environment.json`` (GPU, driver, CUDA, torch, clocks, date, sweep, skipped cases).
The tables are rewritten after each operator family, so a run cut short keeps what it measured.

This module imports only the standard library and :mod:`workloads` at import time (torch, pandas and
pyarrow lazily) so that it runs on a GPU machine with torch, numpy, pandas and pyarrow alone.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python validation/profiler.py`: make the project importable, installed or not
    _ROOT = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(0, _ROOT)
    import llmsim  # noqa: E402  (the front door imports nothing heavy)

    if _ROOT not in llmsim.__path__:  # the checkout's folders as llmsim.validation, llmsim.workloads, ...
        llmsim.__path__.append(_ROOT)

from llmsim.validation import profile_sweep as sweeps  # noqa: E402
from llmsim.validation.profile_sweep import AttentionCase, CollectiveCase, GemmCase, Sweep  # noqa: E402
from llmsim.workloads.errors import ConfigError, LLMSimError  # noqa: E402

__all__ = [
    "FRAMEWORK", "FILES", "ProfilerUnavailableError", "TimingBackend", "TimingConfig", "TorchBackend",
    "CaseSkipped", "add_arguments", "main", "profile", "run", "write_table",
]

FRAMEWORK = "llmsim-profile"
ENV_FILE = "environment.json"
FILES = {
    "gemm": "gemm_perf.parquet",
    "prefill": "context_attention_perf.parquet",
    "decode": "generation_attention_perf.parquet",
    "collectives": "nccl_perf.parquet",
}
# Columns and types of each table, as in the aiconfigurator files (``str``: parquet string,
# ``int``: int64, ``float``: double).
_ATTN_SCHEMA = (("framework", "str"), ("version", "str"), ("device", "str"), ("op_name", "str"),
                ("kernel_source", "str"), ("batch_size", "int"), ("isl", "int"), ("num_heads", "int"),
                ("num_key_value_heads", "int"), ("head_dim", "int"), ("beam_width", "int"),
                ("attn_dtype", "str"), ("kv_cache_dtype", "str"), ("step", "int"), ("window_size", "int"),
                ("latency", "float"))
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "gemm": (("framework", "str"), ("version", "str"), ("device", "str"), ("op_name", "str"),
             ("kernel_source", "str"), ("gemm_dtype", "str"), ("m", "int"), ("n", "int"), ("k", "int"),
             ("latency", "float"), ("timing", "str")),
    "prefill": _ATTN_SCHEMA,
    "decode": _ATTN_SCHEMA,
    "collectives": (("framework", "str"), ("version", "str"), ("device", "str"), ("op_name", "str"),
                    ("kernel_source", "str"), ("nccl_dtype", "str"), ("num_gpus", "int"),
                    ("message_size", "int"), ("latency", "float")),
}
_GEMM_DTYPE_NAME = {"bf16": "bfloat16", "fp8": "fp8"}
INSTALL_HINT = ("install PyTorch with CUDA (`pip install 'llmsim[profile]'`, or `pip install torch`) "
                "and run on a machine with an NVIDIA GPU")
MAX_SKIPS_RECORDED = 200


class ProfilerUnavailableError(LLMSimError):
    """The profiler cannot run here: torch is missing or no CUDA GPU is visible (exit status 2)."""


class CaseSkipped(Exception):
    """A timing backend could not run one case (out of memory, unsupported shape); the sweep goes on."""


# --------------------------------------------------------------------------------------------------
# timing backends
# --------------------------------------------------------------------------------------------------

class TimingConfig:
    """How each case is timed."""

    def __init__(self, *, warmup: int = 5, repeats: int = 10, flush_l2: bool = False,
                 cuda_graph: bool = True, target_block_ms: float = 0.5, max_calls_per_block: int = 64):
        self.warmup = int(warmup)
        self.repeats = int(repeats)
        self.flush_l2 = bool(flush_l2)
        self.cuda_graph = bool(cuda_graph) and not self.flush_l2
        self.target_block_ms = float(target_block_ms)
        self.max_calls_per_block = int(max_calls_per_block)

    def to_json(self) -> dict:
        return {"warmup": self.warmup, "repeats": self.repeats, "flush_l2": self.flush_l2,
                "cuda_graph": self.cuda_graph, "target_block_ms": self.target_block_ms,
                "max_calls_per_block": self.max_calls_per_block,
                "method": "CUDA events around blocks of back-to-back calls; median over blocks of "
                          "block time / calls"}


class TimingBackend:
    """What the profiler needs from a timer. Tests inject a fake; :class:`TorchBackend` uses a GPU.

    ``time_*`` return seconds per call, or raise :class:`CaseSkipped`.
    """

    device_name: str = ""                  # torch.cuda.get_device_name(), the tables' device column
    gpu_count: int = 1
    supports_fp8: bool = False
    gemm_kernels: dict[str, str] = {"bf16": "torch.nn.functional.linear", "fp8": "torch._scaled_mm"}
    attention_kernel: str = "torch_sdpa_flash"
    collective_kernel: str = "NCCL"
    timing: str = ""                       # how the last time_* call was timed: 'graph', 'eager' or '' (unknown)

    def environment(self) -> dict:
        return {}

    def ceilings(self) -> dict:
        """The GPU's measured ceilings (copy bandwidth, a large bf16 matrix product), for the record."""
        return {}

    def kernel_for(self, case: AttentionCase) -> str:
        """``kernel_source`` of an attention row."""
        return self.attention_kernel

    def time_gemm(self, case: GemmCase) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def time_attention(self, case: AttentionCase) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def time_collectives(self, cases: list[CollectiveCase]) -> tuple[list[tuple[CollectiveCase, float]], list[str]]:
        """(measured cases with seconds, notes); the default runs none."""
        return [], [f"{len(cases)} collective cases not run: this backend has no collectives"] if cases else []

    def close(self) -> None:
        pass


def _import_torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ProfilerUnavailableError(f"PyTorch is not installed ({e}); {INSTALL_HINT}") from None
    return torch


class TorchBackend(TimingBackend):
    """Times cases on GPU 0 with torch and CUDA events."""

    def __init__(self, torch, config: TimingConfig):
        self.torch = torch
        self.cfg = config
        self.dev = torch.device("cuda", 0)
        torch.cuda.set_device(self.dev)
        self.props = torch.cuda.get_device_properties(self.dev)
        self.device_name = torch.cuda.get_device_name(self.dev)
        self.gpu_count = torch.cuda.device_count()
        cap = torch.cuda.get_device_capability(self.dev)
        self.capability = (int(cap[0]), int(cap[1]))
        self.supports_fp8 = (self.capability >= (8, 9) and hasattr(torch, "float8_e4m3fn")
                             and hasattr(torch, "_scaled_mm"))
        self.notes: list[str] = []
        self._graphs_ok = {"gemm": config.cuda_graph, "attention": config.cuda_graph}
        self._flush_buf = None
        if config.flush_l2:
            l2 = int(getattr(self.props, "L2_cache_size", 0) or 64 * 2 ** 20)
            self._flush_buf = torch.empty(2 * l2 // 4, dtype=torch.float32, device=self.dev)
        self.flash_attn = None
        try:
            import flash_attn  # noqa: F401
            from flash_attn import flash_attn_func

            self.flash_attn = flash_attn_func
            self.attention_kernel = f"flash_attn_{getattr(flash_attn, '__version__', 'unknown')}"
        except Exception:  # not installed, or built for another torch/CUDA
            self.attention_kernel = "torch_sdpa_flash"
        self.sdpa_gqa = False
        if self.flash_attn is None:
            self.sdpa_gqa = self._probe_sdpa_gqa()
            if not self.sdpa_gqa:
                self.notes.append("torch SDPA here has no flash-backend GQA (enable_gqa, torch >= 2.5): "
                                  "prefill K/V are expanded to the query heads before timing "
                                  "(kernel_source torch_sdpa_flash_kv_expanded)")

    @classmethod
    def create(cls, config: TimingConfig) -> "TorchBackend":
        torch = _import_torch()
        if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
            cuda = getattr(torch.version, "cuda", None)
            build = f"a CUDA {cuda} build" if cuda else "a CPU-only build"
            raise ProfilerUnavailableError(
                f"no CUDA GPU visible to PyTorch {torch.__version__} ({build}); {INSTALL_HINT} "
                f"(check nvidia-smi and CUDA_VISIBLE_DEVICES)")
        return cls(torch, config)

    # -- helpers -------------------------------------------------------------------------------
    def _flash_only(self):
        """Context manager restricting SDPA to its flash backend."""
        torch = self.torch
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
        except ImportError:  # torch < 2.3
            return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)

    def _probe_sdpa_gqa(self) -> bool:
        torch = self.torch
        try:
            q = torch.randn(1, 4, 16, 64, device=self.dev, dtype=torch.bfloat16)
            k = torch.randn(1, 2, 16, 64, device=self.dev, dtype=torch.bfloat16)
            with self._flash_only():
                torch.nn.functional.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
            torch.cuda.synchronize()
            return True
        except Exception:
            return False

    def _randn(self, *shape, dtype=None):
        torch = self.torch
        return torch.randn(*shape, device=self.dev, dtype=dtype or torch.bfloat16)

    def _event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def _time(self, fn, family: str) -> float:
        """Seconds per call of ``fn`` (see the module docstring)."""
        torch, cfg = self.torch, self.cfg
        for _ in range(cfg.warmup):
            fn()
        torch.cuda.synchronize()
        s, e = self._event(), self._event()
        s.record()
        fn()
        e.record()
        e.synchronize()
        est_ms = max(float(s.elapsed_time(e)), 1e-4)
        calls = 1 if cfg.flush_l2 else max(1, min(cfg.max_calls_per_block, math.ceil(cfg.target_block_ms / est_ms)))

        def eager_block():
            for _ in range(calls):
                fn()

        block = eager_block
        graph = None
        if self._graphs_ok.get(family) and not cfg.flush_l2:
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        fn()
                torch.cuda.current_stream().wait_stream(side)
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    eager_block()
                graph.replay()
                torch.cuda.synchronize()
                block = graph.replay
            except Exception as exc:  # capture unsupported for this op: time it eagerly from now on
                graph = None
                self._graphs_ok[family] = False
                first = _first_line(exc)
                self.notes.append(f"{family}: CUDA graph capture failed ({type(exc).__name__}: {first}); "
                                  f"timed eagerly (launch overhead included) from then on")
                torch.cuda.synchronize()
        pairs = []
        for _ in range(max(1, cfg.repeats)):
            if self._flush_buf is not None:
                self._flush_buf.zero_()
            a, b = self._event(), self._event()
            a.record()
            block()
            b.record()
            pairs.append((a, b))
        torch.cuda.synchronize()
        ms = statistics.median(float(a.elapsed_time(b)) / calls for a, b in pairs)
        self.timing = "eager" if graph is None else "graph"  # loaders `timing`: eager rows may measure the host
        del graph
        return ms * 1e-3

    def _guard(self, run):
        """Run one case; an out-of-memory or a kernel that refuses the shape skips it."""
        torch = self.torch
        try:
            return run()
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            what = "out of memory" if isinstance(e, torch.cuda.OutOfMemoryError) else type(e).__name__
            first = _first_line(e)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            raise CaseSkipped(f"{what}: {first}") from None

    # -- cases ---------------------------------------------------------------------------------
    def time_gemm(self, case: GemmCase) -> float:
        torch = self.torch
        F = torch.nn.functional

        def run():
            if case.dtype == "bf16":
                x = self._randn(case.m, case.k)
                w = self._randn(case.n, case.k)
                return self._time(lambda: F.linear(x, w), "gemm")
            if case.dtype == "fp8":
                if not self.supports_fp8:
                    raise CaseSkipped(f"no fp8 GEMM on compute capability {self.capability}")
                f8 = torch.float8_e4m3fn
                x = self._randn(case.m, case.k).to(f8)
                wt = self._randn(case.n, case.k).to(f8).t()  # column-major [k, n], as _scaled_mm wants
                one = torch.ones((), device=self.dev, dtype=torch.float32)
                return self._time(lambda: torch._scaled_mm(x, wt, scale_a=one, scale_b=one,
                                                           out_dtype=torch.bfloat16), "gemm")
            raise CaseSkipped(f"unknown GEMM dtype {case.dtype!r}")

        return self._guard(run)

    def kernel_for(self, case: AttentionCase) -> str:
        if self.flash_attn is None and case.phase == "prefill" and case.heads != case.kv_heads and not self.sdpa_gqa:
            return "torch_sdpa_flash_kv_expanded"
        return self.attention_kernel

    def time_attention(self, case: AttentionCase) -> float:
        torch = self.torch
        sdpa = torch.nn.functional.scaled_dot_product_attention
        b, s, L, h, kvh, d = case.batch, case.seq, case.kv_len, case.heads, case.kv_heads, case.head_dim
        causal = case.phase == "prefill"

        def run():
            if self.flash_attn is not None:
                fa = self.flash_attn
                q, k, v = self._randn(b, s, h, d), self._randn(b, L, kvh, d), self._randn(b, L, kvh, d)
                return self._time(lambda: fa(q, k, v, causal=causal), "attention")
            with self._flash_only():
                if causal:
                    q, k, v = self._randn(b, h, s, d), self._randn(b, kvh, L, d), self._randn(b, kvh, L, d)
                    if h == kvh:
                        fn = lambda: sdpa(q, k, v, is_causal=True)  # noqa: E731
                    elif self.sdpa_gqa:
                        fn = lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
                    else:
                        k = k.repeat_interleave(h // kvh, dim=1)
                        v = v.repeat_interleave(h // kvh, dim=1)
                        fn = lambda: sdpa(q, k, v, is_causal=True)  # noqa: E731
                else:
                    # one new token per sequence; the h/kvh query heads sharing a KV head are packed
                    # into the query length, so no K/V is copied and no mask is needed
                    q = self._randn(b, kvh, h // kvh, d)
                    k, v = self._randn(b, kvh, L, d), self._randn(b, kvh, L, d)
                    fn = lambda: sdpa(q, k, v)  # noqa: E731
                return self._time(fn, "attention")

        return self._guard(run)

    def time_collectives(self, cases):
        if not cases:
            return [], []
        if self.gpu_count < 2:
            return [], [f"collectives skipped: {self.gpu_count} GPU visible"]
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()  # GPU 0 is shared with rank 0
        return _run_collectives(self.torch, cases, self.cfg)

    def environment(self) -> dict:
        torch = self.torch
        p = self.props
        env = {
            "gpu": {
                "name": self.device_name,
                "count": self.gpu_count,
                "names": [torch.cuda.get_device_name(i) for i in range(self.gpu_count)],
                "compute_capability": f"{self.capability[0]}.{self.capability[1]}",
                "multiprocessors": int(getattr(p, "multi_processor_count", 0) or 0),
                "memory_bytes": int(getattr(p, "total_memory", 0) or 0),
                "l2_cache_bytes": int(getattr(p, "L2_cache_size", 0) or 0) or None,
            },
            "torch": torch.__version__,
            "cuda_runtime": getattr(torch.version, "cuda", None),
            "cudnn": _safe(lambda: torch.backends.cudnn.version()),
            "nccl": _safe(lambda: ".".join(map(str, torch.cuda.nccl.version()))),
            "flash_attn": self.attention_kernel if self.flash_attn is not None else None,
            "sdpa_flash_gqa": self.sdpa_gqa,
            "fp8_gemm": self.supports_fp8,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        return env

    def ceilings(self) -> dict:
        """Two ceilings measured once per run, so a profile says what this card reached today: a
        device-to-device copy (bytes read + written over the median of 10 copies of up to 4 GiB, an
        eighth of the card's memory at most) and an 8192^3 bf16 matrix product on random data (median
        of 10 after 3 warm-ups), each between CUDA events."""
        torch = self.torch

        def median_s(fn):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            times = []
            for _ in range(10):
                a, b = self._event(), self._event()
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(float(a.elapsed_time(b)) * 1e-3)
            return statistics.median(times)

        total = int(getattr(self.props, "total_memory", 0) or 0)
        elements = min(2 ** 30, max(2 ** 20, total // 8 // 4))  # fp32 elements of each of the two buffers
        src = torch.randn(elements, device=self.dev, dtype=torch.float32)
        dst = torch.empty(elements, device=self.dev, dtype=torch.float32)
        t_copy = median_s(lambda: dst.copy_(src))
        del src, dst
        x, y = self._randn(8192, 8192), self._randn(8192, 8192)
        t_mm = median_s(lambda: torch.matmul(x, y))
        del x, y
        torch.cuda.empty_cache()
        return {"copy_bytes_per_s": 2.0 * elements * 4 / t_copy, "copy_bytes": 2 * elements * 4,
                "bf16_matmul_flops_per_s": 2.0 * 8192 ** 3 / t_mm,
                "method": "CUDA events; median of 10 after 3 warm-ups; copy counts bytes read and written; "
                          "matmul 8192^3 bf16 on random normal data"}

    def close(self) -> None:
        self._flush_buf = None
        try:
            self.torch.cuda.empty_cache()
        except Exception:
            pass


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none), for a one-line note."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


def _ceilings(backend: TimingBackend) -> dict:
    """``backend.ceilings()``, or what stopped it (a run goes on without them)."""
    try:
        return backend.ceilings()
    except Exception as e:  # noqa: BLE001 - out of memory, a driver error: recorded, not fatal
        first = _first_line(e)
        try:
            backend.torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
        return {"error": f"{type(e).__name__}: {first}"}


# --------------------------------------------------------------------------------------------------
# NCCL collectives (one process per GPU)
# --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _collective_worker(rank: int, world: int, port: int, cases: list[tuple[str, int]], warmup: int,
                       repeats: int, result_path: str) -> None:
    """One rank of a collective sweep; rank 0 writes ``[[op, elements, seconds], ...]`` as JSON."""
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    try:
        out = []
        for op, elements in cases:
            part = elements // world
            if op == "all_reduce":
                buf = torch.randn(elements, device=dev, dtype=torch.bfloat16)
                fn = lambda: dist.all_reduce(buf)  # noqa: E731
            elif op == "all_gather":  # elements = the gathered buffer
                src = torch.randn(part, device=dev, dtype=torch.bfloat16)
                dst = torch.empty(elements, device=dev, dtype=torch.bfloat16)
                fn = lambda: dist.all_gather_into_tensor(dst, src)  # noqa: E731
            elif op == "reduce_scatter":  # elements = the input buffer
                src = torch.randn(elements, device=dev, dtype=torch.bfloat16)
                dst = torch.empty(part, device=dev, dtype=torch.bfloat16)
                fn = lambda: dist.reduce_scatter_tensor(dst, src)  # noqa: E731
            elif op == "alltoall":
                src = torch.randn(elements, device=dev, dtype=torch.bfloat16)
                dst = torch.empty(elements, device=dev, dtype=torch.bfloat16)
                fn = lambda: dist.all_to_all_single(dst, src)  # noqa: E731
            else:
                continue
            for _ in range(max(1, warmup)):
                fn()
            torch.cuda.synchronize()
            dist.barrier()
            pairs = []
            for _ in range(max(1, repeats)):
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                pairs.append((a, b))
            torch.cuda.synchronize()
            med = statistics.median(float(a.elapsed_time(b)) for a, b in pairs) * 1e-3
            t = torch.tensor([med], device=dev, dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest rank's median
            out.append([op, elements, float(t.item())])
            del fn
        if rank == 0:
            with open(result_path, "w") as fh:
                json.dump(out, fh)
    finally:
        dist.destroy_process_group()


def _run_collectives(torch, cases: list[CollectiveCase], cfg: TimingConfig):
    import torch.multiprocessing as mp

    from llmsim.validation import profiler as this  # a picklable reference even when run as __main__

    results: list[tuple[CollectiveCase, float]] = []
    notes: list[str] = []
    by_world: dict[int, list[CollectiveCase]] = {}
    for c in cases:
        by_world.setdefault(c.num_gpus, []).append(c)
    for world, group in sorted(by_world.items()):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "result.json")
            try:
                mp.spawn(this._collective_worker,
                         args=(world, _free_port(), [(c.op, c.elements) for c in group], cfg.warmup,
                               cfg.repeats, path), nprocs=world, join=True)
                with open(path) as fh:
                    measured = {(op, int(el)): float(sec) for op, el, sec in json.load(fh)}
            except Exception as e:
                notes.append(f"collectives on {world} GPUs failed: {type(e).__name__}: {_first_line(e)}")
                continue
        for c in group:
            if (c.op, c.elements) in measured:
                results.append((c, measured[(c.op, c.elements)]))
    return results, notes


# --------------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------------

_SMI_FIELDS = ("index", "name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm",
               "clocks.max.mem", "power.limit", "temperature.gpu", "memory.total")


def nvidia_smi() -> list[dict] | None:
    """Per-GPU driver, clocks (MHz), power limit (W) from nvidia-smi; None where it is unavailable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    out = []
    for line in r.stdout.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) == len(_SMI_FIELDS):
            out.append(dict(zip(_SMI_FIELDS, vals)))
    return out or None


def _driver_from_proc() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    first = text.splitlines()[0] if text else ""
    return first.strip() or None


def package_version() -> str:
    """llmsim's version: the installed distribution's, else pyproject.toml's, else 'unknown'."""
    try:
        from importlib.metadata import version

        return version("llmsim")
    except Exception:  # PackageNotFoundError or a broken install: read the source tree
        pass
    try:
        import tomllib

        data = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
        return str(data["project"]["version"])
    except Exception:
        return "unknown"


def catalogue_device(name: str) -> str | None:
    """The device catalogue's name for a GPU name (None when the catalogue does not know it)."""
    try:
        from llmsim.hwmodels.devices import get_device

        return get_device(name).name
    except Exception:
        return None


# --------------------------------------------------------------------------------------------------
# rows and files
# --------------------------------------------------------------------------------------------------

def write_table(path: str | Path, family: str, rows: list[dict]) -> None:
    """Write ``rows`` as one aiconfigurator-schema parquet table (columns and types of :data:`SCHEMAS`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    schema = SCHEMAS[family]
    arrays = [pa.array([r[c] for r in rows], type=types[t]) for c, t in schema]
    table = pa.Table.from_arrays(arrays, schema=pa.schema([(c, types[t]) for c, t in schema]))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, str(tmp))
    os.replace(tmp, path)


def check_out_dir(out: str | Path) -> None:
    """Refuse an output folder holding tables that an earlier profile run did not write (they would be
    overwritten): ConfigError naming the file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    for name in FILES.values():
        p = out / name
        if not p.exists():
            continue
        try:
            import pyarrow.parquet as pq

            frameworks = set(pq.read_table(str(p), columns=["framework"]).column(0).to_pylist())
        except Exception as e:
            raise ConfigError(f"--out {out}: {name} exists and is not a table written by `simulate profile` "
                              f"({type(e).__name__}); choose another folder") from None
        if frameworks - {FRAMEWORK}:
            raise ConfigError(f"--out {out}: {name} holds measurements of {sorted(map(str, frameworks))[0]!r}, "
                              f"not of `simulate profile`; choose another folder")


def _gemm_row(base: dict, backend: TimingBackend, case: GemmCase, seconds: float) -> dict:
    return {**base, "op_name": "gemm", "kernel_source": backend.gemm_kernels.get(case.dtype, case.dtype),
            "gemm_dtype": _GEMM_DTYPE_NAME.get(case.dtype, case.dtype), "m": case.m, "n": case.n, "k": case.k,
            "latency": seconds * 1e3, "timing": backend.timing}


def _attention_row(base: dict, backend: TimingBackend, case: AttentionCase, seconds: float) -> dict:
    return {**base, "op_name": "context_attention" if case.phase == "prefill" else "generation_attention",
            "kernel_source": backend.kernel_for(case), "batch_size": case.batch,
            "isl": case.seq, "num_heads": case.heads, "num_key_value_heads": case.kv_heads,
            "head_dim": case.head_dim, "beam_width": 1, "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16",
            "step": case.step, "window_size": 0, "latency": seconds * 1e3}


def _collective_row(base: dict, backend: TimingBackend, case: CollectiveCase, seconds: float) -> dict:
    return {**base, "op_name": case.op, "kernel_source": backend.collective_kernel, "nccl_dtype": "bfloat16",
            "num_gpus": case.num_gpus, "message_size": case.elements, "latency": seconds * 1e3}


def _case_text(case) -> str:
    if isinstance(case, GemmCase):
        return f"gemm {case.dtype} m={case.m} n={case.n} k={case.k}"
    if isinstance(case, AttentionCase):
        return (f"{case.phase} attention b={case.batch} seq={case.seq} kv={case.kv_len} "
                f"heads={case.heads}/{case.kv_heads} d={case.head_dim}")
    return f"{case.op} gpus={case.num_gpus} elements={case.elements}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def profile(sweep: Sweep, backend: TimingBackend, out_dir: str | Path, *, device_label: str = "",
            config: TimingConfig | None = None, max_seconds: float | None = None,
            argv: list[str] | None = None, log=None) -> dict:
    """Time every case of ``sweep`` with ``backend`` and write the tables and ``environment.json``
    into ``out_dir``. Returns the environment record (with ``rows`` per file and ``skipped``)."""
    log = log or (lambda msg: print(msg, flush=True))
    out = Path(out_dir)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or TimingConfig()
    started = time.monotonic()
    gpu_name = backend.device_name
    cat = catalogue_device(gpu_name)
    label_cat = catalogue_device(device_label) if device_label else None
    notes = list(sweep.notes)
    if cat is None:
        notes.append(f"GPU name {gpu_name!r} is not in the device catalogue: price its rows with "
                     f"`simulate validate {out} --device <catalogue name>`")
    elif label_cat is not None and label_cat != cat:
        notes.append(f"--device-name {device_label!r} is catalogue device {label_cat!r} but the GPU "
                     f"{gpu_name!r} is {cat!r}; the tables name the GPU")
    env: dict = {
        "schema": 1,
        "framework": FRAMEWORK,
        "version": package_version(),
        "device_name": device_label,
        "device": gpu_name,
        "catalogue_device": cat,
        "started": _now(),
        "finished": None,
        "status": "running",
        "argv": list(argv) if argv is not None else None,
        "host": {"python": platform.python_version(), "platform": platform.platform()},
        "backend": _safe(backend.environment) or {},
        "ceilings": _ceilings(backend),
        "nvidia_smi_before": nvidia_smi(),
        "nvidia_smi_after": None,
        "driver": None,
        "timing": config.to_json(),
        "sweep": {"models": list(sweep.models), "quick": sweep.quick, "tp_degrees": list(sweep.tp_degrees),
                  "cases": sweep.counts()},
        "kernels": {"gemm": dict(backend.gemm_kernels), "attention": backend.attention_kernel,
                    "collectives": backend.collective_kernel,
                    "decode_attention": "one query token per sequence over a contiguous KV cache "
                                        "(not vLLM's paged-KV kernel)"},
        "rows": {},
        "skipped": [],
        "skipped_count": 0,
        "notes": notes,
    }
    smi = env["nvidia_smi_before"]
    env["driver"] = (smi[0].get("driver_version") if smi else None) or _driver_from_proc()
    base = {"framework": FRAMEWORK, "version": env["version"], "device": gpu_name}
    for f in FILES.values():  # a stale table of an earlier run would be read as this run's
        p = out / f
        if p.exists():
            p.unlink()

    def save_env() -> None:
        tmp = out / (ENV_FILE + ".tmp")
        tmp.write_text(json.dumps(env, indent=1, sort_keys=False, default=str) + "\n")
        os.replace(tmp, out / ENV_FILE)

    def skip(case, why: str) -> None:
        env["skipped_count"] += 1
        if len(env["skipped"]) < MAX_SKIPS_RECORDED:
            env["skipped"].append(f"{_case_text(case)}: {why}")

    def over_budget() -> bool:
        return max_seconds is not None and time.monotonic() - started > max_seconds

    save_env()
    stopped = False
    families = (("gemm", sweep.gemm, backend.time_gemm, _gemm_row),
                ("prefill", sweep.prefill, backend.time_attention, _attention_row),
                ("decode", sweep.decode, backend.time_attention, _attention_row))
    for family, cases, timer, make_row in families:
        if not cases:
            continue
        if stopped:
            env["notes"].append(f"{family}: {len(cases)} cases not run (--max-seconds reached)")
            continue
        rows: list[dict] = []
        t0 = time.monotonic()
        log(f"{family}: {len(cases)} cases")
        step = max(1, len(cases) // 10)
        first_error = None
        try:
            for i, case in enumerate(cases):
                if over_budget():
                    stopped = True
                    env["notes"].append(f"{family}: stopped after {i} of {len(cases)} cases (--max-seconds reached)")
                    break
                if case.__class__ is GemmCase and case.dtype == "fp8" and not backend.supports_fp8:
                    skip(case, "no fp8 GEMM on this GPU")
                    continue
                try:
                    sec = float(timer(case))
                except CaseSkipped as e:
                    skip(case, str(e))
                    first_error = first_error or f"{_case_text(case)}: {e}"
                    continue
                if not (sec > 0 and math.isfinite(sec)):
                    skip(case, f"timer returned {sec!r}")
                    continue
                rows.append(make_row(base, backend, case, sec))
                if (i + 1) % step == 0:
                    log(f"  {family}: {i + 1}/{len(cases)} ({time.monotonic() - t0:.0f} s)")
                    write_table(out / FILES[family], family, rows)  # a run killed later keeps these
                    env["rows"][FILES[family]] = len(rows)
                    save_env()
        except BaseException as exc:  # a crash or Ctrl-C: keep what was measured, say what happened
            if rows:
                write_table(out / FILES[family], family, rows)
            env["rows"][FILES[family]] = len(rows)
            env["status"] = f"failed during {family}: {type(exc).__name__}: {exc}"
            env["finished"] = _now()
            save_env()
            raise
        if first_error:
            log(f"  {family}: first skipped case: {first_error}")
        if rows:
            write_table(out / FILES[family], family, rows)
        env["rows"][FILES[family]] = len(rows)
        env["notes"] = list(dict.fromkeys(env["notes"] + list(getattr(backend, "notes", []))))
        log(f"  {family}: {len(rows)} rows in {time.monotonic() - t0:.0f} s -> {out / FILES[family]}")
        save_env()

    if sweep.collectives and not stopped:
        t0 = time.monotonic()
        log(f"collectives: {len(sweep.collectives)} cases")
        measured, coll_notes = backend.time_collectives(list(sweep.collectives))
        env["notes"].extend(coll_notes)
        rows = [_collective_row(base, backend, c, s) for c, s in measured if s > 0 and math.isfinite(s)]
        done = {c for c, _ in measured}
        for c in sweep.collectives:
            if c not in done:
                skip(c, "not measured")
        if rows:
            write_table(out / FILES["collectives"], "collectives", rows)
        env["rows"][FILES["collectives"]] = len(rows)
        log(f"  collectives: {len(rows)} rows in {time.monotonic() - t0:.0f} s")
    elif "collectives skipped" in " ".join(sweep.notes):
        log(next(n for n in sweep.notes if n.startswith("collectives skipped")))

    env["notes"] = list(dict.fromkeys(env["notes"] + list(getattr(backend, "notes", []))))
    env["nvidia_smi_after"] = nvidia_smi()
    env["finished"] = _now()
    env["elapsed_s"] = round(time.monotonic() - started, 1)
    env["status"] = "stopped: --max-seconds reached" if stopped else "complete"
    save_env()
    return env


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--device-name", required=True,
                   help="a name for this GPU (e.g. the catalogue's 'h100-sxm'), recorded in environment.json; "
                        "the tables' device column is the name torch reports")
    p.add_argument("--out", required=True, help="folder for the parquet tables and environment.json "
                                                "(e.g. validation/data/measured/<device>/)")
    p.add_argument("--ops", default=",".join(sweeps.OPS),
                   help=f"comma-separated operator families (default: {','.join(sweeps.OPS)})")
    p.add_argument("--quick", action="store_true",
                   help=f"a small subset (models {', '.join(sweeps.QUICK_MODELS)} unless --models; fewer token "
                        f"counts and attention sizes): a few minutes on one H100")
    p.add_argument("--models", help="comma-separated catalogue models, HF ids or config.json paths "
                                    "(default: the whole catalogue, or the quick models with --quick)")
    p.add_argument("--tp", help="comma-separated tensor-parallel degrees whose per-GPU shapes are timed "
                                f"(default: {','.join(map(str, sweeps.TP_DEGREES))})")
    p.add_argument("--repeats", type=int, default=10, help="timed blocks per case; the median is kept (default 10)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before timing each case (default 5)")
    p.add_argument("--flush-l2", action="store_true", help="flush the L2 cache before every timed call")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="time eager calls (launch overhead included) instead of CUDA-graph replays")
    p.add_argument("--no-fp8", action="store_true", help="skip the fp8 GEMMs")
    p.add_argument("--max-seconds", type=float,
                   help="stop starting new cases after this many seconds and keep what was measured")
    p.add_argument("--max-cases", type=int,
                   help="time at most this many cases per operator family, drawn at random over the whole "
                        "grid (seeded by --seed): a broad sweep that fits a short GPU session")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-cases draw (default 0)")
    p.add_argument("--dry-run", action="store_true", help="print the sweep's size and exit (no GPU needed)")
    return p


def _check_args(args) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...] | None]:
    if not str(args.device_name or "").strip():
        raise ConfigError("--device-name must be a non-empty name")
    if args.repeats is None or args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    if args.warmup is None or args.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ConfigError(f"--max-seconds must be positive, got {args.max_seconds}")
    if getattr(args, "max_cases", None) is not None and args.max_cases < 1:
        raise ConfigError(f"--max-cases must be at least 1, got {args.max_cases}")
    ops = sweeps.parse_list(args.ops, "--ops", choices=sweeps.OPS)
    models = sweeps.parse_list(args.models, "--models") if args.models is not None else ()
    tps = sweeps.parse_ints(args.tp, "--tp") if args.tp is not None else None
    check_out_dir(args.out)
    return ops, models, tps


def run(args, backend: TimingBackend | None = None) -> int:
    """Run `simulate profile` with parsed ``args``; ``backend`` replaces the GPU timer (tests).

    Raises :class:`ProfilerUnavailableError` (exit status 2) without torch or a CUDA GPU."""
    ops, models, tps = _check_args(args)
    if args.dry_run:
        sweep = sweeps.build_sweep(models or None, quick=args.quick, ops=ops, tp_degrees=tps,
                                   fp8=not args.no_fp8, gpu_count=max(sweeps.COLLECTIVE_WORLDS))
        if getattr(args, "max_cases", None):
            sweeps.sample(sweep, args.max_cases, args.seed)
        print(sweeps.describe(sweep))
        if "collectives" in ops:
            print("(collectives counted for 8 GPUs; a run times those of the GPUs it sees)")
        return 0
    config = TimingConfig(warmup=args.warmup, repeats=args.repeats, flush_l2=args.flush_l2,
                          cuda_graph=not args.no_cuda_graph)
    # resolve the models before touching the GPU: an unknown name fails fast anywhere
    sweeps.build_sweep(models or None, quick=args.quick, ops=(), tp_degrees=tps)
    backend = backend if backend is not None else TorchBackend.create(config)
    try:
        sweep = sweeps.build_sweep(models or None, quick=args.quick, ops=ops, tp_degrees=tps,
                                   fp8=not args.no_fp8 and backend.supports_fp8, gpu_count=backend.gpu_count)
        if getattr(args, "max_cases", None):
            sweeps.sample(sweep, args.max_cases, args.seed)
        if not args.no_fp8 and not backend.supports_fp8 and "gemm" in ops:
            sweep.notes.append(f"fp8 GEMMs skipped: {backend.device_name} has no fp8 GEMM "
                               f"(needs compute capability >= 8.9 and torch with float8 and _scaled_mm)")
        print(f"profiling on {backend.device_name} ({backend.gpu_count} GPU visible): "
              f"{sweep.counts()['total']} cases -> {args.out}", flush=True)
        env = profile(sweep, backend, args.out, device_label=args.device_name, config=config,
                      max_seconds=args.max_seconds, argv=getattr(args, "argv", None) or sys.argv[1:])
    finally:
        backend.close()
    rows = sum(env["rows"].values())
    print(f"wrote {rows} rows to {args.out} ({', '.join(f'{k}: {v}' for k, v in env['rows'].items())}); "
          f"{env['skipped_count']} cases skipped; status: {env['status']}")
    for n in env["notes"]:
        print(f"note: {n}")
    print(f"next: simulate validate {args.out}   |   simulate calibrate {args.out} --out profile.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m llmsim.validation.profiler ...`` (needs only torch, numpy, pandas,
    pyarrow and pyyaml)."""
    p = argparse.ArgumentParser(prog="python -m llmsim.validation.profiler", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except LLMSimError as e:
        print(f"profile: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
