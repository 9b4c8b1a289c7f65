"""What every training objective shares: how it is built, its output, the retriever's candidate scores.

An objective is a plug-in (sentence-transformers' losses are the model): a small class configured by
its own config section, called with a micro-batch of examples (text) and their frozen-LLM token ids,
returning a loss whose gradient trains the retriever (and, for Revela with a trained LM, its LoRA).
The trainer never names an objective: it looks the class up in `dreamir.objectives.OBJECTIVES`,
loads the frozen LLM when the class says it `needs_llm`, and calls `build`, where the objective
prepares what else it needs (DREAM: its head set and document cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from dreamir.data.training import Example, TokenizedExample
from dreamir.distributed import ProcessGroup
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.settings import StrictConfig

if TYPE_CHECKING:
    from dreamir.config import RunConfig


@dataclass
class ObjectiveContext:
    """What a run offers an objective while it builds itself."""

    config: RunConfig
    retriever: Retriever
    lm: FrozenLM | None
    examples: list[Example]
    run_dir: Path
    group: ProcessGroup = field(default_factory=ProcessGroup)

    def require_lm(self, name: str) -> FrozenLM:
        if self.lm is None:
            raise ValueError(f"objective '{name}' needs the frozen LLM")
        return self.lm


class Objective:
    name: ClassVar[str] = ""
    Config: ClassVar[type[StrictConfig]] = StrictConfig  # its section of the run config, `<name>:`
    needs_llm: ClassVar[bool] = True  # False: the trainer never loads the frozen LLM for it
    precomputes: ClassVar[bool] = False  # True: `precompute` computes something ahead of training
    uses_heads: ClassVar[bool] = False  # True: reads the run's `heads:` set (selected label-free when absent)
    # Objective sections of the run config it reads besides its own (`<name>:`): the other objectives' sections
    # do not change what it trains, so a finished run is reused across them.
    also_reads: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sections_read(cls) -> tuple[str, ...]:
        return (cls.name, *cls.also_reads)

    @classmethod
    def build(cls, context: ObjectiveContext) -> Objective:
        """The objective for a run: its own config section plus whatever it prepares itself."""
        raise NotImplementedError

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        raise NotImplementedError

    def extra_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Trainable parameters besides the retriever's (saved in checkpoints), usually none."""
        return {}

    def extra_learning_rates(self) -> dict[str, float]:
        """Own learning rates for some of `extra_parameters` (by name); the others use train.lr."""
        return {}

    def summary(self) -> str | None:
        """A line for the end of training (e.g. cache statistics), or None."""
        return None

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        """Compute ahead of training what training would compute and keep (`dreamir train --precompute`),
        e.g. on a GPU for a run that then trains elsewhere; returns a line saying what was done."""
        raise ValueError(
            f"the '{self.name}' objective computes nothing ahead of training (dream_distill and replug do)"
        )


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    metrics: dict[str, float]
    # The retriever's candidate scores s (B, N_max) and their mask, for terms the trainer adds to
    # every objective (the anchor of `train.anchor`).
    scores: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def candidate_scores(
    retriever: Retriever, examples: list[Example], queries: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Retriever scores s (B, N_max) and a (B, N_max) mask of real candidates (`queries`: the
    query embeddings, when the caller has them already)."""
    n_max = max(len(ex.candidates) for ex in examples)
    if queries is None:
        queries = retriever.embed([ex.query for ex in examples], "query")
    flat_docs = [c for ex in examples for c in ex.candidates]
    docs = retriever.embed(flat_docs, "document")
    mask = torch.zeros((len(examples), n_max), dtype=torch.bool, device=queries.device)
    rows, start = [], 0
    for b, ex in enumerate(examples):
        n = len(ex.candidates)
        rows.append(F.pad(docs[start : start + n] @ queries[b], (0, n_max - n)))
        mask[b, :n] = True
        start += n
    return torch.stack(rows), mask


class TemperatureConfig(StrictConfig):
    """The τ of softmax(s/τ) over the retriever's candidate scores, as DREAM and DREAM-distill set it."""

    temperature: float = Field(0.05, gt=0)
    # τ as a trainable parameter starting at `temperature` (an untrained retriever's scores are nearly equal,
    # so a fixed τ leaves the weights uniform), with its own learning rate.
    learn_temperature: bool = False
    temperature_lr: float = Field(1e-2, gt=0)


class Temperature:
    """A softmax temperature τ: fixed, or learnable — a trainable log τ (so τ stays positive) starting at
    `value`, with its own learning rate, since the retriever's (~1e-5) would leave it where it began."""

    def __init__(self, value: float, learnable: bool = False, lr: float = 1e-2) -> None:
        self.value, self.lr = value, lr
        self.log_value = torch.nn.Parameter(torch.tensor(math.log(value))) if learnable else None

    @classmethod
    def from_config(cls, config: TemperatureConfig) -> Temperature:
        return cls(config.temperature, config.learn_temperature, config.temperature_lr)

    def __call__(self) -> torch.Tensor | float:
        return self.log_value.exp() if self.log_value is not None else self.value

    def current(self) -> float:
        return float(self.log_value.detach().exp()) if self.log_value is not None else self.value

    def parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        return {name: self.log_value} if self.log_value is not None else {}


def log_doc_weights(scores: torch.Tensor, mask: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """log softmax(s/τ) over each example's real candidates; padding candidates get -inf."""
    return torch.log_softmax((scores / temperature).masked_fill(~mask, float("-inf")), dim=-1)
