"""What every training objective shares: how it is built, its output, the retriever's candidate scores.

An objective is a plug-in loss (an `nn.Module`, as sentence-transformers' losses are): a small class configured
by its own config section, called with a micro-batch of examples (text) and their frozen-LLM token ids,
returning a loss whose gradient trains the retriever (and the loss's own parameters: a learnable τ, Revela's
LM adapters). The trainer never names an objective: `dreamir.objectives.build_objective` reads
`train.objective` (a name in `OBJECTIVES` or a weighted sum of them), calls each class's `build`, where the
objective prepares what else it needs (DREAM: its head set and document cache), and adds the anchor term; the
trainer loads the frozen LLM when any term `needs_llm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dreamir.data.training import Example, TokenizedExample
from dreamir.distributed import ProcessGroup
from dreamir.heads import run_head_set
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.settings import RunSettings, StrictConfig


@dataclass
class ObjectiveContext:
    """What a run offers an objective while it builds itself."""

    config: RunSettings  # a RunConfig: the run's settings plus every objective's section
    retriever: Retriever
    lm: FrozenLM | None
    examples: list[Example]
    run_dir: Path
    group: ProcessGroup = field(default_factory=ProcessGroup)

    def heads(self, lm: FrozenLM) -> list[tuple[int, int]]:
        """The run's head set H (the one place that decides it: `heads.run_head_set`)."""
        layout = self.config.dream.layout  # type: ignore[attr-defined]  # DREAM's layout: the judge's injection
        return run_head_set(self.config, layout, lm, self.examples, self.run_dir, self.group)

    def require_lm(self, name: str) -> FrozenLM:
        if self.lm is None:
            raise ValueError(f"objective '{name}' needs the frozen LLM")
        return self.lm


class Objective(nn.Module):
    """A training loss over the retriever (sentence-transformers' shape: a loss is a module that holds the model
    it trains). Its own parameters (a learnable τ, Revela's LM adapters) are trained beside the retriever's and
    checkpointed by name; a submodule with a `learning_rate` trains its parameters at that rate. The retriever
    and frozen models are held as plain attributes, not submodules: they are not the loss's parameters."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[StrictConfig]] = StrictConfig  # its section of the run config, `<name>:`
    needs_llm: ClassVar[bool] = True  # False: the trainer never loads the frozen LLM for it
    precomputes: ClassVar[bool] = False  # True: `precompute` computes something ahead of training
    uses_heads: ClassVar[bool] = False  # True: reads the run's `heads:` set (selected label-free when absent)
    # Objective sections of the run config it reads besides its own (`<name>:`): the other objectives' sections
    # do not change what it trains, so a finished run is reused (or resumed) across them.
    also_reads: ClassVar[tuple[str, ...]] = ()

    def __init__(self, retriever: Retriever) -> None:
        super().__init__()
        object.__setattr__(self, "retriever", retriever)  # not a submodule: the trainer owns its parameters

    @classmethod
    def sections_read(cls) -> tuple[str, ...]:
        return (cls.name, *cls.also_reads)

    @classmethod
    def build(cls, context: ObjectiveContext) -> Objective:
        """The objective for a run: its own config section plus whatever it prepares itself."""
        raise NotImplementedError

    def forward(
        self, examples: list[Example], tokenized: list[TokenizedExample], batch: ScoredBatch | None = None
    ) -> ObjectiveOutput:
        """The loss of a micro-batch; `batch` carries the retriever's scores when another term of a sum has
        computed them already (one retriever pass per step, whatever the number of terms)."""
        raise NotImplementedError

    def summary(self) -> str | None:
        """A line for the end of training (e.g. cache statistics), or None."""
        return None

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        """A line for the start of training (e.g. how much of a kept signal is stored already), or None."""
        return None

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool) -> str:
        """Compute ahead of training what training would compute and keep (`dreamir train --precompute`),
        e.g. on a GPU for a run that then trains elsewhere; returns a line saying what was done."""
        raise ValueError(
            f"the '{self.name}' objective computes nothing ahead of training (dream_distill and replug do)"
        )


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """A loss's own trainable parameters by name (what a checkpoint keeps of it)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def own_learning_rates(module: nn.Module) -> dict[str, float]:
    """Parameters (by name) that train at their submodule's own `learning_rate` instead of train.lr."""
    rates: dict[str, float] = {}
    for prefix, sub in module.named_modules():
        rate = getattr(sub, "learning_rate", None)
        if rate is not None:
            for name, p in sub.named_parameters(recurse=False):
                if p.requires_grad:
                    rates[f"{prefix}.{name}" if prefix else name] = rate
    return rates


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    metrics: dict[str, float]
    # The retriever's candidate scores s (B, N_max) and their mask, when the objective computed them.
    scores: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def candidate_mask(examples: list[Example], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, N_max): True at each example's real candidates."""
    n_max = max(len(ex.candidates) for ex in examples)
    mask = torch.zeros((len(examples), n_max), dtype=torch.bool, device=device)
    for b, ex in enumerate(examples):
        mask[b, : len(ex.candidates)] = True
    return mask


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
    rows, start = [], 0
    for b, ex in enumerate(examples):
        n = len(ex.candidates)
        rows.append(F.pad(docs[start : start + n] @ queries[b], (0, n_max - n)))
        start += n
    return torch.stack(rows), candidate_mask(examples, queries.device)


class ScoredBatch:
    """A micro-batch and the retriever's embeddings of it, computed on first use and shared by every term of a
    sum: query embeddings, then the (B, N_max) candidate scores and their mask."""

    def __init__(self, retriever: Retriever, examples: list[Example]) -> None:
        self.retriever, self.examples = retriever, examples
        self._queries: torch.Tensor | None = None
        self._scores: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def with_scores(
        cls, retriever: Retriever, examples: list[Example], scores: torch.Tensor, mask: torch.Tensor
    ) -> ScoredBatch:
        """A batch whose candidate scores are given (e.g. to evaluate a loss at chosen scores)."""
        batch = cls(retriever, examples)
        batch._scores = (scores, mask)
        return batch

    @property
    def queries(self) -> torch.Tensor:
        if self._queries is None:
            self._queries = self.retriever.embed([ex.query for ex in self.examples], "query")
        return self._queries

    def scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._scores is None:
            self._scores = candidate_scores(self.retriever, self.examples, self.queries)
        return self._scores


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) over each example's real candidates, (B,); P and Q given as log-probabilities, −inf at padding."""
    return (log_p.exp() * (log_p - log_q)).masked_fill(~mask, 0).sum(-1)


class TemperatureConfig(StrictConfig):
    """The τ of softmax(s/τ) over the retriever's scores: every objective's `temperature`, learnable in each."""

    temperature: float = Field(0.05, gt=0)
    # τ as a trainable parameter starting at `temperature` (an untrained retriever's scores are nearly equal,
    # so a fixed τ leaves the weights uniform), with its own learning rate.
    learn_temperature: bool = False
    temperature_lr: float = Field(1e-2, gt=0)


class Temperature(nn.Module):
    """A softmax temperature τ: fixed, or learnable — a trainable log τ (so τ stays positive) starting at
    `value`, trained at its own `learning_rate`, since the retriever's (~1e-5) would leave it where it began."""

    def __init__(self, value: float, learnable: bool = False, lr: float = 1e-2) -> None:
        super().__init__()
        self.value = value
        self.learning_rate = lr if learnable else None
        self.log_value = nn.Parameter(torch.tensor(math.log(value))) if learnable else None

    @classmethod
    def from_config(cls, config: TemperatureConfig) -> Temperature:
        return cls(config.temperature, config.learn_temperature, config.temperature_lr)

    def forward(self) -> torch.Tensor | float:
        return self.log_value.exp() if self.log_value is not None else self.value

    def current(self) -> float:
        return float(self.log_value.detach().exp()) if self.log_value is not None else self.value


def log_doc_weights(scores: torch.Tensor, mask: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """log softmax(s/τ) over each example's real candidates; padding candidates get -inf."""
    return torch.log_softmax((scores / temperature).masked_fill(~mask, float("-inf")), dim=-1)
