"""Independent reference pipelines (sentence-transformers / bm25s + ir-measures, no dreamir code in the
scoring path), used by tests and bench/quality.py to check dreamir's evaluation numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import ir_measures
import numpy as np
from ir_measures import nDCG


def _read(folder: Path, split: str):
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[str(d["_id"])] = (d.get("title") or "") + " " + d["text"] if d.get("title") else d["text"]
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        queries = {str(q["_id"]): q["text"] for q in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {q: t for q, t in queries.items() if q in qrels}
    return corpus, queries, qrels


def _ndcg(qrels, run) -> float:
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


def reference_ndcg_st(
    folder: str | Path, model_path: str, split: str = "test", max_seq_length: int | None = None, batch_size: int = 64
) -> float:
    from sentence_transformers import SentenceTransformer

    corpus, queries, qrels = _read(Path(folder), split)
    model = SentenceTransformer(model_path, device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    doc_ids, query_ids = list(corpus), list(queries)
    d = model.encode([corpus[i] for i in doc_ids], batch_size=batch_size, normalize_embeddings=True)
    q = model.encode([queries[i] for i in query_ids], batch_size=batch_size, normalize_embeddings=True)
    sims = q @ d.T
    top = np.argsort(-sims, axis=1)[:, :101]
    run = {}
    for row, qid in enumerate(query_ids):
        hits = {doc_ids[j]: float(sims[row, j]) for j in top[row] if doc_ids[j] != qid}
        run[qid] = dict(list(hits.items())[:100])
    return _ndcg(qrels, run)


def reference_ndcg_bm25(folder: str | Path, split: str = "test") -> float:
    import bm25s
    import Stemmer

    corpus, queries, qrels = _read(Path(folder), split)
    stemmer = Stemmer.Stemmer("english")
    doc_ids, query_ids = list(corpus), list(queries)
    index = bm25s.BM25()
    index.index(
        bm25s.tokenize([corpus[i] for i in doc_ids], stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    tokens = bm25s.tokenize([queries[i] for i in query_ids], stopwords="en", stemmer=stemmer, show_progress=False)
    idx, scores = index.retrieve(tokens, k=101, show_progress=False)
    run = {}
    for row, qid in enumerate(query_ids):
        hits = {doc_ids[j]: float(s) for j, s in zip(idx[row], scores[row]) if doc_ids[j] != qid}
        run[qid] = dict(list(hits.items())[:100])
    return _ndcg(qrels, run)
