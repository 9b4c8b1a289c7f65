"""DREAM step speed: the full-graph reference step vs the document key/value reuse step, side by side.

    python bench/train_speed.py [--llm smollm2-135m-instruct] [--candidates 8] [--doc-tokens 128]
                                [--target-tokens 32] [--batch 2] [--steps 3]

Frozen LLM `--llm` (default SmolLM2-135M-Instruct), retriever all-MiniLM-L6-v2, 16 heads spread over
the layers. Each configuration runs `--steps` timed optimiser steps (after one warm-up step),
alternating, in one process. Rows: (a) the full-graph reference step, (b) the document key/value reuse
step, (c) the reuse step with a warm cross-epoch document cache (in memory), (d) a DREAM-distill step
whose judge signal is not stored yet (the first epoch: one judge forward+backward without a retriever
graph through it) and (e) one with it stored (every later epoch, seed or variant: the retriever only).
Prints examples/s, the FLOPs of each step (counted
by torch.utils.flop_counter, forward + backward) and of each part (retriever, document forward,
[q][y] segment), achieved GFLOP/s, and the fp32 matmul GFLOP/s of this machine measured in the same
run (the limit). Writes bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from _results import write_result
from dreamir.data.training import Example, tokenize_examples
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.lm_passes import document_cache
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import candidate_scores
from dreamir.objectives.dream import DreamConfig, DreamObjective
from dreamir.objectives.dream_distill import DreamDistillConfig, DreamDistillObjective
from dreamir.settings import TokenLimits
from dreamir.testing import WORDS

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def synthetic_examples(lm: FrozenLM, batch: int, candidates: int, doc_tokens: int, target_tokens: int):
    words = WORDS[45:]  # content words of the test vocabulary

    def text(n, seed):
        return " ".join(words[(seed * 7 + i * 3) % len(words)] for i in range(n))

    return [
        Example(
            text(target_tokens, b),
            text(target_tokens, b + 1),
            [text(doc_tokens, b * 31 + i) for i in range(candidates)],
        )
        for b in range(batch)
    ]


def flop_breakdown(lm, retriever, examples, tokenized, step_flops: dict[str, int]) -> dict[str, tuple[int, str]]:
    """FLOPs of each part of a step: measured for the retriever and the document forward, the rest
    (the LLM's [q][y] segment with its backward, or the full graph) by difference."""
    with FlopCounterMode(display=False) as counter:
        scores, _ = candidate_scores(retriever, examples)
        scores.sum().backward()
    retriever_flops = counter.get_total_flops()
    retriever.zero_grad(set_to_none=True)
    packed = lm.pack(tokenized)
    with FlopCounterMode(display=False) as counter:
        document_cache(lm, packed)
    doc_flops = counter.get_total_flops()
    return {
        "retriever forward+backward": (retriever_flops, "a, b, c"),
        "LLM document forward (no graph)": (doc_flops, "b (c: from the cache)"),
        "LLM [q][y] forward+backward": (step_flops["cached"] - retriever_flops, "b, c"),
        "LLM full layout forward+backward": (step_flops["reference"] - retriever_flops, "a"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--doc-tokens", type=int, default=128)
    parser.add_argument("--target-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=None, help="default bench/results/train_speed[-LLM].json")
    args = parser.parse_args()
    default = args.llm == "smollm2-135m-instruct"
    name = "train_speed.json" if default else f"train_speed-{args.llm}.json"
    args.out = args.out or str(ROOT / "bench/results" / name)

    lm = FrozenLM.load(args.llm)
    retriever = Retriever.load("all-minilm-l6-v2")
    retriever.train()
    stride = max(1, (lm.num_layers - 2) // 8)
    heads = [(layer, head) for layer in range(2, lm.num_layers, stride)[:8] for head in (1, 5)]  # 16 heads
    examples = synthetic_examples(lm, args.batch, args.candidates, args.doc_tokens, args.target_tokens)
    limits = TokenLimits(query=args.target_tokens, target=args.target_tokens, doc=args.doc_tokens)
    tokenized = tokenize_examples(examples, lm.tokenize, limits)
    store = DocumentKVStore(64 * 2**30)
    objectives = {
        "reference": DreamObjective(lm, retriever, DreamConfig(reference_step=True), heads),
        "reuse": DreamObjective(lm, retriever, DreamConfig(), heads),
        "cached": DreamObjective(lm, retriever, DreamConfig(), heads, document_store=store),
        "distill-cold": None,  # built fresh for every step: nothing stored
        "distill-warm": DreamDistillObjective(lm, retriever, DreamDistillConfig(), heads),
    }
    configs = list(objectives)
    optimizer = torch.optim.AdamW(retriever.parameters(), lr=1e-6)

    def step(name: str) -> float:
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        objective = objectives[name] or DreamDistillObjective(lm, retriever, DreamDistillConfig(), heads)
        objective(examples, tokenized).loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    flops = {}
    for name in configs:
        step(name)  # warm-up (and, for "cached", the step that fills the document cache)
        with FlopCounterMode(display=False) as counter:
            step(name)
        flops[name] = counter.get_total_flops()
    parts = flop_breakdown(lm, retriever, examples, tokenized, flops)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.steps):
        for name in configs:
            times[name].append(step(name))
    limit = matmul_gflops()
    rows = {}
    for name in configs:
        seconds = statistics.median(times[name])
        rows[name] = {
            "seconds_per_step": seconds,
            "examples_per_s": args.batch / seconds,
            "gflop_per_step": flops[name] / 1e9,
            "achieved_gflops": flops[name] / seconds / 1e9,
        }
    print("FLOPs per step by part (GFLOP):")
    print("| part | GFLOP | in steps |")
    print("|---|---:|---|")
    for part, (value, used_by) in parts.items():
        print(f"| {part} | {value / 1e9:.0f} | {used_by} |")
    by_count = {name: flops["reference"] / flops[name] for name in ("reuse", "cached")}
    print(
        f"ratio by FLOP count alone: reuse/reference {by_count['reuse']:.2f}, cached/reference {by_count['cached']:.2f}"
    )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"batch {args.batch}, {args.candidates} candidates × {args.doc_tokens} tokens, target {args.target_tokens} "
        f"tokens, query {args.target_tokens} tokens, 16 heads; torch threads {torch.get_num_threads()}"
    )
    print("| step | s/step | examples/s | GFLOP/step | achieved GFLOP/s | achieved/limit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds_per_step']:.2f} | {row['examples_per_s']:.3f} | {row['gflop_per_step']:.0f} "
            f"| {row['achieved_gflops']:.1f} | {row['achieved_gflops'] / limit:.2f} |"
        )
    ratio = rows["reuse"]["examples_per_s"] / rows["reference"]["examples_per_s"]
    ratio_cached = rows["cached"]["examples_per_s"] / rows["reference"]["examples_per_s"]
    seconds = {name: row["seconds_per_step"] for name, row in rows.items()}
    # DREAM-distill's cost per epoch over E epochs, relative to online DREAM (reuse step) over the same E:
    # one cold epoch, then warm ones.
    distill_epoch_ratio = {
        str(epochs): (seconds["distill-cold"] + (epochs - 1) * seconds["distill-warm"]) / (epochs * seconds["reuse"])
        for epochs in (1, 3, 10)
    }
    print(
        f"fp32 matmul limit: {limit:.1f} GFLOP/s; ratio b/a reuse/reference (examples/s): {ratio:.2f}; "
        f"c/a cached/reference: {ratio_cached:.2f}; peak RSS {peak_rss_mb:.0f} MB "
        f"(document cache holds {store.bytes_used / 2**20:.0f} MB for {args.batch} examples)"
    )
    print(
        "DREAM-distill time per step / online DREAM (reuse step): cold "
        f"{seconds['distill-cold'] / seconds['reuse']:.2f}, warm {seconds['distill-warm'] / seconds['reuse']:.3f}; "
        "whole training over E epochs: " + ", ".join(f"E={e}: {r:.2f}" for e, r in distill_epoch_ratio.items())
    )
    result = {
        "llm": args.llm,
        "distill_step_ratio_vs_online": {
            "cold": seconds["distill-cold"] / seconds["reuse"],
            "warm": seconds["distill-warm"] / seconds["reuse"],
        },
        "distill_training_ratio_vs_online_by_epochs": distill_epoch_ratio,
        "args": vars(args),
        "rows": rows,
        "ratio_reuse_vs_reference": ratio,
        "gflops_reuse": rows["reuse"]["achieved_gflops"],
        "gflops_matmul_limit": limit,
        "peak_rss_mb": peak_rss_mb,
        "ratio_cached_vs_reference": ratio_cached,
        "gflops_cached": rows["cached"]["achieved_gflops"],
        "flop_breakdown_gflop": {part: value / 1e9 for part, (value, _) in parts.items()},
        "ratio_by_flop_count": by_count,
        "document_cache_mb": store.bytes_used / 2**20,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
