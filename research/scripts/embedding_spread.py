"""Has a retriever's embedding space collapsed? A label-free look at how far apart it puts texts.

    python research/scripts/embedding_spread.py --data ../shared/assets/beir/scifact --split train \
        --retriever untrained=smollm2-135m-instruct:lasttoken --retriever dream=runs/.../dream_distill/retriever \
        [--docs 200] [--queries 64] [--temperature 0.05] [--key NAME]

A retriever at random level can be so because its embeddings carry no topic (all texts point one way) or
because they carry the wrong one. Per retriever, over a seeded sample of the corpus's documents and the
split's query texts (no qrels are read): the mean and spread of the cosine between two different documents,
and the spread of one query's scores over the documents — divided by the training temperature τ, the
logit spread its softmax sees (≪ 1: the weights are uniform whatever the query). A `NAME=MODEL:lasttoken` (or `:mean`)
spec loads a bare decoder with that pooling, the "query: " / "passage: " prefixes and 64 tokens, as
research/configs/lm-student.yaml builds its untrained student. Writes bench/results/embedding_spread.json
under --key.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, run_main, write_result
from dreamir.data.beir import load_beir
from dreamir.models.retriever import Retriever

ROOT = Path(__file__).resolve().parents[2]


def load_retriever(spec: str) -> Retriever:
    name, _, pooling = spec.rpartition(":")
    if pooling in ("lasttoken", "mean"):  # a bare LM backbone, built as the LM-student config builds it
        return Retriever.load(
            name,
            pooling=pooling,
            query_prefix="query: ",
            doc_prefix="passage: ",
            max_length=64,
        )
    return Retriever.load(spec)


def spread(retriever: Retriever, documents: list[str], queries: list[str], temperature: float) -> dict[str, float]:
    docs = retriever.encode(documents, "document")
    scores = retriever.encode(queries, "query") @ docs.T
    pairs = (docs @ docs.T)[~np.eye(len(docs), dtype=bool)]
    per_query = scores.std(axis=1)
    return {
        "doc_cosine_mean": float(pairs.mean()),
        "doc_cosine_std": float(pairs.std()),
        "query_score_std": float(per_query.mean()),
        "logit_std": float(per_query.mean() / temperature),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a BEIR folder")
    parser.add_argument("--split", default="train", help="whose query texts to use (no qrels are read)")
    parser.add_argument("--retriever", action="append", required=True, metavar="NAME=MODEL")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.05, help="the τ the retrievers were trained at")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", default="default", help="the entry's name in --out")
    parser.add_argument("--out", default=str(ROOT / "bench/results/embedding_spread.json"))
    args = parser.parse_args()
    specs = []
    for item in args.retriever:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"--retriever {item!r}: expected NAME=MODEL")
        specs.append((name, spec))
    data = load_beir(args.data, args.split)
    rng = random.Random(args.seed)
    documents = [data.corpus[d] for d in rng.sample(sorted(data.corpus), min(args.docs, len(data.corpus)))]
    queries = [data.queries[q] for q in rng.sample(sorted(data.queries), min(args.queries, len(data.queries)))]
    rows = {name: spread(load_retriever(spec), documents, queries, args.temperature) for name, spec in specs}
    print(f"| retriever | doc–doc cosine, mean ± std | one query's scores, std | ÷ τ {args.temperature} |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['doc_cosine_mean']:.3f} ± {row['doc_cosine_std']:.3f} | {row['query_score_std']:.4f} "
            f"| {row['logit_std']:.2f} |"
        )
    result = read_result(args.out) or {}
    result.pop("machine", None)
    setup = {"data": args.data, "split": args.split, "docs": len(documents), "queries": len(queries)}
    result[args.key] = {**setup, "temperature": args.temperature, "specs": dict(specs), "retrievers": rows}
    write_result(args.out, result)


if __name__ == "__main__":
    run_main(main)
