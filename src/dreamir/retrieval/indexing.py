"""`dreamir index` / `dreamir search`: encode a corpus once, then answer queries from disk.

A fused model spec (`rrf:A+B`, `fuse:W:A+B`, fusion.py) gives a fused index: meta.json {"fusion": …} and one
index per side (side-1/, side-2/: a dense index, or a BM25 index for `bm25`); search asks each side for its top
100 and fuses them as `dreamir eval` does."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamir.data.beir import decode_id, load_corpus
from dreamir.data.text import resolve_corpus_path
from dreamir.data.training import DataStats
from dreamir.distributed import init_from_env
from dreamir.files import atomic_open
from dreamir.retrieval.base import Encoder, ModelSpec, split_fusion_spec
from dreamir.retrieval.encoder import load_encoder
from dreamir.retrieval.fusion import FUSION_DEPTH, convex_fusion, reciprocal_rank_fusion, top_k
from dreamir.retrieval.index import DenseIndex, load_checked_meta, save_checked_folder
from dreamir.retrieval.lexical_index import LexicalIndex
from dreamir.retrieval.search import Run

PARTS = "parts"  # subfolder of the index folder holding the shards' embeddings until they are merged


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """ "2/4" → the second of four shards (1-based on the command line)."""
        try:
            one_based, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard expects I/N (e.g. 2/4), got '{text}'") from None
        if not 1 <= one_based <= count:
            raise ValueError(f"--shard {text}: I must be between 1 and N")
        return cls(one_based - 1, count)

    def bounds(self, size: int) -> tuple[int, int]:
        """Contiguous slice of `size` documents; sizes differ by at most one."""
        return size * self.index // self.count, size * (self.index + 1) // self.count

    def path(self, out: Path) -> Path:
        return out / PARTS / f"part-{self.index + 1:05d}-of-{self.count:05d}.npz"


def build_index(
    data: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    factory: str = "exact",
    params: str = "",
    use_cache: bool = True,
    show_progress: bool = True,
    shard: Shard | None = None,
    device: str = "cpu",
    encode_ids: bool = False,
) -> DenseIndex | None:
    """Encode a corpus into an index at `out`.

    With `shard`, only that slice is encoded and written to `out/parts/`; `merge_index` joins the
    parts once all are there (`dreamir index --shard I/N` on several machines, then `--merge`).
    Under torchrun each process takes the shard of its rank and rank 0 merges, so one command
    spreads the encoding over processes. Returns the index, or None for a process that only
    wrote its part.
    """
    out = Path(out)
    group = init_from_env(device, timeout_minutes=24 * 60)  # one rank may encode for hours
    if group.world_size > 1:
        if shard is not None:
            raise ValueError("--shard is chosen by torchrun's rank already; do not pass both")
        shard = Shard(group.rank, group.world_size)
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    path = resolve_corpus_path(data)
    stats = DataStats()
    corpus = load_corpus(path, stats, encode_ids)
    doc_ids = list(corpus)
    source = {"corpus": str(path.resolve()), "data_issues": dict(stats.counts)}
    if encode_ids:
        source["ids_encoded"] = True  # search shows the original ids
    if ModelSpec.parse(model).kind == "fusion":
        if shard is not None:
            raise ValueError(
                f"--model {model}: a fused index is built in one piece by one process (no --shard, no torchrun)"
            )
        build_fused_index(corpus, model, out, factory, params, use_cache, show_progress, device, source)
        return None
    encoder, meta = _encoder_and_meta(model, device, use_cache, source)  # bm25's encoder refuses to give vectors
    if shard is not None:
        start, stop = shard.bounds(len(doc_ids))
        doc_ids = doc_ids[start:stop]
    # PromptReps / DiffRetriever index their pooled dense vectors
    vectors = encoder.encode_documents([corpus[d] for d in doc_ids], show_progress)
    snippets = [snippet(corpus[d]) for d in doc_ids]
    if shard is None:
        index = DenseIndex.build(doc_ids, vectors, factory, params, meta=meta, snippets=snippets)
        index.save(out)
        return index
    _write_part(shard, out, doc_ids, vectors, meta, snippets)
    group.barrier()
    if group.world_size > 1 and group.is_main:
        return merge_index(out, factory, params)
    return None


def _encoder_and_meta(model: str, device: str, use_cache: bool, source: dict) -> tuple[Encoder, dict]:
    """The encoder of a dense index and the meta.json it records: the model, and the weights' fingerprint (search
    refuses another model's queries)."""
    encoder = load_encoder(model, device=device, use_cache=use_cache)
    meta = {"model": encoder.spec, **source}
    if (fingerprint := encoder.fingerprint()) is not None:
        meta["model_fingerprint"] = fingerprint
    return encoder, meta


def snippet(text: str, length: int = 100) -> str:
    return text[:length] + ("…" if len(text) > length else "")


def _write_part(
    shard: Shard, out: Path, doc_ids: list[str], vectors: np.ndarray, meta: dict, snippets: list[str]
) -> None:
    header = json.dumps({**meta, "shard": shard.index, "count": shard.count})
    # atomic: a crashed shard leaves no part behind, so merge cannot take half of one
    with atomic_open(shard.path(out), "wb") as handle:
        np.savez(
            handle,
            vectors=np.asarray(vectors, dtype=np.float32),
            doc_ids=np.asarray(doc_ids, dtype=object).astype(str),
            snippets=np.asarray(snippets, dtype=object).astype(str),
            meta=np.asarray(header),
        )


def merge_index(out: str | os.PathLike, factory: str = "exact", params: str = "") -> DenseIndex:
    """Join the parts in `out/parts/` (written by sharded `build_index`) into one index at `out`."""
    out = Path(out)
    parts = sorted((out / PARTS).glob("part-*-of-*.npz"))
    if not parts:
        raise FileNotFoundError(f"no index parts in {out / PARTS}; run `dreamir index --shard I/N` first")
    loaded = []
    for part in parts:
        try:
            with np.load(part, allow_pickle=False) as f:
                snippets = [str(s) for s in f["snippets"]] if "snippets" in f.files else None
                loaded.append((json.loads(str(f["meta"])), list(f["doc_ids"]), np.asarray(f["vectors"]), snippets))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"{part}: damaged or truncated index part ({type(err).__name__}: {err}); write it again with "
                "`dreamir index --shard I/N`"
            ) from None
    count = loaded[0][0]["count"]
    found = {m["shard"] for m, *_ in loaded}
    missing = sorted(set(range(count)) - found)
    if missing or any(m["count"] != count for m, *_ in loaded):
        raise ValueError(f"{out / PARTS}: parts {[i + 1 for i in missing]} of {count} are missing or counts differ")
    first = loaded[0][0]
    for m, *_ in loaded:
        for key, what in (("corpus", "corpora"), ("model", "models"), ("model_fingerprint", "model weights")):
            if m.get(key) != first.get(key):
                raise ValueError(
                    f"{out / PARTS}: part {m['shard'] + 1} and part {first['shard'] + 1} come from different {what} "
                    f"({m.get(key)} vs {first.get(key)}); write every part from one corpus and model"
                )
    loaded.sort(key=lambda item: item[0]["shard"])
    doc_ids = [d for _, ids, _, _ in loaded for d in ids]
    vectors = np.concatenate([v for _, _, v, _ in loaded])
    have_snippets = all(s is not None for *_, s in loaded)  # parts written before snippets were kept have none
    snippets = [t for *_, s in loaded for t in s] if have_snippets else None
    meta = {k: v for k, v in first.items() if k not in ("shard", "count")}
    index = DenseIndex.build(doc_ids, vectors, factory, params, meta={**meta, "merged_parts": count}, snippets=snippets)
    index.save(out)
    return index


def build_fused_index(
    corpus: dict[str, str],
    model: str,
    out: str | os.PathLike,
    factory: str,
    params: str,
    use_cache: bool,
    show_progress: bool,
    device: str,
    source: dict,
) -> Path:
    """One index per side of the fused spec `model` (BM25 or dense), in one folder swapped in whole."""
    method, weight, first, second = split_fusion_spec(model)  # type: ignore[misc]
    if method == "fuse" and weight is None:
        raise ValueError(
            f"--model {model}: an index needs the fusion weight: choose it on a dev split "
            "(dreamir eval --fusion-dev-split SPLIT --model fuse:A+B) and index fuse:W:A+B"
        )
    doc_ids = list(corpus)
    texts = [corpus[d] for d in doc_ids]
    snippets = [snippet(t) for t in texts]
    sides: dict[str, DenseIndex | LexicalIndex] = {}
    for name, side in (("side-1", first), ("side-2", second)):
        if ModelSpec.parse(side).kind == "bm25":
            sides[name] = LexicalIndex.build(doc_ids, texts, snippets, {"model": "bm25", **source})
            continue
        encoder, meta = _encoder_and_meta(side, device, use_cache, source)
        vectors = encoder.encode_documents(texts, show_progress)
        sides[name] = DenseIndex.build(doc_ids, vectors, factory, params, meta=meta, snippets=snippets)
    fusion = {"spec": model, "method": method, "weight": weight, "sides": {"side-1": first, "side-2": second}}
    files = {name: index.save for name, index in sides.items()}
    return save_checked_folder(out, files, {"fusion": fusion, "size": len(doc_ids), **source})


class IndexSearcher:
    """An index folder opened once for many queries: its checksums checked once (a fused index's meta.json covers
    both sides' files), its sides and the query encoder loaded once. Queries go through in batches, as `eval` ranks
    them; a fused index asks each side for its top `FUSION_DEPTH` and fuses them."""

    def __init__(self, folder: str | os.PathLike, force: bool = False, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.meta = load_checked_meta(self.folder)
        self.fusion: dict | None = self.meta.get("fusion")
        paths = [self.folder / "side-1", self.folder / "side-2"] if self.fusion else [self.folder]
        self.sides = [_open_side(path, force, device) for path in paths]

    def run(self, queries: dict[str, str], k: int = 10) -> tuple[Run, dict[str, str]]:
        """The top-k of every query as a run {query id: {doc id (as stored): score}}, and the hit documents'
        snippets."""
        depth = max(k, FUSION_DEPTH) if self.fusion else k
        runs, snippets = [], {}
        for side in self.sides:
            run, side_snippets = side.hits(queries, depth)
            runs.append(run)
            snippets.update(side_snippets)
        if not self.fusion:
            return runs[0], snippets
        if self.fusion["method"] == "rrf":
            fused = reciprocal_rank_fusion(*runs)
        else:
            fused = convex_fusion(*runs, self.fusion["weight"])
        return top_k(fused, k), snippets

    def search(self, queries: list[str], k: int = 10) -> list[list[dict]]:
        """For each query, its hits best first: {"doc_id" (decoded if the index encoded ids), "score", "snippet"}."""
        ids = [str(i) for i in range(len(queries))]
        run, snippets = self.run(dict(zip(ids, queries)), k)
        decode = self.meta.get("ids_encoded", False)
        return [
            [
                {"doc_id": decode_id(doc_id) if decode else doc_id, "score": score, "snippet": snippets[doc_id]}
                for doc_id, score in sorted(run.get(qid, {}).items(), key=lambda item: -item[1])
            ]
            for qid in ids
        ]


def search_index(
    folder: str | os.PathLike, query: str, k: int = 10, force: bool = False, device: str = "cpu"
) -> list[dict]:
    """Top-k documents for one query (`IndexSearcher` for many). The query is encoded (on `device`) by the model the
    index was built with; if that model's weights changed since (the folder was replaced), the search is refused
    unless `force`."""
    return IndexSearcher(folder, force, device).search([query], k)[0]


@dataclass
class _Side:
    """One index of a searcher: how it ranks query texts ((scores, rows) per query), its document ids and snippets."""

    rank: Callable[[list[str], int], tuple[np.ndarray, np.ndarray]]
    doc_ids: list[str]
    texts: list[str]

    def hits(self, queries: dict[str, str], k: int) -> tuple[Run, dict[str, str]]:
        scores, rows = self.rank(list(queries.values()), k)
        run: Run = {}
        snippets: dict[str, str] = {}
        for qid, row_scores, row_ids in zip(queries, scores, rows):
            kept = [(int(r), float(s)) for s, r in zip(row_scores, row_ids) if r >= 0]  # faiss pads short lists with -1
            run[qid] = {self.doc_ids[r]: score for r, score in kept}
            snippets.update({self.doc_ids[r]: self.texts[r] for r, _ in kept})
        return run, snippets


def _open_side(folder: Path, force: bool, device: str) -> _Side:
    """One index of a searcher (its checksums already checked by the caller), with its query encoder."""
    if "lexical" in load_checked_meta(folder, verify=False):
        lexical = LexicalIndex.load(folder, verify=False)
        return _Side(lexical.search, lexical.doc_ids, lexical.snippets)
    index = DenseIndex.load(folder, verify=False)
    model = index.meta["model"]
    if not model:
        raise ValueError(f"{folder} records no model to encode queries with (it was built from a retriever in memory)")
    encoder = load_encoder(model, device=device)
    built_with = index.meta.get("model_fingerprint")
    if built_with and encoder.fingerprint() != built_with and not force:
        raise ValueError(
            f"the model at {model} is not the one {folder} was built with (its weights changed); "
            "rebuild the index, or pass --force to search with it anyway"
        )
    texts = index.snippets
    if texts is None:  # an index built before snippets were kept: the corpus file as it is now
        corpus = load_corpus(index.meta["corpus"], DataStats()) if Path(index.meta.get("corpus", "")).is_file() else {}
        texts = [snippet(corpus.get(doc_id, "")) for doc_id in index.doc_ids]
    return _Side(lambda queries, k: index.search(encoder.encode_queries(queries), k), index.doc_ids, texts)
