"""Llama-2-7B on an FPGA card, a GPU and an RDU node: token/s, token/J and $/Mtok, and decode token/s
against context length (AccLLM's Lambda attention vs dense attention on the U280 vs one H100).

    python benchmarks/bench_accelerators.py [--html decode_vs_context.html]

Every figure is a model prediction (hwmodels/fpga.py, hwmodels/rdu.py, the kernel-calibrated GPU
model); prices are amortised purchase rates from hwmodels/data/prices (the FPGA and RDU ones are
assumptions [U]). Nothing here is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses

from llmsim.hwmodels.backend import make_deployment
from llmsim.hwmodels.fpga import FpgaDeployment, get_fpga_engine
from llmsim.hwmodels.prices import get_price, usd_per_million_tokens

MODEL = "llama-2-7b"
CONTEXT = 1024            # cached tokens of every decoding sequence in the table
CONTEXTS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
PLATFORMS = (             # label, device, build keywords, devices
    ("U280 AccLLM", "u280-accllm", {"quant": "auto", "max_num_seqs": 8}, 1),
    ("1x H100 SXM (bf16, vLLM)", "h100-sxm", {}, 1),
    ("SN40L node (8 sockets)", "sn40l", {"tp": 8}, 8),
)


def table(batch: int) -> list[tuple]:
    rows = []
    for label, dev, kw, n in PLATFORMS:
        dep = make_deployment(MODEL, dev, **kw)
        t, e = dep.iteration([], [], [CONTEXT] * batch)
        tps = batch / t
        rate = get_price(dev).usd_per_hour("amortised") * n
        rows.append((label, tps, batch / e, usd_per_million_tokens(rate, tps)))
    return rows


def decode_vs_context() -> dict[str, list[float]]:
    acc = make_deployment(MODEL, "u280-accllm", quant="auto", max_num_seqs=1)
    dense = FpgaDeployment(MODEL, "u280-accllm", max_num_seqs=1,
                           engine_design=dataclasses.replace(get_fpga_engine("accllm"), attention="dense"))
    h100 = make_deployment(MODEL, "h100-sxm")
    return {name: [1.0 / dep.iteration([], [], [c])[0] for c in CONTEXTS]
            for name, dep in (("U280 AccLLM (Lambda attention)", acc), ("U280 AccLLM engine, dense attention", dense),
                              ("1x H100 SXM bf16", h100))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", help="write the decode-vs-context figure (plotly HTML) to this path")
    args = ap.parse_args()
    for batch in (1, 8):
        print(f"{MODEL}, decode at context {CONTEXT}, batch {batch}")
        print(f"  {'platform':28s} {'token/s':>9s} {'token/J':>8s} {'$/Mtok':>8s}")
        for label, tps, tpj, usd in table(batch):
            print(f"  {label:28s} {tps:9.1f} {tpj:8.2f} {usd:8.3f}")
    curves = decode_vs_context()
    print(f"\ndecode token/s (batch 1) vs context length: {', '.join(map(str, CONTEXTS))}")
    for name, ys in curves.items():
        print(f"  {name:36s} " + " ".join(f"{y:7.1f}" for y in ys))
    if args.html:
        import plotly.graph_objects as go

        fig = go.Figure([go.Scatter(x=list(CONTEXTS), y=ys, mode="lines+markers", name=name)
                         for name, ys in curves.items()])
        fig.update_layout(title=f"{MODEL} single-stream decode vs context (model predictions)",
                          xaxis_title="context (tokens)", yaxis_title="token/s", xaxis_type="log")
        fig.write_html(args.html, include_plotlyjs="cdn")
        print(f"wrote {args.html}")


if __name__ == "__main__":
    main()
