"""The encoders behind a model spec (`base.ModelSpec`): dense (a dreamir `Retriever`, document embeddings cached
on disk), BM25, the zero-shot LLM retrievers, fusions and run files; `load_encoder` builds the one a spec names."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dreamir.assets import parse_dtype
from dreamir.models.retriever import Retriever
from dreamir.retrieval.base import Encoder, ModelSpec, split_fusion_spec
from dreamir.retrieval.cache import encode_cached, retriever_fingerprint
from dreamir.retrieval.fusion import FusionEncoder
from dreamir.retrieval.run_file import RunFileEncoder
from dreamir.retrieval.search import Run, bm25_run
from dreamir.retrieval.zeroshot.retrieval import ZeroShotOptions, ZeroShotRetriever


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
    device: str | None = None,
    use_cache: bool = True,
    label: str | None = None,
) -> Encoder:
    """The encoder for a model argument (or a retriever already in memory). `device` overrides the spec's (for
    every kind that runs a model: dense and zero-shot)."""
    if isinstance(model, Encoder):
        return model
    if isinstance(model, Retriever):
        return DenseEncoder(model, label or "", use_cache)
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    if device is not None:
        spec = replace(spec, device=device)
    if spec.kind == "bm25":
        encoder: Encoder = BM25Encoder()
    elif spec.kind == "run":
        encoder = RunFileEncoder(spec.name, spec.text)
    elif spec.kind == "fusion":
        method, weight, first, second = split_fusion_spec(spec.text)
        sides = [
            load_encoder(
                ModelSpec.parse(side, False, spec.device, spec.dtype), zero_shot=zero_shot, use_cache=use_cache
            )
            for side in (first, second)
        ]
        encoder = FusionEncoder(method, sides[0], sides[1], weight, spec.text)
    elif spec.is_zero_shot:
        options = zero_shot or ZeroShotOptions(device=spec.device)
        if device is not None:
            options = replace(options, device=device)
        encoder = ZeroShotRetriever(spec.kind, spec.name, options)
    else:
        retriever = Retriever.load(spec.name, device=spec.device, dtype=parse_dtype(spec.dtype))
        encoder = DenseEncoder(retriever, spec.text, use_cache, spec=spec.name)
    if label:
        encoder.label = label
    return encoder
