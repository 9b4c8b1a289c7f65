"""Anchored adaptation (`train.anchor`): a term added to any objective's loss so that a good start moves only as
far as the training signal pushes it. The trainer adds it as one more term of the run's `Sum`:

- "kl":   λ · KL(P_start ‖ P_θ) over each example's candidates, P = softmax(s / τ_a) — `Distill(Start)`, with
          P_start from a frozen copy of the retriever as it was before training (built before any checkpoint is
          loaded), computed once per example.
- "l2sp": λ · ‖θ − θ_start‖² over the trainable weights (L2-SP, Li et al. 2018).
Every objective gets the same term, so comparisons with an anchor stay fair.
"""

from __future__ import annotations

import torch

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import Objective, ObjectiveOutput, ScoredBatch, Temperature
from dreamir.objectives.distill import Distill
from dreamir.objectives.teachers import Start


class KLAnchor(Distill):
    name = "anchor"
    needs_llm = False
    logs_teacher_fit = False

    def __init__(self, retriever: Retriever, temperature: float) -> None:
        super().__init__(retriever, Start(retriever, temperature), Temperature(temperature))


class L2SPAnchor(Objective):
    name = "anchor"
    needs_llm = False

    def __init__(self, retriever: Retriever) -> None:
        super().__init__(retriever)
        self.start_weights = {n: p.detach().clone() for n, p in retriever.named_parameters() if p.requires_grad}

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        named = self.retriever.named_parameters()
        moved = torch.stack([(p - self.start_weights[n]).pow(2).sum() for n, p in named if n in self.start_weights])
        loss = moved.sum()
        return ObjectiveOutput(loss, {"loss": loss.item()})


def build_anchor(kind: str, temperature: float, retriever: Retriever) -> Objective:
    if kind == "kl":
        return KLAnchor(retriever, temperature)
    if kind == "l2sp":
        return L2SPAnchor(retriever)
    raise ValueError(f"unknown anchor '{kind}'; use none, kl or l2sp")
