"""What every training objective shares: its output, and the retriever's candidate scores.

An objective is called with a micro-batch of examples (text) and their frozen-LLM token ids and
returns a loss whose gradient trains the retriever (and, for Revela with a trained LM, its LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamir.data.training import Example
from dreamir.models.layout import TokenizedExample
from dreamir.models.retriever import Retriever


class Objective:
    name = ""

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        raise NotImplementedError

    def extra_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Trainable parameters besides the retriever's (saved in checkpoints), usually none."""
        return {}


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    metrics: dict[str, float]


def candidate_scores(
    retriever: Retriever, examples: list[Example], queries: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Retriever scores s (B, N_max) and a (B, N_max) mask of real candidates (`queries`: the
    query embeddings, when the caller has them already)."""
    n_max = max(len(ex.candidates) for ex in examples)
    if queries is None:
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
