"""Sharded `dreamir index`: parts encoded separately (flags or torchrun ranks) merge into the same index."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from dreamir.retrieval.index import DenseIndex
from dreamir.retrieval.indexing import Shard

from .test_beir_and_eval import make_beir

CORPUS = [
    {"_id": f"d{i}", "title": "", "text": f"document {i} about topic {i % 3} and word {i * 7 % 5}"} for i in range(7)
]


@pytest.fixture
def corpus_folder(tmp_path):
    return make_beir(tmp_path / "beir", corpus=CORPUS)


def assert_same_index(merged: DenseIndex, whole: DenseIndex):
    assert merged.doc_ids == whole.doc_ids == [d["_id"] for d in CORPUS]
    np.testing.assert_allclose(merged.vectors, whole.vectors, atol=1e-6)


def test_shard_bounds_cover_the_corpus_once():
    for count in (1, 2, 3, 7, 9):
        slices = [Shard(i, count).bounds(7) for i in range(count)]
        assert slices[0][0] == 0 and slices[-1][1] == 7
        assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    assert Shard.parse("2/4") == Shard(1, 4)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(bad)


def test_parts_from_separate_commands_merge_into_the_whole_index(tmp_path, tiny_encoder_dir, corpus_folder, capsys):
    from dreamir.cli import main

    model = str(tiny_encoder_dir)
    assert main(["index", "--data", str(corpus_folder), "--model", model, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "sharded"
    for part in ("3/3", "1/3"):
        assert main(["index", "--data", str(corpus_folder), "--model", model, "--out", str(out), "--shard", part]) == 0
    assert main(["index", "--out", str(out), "--merge"]) == 2  # part 2 is missing
    assert "parts [2] of 3 are missing" in capsys.readouterr().err
    assert main(["index", "--data", str(corpus_folder), "--model", model, "--out", str(out), "--shard", "2/3"]) == 0
    assert main(["index", "--out", str(out), "--merge"]) == 0
    assert_same_index(DenseIndex.load(out), DenseIndex.load(tmp_path / "whole"))


@pytest.mark.slow
def test_torchrun_ranks_encode_shards_and_rank0_merges(tmp_path, tiny_encoder_dir, corpus_folder):
    from dreamir.retrieval.indexing import build_index

    whole = build_index(corpus_folder, str(tiny_encoder_dir), tmp_path / "whole", show_progress=False)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DREAMIR_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "ranks"
    command = ["-m", "dreamir.cli", "index", "--data", str(corpus_folder), "--model", str(tiny_encoder_dir)]
    proc = subprocess.run(
        [*torchrun, *command, "--out", str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["part-00001-of-00002.npz", "part-00002-of-00002.npz"]
    merged = DenseIndex.load(out)
    assert merged.meta["merged_parts"] == 2
    assert_same_index(merged, whole)
