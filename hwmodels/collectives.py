"""Alpha-beta models of collectives on a placed group (:class:`llmsim.hwmodels.network.GroupTopology`).

Units: seconds, bytes, bytes/s. ``S`` is the message size as nccl-tests counts it (all_reduce: the
reduced buffer; all_gather / reduce_scatter: the full gathered buffer; all_to_all: one rank's whole
send buffer; send_recv: the bytes sent). ``n`` ranks on ``N`` nodes, ``r`` ranks per node.

Every candidate (an algorithm x protocol, as in NCCL's tuner) costs an affine
``t_a(S) = alpha_a + beta_a * S`` with ``beta_a > 0``; ``algorithm="auto"`` takes the minimum over
NCCL's candidates, the choice NCCL's tuner makes (it too models each algorithm x protocol as a latency
plus size / bandwidth and picks the fastest). So time is non-decreasing in ``S`` and never lower on a
slower or higher-latency link. :func:`collective_coefficients` returns the ``(alpha, beta)`` rows.

Parameters (``hwmodels/data/network_calibration.yaml``), per transport (``nvlink``, ``xgmi``, ``pcie``,
``ib``, ``roce``, ``tcp``; a set may be keyed by the device's arch class, ``nvlink@hopper``, with the
bare name as fallback) and protocol ``p`` in ``ll``, ``ll128``, ``simple`` (plus ``p2p``, NCCL's
send/recv Simple path): ``eff_p`` (achieved fraction of the link bandwidth), ``base_p`` (seconds per
call) and ``step_p`` (software seconds per algorithm step, added to the link's hardware
``latency_s``); and per transport ``c`` = ``extra_chunks`` (extra bytes each rank moves per
collective, in units of ``S/n``: local copies and reduction traffic). For a link ``L``:
``e = eff_p * L.bandwidth_bytes_per_s`` (per rank), ``lam = L.latency_s + step_p``; intra-node
``(e_n, lam_n)``, inter-node ``(e_i, lam_i)``; ``b`` = the largest ``base_p`` involved; ``x = c/n``.

One node (link = intra)::

    all_reduce   ring     alpha = b + 2(n-1) lam           beta = (2(n-1)/n + x) / e
                 tree     alpha = b + 2 ceil(log2 n) lam   beta = (2 + x) / e   (double binary tree)
    all_gather / reduce_scatter
                 ring     alpha = b + (n-1) lam            beta = ((n-1)/n + x) / e
    all_to_all   direct   alpha = b + (n-1) lam            beta = ((n-1)/n + x) / e   (pairwise; LL, Simple)
    send_recv    p2p      alpha = b + lam                  beta = 1 / e   (LL, or the p2p parameters)

Several nodes (``inter.bandwidth_bytes_per_s`` is per rank, so a node pushes ``r e_i`` over its
``r`` rails; ``m = max(1/(r e_i), 1/e_n)`` is the slower of the rails and the intra link)::

    all_reduce   ring          alpha = b + 2[(n-N) lam_n + (N-1) lam_i]   beta = (2(n-1)/n + x) m
                 tree          alpha = b + 2[(r-1) lam_n + ceil(log2 N) lam_i]   beta = (2 + x) m
                 hierarchical  (r > 1; intra reduce-scatter, inter ring all-reduce of S/r per rank,
                               intra all-gather)   alpha = b + 2(r-1) lam_n + 2(N-1) lam_i
                               beta = 2(r-1)/(r e_n) + 2(N-1)/(N r e_i) + x m
    all_gather / reduce_scatter
                 ring          alpha = b + (n-N) lam_n + (N-1) lam_i      beta = ((n-1)/n + x) m
                 hierarchical  alpha = b + (r-1) lam_n + (N-1) lam_i
                               beta = (r-1)/(r e_n) + (N-1)/(n e_i) + x m
    all_to_all   direct        alpha = b + (r-1) lam_n + (n-r) lam_i
                               beta = (r-1)/(n e_n) + (n-r)/(n e_i) + x m
    send_recv    p2p           alpha = b + lam_i                           beta = 1 / e_i

(terms with ``e_n`` drop out when ``r == 1``; ``c`` comes from the inter-node set). A group of one
rank costs 0. ``hierarchical`` is priced only when asked for by name: NCCL's tuner has no such
algorithm (frameworks compose it from intra- and inter-node calls), and the measured multi-node
NCCL runs are better matched without it.

vLLM's custom all-reduce is not NCCL and ``auto`` never picks it: ``algorithm="custom_graph"`` or
``"custom_eager"`` (all_reduce on one node) prices it with its own set: ``one_shot``
``alpha = b + lam, beta = (n-1)/e`` (every rank reads every peer's buffer over NVLink P2P) and
``two_shot`` ``alpha = b + 2 lam, beta = 2(n-1)/(n e)`` (reduce-scatter + all-gather). vLLM picks the
kernel by size, not by speed, so a bare custom family prices the protocol vLLM would run
(:func:`custom_allreduce_protocol`): one-shot on 2 ranks, else one-shot below 512 KiB (<= 4 ranks) or
256 KiB (<= 8 ranks) and two-shot above [S: vLLM csrc/custom_all_reduce.cuh, ``REDUCE_CASE``:
``cross_device_reduce_1stage`` / ``_2stage``]. vLLM uses it for messages below
:data:`CUSTOM_ALLREDUCE_MAX_BYTES` on 2, 4, 6 or 8 ranks of one node (NCCL above)
[S: vLLM vllm/distributed/device_communicators/custom_all_reduce.py, ``max_size=8192 * 1024``,
``_SUPPORTED_WORLD_SIZES``, ``should_custom_ar``: ``inp_size < self.max_size``].
:func:`tp_allreduce_segments` gives a TP group's all-reduce as vLLM runs it: message-size ranges,
each priced by its own candidates of this one model.

Algorithm names are ``"<family>/<protocol>"`` (``ring/simple``, ``tree/ll``, ``hierarchical/ll128``,
``direct/simple``, ``p2p/ll``, ``custom_graph/one_shot``); ``algorithm=`` takes ``auto``, a family
(the best of its protocols) or a full name.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from llmsim.hwmodels.network import TRANSPORTS, GroupTopology, LinkClass
from llmsim.workloads.errors import ConfigError
from llmsim.workloads.yamlio import check_fields, read_yaml

__all__ = [
    "COLLECTIVES", "NCCL_PROTOCOLS", "CUSTOM_FAMILIES", "CUSTOM_PROTOCOLS", "ProtocolParams",
    "ParamSet", "NetworkParams", "collective_seconds", "collective_coefficients", "collective_candidates",
    "choose_algorithm", "default_network_params", "load_network_params", "network_params_from_dict",
    "CUSTOM_ALLREDUCE_MAX_BYTES", "CUSTOM_ALLREDUCE_RANKS", "custom_allreduce_protocol", "tp_allreduce_segments",
]

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
NCCL_PROTOCOLS = ("ll", "ll128", "simple")
CUSTOM_FAMILIES = ("custom_graph", "custom_eager")
CUSTOM_PROTOCOLS = ("one_shot", "two_shot")
NCCL_FAMILIES = {
    "all_reduce": ("ring", "tree", "hierarchical"),
    "all_gather": ("ring", "hierarchical"),
    "reduce_scatter": ("ring", "hierarchical"),
    "all_to_all": ("direct",),
    "send_recv": ("p2p",),
}
P2P_KINDS = ("all_to_all", "send_recv")
# vLLM's custom all-reduce serves messages strictly below this size [S: vLLM custom_all_reduce.py,
# CustomAllreduce(max_size=8192 * 1024); should_custom_ar returns inp_size < self.max_size].
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 1024 * 1024
# Group sizes it runs on [S: custom_all_reduce.py, CustomAllreduce._SUPPORTED_WORLD_SIZES].
CUSTOM_ALLREDUCE_RANKS = (2, 4, 6, 8)
# One-shot below these sizes on a fully NVLink-connected group of <= 4 / <= 8 ranks, two-shot above
# [S: vLLM csrc/custom_all_reduce.cuh, CustomAllreduce::allreduce, REDUCE_CASE]; 2 ranks: always one-shot.
_ONE_SHOT_BELOW = ((4, 512 * 1024), (8, 256 * 1024))
# What ``auto`` chooses among: NCCL's own algorithms. NCCL's tuner has no two-level hierarchical
# all-reduce (frameworks compose it from intra/inter-node calls): it is priced by name only.
AUTO_FAMILIES = ("ring", "tree", "direct", "p2p")
_SET_BASES = TRANSPORTS + CUSTOM_FAMILIES
_YAML_NAME = "network_calibration.yaml"
# How the parameters were fitted (written by validation/network.py; read back to count rows_in_fit).
_FIT_KEYS = ("command", "date", "salt", "holdout_fraction", "max_rows_per_group", "loss_scale", "prior_weight",
             "sources")


# ------------------------------------------------------------------------------------ parameters

@dataclass(frozen=True)
class ProtocolParams:
    """``efficiency``: achieved fraction of the link bandwidth; ``base_s``: fixed seconds per call;
    ``step_s``: software seconds per algorithm step (on top of the link's ``latency_s``)."""

    efficiency: float
    base_s: float
    step_s: float


@dataclass(frozen=True)
class ParamSet:
    """The parameters of one transport (or custom all-reduce family), optionally for one arch class.
    ``p2p``: NCCL's point-to-point (send/recv) Simple path, which has its own launch cost and reaches
    more of a link than a ring step does; ``extra_chunks``: extra bytes each rank moves per collective,
    in units of ``S / n`` (local copies, reduction traffic); None / 0 for custom families."""

    name: str
    protocols: Mapping[str, ProtocolParams]
    source: str = ""
    p2p: ProtocolParams | None = None
    extra_chunks: float = 0.0


@dataclass(frozen=True)
class NetworkParams:
    """Every parameter set, keyed ``"<transport>"`` or ``"<transport>@<arch_class>"``, plus the
    record of how they were fitted (``fit``: salt, hold-out fraction, fitted files' sha256)."""

    sets: Mapping[str, ParamSet]
    fit: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    def lookup(self, base: str, arch: str = "") -> ParamSet:
        """The set for ``base`` (a transport or custom family) on ``arch``, else the generic one.
        ``arch`` may name several hints, most specific first (``"<setup>/<arch_class>"``: a measured
        setup's own set, then the arch class's)."""
        for hint in arch.split("/") if arch else ():
            s = self.sets.get(f"{base}@{hint}")
            if s is not None:
                return s
        s = self.sets.get(base)
        if s is None:
            raise ConfigError(f"no network parameters for {base!r} (have: {', '.join(sorted(self.sets))})")
        return s


def _positive(where: str, key: str, v: Any, *, allow_zero: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (v == 0 and not allow_zero):
        raise ConfigError(f"{where}: `{key}` must be a finite number {'>=' if allow_zero else '>'} 0, got {v!r}")
    return float(v)


def _protocol(where: str, body: Any) -> ProtocolParams:
    fields = check_fields(body, where, ("efficiency", "base_s", "step_s"))
    return ProtocolParams(_positive(where, "efficiency", fields["efficiency"], allow_zero=False),
                          _positive(where, "base_s", fields["base_s"], allow_zero=True),
                          _positive(where, "step_s", fields["step_s"], allow_zero=True))


def network_params_from_dict(data: Any, where: str = "network parameters") -> NetworkParams:
    """Build :class:`NetworkParams` from the YAML's mapping, strictly (unknown keys are errors)."""
    data = check_fields(data, where, ("sets",), ("fit",))
    sets_in = data["sets"]
    if not isinstance(sets_in, dict) or not sets_in:
        raise ConfigError(f"{where}: `sets` must be a non-empty mapping")
    sets: dict[str, ParamSet] = {}
    for name, body in sets_in.items():
        name = str(name)
        base, at, arch = name.partition("@")
        if base not in _SET_BASES or (at and not arch):
            raise ConfigError(f"{where}: unknown parameter set {name!r}; names are one of "
                              f"{', '.join(_SET_BASES)}, optionally followed by '@<arch_class>'")
        protos = CUSTOM_PROTOCOLS if base in CUSTOM_FAMILIES else NCCL_PROTOCOLS
        w = f"{where}: sets.{name}"
        custom = base in CUSTOM_FAMILIES
        body = check_fields(body, w, ("source", *protos) if custom else ("source", *protos, "p2p", "extra_chunks"))
        if not isinstance(body["source"], str) or not body["source"].strip():
            raise ConfigError(f"{w}: `source` must be a non-empty string")
        pp = {p: _protocol(f"{w}.{p}", body[p]) for p in protos}
        p2p = None if custom else _protocol(f"{w}.p2p", body["p2p"])
        extra = 0.0 if custom else _positive(w, "extra_chunks", body["extra_chunks"], allow_zero=True)
        sets[name] = ParamSet(name, MappingProxyType(pp), body["source"], p2p, extra)
    missing = [t for t in _SET_BASES if t not in sets]
    if missing:
        raise ConfigError(f"{where}: missing parameter sets {', '.join(missing)}")
    fit = check_fields(data.get("fit") or {}, f"{where}: fit", (), _FIT_KEYS)
    for i, src in enumerate(fit.get("sources") or ()):
        check_fields(src, f"{where}: fit.sources[{i}]", ("path", "sha256"), ("rows", "rows_in_fit", "fitted_groups"))
    return NetworkParams(MappingProxyType(sets), MappingProxyType(fit))


def load_network_params(path: str | Path) -> NetworkParams:
    """Read a network parameter YAML (the shipped one's format) strictly."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read network parameters: {exc.strerror or exc}") from None
    params = network_params_from_dict(read_yaml(text, str(p)), str(p))
    return NetworkParams(params.sets, params.fit, str(p))


@functools.cache
def default_network_params() -> NetworkParams:
    """The shipped parameters (``hwmodels/data/network_calibration.yaml``), read once."""
    ref = resources.files("llmsim.hwmodels") / "data" / _YAML_NAME
    params = network_params_from_dict(read_yaml(ref.read_text(), _YAML_NAME, shipped=True), _YAML_NAME)
    return NetworkParams(params.sets, params.fit, "<default>")


# ------------------------------------------------------------------------------------ the model

def _check_kind(kind: str) -> None:
    if kind not in COLLECTIVES:
        raise ConfigError(f"collective kind must be one of {', '.join(COLLECTIVES)}, got {kind!r}")


def _link_terms(link: LinkClass, pp: ProtocolParams) -> tuple[float, float]:
    """(achieved bytes/s per rank, seconds per step) of one protocol on one link."""
    return pp.efficiency * link.bandwidth_bytes_per_s, link.latency_s + pp.step_s


def _nccl_candidates(kind: str, topo: GroupTopology, params: NetworkParams, arch: str) -> list:
    n, N, r = topo.ranks, topo.nodes, topo.ranks_per_node
    intra = params.lookup(topo.intra.transport, arch) if topo.intra is not None and r > 1 else None
    inter = params.lookup(topo.inter.transport, arch) if N > 1 else None
    out = []
    for p in NCCL_PROTOCOLS:
        if p == "ll128" and kind in P2P_KINDS:
            continue  # NCCL's point-to-point transfers run LL or Simple, never LL128
        if N == 1:
            ps = intra
            pp = ps.p2p if kind == "send_recv" and p == "simple" else ps.protocols[p]
            e, lam = _link_terms(topo.intra, pp)
            b, x = pp.base_s, ps.extra_chunks / n  # x: extra bytes per rank, as a fraction of S
            if kind == "all_reduce":
                out.append((f"ring/{p}", b + 2 * (n - 1) * lam, (2 * (n - 1) / n + x) / e))
                out.append((f"tree/{p}", b + 2 * math.ceil(math.log2(n)) * lam, (2 + x) / e))
            elif kind in ("all_gather", "reduce_scatter"):
                out.append((f"ring/{p}", b + (n - 1) * lam, ((n - 1) / n + x) / e))
            elif kind == "all_to_all":
                out.append((f"direct/{p}", b + (n - 1) * lam, ((n - 1) / n + x) / e))
            else:
                out.append((f"p2p/{p}", b + lam, 1 / e))
            continue
        ppi = inter.p2p if kind == "send_recv" and p == "simple" else inter.protocols[p]
        ei, lami = _link_terms(topo.inter, ppi)
        b, x = ppi.base_s, inter.extra_chunks / n
        if intra is not None:
            ppn = intra.protocols[p]
            en, lamn = _link_terms(topo.intra, ppn)
            b = max(b, ppn.base_s)
            inv_n = 1 / en
        else:
            lamn, inv_n = 0.0, 0.0
        node_inv = max(1 / (r * ei), inv_n)  # the slower of a node's rails and the intra link
        if kind == "all_reduce":
            out.append((f"ring/{p}", b + 2 * ((n - N) * lamn + (N - 1) * lami), (2 * (n - 1) / n + x) * node_inv))
            out.append((f"tree/{p}", b + 2 * ((r - 1) * lamn + math.ceil(math.log2(N)) * lami), (2 + x) * node_inv))
            if r > 1:
                out.append((f"hierarchical/{p}", b + 2 * (r - 1) * lamn + 2 * (N - 1) * lami,
                            2 * (r - 1) / r * inv_n + 2 * (N - 1) / (N * r * ei) + x * node_inv))
        elif kind in ("all_gather", "reduce_scatter"):
            out.append((f"ring/{p}", b + (n - N) * lamn + (N - 1) * lami, ((n - 1) / n + x) * node_inv))
            if r > 1:
                out.append((f"hierarchical/{p}", b + (r - 1) * lamn + (N - 1) * lami,
                            (r - 1) / r * inv_n + (N - 1) / (n * ei) + x * node_inv))
        elif kind == "all_to_all":
            out.append((f"direct/{p}", b + (r - 1) * lamn + (n - r) * lami,
                        (r - 1) / n * inv_n + (n - r) / (n * ei) + x * node_inv))
        else:
            out.append((f"p2p/{p}", b + lami, 1 / ei))
    return out


def _custom_candidates(family: str, kind: str, topo: GroupTopology, params: NetworkParams, arch: str) -> list:
    if kind != "all_reduce" or topo.nodes > 1:
        raise ConfigError(f"algorithm {family!r} (vLLM custom all-reduce) prices only all_reduce on one node, "
                          f"got {kind} on {topo.nodes} node(s)")
    n = topo.ranks
    ps = params.lookup(family, arch)
    pp = ps.protocols["one_shot"]
    e, lam = _link_terms(topo.intra, pp)
    out = [(f"{family}/one_shot", pp.base_s + lam, (n - 1) / e)]
    pp = ps.protocols["two_shot"]
    e, lam = _link_terms(topo.intra, pp)
    out.append((f"{family}/two_shot", pp.base_s + 2 * lam, 2 * (n - 1) / (n * e)))
    return out


def _families(kind: str) -> tuple[str, ...]:
    return NCCL_FAMILIES[kind] + (CUSTOM_FAMILIES if kind == "all_reduce" else ())


def collective_candidates(kind: str, topo: GroupTopology, *, algorithm: str = "auto",
                          params: NetworkParams | None = None, arch: str = "") -> list[tuple[str, float, float]]:
    """``[(name, alpha_s, beta_s_per_byte), ...]`` of the candidates ``algorithm`` selects (``auto``:
    NCCL's algorithms x protocols for this kind and placement). Empty for a group of one rank."""
    _check_kind(kind)
    if not isinstance(topo, GroupTopology):
        raise ConfigError(f"topo must be a GroupTopology, got {type(topo).__name__}")
    fams = _families(kind)
    family, _, proto = algorithm.partition("/") if isinstance(algorithm, str) else ("", "", "")
    protos = CUSTOM_PROTOCOLS if family in CUSTOM_FAMILIES else NCCL_PROTOCOLS
    if not (algorithm == "auto" or (family in fams and (not proto or proto in protos))):
        raise ConfigError(f"algorithm for {kind} must be 'auto', a family ({', '.join(fams)}) or "
                          f"'<family>/<protocol>' with protocol one of {', '.join(NCCL_PROTOCOLS)} "
                          f"({', '.join(CUSTOM_PROTOCOLS)} for {' / '.join(CUSTOM_FAMILIES)}); got {algorithm!r}")
    if topo.ranks == 1:
        return []
    params = params if params is not None else default_network_params()
    if family in CUSTOM_FAMILIES:
        cands = _custom_candidates(family, kind, topo, params, arch)
    else:
        cands = _nccl_candidates(kind, topo, params, arch)
    if algorithm == "auto":
        return [c for c in cands if c[0].split("/")[0] in AUTO_FAMILIES]
    sel = [c for c in cands if c[0] == algorithm or (not proto and c[0].split("/")[0] == family)]
    if not sel:
        have = sorted({c[0] for c in cands})
        raise ConfigError(f"algorithm {algorithm!r} does not apply to {kind} on {topo.ranks} ranks over "
                          f"{topo.nodes} node(s); candidates: auto, {', '.join(have)}")
    return sel


def collective_coefficients(kind: str, topo: GroupTopology, *, params: NetworkParams | None = None,
                            arch: str = "", algorithm: str = "auto") -> np.ndarray:
    """``(A, 2)`` array of ``(alpha_s, beta_s_per_byte)``, one row per candidate, such that
    ``collective_seconds(kind, S, topo) == min(alpha + beta * S)``. One rank: ``[[0, 0]]``."""
    cands = collective_candidates(kind, topo, algorithm=algorithm, params=params, arch=arch)
    if not cands:
        return np.zeros((1, 2))
    return np.array([[a, b] for _, a, b in cands], dtype=np.float64)


def _check_size(message_bytes: Any) -> float:
    if isinstance(message_bytes, bool) or not isinstance(message_bytes, (int, float, np.integer, np.floating)) \
            or not math.isfinite(message_bytes) or message_bytes < 0:
        raise ConfigError(f"message_bytes must be a finite number >= 0, got {message_bytes!r}")
    return float(message_bytes)


def collective_seconds(kind: str, message_bytes: float, topo: GroupTopology, *, algorithm: str = "auto",
                       params: NetworkParams | None = None, arch: str = "") -> float:
    """Seconds of one ``kind`` collective of ``message_bytes`` (nccl-tests convention) on ``topo``."""
    s = _check_size(message_bytes)
    algorithm = _custom_protocol_of(algorithm, topo, s)
    coef = collective_coefficients(kind, topo, params=params, arch=arch, algorithm=algorithm)
    return float(np.min(coef[:, 0] + coef[:, 1] * s))


def choose_algorithm(kind: str, message_bytes: float, topo: GroupTopology, *, params: NetworkParams | None = None,
                     arch: str = "", algorithm: str = "auto") -> str:
    """Name of the fastest candidate (``"ring/simple"``, ``"tree/ll"`` ...); ``"none"`` for one rank."""
    s = _check_size(message_bytes)
    algorithm = _custom_protocol_of(algorithm, topo, s)
    cands = collective_candidates(kind, topo, algorithm=algorithm, params=params, arch=arch)
    if not cands:
        return "none"
    return min(cands, key=lambda c: (c[1] + c[2] * s, c[0]))[0]


# ------------------------------------------------------------------------------------ vLLM's TP all-reduce

def custom_allreduce_protocol(ranks: int, message_bytes: float) -> str:
    """The kernel vLLM's custom all-reduce runs for ``message_bytes`` on ``ranks`` fully NVLink-connected
    GPUs: ``"one_shot"`` (cross_device_reduce_1stage) or ``"two_shot"`` (_2stage); see the module
    docstring for the source."""
    if ranks <= 2:
        return "one_shot"
    for most, below in _ONE_SHOT_BELOW:
        if ranks <= most and message_bytes < below:
            return "one_shot"
    return "two_shot"


def _one_shot_limit(ranks: int) -> float:
    """Message bytes from which vLLM's custom all-reduce switches to two-shot (inf on 2 ranks)."""
    if ranks <= 2:
        return math.inf
    return float(max(below for most, below in _ONE_SHOT_BELOW if ranks <= most))


def _custom_protocol_of(algorithm: str, topo: GroupTopology, message_bytes: float) -> str:
    if algorithm in CUSTOM_FAMILIES:
        return f"{algorithm}/{custom_allreduce_protocol(topo.ranks, message_bytes)}"
    return algorithm


def tp_allreduce_segments(topo: GroupTopology, *, custom: str | None = None, params: NetworkParams | None = None,
                          arch: str = "") -> list[tuple[str, float, float, np.ndarray]]:
    """A TP group's all-reduce as vLLM runs it: ``[(name, lo_bytes, hi_bytes, coef), ...]``, each
    segment pricing messages ``lo <= S < hi`` as ``min(coef[:, 0] + coef[:, 1] * S)``.

    ``custom`` (``"custom_graph"`` / ``"custom_eager"``, or None for NCCL only): vLLM's custom all-reduce
    serves ``S < CUSTOM_ALLREDUCE_MAX_BYTES`` with its one-shot then two-shot kernel, NCCL (``auto``)
    the rest; it applies only on one node with 2, 4, 6 or 8 ranks, otherwise NCCL serves every size.
    Names: ``"<custom>/one_shot"``, ``"<custom>/two_shot"``, ``"nccl"``. Empty for one rank."""
    if topo.ranks == 1:
        return []
    if custom is not None and custom not in CUSTOM_FAMILIES:
        raise ConfigError(f"custom must be one of {', '.join(CUSTOM_FAMILIES)} or None, got {custom!r}")
    out = []
    lo_nccl = 0.0
    if custom is not None and topo.nodes == 1 and topo.ranks in CUSTOM_ALLREDUCE_RANKS:
        top = float(CUSTOM_ALLREDUCE_MAX_BYTES)
        split = min(_one_shot_limit(topo.ranks), top)
        for proto, lo, hi in (("one_shot", 0.0, split), ("two_shot", split, top)):
            if hi > lo:
                name = f"{custom}/{proto}"
                out.append((name, lo, hi, collective_coefficients("all_reduce", topo, params=params, arch=arch,
                                                                  algorithm=name)))
        lo_nccl = top
    out.append(("nccl", lo_nccl, math.inf, collective_coefficients("all_reduce", topo, params=params, arch=arch)))
    return out
