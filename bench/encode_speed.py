"""Encoding throughput: dreamir's Retriever.encode vs SentenceTransformer.encode, same process, same batch size.

    python bench/encode_speed.py [--data ../shared/assets/beir/scifact] [--limit N] [--batch-size 64]

Prints a table and writes bench/results/encode_speed.json. Runs alternate (dreamir, ST, dreamir, ST, ...)
so both see the same machine load; the ratio uses the median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from _results import write_result
from dreamir.data.beir import load_corpus
from dreamir.data.training import DataStats
from dreamir.models.retriever import Retriever

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/assets/beir/scifact"))
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench/results/encode_speed.json"))
    args = parser.parse_args()

    corpus = load_corpus(Path(args.data) / "corpus.jsonl", DataStats())
    texts = list(corpus.values())[: args.limit]
    retriever = Retriever.load(args.model)
    st = retriever.st
    timings: dict[str, list[float]] = {"dreamir": [], "sentence-transformers": []}
    outputs = {}
    for _ in range(args.repeats):
        for name in timings:
            start = time.perf_counter()
            if name == "dreamir":
                outputs[name] = retriever.encode(texts, "document", batch_size=args.batch_size)
            else:
                outputs[name] = st.encode(
                    texts,
                    prompt_name="document",
                    batch_size=args.batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            timings[name].append(time.perf_counter() - start)
    max_diff = float(np.abs(outputs["dreamir"] - outputs["sentence-transformers"]).max())
    rows = {
        name: {"median_s": statistics.median(t), "docs_per_s": len(texts) / statistics.median(t), "runs_s": t}
        for name, t in timings.items()
    }
    ratio = rows["dreamir"]["docs_per_s"] / rows["sentence-transformers"]["docs_per_s"]
    threads = torch.get_num_threads()
    print(f"{len(texts)} documents from {args.data}, batch size {args.batch_size}, torch threads {threads}")
    print("| encoder | median s | docs/s |\n|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_s']:.1f} | {row['docs_per_s']:.1f} |")
    print(f"ratio dreamir / sentence-transformers (throughput): {ratio:.3f}; max |Δembedding| {max_diff:.2e}")
    result = {
        "model": args.model,
        "data": args.data,
        "documents": len(texts),
        "batch_size": args.batch_size,
        "rows": rows,
        "ratio_dreamir_vs_st": ratio,
        "max_abs_embedding_diff": max_diff,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
