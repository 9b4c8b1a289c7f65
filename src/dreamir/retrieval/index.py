"""Dense indexes behind one interface: exact inner product (torch) or any faiss index-factory string.

    index = DenseIndex.build(doc_ids, vectors, factory="exact")        # small corpora
    index = DenseIndex.build(doc_ids, vectors, factory="IVF1024,Flat", params="nprobe=64")
    index = DenseIndex.build(doc_ids, vectors, factory="HNSW32", params="efSearch=128")
    scores, rows = index.search(query_vectors, k)
    index.save("idx/");  DenseIndex.load("idx/")

All factories use inner product on L2-normalised vectors (= cosine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamir.files import atomic_folder, fault_point, file_sha256, recover_interrupted_swap
from dreamir.retrieval.search import exact_topk

EXACT = "exact"


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("faiss index factories need faiss-cpu: pip install faiss-cpu") from err
    return faiss


@dataclass
class DenseIndex:
    doc_ids: list[str]
    factory: str
    params: str = ""
    vectors: np.ndarray | None = None  # exact backend
    faiss_index: object | None = None  # faiss backend
    meta: dict = field(default_factory=dict)
    # the start of each document's text as indexed: search shows these, not the corpus file's current text
    snippets: list[str] | None = None

    @property
    def size(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(
        cls,
        doc_ids: list[str],
        vectors: np.ndarray,
        factory: str = EXACT,
        params: str = "",
        train_size: int | None = None,
        seed: int = 0,
        meta: dict | None = None,
        snippets: list[str] | None = None,
    ) -> DenseIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if snippets is not None and len(snippets) != len(doc_ids):
            raise ValueError(f"{len(doc_ids)} ids but {len(snippets)} snippets")
        if vectors.ndim != 2 or vectors.shape[0] != len(doc_ids):
            raise ValueError(f"{len(doc_ids)} ids but vectors of shape {vectors.shape}")
        if not np.isfinite(vectors).all():  # a NaN model's vectors would index silently and rank at random
            bad = [doc_ids[i] for i in np.flatnonzero(~np.isfinite(vectors).all(axis=1))[:3]]
            raise ValueError(f"refusing to index non-finite vectors (documents {', '.join(bad)}, …): is the model NaN?")
        if factory == EXACT:
            return cls(list(doc_ids), factory, params, vectors=vectors, meta=meta or {}, snippets=snippets)
        faiss = _faiss()
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            # faiss wants ~39-256 points per IVF list; a sample keeps training time bounded.
            n_train = min(len(vectors), train_size or 256 * _nlist(faiss, index, default=256))
            sample = np.random.default_rng(seed).choice(len(vectors), n_train, replace=False)
            index.train(vectors[np.sort(sample)])
        index.add(vectors)
        built = cls(list(doc_ids), factory, params, faiss_index=index, meta=meta or {}, snippets=snippets)
        built.set_params(params)
        return built

    def set_params(self, params: str) -> None:
        """faiss search parameters, e.g. "nprobe=64" (IVF) or "efSearch=128" (HNSW)."""
        self.params = params
        if params and self.faiss_index is not None:
            _faiss().ParameterSpace().set_index_parameters(self.faiss_index, params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.size)
        if self.vectors is not None:
            return exact_topk(queries, self.vectors, k)
        scores, rows = self.faiss_index.search(queries, k)
        return scores, rows

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index as a folder built aside and swapped in whole (an interrupted save leaves the
        old index or the new one, never a mix); meta.json records each file's checksum, checked on load.
        An existing folder is replaced only if it is an index (or holds nothing but a sharded build's parts)."""
        folder = Path(folder)
        files = {"ids.json": lambda p: p.write_text(json.dumps(self.doc_ids))}
        if self.snippets is not None:
            files["snippets.json"] = lambda p: p.write_text(json.dumps(self.snippets, ensure_ascii=False))
        if self.vectors is not None:
            files["vectors.npy"] = lambda p: _save_npy(p, self.vectors)
        else:
            files["faiss.index"] = lambda p: _faiss().write_index(self.faiss_index, str(p))
        meta = {**self.meta, "factory": self.factory, "params": self.params, "size": self.size, "dim": self.dim}
        return save_checked_folder(folder, files, meta, keep=("parts",))

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors is not None else int(self.faiss_index.d)

    @classmethod
    def load(cls, folder: str | os.PathLike, verify: bool = True) -> DenseIndex:
        """The index at `folder`; `verify=False` skips the checksums (the caller has just checked them)."""
        folder = Path(folder)
        meta = load_checked_meta(folder, verify)
        if "fusion" in meta or "lexical" in meta:
            raise ValueError(f"{folder} is a {'fused' if 'fusion' in meta else 'BM25'} index, not a dense one")
        doc_ids = json.loads((folder / "ids.json").read_text())
        factory, params = meta.pop("factory"), meta.pop("params", "")
        size, dim = meta.pop("size", len(doc_ids)), meta.pop("dim", None)
        meta.pop("checksums", None)
        if factory == EXACT:
            loaded = cls(doc_ids, factory, params, vectors=np.load(folder / "vectors.npy", mmap_mode="r"), meta=meta)
        else:
            loaded = cls(
                doc_ids, factory, params, faiss_index=_faiss().read_index(str(folder / "faiss.index")), meta=meta
            )
            loaded.set_params(params)
        if (folder / "snippets.json").exists():
            loaded.snippets = json.loads((folder / "snippets.json").read_text())
        count = len(loaded.vectors) if loaded.vectors is not None else int(loaded.faiss_index.ntotal)
        if not (len(doc_ids) == size == count) or (dim is not None and loaded.dim != dim):
            raise ValueError(
                f"{folder}: {len(doc_ids)} ids, {count} vectors of dimension {loaded.dim}, but meta.json says "
                f"{size} × {dim}; rebuild the index"
            )
        return loaded


def save_checked_folder(
    folder: str | os.PathLike, files: dict[str, Callable[[Path], None]], meta: dict, keep: tuple[str, ...] = ()
) -> Path:
    """Write an index folder aside and swap it in whole (an interrupted save leaves the old folder or the new one,
    never a mix). `files` maps a name to what writes it (a file, or a folder of files); meta.json, written last,
    records `meta` and each file's checksum, checked by `load_checked_meta`. An existing folder is replaced only
    if it is an index (or holds nothing but `keep`)."""
    folder = Path(folder)
    with atomic_folder(folder, "meta.json", keep=keep) as tmp:
        checksums = {}
        for name, write in files.items():
            fault_point()
            write(tmp / name)
            written = (
                [tmp / name] if (tmp / name).is_file() else sorted(f for f in (tmp / name).rglob("*") if f.is_file())
            )
            checksums.update({str(f.relative_to(tmp)): file_sha256(f) for f in written})
        fault_point()
        (tmp / "meta.json").write_text(json.dumps({**meta, "checksums": checksums}, indent=1))
    return folder


def load_checked_meta(folder: str | os.PathLike, verify: bool = True) -> dict:
    """An index folder's meta.json (checksums removed) once every file it lists matches its checksum (with
    `verify=False`, unchecked: for a folder inside one whose checksums, covering its files, were just checked)."""
    folder = Path(folder)
    recover_interrupted_swap(folder, "meta.json")
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(f"{folder} is not a dreamir index (no meta.json)")
    meta = json.loads((folder / "meta.json").read_text())
    checksums = meta.pop("checksums", {})
    for name, expected in checksums.items() if verify else ():
        if not (folder / name).exists() or file_sha256(folder / name) != expected:
            raise ValueError(
                f"{folder / name} does not match the checksum in {folder / 'meta.json'}: the index is damaged "
                "or mixed from two saves; rebuild it with `dreamir index`"
            )
    return meta


def _nlist(faiss, index, default: int) -> int:
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return default


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle, so np.save does not append ".npy" to the temp name
        np.save(handle, array)
