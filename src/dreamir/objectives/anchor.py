"""Anchored adaptation (`train.anchor`): a term the trainer adds to any objective's loss so that a good
start moves only as far as the training signal pushes it.

- "kl":   λ · KL(P_start ‖ P_θ) over each example's candidates, P = softmax(s / τ_a); P_start comes from
          a frozen copy of the retriever as it was before training (`StartDistribution`, which
          DREAM-distill's `teacher: judge_and_start` uses too), computed once per example.
- "l2sp": λ · ‖θ − θ_start‖² over the trainable weights (L2-SP, Li et al. 2018).
Every objective gets the same term, so comparisons with an anchor stay fair.
"""

from __future__ import annotations

import copy

import torch

from dreamir.data.training import Example
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import ObjectiveOutput, candidate_scores, log_doc_weights


class StartDistribution:
    """log P_start = log softmax(s_start / τ) over each example's candidates, s_start from a frozen copy of
    the retriever as it is when this is built (before training, before any checkpoint is loaded);
    computed once per example, keyed by its query and candidates."""

    def __init__(self, retriever: Retriever, temperature: float) -> None:
        self.temperature = temperature
        self.start = copy.deepcopy(retriever).eval()
        for p in self.start.parameters():
            p.requires_grad_(False)
        self._log_p: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, examples: list[Example], n_max: int) -> torch.Tensor:
        """(B, n_max), −inf past each example's candidates."""
        missing = [ex for ex in examples if self._key(ex) not in self._log_p]
        if missing:
            scores, mask = candidate_scores(self.start, missing)
            for row, ex in zip(log_doc_weights(scores, mask, self.temperature).cpu(), missing, strict=True):
                self._log_p[self._key(ex)] = row[: len(ex.candidates)]
        out = torch.full((len(examples), n_max), float("-inf"))
        for b, ex in enumerate(examples):
            out[b, : len(ex.candidates)] = self._log_p[self._key(ex)]
        return out

    @staticmethod
    def _key(example: Example) -> tuple[str, tuple[str, ...]]:
        return example.query, tuple(example.candidates)


class Anchor:
    def __init__(self, kind: str, weight: float, temperature: float, retriever: Retriever) -> None:
        if kind not in ("kl", "l2sp"):
            raise ValueError(f"unknown anchor '{kind}'; use none, kl or l2sp")
        self.kind, self.weight = kind, weight
        if kind == "kl":
            self.start_distribution = StartDistribution(retriever, temperature)
        else:
            self.start_weights = {n: p.detach().clone() for n, p in retriever.named_parameters() if p.requires_grad}

    def __call__(self, retriever: Retriever, examples: list[Example], output: ObjectiveOutput) -> torch.Tensor:
        if self.kind == "l2sp":
            named = retriever.named_parameters()
            moved = [(p - self.start_weights[n]).pow(2).sum() for n, p in named if n in self.start_weights]
            return self.weight * torch.stack(moved).sum()
        if output.scores is None or output.mask is None:
            raise ValueError("the KL anchor needs the objective to return its candidate scores")
        mask = output.mask
        log_p = log_doc_weights(output.scores, mask, self.start_distribution.temperature)
        log_start = self.start_distribution(examples, mask.shape[1]).to(log_p.device)
        kl = (log_start.exp() * (log_start - log_p)).masked_fill(~mask, 0).sum(-1)
        return self.weight * kl.mean()
