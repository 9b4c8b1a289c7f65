"""How far can the label-free check (`dreamir check`) be trusted? Its verdicts against real judgements.

    python bench/check_validity.py --dataset scifact --write-questions     # write the questions once (cached)
    python bench/check_validity.py [--ship]                                # evaluate every model, print, write JSON

On dev splits with real qrels (SciFact train, NFCorpus dev) a spread of retrievers was trained from the kept
judge signal (research/scripts/check_models.sh: static and all-MiniLM-L6-v2 starts; DREAM-distill, its
shuffled-target control, InfoNCE, a harmful learning rate; seeds). Each model and its start are scored two
ways: on the real queries (the compare run's per-query nDCG@10, already in its result.json) and on the check's
questions over the whole corpus. Per dataset and check variant this prints and records:
  - Kendall τ between the two nDCG@10 rankings of all models (starts included);
  - for every trained model vs its start: the real paired test and the check's; sign agreement on the pairs
    whose real difference is significant (p < 0.05); how often the check says "better" (p < 0.05) where the
    real difference is significantly worse (false_better);
  - the check's cost: seconds to evaluate each model (questions already written).
Variants share one set of written questions (filters differ), so comparing them costs no generation.
Writes bench/results/check_validity.json; --ship also writes the per-variant figures into the package
(src/dreamir/resources/check_validity.json), which `dreamir check` prints under its verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import read_result, run_main, write_result
from dreamir.data.beir import BeirData
from dreamir.evaluation.check import (
    ALPHA,
    CheckConfig,
    build_check_queries,
    load_check_corpus,
    training_documents,
    verdict,
)
from dreamir.evaluation.evaluate import evaluate_model
from dreamir.evaluation.significance import paired_test
from dreamir.files import atomic_write

ROOT = Path.cwd()  # the repository root, where it is run from (also from a snapshot of bench/ and src/)
SHARED = Path(os.environ.get("DREAMIR_SHARED_ASSETS", ROOT.parent / "shared" / "assets"))
DATA = {"scifact": SHARED / "beir/scifact", "nfcorpus": SHARED / "beir/nfcorpus"}
# compare output folders holding the spread (each: DATASET/untrained.json, DATASET/RUN/{result.json,retriever/})
GROUPS = ["runs/validity/static", "runs/validity/static-lr1e-2", "runs/validity/adapt",
          "runs/validity/adapt-distill-100", "runs/learn-adapt-3k-qwen1.5b"]  # fmt: skip
# retrievers that need no training, scored on the real dev queries here (same corpus scope as the compare runs)
EXTRA = ["bm25", "all-minilm-l6-v2", "rrf:bm25+all-minilm-l6-v2"]
DEV = {"scifact": ("train", 2000), "nfcorpus": ("dev", None)}  # split, corpus sample (as research/configs/learn-*)
VARIANTS = {  # name → CheckConfig overrides; the first is what `dreamir check` ships with
    "shipped": {},
    "no-copy-filter": {"max_copied_words": None},
    "copy-filter-5": {"max_copied_words": 5},
    "copy-filter-12": {"max_copied_words": 12},
}
SHIPPED = ROOT / "src/dreamir/resources/check_validity.json"


@dataclass
class Model:
    label: str
    spec: object  # a retriever folder, or a Retriever built in memory (a start)
    start: str | None  # the label of its start (None: it is a start)
    real: dict[str, float]  # per-query nDCG@10 on the real dev queries


def per_query(path: Path) -> dict[str, float]:
    return json.loads(path.read_text())["per_query_ndcg@10"]


def discover(dataset: str) -> list[Model]:
    """The starts and trained retrievers the spread left for `dataset` (finished runs only)."""
    import yaml

    from dreamir.config import RunConfig
    from dreamir.trainer import build_retriever

    models: dict[str, Model] = {}
    for group in GROUPS:
        folder = ROOT / group / dataset
        runs = sorted(p.parent for p in folder.glob("*/result.json") if (p.parent / "retriever").is_dir())
        if not runs or not (folder / "untrained.json").exists():
            continue
        # the start is the run's retriever section (a run written before a config key moved still names it)
        retriever = yaml.safe_load((runs[0] / "config.yaml").read_text())["retriever"]
        config = RunConfig.model_validate({"retriever": retriever})
        start = f"start:{config.retriever.architecture or 'transformer'}:{config.retriever.name}"
        if start not in models:
            retriever = build_retriever(config)
            retriever.eval()
            models[start] = Model(start, retriever, None, per_query(folder / "untrained.json"))
        for run in runs:
            label = f"{Path(group).name}/{run.name}"
            models[label] = Model(label, str(run / "retriever"), start, per_query(run / "result.json"))
    minilm_start = "start:transformer:all-minilm-l6-v2" in models
    for spec in EXTRA:
        if spec == "all-minilm-l6-v2" and minilm_start:
            continue
        models[spec] = Model(spec, spec, None, real_per_query(dataset, spec))
    return list(models.values())


def real_per_query(dataset: str, spec: str) -> dict[str, float]:
    """A model's per-query nDCG@10 on the real dev queries, over the corpus scope the compare runs used (kept)."""
    from dreamir.apps.compare.config import DatasetConfig

    path = ROOT / "runs/validity/real-eval" / dataset / (spec.replace("/", "__").replace(":", "_") + ".json")
    if path.exists():
        return json.loads(path.read_text())
    split, sample = DEV[dataset]
    data = DatasetConfig(name=dataset, beir=str(DATA[dataset]), split=split, eval_docs=sample).evaluation_data()
    scores = evaluate_model(spec, data, show_progress=False).per_query
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(scores))
    return scores


def check_data(dataset: str, sample: int) -> tuple[BeirData, dict[str, set[str]]]:
    """The union of every variant's questions (one retrieval per model) and each variant's question ids."""
    corpus = load_check_corpus(DATA[dataset])
    exclude = training_documents(ROOT / "runs/validity/static" / dataset / "train.jsonl", corpus)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    ids: dict[str, set[str]] = {}
    for name, overrides in VARIANTS.items():
        built = build_check_queries(corpus, CheckConfig(sample=sample, **overrides), exclude)
        print(f"[check_validity] {dataset} {name}: {len(built.queries)} questions ({built.stats.summary()})")
        queries.update(built.queries)
        qrels.update(built.qrels)
        ids[name] = set(built.queries)
    return BeirData(dataset, corpus, queries, qrels), ids


def scored(dataset: str, data: BeirData, models: list[Model]) -> dict[str, dict]:
    """Each model's per-question nDCG@10 and seconds, kept per model so a killed run resumes."""
    out: dict[str, dict] = {}
    keep = ROOT / "runs/validity/check-eval" / dataset
    keep.mkdir(parents=True, exist_ok=True)
    for model in models:
        path = keep / (model.label.replace("/", "__").replace(":", "_") + ".json")
        if path.exists() and set(json.loads(path.read_text())["per_query"]) == set(data.queries):
            out[model.label] = json.loads(path.read_text())
            continue
        result = evaluate_model(model.spec, data, name=model.label, show_progress=False)
        pq = result.per_query  # nDCG@10 per question, as evaluate_model computes it for the paired tests
        out[model.label] = {"per_query": pq, "seconds": result.seconds}
        atomic_write(path, json.dumps(out[model.label]))
        mean = 100 * sum(pq.values()) / len(pq)
        print(f"[check_validity] {dataset} {model.label}: {mean:.1f} ({result.seconds:.0f} s)")
    return out


def agreement(models: list[Model], check: dict[str, dict], ids: set[str], variant: str) -> dict:
    from scipy.stats import kendalltau

    def mean(values: dict[str, float]) -> float:
        return sum(values.values()) / len(values)

    subset = {m.label: {q: v for q, v in check[m.label]["per_query"].items() if q in ids} for m in models}
    real_means = [mean(m.real) for m in models]
    check_means = [mean(subset[m.label]) for m in models]
    tau = float(kendalltau(real_means, check_means).statistic)
    pairs = []
    for m in models:
        if m.start is None:
            continue
        start = next(s for s in models if s.label == m.start)
        real, said = paired_test(start.real, m.real), paired_test(subset[start.label], subset[m.label])
        pairs.append({
            "model": m.label, "start": m.start,
            "real": {**real.as_dict(), "verdict": verdict(real)},
            "check": {**said.as_dict(), "verdict": verdict(said)},
        })  # fmt: skip
    significant = [p for p in pairs if p["real"]["p_value"] < ALPHA]
    same_sign = [p for p in significant if (p["real"]["mean_difference"] > 0) == (p["check"]["mean_difference"] > 0)]
    return {
        "variant": variant,
        "kendall_tau": tau,
        "sign_agreement": len(same_sign) / len(significant) if significant else None,
        "significant_real": len(significant),
        "verdict_agreement": sum(p["real"]["verdict"] == p["check"]["verdict"] for p in pairs) / len(pairs),
        "false_better": sum(p["check"]["verdict"] == "better" and p["real"]["verdict"] == "worse" for p in pairs),
        "false_worse": sum(p["check"]["verdict"] == "worse" and p["real"]["verdict"] == "better" for p in pairs),
        "models": len(models),
        "pairs": len(pairs),
        "questions": len(ids),
        "ndcg@10": {m.label: {"real": r, "check": c} for m, r, c in zip(models, real_means, check_means, strict=True)},
        "pair_tests": pairs,
        "check_seconds_per_model": {m.label: check[m.label]["seconds"] for m in models},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=sorted(DATA), help="default: both")
    parser.add_argument("--sample", type=int, default=CheckConfig().sample, help="documents asked about")
    parser.add_argument("--write-questions", action="store_true", help="only write the questions (cached)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/check_validity.json"))
    parser.add_argument("--ship", action="store_true", help=f"also write the figures into {SHIPPED.relative_to(ROOT)}")
    args = parser.parse_args()
    result = read_result(args.out) or {}
    result.pop("machine", None)
    shipped_name = CheckConfig().variant()
    for dataset in args.dataset or sorted(DATA):
        data, ids = check_data(dataset, args.sample)
        if args.write_questions:
            continue
        models = discover(dataset)
        started = time.perf_counter()
        check = scored(dataset, data, models)
        print(f"\n**{dataset}**: {len(models)} models, check evaluated in {time.perf_counter() - started:.0f} s\n")
        print("| variant | questions | Kendall τ | sign agreement (significant real) | false better | verdicts agree |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, overrides in VARIANTS.items():
            variant = CheckConfig(**overrides).variant()
            entry = agreement(models, check, ids[name], variant)
            result.setdefault("variants", {}).setdefault(variant, {})[dataset] = entry
            if variant == shipped_name:
                result[dataset] = entry
            sign = "n/a" if entry["sign_agreement"] is None else f"{100 * entry['sign_agreement']:.0f}%"
            print(
                f"| {variant} | {entry['questions']} | {entry['kendall_tau']:.2f} | {sign} "
                f"({entry['significant_real']}) | {entry['false_better']} | {100 * entry['verdict_agreement']:.0f}% |"
            )
    if args.write_questions:
        return
    result["shipped_variant"] = shipped_name
    write_result(args.out, result)
    print(f"\nwrote {args.out}")
    if args.ship:
        keep = ("kendall_tau", "sign_agreement", "significant_real", "false_better", "false_worse", "models", "pairs",
                "questions", "verdict_agreement")  # fmt: skip
        figures = {v: {d: {k: e[k] for k in keep} for d, e in per.items()} for v, per in result["variants"].items()}
        atomic_write(SHIPPED, json.dumps({"source": "bench/check_validity.py", "variants": figures}, indent=1) + "\n")
        print(f"wrote {SHIPPED}")


if __name__ == "__main__":
    run_main(main)
