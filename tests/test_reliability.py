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


def test_resume_ignores_sections_of_objectives_the_run_does_not_read(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """A DREAM run never reads `infonce:` or `replug:` (it does read `dream:`), so a comparison that changes
    another objective's section can still resume its interrupted DREAM run, as it can reuse a finished one."""
    from dreamir.trainer import Trainer

    trainer, config = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    assert config.train.objective == "dream"
    trainer.train()
    read = load_config(tmp_path / "run.yaml", {"dream.mode": "reweight", "train.max_steps": 3})
    with pytest.raises(ValueError, match=r"1 key\(s\): dream.mode"):
        Trainer(read, show_progress=False).train(resume=True)
    unread = {"infonce.temperature": 0.5, "replug.lm_temperature": 3.0, "train.max_steps": 3}
    assert Trainer(load_config(tmp_path / "run.yaml", unread), show_progress=False).train(resume=True).steps == 3


def test_checkpoints_hold_only_weights_only_types(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    trainer, _ = train_tiny(tmp_path, tiny_llm_dir, tiny_encoder_dir, steps=2)
    trainer.train()
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000002.pt", weights_only=True)
    assert state["step"] == 2 and json.dumps(state["config"])


# the malformed-input generator, over every JSONL loader ---------------------------------------------
def _loaders():
    from dreamir.data.beir import load_corpus, load_queries, read_corpus
    from dreamir.data.text import read_qa_pairs
    from dreamir.data.training import DataStats, load_examples

    corpus_rows = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]
    return {
        "beir corpus": (lambda p: load_corpus(p, DataStats()), corpus_rows, {"_id": "id", "text": "str"}),
        "beir queries": (
            lambda p: load_queries(p, DataStats()),
            [{"_id": "q1", "text": "a"}, {"_id": "q2", "text": "b"}],
            {"_id": "id", "text": "str"},
        ),
        "build-data corpus": (lambda p: read_corpus(p, DataStats()), corpus_rows, {"text": "str"}),
        "qa pairs": (
            lambda p: read_qa_pairs(p, DataStats()),
            [{"question": "q", "answer": "a"}, {"question": "r", "answer": "b"}],
            {"question": "str", "answer": "str"},
        ),
        "training examples": (
            lambda p: load_examples(p),
            [
                {"query": "q", "target": "y", "candidates": ["a", "b"], "positive": 0},
                {"query": "r", "target": "z", "candidates": ["c"]},
            ],
            {"query": "str", "target": "str", "candidates": "str_list", "positive": "int?"},
        ),
    }


def _cases():
    from .malformed import jsonl_cases

    for loader, (_, good, fields) in _loaders().items():
        for case in jsonl_cases(good, fields):
            yield pytest.param(loader, case, id=f"{loader}: {case.name}")


@pytest.mark.parametrize(("loader", "case"), list(_cases()))
def test_every_jsonl_loader_names_file_line_and_field_for_malformed_input(tmp_path, loader, case):
    from dreamir.data.jsonl import DataError

    load = _loaders()[loader][0]
    path = tmp_path / "input.jsonl"
    path.write_bytes(case.content)
    if case.expect == "ok":
        load(path)
        return
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message and f"line {case.line}" in message, message
    if case.field:
        assert f"'{case.field}'" in message, message


# BEIR ids, qrels and training positives ---------------------------------------------------------------
def test_beir_ids_are_normalised_the_same_way_in_corpus_queries_and_qrels(tmp_path):
    from dreamir.data.beir import load_beir

    from .test_beir_and_eval import make_beir

    corpus = [{"_id": " d1 ", "text": "vitamin c scurvy"}, {"_id": "d2", "text": "heart"}]
    queries = [{"_id": "q1 ", "text": "scurvy"}]
    data = load_beir(make_beir(tmp_path / "b", corpus, queries, "query-id\tcorpus-id\tscore\nq1\t d1\t1\n"), "test")
    assert (
        data.qrels == {"q1": {"d1": 1}}
        and "d1" in data.corpus
        and not data.stats.counts.get("qrels_skipped_unknown_document")
    )


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", "line 3: field 'score': conflicting duplicate"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t0\nq2\td2\t-1\n", "no judgement has a positive score"),
        ("query-id\tcorpus-id\tscore\nq1\td 1\t1\n", "line 2: field 'corpus-id': id 'd 1' contains whitespace"),
    ],
)
def test_qrels_conflicts_non_positive_scores_and_untrec_ids_are_errors(tmp_path, qrels, message):
    from dreamir.data.beir import load_beir
    from dreamir.data.jsonl import DataError

    from .test_beir_and_eval import make_beir

    with pytest.raises(DataError, match=message):
        load_beir(make_beir(tmp_path / "b", qrels=qrels), "test")


def test_qrels_with_a_bom_and_empty_queries_get_the_right_message(tmp_path):
    from dreamir.data.beir import load_beir
    from dreamir.data.jsonl import DataError

    from .test_beir_and_eval import QRELS, make_beir

    assert load_beir(make_beir(tmp_path / "a", qrels="\ufeff" + QRELS), "test").qrels["q1"] == {"d1": 1}
    with pytest.raises(DataError, match=r"queries.jsonl: no queries"):
        load_beir(make_beir(tmp_path / "b", queries_raw=b""), "test")


def test_positive_true_and_a_positive_on_an_empty_candidate_are_errors(tmp_path):
    from dreamir.data.jsonl import DataError
    from dreamir.data.training import load_examples

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"query": "q", "target": "y", "candidates": ["a", "b"], "positive": True}) + "\n")
    with pytest.raises(DataError, match=r"line 1: field 'positive': must be an integer index"):
        load_examples(path)
    path.write_text(json.dumps({"query": "q", "target": "y", "candidates": ["a", " "], "positive": 1}) + "\n")
    with pytest.raises(DataError, match=r"line 1: field 'positive': points at candidate 1, which is empty"):
        load_examples(path)


# numeric arguments are checked at the boundary ---------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["build-data", "--corpus", "c", "--out", "o", "--chunk-words", "0"],
        ["build-data", "--corpus", "c", "--out", "o", "--candidates", "-3"],
        ["build-data", "--corpus", "c", "--out", "o", "--max-examples", "0"],
        ["train", "--max-steps", "0"],
    ],
)
def test_non_positive_counts_are_refused_by_the_argument_parser(argv, capsys):
    from dreamir.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "must be positive" in capsys.readouterr().err


def test_bad_heads_count_and_bad_yaml_in_set_are_messages(capsys):
    from dreamir.cli import main

    assert main(["train", "--set", "heads.count=-1"]) == 2
    assert "heads.count: Value error, a positive number of heads or 'all', got -1" in capsys.readouterr().err
    assert main(["train", "--set", "train.lr=[1,"]) == 2
    assert "--set train.lr=[1,: the value is not valid YAML" in capsys.readouterr().err


# index: swapped whole, verified on load, tied to its model ----------------------------------------------
def _index(folder, model, out, env=None):
    from .test_trainer import dreamir

    return dreamir("index", "--data", str(folder), "--model", str(model), "--out", str(out), env_extra=env, check=False)


def _search_ids(index) -> list[str]:
    from .test_trainer import dreamir

    proc = dreamir("search", "--index", str(index), "vitamin c deficiency causes scurvy", "-k", "3")
    return [line.split()[2] for line in proc.stdout.strip().splitlines()]


def test_sigkill_at_every_file_operation_of_index_leaves_the_old_or_the_new_index(tmp_path, tiny_encoder_dir):
    """Kill `dreamir index` over an existing index at each of its file operations: search then answers
    with the old index (old corpus) or the new one, never a mix, and never silently."""
    from .test_beir_and_eval import CORPUS, QUERIES, make_beir

    old_data = make_beir(tmp_path / "old", CORPUS, QUERIES)
    new_corpus = [{"_id": f"n{i}", "title": "", "text": d["text"]} for i, d in enumerate([*CORPUS, *CORPUS])]
    new_data = make_beir(tmp_path / "new", new_corpus, QUERIES, "query-id\tcorpus-id\tscore\nq1\tn0\t1\n")
    index = tmp_path / "idx"
    assert _index(old_data, tiny_encoder_dir, index).returncode == 0
    old_ids = _search_ids(index)
    assert old_ids and all(i.startswith("d") for i in old_ids)
    outcomes = set()
    for op in range(1, 8):
        proc = _index(new_data, tiny_encoder_dir, index, {"DREAMIR_KILL_AT_FILE_OP": str(op)})
        ids = _search_ids(index)
        assert ids in (old_ids, [i for i in ids if i.startswith("n")]) and ids, (op, ids)
        outcomes.add("killed" if proc.returncode == -9 else "finished")
        if proc.returncode == 0:  # past the last operation: put the old index back for the next kill
            assert _index(old_data, tiny_encoder_dir, index).returncode == 0
    assert outcomes == {"killed", "finished"}


def test_an_index_mixed_from_two_saves_or_searched_with_another_model_is_refused(tmp_path, tiny_encoder_dir):
    import shutil

    from dreamir.retrieval.indexing import search_index

    from .test_beir_and_eval import make_beir

    data = make_beir(tmp_path / "b")
    assert _index(data, tiny_encoder_dir, tmp_path / "idx").returncode == 0
    ids = json.loads((tmp_path / "idx" / "ids.json").read_text())
    (tmp_path / "idx" / "ids.json").write_text(json.dumps(ids[1:] + ids[:1]))  # ids shifted by one
    with pytest.raises(ValueError, match=r"ids.json does not match the checksum"):
        search_index(tmp_path / "idx", "scurvy")
    model = tmp_path / "model"
    shutil.copytree(tiny_encoder_dir, model)
    assert _index(data, model, tmp_path / "idx2").returncode == 0
    state = model / "model.safetensors"
    from safetensors.torch import load_file, save_file

    weights = load_file(state)
    save_file({k: v + 0.01 for k, v in weights.items()}, state)  # the model folder replaced after indexing
    with pytest.raises(ValueError, match=r"is not the one .* was built with"):
        search_index(tmp_path / "idx2", "scurvy")
    assert search_index(tmp_path / "idx2", "scurvy", force=True)


# the embedding cache checks its entries -----------------------------------------------------------------
def test_a_damaged_embedding_cache_entry_is_named_dropped_and_reencoded(tmp_path, tiny_encoder_dir, capsys):
    import numpy as np

    from dreamir.models.retriever import Retriever
    from dreamir.retrieval.cache import encode_cached

    retriever = Retriever.load(str(tiny_encoder_dir))
    texts = ["vitamin c", "the heart", "brain energy", "gene study"]
    fresh = encode_cached(retriever, texts, "document", folder=tmp_path)
    (entry,) = tmp_path.glob("*.npy")
    np.save(entry, np.asarray(fresh)[::-1])  # permuted rows, same shape
    again = encode_cached(retriever, texts, "document", folder=tmp_path)
    assert np.allclose(again, fresh) and f"dropping embedding cache entry {entry}" in capsys.readouterr().out
    entry.write_bytes(b"")  # zero bytes
    assert np.allclose(encode_cached(retriever, texts, "document", folder=tmp_path), fresh)
    assert np.allclose(encode_cached(retriever, texts, "document", folder=tmp_path), fresh)  # healed
    assert "dropping" in capsys.readouterr().out


# unknown models fail fast; eval checks its inputs before working --------------------------------------
def test_an_unknown_model_name_fails_within_seconds_naming_the_aliases(tmp_path, capsys):
    import time

    from dreamir.cli import main

    from .test_beir_and_eval import make_beir

    start = time.perf_counter()
    assert main(["eval", "--data", str(make_beir(tmp_path / "b")), "--model", "bm26"]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert "model 'bm26' is not a local folder" in err and "all-minilm-l6-v2" in err
    (tmp_path / "report.md").write_text("x")
    assert main(["eval", "--data", str(tmp_path / "b"), "--model", "bm25", "--out", str(tmp_path / "report.md")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_temp_files_left_by_a_crash_are_removed_by_the_next_write(tmp_path):
    import os
    import time

    from dreamir.files import atomic_write

    stale = tmp_path / ".out.json.abc123.tmp"
    stale.write_text("half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    live = tmp_path / ".out.json.def456.tmp"  # another writer's, just now: kept
    live.write_text("in progress")
    atomic_write(tmp_path / "out.json", "{}")
    assert not stale.exists() and live.exists() and (tmp_path / "out.json").read_text() == "{}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a heads JSON"),
        ("[[0, 1]]", "field 'ranking': missing or not a list"),
        ('{"selected": [[0, 1]]}', "field 'ranking': missing or not a list"),
        ('{"ranking": [{"layer": 0}]}', "field 'ranking': entries must be"),
    ],
)
def test_a_broken_heads_file_is_named(tmp_path, content, message):
    from dreamir.data.jsonl import DataError
    from dreamir.heads import load_heads

    path = tmp_path / "heads.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_heads(path, 4)
    assert str(path) in str(err.value)


def test_messages_name_the_real_problem(tmp_path, capsys):
    from dreamir.assets import resolve_model
    from dreamir.cli import main
    from dreamir.data.jsonl import DataError
    from dreamir.data.training import load_examples

    (tmp_path / "empty-model").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a model folder"):
        resolve_model(str(tmp_path / "empty-model"))
    (tmp_path / "corpus.jsonl.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match="gzip-compressed"):
        load_examples(tmp_path / "corpus.jsonl.gz")
    (tmp_path / "out").mkdir()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": "word " * 40}) + "\n" for i in range(12)))
    assert main(["build-data", "--corpus", str(corpus), "--out", str(tmp_path / "out"), "--candidates", "2"]) == 2
    assert "is a directory" in capsys.readouterr().err and not list((tmp_path).glob(".out.*"))
