"""Does a trained run gain on the queries whose relevant documents it trained on? A dev-only analysis.

    python research/scripts/coverage_split.py --config research/configs/learn-dev.yaml --dataset scifact \
        --set out=runs/learn-dev-poe --set base.dream_distill.teacher=judge_and_start

Splits a dev study's queries into those with a relevant document that some training example was cut
from ("covered") and the rest, and reports, per group, the comparison's first objective and its
shuffled-targets control against the start (per-query nDCG@10 pooled over the config's seeds, paired
test over queries). If the self-supervised examples teach something about their own documents, the
covered queries should gain more. The runs are found, and checked to be trained as configured, the way
`dreamir compare --report-only` finds them. Reads the dev qrels (analysis only: no choice is made on
it) and the runs' stored per-query scores; trains and encodes nothing. Writes `--out` under
"OUT/DATASET | OBJECTIVE".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, run_main, write_result
from dreamir.apps.compare import load_compare_config, training_data_path
from dreamir.apps.compare.results import PER_QUERY, finished_result, finished_run
from dreamir.config import parse_override
from dreamir.data.training import load_examples
from dreamir.evaluation.significance import paired_test, pooled

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "research/configs/learn-dev.yaml"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a compare key")
    parser.add_argument("--out", default=str(ROOT / "bench/results/coverage_split.json"))
    args = parser.parse_args()
    config = load_compare_config(args.config, dict(parse_override(item) for item in args.set))
    dataset = config.dataset(args.dataset)
    objective = config.objectives[0]
    data = dataset.evaluation_data()
    start_result = finished_result(Path(config.out) / dataset.name / "untrained.json", data)
    if start_result is None:
        raise SystemExit(f"{config.out}/{dataset.name}: no untrained.json on this scope; run the dev study first")
    start = start_result[PER_QUERY]
    trained_on = {ex.source for ex in load_examples(training_data_path(config, dataset))} - {None}
    runs = {}  # per-query nDCG@10 pooled over the config's seeds that finished, None if none did
    for name, control in (("trained", False), ("control", True)):
        per_seed = [finished_run(config, dataset, objective, data, seed, control) for seed in config.run_seeds()]
        finished = [result[PER_QUERY] for result in per_seed if result]
        runs[name] = pooled(finished) if finished else None
    if runs["trained"] is None:
        raise SystemExit(f"{config.out}/{dataset.name}: no finished '{objective}' run")
    relevant = {query: {doc for doc, score in docs.items() if score > 0} for query, docs in data.qrels.items()}

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
    stored[f"{config.out}/{dataset.name} | {objective}"] = {
        "qrels": f"{dataset.beir} ({dataset.split})",
        "documents_trained_on": len(trained_on),
        **result,
    }
    write_result(args.out, stored)


if __name__ == "__main__":
    run_main(main)
