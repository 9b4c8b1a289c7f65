"""The DREAM objective (METHOD §1): the frozen LLM's target loss, trained through injected heads.

    s_i = e_q · e_i,  w = softmax(s / τ),  L = −(1/T) Σ_t log p_Φ(y_t | y_<t, q, D; w)

The retriever's weights w enter only the heads in H (injection.py), in the [q][y] rows of the
layout (layout.py); Φ is frozen, so gradients reach θ only through w.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, model_validator

from dreamir.data.training import Example, TokenizedExample
from dreamir.heads import HeadRanking, load_heads, select_heads_label_free
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.lm_passes import target_nll
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    Temperature,
    TemperatureConfig,
    candidate_scores,
    log_doc_weights,
)

if TYPE_CHECKING:
    from dreamir.config import RunConfig


class DreamConfig(TemperatureConfig):
    mode: Literal["bias", "reweight"] = "bias"
    layout: Literal["separate", "concat"] = "separate"
    # The full-graph step (graph over document rows too); the default reuses document keys/values.
    reference_step: bool = False
    # Cross-epoch cache of document keys/values (reuse step only). 0 = off. Held in memory, or in
    # `document_cache_dir` when set; nothing new is stored once the limit is reached.
    document_cache_mb: int = Field(0, ge=0)
    document_cache_dir: str | None = None

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
        if not heads:
            raise ValueError("DREAM needs a non-empty head set H (run `dreamir heads` first)")
        bad = [(lay, h) for lay, h in heads if not (0 <= lay < lm.num_layers and 0 <= h < lm.num_heads)]
        if bad:
            raise ValueError(
                f"heads {bad[:5]} are outside the frozen LLM ({lm.num_layers} layers × {lm.num_heads} heads)"
            )
        self.lm, self.retriever, self.config, self.heads = lm, retriever, config, heads
        self.document_store = document_store
        self._store_tag = f"{lm.source}|{lm.dtype}|{config.layout}|{lm.sink_token_id}"
        self.temperature = Temperature.from_config(config)

    @classmethod
    def build(cls, context: ObjectiveContext) -> DreamObjective:
        lm = context.require_lm(cls.name)
        config: DreamConfig = context.config.dream
        return cls(lm, context.retriever, config, heads_for_run(context, lm), document_store(config))

    def summary(self) -> str | None:
        return self.document_store.summary() if self.document_store is not None else None

    def extra_parameters(self) -> dict[str, torch.nn.Parameter]:
        return self.temperature.parameters("log_temperature")

    def extra_learning_rates(self) -> dict[str, float]:
        return {"log_temperature": self.temperature.lr}

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        scores, mask = candidate_scores(self.retriever, examples)
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


def head_count(config: RunConfig, lm: FrozenLM) -> int:
    count = config.heads.count
    return lm.num_layers * lm.num_heads if count == "all" else int(count)


def select_run_heads(config: RunConfig, lm: FrozenLM, examples: list[Example], path: str | os.PathLike) -> HeadRanking:
    """Rank the heads label-free on the examples' own text, as `config.heads` says, and write the top ones to path."""
    ranking = select_heads_label_free(
        lm,
        examples,
        config.heads.detection_examples,
        config.heads.scoring,
        config.data.limits,
        config.dream.layout,
        config.seed,
    )
    ranking.save(path, head_count(config, lm))
    return ranking


def heads_for_run(context: ObjectiveContext, lm: FrozenLM) -> list[tuple[int, int]]:
    """H for this run: rank 0 resolves it (and writes run_dir/heads.json); the other ranks then read
    the given heads file or the set rank 0 just selected (run_dir on a shared filesystem)."""
    if context.group.is_main:
        heads = resolve_heads(context, lm)
    context.group.barrier()
    if not context.group.is_main:
        heads_file = context.config.heads.file or str(context.run_dir / "heads.json")
        heads = load_heads(heads_file, head_count(context.config, lm))
    return heads


def resolve_heads(context: ObjectiveContext, lm: FrozenLM) -> list[tuple[int, int]]:
    """H from the configured heads file, or selected now from the training texts (label-free)."""
    config, run_dir = context.config, context.run_dir
    target = run_dir / "heads.json"
    count = head_count(config, lm)
    if config.heads.file:
        heads = load_heads(config.heads.file, count)
        src = Path(config.heads.file)
        if src.resolve() != target.resolve():
            shutil.copyfile(src, target)
            if src.with_suffix(".png").exists():
                shutil.copyfile(src.with_suffix(".png"), target.with_suffix(".png"))
        return heads
    if target.exists():  # selected by an earlier (interrupted) attempt of this run
        return load_heads(target, count)
    return select_run_heads(config, lm, context.examples, target).top(count)


def document_store(config: DreamConfig) -> DocumentKVStore | None:
    if not config.document_cache_mb:
        return None
    # One folder per rank: processes never write the same entry (each sees its own shard anyway).
    directory = (
        Path(config.document_cache_dir) / f"rank{os.environ.get('RANK', '0')}" if config.document_cache_dir else None
    )
    return DocumentKVStore(config.document_cache_mb * 2**20, directory)
