"""A weighted sum of objectives: `train.objective: "dream_distill + 0.5 * infonce"`, and the anchor term.

Every term reads the same `ScoredBatch`, so a step embeds the batch once whatever the number of terms. The sum's
`loss` metric is the total; each term's own loss is logged as `loss_<name>` (weighted) beside its other metrics.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamir.data.training import Example, TokenizedExample
from dreamir.objectives.base import Objective, ObjectiveOutput, ScoredBatch


class Sum(Objective):
    name = "sum"

    def __init__(self, terms: list[tuple[float, Objective]]) -> None:
        if not terms:
            raise ValueError("a sum of objectives needs at least one term")
        super().__init__(terms[0][1].retriever)
        self.weights = [float(weight) for weight, _ in terms]
        self.terms = nn.ModuleList([term for _, term in terms])

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        batch = batch or ScoredBatch(self.retriever, examples)
        total: torch.Tensor | None = None
        metrics: dict[str, float] = {}
        scores = mask = None
        for weight, term in zip(self.weights, self.terms, strict=True):
            out = term(examples, tokenized, batch)
            part = out.loss if weight == 1.0 else weight * out.loss
            total = part if total is None else total + part
            for key, value in out.metrics.items():
                key, value = (f"loss_{term.name}", float(part.detach())) if key == "loss" else (key, value)
                metrics[f"{term.name}_{key}" if key in metrics else key] = value
            if scores is None and out.scores is not None:
                scores, mask = out.scores, out.mask
        assert total is not None
        return ObjectiveOutput(total, {"loss": total.item(), **metrics}, scores, mask)

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        done = [term.precompute(tokenized, batch_size, show_progress) for term in self.terms if term.precomputes]
        return "; ".join(done) if done else super().precompute(tokenized, batch_size, show_progress)

    def summary(self) -> str | None:
        return "; ".join(line for term in self.terms if (line := term.summary())) or None

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        return "; ".join(line for term in self.terms if (line := term.plan(tokenized))) or None
