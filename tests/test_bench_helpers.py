"""The benches' shared entry point: bad input ends a bench with its message, not a traceback."""

import re
import sys
from pathlib import Path

import pytest

from dreamir.config import ConfigError
from dreamir.data.training import load_examples

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # appended: no bench shadows a package
from _results import run_main


def test_a_missing_data_file_ends_a_bench_with_its_name(tmp_path):
    missing = tmp_path / "train.jsonl"
    with pytest.raises(SystemExit, match=re.escape(f"error: {missing}: file not found")):
        run_main(lambda: load_examples(missing))


def test_a_configuration_error_ends_a_bench_with_its_message():
    def main() -> None:
        raise ConfigError("unknown key 'lr2'")

    with pytest.raises(SystemExit, match="unknown key 'lr2'"):
        run_main(main)


def test_other_errors_are_not_swallowed():
    def main() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_main(main)
