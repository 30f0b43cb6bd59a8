"""Every `simulate ...` command line in the fenced shell blocks of README.md and docs/*.md, and every example config
in docs/examples (the command its first comment names, else `simulate run FILE`), runs: exit code 0,
no traceback. Sizes are cut where a flag allows (``--num-requests``); output files go to a temporary
folder; a command line whose comment contains ``(long`` is skipped."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llmsim.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```(?:bash|sh|shell|console)\s*$(.*?)^```", re.M | re.S)
#: requests per `simulate run` in this test (the docs' own sizes take minutes together on 2 cores)
SMALL_REQUESTS = 40
#: flags naming a file the command writes
OUTPUT_FLAGS = ("--report", "--out", "--chrome-trace", "--export")


def shell_commands(text: str) -> list[str]:
    """The `simulate` command lines of ``text``'s fenced shell blocks (continuation lines joined)."""
    out = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if re.match(r"^(\S*/)?simulate\s", line + " "):
                out.append(line)
    return out


def example_commands() -> list[str]:
    out = []
    for path in sorted((DOCS / "examples").rglob("*.yaml")):
        rel = path.relative_to(REPO).as_posix()
        first = path.read_text().splitlines()[0]
        m = re.match(r"^#\s*(simulate\s+\S+\s+" + re.escape(rel) + r")", first)
        out.append(m.group(1) if m else f"simulate {'train' if 'train' in path.parts else 'run'} {rel}")
    return out


def _cases():
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    cases = [(f"{p.name}: {c}", c) for p in pages for c in shell_commands(p.read_text())]
    return cases + [(f"examples: {c}", c) for c in example_commands()]


def argv_of(line: str, tmp: Path) -> list[str]:
    """The argument list of a documented command line, sized down, writing into ``tmp``."""
    args = shlex.split(line, comments=True)[1:]
    for i, a in enumerate(args[:-1]):
        if a in OUTPUT_FLAGS:
            args[i + 1] = str(tmp / Path(args[i + 1]).name)
    if args and args[0] == "run":
        if "--num-requests" in args:
            args[args.index("--num-requests") + 1] = str(SMALL_REQUESTS)
        elif "--batch-size" not in args:
            args += ["--num-requests", str(SMALL_REQUESTS)]
    return args


CASES = _cases()


def test_the_docs_show_commands():
    assert len([c for c in CASES if c[0].startswith("quickstart.md")]) >= 3
    assert len([c for c in CASES if c[0].startswith("README.md")]) >= 10
    assert len([c for c in CASES if c[0].startswith("examples")]) == len(list((DOCS / "examples").rglob("*.yaml")))


@pytest.mark.parametrize("line", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_documented_command_runs(line, tmp_path, monkeypatch, capsys):
    if "(long" in line:
        pytest.skip("marked (long) in the docs")
    monkeypatch.chdir(REPO)
    try:
        rc = main(argv_of(line, tmp_path))
    except SystemExit as e:  # --version, --help
        rc = e.code or 0
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err


def test_argv_of_cuts_sizes_and_redirects_outputs(tmp_path):
    argv = argv_of("simulate run --num-requests 300 --report report.html  # note", tmp_path)
    assert argv == ["run", "--num-requests", str(SMALL_REQUESTS), "--report", str(tmp_path / "report.html")]
    assert argv_of("simulate run docs/examples/serving.yaml", tmp_path)[-2:] == ["--num-requests",
                                                                                 str(SMALL_REQUESTS)]
