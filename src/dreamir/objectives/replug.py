"""REPLUG (LM-supervised retrieval): distil the frozen LLM's preference over candidates.

    ℓ_i = −log p_Φ(y | d_i, q)        (per target token: the mean, see `lm_score`)
    P_LM = softmax(−ℓ / τ_lm),  P_R = softmax(s / τ),  loss = KL(P_LM ‖ P_R)

= Distill(LMLikelihood). ℓ does not depend on the retriever, so it is computed once per example without a graph
and kept for later epochs (a few floats per example) — in memory, or in `replug.signal_cache_dir`, where seeds,
controls and variants of one LLM share it and `--precompute` can fill it ahead of training (on a GPU).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import ObjectiveContext, Temperature, TemperatureConfig
from dreamir.objectives.distill import Distill
from dreamir.objectives.signal_store import SignalCacheConfig
from dreamir.objectives.teachers import LMLikelihood


class ReplugConfig(TemperatureConfig, SignalCacheConfig):  # temperature: τ of P_R
    temperature: float = Field(0.1, gt=0)
    lm_temperature: float = Field(0.1, gt=0)
    # "mean": ℓ is the mean NLL per target token, so τ_lm does not depend on the target's length;
    # "sum": the total NLL (the literal −log p(y | d, q)).
    lm_score: Literal["mean", "sum"] = "mean"
    lm_batch: int = Field(16, gt=0)  # (candidate, example) sequences per frozen-LLM forward


class ReplugObjective(Distill):
    name = "replug"
    Config = ReplugConfig
    precomputes = True

    def __init__(self, lm: FrozenLM, retriever: Retriever, config: ReplugConfig | None = None) -> None:
        config = config or ReplugConfig()
        teacher = LMLikelihood(lm, config, config.lm_temperature, config.lm_score, config.lm_batch)
        super().__init__(retriever, teacher, Temperature.from_config(config))
        self.config = config

    @classmethod
    def build(cls, context: ObjectiveContext) -> ReplugObjective:
        return cls(context.require_lm(cls.name), context.retriever, context.config.replug)
