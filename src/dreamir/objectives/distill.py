"""Distillation of a teacher into the retriever: KL(P_T ‖ P_θ) over each example's candidates.

    P_θ = softmax(s / τ)  (the retriever's scores),   loss = mean over examples of KL(P_T ‖ P_θ)

One loss for every objective that follows a distribution over candidates: REPLUG (`LMLikelihood`), DREAM-distill
(`JudgeGradient`, or `Product(Start, JudgeGradient)`) and the KL anchor (`Start`). A new teacher is one class in
`teachers.py`; an objective built on it is one `Distill` subclass with its config and `build`.
"""

from __future__ import annotations

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
