"""REPLUG (LM-supervised retrieval, METHOD §2): distil the frozen LLM's preference over candidates.

    ℓ_i = −log p_Φ(y | d_i, q)        (per target token: the mean, see `lm_score`)
    P_LM = softmax(−ℓ / τ_lm),  P_R = softmax(s / τ_r),  loss = KL(P_LM ‖ P_R)

P_LM does not depend on the retriever, so it is computed once per example without a graph and
kept for later epochs (a few floats per example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dreamir.data.training import Example
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.layout import TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import Objective, ObjectiveOutput, candidate_scores, log_doc_weights
from dreamir.objectives.dream import target_nll


@dataclass
class ReplugSettings:
    lm_temperature: float = 0.1
    retriever_temperature: float = 0.1
    # "mean": ℓ is the mean NLL per target token, so τ_lm does not depend on the target's length;
    # "sum": the total NLL (METHOD's literal −log p(y | d, q)).
    lm_score: Literal["mean", "sum"] = "mean"
    lm_batch: int = 16  # (candidate, example) sequences per frozen-LLM forward


class ReplugObjective(Objective):
    name = "replug"

    def __init__(self, lm: FrozenLM, retriever: Retriever, settings: ReplugSettings | None = None) -> None:
        self.lm, self.retriever = lm, retriever
        self.settings = settings or ReplugSettings()
        self._lm_scores: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def candidate_nll(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        """ℓ for every candidate of every example: [(N_b,)], each from its own [sink][d_i][q][y] pass."""
        keys = [DocumentKVStore.key([*ex.docs, ex.query, ex.target], self.settings.lm_score) for ex in tokenized]
        found: list[torch.Tensor | None] = [self._lm_scores.get(key) for key in keys]
        todo = [
            (b, TokenizedExample(ex.query, ex.target, [doc]))
            for b, ex in enumerate(tokenized)
            if found[b] is None
            for doc in ex.docs
        ]
        values: list[float] = []
        for start in range(0, len(todo), self.settings.lm_batch):
            chunk = [single for _, single in todo[start : start + self.settings.lm_batch]]
            packed = self.lm.pack(chunk, "separate")  # one document each: the plain causal sequence
            nll = target_nll(self.lm, packed, None)
            if self.settings.lm_score == "sum":
                nll = nll * packed.target_mask.sum(1)
            values.extend(nll.float().cpu().tolist())
        fresh: dict[int, list[float]] = {}
        for (b, _), value in zip(todo, values, strict=True):
            fresh.setdefault(b, []).append(value)
        for b, scores in fresh.items():
            found[b] = self._lm_scores[keys[b]] = torch.tensor(scores)
        return [f for f in found if f is not None]

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        scores, mask = candidate_scores(self.retriever, examples)
        nll = torch.full(mask.shape, float("inf"), device=scores.device)
        for b, values in enumerate(self.candidate_nll(tokenized)):
            nll[b, : len(values)] = values.to(scores.device)
        log_p_lm = log_doc_weights(-nll, mask, self.settings.lm_temperature)
        log_p_r = log_doc_weights(scores, mask, self.settings.retriever_temperature)
        p_lm = log_p_lm.exp()
        kl = (p_lm * (log_p_lm - log_p_r)).masked_fill(~mask, 0).sum(-1)
        loss = kl.mean()
        return ObjectiveOutput(
            loss=loss,
            metrics={"loss": loss.item(), "p_lm_max": float(p_lm.max(-1).values.mean())},
        )
