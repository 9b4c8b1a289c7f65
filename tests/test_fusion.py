"""Hybrid retrieval: reciprocal-rank and convex fusion against hand computations, the fusion spec end to end."""

from __future__ import annotations

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
