"""IVF search over 1,000,000 generated 384-d vectors: recall@100 against exact search, and latency.

    python bench/ivf_search.py [--n 1000000] [--dim 384] [--nlist 1024] [--queries 200]

The vectors are a mixture of Gaussian clusters, L2-normalised (real sentence embeddings are clustered;
uniform random vectors have no neighbourhood structure for any ANN index to use). Queries are fresh
draws from the same mixture. Prints recall@100 and median per-query latency for each nprobe and writes
bench/results/ivf_search.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import write_result
from dreamir.retrieval.index import DenseIndex
from dreamir.retrieval.search import exact_topk

ROOT = Path(__file__).resolve().parents[1]


def mixture(rng, n, centers, noise):
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        pick = rng.integers(0, len(centers), stop - start)
        block = centers[pick] + noise * rng.standard_normal((stop - start, centers.shape[1]), dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.2, help="per-dimension std around a unit-scale center")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--nprobe", default="16,32,64,128,256")
    parser.add_argument("--out", default=str(ROOT / "bench/results/ivf_search.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((args.clusters, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    t0 = time.perf_counter()
    docs = mixture(rng, args.n, centers, args.noise / np.sqrt(args.dim) * 4)
    queries = mixture(rng, args.queries, centers, args.noise / np.sqrt(args.dim) * 4)
    gen_s = time.perf_counter() - t0
    sims = (docs[:1000] @ docs[:1000].T)[np.triu_indices(1000, 1)]
    print(
        f"{args.n} docs × {args.dim} d generated in {gen_s:.0f} s; cosine of random pairs: "
        f"mean {sims.mean():.3f}, 99th pct {np.percentile(sims, 99):.3f}"
    )

    t0 = time.perf_counter()
    _, truth = exact_topk(queries, docs, args.k)
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = [str(i) for i in range(args.n)]
    index = DenseIndex.build(ids, docs, f"IVF{args.nlist},Flat")
    build_s = time.perf_counter() - t0
    print(
        f"exact search: {1000 * exact_s / args.queries:.1f} ms/query (blocked torch matmul); "
        f"IVF{args.nlist},Flat built in {build_s:.0f} s"
    )

    rows = []
    print("| nprobe | recall@100 | median ms/query | p90 ms/query |\n|---:|---:|---:|---:|")
    for nprobe in [int(x) for x in args.nprobe.split(",")]:
        index.set_params(f"nprobe={nprobe}")
        latencies, found = [], []
        for i in range(args.queries):
            t0 = time.perf_counter()
            _, rows_i = index.search(queries[i : i + 1], args.k)
            latencies.append(time.perf_counter() - t0)
            found.append(len(set(rows_i[0].tolist()) & set(truth[i].tolist())) / args.k)
        row = {
            "nprobe": nprobe,
            "recall@100": float(np.mean(found)),
            "median_ms": 1000 * float(np.median(latencies)),
            "p90_ms": 1000 * float(np.percentile(latencies, 90)),
        }
        rows.append(row)
        print(f"| {nprobe} | {row['recall@100']:.3f} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} |")
    best = next((r for r in rows if r["recall@100"] >= 0.95), None)
    print(f"smallest nprobe with recall@100 ≥ 0.95: {best['nprobe'] if best else 'none'}")
    result = {
        "n": args.n,
        "dim": args.dim,
        "clusters": args.clusters,
        "noise": args.noise,
        "nlist": args.nlist,
        "queries": args.queries,
        "build_s": build_s,
        "exact_ms_per_query": 1000 * exact_s / args.queries,
        "rows": rows,
        "chosen": best,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
