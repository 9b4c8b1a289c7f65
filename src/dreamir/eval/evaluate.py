"""Evaluate retrievers on a BEIR folder and write a readable report.

A model spec is "bm25", a sentence-transformers folder, a hub name, an alias, or a dreamir run
folder (its exported retriever). Several models give one comparison table and one plot.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamir.data.beir import BeirData
from dreamir.eval.cache import encode_cached
from dreamir.eval.metrics import METRICS, Run, mean_metrics, per_query_metrics, per_query_values
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


def format_table(results: list[EvalResult], title: str = "") -> str:
    """Markdown table, metrics as percentages (×100) like the BEIR papers."""
    header = "| model | " + " | ".join(METRICS) + " | seconds |"
    rule = "|---|" + "---:|" * (len(METRICS) + 1)
    lines = ([f"**{title}**", ""] if title else []) + [header, rule]
    for r in results:
        cells = " | ".join(f"{100 * r.metrics[m]:.1f}" for m in METRICS)
        lines.append(f"| {r.model} | {cells} | {r.seconds:.0f} |")
    return "\n".join(lines)


def format_paired_tests(results: list[EvalResult]) -> str:
    """Each model against the first, per query (nDCG@10): mean difference ×100 with its 95% paired
    bootstrap interval and the paired randomization test's p-value; '' for fewer than two models."""
    if len(results) < 2:
        return ""
    from dreamir.eval.significance import paired_test

    base = results[0]
    lines = [f"Paired tests against {base.model} (nDCG@10 per query, ×100):", ""]
    lines += ["| model | difference [95% CI] | p |", "|---|---:|---:|"]
    for r in results[1:]:
        test = paired_test(base.per_query, r.per_query)
        lines.append(
            f"| {r.model} | {100 * test.mean_difference:+.1f} [{100 * test.ci_low:+.1f}, {100 * test.ci_high:+.1f}] "
            f"| {test.p_value:.3g} |"
        )
    return "\n".join(lines)


def write_trec_run(path: Path, results: list[EvalResult]) -> None:
    with open(path, "w") as handle:
        for r in results:
            tag = r.model.replace(" ", "_")
            for qid, hits in r.run.items():
                ranked = sorted(hits.items(), key=lambda kv: -kv[1])
                for rank, (did, score) in enumerate(ranked, start=1):
                    handle.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")


def plot_comparison(path: Path, results: list[EvalResult], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(METRICS)
    x = np.arange(len(names))
    width = 0.8 / max(1, len(results))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, r in enumerate(results):
        vals = [100 * r.metrics[m] for m in names]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=r.model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("score × 100")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: str | os.PathLike, results: list[EvalResult], data: BeirData, split: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{data.name} ({split}, {len(data.queries)} queries, {len(data.corpus)} documents)"
    metrics = {
        "dataset": data.name,
        "split": split,
        "num_queries": len(data.queries),
        "num_documents": len(data.corpus),
        "data_issues": dict(data.stats.counts),
        "models": {r.model: {**r.metrics, "seconds": r.seconds} for r in results},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_trec_run(out / "run.trec", results)
    plot_comparison(out / "comparison.png", results, title)
    paired = format_paired_tests(results)
    (out / "report.md").write_text(
        f"# Retrieval evaluation: {title}\n\n{format_table(results)}\n\n"
        f"Metrics via ir-measures; scores ×100. Data issues: {data.stats.summary()}.\n\n"
        + (f"{paired}\n\n" if paired else "")
        + "![comparison](comparison.png)\n"
    )
    return out
