"""Every config shipped in configs/ validates against the current settings (a renamed or removed key
would otherwise surface only hours into a benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "research" / "configs").glob("*.yaml")])


def test_configs_are_found():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    from dreamir.apps.compare import load_compare_config
    from dreamir.config import load_config

    tree = yaml.safe_load(path.read_text())
    if "datasets" in tree:  # a comparison: validates every objective's run config too
        config = load_compare_config(path)
        assert config.datasets and config.objectives
    else:
        config = load_config(path)
        assert config.train.max_steps > 0


def test_the_quickstart_trains_dream_distill_from_the_static_start_with_a_kept_signal(tmp_path):
    """The quickstart's settings are a valid run config, and they are the demonstration the README describes."""
    from dreamir.apps.quickstart import DEFAULT_STEPS, quickstart_overrides
    from dreamir.config import load_config

    config = load_config(None, quickstart_overrides(str(tmp_path / "qs"), "cpu", DEFAULT_STEPS))
    assert config.retriever.architecture == "static" and config.train.objective == "dream_distill"
    assert config.dream_distill.signal_cache_dir == str(tmp_path / "qs" / "judge-signal")  # the judge runs once
    assert config.train.max_steps == DEFAULT_STEPS and config.llm.name == "smollm2-135m-instruct"


def test_the_quickstart_resumes_only_its_own_folder(tmp_path, capsys):
    """A re-run resumes a quickstart of the same settings; a folder from an earlier version's quickstart (files it
    did not write) or from other settings is refused by name, before any model is loaded, and left as it was."""
    from dreamir.apps.quickstart import claim_run_dir
    from dreamir.cli import main

    ours = tmp_path / "ours"
    claim_run_dir(ours, {"train.max_steps": 1200, "examples": 300})
    claim_run_dir(ours, {"train.max_steps": 1200, "examples": 300})  # the same settings: resumed
    with pytest.raises(ValueError, match=r"other settings \(train.max_steps\); remove that folder or pass --run-dir"):
        claim_run_dir(ours, {"train.max_steps": 300, "examples": 300})
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "train.jsonl").write_text('{"query": "an earlier version\'s example"}\n')
    assert main(["quickstart", "--run-dir", str(old)]) == 2
    err = capsys.readouterr().err
    assert f"{old} holds files that this version's quickstart did not write" in err and "Traceback" not in err
    assert sorted(p.name for p in old.iterdir()) == ["checkpoints", "train.jsonl"]  # SETTINGS_FILE not written
