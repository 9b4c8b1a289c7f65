"""REPLUG (LM-supervised retrieval, METHOD §2): distil the frozen LLM's preference over candidates.

    ℓ_i = −log p_Φ(y | d_i, q)        (per target token: the mean, see `lm_score`)
    P_LM = softmax(−ℓ / τ_lm),  P_R = softmax(s / τ_r),  loss = KL(P_LM ‖ P_R)

ℓ does not depend on the retriever, so it is computed once per example without a graph and kept for
later epochs (a few floats per example) — in memory, or in `replug.signal_cache_dir`, where seeds,
controls and variants of one LLM share it and `--precompute` can fill it ahead of training (on a GPU).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.lm_passes import candidate_nll
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    candidate_scores,
    log_doc_weights,
)
from dreamir.objectives.signal_store import ExampleSignalStore, SignalCacheConfig


class ReplugConfig(SignalCacheConfig):
    lm_temperature: float = Field(0.1, gt=0)
    retriever_temperature: float = Field(0.1, gt=0)
    # "mean": ℓ is the mean NLL per target token, so τ_lm does not depend on the target's length;
    # "sum": the total NLL (METHOD's literal −log p(y | d, q)).
    lm_score: Literal["mean", "sum"] = "mean"
    lm_batch: int = Field(16, gt=0)  # (candidate, example) sequences per frozen-LLM forward


class ReplugObjective(Objective):
    name = "replug"
    Config = ReplugConfig
    precomputes = True

    def __init__(self, lm: FrozenLM, retriever: Retriever, config: ReplugConfig | None = None) -> None:
        self.lm, self.retriever = lm, retriever
        self.config = config = config or ReplugConfig()
        tag = f"replug-nll|{lm.source}|{lm.dtype}|{lm.sink_token_id}|{config.lm_score}"
        self.nll = ExampleSignalStore("candidate NLL", tag, config, self._lm_pass)

    @classmethod
    def build(cls, context: ObjectiveContext) -> ReplugObjective:
        return cls(context.require_lm(cls.name), context.retriever, context.config.replug)

    def summary(self) -> str | None:
        return self.nll.summary("LLM passes")

    def candidate_nll(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        """ℓ for every candidate of every example, computed once per example and kept."""
        return self.nll(tokenized)

    @torch.no_grad()
    def _lm_pass(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        return candidate_nll(self.lm, tokenized, self.config.lm_score, self.config.lm_batch)

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        """ℓ of every example not yet stored, into `signal_cache_dir` (resumable)."""
        return self.nll.precompute(tokenized, batch_size, show_progress, self.name)

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
