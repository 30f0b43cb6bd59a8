"""Which operator shapes `simulate profile` times: pure Python, derived from the model catalogue.

No torch, numpy or pandas here (the profiler must import on a bare GPU machine). Every sweep is
deduplicated and comes in a fixed order, so two runs with the same arguments time the same cases in
the same order and write rows in the same order.

Shapes are **per GPU** under tensor parallelism (Megatron layout, as vLLM shards a model):

* GEMMs (``m`` tokens x ``n`` outputs x ``k`` inputs): the fused QKV projection ``n = (h/tp + 2
  kvh') d`` (``kvh' = max(1, kvh/tp)``: KV heads are replicated when ``tp > kvh``), the output
  projection ``k = h d / tp``, the gated up-projection ``n = 2 I / tp`` (``I / tp`` for a plain MLP),
  the down-projection ``k = I / tp``, and the LM head ``n = ceil(pad64(V) / tp)`` (vLLM pads the
  vocabulary to a multiple of 64).  MLA models (DeepSeek) get their own projections (fused
  ``q_a``/``kv_a``, ``q_b``, ``kv_b``, ``o``); MoE models only the dense layers' MLP and the shared
  experts -- routed experts are grouped GEMMs, not profiled here.  A TP degree that does not divide
  the heads or the MLP width of a model is skipped for that model.  FP8 cases need ``n`` and ``k``
  divisible by 16 (``torch._scaled_mm``).
* Prefill attention: batch x prompt length (causal, no cached prefix) per head layout
  ``(h/tp, kvh', d)``; decode attention: batch x KV length (the cached tokens plus the new one).
  MLA attention is not profiled (the schema has one head dim; vLLM runs MLA kernels).
* Collectives: all_reduce, all_gather, reduce_scatter, alltoall over message sizes (in bf16
  elements of the whole buffer, as nccl-tests and aiconfigurator count them) on 2, 4, 8 GPUs, as many
  as are visible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmsim.workloads.errors import ConfigError

__all__ = [
    "AttentionCase", "CollectiveCase", "GemmCase", "Sweep", "attention_layouts", "build_sweep",
    "gemm_shapes", "sample", "QUICK_MODELS", "TP_DEGREES",
]

TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8)
QUICK_MODELS: tuple[str, ...] = ("llama-3.1-8b", "llama-3.1-70b")
GEMM_DTYPES: tuple[str, ...] = ("bf16", "fp8")

# token counts (GEMM m) -----------------------------------------------------------------------
GEMM_TOKENS_FULL: tuple[int, ...] = tuple(2 ** i for i in range(15))  # 1 .. 16384
GEMM_TOKENS_QUICK: tuple[int, ...] = (1, 8, 64, 256, 1024, 4096)

# attention grids -----------------------------------------------------------------------------
PREFILL_BATCH_FULL: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
PREFILL_SEQ_FULL: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PREFILL_MAX_TOKENS_FULL = 65536
PREFILL_BATCH_QUICK: tuple[int, ...] = (1, 4, 16)
PREFILL_SEQ_QUICK: tuple[int, ...] = (256, 1024, 4096)
PREFILL_MAX_TOKENS_QUICK = 16384

DECODE_BATCH_FULL: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DECODE_KV_FULL: tuple[int, ...] = tuple(2 ** i for i in range(7, 18))  # 128 .. 131072
DECODE_BATCH_QUICK: tuple[int, ...] = (1, 16, 64, 256)
DECODE_KV_QUICK: tuple[int, ...] = (512, 2048, 8192)
DECODE_MAX_TOKENS = 2 ** 21          # batch x KV length
KV_BYTES_LIMIT = 8 * 2 ** 30         # K and V together, bf16
FLASH_MAX_HEAD_DIM = 256

# collectives ---------------------------------------------------------------------------------
COLLECTIVE_OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
COLLECTIVE_ELEMENTS_FULL: tuple[int, ...] = tuple(2 ** i for i in range(8, 29))       # 256 .. 268M
COLLECTIVE_ELEMENTS_QUICK: tuple[int, ...] = tuple(2 ** i for i in range(10, 27, 2))  # 1K .. 64M
COLLECTIVE_WORLDS: tuple[int, ...] = (2, 4, 8)

OPS: tuple[str, ...] = ("gemm", "attention", "collectives")
_DTYPE_ORDER = {d: i for i, d in enumerate(GEMM_DTYPES)}
_COLL_ORDER = {o: i for i, o in enumerate(COLLECTIVE_OPS)}


@dataclass(frozen=True, order=True)
class GemmCase:
    """One GEMM ``[m, k] x [k, n]`` in ``dtype`` ('bf16' or 'fp8'); ``uses`` lists where it comes from."""

    dtype: str
    m: int
    n: int
    k: int
    uses: tuple[str, ...] = field(default=(), compare=False)

    def sort_key(self) -> tuple:
        # weights (n, k) stay put while m grows: the timing backend can reuse them
        return (_DTYPE_ORDER.get(self.dtype, 99), self.dtype, self.k, self.n, self.m)


@dataclass(frozen=True, order=True)
class AttentionCase:
    """Prefill (``seq == kv_len``, causal) or decode (``seq == 1``) attention over a contiguous KV."""

    phase: str  # 'prefill' | 'decode'
    batch: int
    seq: int
    kv_len: int
    heads: int
    kv_heads: int
    head_dim: int
    uses: tuple[str, ...] = field(default=(), compare=False)

    @property
    def step(self) -> int:
        """aiconfigurator's ``step``: tokens already cached (0 for a prefill without prefix)."""
        return 0 if self.phase == "prefill" else self.kv_len - 1

    @property
    def kv_bytes(self) -> int:
        return 2 * 2 * self.batch * self.kv_len * self.kv_heads * self.head_dim

    def sort_key(self) -> tuple:
        return (self.phase, self.heads, self.kv_heads, self.head_dim, self.batch, self.kv_len)


@dataclass(frozen=True, order=True)
class CollectiveCase:
    """One collective over a buffer of ``elements`` bf16 values (the whole buffer) on ``num_gpus``."""

    op: str
    num_gpus: int
    elements: int

    @property
    def nbytes(self) -> int:
        return 2 * self.elements

    def sort_key(self) -> tuple:
        return (self.num_gpus, _COLL_ORDER.get(self.op, 99), self.op, self.elements)


@dataclass
class Sweep:
    """The cases of one profiling run, per family, deduplicated and in run order."""

    models: tuple[str, ...]
    quick: bool
    tp_degrees: tuple[int, ...]
    gemm: list[GemmCase] = field(default_factory=list)
    prefill: list[AttentionCase] = field(default_factory=list)
    decode: list[AttentionCase] = field(default_factory=list)
    collectives: list[CollectiveCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        fp8 = sum(1 for c in self.gemm if c.dtype == "fp8")
        return {"gemm": len(self.gemm), "gemm_bf16": len(self.gemm) - fp8, "gemm_fp8": fp8,
                "prefill": len(self.prefill), "decode": len(self.decode),
                "collectives": len(self.collectives),
                "total": len(self.gemm) + len(self.prefill) + len(self.decode) + len(self.collectives)}


# ----------------------------------------------------------------------------------------------
# per-model shapes
# ----------------------------------------------------------------------------------------------

def _kv_heads_per_rank(kv_heads: int, tp: int) -> int | None:
    """KV heads on one rank: split when tp divides them, replicated (1 per rank) when kv_heads divides tp."""
    if kv_heads % tp == 0:
        return kv_heads // tp
    if tp % kv_heads == 0:
        return 1
    return None


def _pad(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def gemm_shapes(model, tp: int) -> tuple[list[tuple[str, int, int]], list[str]]:
    """``([(op, n, k), ...], notes)`` of one model's GEMMs on one of ``tp`` GPUs (empty when
    ``tp`` does not divide the model; a note says why)."""
    name = model.name
    h, heads, d = model.hidden_size, model.num_heads, model.head_dim
    if heads % tp:
        return [], [f"{name}: tp={tp} does not divide its {heads} attention heads; skipped"]
    hp = heads // tp
    out: list[tuple[str, int, int]] = []
    mla = model.mla
    if mla is not None:
        rope, kvr, nope, vd = mla.qk_rope_head_dim, mla.kv_lora_rank, mla.qk_nope_head_dim, mla.v_head_dim
        if mla.q_lora_rank:  # vLLM fuses q_a and kv_a (replicated on every rank)
            out.append(("qkv_a", mla.q_lora_rank + kvr + rope, h))
            out.append(("q_b", hp * mla.qk_head_dim, mla.q_lora_rank))
        else:
            out.append(("q", hp * mla.qk_head_dim, h))
            out.append(("kv_a", kvr + rope, h))
        out.append(("kv_b", hp * (nope + vd), kvr))
        out.append(("o", h, hp * vd))
    else:
        kvp = _kv_heads_per_rank(model.num_kv_heads, tp)
        if kvp is None:
            return [], [f"{name}: tp={tp} neither divides nor is a multiple of its "
                        f"{model.num_kv_heads} KV heads; skipped"]
        out.append(("qkv", (hp + 2 * kvp) * d, h))
        out.append(("o", h, hp * d))
    notes: list[str] = []
    moe = model.moe
    dense_mlp = moe is None or model.num_dense_layers > 0
    widths: list[tuple[str, int]] = []
    if dense_mlp and model.intermediate_size:
        widths.append(("mlp", model.intermediate_size))
    if moe is not None and moe.shared_expert_intermediate_size:
        widths.append(("shared_expert", moe.shared_expert_intermediate_size))
    for label, width in widths:
        if width % tp:
            notes.append(f"{name}: tp={tp} does not divide its {label} width {width}; {label} GEMMs skipped")
            continue
        wp = width // tp
        out.append((f"{label}_up", (2 if model.mlp_gated else 1) * wp, h))
        out.append((f"{label}_down", h, wp))
    out.append(("lm_head", -(-_pad(model.vocab_size, 64) // tp), model.token_embed_dim))
    return out, notes


def attention_layouts(model, tp: int) -> tuple[tuple[int, int, int] | None, str]:
    """``((heads, kv_heads, head_dim) per rank, '')`` or ``(None, why not)``."""
    if model.mla is not None:
        return None, f"{model.name}: MLA attention not profiled (vLLM runs MLA kernels; the schema has one head dim)"
    if model.head_dim > FLASH_MAX_HEAD_DIM or model.head_dim % 8:
        return None, f"{model.name}: head_dim {model.head_dim} not supported by flash attention; skipped"
    if model.num_heads % tp:
        return None, f"{model.name}: tp={tp} does not divide its {model.num_heads} attention heads; skipped"
    kvp = _kv_heads_per_rank(model.num_kv_heads, tp)
    if kvp is None:
        return None, f"{model.name}: tp={tp} does not fit its {model.num_kv_heads} KV heads; skipped"
    return (model.num_heads // tp, kvp, model.head_dim), ""


# ----------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------

def parse_list(text: str | None, what: str, *, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A comma-separated command-line list (blanks dropped, order and first occurrence kept)."""
    if text is None:
        return ()
    items: list[str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part and part not in items:
            items.append(part)
    if not items:
        raise ConfigError(f"{what}: empty list {text!r}")
    if choices is not None:
        bad = [i for i in items if i not in choices]
        if bad:
            raise ConfigError(f"{what}: unknown value {bad[0]!r} (known: {', '.join(choices)})")
    return tuple(items)


def parse_ints(text: str | None, what: str) -> tuple[int, ...]:
    out = []
    for item in parse_list(text, what):
        try:
            v = int(item)
        except ValueError:
            raise ConfigError(f"{what}: not a whole number: {item!r}") from None
        if v < 1:
            raise ConfigError(f"{what}: must be positive, got {v}")
        out.append(v)
    return tuple(out)


def _resolve_models(models: tuple[str, ...] | list[str] | None, quick: bool):
    from llmsim.workloads.models import get_model, list_models

    names = tuple(models) if models else (QUICK_MODELS if quick else list_models())
    specs, seen = [], set()
    for n in names:
        spec = get_model(n)  # UnknownNameError / ConfigError with suggestions
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    return specs


def _merge(cases: dict, case, use: str) -> None:
    prev = cases.get(case)
    if prev is None:
        cases[case] = (case, [use])
    elif use not in prev[1]:
        prev[1].append(use)


def build_sweep(models: tuple[str, ...] | list[str] | None = None, *, quick: bool = False,
                ops: tuple[str, ...] = OPS, tp_degrees: tuple[int, ...] | None = None,
                fp8: bool = True, gpu_count: int = 1,
                gemm_tokens: tuple[int, ...] | None = None) -> Sweep:
    """The deduplicated, ordered cases for ``models`` (catalogue names, HF ids or config paths;
    default: every catalogue model, or :data:`QUICK_MODELS` with ``quick``)."""
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ConfigError(f"--ops: unknown operator family {bad[0]!r} (known: {', '.join(OPS)})")
    tps = tuple(sorted(set(tp_degrees or TP_DEGREES)))
    specs = _resolve_models(models, quick)
    sweep = Sweep(models=tuple(m.name for m in specs), quick=quick, tp_degrees=tps)
    notes: list[str] = []

    if "gemm" in ops:
        tokens = tuple(sorted(set(gemm_tokens or (GEMM_TOKENS_QUICK if quick else GEMM_TOKENS_FULL))))
        dtypes = GEMM_DTYPES if fp8 else ("bf16",)
        cases: dict = {}
        for spec in specs:
            for tp in tps:
                shapes, why = gemm_shapes(spec, tp)
                notes.extend(why)
                for op, n, k in shapes:
                    use = f"{spec.name}/tp{tp}/{op}"
                    for dtype in dtypes:
                        if dtype == "fp8" and (n % 16 or k % 16):
                            continue
                        for m in tokens:
                            _merge(cases, GemmCase(dtype, m, n, k), use)
        sweep.gemm = sorted((GemmCase(c.dtype, c.m, c.n, c.k, tuple(u)) for c, u in cases.values()),
                            key=GemmCase.sort_key)
        if fp8:
            notes.append("fp8 GEMMs (torch._scaled_mm, per-tensor scales) run only where the GPU has fp8 "
                         "units (compute capability >= 8.9)")
        if any(s.moe is not None for s in specs):
            notes.append("routed-expert (MoE) GEMMs are not profiled; dense and shared-expert MLPs are")

    if "attention" in ops:
        layouts: dict[tuple[int, int, int], list[str]] = {}
        for spec in specs:
            for tp in tps:
                lay, why = attention_layouts(spec, tp)
                if lay is None:
                    if why not in notes:
                        notes.append(why)
                    continue
                layouts.setdefault(lay, []).append(f"{spec.name}/tp{tp}")
        if quick:
            pb, ps, pmax = PREFILL_BATCH_QUICK, PREFILL_SEQ_QUICK, PREFILL_MAX_TOKENS_QUICK
            db, dk = DECODE_BATCH_QUICK, DECODE_KV_QUICK
        else:
            pb, ps, pmax = PREFILL_BATCH_FULL, PREFILL_SEQ_FULL, PREFILL_MAX_TOKENS_FULL
            db, dk = DECODE_BATCH_FULL, DECODE_KV_FULL
        pre, dec = [], []
        for (h, kvh, d), uses in sorted(layouts.items()):
            for b in pb:
                for s in ps:
                    c = AttentionCase("prefill", b, s, s, h, kvh, d, tuple(uses))
                    if b * s <= pmax and c.kv_bytes <= KV_BYTES_LIMIT:
                        pre.append(c)
            for b in db:
                for L in dk:
                    c = AttentionCase("decode", b, 1, L, h, kvh, d, tuple(uses))
                    if b * L <= DECODE_MAX_TOKENS and c.kv_bytes <= KV_BYTES_LIMIT:
                        dec.append(c)
        sweep.prefill = sorted(pre, key=AttentionCase.sort_key)
        sweep.decode = sorted(dec, key=AttentionCase.sort_key)

    if "collectives" in ops:
        worlds = tuple(w for w in COLLECTIVE_WORLDS if w <= gpu_count)
        if not worlds:
            notes.append(f"collectives skipped: {gpu_count} GPU visible, NCCL collectives need at least 2")
        elems = COLLECTIVE_ELEMENTS_QUICK if quick else COLLECTIVE_ELEMENTS_FULL
        sweep.collectives = sorted((CollectiveCase(op, w, e) for w in worlds for op in COLLECTIVE_OPS
                                    for e in elems), key=CollectiveCase.sort_key)
    sweep.notes = list(dict.fromkeys(notes))
    return sweep


def estimate_flops(case: GemmCase | AttentionCase) -> float:
    """Useful FLOPs of a case (2 per multiply-add; causal prefill counts the lower triangle)."""
    if isinstance(case, GemmCase):
        return 2.0 * case.m * case.n * case.k
    b, h, d = case.batch, case.heads, case.head_dim
    if case.phase == "prefill":
        pairs = case.seq * (case.seq + 1) / 2.0
    else:
        pairs = float(case.kv_len)
    return 4.0 * b * h * d * pairs


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def sample(sweep: Sweep, max_cases: int, seed: int = 0) -> Sweep:
    """At most ``max_cases`` cases per family (GEMM, prefill, decode, collectives), drawn uniformly
    without replacement from the whole grid and kept in run order: a sweep that fits a short GPU lease
    and still spans every model, shape and size. Seeded per family, so the same arguments time the same
    cases."""
    import random

    if max_cases < 1:
        raise ConfigError(f"--max-cases must be at least 1, got {max_cases}")
    for family in ("gemm", "prefill", "decode", "collectives"):
        cases = getattr(sweep, family)
        if len(cases) <= max_cases:
            continue
        keep = sorted(random.Random(f"{seed}:{family}").sample(range(len(cases)), max_cases))
        setattr(sweep, family, [cases[i] for i in keep])
        sweep.notes.append(f"{family}: {max_cases} of {len(cases)} cases, drawn at random over the grid "
                           f"(--max-cases {max_cases}, --seed {seed})")
    return sweep


def describe(sweep: Sweep) -> str:
    """Readable summary of a sweep (for --dry-run)."""
    c = sweep.counts()
    lines = [f"models: {', '.join(sweep.models)}", f"tp degrees: {', '.join(map(str, sweep.tp_degrees))}",
             f"gemm: {c['gemm']} cases ({c['gemm_bf16']} bf16, {c['gemm_fp8']} fp8)",
             f"prefill attention: {c['prefill']} cases", f"decode attention: {c['decode']} cases",
             f"collectives: {c['collectives']} cases", f"total: {c['total']} cases"]
    if sweep.gemm:
        tflop = sum(estimate_flops(g) for g in sweep.gemm) / 1e12
        lines.append(f"gemm work: {tflop:.0f} TFLOP per timed call of every case")
    if sweep.decode:
        big = max(sweep.decode, key=lambda a: a.kv_bytes)
        lines.append(f"largest KV cache: {_fmt_bytes(big.kv_bytes)}")
    lines.extend(f"note: {n}" for n in sweep.notes)
    return "\n".join(lines)
