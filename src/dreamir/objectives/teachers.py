"""Teachers: a distribution over each example's candidates that a retriever is distilled into (`Distill`).

- `JudgeGradient`: DREAM-distill's P_J = softmax(−g / τ_J), g = ∂L/∂log w at uniform weights — the frozen judge's
  target loss through its injected heads (docs/method.md, "DREAM-distill"); kept per example in a signal store.
- `LMLikelihood`: REPLUG's P_LM = softmax(−ℓ / τ_lm), ℓ_i the target's NLL after candidate i alone; kept likewise.
- `Start`: P_start = softmax(s_start / τ) from a frozen copy of the retriever as it was when built (before training
  and before any checkpoint is loaded).
- `Product(a, b)`: P_a · P_b renormalised (a product of experts).

A teacher is called with a micro-batch (examples and their frozen-LLM token ids) and returns log P, (B, N_max) with
−inf past each example's candidates. Teachers do not depend on the retriever being trained, so they hold no graph.
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from dreamir.data.training import Example, TokenizedExample
from dreamir.heads import check_heads_fit
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.lm_passes import candidate_nll, weight_gradient
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import candidate_mask, candidate_scores, log_doc_weights
from dreamir.objectives.signal_store import ExampleSignalStore, SignalCacheConfig


class Teacher(nn.Module):
    def forward(self, examples: list[Example], tokenized: list[TokenizedExample]) -> torch.Tensor:
        """log P_T (B, N_max) on the CPU, −inf at padding."""
        raise NotImplementedError

    def precompute(
        self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool, owner: str
    ) -> str | None:
        """Fill the teacher's signal store ahead of training and say what was done; None: it keeps nothing."""
        return None

    def summary(self) -> str | None:
        return None

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        """A line for the start of training: how much of the signal the teacher keeps is stored already."""
        return None


def signal_log_distribution(values: list[torch.Tensor], mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(−v / τ) over each example's candidates from per-example values v (a loss: lower is better)."""
    logits = torch.zeros(mask.shape, dtype=torch.float32)
    for b, v in enumerate(values):
        logits[b, : len(v)] = -v.float()
    return log_doc_weights(logits, mask, temperature)


def standardised(g: torch.Tensor) -> torch.Tensor:
    """g over one example's candidates divided by its spread (`judge_scale: standardised`)."""
    return (g - g.mean()) / g.std().clamp_min(1e-12)


class JudgeGradient(Teacher):
    """P_J from the judge's gradient g, per example from the store or one judge pass over the examples it lacks.
    `scale="standardised"` divides each example's g by its spread first, so τ_J does not depend on the judge's
    loss scale."""

    def __init__(
        self,
        lm: FrozenLM,
        heads: list[tuple[int, int]],
        cache: SignalCacheConfig,
        temperature: float,
        scale: str = "standardised",
        mode: str = "bias",
        layout: str = "separate",
    ) -> None:
        super().__init__()
        check_heads_fit(heads, lm, "DREAM-distill")
        self.lm, self.heads, self.mode, self.layout = lm, heads, mode, layout
        self.temperature, self.scale = temperature, scale
        heads_id = hashlib.sha256(repr(sorted(heads)).encode()).hexdigest()[:12]
        tag = f"judge-signal|{lm.source}|{lm.dtype}|{mode}|{layout}|{lm.sink_token_id}|{heads_id}"
        self.signal = ExampleSignalStore("judge signal", tag, cache, self._judge_pass)

    def _judge_pass(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        packed = self.lm.pack(tokenized, self.layout)
        gradient, _ = weight_gradient(self.lm, packed, self.heads, self.mode)
        return [gradient[slot, : len(t.docs)] for slot, t in enumerate(tokenized)]

    def forward(self, examples: list[Example], tokenized: list[TokenizedExample]) -> torch.Tensor:
        values = [
            standardised(g.float()) if self.scale == "standardised" and len(g) > 1 else g
            for g in self.signal(tokenized)
        ]
        return signal_log_distribution(values, candidate_mask(examples), self.temperature)

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool, owner: str) -> str:
        return self.signal.precompute(tokenized, batch_size, show_progress, owner)

    def summary(self) -> str | None:
        return self.signal.summary("judge passes")

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        return self.signal.coverage(tokenized, "the judge runs")


class LMLikelihood(Teacher):
    """P_LM from ℓ_i = −log p(y | d_i, q) per target token (`score="mean"`) or in total (`"sum"`)."""

    def __init__(
        self, lm: FrozenLM, cache: SignalCacheConfig, temperature: float, score: str = "mean", lm_batch: int = 16
    ) -> None:
        super().__init__()
        self.lm, self.temperature, self.score, self.lm_batch = lm, temperature, score, lm_batch
        tag = f"replug-nll|{lm.source}|{lm.dtype}|{lm.sink_token_id}|{score}"
        self.nll = ExampleSignalStore("candidate NLL", tag, cache, self._lm_pass)

    @torch.no_grad()
    def _lm_pass(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        return candidate_nll(self.lm, tokenized, self.score, self.lm_batch)

    def forward(self, examples: list[Example], tokenized: list[TokenizedExample]) -> torch.Tensor:
        return signal_log_distribution(self.nll(tokenized), candidate_mask(examples), self.temperature)

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool, owner: str) -> str:
        return self.nll.precompute(tokenized, batch_size, show_progress, owner)

    def summary(self) -> str | None:
        return self.nll.summary("LLM passes")

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        return self.nll.coverage(tokenized, "the LLM runs")


class Start(Teacher):
    """log P_start from a frozen copy of the retriever as it is when this is built; computed once per example,
    keyed by its query and candidates."""

    def __init__(self, retriever: Retriever, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        start = copy.deepcopy(retriever).eval()
        for p in start.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "start", start)  # frozen: not a submodule, not in a checkpoint
        self._log_p: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}

    @torch.no_grad()
    def forward(self, examples: list[Example], tokenized: list[TokenizedExample] | None = None) -> torch.Tensor:
        missing = [ex for ex in examples if self._key(ex) not in self._log_p]
        if missing:
            scores, mask = candidate_scores(self.start, missing)
            for row, ex in zip(log_doc_weights(scores, mask, self.temperature).cpu(), missing, strict=True):
                self._log_p[self._key(ex)] = row[: len(ex.candidates)]
        n_max = max(len(ex.candidates) for ex in examples)
        out = torch.full((len(examples), n_max), float("-inf"))
        for b, ex in enumerate(examples):
            out[b, : len(ex.candidates)] = self._log_p[self._key(ex)]
        return out

    @staticmethod
    def _key(example: Example) -> tuple[str, tuple[str, ...]]:
        return example.query, tuple(example.candidates)


class Product(Teacher):
    """P ∝ P_a · P_b over each example's candidates."""

    def __init__(self, a: Teacher, b: Teacher) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, examples: list[Example], tokenized: list[TokenizedExample]) -> torch.Tensor:
        log_p = self.b(examples, tokenized)
        log_a = self.a(examples, tokenized).to(log_p.device)
        mask = candidate_mask(examples, log_p.device)
        return torch.log_softmax((log_a + log_p).masked_fill(~mask, float("-inf")), dim=-1)

    def precompute(
        self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool, owner: str
    ) -> str | None:
        done = [t.precompute(tokenized, batch_size, show_progress, owner) for t in (self.a, self.b)]
        return "; ".join(line for line in done if line) or None

    def summary(self) -> str | None:
        return "; ".join(s for s in (self.a.summary(), self.b.summary()) if s) or None

    def plan(self, tokenized: list[TokenizedExample]) -> str | None:
        return "; ".join(s for s in (self.a.plan(tokenized), self.b.plan(tokenized)) if s) or None
