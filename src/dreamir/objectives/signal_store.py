"""What the frozen LLM says about one example, computed once and kept: DREAM-distill's judge gradient g,
REPLUG's candidate NLL ℓ. Neither depends on the retriever, so every later epoch, seed, control or variant
reads it instead of running the LLM, and it can be computed ahead of training on another machine
(`dreamir train|compare --precompute`).

Values live in a bounded `DocumentKVStore` keyed by the example's token ids (candidates, query, target)
and a tag naming the LLM and everything else the value depends on — in memory, or on disk in
`signal_cache_dir`, shared between runs and kept across a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import Field

from dreamir.data.training import TokenizedExample
from dreamir.models.kv_store import DocumentKVStore
from dreamir.settings import NO_EFFECT, StrictConfig, tagged


class SignalCacheConfig(StrictConfig):
    # a few floats per example: 256 MB holds millions
    signal_cache_mb: int = Field(256, gt=0, json_schema_extra=tagged(NO_EFFECT))
    # keep the values on disk, shared by runs (seeds, variants) of one LLM
    signal_cache_dir: str | None = Field(None, json_schema_extra=tagged(NO_EFFECT))


class ExampleSignalStore:
    """Per-example tensors from `compute` (a list of examples → one tensor each), each computed once."""

    def __init__(
        self,
        what: str,
        tag: str,
        config: SignalCacheConfig,
        compute: Callable[[list[TokenizedExample]], list[torch.Tensor]],
    ) -> None:
        self.what, self.tag, self.config, self.compute = what, tag, config, compute
        directory = Path(config.signal_cache_dir) if config.signal_cache_dir else None
        self.store = DocumentKVStore(config.signal_cache_mb * 2**20, directory)
        self.calls = 0  # `compute` calls made (a warm store needs none)

    def key(self, example: TokenizedExample) -> str:
        return DocumentKVStore.key([*example.docs, example.query, example.target], self.tag)

    def cached(self, example: TokenizedExample) -> torch.Tensor | None:
        """The example's stored value, or None when it has not been computed (computes nothing)."""
        return self.store.get(self.key(example))

    def __call__(self, tokenized: list[TokenizedExample]) -> list[torch.Tensor]:
        """One value per example, from the store or from one `compute` call over the examples it lacks."""
        keys = [self.key(t) for t in tokenized]
        found = [self.store.get(key) for key in keys]
        missing = [b for b, value in enumerate(found) if value is None]
        if missing:
            fresh = self.compute([tokenized[b] for b in missing])
            self.calls += 1
            for b, value in zip(missing, fresh, strict=True):
                found[b] = value.detach().cpu()
                self.store.put(keys[b], found[b])
        return [value for value in found if value is not None]

    def precompute(self, tokenized: list[TokenizedExample], batch_size: int, show_progress: bool, owner: str) -> str:
        """The value of every example not yet stored, into `signal_cache_dir` (resumable: what a killed call
        stored is kept). A later run with the same LLM and examples then makes no LLM pass."""
        if not self.config.signal_cache_dir:
            raise ValueError(f"precomputing the {self.what} needs {owner}.signal_cache_dir (a folder to keep it)")
        from tqdm.auto import tqdm

        missing = [t for t in tokenized if self.cached(t) is None]
        batches = range(0, len(missing), batch_size)
        for start in tqdm(batches, desc=self.what, unit="batch", disable=not show_progress):
            self(missing[start : start + batch_size])
        return (
            f"{self.what}: {len(missing)} examples computed, {len(tokenized) - len(missing)} already stored, "
            f"in {self.config.signal_cache_dir}"
        )

    def coverage(self, tokenized: list[TokenizedExample], runs: str) -> str:
        """A line said before training: how many of the examples are stored already, so that the LLM passes
        still to come (minutes or hours for a large LLM on a CPU) are known up front."""
        stored = sum(self.cached(t) is not None for t in tokenized)
        where = f"in {self.config.signal_cache_dir}" if self.config.signal_cache_dir else "(no signal_cache_dir)"
        missing = len(tokenized) - stored
        todo = f"{runs} for the other {missing}, once each" if missing else f"{runs} for none"
        return f"{self.what}: {stored} of {len(tokenized)} examples stored {where}; {todo}"

    def summary(self, passes: str) -> str:
        return f"{self.what}: {self.calls} {passes}; {self.store.summary()}"
