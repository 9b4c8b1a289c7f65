"""Issue 18: no data loss, no code from data, no silent wrong results (each test failed on the old main)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from dreamir.config import load_config

from .test_trainer import write_config


def train_tiny(tmp_path, llm_dir, encoder_dir, steps=2, **overrides):
    from dreamir.trainer import Trainer

    config = load_config(write_config(tmp_path, llm_dir, encoder_dir, "run", steps=steps), overrides)
    return Trainer(config, show_progress=False), config


# 1. export never destroys a folder it did not write ------------------------------------------------
@pytest.mark.parametrize("target", ["run", "parent", "user"])
def test_export_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path, tiny_llm_dir, tiny_encoder_dir, target):
    from dreamir.files import FolderRefused
    from dreamir.trainer import export_run

    trainer, _config = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir)
    trainer.train()
    run_dir = tmp_path / "run"
    user = tmp_path / "my-notes"
    user.mkdir()
    (user / "thesis.tex").write_text("irreplaceable")
    out = {"run": run_dir, "parent": tmp_path, "user": user}[target]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(FolderRefused, match="was not written by this command"):
        export_run(run_dir, out)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (user / "thesis.tex").read_text() == "irreplaceable"


def test_export_replaces_an_earlier_export_and_an_empty_folder(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    from dreamir.models.retriever import EXPORT_MARKER
    from dreamir.trainer import export_run

    trainer, _ = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir)
    trainer.train()
    out = tmp_path / "exported"
    out.mkdir()  # empty: fine
    export_run(tmp_path / "run", out)
    assert (out / EXPORT_MARKER).exists() and (out / "modules.json").exists()
    (out / "stale.txt").write_text("from the old export")
    export_run(tmp_path / "run", out)  # an earlier export: swapped whole
    assert not (out / "stale.txt").exists() and (out / "modules.json").exists()
    assert not list(tmp_path.glob(".exported.*"))  # no temp or old folder left behind


def test_cli_export_into_the_run_folder_is_a_message_not_a_traceback(tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys):
    from dreamir.cli import main

    trainer, _ = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir)
    trainer.train()
    run_dir = tmp_path / "run"
    assert main(["export", "--run", str(run_dir), "--out", str(run_dir)]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert (run_dir / "checkpoints").is_dir() and (run_dir / "log.jsonl").exists()


# 2. a checkpoint never runs code -------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create a file if unpickled with full pickle


def test_a_crafted_checkpoint_is_not_executed_and_an_intact_older_one_is_used(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys
):
    from dreamir.trainer import Trainer

    trainer, config = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    trainer.train()
    checkpoints = tmp_path / "run" / "checkpoints"
    marker = tmp_path / "pwned"
    crafted = checkpoints / "step-0000009.pt"
    with open(crafted, "wb") as handle:
        pickle.dump({"step": _Payload(marker)}, handle)
    truncated = checkpoints / "step-0000008.pt"
    truncated.write_bytes((checkpoints / "step-0000002.pt").read_bytes()[:100])
    resumed = Trainer(config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 3})}))
    assert resumed.resume() and resumed.step == 2
    assert not marker.exists()
    out = capsys.readouterr().out
    assert "skipping unreadable checkpoint" in out and str(crafted) in out and str(truncated) in out


# 3. --resume refuses a changed configuration ---------------------------------------------------------
def test_resume_refuses_changed_settings_and_names_them(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    from dreamir.trainer import Trainer

    trainer, _config = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    trainer.train()
    saved = (tmp_path / "run" / "config.yaml").read_text()
    changed = load_config(tmp_path / "run.yaml", {"train.lr": 0.5, "seed": 99, "train.max_steps": 4})
    with pytest.raises(ValueError, match=r"2 key\(s\): seed: 7 → 99; train.lr: 0.001 → 0.5"):
        Trainer(changed, show_progress=False).train(resume=True)
    assert (tmp_path / "run" / "config.yaml").read_text() == saved  # not rewritten by the refused resume
    longer = load_config(tmp_path / "run.yaml", {"train.max_steps": 3})  # safe: more steps
    assert Trainer(longer, show_progress=False).train(resume=True).steps == 3
    forced = Trainer(load_config(tmp_path / "run.yaml", {"train.lr": 0.5, "train.max_steps": 4}), show_progress=False)
    assert forced.train(resume=True, allow_config_change=True).steps == 4


def test_checkpoints_hold_only_weights_only_types(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    trainer, _ = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    trainer.train()
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000002.pt", weights_only=True)
    assert state["step"] == 2 and json.dumps(state["config"])
