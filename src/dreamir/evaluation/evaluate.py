"""Evaluate retrievers on a BEIR folder (reports: `evaluation/report.py`).

A model is any spec `retrieval/encoder.py` reads ("bm25", "promptreps:NAME", a run folder, an alias, a
folder, a hub name) or a retriever in memory. Several models give one comparison table and one plot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dreamir.data.beir import BeirData
from dreamir.evaluation.metrics import Run, mean_metrics, per_query_metrics, per_query_values
from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import Encoder
from dreamir.retrieval.encoder import load_encoder
from dreamir.retrieval.zeroshot.retrieval import ZeroShotOptions


@dataclass
class EvalResult:
    model: str
    metrics: dict[str, float]
    run: Run
    seconds: float
    per_query: dict[str, float] = field(default_factory=dict)  # nDCG@10 per judged query (paired tests)


def evaluate_model(
    spec: str | Retriever | Encoder,
    data: BeirData,
    name: str | None = None,
    k: int = 100,
    show_progress: bool = True,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    zero_shot: ZeroShotOptions | None = None,
) -> EvalResult:
    """Evaluate one model (any spec `retrieval/encoder.py` reads, or a retriever in memory). `ignore_identical_ids`
    drops a hit whose id equals the query's id (BEIR's default, which matters for ArguAna and Quora);
    `zero_shot` holds the PromptReps / DiffRetriever options."""
    start = time.perf_counter()
    encoder = load_encoder(spec, zero_shot=zero_shot, use_cache=use_cache, label=name)
    run = encoder.retrieve(data.corpus, data.queries, k, ignore_identical_ids, show_progress)
    per_query = per_query_metrics(data.qrels, run)
    return EvalResult(
        encoder.label,
        mean_metrics(data.qrels, per_query),
        run,
        time.perf_counter() - start,
        per_query_values(data.qrels, per_query, "ndcg@10"),
    )
