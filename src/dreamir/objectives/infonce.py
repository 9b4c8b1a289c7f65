"""InfoNCE (contrastive, METHOD §2): the query against its positive, the example's candidates and
the other examples' positives.

Positive = the labelled positive when the example has one, else the target (for self-supervised
chunks: the chunk's other half). τ = 0.05. Needs no LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamir.data.training import Example
from dreamir.models.layout import TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import Objective, ObjectiveOutput, candidate_scores


@dataclass
class InfoNCESettings:
    temperature: float = 0.05


def contrastive_logits(
    queries: torch.Tensor, positives: torch.Tensor, candidate_scores: torch.Tensor, candidate_mask: torch.Tensor
) -> torch.Tensor:
    """(B, B + N): column b' < B is q_b · positive_b' (in-batch), then the example's own candidates."""
    in_batch = queries @ positives.T
    return torch.cat([in_batch, candidate_scores.masked_fill(~candidate_mask, float("-inf"))], dim=1)


class InfoNCEObjective(Objective):
    name = "infonce"

    def __init__(self, retriever: Retriever, settings: InfoNCESettings | None = None) -> None:
        self.retriever = retriever
        self.settings = settings or InfoNCESettings()

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample] | None = None) -> ObjectiveOutput:
        queries = self.retriever.embed([ex.query for ex in examples], "query")
        scores, mask = candidate_scores(self.retriever, examples, queries)
        positives = self.retriever.embed([ex.positive or ex.target for ex in examples], "document")
        logits = contrastive_logits(queries, positives, scores, mask) / self.settings.temperature
        labels = torch.arange(len(examples), device=logits.device)
        loss = F.cross_entropy(logits, labels)
        accuracy = float((logits.argmax(-1) == labels).float().mean())
        return ObjectiveOutput(loss=loss, metrics={"loss": loss.item(), "accuracy": accuracy})
