"""Bad input on the command line: one line on stderr naming the problem (and the fix), the exit
status, never a traceback. The table (input | message | exit code) is docs/bad_input.md;
``python tests/test_bad_input.py > docs/bad_input.md`` rewrites it."""
from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path

import pytest

M = "--model llama-3.1-8b --tp 1 --num-requests 3"
T = "--model llama-3.1-8b --tp 1"  # a trace file's requests, all of them
#: name -> file contents (written to a temporary folder; {D} in a case is that folder)
FILES = {
    "empty.csv": "request_id,arrival_s,prompt_tokens,output_tokens\n",
    "long.csv": "request_id,arrival_s,prompt_tokens,output_tokens\nr1,0,200000,10\n",
    "dup.csv": "request_id,arrival_s,prompt_tokens,output_tokens\nr1,0,20,10\nr1,0.1,20,10\n",
    "badhdr.csv": "request_id,arrival_s,prompt_tokens\n1,0,20\n",
    "unknownhdr.csv": "id,time,input,output\n1,0,20,5\n",
    "zero.csv": "request_id,arrival_s,prompt_tokens,output_tokens\n1,0,0,10\n",
    "nan.csv": "request_id,arrival_s,prompt_tokens,output_tokens\n1,soon,10,10\n",
    "frac.csv": "request_id,arrival_s,prompt_tokens,output_tokens\n1,0,10.5,10\n",
    "ok.csv": "request_id,arrival_s,prompt_tokens,output_tokens\na,0,100,10\nb,0.5,200,20\nc,1,300,5\n",
    "lens.csv": "num_prefill_tokens,num_decode_tokens\n10,10\n",
    "bad.parquet": "not parquet\n",
    "empty.yaml": "",
    "comments.yaml": "# nothing here\n",
    "unknown-key.yaml": "deployment:\n  modle: x\n",
    "list.yaml": "- a\n- b\n",
}

#: (command line, fragment of the one-line message, exit status)
CASES = [
    # names
    ("run --model nope-model", "unknown model 'nope-model'; did you mean", 2),
    ("run --device nope", "unknown device 'nope'; known: a100-pcie-80gb", 2),
    ("run --cluster foo", "unknown cluster 'foo'; known: 8x-l40s-pcie", 2),
    ("run --engine vlm", "unknown engine 'vlm'; did you mean 'vllm-v1'", 2),
    (f"run --workload nope {M}", "unknown workload 'nope'; did you mean", 2),
    (f"run --scheduler nope {M}", "unknown scheduler 'nope'; known: vllm, sarathi", 2),
    (f"run --max-batch-size 512 --max-batched-tokens 256 {M}", "max_num_batched_tokens (256) must be >= max_num_seqs (512)", 2),
    (f"run --router nope {M}", "unknown router 'nope'; known: round-robin", 2),
    (f"run --quant nope {M}", "unknown quantization format 'nope'; known: fp32, bf16", 2),
    (f"run --kv-dtype nope {M}", "unknown KV-cache dtype 'nope'", 2),
    ("train --model nope", "unknown model 'nope'", 2),
    ("run --disagg --model llama-3.1-8b --tp 1 --prefill-device nope --num-requests 2", "unknown device 'nope'", 2),
    ("list bogus", "invalid choice: 'bogus'", 2),
    # trace files
    (f"run {T} --trace {{D}}/missing.csv", "missing.csv: no such trace file", 2),
    (f"run {T} --trace {{D}}/empty.csv", "empty.csv has no requests", 2),
    (f"run {T} --trace {{D}}/long.csv", "exceed the 131072-token context of llama-3.1-8b", 2),
    (f"run {T} --trace {{D}}/dup.csv", "request id r1 appears 2 times", 2),
    (f"run {T} --trace {{D}}/badhdr.csv", "missing column 'output_tokens'", 2),
    (f"run {T} --trace {{D}}/unknownhdr.csv", "expected the canonical columns request_id,arrival_s,prompt_tokens", 2),
    (f"run {T} --trace {{D}}/zero.csv", "column 3 ('prompt_tokens'): must be >= 1", 2),
    (f"run {T} --trace {{D}}/nan.csv", "('arrival_s'): expected a number, got 'soon'", 2),
    (f"run {T} --trace {{D}}/frac.csv", "expected a whole number of tokens", 2),
    (f"run {T} --trace {{D}}/lens.csv", "has request lengths but no arrival times; give a `rate`", 2),
    (f"run {T} --trace {{D}}/bad.parquet", "cannot read as Parquet", 2),
    ("run --model llama-3.1-8b --tp 1 --trace {D}/ok.csv --num-requests 50", "exceeds the 3 requests", 2),
    # config files
    ("run {D}/empty.yaml", "the config file is empty", 2),
    ("run {D}/comments.yaml", "the config file is empty", 2),
    ("run {D}/missing.yaml", "cannot read config file", 2),
    ("run {D}/unknown-key.yaml", "unknown key 'modle' (did you mean 'model'?)", 2),
    ("run {D}/list.yaml", "a run config must be a YAML mapping", 2),
    # output paths (checked before the simulation starts)
    (f"run {M} --out {{D}}/no/such/folder/r.csv", "does not exist; create it first", 2),
    (f"run {M} --out {{D}}/r.txt", "must end in .csv or .parquet", 2),
    (f"run {M} --report {{D}}", "is a folder; name a file in it", 2),
    (f"run {M} --chrome-trace {{D}}/no/such/t.json", "does not exist; create it first", 2),
    # values and plans
    ("run --tp abc", "argument --tp: invalid int value: 'abc'", 2),
    ("run --placement bogus", "argument --placement: invalid choice", 2),
    ("run --workload-param novalue", "expected KEY=VALUE, got 'novalue'", 2),
    ("run --layer-split a,b", "expected comma-separated integers", 2),
    ("run --model llama-3.1-8b --tp 3", "tp=3 must divide the 32 attention heads", 2),
    ("run --model llama-3.1-8b --tp 2 --num-devices 3", "`num_devices` (3) must be a multiple of tp x pp = 2", 2),
    (f"run {M} --num-nodes 2", "`num_nodes` needs a `cluster`", 2),
    ("run --model llama-3.1-405b --device h100 --tp 1 --num-requests 2", "needs 759.1 GiB per device", 2),
    (f"run {M} --rate 0", "`rate` must be a finite number > 0", 2),
    ("run --model llama-3.1-8b --tp 1 --num-requests 0", "`num_requests` must be an integer >= 1", 2),
    (f"run {M} --gpu-memory-utilization 1.5", "`gpu_memory_utilization` must be a finite number > 0 and <= 1", 2),
    (f"run {M} --block-size 0", "`block_size` must be an integer >= 1", 2),
    (f"run {M} --watermark 2", "`watermark` must be a finite number >= 0 and <= 0.5", 2),
    (f"run {M} --ttft-slo -1", "`ttft_s` must be a finite number > 0", 2),
    (f"run {M} --max-batch-size 0", "`max_batch_size` must be an integer >= 1", 2),
    ("run --model llama-3.1-8b --tp 1 --batch-size 4", "static-batch mode needs all of --batch-size", 2),
    ("run --model llama-3.1-8b --tp 1 --engine {D}/missing-engine.yaml", "cannot read engine file", 2),
    ("validate --format bogus", "argument --format: invalid choice", 2),
    ("validate {D}/missing/path", "no such file or directory", 2),
    # runs, with a one-line warning on stderr
    (f"run {M} --block-size 7", "warning: block size 7 is not one vLLM accepts", 0),
    (f"run {M} --device gaudi2", "warning: gaudi2 (gaudi2) has no kernel calibration of its own", 0),
    ("run --model llama-3.1-8b --tp 1 --gpu-memory-utilization 0.25 --batch-size 32 --prompt-tokens 4096 "
     "--output-tokens 2", "it ran in waves", 0),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    for name, text in FILES.items():
        (d / name).write_text(text)
    return d


def run_cli(argv: list[str]) -> tuple[int, str]:
    from llmsim.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, err.getvalue()


@pytest.mark.parametrize("line, fragment, code", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_is_one_line_and_an_exit_status(folder, line, fragment, code):
    rc, err = run_cli(shlex.split(line.replace("{D}", str(folder))))
    assert "Traceback" not in err
    assert fragment in err, err
    assert rc == code
    message = [x for x in err.splitlines() if x.startswith("simulate ")]
    assert len(message) == 1, err  # argparse adds its usage lines above its one error line


def test_output_paths_are_checked_before_the_simulation_starts(folder, monkeypatch):
    import llmsim.sim.runner as runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("the simulation started"))
    rc, err = run_cli(shlex.split(f"run {M} --out {folder}/none/r.csv"))
    assert rc == 2 and "does not exist" in err


def test_the_table_has_at_least_forty_cases():
    assert len(CASES) >= 40


def test_docs_bad_input_md_is_this_table():
    doc = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"
    assert doc.read_text() == table() + "\n", "regenerate: python tests/test_bad_input.py > docs/bad_input.md"


def test_the_readme_carries_the_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = table().split("\n")
    body = "\n".join(rows[rows.index("| input | message (fragment) | exit code |"):])
    assert body in readme, "paste the table of docs/bad_input.md into the README's 'Bad input' section"


def table() -> str:
    rows = ["# Bad input: the message and the exit status", "",
            "Every case is a test (`tests/test_bad_input.py`); none prints a traceback. Exit 2: an error, one line",
            "on stderr; exit 0: the run goes ahead with a one-line warning on stderr. `...` stands for",
            "`--model llama-3.1-8b --tp 1 [--num-requests 3]`; Ctrl-C ends any command with "
            "`simulate CMD: interrupted`, exit 130.", "",
            "| input | message (fragment) | exit code |", "|---|---|---|"]
    for line, fragment, code in CASES:
        shown = line.replace(M, "...").replace(T, "...").replace("{D}/", "").replace("{D}", "DIR")
        rows.append(f"| `simulate {shown}` | {fragment.replace('|', '/')} | {code} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(table())
