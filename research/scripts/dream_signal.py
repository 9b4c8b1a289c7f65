"""Can a frozen judge's signal train a retriever? A forward/backward study on training data, per judge and recipe.

    python research/scripts/dream_signal.py --llm qwen2.5-coder-1.5b-instruct --data runs/signal/scifact-title.jsonl \
        --heads runs/signal/heads-qwen2.5-coder-1.5b-instruct.json [--examples 96] [--recipe title]

For a seeded sample of training examples (label-free: built from a corpus, no queries or qrels read),
with the head set H injected in "bias" mode (the heads file, or selected label-free from the data's
own text and written there first), it measures per example:
- the target NLL (nats per token) at uniform weights, and with the weights focused on each candidate
  in turn: which candidate the judge prefers (`own-doc pick`: how often it is a chunk of the query's
  own document, among examples with one such and one other candidate) and the NLL `gain` of the best;
- the gradient g = ∂L/∂log w at uniform w, the signal online DREAM follows (the retriever's step
  pushes up the candidates with the lowest g): how often its favourite is an own-document chunk
  (`grad own-doc`) and the mean margin mean(g_other) − mean(g_own) (> 0: it favours the own document);
- the same gradient with another example's target (same query and candidates; a seeded derangement):
  the correlation of g_real and g_shuffled across each example's candidates (mean, median), the share
  of g_real's variance g_shuffled explains (chance: 1/(N−1) for N candidates), and g_shuffled's
  own-document preference — a target-independent preference would show up as a high correlation;
- how often the judge's favourite (by g) is the starting retriever's top candidate, and how often the
  starting retriever's own top candidate is an own-document chunk (`start own-doc`: the judge is a
  better teacher than the start on this label-free task only where its `grad own-doc` is higher).
`--start-only` measures that last figure alone (no judge), for rows measured before it existed.
Results merge into --out (default runs/research/dream_signal.json; the kept study is
bench/results/dream_signal.json) under "rows" keyed "JUDGE | RECIPE".
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches' result helpers
from _results import read_result, write_result
from dreamir.data.training import load_examples, tokenize_examples
from dreamir.heads import load_heads, select_heads_label_free
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.lm_passes import target_nll, weight_gradient
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import candidate_scores
from dreamir.settings import TokenLimits

ROOT = Path(__file__).resolve().parents[2]
FOCUS = 0.999  # weight on the chosen candidate; the rest share 0.001 (a true one-hot is log 0 = −inf)


def focused_log_weights(num_docs: torch.Tensor, n_max: int, choice: int | None) -> torch.Tensor:
    """(B, n_max) log w: uniform over each example's real candidates (choice None) or focused on one."""
    log_w = torch.full((len(num_docs), n_max), float("-inf"))
    for b, n in enumerate(num_docs.tolist()):
        if choice is None or n == 1 or choice >= n:
            log_w[b, :n] = -math.log(n)
        else:
            log_w[b, :n] = math.log((1 - FOCUS) / (n - 1))
            log_w[b, choice] = math.log(FOCUS)
    return log_w


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: example i gets example perm[i]'s target."""
    order = list(range(n))
    rng = random.Random(seed)
    while True:
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def summarise(examples, uniform, focused, grad, grad_shuffled, retriever_top) -> dict:
    """Per-example tensors → the table's figures (see the module docstring)."""
    picks, grad_picks, shuffled_picks, margins, random_rate = [], [], [], [], []
    for e, ex in enumerate(examples):
        split = ex.own_document_split()
        if split is None:
            continue
        own, _ = split
        n = len(ex.candidates)
        random_rate.append(len(own) / n)
        picks.append(int(focused[e, :n].argmin()) in own)
        g, gs = grad[e, :n], grad_shuffled[e, :n]
        grad_picks.append(int(g.argmin()) in own)
        shuffled_picks.append(int(gs.argmin()) in own)
        is_own = torch.zeros(n, dtype=torch.bool)
        is_own[own] = True
        margins.append(float(g[~is_own].mean() - g[is_own].mean()))
    correlations, explained = [], []
    for e, ex in enumerate(examples):
        n = len(ex.candidates)
        g, gs = grad[e, :n].double(), grad_shuffled[e, :n].double()
        g, gs = g - g.mean(), gs - gs.mean()
        denominator = float(g.norm() * gs.norm())
        if n > 2 and denominator > 0:
            r = float(g @ gs) / denominator
            correlations.append(r)
            explained.append(r * r)
    sizes = [len(ex.candidates) for ex in examples]
    best = torch.tensor([int(grad[e, :n].argmin()) for e, n in enumerate(sizes)])
    rate = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "examples": len(examples),
        "examples_with_own_doc": len(picks),
        "nll_uniform": float(uniform.mean()),
        "gain": float((uniform - torch.stack([focused[e, :n].min() for e, n in enumerate(sizes)])).mean()),
        "own_doc_pick": rate(picks),
        "own_doc_random": rate(random_rate),
        "grad_own_doc": rate(grad_picks),
        "grad_margin": rate(margins),
        "grad_margin_sem": statistics.stdev(margins) / math.sqrt(len(margins)) if len(margins) > 1 else float("nan"),
        "shuffled_grad_own_doc": rate(shuffled_picks),
        "corr_real_shuffled_mean": rate(correlations),
        "corr_real_shuffled_median": statistics.median(correlations) if correlations else float("nan"),
        "variance_explained_by_shuffled": rate(explained),
        "variance_explained_chance": rate([1 / (n - 1) for n in sizes if n > 2]),
        "retriever_top_agreement": float((best == retriever_top).float().mean()),
        "retriever_top_random": rate([1 / n for n in sizes]),
        "start_own_doc": start_own_doc(examples, retriever_top)["start_own_doc"],
    }


def start_retriever_tops(retriever, examples, batch: int) -> torch.Tensor:
    """The starting retriever's top candidate per example."""
    tops = []
    for start in range(0, len(examples), batch):
        with torch.no_grad():
            scores, mask = candidate_scores(retriever, examples[start : start + batch])
        tops.append(scores.masked_fill(~mask, float("-inf")).argmax(-1).cpu())
    return torch.cat(tops)


def start_own_doc(examples, tops: torch.Tensor) -> dict:
    """How often the start's top candidate is an own-document chunk (examples with one such and one other)."""
    splits = [(e, ex.own_document_split()) for e, ex in enumerate(examples)]
    picks = [int(tops[e]) in split[0] for e, split in splits if split is not None]
    return {"start_own_doc": sum(picks) / len(picks), "examples_with_own_doc": len(picks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--data", required=True, help="training JSONL (dreamir build-data; with sources)")
    parser.add_argument("--recipe", default=None, help="label for the table (default: the data file's stem)")
    parser.add_argument("--heads", required=True, help="heads JSON; selected label-free into it when absent")
    parser.add_argument("--head-count", type=int, default=16)
    parser.add_argument("--detection-examples", type=int, default=32)
    parser.add_argument("--retriever", default="all-minilm-l6-v2")
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--limits", type=int, nargs=3, default=[48, 48, 96], metavar=("QUERY", "TARGET", "DOC"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--out", default="runs/research/dream_signal.json", help="result JSON (default under runs/)")
    parser.add_argument(
        "--start-only", action="store_true", help="only the start retriever's own-doc rate (no judge), into every row"
    )
    args = parser.parse_args()
    recipe = args.recipe or Path(args.data).stem
    limits = TokenLimits(query=args.limits[0], target=args.limits[1], doc=args.limits[2])

    all_examples = load_examples(args.data)
    examples = random.Random(args.seed).sample(all_examples, min(args.examples, len(all_examples)))
    if args.start_only:
        retriever = Retriever.load(args.retriever, device=args.device)
        retriever.eval()
        measured = start_own_doc(examples, start_retriever_tops(retriever, examples, args.batch))
        result = read_result(args.out) or {}
        rows = result.get("rows", {})
        for row in rows.values():  # the same sampled examples in every row of this data file
            if row["data"] == args.data and row["examples"] == len(examples):
                row["start_own_doc"] = measured["start_own_doc"]
        print(f"{args.retriever} on {args.data}: {measured}")
        write_result(args.out, {"rows": rows})
        print_table(rows)
        return
    started = time.perf_counter()
    lm = FrozenLM.load(args.llm, args.device, args.dtype)
    heads_path = Path(args.heads)
    if not heads_path.exists():
        print(f"selecting heads label-free on {args.detection_examples} examples → {heads_path}", flush=True)
        ranking = select_heads_label_free(lm, all_examples, args.detection_examples, limits=limits, seed=args.seed)
        heads_path.parent.mkdir(parents=True, exist_ok=True)
        ranking.save(heads_path, args.head_count)
    heads = load_heads(heads_path, args.head_count)
    heads_seconds = time.perf_counter() - started
    retriever = Retriever.load(args.retriever, device=args.device)
    retriever.eval()
    donors = derangement(len(examples), args.seed)
    shuffled = [replace(ex, target=examples[j].target) for ex, j in zip(examples, donors)]
    tokenized = tokenize_examples(examples, lm.tokenize, limits)
    tokenized_shuffled = tokenize_examples(shuffled, lm.tokenize, limits)
    store = DocumentKVStore(16 << 30)  # document keys/values once per example, shared by every pass
    tag = f"{lm.source}|signal"

    retriever_top = start_retriever_tops(retriever, examples, args.batch)
    uniform, focused, grad, grad_shuffled = [], [], [], []
    n_max = max(len(ex.candidates) for ex in examples)
    signal_started = time.perf_counter()
    for start in range(0, len(examples), args.batch):
        batch = examples[start : start + args.batch]
        tok, tok_shuffled = tokenized[start : start + args.batch], tokenized_shuffled[start : start + args.batch]
        keys = [DocumentKVStore.key(t.docs, tag) for t in tok]
        packed = lm.pack(tok, "separate")
        g, nll = weight_gradient(lm, packed, heads, "bias", keys, store)
        g_shuffled, _ = weight_gradient(lm, lm.pack(tok_shuffled, "separate"), heads, "bias", keys, store)
        columns = []
        with torch.no_grad():
            for choice in range(n_max):
                log_w = focused_log_weights(packed.num_docs.cpu(), packed.num_docs.max().item(), choice)
                injection = HeadInjection(
                    heads, log_w.to(lm.dtype).to(lm.device), packed.doc_index, packed.inject_rows, packed.num_docs
                )
                columns.append(target_nll(lm, packed, injection, True, keys, store).float().cpu())
        width = int(packed.num_docs.max())
        pad = (0, n_max - width)
        focused.append(torch.nn.functional.pad(torch.stack(columns[:width], 1), pad, value=float("inf")))
        grad.append(torch.nn.functional.pad(g.cpu(), pad))
        grad_shuffled.append(torch.nn.functional.pad(g_shuffled.cpu(), pad))
        uniform.append(nll.cpu())
        done = start + len(batch)
        rate = (time.perf_counter() - signal_started) / done
        print(f"{done}/{len(examples)} examples ({rate:.1f} s/example)", flush=True)

    row = summarise(
        examples,
        torch.cat(uniform),
        torch.cat(focused),
        torch.cat(grad),
        torch.cat(grad_shuffled),
        retriever_top,
    )
    row.update(
        judge=args.llm,
        recipe=recipe,
        heads=str(heads_path),
        head_count=args.head_count,
        data=args.data,
        seconds_per_example=(time.perf_counter() - signal_started) / len(examples),
        head_selection_seconds=heads_seconds,
    )
    result = read_result(args.out) or {}
    rows = result.get("rows", {}) if "rows" in result and "args" not in result else {}
    rows[f"{args.llm} | {recipe}"] = row
    write_result(args.out, {"rows": rows})
    print_table(rows)


def print_table(rows: dict) -> None:
    print(
        "\n| judge | recipe | n (own) | NLL unif | gain | own-doc pick (rand) | grad own-doc | grad margin ± sem "
        "| shuffled own-doc | corr real/shuf mean, median | var expl. (chance) | MiniLM-top agree (rand) "
        "| start own-doc |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows.values():
        print(
            f"| {r['judge']} | {r['recipe']} | {r['examples']} ({r['examples_with_own_doc']}) | {r['nll_uniform']:.3f} "
            f"| {r['gain']:.4f} | {r['own_doc_pick']:.2f} ({r['own_doc_random']:.2f}) | {r['grad_own_doc']:.2f} "
            f"| {r['grad_margin']:.5f} ± {r['grad_margin_sem']:.5f} | {r['shuffled_grad_own_doc']:.2f} "
            f"| {r['corr_real_shuffled_mean']:.2f}, {r['corr_real_shuffled_median']:.2f} "
            f"| {r['variance_explained_by_shuffled']:.2f} ({r['variance_explained_chance']:.2f}) "
            f"| {r['retriever_top_agreement']:.2f} ({r['retriever_top_random']:.2f}) "
            f"| {r.get('start_own_doc', float('nan')):.2f} |"
        )


if __name__ == "__main__":
    main()
