"""DREAM-distill: DREAM's judge signal computed once per example, then distilled into the retriever.

Online DREAM (the paper, `dream`) follows, at every step, the gradient of the frozen judge's target
loss through its injected heads. Here that gradient is taken once per example at uniform weights,

    g_i = ∂L/∂log w_i |_{w uniform}          (the judge's loss through the heads in H, target-conditioned)
    P_J = softmax(−g / τ_J),   P_R = softmax(s / τ),   loss = KL(P_J ‖ P_R)

so the retriever trains with REPLUG's well-conditioned objective on DREAM's signal (= Distill(JudgeGradient)),
and every later epoch, seed or variant costs a retriever pass only. g is kept in a bounded store keyed by the example's
token ids and the judge (in memory, or in `signal_cache_dir`, shared between runs and kept across a
crash). `judge_scale: standardised` divides each example's g by its standard deviation over the
candidates first, so τ_J does not depend on the judge's loss scale.

`teacher: judge_and_start` distils P_T ∝ P_start · P_J instead (Product(Start, JudgeGradient); P_start =
softmax(s_start/τ) from a frozen copy of the starting retriever): the judge re-ranks what the start
already believes rather than replacing it (`research/scripts/teacher_proxy.py` measures, label-free, how often
each teacher's favourite is a chunk of the query's own document).

The judge pass is online DREAM's own: the `heads:` set (selected as for `dream`) and `dream.mode` /
`dream.layout`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import ObjectiveContext, Temperature, TemperatureConfig
from dreamir.objectives.distill import Distill
from dreamir.objectives.signal_store import SignalCacheConfig
from dreamir.objectives.teachers import JudgeGradient, Product, Start, Teacher


class DreamDistillConfig(TemperatureConfig, SignalCacheConfig):  # temperature: τ of P_R (DREAM's)
    judge_temperature: float = Field(0.5, gt=0)  # τ_J of P_J, in units of g (or of its std when standardised)
    judge_scale: Literal["standardised", "raw"] = "standardised"
    # the distribution distilled: P_J alone, or P_start · P_J renormalised (P_start at `temperature`)
    teacher: Literal["judge", "judge_and_start"] = "judge"


class DreamDistillObjective(Distill):
    name = "dream_distill"
    Config = DreamDistillConfig
    precomputes = True
    uses_heads = True
    also_reads = ("dream",)  # the judge pass is DREAM's injection (mode, layout)

    def __init__(
        self,
        lm: FrozenLM,
        retriever: Retriever,
        config: DreamDistillConfig,
        heads: list[tuple[int, int]],
        mode: str = "bias",
        layout: str = "separate",
    ) -> None:
        judge = JudgeGradient(lm, heads, config, config.judge_temperature, config.judge_scale, mode, layout)
        teacher: Teacher = judge
        if config.teacher == "judge_and_start":  # built with the objective, i.e. before a checkpoint is loaded
            teacher = Product(Start(retriever, config.temperature), judge)
        super().__init__(retriever, teacher, Temperature.from_config(config))
        self.judge, self.config = judge, config

    @classmethod
    def build(cls, context: ObjectiveContext) -> DreamDistillObjective:
        lm = context.require_lm(cls.name)
        dream = context.config.dream
        return cls(lm, context.retriever, context.config.dream_distill, context.heads(lm), dream.mode, dream.layout)
