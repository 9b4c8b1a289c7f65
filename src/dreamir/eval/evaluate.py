"""Evaluate retrievers on a BEIR folder (reports: `eval/report.py`).

A model spec is "bm25", a sentence-transformers folder, a hub name, an alias, or a dreamir run
folder (its exported retriever). Several models give one comparison table and one plot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamir.data.beir import BeirData
from dreamir.eval.cache import encode_cached
from dreamir.eval.metrics import Run, mean_metrics, per_query_metrics, per_query_values
from dreamir.eval.search import bm25_run, exact_topk, to_run
from dreamir.models.retriever import Retriever
from dreamir.zeroshot.retrieval import ZeroShotOptions, ZeroShotRetriever, parse_zero_shot_spec


@dataclass
class EvalResult:
    model: str
    metrics: dict[str, float]
    run: Run
    seconds: float
    per_query: dict[str, float] = field(default_factory=dict)  # nDCG@10 per judged query (paired tests)


def retriever_run(
    retriever: Retriever,
    data: BeirData,
    k: int = 100,
    batch_size: int = 64,
    show_progress: bool = True,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
) -> Run:
    doc_ids = data.doc_ids
    docs = encode_cached(retriever, [data.corpus[d] for d in doc_ids], "document", batch_size, show_progress, use_cache)
    query_ids = list(data.queries)
    queries = retriever.encode([data.queries[q] for q in query_ids], "query", batch_size, show_progress)
    # One extra hit, in case a document sharing the query's id is dropped.
    scores, indices = exact_topk(queries, docs, k + int(ignore_identical_ids))
    return to_run(query_ids, doc_ids, scores, indices, ignore_identical_ids, k)


def evaluate_model(
    spec: str | Retriever,
    data: BeirData,
    name: str | None = None,
    k: int = 100,
    show_progress: bool = True,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    zero_shot: ZeroShotOptions | None = None,
) -> EvalResult:
    """Evaluate one model. `ignore_identical_ids` drops a hit whose id equals the query's id
    (BEIR's default, which matters for ArguAna and Quora). "promptreps:NAME" and
    "diffretriever:NAME" are the zero-shot LLM retrievers, with `zero_shot` options."""
    start = time.perf_counter()
    parsed = parse_zero_shot_spec(spec) if isinstance(spec, str) else None
    if parsed is not None:
        zs = ZeroShotRetriever(*parsed, zero_shot)
        run = zs.run(data.corpus, data.queries, k, ignore_identical_ids, show_progress)
        label = name or zs.label
    elif spec == "bm25":
        run = bm25_run(data.corpus, data.queries, k, ignore_identical_ids)
        label = name or "bm25"
    else:
        retriever = spec if isinstance(spec, Retriever) else Retriever.load(resolve_model_spec(spec))
        label = name or (retriever.source if isinstance(spec, Retriever) else spec)
        run = retriever_run(
            retriever,
            data,
            k,
            show_progress=show_progress,
            use_cache=use_cache,
            ignore_identical_ids=ignore_identical_ids,
        )
    per_query = per_query_metrics(data.qrels, run)
    return EvalResult(
        label,
        mean_metrics(data.qrels, per_query),
        run,
        time.perf_counter() - start,
        per_query_values(data.qrels, per_query, "ndcg@10"),
    )


def resolve_model_spec(spec: str) -> str:
    """A dreamir run folder stands for its exported retriever."""
    run_model = Path(spec) / "retriever"
    if (Path(spec) / "config.yaml").exists() and (run_model / "modules.json").exists():
        return str(run_model)
    return spec
