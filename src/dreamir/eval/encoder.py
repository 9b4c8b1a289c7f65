"""What a model argument means, settled once: a spec → an `Encoder`.

A spec is one of
- "bm25" (lexical, bm25s);
- "promptreps:NAME" / "diffretriever:NAME" (the zero-shot LLM retrievers, METHOD §3);
- a dreamir run folder (its exported retriever);
- anything else a dense retriever loads: an alias, a sentence-transformers or HF folder, a GGUF file,
  a hub name.

Every encoder retrieves over a corpus (`retrieve`: eval, compare); dense and zero-shot encoders also give
one vector per text (`encode_queries` / `encode_documents`: index, search, mteb). eval, index, search,
compare and the mteb wrapper go through `ModelSpec.parse` / `load_encoder` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from dreamir.eval.cache import encode_cached, retriever_fingerprint
from dreamir.eval.metrics import Run
from dreamir.eval.search import bm25_run, exact_topk, to_run
from dreamir.models.retriever import Retriever

if TYPE_CHECKING:
    from dreamir.zeroshot.retrieval import ZeroShotOptions

ZERO_SHOT_METHODS = ("promptreps", "diffretriever")  # zeroshot/retrieval.py implements them (imported lazily)

Kind = Literal["bm25", "dense", "promptreps", "diffretriever"]


@dataclass(frozen=True)
class ModelSpec:
    kind: Kind
    name: str  # what to load: a run folder's exported retriever, the zero-shot method's model, the argument
    text: str  # the argument as the user wrote it

    @classmethod
    def parse(cls, spec: str, check: bool = True) -> ModelSpec:
        """Read a model argument. With `check`, a model that cannot be found fails now (in seconds, naming
        the aliases), before any data is loaded; nothing is loaded either way."""
        from dreamir.assets import resolve_model

        if spec.lower() == "bm25":
            return cls("bm25", "bm25", spec)
        method, sep, name = spec.partition(":")
        if sep and method.lower() in ZERO_SHOT_METHODS:
            if not name:
                raise ValueError(f"'{spec}': give a model after the colon, e.g. {method}:smollm2-135m-instruct")
            parsed = cls(method.lower(), name, spec)  # type: ignore[arg-type]
        else:
            parsed = cls("dense", exported_retriever(spec), spec)
        if check:
            resolve_model(parsed.name)
        return parsed

    @property
    def is_zero_shot(self) -> bool:
        return self.kind in ZERO_SHOT_METHODS


def exported_retriever(spec: str) -> str:
    """A dreamir run folder stands for its exported retriever; any other argument for itself."""
    run_model = Path(spec) / "retriever"
    if (Path(spec) / "config.yaml").exists() and (run_model / "modules.json").exists():
        return str(run_model)
    return spec


class Encoder:
    """One model behind eval, index and search. Subclasses give vectors, a retrieval, or both."""

    label: str = ""
    spec: str = ""  # a spec that loads this encoder again (recorded in an index)

    def encode_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        raise ValueError(f"{self.label} gives no dense vectors (it is lexical): index and search need a dense model")

    def encode_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.encode_queries(texts, show_progress)

    def fingerprint(self) -> str | None:
        """A hash of the weights and settings, when the encoder has any (search checks it against the index)."""
        return None

    def retrieve(
        self,
        corpus: dict[str, str],
        queries: dict[str, str],
        k: int = 100,
        ignore_identical_ids: bool = True,
        show_progress: bool = True,
    ) -> Run:
        """Top-k documents per query by exact inner product of the vectors. `ignore_identical_ids` drops a hit
        whose id equals the query's (BEIR's default, which matters for ArguAna and Quora)."""
        doc_ids, query_ids = list(corpus), list(queries)
        docs = self.encode_documents([corpus[d] for d in doc_ids], show_progress)
        vectors = self.encode_queries([queries[q] for q in query_ids], show_progress)
        # One extra hit, in case a document sharing the query's id is dropped.
        scores, indices = exact_topk(vectors, docs, k + int(ignore_identical_ids))
        return to_run(query_ids, doc_ids, scores, indices, ignore_identical_ids, k)


class DenseEncoder(Encoder):
    """A dreamir `Retriever` (sentence-transformers underneath); document embeddings are cached on disk."""

    def __init__(
        self, retriever: Retriever, label: str = "", use_cache: bool = True, batch_size: int = 64, spec: str = ""
    ) -> None:
        self.retriever = retriever
        self.label = label or retriever.source
        self.spec = spec  # empty for a retriever built in memory: nothing loads it again by name
        self.use_cache = use_cache
        self.batch_size = batch_size

    def encode_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.retriever.encode(texts, "query", self.batch_size, show_progress)

    def encode_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return encode_cached(self.retriever, texts, "document", self.batch_size, show_progress, self.use_cache)

    def fingerprint(self) -> str:
        return retriever_fingerprint(self.retriever)


class BM25Encoder(Encoder):
    """bm25s over the corpus at hand (stemmed, English stop-words); no vectors."""

    label = spec = "bm25"

    def retrieve(self, corpus, queries, k=100, ignore_identical_ids=True, show_progress=True) -> Run:
        return bm25_run(corpus, queries, k, ignore_identical_ids)


def load_encoder(
    model: str | ModelSpec | Retriever | Encoder,
    *,
    zero_shot: ZeroShotOptions | None = None,
    device: str = "cpu",
    use_cache: bool = True,
    label: str | None = None,
) -> Encoder:
    """The encoder for a model argument (or a retriever already in memory)."""
    if isinstance(model, Encoder):
        return model
    if isinstance(model, Retriever):
        return DenseEncoder(model, label or "", use_cache)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    if spec.kind == "bm25":
        encoder: Encoder = BM25Encoder()
    elif spec.is_zero_shot:
        from dreamir.zeroshot.retrieval import ZeroShotOptions, ZeroShotRetriever

        encoder = ZeroShotRetriever(spec.kind, spec.name, zero_shot or ZeroShotOptions(device=device))
    else:
        encoder = DenseEncoder(Retriever.load(spec.name, device=device), spec.text, use_cache, spec=spec.name)
    if label:
        encoder.label = label
    return encoder
