"""How much can DREAM's signal tell a query's candidates apart? A forward-only study on training data.

    python bench/dream_signal.py [--dataset scifact] [--examples 48]

For examples of the comparison's own training data (built from the corpus; no queries or qrels are
read), the frozen LLM's target NLL (nats per target token) is measured with the injected head set
putting (almost) all weight on one candidate at a time, next to uniform weights, for head sets of
8 / 16 / 32 / all heads of the comparison's label-free ranking and both injection modes. REPLUG's
signal (ℓ_i: the target NLL with candidate i alone in a plain causal context) is measured on the
same examples for reference. Per setting it reports
- spread: mean over examples of max_i − min_i NLL (how much the choice of candidate matters),
- gain: mean of NLL(uniform) − min_i NLL (how much the best single candidate beats uniform weights),
- own-doc: how often the LLM's preferred candidate is a chunk of the query's own document, among
  examples that have one (with the rate of picking one at random),
- retriever: how often it is the untrained retriever's top candidate (random: 1/N).
If the spread is small next to the per-batch noise of the loss, the retriever's gradient is mostly
noise at this model scale, whatever the temperature or learning rate. Writes
bench/results/dream_signal.json.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import torch

from _results import write_result
from dreamir.compare import load_compare_config, run_config
from dreamir.data.training import load_examples, tokenize_examples
from dreamir.heads import load_heads
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.lm_passes import target_nll
from dreamir.objectives.base import candidate_scores
from dreamir.objectives.replug import ReplugObjective
from dreamir.trainer import build_retriever

ROOT = Path(__file__).resolve().parents[1]
FOCUS = 0.999  # weight on the chosen candidate; the rest share 0.001 (a true one-hot is log 0 = −inf)


def focused_log_weights(num_docs: torch.Tensor, n_max: int, choice: int | None) -> torch.Tensor:
    """(B, n_max) log w: uniform over each example's real candidates (choice None) or focused on one."""
    log_w = torch.full((len(num_docs), n_max), float("-inf"))
    for b, n in enumerate(num_docs.tolist()):
        if choice is None or n == 1:
            log_w[b, :n] = -math.log(n)
        elif choice < n:
            log_w[b, :n] = math.log((1 - FOCUS) / (n - 1))
            log_w[b, choice] = math.log(FOCUS)
        else:  # this example has fewer candidates: keep it uniform (ignored below)
            log_w[b, :n] = -math.log(n)
    return log_w


def summarise(uniform: torch.Tensor, per_doc: torch.Tensor, examples, retriever_top: torch.Tensor) -> dict:
    """uniform (E,), per_doc (E, N) with +inf for missing candidates."""
    valid = torch.isfinite(per_doc)
    best = per_doc.argmin(-1)
    spread = (per_doc.masked_fill(~valid, float("-inf")).max(-1).values - per_doc.min(-1).values).mean()
    own, own_random = [], []
    for e, ex in enumerate(examples):
        same = [ex.same_document(j) for j in range(len(ex.candidates))]
        if any(same):
            own.append(same[int(best[e])])
            own_random.append(sum(same) / len(same))
    return {
        "nll_uniform": float(uniform.mean()),
        "spread": float(spread),
        "gain": float((uniform - per_doc.min(-1).values).mean()),
        "own_doc": sum(own) / max(1, len(own)),
        "own_doc_random": sum(own_random) / max(1, len(own_random)),
        "retriever_top": float((best == retriever_top).float().mean()),
        "retriever_top_random": float(valid.sum(-1).reciprocal().mean()),
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/compare-adapt.yaml"))
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--head-counts", nargs="+", default=["8", "16", "32", "all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench/results/dream_signal.json"))
    args = parser.parse_args()

    compare = load_compare_config(args.config)
    dataset = next(d for d in compare.datasets if d.name == args.dataset)
    folder = Path(compare.out) / dataset.name
    train_path, heads_path = folder / "train.jsonl", folder / "dream" / "heads.json"
    for needed in (train_path, heads_path):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: run `dreamir compare --config {args.config}` first")
    config = run_config(compare, dataset, "dream", train_path)
    examples = load_examples(train_path)
    examples = random.Random(args.seed).sample(examples, min(args.examples, len(examples)))
    lm = FrozenLM.load(config.llm.name, config.device, config.dtype)
    retriever = build_retriever(config)
    retriever.eval()
    tokenized = tokenize_examples(examples, lm.tokenize, config.data.limits)
    ranking_size = lm.num_layers * lm.num_heads
    head_sets = {c: load_heads(heads_path, ranking_size if c == "all" else int(c)) for c in args.head_counts}
    n_max = max(len(ex.candidates) for ex in examples)
    store = DocumentKVStore(8 << 30)  # document keys/values once per example, shared by every setting

    nll: dict[str, list[torch.Tensor]] = {}  # setting → per batch (B, 1 + n_max): uniform, then each candidate
    retriever_top, replug = [], []
    for start in range(0, len(examples), args.batch):
        batch, tok = examples[start : start + args.batch], tokenized[start : start + args.batch]
        scores, mask = candidate_scores(retriever, batch)
        retriever_top.append(scores.masked_fill(~mask, float("-inf")).argmax(-1))
        packed = lm.pack(tok, config.dream.layout)
        keys = [DocumentKVStore.key(t.docs, "signal") for t in tok]
        for mode in ("bias", "reweight"):
            for count, heads in head_sets.items():
                columns = []
                for choice in [None, *range(n_max)]:
                    injection = HeadInjection(
                        heads=heads,
                        log_weights=focused_log_weights(packed.num_docs, n_max, choice).to(lm.dtype),
                        doc_index=packed.doc_index,
                        inject_rows=packed.inject_rows,
                        num_docs=packed.num_docs,
                        mode=mode,
                    )
                    columns.append(target_nll(lm, packed, injection, True, keys, store).float())
                table = torch.stack(columns, 1)
                table[:, 1:] = table[:, 1:].masked_fill(~mask, float("inf"))
                nll.setdefault(f"{mode}, {count} heads", []).append(table)
        lm_scores = ReplugObjective(lm, retriever).candidate_nll(tok)
        replug.append(
            torch.stack([torch.nn.functional.pad(v, (0, n_max - len(v)), value=float("inf")) for v in lm_scores])
        )
        print(f"{start + len(batch)}/{len(examples)} examples", flush=True)

    top = torch.cat(retriever_top)
    rows = {}
    for setting, tables in nll.items():
        table = torch.cat(tables)
        rows[setting] = summarise(table[:, 0], table[:, 1:], examples, top)
    plain = torch.cat(replug)
    rows["REPLUG ℓ (candidate alone in context)"] = summarise(
        plain.masked_fill(~torch.isfinite(plain), float("nan")).nanmean(-1), plain, examples, top
    )
    print(f"\n{len(examples)} examples of {train_path}; NLL in nats per target token")
    print("| setting | NLL uniform | spread | gain | own-doc pick (random) | retriever-top pick (random) |")
    print("|---|---:|---:|---:|---:|---:|")
    for setting, r in rows.items():
        print(
            f"| {setting} | {r['nll_uniform']:.3f} | {r['spread']:.4f} | {r['gain']:.4f} | "
            f"{r['own_doc']:.2f} ({r['own_doc_random']:.2f}) | "
            f"{r['retriever_top']:.2f} ({r['retriever_top_random']:.2f}) |"
        )
    write_result(args.out, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
