"""BEIR-format data: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv, validated.

Handling (documented in README "Evaluation data"):
- malformed JSON, non-UTF-8 bytes, a missing/non-string `_id` or `text`, a duplicate id,
  a qrels line without 3 columns or with a non-integer score: error naming file, line, field;
- a document or query whose text is empty: skipped and counted;
- a qrels line naming an unknown query or document: skipped and counted;
- queries without any qrels in the split: not evaluated, counted.
Title and text are joined as BEIR does ("title text").
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from dreamir.data.jsonl import DataError, iter_jsonl, require_str
from dreamir.data.training import DataStats


@dataclass
class BeirData:
    name: str
    corpus: dict[str, str]  # doc id → "title text"
    queries: dict[str, str]  # only queries with qrels in the split
    qrels: dict[str, dict[str, int]]
    stats: DataStats = field(default_factory=DataStats)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)


def encode_id(value: str) -> str:
    """A TREC-safe form of any id: whitespace and '%' percent-encoded (UTF-8), so `decode_id` gives it back."""
    from urllib.parse import quote

    return "".join(quote(ch, safe="") if ch.isspace() or ch == "%" else ch for ch in value)


def decode_id(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def normalise_id(value: object, path, line: int | None, field: str, encode: bool = False) -> str:
    """One rule for every id (corpus, queries, qrels): an int or a string, surrounding whitespace
    stripped; refused when empty, when it holds whitespace (a TREC run line cannot carry it; with `encode` — the
    commands' `--id-map` — it is percent-encoded instead, reversibly) or a lone surrogate (no UTF-8 form: trec_eval
    would crash on it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, line, "missing, empty or not a string", field)
    value = value.strip()
    if encode:
        value = encode_id(value)
    if any(ch.isspace() for ch in value):
        raise DataError(
            path,
            line,
            f"id {value!r} contains whitespace, which TREC run files cannot carry: pass --id-map to encode such ids "
            "reversibly (a space becomes %20)",
            field,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(path, line, f"id {value!r} is not valid Unicode (a lone surrogate)", field) from None
    return value


def _read_id(path, line: int, obj: dict, encode: bool = False) -> str:
    return normalise_id(obj.get("_id"), path, line, "_id", encode)


def read_corpus(
    path: str | os.PathLike,
    stats: DataStats | None = None,
    titles: dict[str, str] | None = None,
    trec_ids: bool = False,
    encode_ids: bool = False,
) -> dict[str, str]:
    """The one corpus reader: a JSONL of {"_id" (or "id"), "text", optional "title"} (a BEIR corpus.jsonl) as
    id → title + text; empty documents are skipped and counted. `trec_ids` (evaluation): every document needs an
    id a TREC run can carry (`normalise_id`); otherwise (training data) a document without an id is named by its
    line ("line 12"). `titles`, when given, receives each document's title (the `title` recipe needs it)."""
    stats = stats if stats is not None else DataStats()
    corpus: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        raw_id = obj.get("_id", obj.get("id"))
        if trec_ids:
            doc_id = _read_id(path, line, obj, encode_ids)
        else:
            doc_id = f"line {line}" if raw_id is None else str(raw_id).strip()
        text = require_str(path, line, obj, "text", allow_empty=True)
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DataError(path, line, f"expected a string, got {type(title).__name__}", "title")
        if doc_id in first_line:
            raise DataError(path, line, f"duplicate document id '{doc_id}' (first on line {first_line[doc_id]})", "_id")
        first_line[doc_id] = line
        joined = f"{title} {text}".strip() if title else text.strip()
        if not joined:
            stats.add("skipped_empty_documents")
            continue
        corpus[doc_id] = joined
        if titles is not None and title.strip():
            titles[doc_id] = title.strip()
    return corpus


def load_corpus(path: str | os.PathLike, stats: DataStats, encode_ids: bool = False) -> dict[str, str]:
    """A BEIR corpus for evaluation: TREC-safe ids (percent-encoded with `encode_ids`), at least one document."""
    corpus = read_corpus(path, stats, trec_ids=True, encode_ids=encode_ids)
    if not corpus:
        raise DataError(path, None, "no documents")
    return corpus


def load_queries(path: str | os.PathLike, stats: DataStats, encode_ids: bool = False) -> dict[str, str]:
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        query_id = _read_id(path, line, obj, encode_ids)
        text = require_str(path, line, obj, "text", allow_empty=True)
        if query_id in first_line:
            raise DataError(
                path, line, f"duplicate query id '{query_id}' (first on line {first_line[query_id]})", "_id"
            )
        first_line[query_id] = line
        if not text.strip():
            stats.add("skipped_empty_queries")
            continue
        queries[query_id] = text.strip()
    return queries


def load_qrels(path: str | os.PathLike, encode_ids: bool = False) -> list[tuple[int, str, str, int]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "qrels file not found")
    rows = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError(path, number, "not valid UTF-8") from None
            if not line.strip():
                continue
            cols = line.split("\t")
            if number == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(cols) != 3:
                raise DataError(
                    path,
                    number,
                    f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}",
                )
            text = cols[2].strip()
            # strictly digits: int() would read "1_0" as 10, and a score past 32 bits crashes trec_eval
            if not re.fullmatch(r"-?[0-9]{1,9}", text):
                raise DataError(path, number, f"not an integer of at most 9 digits: {cols[2]!r}", "score")
            score = int(text)
            query_id = normalise_id(cols[0], path, number, "query-id", encode_ids)
            rows.append((number, query_id, normalise_id(cols[1], path, number, "corpus-id", encode_ids), score))
    return rows


def load_beir(folder: str | os.PathLike, split: str = "test", encode_ids: bool = False) -> BeirData:
    """A BEIR folder's split, validated; `encode_ids` percent-encodes ids with whitespace (`--id-map`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder not found: {folder}")
    stats = DataStats()
    corpus = load_corpus(folder / "corpus.jsonl", stats, encode_ids)
    queries = load_queries(folder / "queries.jsonl", stats, encode_ids)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise FileNotFoundError(f"no qrels for split '{split}' in {folder} (available: {available or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, query_id, doc_id, score in load_qrels(qrels_path, encode_ids):
        if query_id not in queries:
            stats.add("qrels_skipped_unknown_query")
            continue
        if doc_id not in corpus:
            stats.add("qrels_skipped_unknown_document")
            continue
        if score < 0:
            stats.add("qrels_negative_scores")
        docs = qrels.setdefault(query_id, {})
        if doc_id in docs:
            if docs[doc_id] != score:
                raise DataError(
                    qrels_path,
                    number,
                    f"conflicting duplicate judgement of ({query_id}, {doc_id}): score {score} here, "
                    f"{docs[doc_id]} on line {first_line[(query_id, doc_id)]}",
                    "score",
                )
            stats.add("qrels_duplicate_rows")
            continue
        first_line[(query_id, doc_id)] = number
        docs[doc_id] = score
    stats.add("queries_without_qrels", sum(1 for q in queries if q not in qrels))
    no_relevant = [q for q, docs in qrels.items() if max(docs.values()) <= 0]
    if no_relevant:
        stats.add("queries_without_relevant_documents", len(no_relevant))
    if qrels and len(no_relevant) == len(qrels):
        raise DataError(qrels_path, None, "no judgement has a positive score: every metric would be 0", "score")
    judged = {q: t for q, t in queries.items() if q in qrels}
    if not queries:
        raise DataError(folder / "queries.jsonl", None, "no queries (the file is empty or every query's text is)")
    if not judged:
        raise DataError(qrels_path, None, "no query of this split has both a text and a judged document")
    return BeirData(folder.name, corpus, judged, qrels, stats)


def sample_corpus(data: BeirData, size: int, seed: int = 0) -> BeirData:
    """The same queries and qrels over a smaller corpus: every judged document of the split plus
    others drawn with `seed`, `size` documents in all (never fewer than the judged ones).

    For retrievers too slow to encode a whole corpus on the machine at hand (an LLM-sized encoder on
    CPU). Fewer distractors make scores higher than full-corpus ones: compare only runs on the same
    sample.
    """
    if size <= 0:
        raise ValueError(f"corpus sample size must be positive, got {size}")
    judged = {doc_id for docs in data.qrels.values() for doc_id in docs}
    others = sorted(doc_id for doc_id in data.corpus if doc_id not in judged)
    drawn = set(random.Random(seed).sample(others, min(len(others), max(0, size - len(judged)))))
    corpus = {doc_id: text for doc_id, text in data.corpus.items() if doc_id in judged or doc_id in drawn}
    stats = DataStats(Counter(data.stats.counts))
    stats.add("corpus_sampled_out", len(data.corpus) - len(corpus))
    return replace(data, name=f"{data.name} ({len(corpus)}-doc sample)", corpus=corpus, stats=stats)
