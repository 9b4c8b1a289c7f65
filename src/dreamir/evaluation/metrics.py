"""IR metrics through ir-measures (trec_eval / pytrec_eval underneath), not hand-written."""

from __future__ import annotations

import ir_measures
from ir_measures import AP, RR, R, nDCG

from dreamir.retrieval.search import Run

METRICS = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10, "map@100": AP @ 100}


def evaluate_run(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    """Mean of each metric over the judged queries (queries missing from the run count as 0)."""
    return mean_metrics(qrels, per_query_metrics(qrels, run))


def mean_metrics(qrels: dict[str, dict[str, int]], per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    # Average per-query values ourselves over all judged queries, so the convention for queries
    # missing from the run (0) does not depend on which ir-measures provider answers.
    n = len(qrels)
    return {name: sum(v.get(name, 0.0) for v in per_query.values()) / n if n else 0.0 for name in METRICS}


def per_query_values(qrels: dict[str, dict[str, int]], per_query: dict[str, dict[str, float]], name: str):
    """One metric per judged query, 0 for a query the run missed (the paired tests' input)."""
    return {q: per_query.get(q, {}).get(name, 0.0) for q in qrels}


def per_query_metrics(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, dict[str, float]]:
    names = {m: name for name, m in METRICS.items()}
    out: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(list(METRICS.values()), qrels, run):
        if metric.query_id in qrels:
            out.setdefault(metric.query_id, {})[names[metric.measure]] = float(metric.value)
    return out
