"""Trainer on tiny models: checkpoints, exact resume after a SIGKILL, export, clean CLI errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from dreamir.testing import WORDS


def write_train_data(path, n=10, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            sent = lambda k: " ".join(rng.choice(WORDS[:70], size=k))  # noqa: E731
            f.write(json.dumps({"query": sent(6), "target": sent(6), "candidates": [sent(8) for _ in range(3)]}) + "\n")
    return path


def write_config(tmp_path, llm_dir, encoder_dir, run_name, steps=6):
    data = write_train_data(tmp_path / "train.jsonl")
    config = {
        "run_dir": str(tmp_path / run_name),
        "seed": 7,
        "llm": {"name": str(llm_dir)},
        "retriever": {"name": str(encoder_dir)},
        "data": {"train": str(data)},
        "heads": {"count": 4, "detection_examples": 4},
        "train": {"batch_size": 2, "lr": 1e-3, "warmup_steps": 2, "max_steps": steps, "checkpoint_every": 2},
    }
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dreamir(*args, env_extra=None, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "dreamir.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dreamir {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def loss_trend(stdout: str) -> tuple[float, float]:
    found = re.search(r"([\d.]+) \(first quarter of steps\) → ([\d.]+) \(last quarter\)", stdout)
    assert found, stdout[-2000:]
    return float(found[1]), float(found[2])


def final_state(run_dir):
    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    return torch.load(ckpts[-1], weights_only=False)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    straight = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "straight")
    straight_out = dreamir("train", "--config", str(straight)).stdout

    killed = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "killed")
    proc = dreamir("train", "--config", str(killed), env_extra={"DREAMIR_KILL_AT_STEP": "3"}, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed, mid-run, after step 3
    run = tmp_path / "killed"
    assert [p.name for p in sorted((run / "checkpoints").glob("*.pt"))] == ["step-0000002.pt"]
    assert not list((run / "checkpoints").glob("*.tmp"))
    again = dreamir("train", "--config", str(killed), check=False)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to overwrite silently
    resumed_out = dreamir("train", "--config", str(killed), "--resume").stdout
    # the reported loss trend covers the whole run, the steps before the kill included
    assert loss_trend(resumed_out) == pytest.approx(loss_trend(straight_out), abs=2e-4)

    a, b = final_state(tmp_path / "straight"), final_state(run)
    assert a["step"] == b["step"] == 6
    for name, value in a["retriever"].items():
        torch.testing.assert_close(b["retriever"][name], value, atol=1e-6, rtol=0)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]  # no duplicate lines after the resume
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in straight_log], rel=1e-5)

    # The run's exported model loads with sentence-transformers; `export` gives the same model.
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "exported"
    dreamir("export", "--run", str(run), "--out", str(out))
    assert (out / "dreamir_heads.json").exists()
    texts = ["what causes scurvy"]
    e1 = SentenceTransformer(str(out)).encode(texts, prompt_name="query")
    e2 = SentenceTransformer(str(run / "retriever")).encode(texts, prompt_name="query")
    np.testing.assert_allclose(e1, e2, atol=1e-6)


def test_training_changes_the_retriever_and_logs(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    config = load_config(write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "run", steps=3))
    trainer = Trainer(config, show_progress=False)
    before = {n: p.detach().clone() for n, p in trainer.retriever.named_parameters()}
    result = trainer.train()
    changed = sum(not torch.equal(before[n], p) for n, p in trainer.retriever.named_parameters())
    assert changed > 0
    assert all(not p.requires_grad for p in trainer.lm.model.parameters())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "examples_per_s", "w_entropy", "grad_norm"} <= set(log[0])
    assert (result.run_dir / "heads.json").exists() and (result.run_dir / "heads.png").exists()


def test_cli_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 0.1\n")
    proc = dreamir("train", "--config", str(bad), check=False)
    assert proc.returncode == 2 and "train.learning_rate: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    data = tmp_path / "broken.jsonl"
    data.write_text('{"query": "q", "target": "t", "candidates": ["a"]}\n{"query": \n')
    proc = dreamir("train", "--data", str(data), "--llm", "nowhere/../x", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{data}, line 2: malformed JSON" in proc.stderr


def test_document_cache_trains_to_the_same_weights(tmp_path, tiny_llm_dir):
    from dreamir.config import load_config
    from dreamir.testing import save_tiny_encoder
    from dreamir.trainer import Trainer

    encoder = save_tiny_encoder(tmp_path / "encoder", dropout=0.0)  # same retriever function in both runs
    base = write_config(tmp_path, tiny_llm_dir, encoder, "plain", steps=12)  # 10 examples, batch 2: 2.4 epochs
    plain = Trainer(load_config(base), show_progress=False)
    plain.train()
    cached_config = load_config(
        base,
        {
            "run_dir": str(tmp_path / "cached"),
            "heads.file": str(tmp_path / "plain" / "heads.json"),
            "dream.document_cache_mb": 64,
            "dream.document_cache_dir": str(tmp_path / "kv"),
        },
    )
    cached = Trainer(cached_config, show_progress=False)
    cached.train()
    store = cached.objective.document_store
    assert store is not None and store.misses == 10 and store.hits == 14  # the first epoch fills it
    assert len(list((tmp_path / "kv" / "rank0").glob("*.pt"))) == 10
    a, b = final_state(tmp_path / "plain"), final_state(tmp_path / "cached")
    for name, value in a["retriever"].items():
        torch.testing.assert_close(b["retriever"][name], value, atol=1e-5, rtol=1e-4)


def test_document_cache_is_refused_with_the_reference_step():
    from dreamir.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="document_cache_mb needs the reuse step"):
        load_config(None, {"dream.document_cache_mb": 10, "dream.reference_step": True})


def test_gradient_checkpointing_trains_to_the_same_weights(tmp_path, tiny_llm_dir):
    """train.gradient_checkpointing (the retriever's backbone and the frozen LLM's graph segment) gives the same
    steps as the plain run."""
    from dreamir.config import load_config
    from dreamir.testing import save_tiny_encoder
    from dreamir.trainer import Trainer

    encoder = save_tiny_encoder(tmp_path / "encoder", dropout=0.0)
    base = write_config(tmp_path, tiny_llm_dir, encoder, "plain", steps=3)
    Trainer(load_config(base), show_progress=False).train()
    overrides = {
        "run_dir": str(tmp_path / "recompute"),
        "heads.file": str(tmp_path / "plain" / "heads.json"),
        "train.gradient_checkpointing": True,
    }
    recompute = Trainer(load_config(base, overrides), show_progress=False)
    backbone = recompute.retriever.backbone_module.model
    assert recompute.lm.gradient_checkpointing
    assert any(getattr(module, "gradient_checkpointing", False) for module in backbone.modules())
    recompute.train()
    a, b = final_state(tmp_path / "plain"), final_state(tmp_path / "recompute")
    for name, value in a["retriever"].items():
        torch.testing.assert_close(b["retriever"][name], value, atol=1e-5, rtol=1e-4)


def test_static_retriever_trains_resumes_and_exports(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """`retriever.architecture: static` goes through the same trainer: it moves, and a run continued from its
    checkpoint ends at the same token vectors as an uninterrupted one (constant schedule, so the first part's
    steps do not depend on the planned length)."""
    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    def static_config(name: str, steps: int):
        path = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, name, steps=steps)
        tree = yaml.safe_load(path.read_text())
        tree["retriever"]["architecture"] = "static"
        tree["train"].update(lr=0.05, schedule="constant")
        path.write_text(yaml.safe_dump(tree))
        return load_config(path)

    whole = Trainer(static_config("whole", 4), show_progress=False)
    start = whole.retriever.st[0].embedding.weight.detach().clone()
    whole.train()
    end = whole.retriever.st[0].embedding.weight.detach()
    assert not torch.equal(start, end)
    first = Trainer(static_config("split", 2), show_progress=False)
    first.train()
    resumed = Trainer(static_config("split", 4), show_progress=False)
    resumed.train(resume=True, allow_config_change=True)
    torch.testing.assert_close(resumed.retriever.st[0].embedding.weight, end)
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # steps 1–2 came from the checkpoint, not a rerun


def test_training_writes_tensorboard_events_and_a_plot_of_loss_and_tau(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """TensorBoard's own event reader finds one `loss` and one `tau` scalar per step; training.png is written."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'dreamir[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    overrides = {"train.objective": "infonce", "infonce.learn_temperature": True}
    config = load_config(write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "board", steps=3), overrides)
    Trainer(config, show_progress=False).train()
    events = EventAccumulator(str(tmp_path / "board" / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2, 3]
    logged = [json.loads(line) for line in (tmp_path / "board" / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("tau")] == pytest.approx([row["tau"] for row in logged])
    assert (tmp_path / "board" / "training.png").stat().st_size > 1000
