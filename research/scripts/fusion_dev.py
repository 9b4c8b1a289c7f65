"""Which fusion of BM25 with a trained retriever, chosen on DEV data (issue 36 item 3).

    python research/scripts/fusion_dev.py --config research/configs/fusion-static-dev.yaml

For every row of a finished dev comparison (the untrained start and each objective at each seed), BM25's and the
model's dev runs are computed once, then fused by reciprocal-rank fusion and by the convex combination at W = 0,
0.1, …, 1 (W: BM25's weight). Prints mean dev nDCG@10 per fusion and row (seeds averaged) and writes JSON.

The rule (written 2026-12-07 before any fused dev score was read): the test track's fusion is the one with the
highest dev nDCG@10 averaged over the fused rows bm25+untrained, bm25+dream_distill and bm25+infonce and over both
dev sets; a tie goes to rrf (nothing fitted). The test split is then read once with configs/compare-fusion-static.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _results import write_result
from dreamir.apps.compare import load_compare_config
from dreamir.apps.compare.config import run_config
from dreamir.apps.compare.run import start_retriever
from dreamir.evaluation.metrics import evaluate_run
from dreamir.retrieval.encoder import load_encoder
from dreamir.retrieval.fusion import convex_fusion, reciprocal_rank_fusion, top_k

WEIGHTS = [w / 10 for w in range(11)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="bench/results/fusion_dev.json")
    args = parser.parse_args()
    config = load_compare_config(args.config)
    table: dict[str, dict[str, dict[str, float]]] = {}  # dataset -> row -> fusion -> mean nDCG@10
    for dataset in config.datasets:
        data = dataset.evaluation_data()
        qrels = data.qrels
        score = lambda run, qrels=qrels: evaluate_run(qrels, top_k(run, 100))["ndcg@10"]  # noqa: E731
        bm25 = load_encoder("bm25").retrieve(data.corpus, data.queries, 100, True, False)
        models = {"untrained": [start_retriever(config, dataset)]}
        for objective in config.objectives:
            models[objective] = [
                str(Path(run_config(config, dataset, objective, Path("unused"), seed).run_dir) / "retriever")
                for seed in config.run_seeds()
            ]
        rows = table.setdefault(dataset.name, {})
        for row, members in models.items():
            per_member: dict[str, list[float]] = {}
            for member in members:
                dense = load_encoder(member, use_cache=True).retrieve(data.corpus, data.queries, 100, True, False)
                per_member.setdefault("alone", []).append(score(dense))
                per_member.setdefault("rrf", []).append(score(reciprocal_rank_fusion(bm25, dense)))
                for w in WEIGHTS:
                    per_member.setdefault(f"fuse:{w:g}", []).append(score(convex_fusion(bm25, dense, w)))
            rows[row] = {name: float(np.mean(values)) for name, values in per_member.items()}
            rows[row]["bm25"] = score(bm25)
            print(f"{dataset.name} {row}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in rows[row].items()), flush=True)
    fusions = ["rrf", *(f"fuse:{w:g}" for w in WEIGHTS)]
    judged = [r for r in ("untrained", "dream_distill", "infonce") if all(r in rows for rows in table.values())]
    mean = {f: float(np.mean([table[d][r][f] for d in table for r in judged])) for f in fusions}
    chosen = max(fusions, key=lambda f: (round(mean[f], 10), f == "rrf"))
    print(
        "mean over "
        + ", ".join(f"bm25+{r}" for r in judged)
        + " and datasets: "
        + ", ".join(f"{f} {100 * v:.2f}" for f, v in mean.items())
    )
    print(f"chosen by the rule: {chosen}")
    write_result(args.out, {"config": args.config, "rows": table, "mean": mean, "chosen": chosen, "rule": __doc__})


if __name__ == "__main__":
    main()
