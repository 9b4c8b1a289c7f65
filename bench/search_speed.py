"""Many queries against an index: one `search_index` call per query (what a loop over `dreamir search QUERY` does,
minus the process start) against one `IndexSearcher` for all of them (`dreamir search --queries`), side by side.

    python bench/search_speed.py [--data src/dreamir/resources/scifact-sample] [--model all-minilm-l6-v2] [--repeats 3]

Builds a dense index and a fused one (fuse:0.5:bm25+MODEL) of the corpus in a temporary folder, then times both
ways on every query of the folder, alternating them `--repeats` times; prints the medians and their ratio and writes
bench/results/search_speed.json. Both ways return the same ranking (tests/test_fusion.py checks it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _results import run_main, write_result
from dreamir.data.beir import load_queries
from dreamir.data.training import DataStats
from dreamir.retrieval.indexing import IndexSearcher, build_index, search_index

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "src/dreamir/resources/scifact-sample"))
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench/results/search_speed.json"))
    args = parser.parse_args()
    queries = list(load_queries(Path(args.data) / "queries.jsonl", DataStats()).values())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (("dense", args.model), ("fused", f"fuse:0.5:bm25+{args.model}")):
            folder = Path(tmp) / name
            build_index(args.data, spec, folder, show_progress=False)
            per_query, batched = [], []
            for _ in range(args.repeats):  # alternated, so that both see the same machine load
                start = time.perf_counter()
                for query in queries:
                    search_index(folder, query, args.k)
                per_query.append(time.perf_counter() - start)
                start = time.perf_counter()
                IndexSearcher(folder).search(queries, args.k)
                batched.append(time.perf_counter() - start)
            rows[name] = {
                "spec": spec,
                "queries": len(queries),
                "per_query_call_s": statistics.median(per_query),
                "one_searcher_s": statistics.median(batched),
                "ratio": statistics.median(per_query) / statistics.median(batched),
                "repeats": args.repeats,
            }
    print(f"{len(queries)} queries, top {args.k}, median of {args.repeats} alternated repeats\n")
    print("| index | one search_index call per query | one IndexSearcher | ratio |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} ({row['spec']}) | {row['per_query_call_s']:.1f} s | {row['one_searcher_s']:.2f} s | "
            f"{row['ratio']:.0f}× |"
        )
    write_result(args.out, {"data": args.data, "k": args.k, "rows": rows})


if __name__ == "__main__":
    run_main(main)
