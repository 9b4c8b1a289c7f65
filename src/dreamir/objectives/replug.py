"""REPLUG (LM-supervised retrieval, METHOD §2): distil the frozen LLM's preference over candidates.

    ℓ_i = −log p_Φ(y | d_i, q)        (per target token: the mean, see `lm_score`)
    P_LM = softmax(−ℓ / τ_lm),  P_R = softmax(s / τ_r),  loss = KL(P_LM ‖ P_R)

P_LM does not depend on the retriever, so it is computed once per example without a graph and
kept for later epochs (a few floats per example).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.lm_passes import candidate_nll
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    candidate_scores,
    log_doc_weights,
)
from dreamir.settings import StrictConfig


class ReplugConfig(StrictConfig):
    lm_temperature: float = Field(0.1, gt=0)
    retriever_temperature: float = Field(0.1, gt=0)
    # "mean": ℓ is the mean NLL per target token, so τ_lm does not depend on the target's length;
    # "sum": the total NLL (METHOD's literal −log p(y | d, q)).
    lm_score: Literal["mean", "sum"] = "mean"
    lm_batch: int = Field(16, gt=0)  # (candidate, example) sequences per frozen-LLM forward


class ReplugObjective(Objective):
    name = "replug"
    Config = ReplugConfig

    def __init__(self, lm: FrozenLM, retriever: Retriever, config: ReplugConfig | None = None) -> None:
        self.lm, self.retriever = lm, retriever
        self.config = config or ReplugConfig()
        self._lm_scores: dict[str, torch.Tensor] = {}

    @classmethod
    def build(cls, context: ObjectiveContext) -> ReplugObjective:
        return cls(context.require_lm(cls.name), context.retriever, context.config.replug)

    @torch.no_grad()
    def candidate_nll(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        """ℓ for every candidate of every example, computed once per example and kept."""
        keys = [DocumentKVStore.key([*ex.docs, ex.query, ex.target], self.config.lm_score) for ex in tokenized]
        found: list[torch.Tensor | None] = [self._lm_scores.get(key) for key in keys]
        todo = [b for b, f in enumerate(found) if f is None]
        fresh = candidate_nll(self.lm, [tokenized[b] for b in todo], self.config.lm_score, self.config.lm_batch)
        for b, scores in zip(todo, fresh, strict=True):
            found[b] = self._lm_scores[keys[b]] = scores
        return [f for f in found if f is not None]

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        scores, mask = candidate_scores(self.retriever, examples)
        nll = torch.full(mask.shape, float("inf"), device=scores.device)
        for b, values in enumerate(self.candidate_nll(tokenized)):
            nll[b, : len(values)] = values.to(scores.device)
        log_p_lm = log_doc_weights(-nll, mask, self.config.lm_temperature)
        log_p_r = log_doc_weights(scores, mask, self.config.retriever_temperature)
        p_lm = log_p_lm.exp()
        kl = (p_lm * (log_p_lm - log_p_r)).masked_fill(~mask, 0).sum(-1)
        loss = kl.mean()
        return ObjectiveOutput(
            scores=scores,
            mask=mask,
            loss=loss,
            metrics={"loss": loss.item(), "p_lm_max": float(p_lm.max(-1).values.mean())},
        )
