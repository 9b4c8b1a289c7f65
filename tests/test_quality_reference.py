"""dreamir's evaluation vs independent pipelines (bm25s / sentence-transformers + ir-measures) on real BEIR data.

The MiniLM comparison truncates both pipelines at 128 tokens to keep CI short (encoding the two corpora
twice at 256 tokens takes ~25 minutes on 2 cores); bench/quality.py --reference does the full-length run.
"""

from __future__ import annotations

import pytest

from dreamir.data.beir import load_beir
from dreamir.evaluation.evaluate import evaluate_model
from dreamir.models.retriever import Retriever

from .conftest import require_alias, require_beir
from .reference import reference_ndcg_bm25, reference_ndcg_st

pytestmark = pytest.mark.integration

DATASETS = ["scifact", "nfcorpus"]
PUBLISHED_BM25 = {"scifact": 0.686, "nfcorpus": 0.331}  # ../shared/assets/README.md, same bm25s settings


@pytest.mark.parametrize("name", DATASETS)
def test_bm25_matches_an_independent_bm25s_pipeline(name):
    folder = require_beir(name)
    ours = evaluate_model("bm25", load_beir(folder, "test"), show_progress=False).metrics["ndcg@10"]
    reference = reference_ndcg_bm25(folder, "test")
    print(f"{name} BM25 nDCG@10: dreamir {ours:.4f}, reference {reference:.4f}")
    assert abs(ours - reference) <= 0.005
    assert abs(ours - PUBLISHED_BM25[name]) <= 0.005


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_minilm_matches_sentence_transformers_and_ir_measures(name, tmp_path, monkeypatch):
    require_alias("all-minilm-l6-v2")
    folder = require_beir(name)
    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path))
    retriever = Retriever.load("all-minilm-l6-v2", max_length=128)
    ours = evaluate_model(retriever, load_beir(folder, "test"), show_progress=False).metrics["ndcg@10"]
    reference = reference_ndcg_st(folder, retriever.source, "test", max_seq_length=128)
    print(f"{name} all-MiniLM-L6-v2 (128 tokens) nDCG@10: dreamir {ours:.4f}, reference {reference:.4f}")
    assert abs(ours - reference) <= 0.005
    assert ours > 0.2  # a real retriever, not a broken pipeline agreeing with itself
