"""Does a trained run gain on the queries whose relevant documents it trained on? A dev-only analysis.

    python bench/coverage_split.py --run-dir runs/learn-dev-poe/scifact \
        --qrels ../shared/assets/beir/scifact/qrels/train.tsv --objective dream_distill

Splits a dev study's queries into those with a relevant document that some training example was cut
from ("covered") and the rest, and reports, per group, the objective and its shuffled-targets control
against the start (per-query nDCG@10 pooled over the seeds found, paired test over queries). If the
self-supervised examples teach something about their own documents, the covered queries should gain
more. Reads the dev qrels (analysis only: no choice is made on it) and the runs' stored per-query
scores; trains and encodes nothing. Writes `--out` under "DATASET-FOLDER | OBJECTIVE".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import read_result, run_main, write_result
from dreamir.apps.compare import CONTROL_SUFFIX
from dreamir.data.beir import load_qrels
from dreamir.data.training import load_examples
from dreamir.eval.significance import paired_test, pooled

ROOT = Path(__file__).resolve().parents[1]


def per_query(run_dir: Path, name: str) -> dict[str, float] | None:
    """Per-query nDCG@10 pooled over the seeds of run `name` (name, name-seed1, ...), None if absent."""
    folders = [run_dir / name, *sorted(run_dir.glob(f"{name}-seed[0-9]*"))]
    results = [json.loads((f / "result.json").read_text()) for f in folders if (f / "result.json").is_file()]
    return pooled([r["per_query_ndcg@10"] for r in results]) if results else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a dev study's dataset folder (train.jsonl, untrained.json)")
    parser.add_argument("--qrels", required=True, help="the dev split's qrels the runs were scored with")
    parser.add_argument("--objective", default="dream_distill")
    parser.add_argument("--out", default=str(ROOT / "bench/results/coverage_split.json"))
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    relevant: dict[str, set[str]] = {}
    for _, query, doc, score in load_qrels(args.qrels):
        if score > 0:
            relevant.setdefault(query, set()).add(doc)
    if not (run_dir / "untrained.json").is_file():
        raise SystemExit(f"{run_dir}: no untrained.json (the start's scores); run the dev study there first")
    trained_on = {ex.source for ex in load_examples(run_dir / "train.jsonl")} - {None}
    start = json.loads((run_dir / "untrained.json").read_text())["per_query_ndcg@10"]
    runs = {
        "trained": per_query(run_dir, args.objective),
        "control": per_query(run_dir, args.objective + CONTROL_SUFFIX),
    }
    if runs["trained"] is None:
        raise SystemExit(f"{run_dir}: no finished '{args.objective}' run (result.json) found")

    result: dict[str, dict] = {}
    print(
        "| queries | n | start | trained − start [95% CI], p | control − start [95% CI], p |\n|---|---:|---:|---:|---:|"
    )
    for group, covered in (("covered", True), ("not covered", False)):
        queries = [q for q in start if bool(relevant.get(q, set()) & trained_on) == covered]
        if len(queries) < 2:
            continue
        base = {q: start[q] for q in queries}
        tests = {
            name: paired_test(base, {q: scores[q] for q in queries if q in scores})
            for name, scores in runs.items()
            if scores is not None
        }
        row: dict = {"queries": len(queries), "start": sum(base.values()) / len(base)}
        row.update({f"{name}_vs_start": test.as_dict() for name, test in tests.items()})
        result[group] = row
        cells = [tests[name].describe() if name in tests else "—" for name in runs]
        print(f"| {group} | {len(queries)} | {100 * row['start']:.1f} | {cells[0]} | {cells[1]} |")
    stored = read_result(args.out) or {}
    stored.pop("machine", None)
    stored[f"{run_dir.parent.name}/{run_dir.name} | {args.objective}"] = {
        "qrels": args.qrels,
        "documents_trained_on": len(trained_on),
        **result,
    }
    write_result(args.out, stored)


if __name__ == "__main__":
    run_main(main)
