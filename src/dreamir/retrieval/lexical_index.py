"""A BM25 index saved to disk (bm25s, the same tokenisation as `search.bm25_run`): the lexical side of a fused
index (`dreamir index --model rrf:bm25+MODEL`). The folder holds ids.json, snippets.json, bm25/ (bm25s's arrays,
loaded without pickle) and meta.json with every file's checksum (`index.save_checked_folder`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamir.retrieval.index import load_checked_meta, save_checked_folder


@dataclass
class LexicalIndex:
    doc_ids: list[str]
    snippets: list[str]
    retriever: object  # bm25s.BM25
    meta: dict

    @property
    def size(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(cls, doc_ids: list[str], texts: list[str], snippets: list[str], meta: dict) -> LexicalIndex:
        from dreamir.data.text import bm25_index

        retriever, _ = bm25_index(texts)
        return cls(list(doc_ids), snippets, retriever, meta)

    def save(self, folder: str | os.PathLike) -> Path:
        files = {
            "ids.json": lambda p: p.write_text(json.dumps(self.doc_ids)),
            "snippets.json": lambda p: p.write_text(json.dumps(self.snippets, ensure_ascii=False)),
            "bm25": lambda p: self.retriever.save(str(p), show_progress=False),  # type: ignore[attr-defined]
        }
        return save_checked_folder(folder, files, {**self.meta, "lexical": "bm25s", "size": self.size})

    @classmethod
    def load(cls, folder: str | os.PathLike, verify: bool = True) -> LexicalIndex:
        """The index at `folder`; `verify=False` skips the checksums (the caller has just checked them)."""
        import bm25s

        folder = Path(folder)
        meta = load_checked_meta(folder, verify)
        if meta.get("lexical") != "bm25s":
            raise ValueError(f"{folder} is not a BM25 index")
        doc_ids = json.loads((folder / "ids.json").read_text())
        snippets = json.loads((folder / "snippets.json").read_text())
        retriever = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False, show_progress=False)
        if not len(doc_ids) == len(snippets) == meta.get("size"):
            raise ValueError(
                f"{folder}: {len(doc_ids)} ids and {len(snippets)} snippets, meta.json says {meta.get('size')}"
            )
        return cls(doc_ids, snippets, retriever, meta)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the top-k documents per query, as `bm25_run` ranks them."""
        from dreamir.data.text import bm25_tokens

        tokens = bm25_tokens(queries)
        rows, scores = self.retriever.retrieve(  # type: ignore[attr-defined]
            tokens, k=min(k, self.size), show_progress=False, n_threads=1
        )
        return np.asarray(scores), np.asarray(rows)
