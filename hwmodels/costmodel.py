"""Operator cost: measured-style operator descriptions -> predicted seconds and joules.

``OperatorCostModel`` prices a table of operators (the standard measurement table of
validation/loaders.py, or one built by the caller) on the device each row names. It is what
`simulate validate` and `simulate calibrate` use; the simulator's per-iteration query lives in
hwmodels/deployment.py and shares the same compiled efficiency model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmsim.hwmodels import efficiency as eff
from llmsim.hwmodels.calibration import ClassParams, Profile, default_profile
from llmsim.hwmodels.devices import DeviceSpec, get_device
from llmsim.workloads import operators as ops
from llmsim.workloads.errors import LLMSimError

if TYPE_CHECKING:  # annotations only: a serving run never loads pandas
    import pandas as pd
from llmsim.workloads.quant import get_kv_format, get_quant_format

#: Kind of a measured attention call that mixes prefill chunks and decode tokens (priced as the sum).
MIXED_ATTENTION = "attn_mixed"

DTYPE_BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5}

# Measured dtype labels -> (quantization format, compute dtype override or None).
# 'w4a16_mxfp4' is MXFP4 weights run by a 16-bit Marlin kernel on GPUs without FP4 units.
MEASURED_DTYPE = {
    "bf16": ("bf16", None), "fp16": ("fp16", None), "fp32": ("fp32", None),
    "fp8": ("fp8", None), "fp8_block": ("fp8_block", None), "int8": ("w8a8", None),
    "int4_wo": ("w4a16", None), "w4a16": ("w4a16", None), "w4a16_mxfp4": ("mxfp4", "bf16"),
    "nvfp4": ("nvfp4", None), "mxfp4": ("mxfp4", None),
}


# Kernel implementations measured side by side for one dtype behave differently (DeepGEMM vs
# CUTLASS fp8 block GEMMs, FA3 vs FA4); each gets its own coefficients, keyed "<dtype>:<family>".
_KERNEL_FAMILIES = ("deepgemm", "flashinfer", "cutlass", "marlin", "oaitriton", "triton", "fa4", "fa3",
                    "flash_attn", "torch", "vllm_default")


def kernel_family(kernel: str) -> str:
    """Short name of a measured kernel's implementation family ('' when unknown or unnamed)."""
    k = str(kernel or "").lower().replace("-", "_")
    if "oaitriton" in k:
        return "oaitriton"
    for fam in _KERNEL_FAMILIES:
        if fam in k:
            return fam
    return ""


def param_group(op_class: str, dtype: str, kv_dtype: str = "", kernel: str = "", variant: str = "") -> str:
    """The dtype family (and kernel family, when the data name one) whose coefficients price an op.

    gemm/moe: the quantization format; attention: the KV-cache dtype; elementwise: 'any';
    collectives: the backend (nccl, custom_graph, custom_eager).
    """
    if op_class in ("gemm", "moe", "attn_prefill", "attn_decode"):
        if op_class in ("gemm", "moe"):
            fmt = MEASURED_DTYPE.get(dtype, (dtype, None))[0]
            base = "bf16" if fmt in ("bf16", "fp16", "fp32") else fmt
        else:
            base = "fp8" if kv_dtype in ("fp8", "fp8_e4m3", "int8") else "bf16"
        fam = kernel_family(kernel)
        return f"{base}:{fam}" if fam else base
    if op_class == "elementwise":
        return "any"
    text = f"{kernel} {variant}".lower()
    if "custom" in text or "vllm_" in text:
        return "custom_graph" if "graph" in text else "custom_eager"
    return "nccl"


#: Calibration group of the activation-quantisation pass (below); it has no coefficients of its own.
QUANT_PASS_GROUP = "act_quant"
#: Suffix of the calibration key of a GEMM whose price includes that pass (``OperatorCostModel.price``).
QUANT_PASS_SUFFIX = "+act_quant"
_UNQUANTISED_GROUPS = ("bf16", "fp16", "fp32")


def needs_quant_pass(activation_dtype: str, param_key: str) -> bool:
    """Whether pricing a GEMM whose activations are ``activation_dtype`` by the calibration entry ``param_key``
    (``arch/class/group``) must add the activation-quantisation pass: a format with narrower-than-16-bit
    activations (fp8, int8, fp4) quantises its 16-bit input in a kernel of its own before the GEMM (vLLM
    ``_custom_ops.scaled_fp8_quant``: ``static_scaled_fp8_quant`` reads the m x k input and writes it in
    fp8, a launch apart from ``cutlass_scaled_mm`` [S: vllm/_custom_ops.py]), and the entry was fitted on
    16-bit kernels, which never ran it. An entry of the format itself was fitted on measured layers that
    include the pass (aiconfigurator times vLLM's whole fp8 linear layer), so it adds nothing."""
    group = param_key.rsplit("/", 1)[-1].split(":", 1)[0]
    return group in _UNQUANTISED_GROUPS and DTYPE_BYTES[activation_dtype] < 2.0


def quant_pass_bytes_per_element(activation_dtype: str) -> float:
    """Bytes the pass moves per activation element: a 16-bit read and a write in ``activation_dtype``
    (scales, a few bytes per row or group, left out)."""
    return 2.0 + DTYPE_BYTES[activation_dtype]


def quant_pass_params(profile: Profile, arch: str) -> tuple[ClassParams, str]:
    """Coefficients that price the pass as ``floor + bytes / bandwidth``: the floor of the class's elementwise
    kernels (its smallest memory-bound kernel) and the memory roofline with no fitted efficiency (theta 0),
    since the elementwise surface was fitted on other kernels' shapes and extrapolates badly to tiny rows."""
    p, key = profile.lookup(arch, "elementwise", "any")
    return ClassParams(p.log_floor, np.zeros(eff.NUM_FEATURES["elementwise"])), f"{key}:{QUANT_PASS_GROUP}"


def attention_compute_dtype(device: DeviceSpec, kv_dtype: str) -> str:
    """The tensor peak attention's roofline uses: the 16-bit one, whatever the KV cache's dtype.

    An FP8 KV cache halves the bytes attention streams, not its compute time: on H100 under vLLM 0.24
    (FlashAttention 3, aiconfigurator context_attention_perf, 25,126 prefill shapes measured with both KV
    dtypes) FP8-KV prefill takes 1.11-1.22x the BF16-KV time below 3 ms, 1.05x at 3-10 ms and 0.98x above,
    reaching a median 556 TFLOP/s above 10 ms against BF16's 575 (datasheet peaks 1979 / 989);
    ``python benchmarks/bench_dtype_ratio.py --attention`` prints the table. From the FP8 peak, a GPU whose
    FP8 attention no calibration measured (the L40S) was priced twice as fast with an FP8 KV cache, and
    H100 left out of the fit was priced 0.60x its measured FP8-KV prefill (0.70x from the 16-bit peak;
    benchmarks/bench_loao.py, docs/trust.md).
    Both arguments are unused today; they are where a measured exception (a device or KV format whose
    attention does run faster) would go, for both callers (pricing tables and deployments) at once."""
    return "bf16"


def _moe_skew(distribution: str) -> float:
    """Router skew feature: 0 for balanced routing, the power-law exponent otherwise."""
    d = str(distribution or "balanced")
    if d.startswith("power_law_"):
        return float(d.rsplit("_", 1)[1])
    return 0.0


@dataclass(frozen=True)
class PricedRows:
    """Predictions for a table of operators, aligned with its rows."""

    seconds: np.ndarray       # NaN where the row could not be expressed
    reason: np.ndarray        # '' where predicted, else why not (object array of str)
    param_key: np.ndarray     # which calibration entry priced the row
    op_class: np.ndarray
    extrapolated: np.ndarray | None = None  # True where the shape lies outside its class's fitted range
    fallback: np.ndarray | None = None      # '' where the device's own class and kernel family priced the row,
                                            # else 'class' (another architecture class) or 'family' (another kernel family)
    sibling: np.ndarray | None = None       # the device the entry was fitted on where sibling transfer priced the
                                            # row (efficiency.py _combine_sibling), else ''


class OperatorCostModel:
    """Prices operator rows with a calibration profile (the shipped one by default)."""

    def __init__(self, profile: Profile | None = None):
        self.profile = profile if profile is not None else default_profile()

    # -- shape rows ---------------------------------------------------------------------------
    @staticmethod
    def shape_rows(op_class: str, g: pd.DataFrame, device: DeviceSpec) -> tuple[np.ndarray, np.ndarray]:
        """(shape rows, device vector) of a group of rows that share class, dtype and device."""
        f = lambda c: g[c].to_numpy(np.float64)  # noqa: E731
        first = g.iloc[0]
        bw = device.memory_bandwidth_bytes_per_s
        link = device.scale_up_link.bandwidth_bytes_per_s if device.scale_up_link is not None else bw
        if op_class in ("gemm", "moe"):
            fmt_name, compute_override = MEASURED_DTYPE.get(first["dtype"], (first["dtype"], None))
            fmt = get_quant_format(fmt_name)
            compute = compute_override or fmt.compute_dtype
            act_b = DTYPE_BYTES[fmt.activation_dtype] if compute_override is None else 2.0
            dev = np.array([device.peak_flops(compute), bw, device.num_sms, link])
            if op_class == "gemm":
                m, n, k = f("m"), f("n"), f("k")
                flops, nbytes = ops.gemm_work_v(m, n, k, act_b, fmt.bytes_per_weight)
                return np.column_stack([m, n, k, flops, nbytes]), dev
            T, H, I = f("tokens"), f("hidden"), f("inter")
            K, E = f("topk"), f("experts")
            tp = np.nan_to_num(f("moe_tp"), nan=1.0)
            ep = np.nan_to_num(f("moe_ep"), nan=1.0)
            flops, nbytes = ops.moe_work_v(T, H, I / tp, K, E, ep, fmt.bytes_per_weight, act_b)
            skew = g["distribution"].map(_moe_skew).to_numpy(np.float64)
            return np.column_stack([T, H, I / tp, K, E, ep, skew, flops, nbytes]), dev
        if op_class in ("attn_prefill", "attn_decode"):
            kv_name = str(first.get("kv_dtype") or "bf16")
            dev = np.array([device.peak_flops(attention_compute_dtype(device, kv_name)), bw, device.num_sms, link])
            kv_b = get_kv_format(kv_name).bytes_per_element
            b, h, kvh, d = f("batch"), f("heads"), f("kv_heads"), f("head_dim")
            w = np.nan_to_num(f("window"), nan=0.0)
            if op_class == "attn_prefill":
                s = f("seq")
                c = np.nan_to_num(f("ctx"), nan=0.0)
                flops, nbytes = ops.attention_prefill_work_v(b, s, c, h, kvh, d, kv_b, w)
                return np.column_stack([b, s, c, h, kvh, d, w, flops, nbytes]), dev
            L = f("ctx") + 1.0  # the new token attends to the cached tokens and itself
            flops, nbytes = ops.attention_decode_work_v(b, L, h, kvh, d, kv_b, w)
            return np.column_stack([b, L, h, kvh, d, w, flops, nbytes]), dev
        if op_class == "elementwise":
            dev = np.array([device.peak_flops("bf16"), bw, device.num_sms, link])
            kind = g["kind"].to_numpy(object).copy()
            variant = g["variant"].fillna("").to_numpy(object)
            kind[(kind == "activation") & (variant == "gelu")] = "gelu"
            tokens, width = _elementwise_extent(g, kind)
            code = np.array([ops.ELEMENTWISE_CODE[k] for k in kind], dtype=np.int64)
            act_b = DTYPE_BYTES.get(str(first["dtype"]), 2.0)
            flops, nbytes = ops.elementwise_work_v(code, tokens, width, act_b)
            return np.column_stack([code, flops, nbytes]), dev
        # collective
        dev = np.array([device.peak_flops("bf16"), bw, device.num_sms, link])
        code = np.array([ops.COLLECTIVE_CODE[k] for k in g["kind"]], dtype=np.int64)
        ranks = f("num_gpus")
        factor = ops.collective_traffic_factor_v(code, ranks)
        return np.column_stack([code, ranks, f("message_bytes"), factor]), dev

    # -- prediction ---------------------------------------------------------------------------
    def price(self, table: pd.DataFrame, *, device: str | DeviceSpec | None = None) -> PricedRows:
        """Predict every row of a standard measurement table (device from its `device` column
        unless ``device`` overrides it). Rows the model cannot express get NaN and a reason.
        A row whose ``timing`` is 'eager' costs at least its entry's host floor (``ClassParams.host_floor_s``);
        any other row priced under that floor by such an entry is flagged extrapolated (never measured)."""
        n = len(table)
        seconds = np.full(n, np.nan)
        reason = np.full(n, "", dtype=object)
        key = np.full(n, "", dtype=object)
        op_class = np.array([ops.KIND_CLASS.get(k, "") for k in table["kind"]], dtype=object)
        extra = np.zeros(n, dtype=bool)
        fallback = np.full(n, "", dtype=object)
        sibling = np.full(n, "", dtype=object)
        mixed = (table["kind"] == MIXED_ATTENTION).to_numpy()
        if mixed.any():
            self._price_mixed(table, mixed, device, seconds, reason, key, extra, fallback, sibling)
            op_class[mixed] = MIXED_ATTENTION
            table = table[~mixed]
        rest = np.flatnonzero(~mixed)
        eager_timed = (table["timing"] == "eager").to_numpy() if "timing" in table.columns else np.zeros(len(table), bool)
        for grp in operator_groups(table, device=device):
            first = table.iloc[grp.positions[:1]]
            eager = eager_timed[grp.positions]
            grp = dataclasses.replace(grp, positions=rest[grp.positions])
            if grp.error:
                reason[grp.positions] = grp.error
                continue
            try:
                p, pkey = self.profile.lookup(grp.device.arch_class, grp.op_class, grp.group)
            except LLMSimError as e:
                reason[grp.positions] = str(e)
                continue
            lo, hi = p.shape_range(grp.op_class)
            dev = self.profile.device_vector(grp.device, grp.device_vector)  # datasheet or achieved roofline
            dev = self.profile.sibling_vector(  # fitted on another device: sibling transfer
                p, grp.device, dev, float(grp.device_vector[0]), reference_peaks=lambda ref, c=grp.op_class, g=first: tuple(
                    OperatorCostModel.shape_rows(c, g, ref)[1][:2]))
            if eff.has_sibling_reference(dev):
                sibling[grp.positions] = p.fitted_device
            seconds[grp.positions] = eff.predict_rows_ranged(eff.CLASS_INDEX[grp.op_class], grp.shapes,
                                                             dev, p.log_floor, p.theta, lo, hi)
            if grp.op_class == "gemm":
                act = get_quant_format(grp.group.split(":", 1)[0]).activation_dtype  # group: the format
                if needs_quant_pass(act, pkey):
                    seconds[grp.positions] += self._quant_pass(grp, act, dev)
                    pkey += QUANT_PASS_SUFFIX
            if p.host_floor_s > 0 and eager.any():  # timed eagerly: a call costs at least its host dispatch
                sel = grp.positions[eager]
                seconds[sel] = np.maximum(seconds[sel], p.host_floor_s)
            extra[grp.positions] = eff.extrapolated_rows(eff.CLASS_INDEX[grp.op_class], grp.shapes, lo, hi)
            if p.host_floor_s > 0:  # a GPU time under the host floor of the entry's eager rows was never measured
                extra[grp.positions] |= ~eager & (seconds[grp.positions] < p.host_floor_s)
            key[grp.positions] = pkey
            fallback[grp.positions] = fallback_kind(pkey, grp.device.arch_class, grp.op_class, grp.group)
        return PricedRows(seconds, reason, key, op_class, extra, fallback, sibling)

    def _quant_pass(self, grp: OperatorGroup, activation_dtype: str, dev: np.ndarray) -> np.ndarray:
        """Seconds of the activation-quantisation pass of every GEMM row of ``grp`` (``needs_quant_pass``)."""
        p, _ = quant_pass_params(self.profile, grp.device.arch_class)
        elems = grp.shapes[:, 0] * grp.shapes[:, 2]  # m x k input activations
        rows = np.column_stack([np.full(elems.size, float(ops.ELEMENTWISE_CODE["embedding"])), np.zeros(elems.size),
                                elems * quant_pass_bytes_per_element(activation_dtype)])
        return eff.predict_rows(eff.CLASS_INDEX["elementwise"], rows, dev, p.log_floor, p.theta)

    def _price_mixed(self, table, mixed, device, seconds, reason, key, extra, fallback, sibling) -> None:
        """A mixed prefill+decode attention row is priced as its prefill part plus its decode part."""
        rows = table[mixed]
        pre = rows.assign(kind="attn_prefill")
        dec = rows.assign(kind="attn_decode", batch=rows["decode_batch"], ctx=rows["decode_ctx"], seq=1.0)
        a, b = self.price(pre.reset_index(drop=True), device=device), self.price(dec.reset_index(drop=True), device=device)
        pos = np.flatnonzero(mixed)
        seconds[pos] = a.seconds + b.seconds
        reason[pos] = [ra or rb for ra, rb in zip(a.reason, b.reason)]
        key[pos] = [f"{ka} + {kb}" if ka and kb else "" for ka, kb in zip(a.param_key, b.param_key)]
        extra[pos] = a.extrapolated | b.extrapolated
        fallback[pos] = [fa or fb for fa, fb in zip(a.fallback, b.fallback)]
        sibling[pos] = [sa or sb for sa, sb in zip(a.sibling, b.sibling)]


def fallback_kind(param_key: str, arch: str, op_class: str, group: str) -> str:
    """'' when ``param_key`` (``arch/class/group`` from Profile.lookup) is the operator's own entry (or
    its dtype's principal kernel family when the operator names none), 'class' when another
    architecture class's coefficients priced it, 'family' when another kernel family's did."""
    k_arch, _, k_group = param_key.split("/", 2)
    if k_arch != arch:
        return "class"
    return "" if k_group == group else "family"


@dataclass(frozen=True)
class OperatorGroup:
    """Rows of a table that share device, operator class and dtype group, as compiled shape rows."""

    positions: np.ndarray
    op_class: str
    group: str
    device: DeviceSpec | None
    shapes: np.ndarray | None
    device_vector: np.ndarray | None
    error: str = ""


def operator_groups(table: pd.DataFrame, *, device: str | DeviceSpec | None = None):
    """Yield the table's rows grouped for pricing or fitting; unexpressable rows come with a reason."""
    n = len(table)
    op_class = np.array([ops.KIND_CLASS.get(k, "") for k in table["kind"]], dtype=object)
    t = table.assign(_cls=op_class, _pos=np.arange(n))
    unknown = t["_cls"] == ""
    if unknown.any():
        yield OperatorGroup(t.loc[unknown, "_pos"].to_numpy(), "", "", None, None, None,
                            "operator kind not modelled")
    t = t[~unknown]
    per_node = t["variant"].str.extract(r"devices_per_node=(\d+)", expand=False).astype(float)
    if per_node.notna().any():
        cross = ((t["_cls"] == "collective") & (t["num_gpus"] > per_node)).to_numpy()
        if cross.any():
            yield OperatorGroup(t.loc[cross, "_pos"].to_numpy(), "collective", "", None, None, None,
                                "collective spans several nodes: needs a cluster model")
        t = t[~cross]
    if t.empty:
        return
    t = t.assign(_group=[param_group(c, d, kv, kn, v) for c, d, kv, kn, v in zip(
        t["_cls"], t["dtype"].fillna(""), t["kv_dtype"].fillna(""), t["kernel"].fillna(""),
        t["variant"].fillna(""))])
    dev_names = t["device"] if device is None else [device if isinstance(device, str) else device.name] * len(t)
    t = t.assign(_dev=list(dev_names))
    for (dev_name, cls, group, _dtype, _kv), g in t.groupby(
            ["_dev", "_cls", "_group", "dtype", "kv_dtype"], sort=True, dropna=False):
        pos = g["_pos"].to_numpy()
        try:
            spec = device if isinstance(device, DeviceSpec) else get_device(dev_name)
            shapes, dvec = OperatorCostModel.shape_rows(cls, g, spec)
        except LLMSimError as e:
            yield OperatorGroup(pos, cls, group, None, None, None, str(e))
            continue
        yield OperatorGroup(pos, cls, group, spec, np.ascontiguousarray(shapes), dvec)


def _elementwise_extent(g: pd.DataFrame, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, width) of elementwise operators from the standard table's columns."""
    tokens = g["tokens"].to_numpy(np.float64).copy()
    width = g["hidden"].to_numpy(np.float64).copy()
    is_rope = kind == "rope"
    width[is_rope] = ((g["heads"] + g["kv_heads"]) * g["head_dim"]).to_numpy(np.float64)[is_rope]
    is_act = (kind == "activation") | (kind == "gelu")
    width[is_act] = g["inter"].to_numpy(np.float64)[is_act]
    is_sm = kind == "softmax"
    tokens[is_sm] = g["m"].to_numpy(np.float64)[is_sm]
    width[is_sm] = g["n"].to_numpy(np.float64)[is_sm]
    return tokens, width
