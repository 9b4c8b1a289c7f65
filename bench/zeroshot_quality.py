"""PromptReps / DiffRetriever retrieval quality: dense, sparse and hybrid from ONE encoding, next to BM25.

    python bench/zeroshot_quality.py [--data ../shared/assets/beir/scifact] [--model promptreps:smollm2-135m-instruct]

Encodes the corpus and queries once, scores every mode from the same representations, evaluates
them and BM25 with dreamir's evaluation code, and prints nDCG@10 / Recall@100 with the encoding
time. Writes bench/results/zeroshot_quality.json (one entry per data folder and model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _results import write_result
from dreamir.data.beir import load_beir
from dreamir.evaluation.metrics import evaluate_run
from dreamir.retrieval.base import ModelSpec
from dreamir.retrieval.search import bm25_run, to_run
from dreamir.retrieval.zeroshot.retrieval import ZeroShotOptions, ZeroShotRetriever, score_matrix

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/assets/beir/scifact"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="promptreps:smollm2-135m-instruct")
    parser.add_argument("--words", type=int, default=None)
    parser.add_argument("--max-text-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "bench/results/zeroshot_quality.json"))
    args = parser.parse_args()
    data = load_beir(args.data, args.split)
    spec = ModelSpec.parse(args.model)
    if not spec.is_zero_shot:
        raise SystemExit(f"--model must be promptreps:NAME or diffretriever:NAME, got {args.model}")
    method = spec.kind
    retriever = ZeroShotRetriever(method, spec.name, ZeroShotOptions(words=args.words))
    retriever.encoder.max_text_tokens = args.max_text_tokens
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    docs = retriever.encoder.encode([data.corpus[d] for d in doc_ids], "document", args.batch, show_progress=True)
    queries = retriever.encoder.encode([data.queries[q] for q in query_ids], "query", args.batch, show_progress=True)
    modes = ["dense", "sparse", "hybrid"] + (["multivector"] if method == "diffretriever" else [])
    rows = {}
    for mode in modes:
        start = time.perf_counter()
        scores = score_matrix(queries, docs, mode, 100, len(retriever.encoder.tokenizer))
        values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), min(101, len(doc_ids)), dim=1)
        run = to_run(query_ids, doc_ids, values.numpy(), indices.numpy(), True, 100)
        run = {q: {d: s for d, s in hits.items() if np.isfinite(s)} for q, hits in run.items()}
        rows[mode] = {**evaluate_run(data.qrels, run), "scoring_s": time.perf_counter() - start}
    start = time.perf_counter()
    rows["bm25"] = {
        **evaluate_run(data.qrels, bm25_run(data.corpus, data.queries)),
        "scoring_s": time.perf_counter() - start,
    }
    print(
        f"{data.name} ({args.split}: {len(query_ids)} queries, {len(doc_ids)} documents), {args.model}, "
        f"k={retriever.encoder.words}, texts cut at {args.max_text_tokens} tokens"
    )
    print(
        f"encoding: documents {docs.seconds:.0f} s, queries {queries.seconds:.0f} s "
        f"({1000 * queries.seconds / len(query_ids):.0f} ms/query)"
    )
    print("| mode | nDCG@10 | Recall@100 |\n|---|---:|---:|")
    for mode, metrics in rows.items():
        print(f"| {mode} | {100 * metrics['ndcg@10']:.1f} | {100 * metrics['recall@100']:.1f} |")
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    entries = {k: v for k, v in existing.items() if k != "machine"}
    entries[f"{data.name}/{args.split}/{args.model}/k={retriever.encoder.words}/{args.max_text_tokens}"] = {
        "rows": rows,
        "encode_documents_s": docs.seconds,
        "encode_queries_s": queries.seconds,
        "num_documents": len(doc_ids),
        "num_queries": len(query_ids),
    }
    write_result(out, entries)


if __name__ == "__main__":
    main()
