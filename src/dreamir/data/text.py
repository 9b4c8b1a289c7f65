"""Unlabelled text (or question/answer pairs) → training examples (METHOD §1.5).

Documents are chunked by words at sentence boundaries; for each chunk, q = its first half,
y = its second half, and the candidates are the top-N BM25 neighbours of q among the OTHER
chunks (never the chunk itself), deduplicated. Every example records the document its query came
from (`source`) and each candidate's (`candidate_sources`): neighbours are often other chunks of the
same document, which a contrastive objective must not treat as negatives. Deterministic for a given
seed. Benchmark queries and qrels are never read here.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from tqdm.auto import tqdm

from dreamir.data.jsonl import DataError, iter_jsonl
from dreamir.data.training import DataStats, Example
from dreamir.settings import StrictConfig

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_words(text: str) -> list[str]:
    return text.split()


def read_corpus(path: str | os.PathLike, stats: DataStats | None = None) -> dict[str, str]:
    """Documents of a corpus JSONL ({"_id" or "id", "text", optional "title"}; BEIR corpus.jsonl works),
    as id → title + text. A document without an id is named by its line ("line 12")."""
    stats = stats if stats is not None else DataStats()
    documents: dict[str, str] = {}
    for line, obj in iter_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(path, line, "missing or not a string", "text")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DataError(path, line, "not a string", "title")
        raw_id = obj.get("_id", obj.get("id"))
        doc_id = f"line {line}" if raw_id is None else str(raw_id)
        if doc_id in documents:
            raise DataError(path, line, f"duplicate document id {doc_id!r}", "_id")
        joined = f"{title} {text}".strip() if title else text.strip()
        if not joined:
            stats.add("skipped_empty_document")
            continue
        documents[doc_id] = joined
    return documents


def chunk_text(text: str, chunk_words: int = 96, min_words: int = 24) -> list[str]:
    """Chunks of about `chunk_words` words that end at sentence boundaries where possible."""
    chunks: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while len(words) > chunk_words:  # one huge sentence: cut it by words
            if current:
                chunks.append(" ".join(current))
                current = []
            chunks.append(" ".join(words[:chunk_words]))
            words = words[chunk_words:]
        if current and len(current) + len(words) > chunk_words:
            chunks.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        chunks.append(" ".join(current))
    return [c for c in chunks if len(c.split()) >= min_words]


class BuildConfig(StrictConfig):
    """How `build-data` (and compare) turn unlabelled text into training examples."""

    candidates: int = Field(8, gt=0)  # BM25-mined candidates per example
    chunk_words: int = Field(96, gt=0)
    min_words: int | None = Field(None, gt=0)  # shorter chunks are dropped; default a quarter of chunk_words
    max_examples: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _default_min_words(cls, data: Any) -> Any:
        chunk_words = data.get("chunk_words", 96) if isinstance(data, dict) else None
        if isinstance(chunk_words, int) and data.get("min_words") is None:
            data = {**data, "min_words": max(1, chunk_words // 4)}
        return data


def bm25_index(texts: list[str]):
    import bm25s
    import Stemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    return retriever, stemmer


Documents = Mapping[str, str] | Sequence[str]  # id → text, or texts (ids are their positions)


@dataclass
class Chunks:
    texts: list[str]
    sources: list[str]  # the id of the document each chunk was cut from


def corpus_chunks(documents: Documents, settings: BuildConfig, stats: DataStats) -> Chunks:
    items = documents.items() if isinstance(documents, Mapping) else ((str(i), t) for i, t in enumerate(documents))
    chunks = Chunks([], [])
    for doc_id, text in items:
        pieces = chunk_text(text, settings.chunk_words, settings.min_words or 1)
        if not pieces:
            stats.add("documents_too_short")
        chunks.texts.extend(pieces)
        chunks.sources.extend([doc_id] * len(pieces))
    stats.add("chunks", len(chunks.texts))
    return chunks


def mine_candidates(
    chunks: list[str],
    queries: list[str],
    exclude: list[int | None],
    num_candidates: int,
    stats: DataStats,
    show_progress: bool = True,
) -> list[list[int]]:
    """Indices of the top-N BM25 chunks for each query, never chunk `exclude[i]` and no text twice."""
    import bm25s

    retriever, stemmer = bm25_index(chunks)
    want = min(len(chunks), num_candidates * 2 + 1)  # room for the excluded chunk and duplicates
    results, _ = retriever.retrieve(
        bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False),
        k=want,
        show_progress=False,
        n_threads=1,
    )
    mined = []
    for row in tqdm(range(len(queries)), desc="mine candidates", disable=not show_progress):
        own = exclude[row]
        seen: set[str] = {chunks[own]} if own is not None else set()
        candidates = []
        for hit in results[row]:
            text = chunks[int(hit)]
            if int(hit) == own or text in seen:
                continue
            seen.add(text)
            candidates.append(int(hit))
            if len(candidates) == num_candidates:
                break
        if len(candidates) < num_candidates:
            stats.add("examples_with_fewer_candidates")
        mined.append(candidates)
    return mined


def _enough_chunks(chunks: Chunks, settings: BuildConfig, need_more: int) -> None:
    if len(chunks.texts) < settings.candidates + need_more:
        raise ValueError(
            f"only {len(chunks.texts)} chunks of ≥{settings.min_words} words: need at least "
            f"{settings.candidates + need_more} to mine {settings.candidates} candidates per example"
        )


def _sampled_order(size: int, settings: BuildConfig) -> list[int]:
    """A seeded permutation of range(size), cut to `max_examples`."""
    order = list(range(size))
    random.Random(settings.seed).shuffle(order)
    return order if settings.max_examples is None else order[: settings.max_examples]


def build_self_supervised(
    documents: Documents, settings: BuildConfig, stats: DataStats | None = None, show_progress: bool = True
) -> list[Example]:
    stats = stats if stats is not None else DataStats()
    chunks = corpus_chunks(documents, settings, stats)
    _enough_chunks(chunks, settings, need_more=1)  # the chunk itself is never its own candidate
    order = _sampled_order(len(chunks.texts), settings)
    halves = [chunks.texts[i].split() for i in order]
    queries = [" ".join(w[: len(w) // 2]) for w in halves]
    mined = mine_candidates(chunks.texts, queries, list(order), settings.candidates, stats, show_progress)
    return [
        Example(
            query,
            " ".join(words[len(words) // 2 :]),
            [chunks.texts[c] for c in hits],
            source=chunks.sources[own],
            candidate_sources=[chunks.sources[c] for c in hits],
        )
        for own, query, words, hits in zip(order, queries, halves, mined, strict=True)
    ]


def read_qa_pairs(path: str | os.PathLike, stats: DataStats) -> list[tuple[str, str]]:
    """Question/answer pairs from JSONL: {"question", "answer"} (or {"query", "target"})."""
    pairs = []
    for line, obj in iter_jsonl(path):
        fields = ("question", "answer") if "question" in obj or "answer" in obj else ("query", "target")
        values = []
        for name in fields:
            value = obj.get(name)
            if not isinstance(value, str):
                raise DataError(path, line, "missing or not a string (expected question/answer)", name)
            values.append(value.strip())
        if not all(values):
            stats.add("skipped_empty_pair")
            continue
        pairs.append((values[0], values[1]))
    if not pairs:
        raise DataError(path, None, "no usable question/answer pairs")
    return pairs


def build_from_qa(
    pairs: list[tuple[str, str]],
    documents: Documents,
    settings: BuildConfig,
    stats: DataStats | None = None,
    show_progress: bool = True,
) -> list[Example]:
    """q = question, y = answer, candidates = the question's top-N BM25 chunks of the corpus (METHOD §1.5)."""
    stats = stats if stats is not None else DataStats()
    chunks = corpus_chunks(documents, settings, stats)
    _enough_chunks(chunks, settings, need_more=0)
    order = _sampled_order(len(pairs), settings)
    chosen = [pairs[i] for i in order]
    mined = mine_candidates(
        chunks.texts, [q for q, _ in chosen], [None] * len(chosen), settings.candidates, stats, show_progress
    )
    return [
        Example(q, a, [chunks.texts[c] for c in hits], candidate_sources=[chunks.sources[c] for c in hits])
        for (q, a), hits in zip(chosen, mined, strict=True)
    ]


def examples_to_rows(examples: list[Example]) -> Iterable[dict]:
    for ex in examples:
        row = {"query": ex.query, "target": ex.target, "candidates": ex.candidates}
        if ex.positive is not None:
            row["positive"] = ex.positive
        if ex.source is not None:
            row["source"] = ex.source
        if ex.candidate_sources is not None:
            row["candidate_sources"] = ex.candidate_sources
        yield row


def resolve_corpus_path(path: str | os.PathLike) -> Path:
    """Accept a corpus JSONL or a BEIR folder (its corpus.jsonl)."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found: {path}")
    return path
