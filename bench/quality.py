"""Retrieval quality of given models on the BEIR folders in ../shared/assets/beir.

    python bench/quality.py [--model bm25 --model all-minilm-l6-v2 --model runs/x] [--dataset scifact ...]
                            [--reference] [--max-seq-length N]

Prints a markdown table (nDCG@10, Recall@100, MRR@10, MAP@100, ×100) and writes
bench/results/quality.json and bench/results/quality.md. With --reference, each model's nDCG@10 is also
computed by an independent sentence-transformers (or bm25s) + ir-measures pipeline and shown beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _results import write_result
from dreamir.data.beir import load_beir
from dreamir.evaluation.evaluate import evaluate_model
from dreamir.evaluation.report import format_table
from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import exported_retriever

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test oracle lives in tests/, not the package
from tests.reference import reference_ndcg_bm25, reference_ndcg_st

ROOT = Path(__file__).resolve().parents[1]
BEIR = ROOT.parent / "shared/assets/beir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--dataset", action="append", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench/results/quality"))
    args = parser.parse_args()
    models = args.model or ["bm25", "all-minilm-l6-v2"]
    datasets = args.dataset or ["scifact", "nfcorpus"]

    results: dict = {
        "split": args.split,
        "max_seq_length": args.max_seq_length,
        "datasets": {},
    }
    tables = []
    for name in datasets:
        data = load_beir(BEIR / name, args.split)
        rows = []
        for spec in models:
            if spec == "bm25":
                model = "bm25"
            else:
                model = Retriever.load(exported_retriever(spec))
                if args.max_seq_length:
                    model.st.max_seq_length = args.max_seq_length
            rows.append(evaluate_model(model, data, name=spec))
            entry = {**rows[-1].metrics, "seconds": rows[-1].seconds}
            if args.reference:
                start = time.perf_counter()
                entry["reference_ndcg@10"] = (
                    reference_ndcg_bm25(BEIR / name, args.split)
                    if spec == "bm25"
                    else reference_ndcg_st(BEIR / name, model.source, args.split, args.max_seq_length)
                )
                entry["reference_seconds"] = time.perf_counter() - start
            results["datasets"].setdefault(name, {})[spec] = entry
        table = format_table(rows, f"{name} ({args.split}, {len(data.queries)} queries, {len(data.corpus)} docs)")
        if args.reference:
            table += "\n\n| model | dreamir nDCG@10 | reference nDCG@10 (ST/bm25s + ir-measures) | Δ points |\n"
            table += "|---|---:|---:|---:|\n"
            for spec, entry in results["datasets"][name].items():
                delta = 100 * (entry["ndcg@10"] - entry["reference_ndcg@10"])
                ours, ref = 100 * entry["ndcg@10"], 100 * entry["reference_ndcg@10"]
                table += f"| {spec} | {ours:.2f} | {ref:.2f} | {delta:+.2f} |\n"
        print(table + "\n")
        tables.append(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out.with_suffix(".json"), results)
    out.with_suffix(".md").write_text("# Retrieval quality\n\n" + "\n\n".join(tables) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
