"""Reports people read: tables, TREC runs, paired tests, plots and report.md (eval and compare)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dreamir.data.beir import BeirData
from dreamir.evaluation.evaluate import EvalResult
from dreamir.evaluation.metrics import METRICS
from dreamir.files import atomic_folder, atomic_open, atomic_write
from dreamir.retrieval.search import Run


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
    from dreamir.evaluation.significance import paired_test

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


def pooled_tests(results: list[EvalResult], pools: dict[str, list[str]]) -> dict[str, dict]:
    """Each pool (several seeds of one method: models by name) against the first model: its members' per-query
    nDCG@10 averaged, then the paired test over queries (the protocol's pooled test)."""
    from dreamir.evaluation.significance import paired_test, pooled

    by_name = {r.model: r for r in results}
    base = results[0]
    out = {}
    for name, members in pools.items():
        scores = pooled([by_name[m].per_query for m in members])
        test = paired_test(base.per_query, scores)
        mean = sum(scores.values()) / len(scores)
        out[name] = {"members": members, "ndcg@10": mean, "against": base.model, **test.as_dict()}
    return out


def format_pooled_tests(pooled: dict[str, dict]) -> str:
    if not pooled:
        return ""
    first = next(iter(pooled.values()))["against"]
    lines = [f"Pooled over seeds, against {first} (per-query nDCG@10 averaged over each pool's models, ×100):", ""]
    lines += ["| pool | models | nDCG@10 | difference [95% CI] | p |", "|---|---:|---:|---:|---:|"]
    for name, row in pooled.items():
        lines.append(
            f"| {name} | {len(row['members'])} | {100 * row['ndcg@10']:.1f} | {100 * row['mean_difference']:+.1f} "
            f"[{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}] | {row['p_value']:.3g} |"
        )
    return "\n".join(lines)


def trec_lines(run: Run, tag: str) -> list[str]:
    """A run in TREC format: `qid Q0 docid rank score tag`, each query's hits best first."""
    tag = tag.replace(" ", "_")
    lines = []
    for qid, hits in run.items():
        ranked = sorted(hits.items(), key=lambda kv: -kv[1])
        lines += [f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n" for rank, (did, score) in enumerate(ranked, start=1)]
    return lines


def write_trec_run(path: Path, results: list[EvalResult]) -> None:
    with atomic_open(path) as handle:
        for r in results:
            handle.writelines(trec_lines(r.run, r.model))


def grouped_bars(
    path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str, legend_columns: int = 1
) -> None:
    """One bar per series in each group, labelled with its value (eval's and compare's plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(7, 2.5 * len(groups) + 2), 3.8))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=legend_columns)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_comparison(path: Path, results: list[EvalResult], title: str) -> None:
    series = {r.model: [100 * r.metrics[m] for m in METRICS] for r in results}
    grouped_bars(path, list(METRICS), series, "score × 100", title)


REPORT_MARKER = "dreamir_report.json"
REPORT_FILES = {"metrics.json", "run.trec", "report.md", "comparison.png", REPORT_MARKER}


def write_report(
    out: str | os.PathLike,
    results: list[EvalResult],
    data: BeirData,
    split: str,
    pooled: dict | None = None,
    fusion_choices: list | None = None,
) -> Path:
    """metrics.json (with each model's per-query nDCG@10), run.trec, report.md and comparison.png, written as one
    folder swapped in whole: a reader (or a crash, Ctrl-C, SIGTERM, a full disk) sees the old report or the new.
    `fusion_choices` (`evaluate.FusionChoice`): how each fusion weight was chosen on a dev split, kept beside."""
    out = Path(out)
    if out.is_dir() and not (out / REPORT_MARKER).exists() and {p.name for p in out.iterdir()} <= REPORT_FILES:
        atomic_write(out / REPORT_MARKER, "{}")  # a report folder written before the marker existed
    with atomic_folder(out, REPORT_MARKER) as folder:
        _write_report_files(folder, results, data, split, pooled or {}, fusion_choices or [])
    return out


def _write_report_files(
    out: Path, results: list[EvalResult], data: BeirData, split: str, pooled: dict, fusion_choices: list
) -> None:
    title = f"{data.name} ({split}, {len(data.queries)} queries, {len(data.corpus)} documents)"
    metrics = {
        "dataset": data.name,
        "split": split,
        "num_queries": len(data.queries),
        "num_documents": len(data.corpus),
        "data_issues": dict(data.stats.counts),
        "models": {r.model: {**r.metrics, "seconds": r.seconds} for r in results},
        "per_query_ndcg@10": {r.model: r.per_query for r in results},  # for paired tests across evaluations
        "pooled": pooled,
        "fusion_weights": {
            c.chosen: {"spec": c.spec, "dev_split": c.split, "dev_ndcg@10_by_weight": c.scores} for c in fusion_choices
        },
    }
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))
    write_trec_run(out / "run.trec", results)
    plot_comparison(out / "comparison.png", results, title)
    paired = format_paired_tests(results)
    atomic_write(
        out / "report.md",
        f"# Retrieval evaluation: {title}\n\n{format_table(results)}\n\n"
        f"Metrics via ir-measures; scores ×100. Data issues: {data.stats.summary()}.\n\n"
        + (f"{paired}\n\n" if paired else "")
        + (f"{format_pooled_tests(pooled)}\n\n" if pooled else "")
        + "".join(f"Fusion weight: {c.describe()}.\n\n" for c in fusion_choices)
        + "![comparison](comparison.png)\n",
    )
    atomic_write(out / REPORT_MARKER, json.dumps({"written_by": "dreamir eval"}))
