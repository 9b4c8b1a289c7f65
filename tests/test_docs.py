"""The documentation is tested: every `dreamir …` command in README.md and docs/*.md is parsed by the real
command-line parser (a renamed or removed flag fails here), every `--set KEY=VALUE` names a config key that
exists, every `python bench/….py` (or `research/scripts/….py`) script exists and accepts the flags shown, and
every config file the docs name exists. Commands are checked, not run: what they do is covered by the other
tests (the quickstart itself is run in a fresh virtualenv before each release, not in CI: it takes minutes)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = ("```bash", "```sh", "```console", "```")


def shell_blocks(text: str) -> list[str]:
    """The contents of the fenced shell (or unlabelled) code blocks of a Markdown page."""
    blocks, current, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line.strip()
            else:
                if language in SHELL_FENCES:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def documented_commands(prefix: str) -> list[tuple[str, list[str]]]:
    """(where, argv) for each line in a fenced code block that starts with `prefix`; line continuations joined,
    trailing comments dropped."""
    found = []
    for doc in DOCS:
        for block in shell_blocks(doc.read_text()):
            for full_line in block.replace("\\\n", " ").splitlines():
                for line in full_line.split(" && "):  # each command of a chain
                    line = line.strip().removeprefix("$ ")
                    if line.startswith(prefix):
                        found.append((f"{doc.name}: {line[:80]}", shlex.split(line, comments=True)))
    return found


DREAMIR = documented_commands("dreamir ")
BENCH = documented_commands("python bench/") + documented_commands("python research/scripts/")


def test_the_docs_show_commands():
    assert len(DREAMIR) >= 10 and BENCH


@pytest.mark.parametrize("where,argv", DREAMIR, ids=[w for w, _ in DREAMIR])
def test_documented_dreamir_command_parses(where, argv):
    from dreamir.cli import build_parser
    from dreamir.config import load_config, parse_override

    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as stop:
        pytest.fail(f"{where}: the parser refused it (exit {stop.code})")
    for item in getattr(args, "set", None) or []:
        if args.command == "train":
            key, value = parse_override(item)
            load_config(None, {key: value})  # an unknown or renamed key fails with its name


@pytest.mark.parametrize("where,argv", BENCH, ids=[w for w, _ in BENCH])
def test_documented_bench_command_exists_and_takes_its_flags(where, argv):
    script = ROOT / argv[1]
    assert script.is_file(), f"{where}: {argv[1]} does not exist"
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert shown.returncode == 0, f"{where}: --help failed: {shown.stderr[-500:]}"
    for flag in (word.split("=")[0] for word in argv[2:] if word.startswith("--")):
        assert flag in shown.stdout, f"{where}: {argv[1]} has no flag {flag}"


def test_config_files_the_docs_name_exist():
    named = {m for doc in DOCS for m in re.findall(r"(?<![\w/])(?:research/)?configs/[\w.-]+\.yaml", doc.read_text())}
    assert named and [name for name in sorted(named) if not (ROOT / name).is_file()] == []


def test_the_check_catches_a_renamed_flag():
    """What a stale doc looks like to the test above: a flag the parser no longer has."""
    from dreamir.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--max-step", "3"])


def test_the_cli_reference_is_generated_from_the_parser(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_cli_docs import PAGE, cli_reference
    finally:
        sys.path.pop(0)
    assert PAGE.read_text() == cli_reference(), "docs/cli.md is stale: run python scripts/make_cli_docs.py"
