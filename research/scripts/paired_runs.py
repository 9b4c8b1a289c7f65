"""Paired test between two groups of finished runs (e.g. one judge's DREAM-distill against another's, or against
InfoNCE), each group's per-query nDCG@10 averaged over its runs (seeds) first — as `dreamir compare` does.

    cd runs/learn-static-3k-qwen1.5b/scifact
    python ../../../research/scripts/paired_runs.py --a 'infonce*' --b dream_distill 'dream_distill-seed*'

Each argument is a run folder (or a glob of them) holding a `result.json` from `dreamir compare` /
`research/scripts/learn.py`, or a baseline's JSON (`untrained.json`, `bm25.json`). Prints b − a: mean
difference ×100 [95% bootstrap CI],
p of the paired randomization test over the queries both groups scored.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import run_main
from dreamir.apps.compare import run_result
from dreamir.evaluation.significance import paired_test, pooled


def group_scores(patterns: list[str]) -> tuple[dict[str, float], list[Path]]:
    """Per-query nDCG@10 averaged over every run the patterns name."""
    paths: list[Path] = []
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)) or [pattern]:
            path = Path(match)
            paths.append(path / "result.json" if path.is_dir() else path)
    per_run = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"error: {path}: no finished run here (result.json not found)")
        try:
            per_run.append(run_result(path)["per_query"])
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    return pooled(per_run), paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", required=True, help="run folders or globs: the reference group")
    parser.add_argument("--b", nargs="+", required=True, help="run folders or globs: the group compared with it")
    args = parser.parse_args()
    a, a_paths = group_scores(args.a)
    b, b_paths = group_scores(args.b)
    print(f"a: {len(a_paths)} runs, b: {len(b_paths)} runs; b − a: {paired_test(a, b).describe()}")


if __name__ == "__main__":
    run_main(main)
