"""On-disk cache of document embeddings, keyed by the model's weights and settings and the texts.

A second `eval`/`index` of the same model over the same corpus reads the vectors back (a
memory-mapped .npy) instead of re-encoding. The key hashes the retriever's parameters, so a
retrained model never hits a stale entry; each entry's checksum (KEY.npy.sha256) is checked on every
read, so a damaged entry is dropped and re-encoded instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from dreamir.assets import cache_dir
from dreamir.files import atomic_open, atomic_write, file_sha256
from dreamir.models.retriever import Retriever, TextKind


def retriever_fingerprint(retriever: Retriever) -> str:
    """A hash of everything that changes the vectors: weights (and their dtype), tokenizer, pooling, prefixes,
    maximum length. The embedding cache and an index's model check are keyed by it."""
    digest = hashlib.sha256()
    settings = {
        "query_prefix": retriever.query_prefix,
        "doc_prefix": retriever.doc_prefix,
        "max_seq_length": retriever.st.max_seq_length,
        "modules": [type(m).__name__ for m in retriever.st],
        "pooling": [getattr(m, "pooling_mode", None) for m in retriever.st],
        "tokenizer": tokenizer_fingerprint(retriever.st.tokenizer),
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in retriever.st.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


# Tokenizer settings that change the tokens (paths and names do not: a copy elsewhere is the same tokenizer)
_TOKENIZER_SETTINGS = (
    "do_lower_case",
    "strip_accents",
    "tokenize_chinese_chars",
    "model_max_length",
    "add_prefix_space",
)


def tokenizer_fingerprint(tokenizer: object) -> str:
    """The tokenizer's full pipeline (normaliser, pre-tokeniser, vocabulary, post-processor) as the `tokenizers`
    library serialises it, plus the settings that steer it."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if hasattr(backend, "to_str"):
        pipeline = json.loads(backend.to_str())
        for per_call in ("truncation", "padding"):  # set by each encode call, not part of the tokenizer
            pipeline.pop(per_call, None)
        serialised = json.dumps(pipeline, sort_keys=True)
    else:
        serialised = json.dumps(sorted(tokenizer.get_vocab().items()))
    kwargs = getattr(tokenizer, "init_kwargs", {}) or {}
    steering = {key: kwargs.get(key) for key in _TOKENIZER_SETTINGS}
    return hashlib.sha256((serialised + json.dumps(steering, default=str)).encode()).hexdigest()[:24]


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


CHUNK_TEXTS = 8192  # a long encode keeps its finished work in chunks of this many texts


def encode_cached(
    retriever: Retriever,
    texts: list[str],
    kind: TextKind,
    batch_size: int = 64,
    show_progress: bool = False,
    use_cache: bool = True,
    folder: Path | None = None,
    chunk_texts: int = CHUNK_TEXTS,
) -> np.ndarray:
    """Embeddings of `texts`, from the cache when this model already encoded exactly these texts. More texts than
    `chunk_texts` are encoded chunk by chunk, each chunk kept as it finishes, so an interrupted encode resumes
    where it stopped. The cache is optional: when it cannot be written (a full disk, a read-only folder) the
    vectors are still returned, with a warning."""
    if not use_cache:
        return retriever.encode(texts, kind, batch_size, show_progress)
    folder = folder or cache_dir() / "embeddings"
    key = f"{retriever_fingerprint(retriever)}-{texts_fingerprint(texts)}-{kind}"
    path = folder / f"{key}.npy"
    cached = _read_entry(path, (len(texts), retriever.dim))
    if cached is not None:
        return cached
    if len(texts) <= chunk_texts:
        vectors = retriever.encode(texts, kind, batch_size, show_progress)
    else:
        vectors = _encode_in_chunks(retriever, texts, kind, batch_size, show_progress, path, chunk_texts)
    if _write_entry(path, vectors):
        shutil.rmtree(_parts_folder(path), ignore_errors=True)  # the whole entry replaces its chunks
    return vectors


def _parts_folder(path: Path) -> Path:
    return path.with_name(path.stem + ".parts")


def _encode_in_chunks(
    retriever: Retriever, texts: list[str], kind: TextKind, batch_size: int, show_progress: bool, path: Path, size: int
) -> np.ndarray:
    parts = _parts_folder(path)
    starts = range(0, len(texts), size)
    pieces, reused = [], 0
    for number, start in enumerate(starts):
        chunk = texts[start : start + size]
        part = parts / f"chunk-{number:05d}-of-{len(starts):05d}.npy"
        vectors = _read_entry(part, (len(chunk), retriever.dim))
        if vectors is None:
            if show_progress:
                print(f"[dreamir] encoding chunk {number + 1} of {len(starts)} ({len(chunk)} texts; kept as it ends)")
            vectors = retriever.encode(chunk, kind, batch_size, show_progress)
            _write_entry(part, vectors)
        else:
            reused += 1
        pieces.append(np.asarray(vectors))
    if reused:
        print(f"[dreamir] {reused} of {len(starts)} chunks of an earlier, interrupted encode reused from {parts}")
    return np.concatenate(pieces)


def _write_entry(path: Path, vectors: np.ndarray) -> bool:
    """Write a cache entry and then its checksum (no checksum, no trust); False, with a warning, when the cache
    cannot be written."""
    try:
        with atomic_open(path, "wb") as handle:
            np.save(handle, vectors)
        atomic_write(_checksum_path(path), file_sha256(path))
    except OSError as err:
        path.unlink(missing_ok=True)
        print(f"[dreamir] warning: could not write the embedding cache at {path} ({err.strerror or err}); "
              "going on without it")  # fmt: skip
        return False
    return True


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_entry(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A cache entry whose bytes match the checksum stored with it; a damaged one (truncated, edited,
    rows permuted, no checksum) is reported by name, removed, and re-encoded by the caller."""
    if not path.exists():
        return None
    checksum = _checksum_path(path)
    problem = None
    if not checksum.exists() or checksum.read_text().strip() != file_sha256(path):
        problem = "its checksum does not match (damaged or changed)"
    else:
        try:
            cached = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            problem = f"it cannot be read ({err})"
        else:
            if cached.shape == shape:
                return cached
            problem = f"its shape {cached.shape} is not {shape}"
    print(f"[dreamir] warning: dropping embedding cache entry {path}: {problem}; encoding again")
    path.unlink(missing_ok=True)
    checksum.unlink(missing_ok=True)
    return None
