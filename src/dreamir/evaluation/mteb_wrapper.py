"""mteb integration: run any mteb retrieval task on a dreamir retriever, and local BEIR folders as tasks.

    import mteb
    from dreamir.evaluation.mteb_wrapper import mteb_model, local_beir_task
    model = mteb_model("runs/x/retriever")      # any dreamir model spec: bm25 and rrf:A+B / fuse:W:A+B too
    results = mteb.evaluate(model, [local_beir_task("../shared/assets/beir/scifact")])

A model with vectors becomes an mteb encoder (`DreamirEncoder`: mteb scores the vectors); bm25 and fusions, which
rank without vectors, become an mteb search model (`DreamirSearch`: dreamir ranks, mteb scores the ranking).

Needs the optional `mteb` package (`pip install mteb`); nothing here downloads data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dreamir.data.beir import load_beir
from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import Encoder, ModelSpec
from dreamir.retrieval.encoder import DenseEncoder, load_encoder


def _mteb():
    try:
        import mteb
    except ImportError as err:
        raise ImportError("the mteb integration needs the mteb package: pip install mteb") from err
    return mteb


class DreamirEncoder:
    """mteb's EncoderProtocol over a dreamir encoder (a retriever, PromptReps, DiffRetriever): queries and
    documents are encoded as such (their own prefixes or prompts)."""

    def __init__(self, model: Retriever | Encoder, name: str = "dreamir/retriever", batch_size: int = 64) -> None:
        from mteb.models.model_meta import ModelMeta

        if isinstance(model, Retriever):
            model = DenseEncoder(model, use_cache=False)
        if isinstance(model, DenseEncoder):
            model.batch_size = batch_size
        self.encoder = model
        self.mteb_model_meta = (
            ModelMeta.create_empty(overwrites={"name": name, "revision": "local"})
            if hasattr(ModelMeta, "create_empty")
            else None
        )

    @classmethod
    def load(cls, spec: str, **kwargs: Any) -> DreamirEncoder:
        """Any model spec of `retrieval/encoder.py` that gives vectors (bm25 and fusions: `DreamirSearch`)."""
        if not _gives_vectors(spec):
            raise ValueError(f"'{spec}' ranks without vectors: wrap it with DreamirSearch (or use mteb_model)")
        return cls(load_encoder(spec, use_cache=False), name=f"dreamir/{Path(spec).name}", **kwargs)

    def encode(
        self, inputs, *, task_metadata=None, hf_split: str = "", hf_subset: str = "", prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        from mteb.types import PromptType

        kind = "query" if prompt_type == PromptType.query else "document"
        texts: list[str] = []
        for batch in inputs:
            batch_texts = batch["text"]
            titles = batch.get("title")
            if kind == "document" and titles is not None:
                batch_texts = [_document_text(t, x) for t, x in zip(titles, batch_texts)]
            texts.extend(batch_texts)
        if kind == "query":
            return self.encoder.encode_queries(texts)
        return self.encoder.encode_documents(texts)

    def similarity(self, a, b):
        import torch

        return torch.as_tensor(np.asarray(a)) @ torch.as_tensor(np.asarray(b)).T

    def similarity_pairwise(self, a, b):
        import torch

        return (torch.as_tensor(np.asarray(a)) * torch.as_tensor(np.asarray(b))).sum(-1)


def _document_text(title: str | None, text: str) -> str:
    return f"{title} {text}".strip() if title else text  # BEIR joins title and text


def _gives_vectors(spec: str) -> bool:
    return ModelSpec.parse(spec).kind not in ("bm25", "fusion", "run")


class DreamirSearch:
    """mteb's SearchProtocol over any dreamir model spec: dreamir retrieves (bm25, a fusion of two specs, or a
    dense model searched exactly) and mteb scores the ranking. `index` keeps the corpus; `search` ranks it."""

    def __init__(self, model: Encoder, name: str = "dreamir/search") -> None:
        from mteb.models.model_meta import ModelMeta

        self.encoder = model
        self.corpus: dict[str, str] = {}
        self.mteb_model_meta = (
            ModelMeta.create_empty(overwrites={"name": name, "revision": "local"})
            if hasattr(ModelMeta, "create_empty")
            else None
        )

    @classmethod
    def load(cls, spec: str) -> DreamirSearch:
        return cls(load_encoder(spec, use_cache=False), name=f"dreamir/{Path(spec).name}")

    def index(self, corpus, *, task_metadata=None, hf_split: str = "", hf_subset: str = "", **kwargs: Any) -> None:
        self.corpus = {row["id"]: _document_text(row.get("title"), row["text"]) for row in corpus}

    def search(
        self, queries, *, task_metadata=None, hf_split: str = "", hf_subset: str = "", top_k: int = 100, **kwargs: Any
    ) -> dict[str, dict[str, float]]:
        if not self.corpus:
            raise ValueError("DreamirSearch.search before index: mteb indexes the corpus first")
        texts = {row["id"]: row["text"] for row in queries}
        # mteb applies its own rule for hits that share the query's id, so none are dropped here
        run = self.encoder.retrieve(self.corpus, texts, top_k, False, False)
        return {query: run.get(query, {}) for query in texts}


def mteb_model(spec: str) -> DreamirEncoder | DreamirSearch:
    """The mteb model for a dreamir spec: an encoder when it gives vectors, else a search model."""
    return DreamirEncoder.load(spec) if _gives_vectors(spec) else DreamirSearch.load(spec)


def local_beir_task(folder: str | os.PathLike, split: str = "test", name: str | None = None):
    """An mteb retrieval task whose data comes from a local BEIR folder (dreamir's validated loader)."""
    mteb = _mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    folder = Path(folder)
    task_name = name or f"Local{folder.name.capitalize()}"

    class LocalBeirTask(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=task_name,
            dataset={"path": str(folder), "revision": "local"},
            description=f"Local BEIR folder {folder}",
            reference=None,
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            data = load_beir(folder, split)
            self.dataset = {
                "default": {
                    split: {
                        "corpus": Dataset.from_list(
                            [{"id": k, "title": "", "text": v} for k, v in data.corpus.items()]
                        ),
                        "queries": Dataset.from_list([{"id": k, "text": v} for k, v in data.queries.items()]),
                        "relevant_docs": data.qrels,
                        "top_ranked": None,
                    }
                }
            }
            self.data_loaded = True

    del mteb
    return LocalBeirTask()
