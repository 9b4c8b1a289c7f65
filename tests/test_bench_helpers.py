"""The benches' shared entry point: bad input ends a bench with its message, not a traceback."""

import re
import sys
from pathlib import Path

import pytest

from dreamir.config import ConfigError
from dreamir.data.training import load_examples

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # appended: no bench shadows a package
sys.path.append(str(Path(__file__).resolve().parents[1] / "research" / "scripts"))
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


def test_paired_runs_pools_each_group_per_query_and_names_a_folder_without_a_result(tmp_path):
    import json

    from paired_runs import group_scores

    for name, scores in {"a": {"q1": 0.2, "q2": 0.4}, "a-seed1": {"q1": 0.4, "q2": 0.0, "q3": 1.0}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"ndcg@10": 0.0, "per_query_ndcg@10": scores}))
    pooled, paths = group_scores([str(tmp_path / "a*")])
    assert len(paths) == 2 and pooled == pytest.approx({"q1": 0.3, "q2": 0.2})  # q3: not scored by every run
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=re.escape(f"{tmp_path / 'empty' / 'result.json'}: no finished run here")):
        group_scores([str(tmp_path / "empty")])
