"""Did the student learn its teacher's task, and does that carry to unseen documents? A label-free check.

    python research/scripts/student_proxy.py --data HELD_OUT.jsonl --exclude TRAIN.jsonl \
        --retriever start=all-minilm-l6-v2 --retriever dream=runs/.../dream_distill/retriever [...]

`research/scripts/teacher_proxy.py` asks which teacher to distil: how often its favourite candidate of a
self-supervised example is a chunk of the query's own document. This asks the same of trained
retrievers (the students): on examples whose source document no training example came from
(`--exclude` names the training data), does a student pick an own-document chunk more often than the
start did? If the teacher beats the start here but the student does not, distillation failed to absorb it; if the
student beats the start here but not on the benchmark's queries, the self-supervised task does not
carry to real queries. `--documents seen` asks it of new spans of the documents trained on instead
(does what was learnt belong to the documents, or to the examples?). No query or qrel of the
benchmark is read.

Per retriever: own-document pick rate (its top candidate) and the reciprocal rank of the best
own-document candidate, over the examples with an own-document candidate and another one; each
retriever after the first is compared with the first by the paired test over examples
(`dreamir.evaluation.significance.paired_test`). Writes `--out` under `--key`.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, run_main, write_result
from dreamir.data.training import Example, load_examples
from dreamir.evaluation.significance import paired_test
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import candidate_scores

ROOT = Path(__file__).resolve().parents[2]


def usable(examples: list[Example]) -> list[tuple[Example, list[int]]]:
    """Examples with an own-document candidate and another one, with the own-document indices."""
    return [(ex, split[0]) for ex in examples if (split := ex.own_document_split())]


@torch.no_grad()
def own_document_scores(retriever: Retriever, rows: list[tuple[Example, list[int]]]) -> dict[str, dict[str, float]]:
    """Per example (by index): 1/0 whether the top candidate is own-document, and the best own rank's 1/r."""
    pick, reciprocal = {}, {}
    for start in range(0, len(rows), 64):
        batch = rows[start : start + 64]
        scores, mask = candidate_scores(retriever, [ex for ex, _ in batch])
        for b, (_, own) in enumerate(batch):
            s = scores[b, : int(mask[b].sum())].float().cpu()
            order = s.argsort(descending=True).tolist()
            key = str(start + b)
            pick[key] = float(order[0] in own)
            reciprocal[key] = 1.0 / (1 + min(order.index(j) for j in own))
    return {"pick": pick, "reciprocal_rank": reciprocal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="self-supervised examples (JSONL) to score on")
    parser.add_argument(
        "--exclude", action="append", default=[], help="training data: its source documents are held out"
    )
    parser.add_argument(
        "--retriever", action="append", required=True, metavar="NAME=PATH", help="first = the reference (the start)"
    )
    parser.add_argument(
        "--documents",
        choices=["unseen", "seen"],
        default="unseen",
        help="score on examples from documents no --exclude example came from (default), or only from those",
    )
    parser.add_argument("--examples", type=int, default=600, help="at most this many usable examples (seeded sample)")
    parser.add_argument("--max-length", type=int, default=256, help="the retrievers' token limit (as in training)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", required=True, help="the row's name in --out")
    parser.add_argument("--out", default=str(ROOT / "bench/results/student_proxy.json"))
    args = parser.parse_args()
    retrievers = [spec.split("=", 1) for spec in args.retriever]
    if any(len(spec) != 2 for spec in retrievers):
        raise SystemExit("--retriever takes NAME=PATH")

    seen = {ex.source for path in args.exclude for ex in load_examples(path)} - {None}
    examples = [ex for ex in load_examples(args.data) if (ex.source in seen) == (args.documents == "seen")]
    rows = usable(examples)
    random.Random(args.seed).shuffle(rows)
    rows = rows[: args.examples]
    if len(rows) < 2:
        raise SystemExit(
            f"{args.data}: {len(rows)} usable held-out examples (an own-document candidate and another needed)"
        )
    scope = f"{args.documents} documents; {len(seen)} documents seen" if seen else "all documents: no --exclude"
    print(f"{len(rows)} examples (of {len(examples)} from {scope})")

    results: dict[str, dict] = {}
    reference: dict[str, dict[str, float]] | None = None
    for name, path in retrievers:
        retriever = Retriever.load(path, max_length=args.max_length)
        retriever.eval()
        scores = own_document_scores(retriever, rows)
        row = {"path": path, **{m: sum(v.values()) / len(v) for m, v in scores.items()}}
        if reference is None:
            reference = scores
        else:
            for metric in scores:
                row[f"{metric}_vs_{retrievers[0][0]}"] = paired_test(reference[metric], scores[metric]).as_dict()
        results[name] = row
    uniform = sum(len(own) / len(ex.candidates) for ex, own in rows) / len(rows)
    entry = {
        "data": args.data,
        "exclude": args.exclude,
        "documents": args.documents,
        "examples": len(rows),
        "uniform_random": uniform,
        **results,
    }
    stored = read_result(args.out) or {}
    stored.pop("machine", None)
    stored[args.key] = entry
    write_result(args.out, stored)

    ref = retrievers[0][0]
    print(f"\n| retriever | own-doc pick | Δ vs {ref} [95% CI], p | reciprocal rank | Δ vs {ref} [95% CI], p |")
    print("|---|---:|---:|---:|---:|")
    print(f"| uniform random | {uniform:.3f} | | | |")
    for name, row in results.items():
        cells = [f"{row['pick']:.3f}", "", f"{row['reciprocal_rank']:.3f}", ""]
        if name != ref:
            for i, metric in ((1, "pick"), (3, "reciprocal_rank")):
                t = row[f"{metric}_vs_{ref}"]
                cells[i] = f"{t['mean_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], {t['p_value']:.2g}"
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_main(main)
