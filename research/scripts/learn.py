"""Does DREAM learn? The protocol on dev data: seeds, the shuffled-targets control, paired tests.

    python research/scripts/learn.py --config research/configs/learn-dev.yaml [--variant NAME] [--set key=value ...]

Runs (or continues) `dreamir compare` with the config — every objective at each seed beside its
shuffled-targets control, evaluated on the dev split against the untrained start — then writes
bench/results/learn.json: {"judge", "recipe", "dev": {dataset: {"objective", "start", "dream": [per seed],
"control": [per seed], "p_dream_vs_start", "p_dream_vs_control", ...}}} for the config's first objective,
and, with --variant NAME, the same fields under "variants": {NAME: {dataset: ...}} instead (nDCG@10 as
fractions; p from the paired randomization test over queries with per-query scores averaged over seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, run_main, write_result
from dreamir.apps.compare import CONTROL_SUFFIX, load_compare_config, run_compare
from dreamir.config import parse_override

ROOT = Path(__file__).resolve().parents[2]


def dataset_entry(rows: dict, objective: str) -> dict:
    row, control = rows.get(objective, {}), rows.get(objective + CONTROL_SUFFIX, {})
    seeds = lambda r: list(r.get("seeds", {}).values()) or ([r["ndcg@10"]] if "ndcg@10" in r else [])  # noqa: E731
    entry = {
        "objective": objective,
        "start": rows.get("untrained", {}).get("ndcg@10"),
        "dream": seeds(row),
        "control": seeds(control),
        "p_dream_vs_start": row.get("vs_start", {}).get("p_value"),
        "p_dream_vs_control": row.get("vs_control", {}).get("p_value"),
        "dream_vs_start": row.get("vs_start"),
        "dream_vs_control": row.get("vs_control"),
        "control_vs_start": control.get("vs_start"),
        "queries": row.get("queries"),
        "corpus_docs": row.get("corpus_docs"),
        "device": row.get("device"),
    }
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "research/configs/learn-dev.yaml"))
    parser.add_argument("--variant", default=None, help="record under variants[NAME] instead of dev")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a compare key")
    parser.add_argument("--out", default=str(ROOT / "bench/results/learn.json"))
    parser.add_argument("--report-only", action="store_true", help="train nothing; record what is finished")
    parser.add_argument("--dataset", action="append", help="only these datasets of the config (default: all)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="run only these seeds (a prefix of the config's, to finish seed by seed)"
    )
    args = parser.parse_args()
    config = load_compare_config(args.config, dict(parse_override(item) for item in args.set))
    if args.dataset:
        config = config.model_copy(update={"datasets": [d for d in config.datasets if d.name in args.dataset]})
    if args.seeds:
        # a prefix keeps every run's folder where the full protocol puts it (the first seed has the plain name)
        if args.seeds != config.run_seeds()[: len(args.seeds)]:
            raise SystemExit(f"--seeds must be a prefix of the config's seeds {config.run_seeds()}")
        config = config.model_copy(update={"seeds": args.seeds})
    results = run_compare(config, report_only=args.report_only)
    objective = config.objectives[0]
    entry = {name: dataset_entry(rows, objective) for name, rows in results.items()}
    learn = read_result(args.out) or {}
    learn.pop("machine", None)
    judge = {"judge": config.base.get("llm", {}).get("name"), "recipe": config.datasets[0].build.recipe}
    learn["p_values"] = "paired randomization test over queries, per-query nDCG@10 averaged over seeds (pooled)"
    # a run over some of the datasets (--dataset) keeps what earlier runs recorded for the others
    if args.variant:
        earlier = learn.setdefault("variants", {}).get(args.variant, {})
        setup = {**judge, "config": str(args.config), "overrides": args.set}
        learn["variants"][args.variant] = {**earlier, **setup, **entry}
    else:
        learn.update(judge, dev={**learn.get("dev", {}), **entry}, config=str(args.config))
    write_result(args.out, learn)
    for name, e in entry.items():
        print(
            f"{name}: start {e['start']}, {objective} {e['dream']}, control {e['control']}, "
            f"p vs start {e['p_dream_vs_start']}, p vs control {e['p_dream_vs_control']}"
        )


if __name__ == "__main__":
    run_main(main)
