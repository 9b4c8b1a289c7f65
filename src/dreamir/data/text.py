"""Unlabelled text (or question/answer pairs) → training examples (docs/method.md).

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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from tqdm.auto import tqdm

from dreamir.data.jsonl import DataError, iter_jsonl, require_regular_file
from dreamir.data.questions import QuestionConfig, write_questions
from dreamir.data.training import DataStats, Example
from dreamir.settings import StrictConfig

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_words(text: str) -> list[str]:
    return text.split()


def chunk_text(text: str, chunk_words: int = 96, min_words: int = 24) -> list[str]:
    """Chunks of about `chunk_words` words that end at sentence boundaries where possible."""
    return [chunk for _, chunk in chunk_spans(text, chunk_words, min_words)]


def chunk_spans(text: str, chunk_words: int = 96, min_words: int = 24) -> list[tuple[int, str]]:
    """`chunk_text`'s chunks with the index of each one's first word in `text.split()`."""
    spans: list[tuple[int, list[str]]] = []
    current: list[str] = []
    position = 0  # words of the text before `current`

    def close() -> None:
        nonlocal current, position
        if current:
            spans.append((position, current))
            position += len(current)
            current = []

    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while len(words) > chunk_words:  # one huge sentence: cut it by words
            close()
            current = words[:chunk_words]
            close()
            words = words[chunk_words:]
        if current and len(current) + len(words) > chunk_words:
            close()
        current.extend(words)
    close()
    return [(start, " ".join(words)) for start, words in spans if len(words) >= min_words]


Recipe = Literal["halves", "title", "spans", "questions"]


class BuildConfig(StrictConfig):
    """How `build-data` (and compare) turn unlabelled text into training examples.

    Recipes (q = query, y = target, candidates = the top BM25 chunks for q, never a chunk that shares
    a word with q or y, so y cannot be copied from a candidate):
    - halves: a chunk's first half is q, its second half y (one example per chunk);
    - title:  q = the document's title (its first sentence when it has none), y = the next
              `target_words` words (one example per document);
    - spans:  q and y consecutive spans of `target_words` words each, starting inside a chunk and
              free to run past its end (one example per chunk);
    - questions: q = a question a frozen instruct LLM (`questions.llm`) writes about a chunk, y = the
              chunk's first `target_words` words, candidates = BM25 chunks for q, never the chunk itself
              (one example per chunk; data/questions.py).
    """

    recipe: Recipe = "halves"
    target_words: int = Field(32, gt=0)  # title, spans: words of y (spans: of q too)
    candidates: int = Field(8, gt=0)  # BM25-mined candidates per example
    chunk_words: int = Field(96, gt=0)
    min_words: int | None = Field(None, gt=0)  # shorter chunks are dropped; default a quarter of chunk_words
    max_examples: int | None = Field(None, gt=0)
    seed: int = 0
    questions: QuestionConfig = QuestionConfig()  # the `questions` recipe's writer

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
    retriever.index(bm25_tokens(texts, stemmer), show_progress=False)
    return retriever, stemmer


def bm25_tokens(texts: list[str], stemmer=None):
    """Texts as BM25 sees them (English stop-words dropped, words stemmed): for indexing and for queries alike."""
    import bm25s
    import Stemmer

    stemmer = stemmer or Stemmer.Stemmer("english")
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)


Documents = Mapping[str, str] | Sequence[str]  # id → text, or texts (ids are their positions)


@dataclass
class Chunks:
    texts: list[str]
    sources: list[str]  # the id of the document each chunk was cut from
    starts: list[int] = field(default_factory=list)  # index of each chunk's first word in its document

    def overlapping(self, source: str, start: int, end: int) -> set[int]:
        """Chunks of document `source` that share a word with its words [start, end)."""
        return {
            i
            for i in self.by_source.get(source, ())
            if self.starts[i] < end and start < self.starts[i] + len(self.texts[i].split())
        }

    @cached_property
    def by_source(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for i, source in enumerate(self.sources):
            index.setdefault(source, []).append(i)
        return index


def document_items(documents: Documents) -> Iterable[tuple[str, str]]:
    return documents.items() if isinstance(documents, Mapping) else ((str(i), t) for i, t in enumerate(documents))


def corpus_chunks(documents: Documents, settings: BuildConfig, stats: DataStats) -> Chunks:
    chunks = Chunks([], [])
    for doc_id, text in document_items(documents):
        pieces = chunk_spans(text, settings.chunk_words, settings.min_words or 1)
        if not pieces:
            stats.add("documents_too_short")
        for start, piece in pieces:
            chunks.texts.append(piece)
            chunks.sources.append(doc_id)
            chunks.starts.append(start)
    stats.add("chunks", len(chunks.texts))
    return chunks


def mine_candidates(
    chunks: list[str],
    queries: list[str],
    exclude: list[int | None] | list[set[int]],
    num_candidates: int,
    stats: DataStats,
    show_progress: bool = True,
) -> list[list[int]]:
    """Indices of the top-N BM25 chunks for each query, never the chunk(s) `exclude[i]` and no text twice."""
    import bm25s

    retriever, stemmer = bm25_index(chunks)
    widest = max((len(e) for e in exclude if isinstance(e, set)), default=1)
    want = min(len(chunks), num_candidates * 2 + widest)  # room for the excluded chunks and duplicates
    results, _ = retriever.retrieve(
        bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False),
        k=want,
        show_progress=False,
        n_threads=1,
    )
    mined = []
    for row in tqdm(range(len(queries)), desc="mine candidates", disable=not show_progress):
        own = exclude[row]
        excluded = own if isinstance(own, set) else ({own} if own is not None else set())
        seen: set[str] = {chunks[i] for i in excluded}
        candidates = []
        for hit in results[row]:
            text = chunks[int(hit)]
            if int(hit) in excluded or text in seen:
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


@dataclass
class _Piece:
    """A (q, y) cut from document `source`, and the chunks that share words with it."""

    query: str
    target: str
    source: str
    excluded: set[int]


def _halves(chunks: Chunks, settings: BuildConfig) -> list[_Piece]:
    pieces = []
    for i in _sampled_order(len(chunks.texts), settings):
        words = chunks.texts[i].split()
        half = len(words) // 2
        pieces.append(_Piece(" ".join(words[:half]), " ".join(words[half:]), chunks.sources[i], {i}))
    return pieces


def _titles(
    documents: Documents, titles: Mapping[str, str], chunks: Chunks, settings: BuildConfig, stats: DataStats
) -> list[_Piece]:
    usable = []
    for doc_id, text in document_items(documents):
        words = text.split()
        title = titles.get(doc_id)
        head = len(title.split()) if title else len(_SENTENCE_END.split(text.strip(), maxsplit=1)[0].split())
        if head + settings.target_words > len(words):
            stats.add("documents_too_short_for_recipe")
            continue
        usable.append((doc_id, words, head))
    pieces = []
    for i in _sampled_order(len(usable), settings):
        doc_id, words, head = usable[i]
        end = head + settings.target_words
        y = " ".join(words[head:end])
        pieces.append(_Piece(" ".join(words[:head]), y, doc_id, chunks.overlapping(doc_id, 0, end)))
    return pieces


def _spans(documents: Documents, chunks: Chunks, settings: BuildConfig, stats: DataStats) -> list[_Piece]:
    texts = dict(document_items(documents))
    span = settings.target_words
    rng = random.Random(settings.seed + 1)
    pieces = []
    taken: set[tuple[str, int]] = set()  # (document, start) of every piece so far
    order = list(range(len(chunks.texts)))
    random.Random(settings.seed).shuffle(order)  # the seeded order; `max_examples` counts usable pieces only
    for i in order:
        if settings.max_examples is not None and len(pieces) == settings.max_examples:
            break
        words = texts[chunks.sources[i]].split()
        if len(words) < 2 * span:
            stats.add("documents_too_short_for_recipe")
            continue
        start = chunks.starts[i] + rng.randrange(max(1, len(chunks.texts[i].split()) - span))
        # the clamp keeps (q, y) inside the document, so two chunks near its end can land on the same start
        start = min(start, len(words) - 2 * span)
        if (chunks.sources[i], start) in taken:
            stats.add("spans_repeated")
            continue
        taken.add((chunks.sources[i], start))
        q, y = " ".join(words[start : start + span]), " ".join(words[start + span : start + 2 * span])
        pieces.append(_Piece(q, y, chunks.sources[i], chunks.overlapping(chunks.sources[i], start, start + 2 * span)))
    return pieces


def _questions(chunks: Chunks, settings: BuildConfig, stats: DataStats, show_progress: bool) -> list[_Piece]:
    order = _sampled_order(len(chunks.texts), settings)
    questions = write_questions([chunks.texts[i] for i in order], settings.questions, stats, show_progress)
    return [
        _Piece(q, " ".join(chunks.texts[i].split()[: settings.target_words]), chunks.sources[i], {i})
        for i, q in zip(order, questions, strict=True)
        if q
    ]


def shortfall(built: int, settings: BuildConfig, stats: DataStats) -> str | None:
    """What to say when a recipe built fewer examples than `max_examples` asked for, and what to change."""
    if settings.max_examples is None or built >= settings.max_examples:
        return None
    short = stats.counts.get("documents_too_short_for_recipe", 0)
    advice = ""
    if short and settings.recipe in ("spans", "title"):
        need = 2 * settings.target_words if settings.recipe == "spans" else settings.target_words
        advice = (
            f": {short} pieces come from documents too short for '{settings.recipe}' (it needs ≥ {need} words"
            f"{' beyond the title' if settings.recipe == 'title' else ''}); lower --target-words (e.g. "
            f"{max(2, settings.target_words // 2)}) or use --recipe halves"
        )
    elif stats.counts.get("skipped_empty_question"):
        advice = f": the writer gave no question for {stats.counts['skipped_empty_question']} chunks"
    else:
        advice = ": the corpus has no more usable pieces; give more documents or lower --chunk-words"
    return f"built {built} of the {settings.max_examples} examples asked for{advice}"


def build_self_supervised(
    documents: Documents,
    settings: BuildConfig,
    stats: DataStats | None = None,
    show_progress: bool = True,
    titles: Mapping[str, str] | None = None,
) -> list[Example]:
    """Examples from unlabelled documents by `settings.recipe` (`titles`: see `read_corpus`)."""
    stats = stats if stats is not None else DataStats()
    chunks = corpus_chunks(documents, settings, stats)
    _enough_chunks(chunks, settings, need_more=1)  # the chunk itself is never its own candidate
    if settings.recipe == "halves":
        pieces = _halves(chunks, settings)
    elif settings.recipe == "title":
        pieces = _titles(documents, titles or {}, chunks, settings, stats)
    elif settings.recipe == "questions":
        pieces = _questions(chunks, settings, stats, show_progress)
    else:
        pieces = _spans(documents, chunks, settings, stats)
    if not pieces:
        if settings.recipe == "questions":
            raise ValueError(
                f"the question writer ({settings.questions.llm}) returned no usable question for any of the "
                f"{stats.counts.get('skipped_empty_question', 0)} chunks: check its prompt and max_new_tokens"
            )
        raise ValueError(f"no document is long enough for the '{settings.recipe}' recipe")
    queries = [p.query for p in pieces]
    mined = mine_candidates(
        chunks.texts, queries, [p.excluded for p in pieces], settings.candidates, stats, show_progress
    )
    return [
        Example(
            p.query,
            p.target,
            [chunks.texts[c] for c in hits],
            source=p.source,
            candidate_sources=[chunks.sources[c] for c in hits],
        )
        for p, hits in zip(pieces, mined, strict=True)
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
    """q = question, y = answer, candidates = the question's top-N BM25 chunks of the corpus (docs/method.md)."""
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
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"corpus not found: {path}")
    require_regular_file(path)
    return path
