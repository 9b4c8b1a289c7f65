"""Revela (in-batch attention, docs/method.md), on dreamir's examples.

Revela trains on batches of related chunks. dreamir's examples already are such groups: a chunk
(q = its first half, y = its second half) and its BM25 neighbours (the candidates, full chunks).
So for each example the retriever scores q against every candidate, W = softmax(cos / τ) (the
chunk itself is never a candidate, so the diagonal is removed by construction), and the LM reads
[q][y] as its own context (positions from 1, no attention to the candidates) plus the in-batch
attention term of `InBatchAttention` in every layer and head. Loss = NTP on y.

The LM is frozen by default; `train_lm` adds LoRA adapters to it and trains them with the
retriever, as in the paper (the document keys/values then depend on the adapters, so that variant
runs the full graph instead of reusing them).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from pydantic import Field
from torch import nn

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import InBatchAttention
from dreamir.models.layout import PackedBatch
from dreamir.models.lm_passes import target_nll
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    ScoredBatch,
    Temperature,
    TemperatureConfig,
    log_doc_weights,
)
from dreamir.settings import LoraConfig


class RevelaConfig(TemperatureConfig):
    temperature: float = Field(1e-4, gt=0)  # the paper's τ
    train_lm: bool = False  # train LoRA adapters in the LM too (the paper's setting)
    value_norm: bool = True  # divide each document's in-batch output by its attention-weighted value norm
    lm_lora: LoraConfig = LoraConfig()  # used when train_lm: r=16, α=32, all linear layers


def own_context_layout(packed: PackedBatch, has_sink: bool) -> PackedBatch:
    """The separate layout with [q][y] as its own context: no attention from [q][y] rows to document
    keys (they come in through the in-batch term) and [q][y] positions restarting right after the sink."""
    split = packed.doc_region
    mask = packed.attention_mask.clone()
    blocked = (packed.doc_index >= 0)[:, None, None, :] & packed.inject_rows[:, None, :, None]
    mask.masked_fill_(blocked, torch.finfo(mask.dtype).min)
    positions = packed.position_ids.clone()
    first = 1 if has_sink else 0
    qy = positions[:, split:]
    offset = (qy[:, :1] - first).clamp_min(0)
    positions[:, split:] = (qy - offset).clamp_min(0)
    return PackedBatch(**{**packed.__dict__, "attention_mask": mask, "position_ids": positions})


class RevelaObjective(Objective):
    name = "revela"
    Config = RevelaConfig

    def __init__(self, lm: FrozenLM, retriever: Retriever, config: RevelaConfig | None = None) -> None:
        super().__init__(retriever)
        self.lm = lm
        self.config = config or RevelaConfig()
        self.temperature = Temperature.from_config(self.config)
        # the LM's LoRA adapters (train_lm), trained with the retriever: parameters of this loss
        adapters = add_lm_lora(lm, self.config.lm_lora) if self.config.train_lm else {}
        # (an OrderedDict: ParameterDict sorts a plain dict's keys; the LM's order is the optimiser's)
        self.lm_lora = nn.ParameterDict(OrderedDict((name.replace(".", "__"), p) for name, p in adapters.items()))

    @classmethod
    def build(cls, context: ObjectiveContext) -> RevelaObjective:
        return cls(context.require_lm(cls.name), context.retriever, context.config.revela)

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        scores, mask = (batch or ScoredBatch(self.retriever, examples)).scores()
        weights = log_doc_weights(scores, mask, self.temperature()).exp()
        packed = own_context_layout(self.lm.pack(tokenized, "separate"), self.lm.sink_token_id is not None)
        inbatch = InBatchAttention(
            weights=weights.to(self.lm.dtype).to(self.lm.device),
            doc_index=packed.doc_index,
            inject_rows=packed.inject_rows,
            value_norm=self.config.value_norm,
        )
        nll = target_nll(self.lm, packed, None, reuse_documents=not self.config.train_lm, inbatch=inbatch)
        loss = nll.mean()
        w_max = float(weights.detach().max(-1).values.mean())
        metrics = {"loss": loss.item(), "w_max": w_max, "tau": self.temperature.current()}
        return ObjectiveOutput(loss, metrics, scores, mask)


def add_lm_lora(lm: FrozenLM, settings: LoraConfig) -> dict[str, torch.nn.Parameter]:
    """Insert trainable LoRA adapters into the LM in place (peft); returns them by name."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=settings.target_modules
    )
    inject_adapter_in_model(config, lm.model)
    params = {name: p for name, p in lm.model.named_parameters() if "lora_" in name}
    for p in params.values():
        p.requires_grad_(True)
    if not params:
        raise ValueError(f"no LoRA adapters were added to the LM (target_modules={settings.target_modules})")
    return params
