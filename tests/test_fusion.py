"""Hybrid retrieval: reciprocal-rank and convex fusion against hand computations, the fusion spec end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamir.retrieval.fusion import choose_fusion_weight, convex_fusion, reciprocal_rank_fusion

from .test_beir_and_eval import make_beir

A = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
B = {"q": {"d3": 0.9, "d1": 0.5, "d4": 0.1}}


def test_reciprocal_rank_fusion_sums_one_over_k_plus_rank():
    fused = reciprocal_rank_fusion(A, B, k=60)["q"]
    assert fused["d1"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["d3"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d2"] == pytest.approx(1 / 62) and fused["d4"] == pytest.approx(1 / 63)


def test_convex_fusion_weighs_min_max_normalised_scores():
    fused = convex_fusion(A, B, 0.25)["q"]
    # A normalised: d1 1, d2 .5, d3 0; B normalised: d3 1, d1 .5, d4 0; absent = 0
    assert fused == pytest.approx({"d1": 0.25 + 0.75 * 0.5, "d2": 0.125, "d3": 0.75, "d4": 0.0})
    assert convex_fusion(A, B, 1.0)["q"] == pytest.approx({"d1": 1.0, "d2": 0.5, "d3": 0.0, "d4": 0.0})


class FixedRun:
    """An encoder that returns a given run (a stand-in for a retriever)."""

    def __init__(self, run):
        self.run = run

    def retrieve(self, corpus, queries, k=100, ignore_identical_ids=True, show_progress=True):
        return self.run


def test_the_fusion_weight_is_chosen_by_the_given_score():
    def score(run):  # "d2 is the relevant document": reward ranking it first
        return float(max(run["q"], key=run["q"].get) == "d2")

    weight, scores = choose_fusion_weight(FixedRun(A), FixedRun({"q": {"d2": 1.0, "d1": 0.0}}), {}, {"q": ""}, score)
    assert scores[0.0] == 1.0 and scores[1.0] == 0.0 and scores[weight] == 1.0


def test_fusion_specs_evaluate_end_to_end(tmp_path, tiny_encoder_dir, capsys, monkeypatch):
    from dreamir.cli import main
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    model = str(tiny_encoder_dir)
    specs = ["bm25", f"rrf:bm25+{model}", f"fuse:1.0:bm25+{model}", f"fuse:0:bm25+{model}", model]
    assert main(["eval", "--data", str(folder), *(x for s in specs for x in ("--model", s))]) == 0
    data = load_beir(folder, "test")
    ndcg = {spec: evaluate_model(spec, data, show_progress=False).metrics["ndcg@10"] for spec in specs}
    assert ndcg[f"fuse:1.0:bm25+{model}"] == ndcg["bm25"]  # all weight on BM25: BM25's ranking
    assert ndcg[f"fuse:0:bm25+{model}"] == ndcg[model]
    assert main(["eval", "--data", str(folder), "--model", "rrf:bm25"]) == 2
    assert "name two models joined by '+'" in capsys.readouterr().err


def test_a_fusion_weight_is_chosen_on_the_dev_split_and_never_on_the_split_reported(
    tmp_path, tiny_encoder_dir, capsys, monkeypatch
):
    """`fuse:A+B` takes the weight with the best dev nDCG@10 (checked against a hand grid search through
    `evaluate_model` on the dev split), is then evaluated on --split with it, and is refused without a dev split or
    with the reported split as its dev split."""
    from dreamir.cli import main
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t1\n")
    model = str(tiny_encoder_dir)
    dev = load_beir(folder, "dev")
    by_weight = {
        w / 10: evaluate_model(f"fuse:{w / 10}:bm25+{model}", dev, show_progress=False).metrics["ndcg@10"]
        for w in range(11)
    }
    best = max(by_weight, key=lambda w: (by_weight[w], -abs(w - 0.5)))
    capsys.readouterr()
    report = tmp_path / "report"
    argv = ["eval", "--data", str(folder), "--model", f"fuse:bm25+{model}", "--fusion-dev-split", "dev"]
    assert main([*argv, "--out", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"fuse:bm25+{model}: weight {best:g} chosen on split 'dev'" in out
    assert f"fuse:{best:g}:bm25+{model}" in out  # the row is the fusion with the chosen weight
    kept = json.loads((report / "metrics.json").read_text())["fusion_weights"][f"fuse:{best:g}:bm25+{model}"]
    assert kept["dev_split"] == "dev" and kept["dev_ndcg@10_by_weight"][str(best)] == pytest.approx(by_weight[best])
    assert "Fusion weight: fuse:bm25+" in (report / "report.md").read_text()
    assert main(["eval", "--data", str(folder), "--model", f"fuse:bm25+{model}"]) == 2
    assert "--fusion-dev-split" in capsys.readouterr().err
    assert main(["eval", "--data", str(folder), "--model", f"fuse:bm25+{model}", "--fusion-dev-split", "test"]) == 2
    assert "is the split evaluated" in capsys.readouterr().err
    assert main(["eval", "--data", str(folder), "--model", "fuse:1.5:bm25+x"]) == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err


def test_mteb_scores_bm25_and_fusions_through_its_search_protocol_as_dreamir_does(
    tmp_path, tiny_encoder_dir, monkeypatch
):
    mteb = pytest.importorskip("mteb")
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.evaluation.mteb_wrapper import DreamirEncoder, DreamirSearch, local_beir_task, mteb_model

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    data = load_beir(folder, "test")
    model = str(tiny_encoder_dir)
    assert isinstance(mteb_model(model), DreamirEncoder)
    for spec in ("bm25", f"rrf:bm25+{model}", f"fuse:0.3:bm25+{model}"):
        wrapped = mteb_model(spec)
        assert isinstance(wrapped, DreamirSearch)
        results = mteb.evaluate(wrapped, [local_beir_task(folder)], cache=None)
        scores = results.task_results[0].scores["test"][0]
        ours = evaluate_model(spec, data, show_progress=False).metrics
        assert scores["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=1e-4), spec
        assert scores["recall_at_100"] == pytest.approx(ours["recall@100"], abs=1e-4), spec
    with pytest.raises(ValueError, match="DreamirSearch"):
        DreamirEncoder.load("bm25")


def test_a_fused_index_searches_as_eval_ranks_and_survives_damage_checks(
    tmp_path, tiny_encoder_dir, capsys, monkeypatch
):
    """`dreamir index --model rrf:bm25+M` keeps a BM25 index and a dense index; `search` returns, for each query, the
    ranking `dreamir eval` gives the same fusion spec (scores included). A damaged BM25 file is named."""
    from dreamir.cli import main
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.retrieval import index as index_module
    from dreamir.retrieval.indexing import search_index

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    data = load_beir(folder, "test")
    model = str(tiny_encoder_dir)
    for spec in (f"rrf:bm25+{model}", f"fuse:0.3:{model}+bm25"):
        out = tmp_path / spec.split(":")[0]
        assert main(["index", "--data", str(folder), "--model", spec, "--out", str(out)]) == 0
        assert f"indexed 3 documents with {spec}" in capsys.readouterr().out
        run = evaluate_model(spec, data, show_progress=False, ignore_identical_ids=False).run
        for qid, text in data.queries.items():
            hits = search_index(out, text, k=3)
            expected = sorted(run[qid].items(), key=lambda item: -item[1])[:3]
            assert [h["doc_id"] for h in hits] == [d for d, _ in expected]
            assert [h["score"] for h in hits] == pytest.approx(
                [s for _, s in expected], abs=1e-5
            )  # one query vs a batch
            assert all(h["snippet"] for h in hits)
    assert main(["search", "--index", str(tmp_path / "rrf"), "scurvy", "-k", "1"]) == 0
    assert "d1" in capsys.readouterr().out
    hashed: list[Path] = []
    real_sha256 = index_module.file_sha256
    monkeypatch.setattr(index_module, "file_sha256", lambda path: hashed.append(Path(path)) or real_sha256(path))
    search_index(tmp_path / "rrf", "scurvy", k=1)
    stored = [f for f in (tmp_path / "rrf").rglob("*") if f.is_file() and f != tmp_path / "rrf" / "meta.json"]
    assert sorted(hashed) == sorted(stored)  # every file of both sides checked, and once per search
    damaged = next((tmp_path / "rrf" / "side-1" / "bm25").glob("*.npy"))
    damaged.write_bytes(damaged.read_bytes()[:-4])
    assert main(["search", "--index", str(tmp_path / "rrf"), "scurvy"]) == 2
    assert "does not match the checksum" in capsys.readouterr().err
    assert main(["index", "--data", str(folder), "--model", f"fuse:bm25+{model}", "--out", str(tmp_path / "x")]) == 2
    assert "--fusion-dev-split" in capsys.readouterr().err
    argv = ["index", "--data", str(folder), "--model", f"rrf:bm25+{model}", "--out", str(tmp_path / "y")]
    assert main([*argv, "--shard", "1/2"]) == 2
    assert "built in one piece" in capsys.readouterr().err


def test_search_runs_a_queries_file_through_an_index_opened_once(tmp_path, tiny_encoder_dir, capsys, monkeypatch):
    """`dreamir search --queries FILE --out RUN`: one TREC run for every query, equal to `dreamir eval`'s ranking of
    the same spec (fused and dense), the index and encoder loaded once; one query alone gives the same hits; a bad
    queries file is named by line and field, and QUERY with --queries is refused."""
    from dreamir.cli import main
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.retrieval import indexing
    from dreamir.retrieval.indexing import search_index

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("dreamir.cli.SEARCH_CHUNK", 1)  # several rounds, as a long queries file
    folder = make_beir(tmp_path / "beir")
    data = load_beir(folder, "test")
    assert len(data.queries) > 1
    model = str(tiny_encoder_dir)
    opened: list[Path] = []
    real_open = indexing._open_side
    monkeypatch.setattr(indexing, "_open_side", lambda *a: opened.append(a[0]) or real_open(*a))
    for spec in (f"fuse:0.3:bm25+{model}", model):
        index, trec = tmp_path / "idx", tmp_path / "run.trec"
        assert main(["index", "--data", str(folder), "--model", spec, "--out", str(index)]) == 0
        opened.clear()
        argv = ["search", "--index", str(index), "--queries", str(folder / "queries.jsonl"), "-k", "2"]
        assert main([*argv, "--out", str(trec)]) == 0
        assert f"searched {len(data.queries)} queries: top 2 each → {trec}" in capsys.readouterr().out
        assert len(opened) == (2 if spec.startswith("fuse") else 1)  # each side once, not once per query
        rows = [line.split() for line in trec.read_text().splitlines()]
        expected = evaluate_model(spec, data, show_progress=False, ignore_identical_ids=False).run
        for qid, text in data.queries.items():
            ours = [(r[2], int(r[3]), float(r[4])) for r in rows if r[0] == qid]
            best = sorted(expected[qid].items(), key=lambda item: -item[1])[:2]
            assert [(d, rank) for d, rank, _ in ours] == [(d, rank) for rank, (d, _) in enumerate(best, start=1)]
            assert [s for *_, s in ours] == pytest.approx([s for _, s in best], abs=1e-5)
            assert [h["doc_id"] for h in search_index(index, text, k=2)] == [d for d, *_ in ours]
        assert all(r[1] == "Q0" and r[5] == "dreamir" for r in rows)
        assert main(argv) == 0 and capsys.readouterr().out.splitlines() == trec.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "q1", "text": "scurvy"}\n{"text": "no id"}\n')
    assert main(["search", "--index", str(tmp_path / "idx"), "--queries", str(bad)]) == 2
    assert "bad.jsonl, line 2: field '_id': missing" in capsys.readouterr().err
    bad.write_text('{"_id": "q1", "text": "  "}\n')
    assert main(["search", "--index", str(tmp_path / "idx"), "--queries", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.jsonl: no query to search (skipped_empty_queries=1)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["search", "--index", str(tmp_path / "idx"), "scurvy", "--queries", str(bad)]) == 2
    assert "one QUERY or --queries FILE" in capsys.readouterr().err
