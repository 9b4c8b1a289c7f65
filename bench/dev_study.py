"""Why does an objective move the retriever the way it does? Variants scored on DEV data only.

    python bench/dev_study.py [--variants base lr1e-5 tau0.2] [--objective dream]

Dev data: SciFact's *train* queries and qrels (never the test split), with the corpus cut to the
train-judged documents plus random others (2,000 in all, seed 0) so each evaluation takes about two
minutes here; scores are higher than on the full corpus, so compare rows with each other only.
Every variant trains on the comparison's own examples (`runs/compare-adapt/scifact/train.jsonl`,
built by `dreamir compare --config configs/compare-adapt.yaml`) with that config's budget and seed,
changing one setting; a `build.` variant rebuilds the examples from the same corpus (same chunks and
seed) with one build setting changed, and the `shuffled-targets` control gives every query another
example's target. Writes bench/results/dev_study.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

from _results import run_main, write_result
from dreamir.apps.compare import format_compare_table, load_compare_config, run_compare
from dreamir.data.jsonl import iter_jsonl, write_jsonl_atomic

ROOT = Path(__file__).resolve().parents[1]
DEV_CORPUS_DOCS = 2000  # train-judged abstracts + others drawn with seed 0: ~2 min per evaluation here
VARIANTS = {  # name → settings changed from the comparison's base (dotted keys of a train config)
    "base": {},
    "lr1e-5": {"train.lr": 1.0e-5},
    "tau0.2": {"dream.temperature": 0.2},
    "reweight": {"dream.mode": "reweight"},
    "heads32": {"heads.count": 32},
    "heads-all": {"heads.count": "all"},  # bench/dream_signal.py: all heads' preference tracks the source better
    "same-doc-negatives": {"infonce.same_document_negatives": True},  # METHOD §2's literal InfoNCE
    # "build." keys rebuild the training data from the SciFact corpus (same chunks and seed)
    "candidates8": {"build.candidates": 8},
    # control: each query keeps its candidates but takes another example's target, so the LLM's loss
    # carries no information about which candidate helps; drift here is what noise alone does
    "shuffled-targets": {"control.shuffled_targets": True},
    # the same two with other seeds (retriever batches, dropout, the control's target cycle is fixed):
    # how far apart runs land that differ in nothing but the seed
    "seed1": {"seed": 1},
    "seed2": {"seed": 2},
    "shuffled-targets-seed1": {"control.shuffled_targets": True, "seed": 1},
    "shuffled-targets-seed2": {"control.shuffled_targets": True, "seed": 2},
}
BUILD_PREFIX = "build."
CONTROL_PREFIX = "control."


def shuffled_targets_copy(train_data: Path, out: Path, seed: int = 0) -> Path:
    """The training examples with their targets moved one step along a seeded cycle (none keeps its own)."""
    rows = [row for _, row in iter_jsonl(train_data)]
    order = random.Random(seed).sample(range(len(rows)), len(rows))
    targets = {order[i]: rows[order[(i + 1) % len(rows)]]["target"] for i in range(len(rows))}
    write_jsonl_atomic(out, ({**row, "target": targets[i]} for i, row in enumerate(rows)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["base", "lr1e-5", "tau0.2"], choices=list(VARIANTS))
    parser.add_argument("--objective", default="dream")
    parser.add_argument("--config", default=str(ROOT / "configs/compare-adapt.yaml"))
    parser.add_argument("--work", default=str(ROOT / "runs/dev-study"))
    parser.add_argument("--out", default=str(ROOT / "bench/results/dev_study.json"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]; give each device its own --out")
    args = parser.parse_args()
    adapt = load_compare_config(args.config)
    scifact = next(d for d in adapt.datasets if d.name == "scifact")
    train_data = Path(adapt.out) / "scifact" / "train.jsonl"
    if not train_data.exists():
        raise SystemExit(f"{train_data} not found: run `dreamir compare --config {args.config}` first (it builds it)")
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}  # earlier studies' rows are kept
    results: dict[str, dict] = previous.get("rows", {})
    variants = {**previous.get("variants", {}), **{v: VARIANTS[v] for v in args.variants}}
    for name in args.variants:
        build_changes = {
            k.removeprefix(BUILD_PREFIX): v for k, v in VARIANTS[name].items() if k.startswith(BUILD_PREFIX)
        }
        if build_changes:
            data = {"build": {**scifact.build.model_dump(), **build_changes}}
        elif VARIANTS[name].get(f"{CONTROL_PREFIX}shuffled_targets"):
            data = {"train_data": str(shuffled_targets_copy(train_data, Path(args.work) / name / "train.jsonl"))}
        else:
            data = {"train_data": str(train_data)}
        tree = yaml.safe_load(Path(args.config).read_text())
        tree.update(
            out=str(Path(args.work) / name),
            track=f"dev-{name}",
            datasets=[
                {
                    "name": "scifact-dev",
                    "beir": scifact.beir,
                    "split": "train",
                    **data,
                    "eval_docs": DEV_CORPUS_DOCS,
                }
            ],
            objectives=[args.objective],
            baselines=["untrained"] if name == args.variants[0] else [],
        )
        config_path = Path(args.work) / f"{name}.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(tree, sort_keys=False))
        overrides = {
            f"base.{key}": v for key, v in VARIANTS[name].items() if not key.startswith((BUILD_PREFIX, CONTROL_PREFIX))
        }
        overrides["base.device"] = args.device
        heads = Path(adapt.out) / "scifact" / "dream" / "heads.json"
        if heads.exists():  # the head ranking the comparison selected from these examples (same seed)
            overrides["base.heads.file"] = str(heads)
        rows = run_compare(load_compare_config(config_path, overrides))["scifact-dev"]
        for method, row in rows.items():
            results[f"{method} ({name})" if method != "untrained" else "untrained"] = row
        scope = next(iter(rows.values()))["scope_id"]  # rows measured on another dev sample are stale
        results = {method: row for method, row in results.items() if row.get("scope_id") == scope}
        # Written after every variant: a long study keeps what it finished.
        write_result(out, {"args": vars(args), "variants": variants, "rows": results})
    print(format_compare_table({"scifact-dev": results}))


if __name__ == "__main__":
    run_main(main)
