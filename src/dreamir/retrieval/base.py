"""What a model argument means, settled once: a spec → a `ModelSpec` (kind, name, device, dtype), and the
`Encoder` interface every retriever implements (`encoder.load_encoder` builds one from a spec).

A spec is one of
- "bm25" (lexical, bm25s);
- "promptreps:NAME" / "diffretriever:NAME" (the zero-shot LLM retrievers);
- "rrf:A+B" / "fuse:W:A+B" (two specs' runs fused: `fusion.py`);
- "run:FILE" (a TREC run computed elsewhere, scored as it ranks: `run_file.py`);
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
from typing import Literal

import numpy as np

from dreamir.retrieval.search import Run, exact_topk, to_run

ZERO_SHOT_METHODS = ("promptreps", "diffretriever")  # retrieval/zeroshot/retrieval.py implements them

Kind = Literal["bm25", "dense", "promptreps", "diffretriever", "fusion", "run"]


@dataclass(frozen=True)
class ModelSpec:
    kind: Kind
    name: str  # what to load: a run folder's exported retriever, the zero-shot method's model, the argument
    text: str  # the argument as the user wrote it
    device: str = "cpu"  # where the model runs (dense and zero-shot encoders)
    dtype: str = "fp32"

    @classmethod
    def parse(cls, spec: str, check: bool = True, device: str = "cpu", dtype: str = "fp32") -> ModelSpec:
        """Read a model argument. With `check`, a model that cannot be found fails now (in seconds, naming
        the aliases), before any data is loaded; nothing is loaded either way."""
        from dreamir.assets import resolve_model

        if spec.lower() == "bm25":
            return cls("bm25", "bm25", spec, device, dtype)
        fused = split_fusion_spec(spec)
        if fused is not None:  # both sides are specs of their own, checked the same way
            for side in fused[2:]:
                cls.parse(side, check, device, dtype)
            return cls("fusion", spec, spec, device, dtype)
        method, sep, name = spec.partition(":")
        if sep and method.lower() == "run":
            if check and not Path(name).is_file():
                raise FileNotFoundError(f"'{spec}': no run file {name!r} (run:FILE names a TREC run file)")
            return cls("run", name, spec, device, dtype)
        if sep and method.lower() in ZERO_SHOT_METHODS:
            if not name:
                raise ValueError(f"'{spec}': give a model after the colon, e.g. {method}:smollm2-135m-instruct")
            parsed = cls(method.lower(), name, spec, device, dtype)  # type: ignore[arg-type]
        else:
            parsed = cls("dense", exported_retriever(spec), spec, device, dtype)
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


def split_fusion_spec(spec: str) -> tuple[str, float | None, str, str] | None:
    """("rrf" | "fuse", weight, A, B) for a fusion spec; None for any other spec. `fuse:A+B` (no weight) gives
    weight None: the weight is to be chosen on a dev split (`dreamir eval --fusion-dev-split`)."""
    method, sep, rest = spec.partition(":")
    if not sep or method.lower() not in ("rrf", "fuse"):
        return None
    weight = None
    if method.lower() == "fuse":
        weight_text, sep, after = rest.partition(":")
        try:
            weight = float(weight_text) if sep else None
        except ValueError:  # a colon inside a model spec (fuse:bm25+promptreps:NAME): no weight given
            weight = None
        if weight is not None:
            rest = after
            if not 0.0 <= weight <= 1.0:
                raise ValueError(
                    f"'{spec}': the weight W of fuse:W:A+B must lie in [0, 1] "
                    "(or write fuse:A+B and choose it on a dev split with --fusion-dev-split)"
                )
    first, plus, second = rest.partition("+")
    if not plus or not first or not second:
        raise ValueError(f"'{spec}': name two models joined by '+', e.g. {method}:bm25+all-minilm-l6-v2")
    return method.lower(), weight, first, second
