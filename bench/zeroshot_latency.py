"""Per-query latency of the zero-shot LLM retrievers for K = 1, 4, 16 representation words.

    python bench/zeroshot_latency.py [--queries 16] [--ks 1 4 16]

Rows, measured in one process on the same queries (batch 1, i.e. one query at a time):
- DiffRetriever on a tiny masked LM (built from a config): prompt + K masks, ONE bidirectional pass;
- PromptReps on SmolLM2-135M-Instruct, K words by sequential greedy decoding (K forward steps with a
  key/value cache) — the autoregressive way to get K positions;
- the same SmolLM2 with one pass over prompt + K positions (what a single pass costs on this model;
  an AR model's K appended positions are not a trained representation, this is the cost side only).
Writes bench/results/zeroshot_latency.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _results import write_result
from dreamir.retrieval.zeroshot.encoders import DiffRetriever, PromptReps
from dreamir.testing import save_tiny_masked_lm

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "what causes scurvy",
    "0-dimensional biomaterials show inductive properties",
    "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors",
    "vitamin D deficiency and the risk of cardiovascular disease in adults",
]


def per_query_ms(encode, queries: list[str], repeats: int = 1) -> float:
    encode(queries[:1])  # warm-up
    times = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            encode([q])
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def encode_queries(encoder):
    return lambda texts: encoder.encode(texts, "query")


def one_pass(encoder: PromptReps, k: int):
    """Prompt + K extra positions (the answer prefix's last token repeated) in a single forward."""

    def run(texts: list[str]) -> None:
        ids = encoder.tokenizer(encoder.prompt(texts[0], "query"), add_special_tokens=False)["input_ids"]
        ids = ids + [ids[-1]] * (k - 1)
        with torch.no_grad():
            encoder.model(input_ids=torch.tensor([ids]), output_hidden_states=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--out", default=str(ROOT / "bench/results/zeroshot_latency.json"))
    args = parser.parse_args()
    queries = (QUERIES * args.queries)[: args.queries]
    rows: dict[str, dict[int, float]] = {"diffretriever tiny MLM, one pass": {}, "promptreps SmolLM2, sequential": {}}
    rows["SmolLM2, one pass over K positions"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mlm = save_tiny_masked_lm(Path(tmp) / "mlm")
        for k in args.ks:
            diff = DiffRetriever(str(mlm), words=k)
            rows["diffretriever tiny MLM, one pass"][k] = per_query_ms(encode_queries(diff), queries)
            reps = PromptReps(args.llm, words=k)
            rows["promptreps SmolLM2, sequential"][k] = per_query_ms(encode_queries(reps), queries)
            rows["SmolLM2, one pass over K positions"][k] = per_query_ms(one_pass(reps, k), queries)
    print(f"median ms per query over {len(queries)} queries, batch 1, torch threads {torch.get_num_threads()}")
    print("| model / decoding | " + " | ".join(f"K={k}" for k in args.ks) + " |")
    print("|---|" + "---:|" * len(args.ks))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.1f}" for k in args.ks) + " |")
    seq, single = rows["promptreps SmolLM2, sequential"], rows["SmolLM2, one pass over K positions"]
    ratios = {k: seq[k] / single[k] for k in args.ks}
    print("sequential / one pass on SmolLM2: " + ", ".join(f"K={k}: {r:.2f}×" for k, r in ratios.items()))
    write_result(args.out, {"args": vars(args), "ms_per_query": rows, "sequential_over_one_pass": ratios})


if __name__ == "__main__":
    main()
