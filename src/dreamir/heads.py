"""Head selection (docs/method.md): rank the frozen LLM's heads by how much they carry retrieval signal.

Detection examples are (q, y, D, g) with g the index of the document known to help:
- label-free (default): from unlabelled documents, q and y are consecutive spans of a document
  and g a later, non-overlapping passage of the same document, among N−1 passages of others;
- labelled: from BEIR qrels, q the query, g the relevant document (its opening words are the
  target y and are removed from the text the LLM sees, so y cannot be copied).

Scores:
- "gradient" (default): each head gets its own zero bias per document in "bias" mode; one
  backward pass gives score_h = mean_{i≠g} ∂L/∂b_{h,i} − ∂L/∂b_{h,g} (how much boosting g in h
  alone lowers the loss). One forward+backward per batch scores every head.
- "attention" (QRHead-style): share of the query tokens' document attention that lands on g.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamir.data.jsonl import DataError
from dreamir.data.text import split_words
from dreamir.data.training import Example, tokenize_examples
from dreamir.distributed import ProcessGroup
from dreamir.files import atomic_write
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import AttentionRecorder, HeadInjection
from dreamir.models.layout import Layout
from dreamir.models.lm_passes import target_nll
from dreamir.settings import HeadsConfig, RunSettings, TokenLimits

HeadScoring = Literal["gradient", "attention"]


@dataclass
class HeadRanking:
    scores: np.ndarray  # (layers, heads)
    method: HeadScoring
    num_examples: int
    llm: str

    def top(self, k: int) -> list[tuple[int, int]]:
        flat = np.argsort(-self.scores, axis=None, kind="stable")[:k]
        heads = self.scores.shape[1]
        return [(int(i // heads), int(i % heads)) for i in flat]

    def to_json(self, k: int) -> dict:
        ranked = self.top(self.scores.size)
        return {
            "llm": self.llm,
            "method": self.method,
            "num_examples": self.num_examples,
            "num_layers": int(self.scores.shape[0]),
            "num_heads": int(self.scores.shape[1]),
            "k": k,
            "selected": [list(h) for h in ranked[:k]],
            "ranking": [{"layer": lay, "head": h, "score": float(self.scores[lay, h])} for lay, h in ranked],
        }

    def save(self, path: str | os.PathLike, k: int) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(self.to_json(k), indent=1))
        self.plot(path.with_suffix(".png"), k)
        return path

    def plot(self, path: str | os.PathLike, k: int) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        layers, heads = self.scores.shape
        fig, ax = plt.subplots(figsize=(max(4, heads * 0.45 + 2), max(3, layers * 0.22 + 1.5)))
        im = ax.imshow(self.scores, aspect="auto", cmap="viridis", origin="lower")
        for layer, head in self.top(k):
            ax.scatter(head, layer, marker="s", facecolors="none", edgecolors="red", s=60, linewidths=1.2)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"head scores ({self.method}, {self.num_examples} examples); red = top {k}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)


def read_heads_json(path: str | os.PathLike):
    """A heads file's JSON, or a DataError naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, None, "heads file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, None, f"not a heads JSON ({err})") from None


def load_heads(path: str | os.PathLike, k: int | None = None, data=None) -> list[tuple[int, int]]:
    """Read H from a `dreamir heads` JSON (the top k of its ranking if k is given); `data`: the file already read."""
    data = read_heads_json(path) if data is None else data
    field = "selected" if k is None else "ranking"
    entries = data.get(field) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DataError(path, None, "missing or not a list (write the file with `dreamir heads`)", field)
    try:
        heads = (
            [(int(h[0]), int(h[1])) for h in entries]
            if k is None
            else [(int(r["layer"]), int(r["head"])) for r in entries]
        )
    except (TypeError, KeyError, IndexError, ValueError):
        raise DataError(path, None, "entries must be [layer, head] pairs / {layer, head} objects", field) from None
    if k is not None and k > len(heads):
        raise ValueError(f"{path}: asked for {k} heads but the ranking has {len(heads)}")
    return heads if k is None else heads[:k]


def detection_examples_from_texts(
    texts: list[str],
    num_examples: int,
    num_candidates: int = 8,
    query_words: int = 32,
    target_words: int = 32,
    passage_words: int = 64,
    seed: int = 0,
) -> list[Example]:
    """Label-free detection set: q, y consecutive spans; g a later passage of the same document."""
    rng = random.Random(seed)
    split = [split_words(t) for t in texts]
    need = query_words + target_words + passage_words // 2
    usable = [i for i, w in enumerate(split) if len(w) >= need]
    others = [i for i, w in enumerate(split) if len(w) >= passage_words // 2]
    if not usable or len(others) < num_candidates:
        raise ValueError(
            f"too little text for head detection: need documents of ≥{need} words "
            f"(found {len(usable)}) and ≥{num_candidates} documents in all (found {len(others)})"
        )
    rng.shuffle(usable)
    examples = []
    for doc in usable[:num_examples]:
        words = split[doc]
        q = words[:query_words]
        y = words[query_words : query_words + target_words]
        g = words[query_words + target_words :][:passage_words]
        candidates = []
        for other in rng.sample([o for o in others if o != doc], num_candidates - 1):
            ow = split[other]
            start = rng.randrange(0, max(1, len(ow) - passage_words))
            candidates.append(" ".join(ow[start : start + passage_words]))
        pos = rng.randrange(num_candidates)
        candidates.insert(pos, " ".join(g))
        examples.append(Example(" ".join(q), " ".join(y), candidates, positive=pos))
    return examples


def examples_from_qrels(
    folder: str | os.PathLike,
    split: str,
    num_examples: int,
    num_candidates: int = 8,
    seed: int = 0,
    target_words: int = 32,
    passage_words: int = 96,
) -> list[Example]:
    """Labelled detection set from BEIR qrels: q = query, g = a relevant document.

    The target y is g's opening words and the LLM sees only the rest of g, so y cannot be copied.
    """
    from dreamir.data.beir import load_beir

    data = load_beir(folder, split)
    rng = random.Random(seed)
    doc_ids = data.doc_ids
    query_ids = list(data.queries)
    rng.shuffle(query_ids)
    examples = []
    for qid in query_ids:
        relevant = [d for d, s in data.qrels[qid].items() if s > 0]
        if not relevant:
            continue
        words = split_words(data.corpus[relevant[0]])
        if len(words) < target_words + 16:
            continue
        candidates = []
        for other in rng.sample(doc_ids, num_candidates + len(relevant)):
            if other not in data.qrels[qid] and len(candidates) < num_candidates - 1:
                candidates.append(" ".join(split_words(data.corpus[other])[:passage_words]))
        pos = rng.randrange(len(candidates) + 1)
        candidates.insert(pos, " ".join(words[target_words : target_words + passage_words]))
        examples.append(Example(data.queries[qid], " ".join(words[:target_words]), candidates, positive=pos))
        if len(examples) == num_examples:
            break
    if not examples:
        raise ValueError(f"{folder}: no query of split '{split}' has a relevant document of ≥{target_words + 16} words")
    return examples


def score_heads(
    lm: FrozenLM,
    examples: list[Example],
    method: HeadScoring = "gradient",
    limits: TokenLimits | None = None,
    layout: Layout = "separate",
    batch_size: int = 4,
    show_progress: bool = True,
) -> HeadRanking:
    if method not in ("gradient", "attention"):
        raise ValueError(f"unknown head scoring '{method}'; use 'gradient' or 'attention'")
    missing = [i for i, ex in enumerate(examples) if ex.positive is None]
    if missing:
        raise ValueError(f"head detection needs a 'positive' index in every example (missing in #{missing[:5]})")
    if not examples:
        raise ValueError("head detection needs at least one example")
    tokenized = tokenize_examples(examples, lm.tokenize, limits or TokenLimits())
    all_heads = [(lay, h) for lay in range(lm.num_layers) for h in range(lm.num_heads)]
    total = torch.zeros(len(all_heads), dtype=torch.float64)
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc=f"score heads ({method})", disable=not show_progress, unit="batch"):
        exs, toks = examples[start : start + batch_size], tokenized[start : start + batch_size]
        packed = lm.pack(toks, layout)
        n_max = int(packed.num_docs.max())
        doc_mask = torch.arange(n_max, device=lm.device)[None] < packed.num_docs[:, None].to(lm.device)
        positive = torch.tensor([ex.positive for ex in exs], device=lm.device)
        is_pos = torch.nn.functional.one_hot(positive, n_max).bool()
        if method == "gradient":
            bias = torch.zeros((len(exs), len(all_heads), n_max), dtype=lm.dtype, device=lm.device, requires_grad=True)
            uniform = -torch.log(packed.num_docs.to(lm.dtype).to(lm.device))[:, None, None]
            injection = HeadInjection(
                all_heads, uniform + bias, packed.doc_index, packed.inject_rows, packed.num_docs, mode="bias"
            )
            # Sum over examples so each example's gradient is its own ∂L_b/∂b_b. The reuse step gives
            # the reference gradients (tests/test_reuse_step.py) with a graph over [q][y] rows only:
            # with every head injected, a graph over all rows held about 9 GB at the training defaults.
            target_nll(lm, packed, injection, reuse_documents=True).sum().backward()
            grad = bias.grad.double()  # (B, heads, N)
            neg = (grad * (~is_pos & doc_mask)[:, None]).sum(-1) / (doc_mask.sum(-1, keepdim=True) - 1).clamp_min(1)
            pos = (grad * is_pos[:, None]).sum(-1)
            total += (neg - pos).sum(0).cpu()
        else:
            with torch.no_grad():
                recorder = AttentionRecorder(packed.doc_index, packed.num_docs, packed.query_rows)
                target_nll(lm, packed, recorder, reuse_documents=True)
            for layer, share in recorder.recorded_doc_mass.items():  # share: (B, heads, N)
                on_gold = (share.double() * is_pos[:, None]).sum(-1)
                total[layer * lm.num_heads : (layer + 1) * lm.num_heads] += on_gold.sum(0).cpu()
    scores = (total / len(examples)).view(lm.num_layers, lm.num_heads).numpy()
    return HeadRanking(scores=scores, method=method, num_examples=len(examples), llm=lm.source)


def select_heads_label_free(
    lm: FrozenLM,
    examples: list[Example],
    num_examples: int = 32,
    method: HeadScoring = "gradient",
    limits: TokenLimits | None = None,
    layout: Layout = "separate",
    seed: int = 0,
    show_progress: bool = True,
) -> HeadRanking:
    """Rank heads on detection examples cut from training examples' own text (q + y), no labels."""
    texts = [f"{ex.query} {ex.target}" for ex in examples]
    # Span sizes follow the data: q, y and the helpful passage each about a third of a typical text.
    typical = sorted(len(t.split()) for t in texts)[len(texts) // 2]
    words = max(4, min(32, typical // 3))
    detection = detection_examples_from_texts(
        texts,
        num_examples,
        num_candidates=min(8, len(texts)),
        query_words=words,
        target_words=words,
        passage_words=2 * words,
        seed=seed,
    )
    return score_heads(lm, detection, method, limits, layout, show_progress=show_progress)


def check_heads_fit(heads: list[tuple[int, int]], lm: FrozenLM, owner: str) -> None:
    """A head set must be non-empty and name heads the frozen LLM has (a file made for another LLM does not)."""
    check_heads_shape(heads, (lm.num_layers, lm.num_heads), owner)


def check_heads_shape(heads: list[tuple[int, int]], shape: tuple[int, int], owner: str) -> None:
    layers, per_layer = shape
    if not heads:
        raise ValueError(f"{owner} needs a non-empty head set H (run `dreamir heads` first)")
    bad = [(lay, h) for lay, h in heads if not (0 <= lay < layers and 0 <= h < per_layer)]
    if bad:
        raise ValueError(f"{owner}: heads {bad[:5]} are outside the frozen LLM ({layers} layers × {per_layer} heads)")


def check_heads_file(config: HeadsConfig, llm: str) -> None:
    """The configured heads file checked against the frozen LLM's shape from its config alone, before any model is
    loaded: the shape the file was made for (written by `dreamir heads`) must be the LLM's, every head must exist."""
    from dreamir.models.frozen_lm import llm_shape

    assert config.file is not None
    path, shape = config.file, llm_shape(llm)
    data = read_heads_json(path)
    try:
        declared = (int(data["num_layers"]), int(data["num_heads"]))
    except (KeyError, TypeError, ValueError):
        declared = None  # a hand-written file: its heads are still range-checked
    if declared is not None and declared != shape:
        made_for = f" ('{data.get('llm')}')" if isinstance(data.get("llm"), str) else ""
        raise ValueError(
            f"{path} was made for an LLM{made_for} with {declared[0]} layers × {declared[1]} heads; the frozen LLM "
            f"'{llm}' has {shape[0]} × {shape[1]}: run `dreamir heads` for it"
        )
    heads = load_heads(path, shape[0] * shape[1] if config.count == "all" else int(config.count), data)
    check_heads_shape(heads, shape, str(path))


def head_count(heads: HeadsConfig, lm: FrozenLM) -> int:
    """`heads.count` for this LLM ("all": every head)."""
    return lm.num_layers * lm.num_heads if heads.count == "all" else int(heads.count)


def select_run_heads(
    config: RunSettings, layout: str, lm: FrozenLM, examples: list[Example], path: str | os.PathLike
) -> HeadRanking:
    """Rank the heads label-free on the examples' own text, as `config.heads` says, and write the top ones to path."""
    heads = config.heads
    ranking = select_heads_label_free(
        lm, examples, heads.detection_examples, heads.scoring, config.data.limits, layout, heads.seed
    )
    ranking.save(path, head_count(heads, lm))
    return ranking


def run_head_set(
    config: RunSettings, layout: str, lm: FrozenLM, examples: list[Example], run_dir: Path, group: ProcessGroup
) -> list[tuple[int, int]]:
    """H for a run, decided here only: the configured heads file (copied into run_dir), or the set an interrupted
    attempt of this run selected, or selected now from the training texts (label-free) into run_dir/heads.json.
    Rank 0 decides; the other ranks then read what it wrote (run_dir on a shared filesystem). The set is checked
    against the LLM before any model work."""
    target = run_dir / "heads.json"
    count = head_count(config.heads, lm)
    if group.is_main:
        if config.heads.file:
            src = Path(config.heads.file)
            heads = load_heads(src, count)
            if src.resolve() != target.resolve():
                shutil.copyfile(src, target)
                if src.with_suffix(".png").exists():
                    shutil.copyfile(src.with_suffix(".png"), target.with_suffix(".png"))
        elif target.exists():  # selected by an earlier (interrupted) attempt of this run
            heads = load_heads(target, count)
        else:
            heads = select_run_heads(config, layout, lm, examples, target).top(count)
    group.barrier()
    if not group.is_main:
        heads = load_heads(config.heads.file or target, count)
    check_heads_fit(heads, lm, f"the head set of {run_dir}")
    return heads
