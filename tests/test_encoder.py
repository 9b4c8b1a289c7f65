"""One resolver from a model argument to an encoder (retrieval/encoder.py), used by eval, index, search and mteb."""

from __future__ import annotations

import numpy as np
import pytest

from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import ModelSpec, exported_retriever
from dreamir.retrieval.encoder import BM25Encoder, DenseEncoder, load_encoder
from tests.test_beir_and_eval import CORPUS, QUERIES, make_beir


def test_specs_are_read_in_one_place(tmp_path, tiny_encoder_dir):
    from dreamir.retrieval.base import ZERO_SHOT_METHODS
    from dreamir.retrieval.zeroshot.retrieval import METHODS

    assert tuple(METHODS) == ZERO_SHOT_METHODS  # the spec reader knows every zero-shot method
    assert ModelSpec.parse("bm25").kind == ModelSpec.parse("BM25").kind == "bm25"
    zero_shot = ModelSpec.parse("PromptReps:smollm2-135m-instruct", check=False)
    assert (zero_shot.kind, zero_shot.name, zero_shot.is_zero_shot) == ("promptreps", "smollm2-135m-instruct", True)
    assert ModelSpec.parse("diffretriever:x", check=False).kind == "diffretriever"
    with pytest.raises(ValueError, match="give a model after the colon"):
        ModelSpec.parse("promptreps:")
    dense = ModelSpec.parse(str(tiny_encoder_dir))
    assert (dense.kind, dense.name, dense.is_zero_shot) == ("dense", str(tiny_encoder_dir), False)
    # a colon that names no zero-shot method is an ordinary model name (hub names may not hold one; a path may)
    assert ModelSpec.parse("C:models", check=False).kind == "dense"


def test_a_run_folder_stands_for_its_exported_retriever(tmp_path, tiny_encoder_dir):
    run = tmp_path / "run"
    (run / "retriever").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    assert exported_retriever(str(run)) == str(run)  # not exported yet: the folder itself (and fails as a model)
    (run / "retriever" / "modules.json").write_text("[]")
    assert exported_retriever(str(run)) == str(run / "retriever")
    assert ModelSpec.parse(str(run)).name == str(run / "retriever")


def test_missing_models_fail_when_parsed_not_when_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="model path not found"):
        ModelSpec.parse(str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError, match="not an alias"):
        ModelSpec.parse("promptreps:no-such-model-anywhere")
    assert ModelSpec.parse(str(tmp_path / "nothing-here"), check=False).kind == "dense"


def test_dense_encoder_gives_the_retrievers_vectors_and_fingerprint(tiny_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    retriever = Retriever.load(str(tiny_encoder_dir))
    encoder = load_encoder(str(tiny_encoder_dir))
    assert isinstance(encoder, DenseEncoder) and encoder.spec == str(tiny_encoder_dir)
    texts = [d["text"] for d in CORPUS]
    np.testing.assert_allclose(encoder.encode_documents(texts), retriever.encode(texts, "document"), atol=1e-6)
    np.testing.assert_allclose(encoder.encode_queries(texts[:1]), retriever.encode(texts[:1], "query"), atol=1e-6)
    assert encoder.fingerprint() == load_encoder(retriever).fingerprint()
    assert load_encoder(retriever, label="mine").label == "mine"


def test_encoders_retrieve_the_same_way(tmp_path, tiny_encoder_dir, monkeypatch):
    """`retrieve` of the dense encoder is exact search over its own vectors; bm25 has no vectors to give."""
    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    encoder = load_encoder(str(tiny_encoder_dir))
    corpus = {d["_id"]: d["text"] for d in CORPUS}
    queries = {q["_id"]: q["text"] for q in QUERIES}
    run = encoder.retrieve(corpus, queries, k=2, show_progress=False)
    scores = encoder.encode_queries(list(queries.values())) @ encoder.encode_documents(list(corpus.values())).T
    for row, q in enumerate(queries):
        best = [list(corpus)[i] for i in np.argsort(-scores[row])[:2]]
        assert list(run[q]) == best
    bm25 = load_encoder("bm25")
    assert isinstance(bm25, BM25Encoder) and list(bm25.retrieve(corpus, queries, k=1)["q1"]) == ["d1"]
    with pytest.raises(ValueError, match="no dense vectors"):
        bm25.encode_queries(["x"])


def test_indexing_bm25_is_refused_with_a_message(tmp_path):
    from dreamir.cli import main

    folder = make_beir(tmp_path / "beir")
    assert main(["index", "--data", str(folder), "--model", "bm25", "--out", str(tmp_path / "idx")]) == 2
    assert not (tmp_path / "idx").exists()
