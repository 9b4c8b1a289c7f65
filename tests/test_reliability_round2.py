"""Issue 34 (reliability round 2): each test reproduces a probe case that lost data or gave a silently wrong
result on main at 1647f0e, and checks the fix at its root (the shared mechanism)."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from dreamir.config import load_config

from .test_beir_and_eval import make_beir
from .test_trainer import write_config, write_train_data


def tiny_trainer(tmp_path, llm_dir, encoder_dir, steps=4, name="run", data_seed=0, **overrides):
    from dreamir.trainer import Trainer

    settings = {"train.objective": "infonce", "train.warmup_steps": 0, "train.checkpoint_every": 2, **overrides}
    config = load_config(write_config(tmp_path, llm_dir, encoder_dir, name, steps=steps), settings)
    write_train_data(tmp_path / "train.jsonl", seed=data_seed)  # the path write_config names
    return Trainer(config, show_progress=False)


# 1. two writers of one run, export or index folder ----------------------------------------------------------
def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    from dreamir.files import FolderBusy, exclusive_lock

    trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir)
    held = exclusive_lock(trainer.run_dir, "held by the test")  # another live writer
    with held, pytest.raises(FolderBusy, match=r"run folder .*run is in use by process \d+"):
        trainer.train()
    assert not (trainer.run_dir / "log.jsonl").exists() or (trainer.run_dir / "log.jsonl").read_text() == ""
    assert trainer.train().steps == 4  # the lock died with its holder: nothing stale is left


def test_a_folder_being_written_is_refused_to_a_second_writer(tmp_path):
    from dreamir.files import FolderBusy, atomic_folder

    with atomic_folder(tmp_path / "export", "marker.json") as first:
        (first / "marker.json").write_text("{}")
        with pytest.raises(FolderBusy, match="export is in use"), atomic_folder(tmp_path / "export", "marker.json"):
            pass
    assert (tmp_path / "export" / "marker.json").exists()


# 2. pruning keeps the good checkpoints -----------------------------------------------------------------------
def test_pruning_never_deletes_readable_checkpoints_for_foreign_ones(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    first = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=4)
    first.train()
    checkpoints = first.run_dir / "checkpoints"
    for junk in ("step-9999998.pt", "step-9999999.pt"):
        (checkpoints / junk).write_bytes(b"not a checkpoint")
    resumed = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=5)
    resumed.train(resume=True)
    names = sorted(p.name for p in checkpoints.glob("*.pt"))
    assert names == ["step-0000004.pt", "step-0000005.pt", "step-9999998.pt", "step-9999999.pt"]
    again = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=5)
    assert again.resume() and again.step == 5  # the unreadable newer files are skipped, not trusted


# 3. an output that is an input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["build-data", "eval", "index"])
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path, tiny_encoder_dir, command, capsys):
    from dreamir.cli import main

    folder = make_beir(tmp_path / "beir")
    corpus = folder / "corpus.jsonl"
    before = corpus.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(corpus)
    argv = {
        "build-data": ["build-data", "--corpus", str(corpus), "--out", str(link)],
        "eval": ["eval", "--data", str(folder), "--model", "bm25", "--out", str(folder)],
        "index": ["index", "--data", str(folder), "--model", str(tiny_encoder_dir), "--out", str(folder)],
    }[command]
    assert main(argv) == 2
    assert "writing it would destroy the input" in capsys.readouterr().err
    assert corpus.read_bytes() == before


# 4. export is the run's result ---------------------------------------------------------------------------------
def test_export_of_an_ema_run_is_the_averaged_retriever_the_run_ended_with(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    from dreamir.models.retriever import Retriever
    from dreamir.trainer import export_run

    trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=4, **{"train.ema_decay": 0.5})
    result = trainer.train()
    exported = Retriever.load(str(export_run(trainer.run_dir, tmp_path / "exported")))
    final = Retriever.load(str(result.retriever_dir))
    for (name, a), (_, b) in zip(exported.named_parameters(), final.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


# 5. the embedding cache key covers the tokenizer --------------------------------------------------------------
def test_a_retriever_with_another_tokenizer_setting_has_another_fingerprint(tiny_encoder_dir):
    from dreamir.models.retriever import Retriever
    from dreamir.retrieval.cache import retriever_fingerprint

    retriever = Retriever.load(str(tiny_encoder_dir))
    before = retriever_fingerprint(retriever)
    assert retriever_fingerprint(Retriever.load(str(tiny_encoder_dir))) == before
    retriever.encode(["a text long enough to be cut"], "document")  # sets per-call truncation in the tokenizer
    assert retriever_fingerprint(retriever) == before  # so the cache still hits after an encode
    from tokenizers import normalizers

    retriever.st.tokenizer.backend_tokenizer.normalizer = normalizers.NFD()  # e.g. a copy that does not lower-case
    assert retriever_fingerprint(retriever) != before


# 6. non-finite settings, losses and vectors -------------------------------------------------------------------
def test_non_finite_settings_are_refused():
    from dreamir.config import ConfigError

    for key in ("train.lr", "dream.temperature", "train.anchor_weight"):
        with pytest.raises(ConfigError, match=f"{key}: Input should be a finite number"):
            load_config(None, {key: float("inf")})


def test_a_nan_loss_stops_training_before_the_update_keeping_the_last_good_checkpoint(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch
):
    from dreamir.trainer import NonFiniteTraining

    trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=6)
    original = type(trainer.objective).forward
    calls = []

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(1)
        return out if len(calls) < 3 else type(out)(out.loss * float("nan"), out.metrics | {"loss": float("nan")})

    monkeypatch.setattr(type(trainer.objective), "forward", poisoned)
    with pytest.raises(NonFiniteTraining, match=r"non-finite loss at step 3 .* last good checkpoint is .*step-0000002"):
        trainer.train()
    state = torch.load(trainer.run_dir / "checkpoints" / "step-0000002.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["retriever"].values())
    assert all(torch.isfinite(p).all() for p in trainer.retriever.parameters())  # the update never ran


def test_non_finite_vectors_are_not_indexed():
    import numpy as np

    from dreamir.retrieval.index import DenseIndex

    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite vectors \\(documents b"):
        DenseIndex.build(["a", "b", "c"], vectors)


# 7. + 8. resume checks the data, and says when there is nothing to resume ---------------------------------------
def test_resume_refuses_other_training_data_behind_the_same_path(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    first = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    first.train()
    later = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=4, data_seed=5)  # same path, other data
    with pytest.raises(ValueError, match="other training data than the checkpoint"):
        later.train(resume=True)


def test_resume_without_a_checkpoint_says_so_and_logs_each_step_once(tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys):
    trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=3, **{"train.checkpoint_every": 50})
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    (trainer.run_dir / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")  # killed before a save
    trainer.train(resume=True)
    assert "no readable checkpoint" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (trainer.run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


# 13. + 14. duplicated models, strict qrels scores ---------------------------------------------------------------
def test_a_model_given_twice_to_eval_is_refused(tmp_path, capsys):
    from dreamir.cli import main

    assert main(["eval", "--data", str(make_beir(tmp_path / "b")), "--model", "bm25", "--model", "bm25"]) == 2
    assert "--model bm25 given twice" in capsys.readouterr().err


@pytest.mark.parametrize("score", ["1_0", "1e3", "100000000000000000000000", "+"])
def test_qrels_scores_are_read_strictly(tmp_path, score):
    from dreamir.data.beir import load_beir
    from dreamir.data.jsonl import DataError

    qrels = f"query-id\tcorpus-id\tscore\nq1\td1\t{score}\n"
    with pytest.raises(DataError, match="line 2: field 'score': not an integer"):
        load_beir(make_beir(tmp_path / "b", qrels=qrels), "test")


# 15. folders and files follow the umask --------------------------------------------------------------------------
def test_written_folders_follow_the_umask(tmp_path):
    from dreamir.files import atomic_folder

    old = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "out", "marker.json") as folder:
            (folder / "marker.json").write_text("{}")
            os.chmod(folder / "marker.json", 0o600)  # as some writers create their files
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "marker.json").stat().st_mode) == 0o644


# 17. Ctrl-C and SIGTERM ---------------------------------------------------------------------------------------------
def test_an_interrupted_command_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    from dreamir import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_eval", interrupted)
    assert cli.main(["eval", "--data", str(make_beir(tmp_path / "b")), "--model", "bm25"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dreamir eval: interrupted; the report folder keeps its previous version (or none); run it again"]


# 9. a report is the old one or the new one -------------------------------------------------------------------------
def test_an_eval_report_interrupted_midway_leaves_the_old_report_whole(tmp_path, monkeypatch):
    from dreamir.data.beir import load_beir
    from dreamir.evaluation import report
    from dreamir.evaluation.evaluate import evaluate_model

    data = load_beir(make_beir(tmp_path / "b"), "test")
    first = evaluate_model("bm25", data, show_progress=False)
    out = report.write_report(tmp_path / "report", [first], data, "test")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert json.loads(before["metrics.json"])["per_query_ndcg@10"]["bm25"]  # per-query scores are kept

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, or a full disk) between two files of the report

    monkeypatch.setattr(report, "plot_comparison", killed)
    second = evaluate_model("bm25", data, show_progress=False, name="bm25 again")
    with pytest.raises(KeyboardInterrupt):
        report.write_report(out, [second], data, "test")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.") and p.suffix == ".tmp"] == []
