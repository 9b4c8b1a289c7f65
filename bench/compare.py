"""Head-to-head comparison of the objectives (issue 5): runs `dreamir compare` for each track's config and
merges the results into bench/results/compare.json and compare.md.

    python bench/compare.py [--configs configs/compare-adapt.yaml configs/compare-scratch.yaml]

Each comparison resumes where it stopped (finished objectives are read back, interrupted training
continues from its checkpoint), so this can be re-run until every track is complete. The JSON is
{"adapt": {"scifact": {"dream": {"ndcg@10": …, "recall@100": …, "train_s": …}, …}, "nfcorpus": …},
 "scratch": {"scifact": …}} with metrics as fractions; a track or dataset not finished yet is absent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import write_result
from dreamir.compare import format_compare_table, load_compare_config, run_compare

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[str(ROOT / "configs/compare-adapt.yaml"), str(ROOT / "configs/compare-scratch.yaml")],
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/compare.json"))
    parser.add_argument(
        "--collect-only", action="store_true", help="merge what the comparisons finished; train nothing"
    )
    args = parser.parse_args()
    merged: dict = {}
    settings: dict = {}
    for path in args.configs:
        config = load_compare_config(path)
        if not args.collect_only:
            run_compare(config)
        finished = Path(config.out) / "compare.json"
        if finished.exists():
            merged.update(json.loads(finished.read_text()))
            settings[config.track] = config.model_dump()
    for track, results in merged.items():
        print(f"\ntrack {track}\n{format_compare_table(results)}")
    write_result(args.out, {**merged, "settings": settings})


if __name__ == "__main__":
    main()
