"""A ranking computed elsewhere — a TREC run file (`qid Q0 docid rank score tag` per line: `dreamir search --queries
--out`, Pyserini, trec_eval's input) — as a model spec `run:FILE`, so that `eval` scores it beside dreamir's models
with the same metrics and paired tests, and fusion combines it with them. It gives no vectors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from dreamir.data.jsonl import DataError, require_regular_file
from dreamir.retrieval.base import Encoder
from dreamir.retrieval.search import Run

TREC_FIELDS = ("query id", "Q0", "document id", "rank", "score", "tag")


def read_trec_run(path: str | os.PathLike) -> tuple[Run, dict[tuple[str, str], int]]:
    """{query id: {doc id: score}} and the line of every (query, document); a malformed line is named with its
    field, a document ranked twice for one query is refused."""
    require_regular_file(path)
    run: Run = {}
    lines: dict[tuple[str, str], int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, None, f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(TREC_FIELDS):
            raise DataError(path, number, f"{len(fields)} fields, a TREC run line has 6: {' '.join(TREC_FIELDS)}")
        query, _, doc, _, score_text, _ = fields
        try:
            score = float(score_text)
        except ValueError:
            raise DataError(path, number, f"'{score_text}' is not a number", "score") from None
        if not math.isfinite(score):
            raise DataError(path, number, f"'{score_text}' is not a finite number", "score")
        if (query, doc) in lines:
            raise DataError(
                path, number, f"document '{doc}' ranked twice for query '{query}' (first on line {lines[query, doc]})"
            )
        lines[query, doc] = number
        run.setdefault(query, {})[doc] = score
    if not run:
        raise DataError(path, None, "no ranking in the file")
    return run, lines


class RunFileEncoder(Encoder):
    """The hits a run file holds for each query asked (its top k by score); the queries it lacks get none."""

    def __init__(self, path: str, spec: str) -> None:
        self.path, self.label, self.spec = Path(path), spec, spec

    def encode_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        raise ValueError(
            f"{self.label} is a ranking read from a file, not a model: eval and fusion take it, index "
            "and search need a model"
        )

    def retrieve(
        self,
        corpus: dict[str, str],
        queries: dict[str, str],
        k: int = 100,
        ignore_identical_ids: bool = True,
        show_progress: bool = True,
    ) -> Run:
        run, lines = read_trec_run(self.path)
        if not run.keys() & queries.keys():
            raise DataError(self.path, None, f"none of its {len(run)} queries is among the {len(queries)} evaluated")
        out: Run = {}
        for query in queries:
            hits = run.get(query, {})
            if outside := [doc for doc in hits if doc not in corpus]:
                raise DataError(
                    self.path,
                    lines[query, outside[0]],
                    f"document '{outside[0]}' is not in the corpus evaluated ({len(outside)} such hits for query "
                    f"'{query}'): a run from another corpus, or over more documents than a --sample-docs sample, "
                    "cannot be scored beside models that searched this one",
                )
            kept = [(d, s) for d, s in hits.items() if not (ignore_identical_ids and d == query)]
            out[query] = dict(sorted(kept, key=lambda item: -item[1])[:k])
        return out
