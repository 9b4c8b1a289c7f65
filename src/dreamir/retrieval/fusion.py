"""Hybrid retrieval: two encoders' runs fused into one, as a model spec any command takes.

    rrf:A+B              reciprocal-rank fusion, score = Σ 1 / (k + rank) over the two runs (k = 60)
    fuse:W:A+B           convex combination W·norm(s_A) + (1 − W)·norm(s_B) of per-query min-max normalised
                         scores; W in [0, 1]
    fuse:A+B             the same with W chosen on a dev split (`dreamir eval --fusion-dev-split SPLIT`;
                         in code `evaluation.evaluate.choose_fusion_weights`)

A and B are any other specs (`bm25`, a dense model, a run folder, `promptreps:NAME`). Each side retrieves its
own top `depth` documents; a document missing from one side's list gets that side's lowest score (0 after
normalisation, no reciprocal-rank term). Fusion works on runs, so it gives no vectors: eval, check, compare and
the mteb wrapper (`DreamirSearch`) take it, and `dreamir index` keeps one index per side for `dreamir search`.
"""

from __future__ import annotations

from collections.abc import Callable

from dreamir.retrieval.base import Encoder, split_fusion_spec
from dreamir.retrieval.search import Run

RRF_K = 60
FUSION_DEPTH = 100  # documents each side retrieves before fusing

__all__ = ["FusionEncoder", "choose_fusion_weight", "convex_fusion", "reciprocal_rank_fusion", "split_fusion_spec"]


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {doc: (score - low) / span if span > 0 else 1.0 for doc, score in scores.items()}


def reciprocal_rank_fusion(a: Run, b: Run, k: int = RRF_K) -> Run:
    fused: Run = {}
    for query in a.keys() | b.keys():
        scores: dict[str, float] = {}
        for run in (a, b):
            ranked = sorted(run.get(query, {}).items(), key=lambda item: -item[1])
            for rank, (doc, _) in enumerate(ranked, start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        fused[query] = scores
    return fused


def convex_fusion(a: Run, b: Run, weight: float) -> Run:
    """weight · norm(a) + (1 − weight) · norm(b), per query; a document absent from one side scores 0 there."""
    fused: Run = {}
    for query in a.keys() | b.keys():
        na, nb = _min_max(a.get(query, {})), _min_max(b.get(query, {}))
        fused[query] = {
            doc: weight * na.get(doc, 0.0) + (1 - weight) * nb.get(doc, 0.0) for doc in na.keys() | nb.keys()
        }
    return fused


def top_k(run: Run, k: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda item: -item[1])[:k]) for q, docs in run.items()}


class FusionEncoder(Encoder):
    """Two encoders' runs fused (RRF or a convex combination); each side retrieves `depth` documents."""

    def __init__(self, method: str, first: Encoder, second: Encoder, weight: float | None, spec: str) -> None:
        self.method, self.first, self.second, self.weight = method, first, second, weight
        self.label = self.spec = spec
        self.depth = FUSION_DEPTH

    def retrieve(self, corpus, queries, k=100, ignore_identical_ids=True, show_progress=True) -> Run:
        depth = max(k, self.depth)
        runs = [side.retrieve(corpus, queries, depth, ignore_identical_ids, show_progress) for side in self.sides]
        return top_k(self.fuse(*runs), k)

    @property
    def sides(self) -> tuple[Encoder, Encoder]:
        return self.first, self.second

    def fuse(self, a: Run, b: Run, weight: float | None = None) -> Run:
        if self.method == "rrf":
            return reciprocal_rank_fusion(a, b)
        weight = self.weight if weight is None else weight
        if weight is None:
            raise ValueError(
                f"'{self.spec}' has no weight: write fuse:W:A+B, or choose W on a dev split "
                "(dreamir eval --fusion-dev-split SPLIT)"
            )
        return convex_fusion(a, b, weight)


def choose_fusion_weight(
    first: Encoder,
    second: Encoder,
    corpus: dict[str, str],
    queries: dict[str, str],
    score: Callable[[Run], float],
    ignore_identical_ids: bool = True,
    grid: tuple[float, ...] = tuple(w / 10 for w in range(11)),
) -> tuple[float, dict[float, float]]:
    """The convex weight of `first` with the best `score` (e.g. mean nDCG@10 against a DEV split's qrels) over
    `grid`, and every weight's score. Each side retrieves once; only the fusion is repeated."""
    a = first.retrieve(corpus, queries, 100, ignore_identical_ids, False)
    b = second.retrieve(corpus, queries, 100, ignore_identical_ids, False)
    scores = {w: score(top_k(convex_fusion(a, b, w), 100)) for w in grid}
    best = max(scores, key=lambda w: (scores[w], -abs(w - 0.5)))  # ties: the more balanced weight
    return best, scores
