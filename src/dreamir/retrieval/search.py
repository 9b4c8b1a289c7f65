"""Top-k search over embeddings and BM25, returning runs {query id: {doc id: score}}."""

from __future__ import annotations

import numpy as np
import torch

Run = dict[str, dict[str, float]]  # query id → doc id → score


def exact_topk(queries: np.ndarray, docs: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k, blocked over queries to bound memory. Returns (scores, indices)."""
    k = min(k, docs.shape[0])
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    if not docs.flags.writeable:  # a read-only memmap from the cache: torch wants a writable buffer
        docs = docs.copy()
    doc_t = torch.from_numpy(docs)
    scores_out = np.empty((queries.shape[0], k), dtype=np.float32)
    idx_out = np.empty((queries.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], block):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + block], dtype=np.float32))
            top = torch.topk(q @ doc_t.T, k, dim=1)
            scores_out[start : start + block] = top.values.numpy()
            idx_out[start : start + block] = top.indices.numpy()
    return scores_out, idx_out


def to_run(
    query_ids: list[str],
    doc_ids: list[str],
    scores: np.ndarray,
    indices: np.ndarray,
    ignore_identical_ids: bool = False,
    k: int | None = None,
) -> Run:
    """Ranked hits per query; with `ignore_identical_ids`, a hit sharing the query's id is dropped
    (callers fetch one extra hit for it) and at most `k` hits are kept."""
    run: Run = {}
    for row, qid in enumerate(query_ids):
        hits = {}
        for score, idx in zip(scores[row], indices[row]):
            did = doc_ids[int(idx)]
            if ignore_identical_ids and did == qid:
                continue
            hits[did] = float(score)
            if k is not None and len(hits) == k:
                break
        run[qid] = hits
    return run


def bm25_run(corpus: dict[str, str], queries: dict[str, str], k: int = 100, ignore_identical_ids: bool = True) -> Run:
    from dreamir.data.text import bm25_index, bm25_tokens

    doc_ids = list(corpus)
    retriever, stemmer = bm25_index([corpus[d] for d in doc_ids])
    query_ids = list(queries)
    tokens = bm25_tokens([queries[q] for q in query_ids], stemmer)
    extra = int(ignore_identical_ids)  # one more hit, in case the query's own id is dropped
    indices, scores = retriever.retrieve(tokens, k=min(k + extra, len(doc_ids)), show_progress=False, n_threads=1)
    return to_run(query_ids, doc_ids, scores, indices, ignore_identical_ids, k)
