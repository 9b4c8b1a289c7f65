"""Distillation of a teacher into the retriever: KL(P_T ‖ P_θ) over each example's candidates.

    P_θ = softmax(s / τ)  (the retriever's scores),   loss = mean over examples of KL(P_T ‖ P_θ)

One loss for every objective that follows a distribution over candidates: REPLUG (`LMLikelihood`), DREAM-distill
(`JudgeGradient`, or `Product(Start, JudgeGradient)`) and the KL anchor (`Start`). A new teacher is one class in
`teachers.py`; an objective built on it is one `Distill` subclass with its config and `build`.

Each step also logs what a student with equal weights on every candidate would pay, KL(P_T ‖ uniform): a KL that
stays near it means the retriever has not fitted its teacher on the training batches (`teacher_fit`, said after
training). In a first epoch every batch is new to it, so this is a gauge of fit, not of learning: the static track's
KL stayed near equal weights for its first 250 steps while its dev nDCG@10 rose.
"""

from __future__ import annotations

import numpy as np
import torch

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveOutput,
    ScoredBatch,
    Temperature,
    kl_divergence,
    log_doc_weights,
)
from dreamir.objectives.teachers import Teacher


class Distill(Objective):
    logs_teacher_fit = True  # the KL anchor (a Distill toward the start) says nothing about learning a teacher

    def __init__(self, retriever: Retriever, teacher: Teacher, temperature: Temperature) -> None:
        super().__init__(retriever)
        self.teacher, self.temperature = teacher, temperature

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        scores, mask = (batch or ScoredBatch(self.retriever, examples)).scores()
        log_p_teacher = self.teacher(examples, tokenized).to(scores.device)
        log_p_retriever = log_doc_weights(scores, mask, self.temperature())
        loss = kl_divergence(log_p_teacher, log_p_retriever, mask).mean()
        metrics = {
            "loss": loss.item(),
            "p_teacher_max": float(log_p_teacher.exp().max(-1).values.mean()),
            "tau": self.temperature.current(),
        }
        if self.logs_teacher_fit:
            equal_weights = log_doc_weights(torch.zeros_like(scores), mask, 1.0)
            metrics["kl_teacher"] = loss.item()  # `loss` alone; kept under its name inside a sum of objectives
            metrics["kl_uniform"] = float(kl_divergence(log_p_teacher, equal_weights, mask).mean())
        return ObjectiveOutput(loss, metrics, scores, mask)

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        done = self.teacher.precompute(tokenized, batch_size, show_progress, self.name)
        if done is None:
            return super().precompute(tokenized, batch_size, show_progress)
        return done

    def summary(self) -> str | None:
        return self.teacher.summary()

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        return self.teacher.plan(tokenized)


# A last-quarter KL above this share of the equal-weights KL reads as "not fitted": the retriever gained under a
# tenth of what separates a uniform student from its teacher.
NOT_FITTED = 0.9


def teacher_fit(log_rows: list[dict]) -> str | None:
    """A line on whether a distilled retriever fits its teacher, from the run's log rows: its KL over the last
    quarter of steps beside what equal weights on every candidate pay on the same batches; None when no step
    logged both (an objective without a teacher)."""
    pairs = [(row["kl_teacher"], row["kl_uniform"]) for row in log_rows if "kl_teacher" in row and "kl_uniform" in row]
    if not pairs:
        return None
    kl, uniform = (float(np.mean(column)) for column in zip(*pairs[-max(1, len(pairs) // 4) :], strict=True))
    line = (
        f"fit to the teacher: KL {kl:.3f} over the last quarter of steps; equal weights on every candidate "
        f"pay {uniform:.3f} on the same batches"
    )
    if kl >= NOT_FITTED * uniform:
        line += (
            " — on its training batches the retriever is not yet closer to its teacher than equal weights (in a first "
            "epoch it may still have learned: judge it on a dev split; docs/objectives.md)"
        )
    return line
