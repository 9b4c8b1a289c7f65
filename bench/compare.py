"""Head-to-head comparison of the objectives (issue 5): runs `dreamir compare` for each track's config and
merges the results into bench/results/compare.json, with each track's table and chart beside it
(compare-<track>.md / .png).

    python bench/compare.py [--collect-only] [--configs configs/compare-adapt.yaml ...] [--set KEY=VALUE ...]

Default tracks: adapt, scratch and adapt-epoch (configs/compare-<track>.yaml; on 2 CPU cores about
2.5 h, 1 h and 8 h).

Each comparison resumes where it stopped (finished objectives are read back, interrupted training
continues from its checkpoint), so this can be re-run until every track is complete. The JSON is
{"adapt": {"scifact": {"dream": {"ndcg@10": …, "recall@100": …, "train_s": …}, …}, "nfcorpus": …},
 "scratch": {"scifact": …}} with metrics as fractions; a method not finished yet is absent (its track's
compare-<track>.md lists it), so a long track can be collected while it still runs. Tracks not named in
this call keep what compare.json already holds. `--set` overrides a key of every named config, e.g. a
track run on a GPU: `--set base.device=cuda --set out=runs/compare-adapt-epoch-h100 --set track=…`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import run_main, write_result
from dreamir.apps.compare import format_compare_table, load_compare_config, run_compare
from dreamir.config import parse_override

ROOT = Path(__file__).resolve().parents[1]


def keep_report(run_dir: Path, results_dir: Path, track: str) -> None:
    """Copy a track's compare.md and compare.png beside the JSON as compare-<track>.*, link included."""
    report = (run_dir / "compare.md").read_text().replace("](compare.png)", f"](compare-{track}.png)")
    (results_dir / f"compare-{track}.md").write_text(report)
    (results_dir / f"compare-{track}.png").write_bytes((run_dir / "compare.png").read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[str(ROOT / f"configs/compare-{track}.yaml") for track in ("adapt", "scratch", "adapt-epoch")],
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/compare.json"))
    parser.add_argument(
        "--collect-only", action="store_true", help="merge what the comparisons finished; train or evaluate nothing"
    )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of every config")
    args = parser.parse_args()
    overrides = dict(parse_override(item) for item in args.set or [])
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    previous.pop("machine", None)  # each track's results name their device; this file's machine is the collector's
    settings: dict = previous.pop("settings", {})
    merged: dict = previous
    for path in args.configs:
        config = load_compare_config(path, overrides)
        results = run_compare(config, report_only=args.collect_only)
        if results:
            merged[config.track] = results
            settings[config.track] = config.model_dump()
            keep_report(Path(config.out), Path(args.out).parent, config.track)
    for track, results in merged.items():
        print(f"\ntrack {track}\n{format_compare_table(results)}")
    write_result(args.out, {**merged, "settings": settings})


if __name__ == "__main__":
    run_main(main)
