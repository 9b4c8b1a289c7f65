"""DREAM-distill: DREAM's judge signal computed once per example, then distilled into the retriever.

Online DREAM (the paper, `dream`) follows, at every step, the gradient of the frozen judge's target
loss through its injected heads. Here that gradient is taken once per example at uniform weights,

    g_i = ∂L/∂log w_i |_{w uniform}          (the judge's loss through the heads in H, target-conditioned)
    P_J = softmax(−g / τ_J),   P_R = softmax(s / τ),   loss = KL(P_J ‖ P_R)

so the retriever trains with REPLUG's well-conditioned objective on DREAM's signal, and every later
epoch, seed or variant costs a retriever pass only. g is kept in a bounded store keyed by the example's
token ids and the judge (in memory, or in `signal_cache_dir`, shared between runs and kept across a
crash). `judge_scale: standardised` divides each example's g by its standard deviation over the
candidates first, so τ_J does not depend on the judge's loss scale.

`teacher: judge_and_start` distils P_T ∝ P_start · P_J instead (a product of experts; P_start =
softmax(s_start/τ) from a frozen copy of the starting retriever): the judge re-ranks what the start
already believes rather than replacing it (`bench/teacher_proxy.py` measures, label-free, how often
each teacher's favourite is a chunk of the query's own document).

The judge pass is online DREAM's own: the `heads:` set (selected as for `dream`) and `dream.mode` /
`dream.layout`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch
from pydantic import Field

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.lm_passes import weight_gradient
from dreamir.models.retriever import Retriever
from dreamir.objectives.anchor import StartDistribution
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    Temperature,
    TemperatureConfig,
    candidate_scores,
    log_doc_weights,
)
from dreamir.objectives.dream import heads_for_run
from dreamir.objectives.infonce import InfoNCEConfig, contrastive_loss
from dreamir.objectives.signal_store import ExampleSignalStore, SignalCacheConfig


def standardised(g: torch.Tensor) -> torch.Tensor:
    """g over one example's candidates divided by its spread (`judge_scale: standardised`)."""
    return (g - g.mean()) / g.std().clamp_min(1e-12)


class DreamDistillConfig(TemperatureConfig, SignalCacheConfig):  # temperature: τ of P_R (DREAM's)
    judge_temperature: float = Field(0.5, gt=0)  # τ_J of P_J, in units of g (or of its std when standardised)
    judge_scale: Literal["standardised", "raw"] = "standardised"
    # the distribution distilled: P_J alone, or P_start · P_J renormalised (P_start at `temperature`)
    teacher: Literal["judge", "judge_and_start"] = "judge"
    # + this × InfoNCE on the same batch (`infonce.*`; positive = the target): the judge orders each example's
    # candidates, the contrastive term adds in-batch negatives, which the judge's signal never sees
    contrastive_weight: float = Field(0.0, ge=0)


class DreamDistillObjective(Objective):
    name = "dream_distill"
    Config = DreamDistillConfig
    precomputes = True
    uses_heads = True
    also_reads = ("dream", "infonce")  # DREAM's injection (mode, layout); InfoNCE's term (contrastive_weight)

    def __init__(
        self,
        lm: FrozenLM,
        retriever: Retriever,
        config: DreamDistillConfig,
        heads: list[tuple[int, int]],
        mode: str = "bias",
        layout: str = "separate",
        contrastive: InfoNCEConfig | None = None,
    ) -> None:
        if not heads:
            raise ValueError("DREAM-distill needs a non-empty head set H")
        self.lm, self.retriever, self.config, self.heads = lm, retriever, config, heads
        self.mode, self.layout = mode, layout
        self.contrastive = contrastive or InfoNCEConfig()
        heads_id = hashlib.sha256(repr(sorted(heads)).encode()).hexdigest()[:12]
        tag = f"judge-signal|{lm.source}|{lm.dtype}|{mode}|{layout}|{lm.sink_token_id}|{heads_id}"
        self.signal = ExampleSignalStore("judge signal", tag, config, self._judge_pass)
        self.temperature = Temperature.from_config(config)
        # built with the objective, i.e. before a checkpoint is loaded: it holds the start
        self.start = StartDistribution(retriever, config.temperature) if config.teacher == "judge_and_start" else None

    @classmethod
    def build(cls, context: ObjectiveContext) -> DreamDistillObjective:
        lm = context.require_lm(cls.name)
        dream = context.config.dream
        heads = heads_for_run(context, lm)
        config = context.config
        return cls(lm, context.retriever, config.dream_distill, heads, dream.mode, dream.layout, config.infonce)

    def summary(self) -> str | None:
        return self.signal.summary("judge passes")

    def extra_parameters(self) -> dict[str, torch.nn.Parameter]:
        return self.temperature.parameters("log_temperature")

    def extra_learning_rates(self) -> dict[str, float]:
        return {"log_temperature": self.temperature.lr}

    @property
    def judge_calls(self) -> int:
        """Judge passes run by this objective (a warm store needs none)."""
        return self.signal.calls

    def cached_signal(self, example: TokenizedExample) -> torch.Tensor | None:
        """The example's stored g, or None when the judge has not seen it (no judge pass here)."""
        return self.signal.cached(example)

    def judge_signal(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        """g per example, (N_b,), from the store or one judge pass over the examples it lacks."""
        return self.signal(tokenized)

    def _judge_pass(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        packed = self.lm.pack(tokenized, self.layout)
        gradient, _ = weight_gradient(self.lm, packed, self.heads, self.mode)
        return [gradient[slot, : len(t.docs)] for slot, t in enumerate(tokenized)]

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        """The judge signal of every example not yet stored, into `signal_cache_dir` (resumable)."""
        return self.signal.precompute(tokenized, batch_size, show_progress, self.name)

    def judge_log_distribution(self, tokenized: list[TokenizedExample], mask: torch.Tensor) -> torch.Tensor:
        """log P_J (B, N_max), −inf at padding."""
        logits = torch.zeros(mask.shape, dtype=torch.float32)
        for b, g in enumerate(self.judge_signal(tokenized)):
            g = g.float()
            if self.config.judge_scale == "standardised" and len(g) > 1:
                g = standardised(g)
            logits[b, : len(g)] = -g
        return log_doc_weights(logits.to(mask.device), mask, self.config.judge_temperature)

    def teacher_log_distribution(
        self, examples: list[Example], tokenized: list[TokenizedExample], mask: torch.Tensor
    ) -> torch.Tensor:
        """log P_T (B, N_max): P_J, or P_start · P_J renormalised; −inf at padding."""
        log_p = self.judge_log_distribution(tokenized, mask)
        if self.start is None:
            return log_p
        log_start = self.start(examples, mask.shape[1]).to(log_p.device)
        return torch.log_softmax((log_p + log_start).masked_fill(~mask, float("-inf")), dim=-1)

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        queries = self.retriever.embed([ex.query for ex in examples], "query")
        scores, mask = candidate_scores(self.retriever, examples, queries)
        log_p_teacher = self.teacher_log_distribution(examples, tokenized, mask).to(scores.device)
        log_p_retriever = log_doc_weights(scores, mask, self.temperature())
        p_teacher = log_p_teacher.exp()
        kl = (p_teacher * (log_p_teacher - log_p_retriever)).masked_fill(~mask, 0).sum(-1)
        loss = kl.mean()
        metrics = {"kl": loss.item(), "p_judge_max": float(p_teacher.max(-1).values.mean())}
        if self.config.contrastive_weight:
            contrastive, accuracy = contrastive_loss(self.retriever, examples, queries, scores, mask, self.contrastive)
            loss = loss + self.config.contrastive_weight * contrastive
            metrics |= {"contrastive": contrastive.item(), "accuracy": accuracy}
        return ObjectiveOutput(loss, {"loss": loss.item(), **metrics, "tau": self.temperature.current()}, scores, mask)
