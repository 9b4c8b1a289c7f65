"""Zero-shot retrievers as model specs: "promptreps:NAME" and "diffretriever:NAME" (docs/method.md).

    dreamir eval --data DATA --model promptreps:smollm2-135m-instruct --mode hybrid
    dreamir eval --data DATA --model diffretriever:PATH --k 4 --mode multivector

Scoring modes: dense (inner product of the pooled vectors), sparse (the inverted-index product of
sparse.py), hybrid (min-max 0.5/0.5 fusion of both over each side's top-k), multivector
(DiffRetriever: MaxSim over the K mask-position vectors, Σ_i max_j q_i · d_j).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dreamir.retrieval.base import Encoder
from dreamir.retrieval.search import Run, to_run
from dreamir.retrieval.zeroshot.encoders import DiffRetriever, PromptReps, Representations, load_templates
from dreamir.retrieval.zeroshot.sparse import hybrid_scores, sparse_scores, to_csr

Mode = Literal["dense", "sparse", "hybrid", "multivector"]
METHODS = {"promptreps": PromptReps, "diffretriever": DiffRetriever}


@dataclass
class ZeroShotOptions:
    mode: Mode = "dense"
    words: int | None = None  # PromptReps: generated words (1 = the paper); DiffRetriever: K masks (default 4)
    templates: str | None = None
    device: str = "cpu"
    trust_remote_code: bool = False
    batch_size: int = 8


def maxsim(queries: np.ndarray, docs: np.ndarray, block: int = 256) -> np.ndarray:
    """(Q, K, H) × (D, K', H) → (Q, D): Σ over query vectors of the best document vector."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    out = np.empty((queries.shape[0], docs.shape[0]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, docs.shape[0], block):
            d = torch.from_numpy(np.ascontiguousarray(docs[start : start + block], dtype=np.float32))
            sims = torch.einsum("qih,djh->qdij", q, d)
            out[:, start : start + block] = sims.amax(-1).sum(-1).numpy()
    return out


def score_matrix(queries: Representations, docs: Representations, mode: Mode, k: int, vocab_size: int) -> np.ndarray:
    if mode == "dense":
        return queries.pooled() @ docs.pooled().T
    if mode == "multivector":
        if docs.dense.ndim != 3:
            raise ValueError("multivector scoring needs DiffRetriever's K vectors per text")
        return maxsim(queries.dense, docs.dense)
    sparse = sparse_scores(to_csr(queries.sparse, vocab_size), to_csr(docs.sparse, vocab_size))
    if mode == "sparse":
        return sparse
    if mode == "hybrid":
        return hybrid_scores(queries.pooled() @ docs.pooled().T, sparse, k)
    raise ValueError(f"unknown mode '{mode}': use dense, sparse, hybrid or multivector")


class ZeroShotRetriever(Encoder):
    """PromptReps / DiffRetriever as an `Encoder`: `retrieve` scores in the options' mode (dense, sparse,
    hybrid, multivector); the vectors are the pooled dense ones (what an index holds)."""

    def __init__(self, method: str, name: str, options: ZeroShotOptions | None = None) -> None:
        self.options = options or ZeroShotOptions()
        if self.options.mode == "multivector" and method != "diffretriever":
            raise ValueError("--mode multivector is DiffRetriever's (K mask positions); PromptReps reads one")
        self.encoder = METHODS[method](
            name,
            templates=load_templates(self.options.templates),
            words=self.options.words,
            device=self.options.device,
            trust_remote_code=self.options.trust_remote_code,
        )
        self.label = f"{method}:{name} ({self.options.mode}, k={self.encoder.words})"
        self.spec = f"{method}:{name}"
        self.encode_seconds = 0.0

    def encode_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.encoder.encode(texts, "query", self.options.batch_size, show_progress).pooled()

    def encode_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.encoder.encode(texts, "document", self.options.batch_size, show_progress).pooled()

    def retrieve(self, corpus, queries, k=100, ignore_identical_ids=True, show_progress=True) -> Run:
        doc_ids, query_ids = list(corpus), list(queries)
        bs = self.options.batch_size
        docs = self.encoder.encode([corpus[d] for d in doc_ids], "document", bs, show_progress)
        qs = self.encoder.encode([queries[q] for q in query_ids], "query", bs, show_progress)
        self.encode_seconds = docs.seconds + qs.seconds
        scores = score_matrix(qs, docs, self.options.mode, k, len(self.encoder.tokenizer))
        top = min(k + int(ignore_identical_ids), len(doc_ids))
        values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), top, dim=1)
        values, indices = values.numpy(), indices.numpy()
        run = to_run(query_ids, doc_ids, values, indices, ignore_identical_ids, k)
        # Hybrid marks documents outside both top-k lists with −inf: they were not retrieved.
        return {q: {d: s for d, s in hits.items() if np.isfinite(s)} for q, hits in run.items()}
