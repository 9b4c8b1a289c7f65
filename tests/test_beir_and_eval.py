"""BEIR loading (malformed inputs), search backends, embedding cache, eval/index/search commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamir.data.beir import load_beir
from dreamir.data.jsonl import DataError
from dreamir.retrieval.index import DenseIndex

CORPUS = [
    {"_id": "d1", "title": "Scurvy", "text": "vitamin c deficiency causes scurvy"},
    {"_id": "d2", "title": "", "text": "the heart pumps blood"},
    {"_id": "d3", "title": "Brain", "text": "the brain uses energy"},
]
QUERIES = [{"_id": "q1", "text": "what causes scurvy"}, {"_id": "q2", "text": "what does the heart do"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def make_beir(folder, corpus=None, queries=None, qrels=QRELS, corpus_raw=None, queries_raw=None):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_bytes(
        corpus_raw if corpus_raw is not None else "".join(json.dumps(d) + "\n" for d in corpus or CORPUS).encode()
    )
    (folder / "queries.jsonl").write_bytes(
        queries_raw if queries_raw is not None else "".join(json.dumps(q) + "\n" for q in queries or QUERIES).encode()
    )
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def good_corpus_bytes(extra: bytes) -> bytes:
    return "".join(json.dumps(d) + "\n" for d in CORPUS).encode() + extra


BROKEN = {
    "malformed corpus JSON": (
        dict(corpus_raw=good_corpus_bytes(b'{"_id": "d9", "text": \n')),
        "corpus.jsonl, line 4: malformed JSON",
    ),
    "non-UTF-8 corpus": (
        dict(corpus_raw=good_corpus_bytes(b'{"_id": "d9", "text": "\xff"}\n')),
        "corpus.jsonl, line 4: not valid UTF-8",
    ),
    "duplicate document id": (
        dict(corpus=[*CORPUS, {"_id": "d2", "text": "again"}]),
        "line 4: field '_id': duplicate document id 'd2' (first on line 2)",
    ),
    "document without _id": (dict(corpus=[*CORPUS, {"text": "no id"}]), "corpus.jsonl, line 4: field '_id': missing"),
    "document text not a string": (
        dict(corpus=[*CORPUS, {"_id": "d9", "text": 5}]),
        "line 4: field 'text': expected a string",
    ),
    "title not a string": (dict(corpus=[*CORPUS, {"_id": "d9", "title": ["x"], "text": "t"}]), "line 4: field 'title'"),
    "duplicate query id": (
        dict(queries=[*QUERIES, {"_id": "q1", "text": "again"}]),
        "queries.jsonl, line 3: field '_id': duplicate query id",
    ),
    "query line not an object": (
        dict(queries_raw=b'["q1", "text"]\n'),
        "queries.jsonl, line 1: expected a JSON object",
    ),
    "qrels with 2 columns": (
        dict(qrels="query-id\tcorpus-id\tscore\nq1\td1\n"),
        "test.tsv, line 2: expected 3 tab-separated columns",
    ),
    "qrels score not an integer": (
        dict(qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n"),
        "test.tsv, line 2: field 'score': not an integer",
    ),
    "no judged query": (dict(qrels="query-id\tcorpus-id\tscore\nq9\td1\t1\n"), "no query of this split has both"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_beir_files_give_the_documented_error(tmp_path, case):
    kwargs, message = BROKEN[case]
    folder = make_beir(tmp_path / "beir", **kwargs)
    with pytest.raises(DataError) as err:
        load_beir(folder, "test")
    assert message in str(err.value)


def test_imperfect_beir_parts_are_skipped_and_counted(tmp_path):
    corpus = [*CORPUS, {"_id": "d4", "title": "", "text": "  "}]
    queries = [*QUERIES, {"_id": "q3", "text": ""}, {"_id": "q4", "text": "unjudged"}]
    qrels = QRELS + "q1\td404\t1\nq404\td1\t1\nq3\td1\t1\n"
    data = load_beir(make_beir(tmp_path / "beir", corpus, queries, qrels), "test")
    assert data.stats.counts == {
        "skipped_empty_documents": 1,
        "skipped_empty_queries": 1,
        "qrels_skipped_unknown_document": 1,
        "qrels_skipped_unknown_query": 2,
        "queries_without_qrels": 1,
    }
    assert set(data.queries) == {"q1", "q2"} and data.corpus["d1"] == "Scurvy vitamin c deficiency causes scurvy"


def test_missing_split_lists_the_available_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no qrels for split 'dev'.*\['test'\]"):
        load_beir(make_beir(tmp_path / "beir"), "dev")


@pytest.mark.parametrize("factory", ["exact", "Flat", "IVF4,Flat", "HNSW8"])
def test_index_backends_agree_with_exact_search(tmp_path, factory):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(400, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:20] + 0.01 * rng.normal(size=(20, 16)).astype(np.float32)
    ids = [f"d{i}" for i in range(400)]
    index = DenseIndex.build(ids, docs, factory, params="nprobe=4" if factory.startswith("IVF") else "")
    index.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    scores, rows = loaded.search(queries, 5)
    exact = np.argsort(-(queries @ docs.T), axis=1)[:, :5]
    assert (rows[:, 0] == np.arange(20)).all()
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(rows, exact)]) > 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_identical_ids_are_dropped_by_default(tmp_path):
    from dreamir.retrieval.search import bm25_run

    corpus = {"q1": "vitamin c deficiency causes scurvy", "d2": "scurvy causes and vitamin c", "d3": "heart"}
    run = bm25_run(corpus, {"q1": "vitamin c scurvy"}, k=2)
    assert "q1" not in run["q1"] and len(run["q1"]) == 2
    assert "q1" in bm25_run(corpus, {"q1": "vitamin c scurvy"}, k=2, ignore_identical_ids=False)["q1"]


def test_corpus_sample_keeps_judged_documents_and_is_seeded(tmp_path):
    from dreamir.data.beir import sample_corpus

    corpus = [{"_id": f"d{i}", "text": f"document number {i}"} for i in range(40)]
    queries = [{"_id": "q1", "text": "number 3"}, {"_id": "q2", "text": "number 30"}]
    data = load_beir(make_beir(tmp_path, corpus, queries, "q1\td3\t1\nq2\td30\t1\nq2\td31\t0\n"))
    sample = sample_corpus(data, 10, seed=1)
    assert len(sample.corpus) == 10 and {"d3", "d30", "d31"} <= set(sample.corpus)
    assert sample.queries == data.queries and sample.qrels == data.qrels
    assert sample.corpus == sample_corpus(data, 10, seed=1).corpus
    assert sample.corpus != sample_corpus(data, 10, seed=2).corpus
    assert sample.stats.counts["corpus_sampled_out"] == 30 and "10-doc sample" in sample.name
    assert set(sample_corpus(data, 2).corpus) == {"d3", "d30", "d31"}  # judged documents always stay
    assert len(sample_corpus(data, 100).corpus) == 40


def test_eval_sample_docs_flag(tmp_path, capsys):
    from dreamir.cli import main

    corpus = [{"_id": f"d{i}", "text": f"document number {i}"} for i in range(30)]
    folder = make_beir(tmp_path, corpus, [{"_id": "q1", "text": "number 3"}], "q1\td3\t1\n")
    assert main(["eval", "--data", str(folder), "--model", "bm25", "--sample-docs", "5"]) == 0
    assert "corpus_sampled_out=25" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--data", str(folder), "--model", "bm25", "--sample-docs", "0"])
    assert "must be positive" in capsys.readouterr().err


def test_eval_index_search_commands_and_cache(tmp_path, tiny_encoder_dir, monkeypatch, capsys):
    from dreamir.cli import main
    from dreamir.models.retriever import Retriever

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    calls = []
    original = Retriever.encode

    def counting(self, texts, kind, *a, **kw):
        calls.append((kind, len(texts)))
        return original(self, texts, kind, *a, **kw)

    monkeypatch.setattr(Retriever, "encode", counting)
    out = tmp_path / "report"
    args = ["eval", "--data", str(folder), "--model", str(tiny_encoder_dir), "--model", "bm25", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0
    assert [c for c in calls if c[0] == "document"] == [("document", 3)]  # second eval read the cache
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {str(tiny_encoder_dir), "bm25"}
    assert metrics["models"]["bm25"]["ndcg@10"] == pytest.approx(1.0)
    run_lines = (out / "run.trec").read_text().splitlines()
    assert run_lines and len(run_lines[0].split()) == 6
    assert (out / "comparison.png").stat().st_size > 1000 and "| bm25 |" in (out / "report.md").read_text()

    assert main(["index", "--data", str(folder), "--model", str(tiny_encoder_dir), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "what causes scurvy", "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1"


def test_mteb_wrapper_runs_a_local_beir_task_and_agrees_with_dreamir(tmp_path, tiny_encoder_dir, monkeypatch):
    mteb = pytest.importorskip("mteb")
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.evaluation.mteb_wrapper import DreamirEncoder, local_beir_task

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    results = mteb.evaluate(DreamirEncoder.load(str(tiny_encoder_dir)), [local_beir_task(folder)], cache=None)
    scores = results.task_results[0].scores["test"][0]
    ours = evaluate_model(str(tiny_encoder_dir), load_beir(folder, "test"), show_progress=False).metrics
    assert scores["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=1e-4)
    assert scores["mrr_at_10"] == pytest.approx(ours["mrr@10"], abs=1e-4)


def test_eval_index_and_search_load_dense_models_on_the_device_asked_for(tmp_path, tiny_encoder_dir, monkeypatch):
    """`--device` reaches the dense encoder in eval, index and search (it used to reach zero-shot models only,
    so `dreamir eval --device cuda` encoded dense models on the CPU). No GPU here: the load is recorded, then
    done on the CPU."""
    from dreamir.cli import main
    from dreamir.models.retriever import Retriever

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    devices = []
    original = Retriever.load.__func__

    def recording(cls, name, *args, device="cpu", **kwargs):
        devices.append(device)
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(Retriever, "load", classmethod(recording))
    model = str(tiny_encoder_dir)
    assert main(["eval", "--data", str(folder), "--model", model, "--model", "bm25", "--device", "cuda:3"]) == 0
    assert (
        main(["index", "--data", str(folder), "--model", model, "--out", str(tmp_path / "i"), "--device", "cuda:2"])
        == 0
    )
    assert main(["search", "--index", str(tmp_path / "i"), "scurvy", "--device", "cuda:1"]) == 0
    assert devices == ["cuda:3", "cuda:2", "cuda:1"]
