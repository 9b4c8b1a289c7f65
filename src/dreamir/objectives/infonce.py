"""InfoNCE (contrastive, docs/method.md): the query against its positive, the example's candidates and
the other examples' positives.

Positive = the labelled positive when the example has one, else the target (for self-supervised
chunks: the chunk's other half). τ = 0.05. Needs no LLM.

Decision beyond docs/method.md (which says negatives = the other candidates + in-batch): a candidate or
in-batch positive cut from the query's OWN document is not used as a negative when the data says so
(`source` / `candidate_sources`, written by `build-data`). BM25 neighbours of a chunk are very often
the same abstract's other chunks (38% of candidates in the SciFact comparison data); as negatives
they teach the retriever that topical sameness is irrelevance. `same_document_negatives: true`
restores the literal rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dreamir.data.training import Example, TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import (
    Objective,
    ObjectiveContext,
    ObjectiveOutput,
    ScoredBatch,
    Temperature,
    TemperatureConfig,
)


class InfoNCEConfig(TemperatureConfig):
    # True: chunks of the query's own document count as negatives too (docs/method.md read literally).
    same_document_negatives: bool = False


def contrastive_logits(
    queries: torch.Tensor,
    positives: torch.Tensor,
    candidate_scores: torch.Tensor,
    candidate_mask: torch.Tensor,
    in_batch_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, B + N): column b' < B is q_b · positive_b' (in-batch), then the example's own candidates.
    Masked entries (False) get -inf, i.e. are not negatives."""
    in_batch = queries @ positives.T
    if in_batch_mask is not None:
        in_batch = in_batch.masked_fill(~in_batch_mask, float("-inf"))
    return torch.cat([in_batch, candidate_scores.masked_fill(~candidate_mask, float("-inf"))], dim=1)


def negative_masks(
    examples: list[Example], candidate_mask: torch.Tensor, same_document_negatives: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which candidates and which in-batch positives may serve as negatives: never the labelled
    positive itself, and (unless `same_document_negatives`) nothing from the query's own document."""
    candidates = candidate_mask.clone()
    in_batch = torch.ones((len(examples), len(examples)), dtype=torch.bool, device=candidate_mask.device)
    for b, ex in enumerate(examples):
        if ex.positive is not None:
            candidates[b, ex.positive] = False
        if same_document_negatives or ex.source is None:
            continue
        for j in range(len(ex.candidates)):
            if ex.same_document(j):
                candidates[b, j] = False
        for other, ex2 in enumerate(examples):
            if other != b and ex2.source == ex.source:
                in_batch[b, other] = False
    return candidates, in_batch


class InfoNCEObjective(Objective):
    name = "infonce"
    Config = InfoNCEConfig
    needs_llm = False

    def __init__(self, retriever: Retriever, config: InfoNCEConfig | None = None) -> None:
        super().__init__(retriever)
        self.config = config or InfoNCEConfig()
        self.temperature = Temperature.from_config(self.config)

    @classmethod
    def build(cls, context: ObjectiveContext) -> InfoNCEObjective:
        return cls(context.retriever, context.config.infonce)

    def forward(
        self,
        examples: list[Example],
        tokenized: list[TokenizedExample] | None = None,
        batch: ScoredBatch | None = None,
    ) -> ObjectiveOutput:
        batch = batch or ScoredBatch(self.retriever, examples)
        scores, mask = batch.scores()
        positives = self.retriever.embed([positive_text(ex) for ex in examples], "document")
        candidates, in_batch = negative_masks(examples, mask, self.config.same_document_negatives)
        logits = contrastive_logits(batch.queries, positives, scores, candidates, in_batch) / self.temperature()
        labels = torch.arange(len(examples), device=logits.device)
        loss = F.cross_entropy(logits, labels)
        accuracy = float((logits.argmax(-1) == labels).float().mean())
        metrics = {"loss": loss.item(), "accuracy": accuracy, "tau": self.temperature.current()}
        return ObjectiveOutput(loss, metrics, scores, mask)


def positive_text(example: Example) -> str:
    return example.target if example.positive is None else example.candidates[example.positive]
