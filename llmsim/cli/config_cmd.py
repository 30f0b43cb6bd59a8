"""`simulate config --example KIND`: a commented example YAML for each kind of config file.

Each example loads through the loader of the command that reads it (tests/test_cli_config.py):
``run`` and ``workload`` through :func:`llmsim.sim.config.config_from_dict` (``simulate run FILE``),
``cluster`` through :func:`llmsim.hwmodels.cluster.cluster_from_dict` (``--cluster FILE``),
``search`` through :func:`llmsim.search.space.load_space` (``simulate search FILE``), ``train`` through
:func:`llmsim.sim.training_config.load_train_config` (``simulate train FILE``). Every loader rejects
an unknown key, naming it, the allowed keys and the closest one.
"""
from __future__ import annotations

import json

RUN = """\
# A serving run: `simulate run this.yaml` (flags override any field, e.g. --rate 4).
# Every section and key is optional; unknown keys are errors naming the allowed ones.
seed: 0                      # master seed: same file + seed -> byte-identical output
deployment:
  model: llama-3.1-8b        # simulate list models (a name, an HF id or a config.json path)
  device: h100               # simulate list devices
  tp: 1                      # tensor-parallel degree per replica
  num_devices: 2             # 2 data-parallel replicas of TP1
  engine: vllm               # host overheads of an engine profile (simulate list engines)
serving:
  scheduler: sarathi         # chunked prefill (simulate list schedulers)
  max_batched_tokens: 2048   # token budget of one iteration
  max_batch_size: 256        # running sequences per replica
  gpu_memory_utilization: 0.9
workload:
  name: azure-code           # simulate list workloads; or `trace: my.csv`
  rate: 4.0                  # requests/s, Poisson arrivals
  num_requests: 200
cluster:
  router: least-outstanding  # simulate list routers
slo:
  ttft_s: 0.5                # time to first token, s
  tpot_s: 0.05               # time per output token, s
output:
  json: false                # true: one JSON object on stdout
"""

WORKLOAD = """\
# The workload section of a run config (`simulate run this.yaml`): a generated workload.
# Give a bundled `name` (simulate list workloads) or a `trace` file, not both.
# Trace files: canonical CSV request_id,arrival_s,prompt_tokens,output_tokens (or the same
# columns in Parquet); see `simulate run --help` for the other formats.
deployment:
  model: llama-3.1-8b
  device: h100
workload:
  name: shared-prefix        # prompts sharing a system prompt per group
  params:                    # the generator's settings
    num_groups: 4
    num_prompts_per_group: 8
    system_prompt_len: 512   # tokens
    question_len: 64         # tokens
    output_len: 32           # tokens
  rate: 2.0                  # requests/s
  arrival: poisson           # poisson | gamma (with cv) | fixed
serving:
  prefix_caching: true       # share KV blocks of equal prompt prefixes
"""

CLUSTER = """\
# A cluster: `--cluster this.yaml` (simulate run, train). SI units except NIC Gb/s (decimal).
# Every number cites its source ([S] spec, [P] paper, [D] derived, [U] assumption).
schema_version: 1
name: my-two-node-h100
description: Two 8 x H100 servers, one 400 Gb/s InfiniBand NIC per GPU.
networks:
  - name: compute
    kind: ib                 # ib | roce | ethernet
    oversubscription: 1      # 1 = non-blocking
    source: "non-blocking fat tree [U]"
node_groups:
  - name: h100-nodes
    count: 2                 # servers in this group
    device: h100-sxm         # simulate list devices
    devices_per_node: 8
    source: "8 GPUs per server [U]"
    fabric:
      kind: nvlink           # bandwidth and latency from the device catalogue
    nics:
      - kind: ib
        count: 8
        bandwidth_gbit_s: 400
        latency_s: 2.0e-6
        network: compute     # a name from `networks`
        per_device: true     # one NIC per GPU
        source: "ConnectX-7 NDR 400 Gb/s [S]; latency assumed [U]"
"""

SEARCH = """\
# A search space: `simulate search this.yaml` (or `simulate size this.yaml --rate R`).
# Each dimension is a list of values, or `free` (every value that fits).
model: llama-3.1-8b          # required
devices: [h100, a100-80gb]   # simulate list devices
num_devices: [1, 2]          # devices per candidate
tp: free                     # every power of two up to num_devices
pp: [1]
quant: [bf16, fp8]           # simulate list formats
kv_dtype: [auto]
"""

TRAIN = """\
# A training step: `simulate train this.yaml` (flags override any key).
model: gpt-7.5b              # simulate list models
cluster: holmes-ib-roce      # simulate list clusters, or a cluster YAML
tp: 4                        # tensor-parallel degree
pp: 2                        # pipeline stages
placement: both              # nic-aware | naive | both (side by side)
layer_split: auto            # or a list of layers per stage
global_batch: 512            # sequences per step
micro_batch: 4
seq_len: 2048                # tokens
recompute: full
"""

#: kind -> example text
EXAMPLES = {"run": RUN, "workload": WORKLOAD, "cluster": CLUSTER, "search": SEARCH, "train": TRAIN}


def cmd_config(args) -> int:
    text = EXAMPLES[args.example]
    if args.json:
        print(json.dumps({"kind": args.example, "yaml": text}, sort_keys=True))
    else:
        print(text, end="")
    return 0


def add_parser(sub):
    """Add ``config`` to a ``simulate`` subparsers object."""
    import argparse

    p = sub.add_parser("config", help="print a commented example config file (run, workload, cluster, search, train)",
                       description="Print a commented example YAML of one kind of config file; it validates as is.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  simulate config --example run > my-run.yaml && simulate run my-run.yaml\n"
                              "  simulate config --example cluster > my-cluster.yaml\n")
    p.add_argument("--example", required=True, choices=sorted(EXAMPLES), metavar="KIND",
                   help="which config: " + ", ".join(EXAMPLES))
    p.add_argument("--json", action="store_true", help="print one JSON object {kind, yaml} instead of the YAML")
    p.set_defaults(func=cmd_config)
    return p
