"""Sparse lexical representations from LM logits, their inverted index, and dense+sparse fusion (docs/method.md).

    weight(v) = log(1 + relu(logit_v)), kept only for vocabulary ids of the text's own words
    (stop-words removed), top-128, quantised to int(100 · weight).

Documents are rows of a scipy CSR matrix (documents × vocabulary), so scoring is a sparse product
over the query's few terms: an inverted index, never a dense vocabulary-size row per document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

TOP_TERMS = 128
QUANTISATION = 100
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class WordVocabulary:
    """Maps a text to the vocabulary ids of its own words (both with and without a leading space,
    since BPE vocabularies spell a word differently at the start of a text and after a space)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: dict[str, tuple[int, ...]] = {}
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])

    def ids_of_word(self, word: str) -> tuple[int, ...]:
        found = self._ids.get(word)
        if found is None:
            ids: set[int] = set()
            for form in (word, " " + word):
                ids.update(self.tokenizer(form, add_special_tokens=False)["input_ids"])
            found = tuple(sorted(ids - self.special))
            self._ids[word] = found
        return found

    def text_ids(self, text: str) -> list[int]:
        words = {w for w in _WORD.findall(text.lower()) if w not in stop_words()}
        ids: set[int] = set()
        for word in words:
            ids.update(self.ids_of_word(word))
        return sorted(ids)


def sparse_weights(logits: torch.Tensor, allowed_ids: Sequence[int], top: int = TOP_TERMS) -> dict[int, int]:
    """{vocabulary id: quantised weight} from one row of logits, restricted to `allowed_ids`."""
    if not allowed_ids:
        return {}
    ids = torch.tensor(list(allowed_ids), dtype=torch.long, device=logits.device)
    weights = torch.log1p(torch.relu(logits.float()[ids]))
    keep = torch.topk(weights, min(top, len(ids))).indices
    out = {}
    for i in keep.tolist():
        q = int(QUANTISATION * float(weights[i]))
        if q > 0:
            out[int(ids[i])] = q
    return out


def to_csr(rows: Sequence[dict[int, int]], vocab_size: int):
    from scipy.sparse import csr_matrix

    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indices, data = [], []
    for r, row in enumerate(rows):
        indices.extend(row.keys())
        data.extend(row.values())
        indptr[r + 1] = len(indices)
    return csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr), shape=(len(rows), vocab_size)
    )


def sparse_scores(queries, documents) -> np.ndarray:
    """(queries × documents) dot products of two CSR matrices, dense only in the result."""
    return np.asarray((queries @ documents.T).todense(), dtype=np.float32)


def min_max(scores: np.ndarray) -> np.ndarray:
    low, high = scores.min(), scores.max()
    return np.zeros_like(scores) if high <= low else (scores - low) / (high - low)


def hybrid_scores(dense: np.ndarray, sparse: np.ndarray, k: int, weight: float = 0.5) -> np.ndarray:
    """Per query: each side min-max normalised over its own top-k documents, then fused
    weight · dense + (1 − weight) · sparse; a document outside one side's top-k gets 0 there.
    Documents in neither top-k get −inf (not retrieved)."""
    fused = np.full(dense.shape, -np.inf, dtype=np.float32)
    k = min(k, dense.shape[1])
    for q in range(dense.shape[0]):
        parts = []
        for side, w in ((dense[q], weight), (sparse[q], 1 - weight)):
            top = np.argpartition(-side, k - 1)[:k]
            part = np.zeros(side.shape, dtype=np.float32)
            part[top] = w * min_max(side[top])
            parts.append((top, part))
        union = np.union1d(parts[0][0], parts[1][0])
        fused[q, union] = parts[0][1][union] + parts[1][1][union]
    return fused
