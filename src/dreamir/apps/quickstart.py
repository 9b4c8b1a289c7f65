"""`dreamir quickstart` (= `dreamir train` with no arguments): DREAM's signal training a retriever, in minutes.

The demonstration is chosen from measured results (docs/results.md): from a start that cannot retrieve — a bag of
all-MiniLM-L6-v2's token vectors — DREAM-distill's judge signal trains a retriever above its start and above its
shuffled-target control; on a supervised start it has not yet beaten the start. So the quickstart
1. builds 300 self-supervised `spans` examples from the SciFact sample's corpus text shipped in the package
   (no queries, no qrels: resources/README.md);
2. evaluates the untrained static start on the sample's 50 test queries;
3. selects 16 heads of the frozen judge (SmolLM2-135M-Instruct) label-free, by gradient;
4. trains DREAM-distill (the judge's signal is computed once per example in the first epoch, then reused),
   checkpointing (re-running the command resumes an interrupted run);
5. evaluates again beside two reference rows (all-MiniLM-L6-v2, BM25) and prints the paired test.
Sizes are chosen to finish in about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from dreamir.assets import ALIASES, alias_available, bundled_data
from dreamir.config import load_config
from dreamir.data.beir import load_beir, read_corpus
from dreamir.data.jsonl import write_jsonl_atomic
from dreamir.data.text import BuildConfig, build_self_supervised, examples_to_rows
from dreamir.data.training import load_examples
from dreamir.evaluation.evaluate import evaluate_model
from dreamir.evaluation.report import format_table, write_report
from dreamir.evaluation.significance import paired_test
from dreamir.files import atomic_write
from dreamir.models.frozen_lm import FrozenLM
from dreamir.trainer import Trainer, build_retriever

LLM, RETRIEVER = "smollm2-135m-instruct", "all-minilm-l6-v2"
DEFAULT_STEPS = 1200  # 32 epochs of the 300 examples: the judge runs in the first only
EXAMPLES = 300


def quickstart_overrides(run_dir: str, device: str, steps: int) -> dict:
    return {
        "run_dir": run_dir,
        "device": device,
        "llm.name": LLM,
        "retriever.name": RETRIEVER,
        "retriever.architecture": "static",
        "data.train": str(Path(run_dir) / "train.jsonl"),
        "data.limits": {"query": 48, "target": 48, "doc": 96},
        "heads.count": 16,
        "heads.detection_examples": 16,
        "train.objective": "dream_distill",
        "dream_distill.signal_cache_dir": str(Path(run_dir) / "judge-signal"),
        "train.batch_size": 8,
        "train.lr": 1e-3,  # the static model's rate (token vectors), chosen on SciFact dev (docs/results.md)
        "train.warmup_steps": 25,
        "train.max_steps": steps,
        "train.checkpoint_every": 100,
    }


WHAT_IT_SHOWS = (
    "[dreamir] quickstart: DREAM-distill trains a retriever from a start that cannot retrieve (a bag of "
    "all-MiniLM-L6-v2's token vectors), with a frozen 135M judge, on 300 self-supervised examples of unlabelled "
    "text — the setting where DREAM's signal is measured to help (docs/results.md). One seed on 50 queries: a "
    "demonstration, not a benchmark; the reference rows show where trained models and BM25 stand."
)


SETTINGS_FILE = "quickstart.json"


def claim_run_dir(run_dir: Path, settings: dict) -> None:
    """Resume only a quickstart of the same settings: a folder holding anything else — an earlier version's
    quickstart (other examples, another model), another command's run — is refused, never reused or overwritten."""
    marker = run_dir / SETTINGS_FILE
    if marker.is_file():
        saved = json.loads(marker.read_text())
        changed = sorted(k for k in saved.keys() | settings.keys() if saved.get(k) != settings.get(k))
        if not changed:
            return
        reason = f"a quickstart with other settings ({', '.join(changed)})"
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        reason = "files that this version's quickstart did not write (an earlier version's quickstart?)"
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, json.dumps(settings, indent=1))
        return
    raise ValueError(f"{run_dir} holds {reason}; remove that folder or pass --run-dir NEW_FOLDER")


def run_quickstart(run_dir: str = "runs/quickstart", device: str = "cpu", steps: int | None = None) -> dict:
    started = time.perf_counter()
    print(WHAT_IT_SHOWS)
    for alias in (LLM, RETRIEVER):
        if not alias_available(alias):
            print(
                f"[dreamir] note: '{alias}' is not installed locally ({ALIASES[alias].pip_hint}); "
                f"trying the hub name {ALIASES[alias].hub_name}"
            )
    overrides = quickstart_overrides(run_dir, device, steps or DEFAULT_STEPS)
    config = load_config(None, overrides)
    claim_run_dir(Path(run_dir), {k: v for k, v in overrides.items() if k != "device"} | {"examples": EXAMPLES})
    sample = bundled_data("scifact-sample")
    train_path = Path(config.data.train)
    if not train_path.exists():
        documents = read_corpus(sample / "corpus.jsonl")
        build = BuildConfig(recipe="spans", candidates=4, chunk_words=64, max_examples=EXAMPLES, seed=config.seed)
        examples = build_self_supervised(documents, build, show_progress=False)
        n = write_jsonl_atomic(train_path, examples_to_rows(examples))
        print(f"[dreamir] built {n} self-supervised examples from {len(documents)} unlabelled abstracts → {train_path}")
    examples = load_examples(train_path)

    eval_data = load_beir(sample, "test")
    print(f"[dreamir] loading the frozen judge '{LLM}' and the static start (token vectors of '{RETRIEVER}')")
    lm = FrozenLM.load(config.llm.name, device=config.device, dtype=config.dtype)
    retriever = build_retriever(config)
    before = evaluate_model(retriever, eval_data, name="static start (untrained)", show_progress=False)
    print(f"[dreamir] before training: nDCG@10 {100 * before.metrics['ndcg@10']:.1f}")

    trainer = Trainer(config, lm=lm, retriever=retriever, examples=examples)
    result = trainer.train(resume=trainer.latest_checkpoint() is not None)
    trainer.retriever.eval()
    with torch.inference_mode():
        after = evaluate_model(trainer.retriever, eval_data, name="DREAM-distill-trained", show_progress=False)
    # where both stand: the supervised model the token vectors come from, and lexical retrieval
    supervised = evaluate_model(RETRIEVER, eval_data, name=f"{RETRIEVER} (reference)", show_progress=False)
    reference = evaluate_model("bm25", eval_data, name="bm25 (reference)", show_progress=False)
    results = [before, after, supervised, reference]
    report = write_report(Path(run_dir) / "report", results, eval_data, "test")
    print()
    print(
        format_table(
            results,
            f"SciFact sample: {len(eval_data.queries)} test queries, {len(eval_data.corpus)} documents",
        )
    )
    print(
        f"\ntrained {result.steps} steps of {config.train.batch_size} "
        f"({result.steps * config.train.batch_size / len(examples):.0f} epochs of {len(examples)} examples), "
        f"mean batch loss {result.loss_start:.4f} (first quarter) → {result.loss_end:.4f} (last quarter); "
        f"total {time.perf_counter() - started:.0f} s"
    )
    test = paired_test(before.per_query, after.per_query)
    verdict = "significant" if test.p_value < 0.05 else "not significant"
    print(
        f"DREAM-distill vs its start, nDCG@10 ×100: {test.describe()} — {verdict} at p < 0.05 "
        "(paired randomization test over queries; one seed, a demonstration run; 3 seeds on full test sets: "
        "docs/results.md)"
    )
    print(f"exported model: {result.retriever_dir}  (load with SentenceTransformer('{result.retriever_dir}'))")
    print(f"report: {report / 'report.md'}")
    return {
        "before": before.metrics,
        "after": after.metrics,
        "supervised_reference": supervised.metrics,
        "bm25": reference.metrics,
        "paired_test": test.as_dict(),
        "retriever_dir": str(result.retriever_dir),
    }
