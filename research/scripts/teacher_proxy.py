"""Which teacher should the retriever learn from? A label-free check on the training examples themselves.

    python research/scripts/teacher_proxy.py --config research/configs/learn-dev.yaml --dataset scifact \
        [--set KEY=VALUE ...]

Every self-supervised example's query is a span of some document; its candidates are BM25's top chunks
of the corpus (in BM25's order), some of them from that same document. No query or qrel of the
benchmark is read. For the examples with an own-document candidate and another one, it reports how often
each teacher's favourite is an own-document chunk:
- BM25's top (candidate 0, the order the data was mined in) and the starting retriever (P_start);
- the judge, P_J = softmax(−g/τ_J) with g the DREAM-distill signal (its favourite: the lowest g), with
  the real targets and with the shuffled-targets control's;
- the product P_start · P_J (DREAM-distill's `teacher: judge_and_start`) over a τ_J sweep, real and shuffled.
A teacher worth distilling should beat the start here with the real targets and not with shuffled ones.
g comes from the comparison's `dream_distill.signal_cache_dir` (computed by the dev study); examples
missing there are computed only with --compute-missing (one judge pass per 8 examples). Writes
bench/results/teacher_proxy.json under "JUDGE | DATASET | RECIPE".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, run_main, write_result
from dreamir.apps.compare import load_compare_config, run_config, training_data
from dreamir.config import parse_override
from dreamir.data.training import load_examples, shuffled_targets, tokenize_examples
from dreamir.heads import load_heads
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import candidate_scores
from dreamir.objectives.dream_distill import DreamDistillObjective
from dreamir.objectives.teachers import standardised

ROOT = Path(__file__).resolve().parents[2]
JUDGE_TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "research/configs/learn-dev.yaml"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a compare key")
    parser.add_argument("--compute-missing", action="store_true", help="run the judge for examples not cached")
    parser.add_argument("--out", default=str(ROOT / "bench/results/teacher_proxy.json"))
    args = parser.parse_args()
    config = load_compare_config(args.config, dict(parse_override(item) for item in args.set))
    dataset = config.dataset(args.dataset)
    path = training_data(config, dataset)
    run = run_config(config, dataset, "dream_distill", path)
    examples = load_examples(path)
    if run.data.max_examples:
        examples = examples[: run.data.max_examples]
    lm = FrozenLM.load(run.llm.name, run.device, run.dtype)
    retriever = Retriever.load(run.retriever.name, device=run.device)
    retriever.eval()
    if not run.heads.file:
        raise SystemExit("the comparison's heads.file is needed (the head set the judge signal was computed with)")
    heads = load_heads(run.heads.file, run.heads.count)
    objective = DreamDistillObjective(lm, retriever, run.dream_distill, heads, run.dream.mode, run.dream.layout)
    signals = {}
    for name, exs in (("real", examples), ("shuffled", shuffled_targets(examples, run.data.shuffle_seed))):
        tokenized = tokenize_examples(exs, lm.tokenize, run.data.limits)
        missing = sum(objective.judge.signal.cached(t) is None for t in tokenized)
        if missing and not args.compute_missing:
            raise SystemExit(
                f"{missing} of {len(tokenized)} {name}-target examples have no judge signal in "
                f"{run.dream_distill.signal_cache_dir}; run the dev study first or pass --compute-missing"
            )
        signals[name] = [
            g for start in range(0, len(tokenized), 8) for g in objective.judge.signal(tokenized[start : start + 8])
        ]
    start_scores = []
    with torch.no_grad():
        for start in range(0, len(examples), 64):
            scores, mask = candidate_scores(retriever, examples[start : start + 64])
            start_scores += [scores[b, : int(mask[b].sum())].float().cpu() for b in range(len(scores))]
    tau = run.dream_distill.temperature

    rows = []  # (own-document candidates, start logits, g real, g shuffled) of the usable examples
    for e, ex in enumerate(examples):
        if split := ex.own_document_split():
            own = split[0]
            rows.append((own, start_scores[e] / tau, signals["real"][e].float(), signals["shuffled"][e].float()))

    def rate(pick) -> float:
        return sum(int(pick(*row)) in row[0] for row in rows) / len(rows)

    result = {
        "examples": len(examples),
        "examples_with_own_doc": len(rows),
        "uniform_random": sum(len(r[0]) / len(r[1]) for r in rows) / len(rows),
        "bm25_top": rate(lambda own, s, g, gs: 0),
        "start": rate(lambda own, s, g, gs: s.argmax()),
        "judge": rate(lambda own, s, g, gs: g.argmin()),
        "judge_shuffled": rate(lambda own, s, g, gs: gs.argmin()),
        "judge_picks_bm25_top": sum(int(r[2].argmin()) == 0 for r in rows) / len(rows),
        "judge_shuffled_picks_bm25_top": sum(int(r[3].argmin()) == 0 for r in rows) / len(rows),
        "start_temperature": tau,
        # P_start · P_J: logits s/τ − standardised(g)/τ_J
        "judge_and_start": {
            str(t): rate(lambda own, s, g, gs, t=t: (s - standardised(g) / t).argmax()) for t in JUDGE_TEMPERATURES
        },
        "judge_and_start_shuffled": {
            str(t): rate(lambda own, s, g, gs, t=t: (s - standardised(gs) / t).argmax()) for t in JUDGE_TEMPERATURES
        },
        "judge_model": run.llm.name,
        "recipe": dataset.build.recipe,
        "data": str(path),
        "device": run.device,
    }
    stored = read_result(args.out) or {}
    stored.pop("machine", None)
    stored[f"{run.llm.name} | {dataset.name} | {dataset.build.recipe}"] = result
    write_result(args.out, stored)
    print(
        f"{dataset.name}, judge {run.llm.name}: {len(rows)} of {len(examples)} examples with an own-document "
        "candidate and another\n\n| teacher | real targets | shuffled targets |\n|---|---:|---:|"
    )
    print(f"| uniform random | {result['uniform_random']:.3f} | |")
    print(f"| BM25's top | {result['bm25_top']:.3f} | |")
    print(f"| start (τ {tau:g}) | {result['start']:.3f} | |")
    print(f"| judge | {result['judge']:.3f} | {result['judge_shuffled']:.3f} |")
    for tj in JUDGE_TEMPERATURES:
        real, shuffled = result["judge_and_start"][str(tj)], result["judge_and_start_shuffled"][str(tj)]
        print(f"| start · judge (τ_J {tj:g}) | {real:.3f} | {shuffled:.3f} |")


if __name__ == "__main__":
    run_main(main)
