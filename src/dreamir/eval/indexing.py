"""`dreamir index` / `dreamir search`: encode a corpus once, then answer queries from disk."""

from __future__ import annotations

import os
from pathlib import Path

from dreamir.data.beir import load_corpus
from dreamir.data.text import resolve_corpus_path
from dreamir.data.training import DataStats
from dreamir.eval.cache import encode_cached
from dreamir.eval.evaluate import resolve_model_spec
from dreamir.eval.index import DenseIndex
from dreamir.models.retriever import Retriever


def build_index(
    data: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    factory: str = "exact",
    params: str = "",
    use_cache: bool = True,
    show_progress: bool = True,
) -> DenseIndex:
    path = resolve_corpus_path(data)
    stats = DataStats()
    corpus = load_corpus(path, stats)
    doc_ids = list(corpus)
    model = resolve_model_spec(model)
    retriever = Retriever.load(model)
    vectors = encode_cached(
        retriever, [corpus[d] for d in doc_ids], "document", show_progress=show_progress, use_cache=use_cache
    )
    meta = {"model": model, "corpus": str(path.resolve()), "data_issues": dict(stats.counts)}
    index = DenseIndex.build(doc_ids, vectors, factory, params, meta=meta)
    index.save(out)
    return index


def search_index(folder: str | os.PathLike, query: str, k: int = 10) -> list[dict]:
    index = DenseIndex.load(folder)
    retriever = Retriever.load(index.meta["model"])
    scores, rows = index.search(retriever.encode([query], "query"), k)
    corpus: dict[str, str] = {}
    if Path(index.meta.get("corpus", "")).is_file():
        corpus = load_corpus(index.meta["corpus"], DataStats())
    hits = []
    for score, row in zip(scores[0], rows[0]):
        if row < 0:  # faiss pads with -1 when fewer than k hits are found
            continue
        doc_id = index.doc_ids[int(row)]
        text = corpus.get(doc_id, "")
        hits.append({"doc_id": doc_id, "score": float(score), "snippet": text[:100] + ("…" if len(text) > 100 else "")})
    return hits
