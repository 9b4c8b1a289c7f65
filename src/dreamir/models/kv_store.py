"""Cross-epoch cache of the frozen LLM's document keys/values (docs/method.md, issue 4 (c)).

An example's document region ([sink][d_1]…[d_N]) gives the same keys and values in every epoch: the
LLM is frozen and documents never attend to [q][y]. The reuse step computes them without a graph;
this store keeps them so that later epochs skip that forward pass entirely.

Size: layers × 2 × kv_heads × tokens × head_dim values per example (SmolLM2-135M, 8 × 128-token
documents: about 47 MB in fp32), so the store is bounded by `max_bytes`, in memory or in a folder.
When full it keeps what it has and stores nothing new: training visits examples in a cycle, and
evicting least-recently-used entries under a cyclic scan would evict every entry before its reuse
(zero hits); keeping the first entries gives a hit rate of capacity / examples.

Keys hash the document token ids together with the model source, dtype and layout, so a folder can
be shared between runs (and survives a crash: a resumed run finds its entries again).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from dreamir.files import atomic_open


class DocumentKVStore:
    def __init__(self, max_bytes: int, directory: str | os.PathLike | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the document cache needs a positive size limit, got {max_bytes} bytes")
        self.max_bytes = int(max_bytes)
        self.directory = Path(directory) if directory else None
        self._memory: dict[str, torch.Tensor] = {}
        self.bytes_used = 0
        self.entries = 0
        self.hits = self.misses = self.refused = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            sizes = [p.stat().st_size for p in self.directory.glob("*.pt")]
            self.bytes_used, self.entries = sum(sizes), len(sizes)

    @staticmethod
    def key(docs: list[list[int]], tag: str) -> str:
        digest = hashlib.blake2b(tag.encode(), digest_size=16)
        for doc in docs:
            digest.update(np.asarray(doc, dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def get(self, key: str) -> torch.Tensor | None:
        """(layers, 2, kv_heads, tokens, head_dim) on the CPU, or None."""
        if self.directory is None:
            found = self._memory.get(key)
        else:
            path = self._path(key)
            found = torch.load(path, map_location="cpu", weights_only=True, mmap=True) if path.exists() else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str, kv: torch.Tensor) -> bool:
        size = kv.numel() * kv.element_size()
        if self.bytes_used + size > self.max_bytes:
            self.refused += 1
            return False
        kv = kv.detach().to("cpu").contiguous()
        if self.directory is None:
            self._memory[key] = kv
        else:
            # atomic: a crash never leaves a half-written entry under a valid name
            with atomic_open(self._path(key), "wb") as handle:
                torch.save(kv, handle)
        self.bytes_used += size
        self.entries += 1
        return True

    def summary(self) -> str:
        where = str(self.directory) if self.directory else "memory"
        return (
            f"document cache ({where}): {self.hits} hits, {self.misses} misses, {self.refused} not stored (full); "
            f"{self.entries} entries, {_size(self.bytes_used)} of {_size(self.max_bytes)} used"
        )


def _size(n: int) -> str:
    """Bytes in the unit that shows them: 999 small entries are "97.6 KB", not "0 MB"."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
