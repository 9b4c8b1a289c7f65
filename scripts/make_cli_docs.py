"""Write docs/cli.md from the command-line parser itself (`python scripts/make_cli_docs.py`); a test checks the
page is what this prints, so the reference never drifts from the code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def cli_reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: a fixed width gives one page
    from dreamir.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    parts = [
        "# Command-line reference\n",
        "Generated from the parser by `python scripts/make_cli_docs.py` (tests/test_docs.py checks it is current).",
        "Flags that set a config key say which (`sets KEY`) and show the schema's default.\n",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, sub in commands.items():
        parts += [f"\n## dreamir {name}\n", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if PAGE.read_text() == cli_reference() else 1)
    PAGE.write_text(cli_reference())
    print(f"wrote {PAGE}")
