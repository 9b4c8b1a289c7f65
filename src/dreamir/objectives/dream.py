"""The DREAM objective (METHOD §1): the frozen LLM's target loss, trained through injected heads.

    s_i = e_q · e_i,  w = softmax(s / τ),  L = −(1/T) Σ_t log p_Φ(y_t | y_<t, q, D; w)

The retriever's weights w enter only the heads in H (injection.py), in the [q][y] rows of the
layout (layout.py); Φ is frozen, so gradients reach θ only through w.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamir.data.training import Example
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection, InjectionMode
from dreamir.models.layout import Layout, PackedBatch, TokenizedExample
from dreamir.models.retriever import Retriever


@dataclass
class DreamSettings:
    heads: list[tuple[int, int]]
    temperature: float = 0.05
    mode: InjectionMode = "bias"
    layout: Layout = "separate"
    reuse_documents: bool = True  # False: the full-graph reference step (METHOD §1.3)


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    metrics: dict[str, float]


def candidate_scores(retriever: Retriever, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Retriever scores s (B, N_max) and a (B, N_max) mask of real candidates."""
    n_max = max(len(ex.candidates) for ex in examples)
    queries = retriever.embed([ex.query for ex in examples], "query")
    flat_docs = [c for ex in examples for c in ex.candidates]
    docs = retriever.embed(flat_docs, "document")
    mask = torch.zeros((len(examples), n_max), dtype=torch.bool, device=queries.device)
    rows, start = [], 0
    for b, ex in enumerate(examples):
        n = len(ex.candidates)
        rows.append(F.pad(docs[start : start + n] @ queries[b], (0, n_max - n)))
        mask[b, :n] = True
        start += n
    return torch.stack(rows), mask


def log_doc_weights(scores: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(s/τ) over each example's real candidates; padding candidates get -inf."""
    return torch.log_softmax((scores / temperature).masked_fill(~mask, float("-inf")), dim=-1)


def target_nll(
    lm: FrozenLM, packed: PackedBatch, injection: HeadInjection | None, reuse_documents: bool = False
) -> torch.Tensor:
    """Per-example mean NLL of the target tokens, (B,). Logits only at the target rows.

    reuse_documents=False is the reference step: one pass over the whole layout, with a graph over
    every row. reuse_documents=True runs the document region once without a graph (its keys and
    values do not depend on the retriever: documents never attend to [q][y], and injection only
    touches [q][y] rows) and the graph only over the [q][y] segment on top of those keys/values.
    Both give the same loss and gradients (tests/test_reuse_step.py).
    """
    split = packed.doc_region if reuse_documents else 0
    inputs = packed.model_inputs()
    if split:
        cache = document_cache(lm, packed)
        inputs = {
            "input_ids": packed.input_ids[:, split:],
            "position_ids": packed.position_ids[:, split:],
            "attention_mask": packed.attention_mask[:, :, split:, :],
            "dreamir_positions": packed.position_ids,
            "past_key_values": cache,
            "use_cache": True,
        }
    hidden = lm.decoder(**inputs, dreamir_injection=injection).last_hidden_state
    rows = (packed.predict_rows - split).clamp_min(0)
    picked = torch.gather(hidden, 1, rows[..., None].expand(-1, -1, hidden.shape[-1]))
    logits = lm.logits(picked).float()
    nll = F.cross_entropy(logits.transpose(1, 2), packed.target_ids, reduction="none")
    mask = packed.target_mask.to(nll.dtype)
    return (nll * mask).sum(1) / mask.sum(1)


@torch.no_grad()
def document_cache(lm: FrozenLM, packed: PackedBatch):
    """Keys/values of the sink + document region for every layer, computed without a graph."""
    from transformers import DynamicCache

    split = packed.doc_region
    # A cache without the model config keeps every key (no sliding-window eviction); windows are
    # applied by dreamir's attention from the positions, as in the reference step.
    cache = DynamicCache()
    lm.decoder(
        input_ids=packed.input_ids[:, :split],
        position_ids=packed.position_ids[:, :split],
        attention_mask=packed.attention_mask[:, :, :split, :split],
        dreamir_positions=packed.position_ids,
        past_key_values=cache,
        use_cache=True,
    )
    return cache


class DreamObjective:
    name = "dream"

    def __init__(self, lm: FrozenLM, retriever: Retriever, settings: DreamSettings) -> None:
        if not settings.heads:
            raise ValueError("DREAM needs a non-empty head set H (run `dreamir heads` first)")
        bad = [(lay, h) for lay, h in settings.heads if not (0 <= lay < lm.num_layers and 0 <= h < lm.num_heads)]
        if bad:
            raise ValueError(
                f"heads {bad[:5]} are outside the frozen LLM ({lm.num_layers} layers × {lm.num_heads} heads)"
            )
        self.lm, self.retriever, self.settings = lm, retriever, settings

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        scores, mask = candidate_scores(self.retriever, examples)
        log_w = log_doc_weights(scores, mask, self.settings.temperature)
        packed = self.lm.pack(tokenized, self.settings.layout)
        injection = HeadInjection(
            heads=self.settings.heads,
            log_weights=log_w.to(self.lm.dtype).to(self.lm.device),
            doc_index=packed.doc_index,
            inject_rows=packed.inject_rows,
            num_docs=packed.num_docs,
            mode=self.settings.mode,
        )
        nll = target_nll(self.lm, packed, injection, self.settings.reuse_documents)
        loss = nll.mean()
        with torch.no_grad():
            w = log_w.exp()
            entropy = -(w * log_w.masked_fill(~mask, 0)).sum(-1).mean()
        return ObjectiveOutput(
            loss=loss,
            metrics={
                "loss": loss.item(),
                "w_max": float(w.max(-1).values.mean()),
                "w_entropy": float(entropy),
            },
        )
