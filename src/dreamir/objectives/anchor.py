"""Anchored adaptation (`train.anchor`): a term the trainer adds to any objective's loss so that a good
start moves only as far as the training signal pushes it.

- "kl":   λ · KL(P_start ‖ P_θ) over each example's candidates, P = softmax(s / τ_a); P_start comes from
          a frozen copy of the retriever as it was before training, computed once per example.
- "l2sp": λ · ‖θ − θ_start‖² over the trainable weights (L2-SP, Li et al. 2018).
Every objective gets the same term, so comparisons with an anchor stay fair.
"""

from __future__ import annotations

import copy

import torch

from dreamir.data.training import Example
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import ObjectiveOutput, candidate_scores, log_doc_weights


class Anchor:
    def __init__(self, kind: str, weight: float, temperature: float, retriever: Retriever) -> None:
        if kind not in ("kl", "l2sp"):
            raise ValueError(f"unknown anchor '{kind}'; use none, kl or l2sp")
        self.kind, self.weight, self.temperature = kind, weight, temperature
        self._start_log_p: dict[int, torch.Tensor] = {}  # example index → log P_start over its candidates
        if kind == "kl":
            self.start = copy.deepcopy(retriever).eval()
            for p in self.start.parameters():
                p.requires_grad_(False)
        else:
            self.start_weights = {n: p.detach().clone() for n, p in retriever.named_parameters() if p.requires_grad}

    def __call__(
        self, retriever: Retriever, indices: list[int], examples: list[Example], output: ObjectiveOutput
    ) -> torch.Tensor:
        if self.kind == "l2sp":
            named = retriever.named_parameters()
            moved = [(p - self.start_weights[n]).pow(2).sum() for n, p in named if n in self.start_weights]
            return self.weight * torch.stack(moved).sum()
        if output.scores is None or output.mask is None:
            raise ValueError("the KL anchor needs the objective to return its candidate scores")
        mask = output.mask
        log_p = log_doc_weights(output.scores, mask, self.temperature)
        log_start = torch.full_like(log_p, float("-inf"))
        for row, (index, example) in enumerate(zip(indices, examples, strict=True)):
            log_start[row, : len(example.candidates)] = self._start_distribution(index, example).to(log_p.device)
        kl = (log_start.exp() * (log_start - log_p)).masked_fill(~mask, 0).sum(-1)
        return self.weight * kl.mean()

    @torch.no_grad()
    def _start_distribution(self, index: int, example: Example) -> torch.Tensor:
        if index not in self._start_log_p:
            scores, mask = candidate_scores(self.start, [example])
            self._start_log_p[index] = log_doc_weights(scores, mask, self.temperature)[0].cpu()
        return self._start_log_p[index]
