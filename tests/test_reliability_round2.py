"""Issue 34 (reliability round 2): each test reproduces a probe case that lost data or gave a silently wrong
result on main at 1647f0e, and checks the fix at its root (the shared mechanism)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamir.config import load_config

from .malformed import DISK_FAULTS, qrels_cases, yaml_cases
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


@pytest.mark.parametrize(
    ("objective", "heads_file", "message"),
    [
        ("dream", {"llm": "qwen", "num_layers": 28, "num_heads": 12, "selected": [[29, 0]]}, "made for an LLM"),
        ("dream_distill", {"selected": [[99, 0]]}, r"heads \[\(99, 0\)\] are outside the frozen LLM"),
        ("dream_distill", {"selected": [[0, 99]]}, r"heads \[\(0, 99\)\] are outside"),
        ("dream", {"selected": [[-1, -1]]}, r"heads \[\(-1, -1\)\] are outside"),
    ],
)
def test_a_head_set_that_does_not_fit_the_llm_is_refused_before_any_model_loads(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch, capsys, objective, heads_file, message
):
    """Issue 34 item 10: one validation of a head set against the LLM's shape (read from its config), before the
    LLM or the retriever is loaded, for every objective that reads heads."""
    from dreamir.cli import main
    from dreamir.models import frozen_lm, retriever

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the head set was checked")

    monkeypatch.setattr(frozen_lm.FrozenLM, "load", classmethod(must_not_load))
    monkeypatch.setattr(retriever.Retriever, "load", classmethod(must_not_load))
    heads = tmp_path / "heads.json"
    ranking = [{"layer": lay, "head": h, "score": 1.0} for lay, h in heads_file["selected"]]
    heads.write_text(json.dumps({**heads_file, "ranking": ranking}))
    data = write_train_data(tmp_path / "train.jsonl", n=6)
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--llm", str(tiny_llm_dir), "--retriever"]
    argv += [str(tiny_encoder_dir), "--data", str(data), "--objective", objective, "--heads", str(heads)]
    assert main([*argv, "--set", "heads.count=1"]) == 2
    assert re.search(message, capsys.readouterr().err)


# 11. search after the corpus file was edited ---------------------------------------------------------------
def test_search_shows_the_text_it_indexed_after_the_corpus_file_changed(tmp_path, tiny_encoder_dir):
    from dreamir.retrieval.indexing import build_index, search_index

    data = make_beir(tmp_path / "b")
    corpus = data / "corpus.jsonl"
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    build_index(data, str(tiny_encoder_dir), tmp_path / "idx", show_progress=False)
    texts = {r["_id"]: f"{r.get('title', '')} {r['text']}".strip() for r in rows}
    rotated = [{**r, "title": "", "text": rows[(i + 1) % len(rows)]["text"]} for i, r in enumerate(rows)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rotated))  # ids kept, texts moved
    hits = search_index(tmp_path / "idx", "scurvy", k=len(rows))
    assert hits and all(hit["snippet"] == texts[hit["doc_id"]][:100] + ("…" if len(texts[hit["doc_id"]]) > 100 else "")
                        for hit in hits)  # fmt: skip


# 19. index parts: damaged, from another corpus, missing ----------------------------------------------------
def test_index_part_problems_name_the_part_and_what_differs(tmp_path, tiny_encoder_dir, capsys):
    from dreamir.cli import main

    data, other = make_beir(tmp_path / "b"), make_beir(tmp_path / "other")
    out = tmp_path / "idx"
    index = ["index", "--model", str(tiny_encoder_dir), "--out", str(out)]
    assert main([*index, "--data", str(data), "--shard", "1/2"]) == 0
    assert main([*index, "--data", str(other), "--shard", "2/2"]) == 0
    assert main(["index", "--out", str(out), "--merge"]) == 2
    err = capsys.readouterr().err
    assert "part 2 and part 1 come from different corpora" in err and str(other / "corpus.jsonl") in err
    assert main([*index, "--data", str(data), "--shard", "2/2"]) == 0
    part = out / "parts" / "part-00002-of-00002.npz"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # truncated (a copy cut short)
    assert main(["index", "--out", str(out), "--merge"]) == 2
    assert f"{part}: damaged or truncated index part" in capsys.readouterr().err
    part.unlink()
    assert main(["index", "--out", str(out), "--merge"]) == 2
    assert "parts [2] of 2 are missing" in capsys.readouterr().err


# 20. deep JSON, a torn log line, a dangling symlink output, a FIFO or device as the corpus ------------------
def test_json_nested_too_deeply_names_file_and_line(tmp_path):
    from dreamir.data.jsonl import DataError, iter_jsonl

    path = tmp_path / "train.jsonl"
    path.write_text('{"query": "q"}\n' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"train.jsonl, line 2: JSON nested too deeply"):
        list(iter_jsonl(path))


def test_a_log_line_cut_short_does_not_block_resume(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=4)
    trainer.train()
    log_path = tmp_path / "run" / "log.jsonl"
    with open(log_path, "a") as handle:
        handle.write('{"loss": 0.5, "st')  # the write a kill cut short
    resumed = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=6)
    assert resumed.train(resume=True).steps == 6
    assert [json.loads(line)["step"] for line in log_path.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    log_path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    from dreamir.data.jsonl import DataError
    from dreamir.trainer import read_log

    with pytest.raises(DataError, match=r"log.jsonl, line 2: not a JSON log row"):
        read_log(log_path)


def test_an_output_that_is_a_dangling_symlink_is_named(tmp_path, tiny_encoder_dir, capsys):
    from dreamir.cli import main

    data = make_beir(tmp_path / "b")
    (tmp_path / "idx").symlink_to(tmp_path / "gone")
    assert main(["index", "--data", str(data), "--model", str(tiny_encoder_dir), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'idx'} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in err
    assert ".tmp" not in err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_as_the_corpus_is_named_not_read(tmp_path, capsys, kind):
    from dreamir.cli import main

    folder = make_beir(tmp_path / "b")
    corpus = folder / "corpus.jsonl"
    corpus.unlink()
    if kind == "fifo":
        os.mkfifo(corpus)  # reading it would block forever
    else:
        corpus.symlink_to("/dev/zero")  # reading it would never end
    assert main(["build-data", "--corpus", str(folder), "--out", str(tmp_path / "t.jsonl")]) == 2
    assert "not a regular file (a pipe, socket or device)" in capsys.readouterr().err
    assert main(["eval", "--data", str(folder), "--model", "bm25"]) == 2
    assert "not a regular file" in capsys.readouterr().err


# 16. full disks and read-only targets (an injected ENOSPC / EROFS: the error a full tmpfs gives) ------------
@pytest.mark.parametrize("fault", DISK_FAULTS, ids=lambda f: f.name)
def test_a_full_or_read_only_disk_is_one_line_naming_the_path_and_keeps_the_old_output(
    tmp_path, monkeypatch, capsys, fault
):
    from dreamir.cli import main

    data = make_beir(tmp_path / "b")
    corpus = tmp_path / "long.jsonl"
    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human", "virus", "liver"]
    rows = [{"_id": f"d{i}", "text": " ".join(f"{words[(i + j) % 12]}{j % 5}" for j in range(60))} for i in range(12)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "train.jsonl"
    out.write_text("old\n")
    report = tmp_path / "report"
    assert main(["eval", "--data", str(data), "--model", "bm25", "--out", str(report)]) == 0
    before = sorted(p.name for p in report.iterdir())
    fault.install(monkeypatch)
    reason = fault.reason
    assert main(["build-data", "--corpus", str(corpus), "--out", str(out), "--candidates", "2"]) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if "dreamir" in line]  # progress bars aside
    assert said == [f"dreamir build-data: error: {out}: {reason}"]
    assert out.read_text() == "old\n"
    assert main(["eval", "--data", str(data), "--model", "bm25", "--out", str(report)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "dreamir" in line]
    assert len(err) == 1 and err[0].startswith(f"dreamir eval: error: {report}: {reason}")
    assert sorted(p.name for p in report.iterdir()) == before  # the old report, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file or folder left


def test_an_embedding_cache_that_cannot_be_written_is_a_warning_not_the_end(tmp_path, monkeypatch, capsys):

    from dreamir.models.retriever import Retriever
    from dreamir.retrieval.cache import encode_cached

    retriever = Retriever.load(str(_tiny_encoder(tmp_path)))
    texts = [f"text number {i}" for i in range(5)]
    expected = retriever.encode(texts, "doc", 64, False)
    DISK_FAULTS[0].install(monkeypatch)  # a full disk
    got = encode_cached(retriever, texts, "doc", folder=tmp_path / "cache")
    assert np.allclose(got, expected)
    assert "warning: could not write the embedding cache" in capsys.readouterr().out
    assert not list((tmp_path / "cache").glob("*.npy"))


def _tiny_encoder(tmp_path):
    from dreamir.testing import save_tiny_encoder

    return save_tiny_encoder(tmp_path / "enc", dropout=0.0)


# 21. a long encode keeps its finished chunks ------------------------------------------------------------------
def test_an_interrupted_encode_resumes_from_its_finished_chunks(tmp_path):
    from dreamir.models.retriever import Retriever
    from dreamir.retrieval.cache import encode_cached

    retriever = Retriever.load(str(_tiny_encoder(tmp_path)))
    texts = [f"document {i} about protein {i % 7}" for i in range(23)]
    whole = retriever.encode(texts, "doc", 64, False)
    calls: list[int] = []
    real = retriever.encode
    stop_at = [3]

    def interrupted(chunk, kind, batch_size, show_progress):
        calls.append(len(chunk))
        if len(calls) == stop_at[0]:
            raise RuntimeError("stopped")  # the process dies during the third chunk
        return real(chunk, kind, batch_size, show_progress)

    retriever.encode = interrupted
    with pytest.raises(RuntimeError, match="stopped"):
        encode_cached(retriever, texts, "doc", folder=tmp_path / "cache", chunk_texts=5)
    assert calls == [5, 5, 5]
    calls.clear()
    stop_at[0] = 0
    got = encode_cached(retriever, texts, "doc", folder=tmp_path / "cache", chunk_texts=5)
    assert calls == [5, 5, 3]  # chunks 1 and 2 were kept; 3, 4 and 5 encoded now
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    assert not list((tmp_path / "cache").glob("*.parts"))  # the whole entry replaced its chunks
    calls.clear()
    assert np.allclose(encode_cached(retriever, texts, "doc", folder=tmp_path / "cache", chunk_texts=5), whole)
    assert calls == []


# 18. damaged model files: a retriever's weights, a GGUF, the de-quantised copy ----------------------------
def test_a_truncated_retriever_weights_file_is_named(tmp_path, capsys):
    import shutil

    from dreamir.cli import main

    model = tmp_path / "model"
    shutil.copytree(_tiny_encoder(tmp_path), model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    data = make_beir(tmp_path / "b")
    assert main(["eval", "--data", str(data), "--model", str(model)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "dreamir" in line]
    assert len(err) == 1 and f"damaged or truncated weights: {weights}" in err[0]


def test_a_damaged_dequantised_copy_is_detected_and_rebuilt(tmp_path, monkeypatch, capsys):
    from dreamir import assets

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_text("{}")
    (copy / "model.safetensors").write_bytes(b"x" * 64)
    assets.write_copy_manifest(copy)
    assert assets.plain_copy_problem(copy) is None
    weights = copy / "model.safetensors"
    weights.write_bytes(b"x" * 32)  # truncated after it was written
    assert "does not match its checksum" in assets.plain_copy_problem(copy)
    (copy / "dreamir_copy.json").unlink()  # a copy from before manifests: its weights' headers are checked
    assert "incomplete metadata" in assets.plain_copy_problem(copy) or "deserializ" in assets.plain_copy_problem(copy)


@pytest.mark.integration
@pytest.mark.slow
def test_a_truncated_dequantised_copy_of_the_real_gguf_is_rebuilt(tmp_path, monkeypatch, capsys):
    from dreamir import assets

    from .conftest import require_alias

    require_alias("smollm2-135m-instruct")
    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    source = assets.resolve_model("smollm2-135m-instruct")
    copy = Path(assets.dequantised_copy(source).name_or_path)
    weights = copy / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 3])  # a disk that filled up while the copy was written
    again = Path(assets.dequantised_copy(source).name_or_path)
    assert "is damaged" in capsys.readouterr().out and again == copy
    assert (again / "model.safetensors").read_bytes() == whole


def test_a_killed_writers_temp_folder_is_removed_by_the_next_writer_at_once(tmp_path):
    """Issue 34 item 17: an interrupted export's temp folder does not wait an hour: a temp whose writer is gone
    is removed by the next write of the same target."""
    from dreamir.files import atomic_folder

    dead = tmp_path / ".export.999999999-0a1b2c3d.tmp"  # named by a process that no longer runs
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"x" * 1000)
    with atomic_folder(tmp_path / "export", "marker") as tmp:
        (tmp / "marker").write_text("")
    assert not dead.exists() and (tmp_path / "export" / "marker").exists()


# issue 38 item 6: what the output says -------------------------------------------------------------------
def test_the_signal_store_line_counts_small_entries():
    from dreamir.models.kv_store import DocumentKVStore

    store = DocumentKVStore(256 * 2**20)
    for i in range(999):
        store.put(f"k{i}", torch.zeros(25))  # 100 bytes each, as a judge signal of 25 candidates
    line = store.summary()
    assert "999 entries, 97.6 KB of 256.0 MB used" in line


def test_a_resumed_training_says_how_many_steps_it_trained_now(tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys):
    from dreamir.cli import main

    config = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "run", steps=4)
    write_train_data(tmp_path / "train.jsonl")
    common = ["train", "--config", str(config), "--objective", "infonce"]
    assert main(common) == 0
    assert "trained 4 steps in" in capsys.readouterr().out
    assert main([*common, "--max-steps", "6", "--resume"]) == 0
    assert "trained 2 steps in" in (out := capsys.readouterr().out) and "(resumed at step 4; 6 in all)" in out


# issue 38 item 2: a recipe that cannot fill --max-examples says so; the cap counts usable examples -------------
def test_spans_counts_max_examples_after_the_length_filter_and_says_what_to_change(tmp_path, capsys):
    from dreamir.cli import main

    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human", "virus", "liver"]
    rows = [{"_id": f"long{i}", "text": " ".join(f"{words[(i + j) % 12]}{j}" for j in range(80))} for i in range(6)]
    rows += [{"_id": f"short{i}", "text": " ".join(f"{words[(i + j) % 12]}x{j}" for j in range(30))} for i in range(30)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "train.jsonl"
    common = ["build-data", "--corpus", str(corpus), "--out", str(out), "--recipe", "spans", "--chunk-words", "24"]
    assert main([*common, "--target-words", "16", "--max-examples", "10", "--candidates", "3"]) == 0
    printed = capsys.readouterr()
    built = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(built) == 10 and all(r["source"].startswith("long") for r in built)  # 10 usable ones, not fewer
    assert "warning" not in printed.err
    assert main([*common, "--target-words", "16", "--max-examples", "100", "--candidates", "3"]) == 0
    err = capsys.readouterr().err
    assert "built" in err and "of the 100 examples asked for" in err and "lower --target-words (e.g. 8)" in err


# issue 38 item 3: `dreamir heads` takes what build-data and the BEIR loader take, checks inputs first ---------
def test_heads_accepts_a_build_data_file_and_a_beir_folder_and_says_when_it_used_fewer(
    tmp_path, tiny_llm_dir, capsys, monkeypatch
):
    from dreamir.cli import main
    from dreamir.models import frozen_lm

    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human", "virus", "liver"]
    rows = [{"_id": f"d{i}", "text": " ".join(f"{words[(i + j) % 12]}{j % 9}" for j in range(120))} for i in range(12)]
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    built = tmp_path / "train.jsonl"
    assert main(["build-data", "--corpus", str(folder), "--out", str(built), "--max-examples", "19"]) == 0
    capsys.readouterr()
    common = ["heads", "--llm", str(tiny_llm_dir), "--k", "2", "--num-examples", "32"]
    assert main([*common, "--data", str(built), "--out", str(tmp_path / "h1.json")]) == 0
    out = capsys.readouterr().out
    assert "as `dreamir train` selects them" in out and "--num-examples asked for 32; the data gave only" in out
    assert main([*common, "--data", str(folder), "--out", str(tmp_path / "h2.json")]) == 0  # a BEIR folder
    assert json.loads((tmp_path / "h2.json").read_text())["k"] == 2

    def must_not_load(*args, **kwargs):
        raise AssertionError("the LLM loaded before the input was checked")

    monkeypatch.setattr(frozen_lm.FrozenLM, "load", classmethod(must_not_load))
    assert main([*common, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "h3.json")]) == 2
    assert "missing" in capsys.readouterr().err


# issue 38 item 5: one pooled test over seeds in eval -----------------------------------------------------------
def test_eval_pools_seeds_into_one_paired_test_against_the_first_model(tmp_path, capsys):
    from dreamir.cli import main
    from dreamir.evaluation.significance import paired_test, pooled
    from dreamir.testing import save_tiny_encoder

    data = make_beir(tmp_path / "b")
    seeds = [str(save_tiny_encoder(tmp_path / f"seed{i}", seed=i)) for i in range(3)]
    out = tmp_path / "report"
    argv = ["eval", "--data", str(data), "--model", "bm25", "--pool", f"mine={','.join(seeds)}", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Pooled over seeds, against bm25" in printed and "| mine | 3 |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    per_query = metrics["per_query_ndcg@10"]
    expected = paired_test(per_query["bm25"], pooled([per_query[s] for s in seeds]))
    assert metrics["pooled"]["mine"]["p_value"] == expected.p_value
    assert metrics["pooled"]["mine"]["mean_difference"] == pytest.approx(expected.mean_difference)
    assert main(["eval", "--data", str(data), "--model", "bm25", "--pool", "mine=only-one"]) == 2
    assert "two or more models" in capsys.readouterr().err


# issue 38 item 4: seeds of one setup select one head set, so they share one judge signal ----------------------
def test_training_seeds_select_the_same_heads_without_a_pinned_file(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    selected = []
    for seed in (0, 7):
        trainer = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=1, name=f"seed{seed}",
                               **{"seed": seed, "train.objective": "dream_distill", "heads.count": 3})  # fmt: skip
        trainer.train()
        selected.append(json.loads((tmp_path / f"seed{seed}" / "heads.json").read_text())["selected"])
    assert selected[0] == selected[1]
    other = tiny_trainer(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=1, name="hs1",
                         **{"heads.seed": 1, "train.objective": "dream_distill", "heads.count": 3})  # fmt: skip
    other.train()
    ranking = json.loads((tmp_path / "hs1" / "heads.json").read_text())
    assert ranking["selected"] and ranking["num_examples"] > 0  # another sample seed: a selection of its own


# issue 38 item 1: ids with spaces: refused with the way out named, or encoded reversibly by --id-map ---------
def test_ids_with_spaces_are_encoded_reversibly_with_id_map_in_eval_index_and_search(tmp_path, capsys):
    from dreamir.cli import main
    from dreamir.data.beir import decode_id, encode_id
    from dreamir.retrieval.indexing import search_index

    corpus = [{"_id": "Vitamin C 1", "title": "", "text": "vitamin c deficiency causes scurvy"},
              {"_id": "Heart 50%", "title": "", "text": "the heart pumps blood through the body"},
              {"_id": "Heart%2050", "title": "", "text": "blood vessels and the heart in mammals"}]  # fmt: skip
    queries = [{"_id": "q 1", "text": "what causes scurvy"}, {"_id": "q2", "text": "what does the heart do"}]
    qrels = "query-id\tcorpus-id\tscore\nq 1\tVitamin C 1\t1\nq2\tHeart 50%\t1\n"
    data = make_beir(tmp_path / "b", corpus, queries, qrels)
    assert main(["eval", "--data", str(data), "--model", "bm25"]) == 2
    assert "contains whitespace" in (err := capsys.readouterr().err) and "pass --id-map" in err
    out = tmp_path / "report"
    assert main(["eval", "--data", str(data), "--model", "bm25", "--id-map", "--out", str(out)]) == 0
    ids = {line.split()[2] for line in (out / "run.trec").read_text().splitlines()}
    assert ids <= {encode_id(d["_id"]) for d in corpus} and "Vitamin%20C%201" in ids
    assert {decode_id(i) for i in ids} <= {d["_id"] for d in corpus}  # every encoded id decodes to its original
    assert len({encode_id(d["_id"]) for d in corpus}) == 3  # "Heart 50%" and "Heart%2050" stay apart
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["bm25"]["ndcg@10"] > 0.5
    index = tmp_path / "idx"
    assert main(["index", "--data", str(data), "--model", str(_tiny_encoder(tmp_path)), "--out", str(index)]) == 2
    assert "pass --id-map" in capsys.readouterr().err
    assert (
        main(["index", "--data", str(data), "--model", str(_tiny_encoder(tmp_path)), "--out", str(index), "--id-map"])
        == 0
    )
    assert {hit["doc_id"] for hit in search_index(index, "scurvy", k=3)} == {d["_id"] for d in corpus}


# the probe's generator, extended (tests/malformed.py): config keys given twice, qrels numbers -----------------
@pytest.mark.parametrize(
    "case", yaml_cases({"seed": 1, "train": {"lr": 0.1}, "heads": {"count": 4}}), ids=lambda c: c.name
)
def test_every_config_key_given_twice_is_refused_with_its_line(tmp_path, case):
    from dreamir.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_bytes(case.content)
    if case.expect == "ok":
        load_config(path)
        return
    with pytest.raises(ConfigError, match=rf"key '{case.field}' given twice \(lines \d+ and {case.line}\)"):
        load_config(path)


@pytest.mark.parametrize("case", qrels_cases(), ids=lambda c: c.name)
def test_every_qrels_score_is_read_strictly(tmp_path, case):
    from dreamir.data.beir import load_qrels
    from dreamir.data.jsonl import DataError

    path = tmp_path / "test.tsv"
    path.write_bytes(case.content)
    if case.expect == "ok":
        assert len(load_qrels(path)) == 2
        return
    with pytest.raises(DataError, match=rf"line {case.line}: field '{case.field}'"):
        load_qrels(path)
