"""Training examples: JSONL of {"query", "target", "candidates": [text, ...]}, optionally "positive"
(index of a known helpful candidate), "source" (id of the query's document) and "candidate_sources"
(one document id per candidate; `build-data` writes both).

Handling of imperfect lines (documented in README "Training data"):
- malformed JSON, a missing field or a wrong type: error naming file, line and field;
- empty query or target, or an empty candidate list: the line is skipped and counted;
- empty candidate strings are dropped and counted; duplicate candidates are dropped and counted;
- over-long texts are truncated to the frozen LLM's token limits at tokenisation and counted.
Counts are returned in `DataStats` and printed by the trainer, never swallowed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace

from dreamir.data.jsonl import DataError, iter_jsonl, require_str
from dreamir.settings import TokenLimits


@dataclass
class TokenizedExample:
    """One example in frozen-LLM token ids (already truncated)."""

    query: list[int]
    target: list[int]
    docs: list[list[int]]


@dataclass
class Example:
    query: str
    target: str
    candidates: list[str]
    positive: int | None = None  # index of a known helpful candidate (head detection, InfoNCE)
    source: str | None = None  # id of the document the query came from
    candidate_sources: list[str] | None = None  # one document id per candidate

    def same_document(self, index: int) -> bool:
        """Whether candidate `index` was cut from the query's own document (False when unknown)."""
        return (
            self.source is not None
            and self.candidate_sources is not None
            and (self.candidate_sources[index] == self.source)
        )

    def own_document_split(self) -> tuple[list[int], list[int]] | None:
        """(candidates cut from the query's own document, the others), or None unless there is at least
        one of each — the examples on which a label-free proxy can tell a good pick from a bad one."""
        own = [j for j in range(len(self.candidates)) if self.same_document(j)]
        other = [j for j in range(len(self.candidates)) if not self.same_document(j)]
        return (own, other) if own and other else None


@dataclass
class DataStats:
    counts: Counter = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no issues"


def load_examples(path: str | os.PathLike, stats: DataStats | None = None) -> list[Example]:
    stats = stats if stats is not None else DataStats()
    examples: list[Example] = []
    for line, obj in iter_jsonl(path):
        query = require_str(path, line, obj, "query", allow_empty=True)
        target = require_str(path, line, obj, "target", allow_empty=True)
        raw = obj.get("candidates")
        if raw is None:
            raise DataError(path, line, "missing", "candidates")
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise DataError(path, line, "expected a list of strings", "candidates")
        positive = obj.get("positive")
        if positive is not None and (
            isinstance(positive, bool) or not isinstance(positive, int) or not 0 <= positive < len(raw)
        ):
            problem = f"must be an integer index into candidates (0..{len(raw) - 1}), got {positive!r}"
            raise DataError(path, line, problem, "positive")
        if positive is not None and not raw[positive].strip():
            raise DataError(path, line, f"points at candidate {positive}, which is empty", "positive")
        source = obj.get("source")
        if source is not None and not isinstance(source, str):
            raise DataError(path, line, f"expected a string, got {type(source).__name__}", "source")
        sources = obj.get("candidate_sources")
        if sources is not None and (
            not isinstance(sources, list) or len(sources) != len(raw) or not all(isinstance(x, str) for x in sources)
        ):
            problem = f"expected a list of {len(raw)} strings, one per candidate"
            raise DataError(path, line, problem, "candidate_sources")
        if not query.strip():
            stats.add("skipped_empty_query")
            continue
        if not target.strip():
            stats.add("skipped_empty_target")
            continue
        kept: list[str] = []
        kept_sources: list[str] = []
        new_positive = None
        for i, cand in enumerate(raw):
            if not cand.strip():
                stats.add("dropped_empty_candidate")
            elif cand in kept:
                stats.add("dropped_duplicate_candidate")
                if i == positive:
                    new_positive = kept.index(cand)
            else:
                if i == positive:
                    new_positive = len(kept)
                kept.append(cand)
                if sources is not None:
                    kept_sources.append(sources[i])
        if not kept:
            stats.add("skipped_no_candidates")
            continue
        examples.append(
            Example(query, target, kept, new_positive, source, kept_sources if sources is not None else None)
        )
    stats.add("examples", len(examples))
    return examples


def examples_fingerprint(examples: list[Example]) -> str:
    """A hash of the examples' texts in order (what a resumed run must train on again)."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.query, ex.target, ex.candidates, ex.positive]).encode() + b"\n")
    return digest.hexdigest()[:16]


def shuffled_targets(examples: list[Example], seed: int = 0) -> list[Example]:
    """The shuffled-targets control: every example keeps its query and candidates and takes another
    example's target (its successor along a seeded cycle, so none keeps its own). The LLM's loss then
    carries no information about which candidate helps this query; what training does with it is noise."""
    if len(examples) < 2:
        raise ValueError("the shuffled-targets control needs at least 2 examples")
    order = random.Random(seed).sample(range(len(examples)), len(examples))
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    return [replace(ex, target=examples[donor[i]].target) for i, ex in enumerate(examples)]


def tokenize_examples(
    examples: list[Example], tokenize, limits: TokenLimits, stats: DataStats | None = None
) -> list[TokenizedExample]:
    """Frozen-LLM token ids per example, truncated to `limits` (counted in stats)."""
    stats = stats if stats is not None else DataStats()

    def cut(ids: list[int], limit: int, what: str) -> list[int]:
        if len(ids) > limit:
            stats.add(f"truncated_{what}")
            return ids[:limit]
        return ids

    out = []
    for ex in examples:
        # The target continues the query's text, so it is tokenised with its leading space.
        out.append(
            TokenizedExample(
                query=cut(tokenize(ex.query), limits.query, "query"),
                target=cut(tokenize(" " + ex.target.lstrip()), limits.target, "target"),
                docs=[cut(tokenize(c), limits.doc, "candidate") for c in ex.candidates],
            )
        )
    return out
