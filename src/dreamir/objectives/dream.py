"""The DREAM objective (docs/method.md): the frozen LLM's target loss, trained through injected heads.

    s_i = e_q · e_i,  w = softmax(s / τ),  L = −(1/T) Σ_t log p_Φ(y_t | y_<t, q, D; w)

The retriever's weights w enter only the heads in H (injection.py), in the [q][y] rows of the
layout (layout.py); Φ is frozen, so gradients reach θ only through w.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from dreamir.data.training import Example, TokenizedExample
from dreamir.heads import check_heads_fit
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection
from dreamir.models.kv_store import DocumentKVStore
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
from dreamir.settings import NO_EFFECT, tagged


class DreamConfig(TemperatureConfig):
    mode: Literal["bias", "reweight"] = "bias"
    layout: Literal["separate", "concat"] = "separate"
    # The full-graph step (graph over document rows too); the default reuses document keys/values.
    reference_step: bool = False
    # Cross-epoch cache of document keys/values (reuse step only). 0 = off. Held in memory, or in
    # `document_cache_dir` when set; nothing new is stored once the limit is reached.
    document_cache_mb: int = Field(0, ge=0, json_schema_extra=tagged(NO_EFFECT))
    document_cache_dir: str | None = Field(None, json_schema_extra=tagged(NO_EFFECT))

    @model_validator(mode="after")
    def _cache_needs_reuse(self) -> DreamConfig:
        if self.document_cache_mb and self.reference_step:
            raise ValueError("document_cache_mb needs the reuse step; it cannot be combined with reference_step")
        return self


class DreamObjective(Objective):
    name = "dream"
    Config = DreamConfig
    uses_heads = True

    def __init__(
        self,
        lm: FrozenLM,
        retriever: Retriever,
        config: DreamConfig,
        heads: list[tuple[int, int]],
        document_store: DocumentKVStore | None = None,
    ) -> None:
        if document_store is not None and config.reference_step:
            raise ValueError("the document key/value cache needs the reuse step (not the reference step)")
        check_heads_fit(heads, lm, "DREAM")
        super().__init__(retriever)
        self.lm, self.config, self.heads = lm, config, heads
        self.document_store = document_store
        self._store_tag = f"{lm.source}|{lm.dtype}|{config.layout}|{lm.sink_token_id}"
        self.temperature = Temperature.from_config(config)

    @classmethod
    def build(cls, context: ObjectiveContext) -> DreamObjective:
        lm = context.require_lm(cls.name)
        config: DreamConfig = context.config.dream
        return cls(lm, context.retriever, config, context.heads(lm), document_store(config))

    def summary(self) -> str | None:
        return self.document_store.summary() if self.document_store is not None else None

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        scores, mask = (batch or ScoredBatch(self.retriever, examples)).scores()
        log_w = log_doc_weights(scores, mask, self.temperature())
        packed = self.lm.pack(tokenized, self.config.layout)
        injection = HeadInjection(
            heads=self.heads,
            log_weights=log_w.to(self.lm.dtype).to(self.lm.device),
            doc_index=packed.doc_index,
            inject_rows=packed.inject_rows,
            num_docs=packed.num_docs,
            mode=self.config.mode,
        )
        keys = None
        if self.document_store is not None:
            keys = [DocumentKVStore.key(t.docs, self._store_tag) for t in tokenized]
        reuse = not self.config.reference_step
        nll = target_nll(self.lm, packed, injection, reuse, keys, self.document_store)
        loss = nll.mean()
        with torch.no_grad():
            w = log_w.exp()
            entropy = -(w * log_w.masked_fill(~mask, 0)).sum(-1).mean()
        return ObjectiveOutput(
            scores=scores,
            mask=mask,
            loss=loss,
            metrics={
                "loss": loss.item(),
                "w_max": float(w.max(-1).values.mean()),
                "w_entropy": float(entropy),
                "tau": self.temperature.current(),
            },
        )


def document_store(config: DreamConfig) -> DocumentKVStore | None:
    if not config.document_cache_mb:
        return None
    # One folder per rank: processes never write the same entry (each sees its own shard anyway).
    directory = (
        Path(config.document_cache_dir) / f"rank{os.environ.get('RANK', '0')}" if config.document_cache_dir else None
    )
    return DocumentKVStore(config.document_cache_mb * 2**20, directory)
