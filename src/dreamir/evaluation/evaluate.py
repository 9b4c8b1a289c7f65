"""Evaluate retrievers on a BEIR folder (reports: `evaluation/report.py`).

A model is any spec `retrieval/encoder.py` reads ("bm25", "promptreps:NAME", a run folder, an alias, a
folder, a hub name) or a retriever in memory. Several models give one comparison table and one plot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dreamir.data.beir import BeirData
from dreamir.evaluation.metrics import Run, evaluate_run, mean_metrics, per_query_metrics, per_query_values
from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import Encoder, ModelSpec, split_fusion_spec
from dreamir.retrieval.encoder import load_encoder
from dreamir.retrieval.fusion import choose_fusion_weight
from dreamir.retrieval.zeroshot.retrieval import ZeroShotOptions


@dataclass
class EvalResult:
    model: str
    metrics: dict[str, float]
    run: Run
    seconds: float
    per_query: dict[str, float] = field(default_factory=dict)  # nDCG@10 per judged query (paired tests)


def evaluate_model(
    spec: str | Retriever | Encoder,
    data: BeirData,
    name: str | None = None,
    k: int = 100,
    show_progress: bool = True,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    zero_shot: ZeroShotOptions | None = None,
) -> EvalResult:
    """Evaluate one model (any spec `retrieval/encoder.py` reads, or a retriever in memory). `ignore_identical_ids`
    drops a hit whose id equals the query's id (BEIR's default, which matters for ArguAna and Quora);
    `zero_shot` holds the PromptReps / DiffRetriever options."""
    start = time.perf_counter()
    encoder = load_encoder(spec, zero_shot=zero_shot, use_cache=use_cache, label=name)
    run = encoder.retrieve(data.corpus, data.queries, k, ignore_identical_ids, show_progress)
    per_query = per_query_metrics(data.qrels, run)
    return EvalResult(
        encoder.label,
        mean_metrics(data.qrels, per_query),
        run,
        time.perf_counter() - start,
        per_query_values(data.qrels, per_query, "ndcg@10"),
    )


@dataclass
class FusionChoice:
    """A `fuse:A+B` spec's weight, chosen on a dev split: the spec it became and every weight's dev nDCG@10."""

    spec: str
    chosen: str
    weight: float
    split: str
    scores: dict[float, float]

    def describe(self) -> str:
        grid = ", ".join(f"{w:g} {100 * v:.1f}" for w, v in self.scores.items())
        return f"{self.spec}: weight {self.weight:g} chosen on split '{self.split}' (dev nDCG@10 by weight: {grid})"


def choose_fusion_weights(
    specs: list[ModelSpec], dev: BeirData, split: str, use_cache: bool = True, ignore_identical_ids: bool = True
) -> tuple[list[ModelSpec], list[FusionChoice]]:
    """Every `fuse:A+B` spec without a weight becomes `fuse:W:A+B`, W the weight of A with the best mean nDCG@10
    on `dev` (a split other than the one reported: choosing on the evaluated split would flatter the fusion).
    Other specs pass through unchanged."""
    out: list[ModelSpec] = []
    choices: list[FusionChoice] = []
    for spec in specs:
        parts = split_fusion_spec(spec.text) if spec.kind == "fusion" else None
        if parts is None or parts[0] != "fuse" or parts[1] is not None:
            out.append(spec)
            continue
        _, _, first, second = parts
        sides = [
            load_encoder(ModelSpec.parse(side, False, spec.device, spec.dtype), use_cache=use_cache)
            for side in (first, second)
        ]
        weight, scores = choose_fusion_weight(
            *sides, dev.corpus, dev.queries, lambda run: evaluate_run(dev.qrels, run)["ndcg@10"], ignore_identical_ids
        )
        chosen = f"fuse:{weight:g}:{first}+{second}"
        choices.append(FusionChoice(spec.text, chosen, weight, split, scores))
        out.append(ModelSpec.parse(chosen, device=spec.device))
    return out, choices
