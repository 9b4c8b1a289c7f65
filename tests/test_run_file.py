"""`run:FILE`: a TREC run computed elsewhere, scored and fused beside dreamir's models."""

from __future__ import annotations

import json

import pytest

from .test_beir_and_eval import make_beir


def test_a_run_file_scores_as_the_model_that_wrote_it_and_fuses(tmp_path, tiny_encoder_dir, capsys, monkeypatch):
    """`dreamir search --queries --out RUN` then `dreamir eval --model run:RUN`: the metrics and per-query scores of
    the model that searched; `rrf:bm25+run:RUN` equals `rrf:bm25+MODEL`; the paired test treats it as any model."""
    from dreamir.cli import main

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    folder = make_beir(tmp_path / "beir")
    model = str(tiny_encoder_dir)
    assert main(["index", "--data", str(folder), "--model", model, "--out", str(tmp_path / "idx")]) == 0
    run = tmp_path / "run.trec"
    argv = ["search", "--index", str(tmp_path / "idx"), "--queries", str(folder / "queries.jsonl"), "-k", "100"]
    assert main([*argv, "--out", str(run)]) == 0
    specs = [model, f"run:{run}", f"rrf:bm25+{model}", f"rrf:bm25+run:{run}"]
    out = tmp_path / "report"
    assert main(["eval", "--data", str(folder), *(x for s in specs for x in ("--model", s)), "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    for a, b in ((model, f"run:{run}"), (f"rrf:bm25+{model}", f"rrf:bm25+run:{run}")):
        for metric, value in report["models"][a].items():
            if metric != "seconds":
                assert report["models"][b][metric] == pytest.approx(value, abs=1e-6), (b, metric)
        assert report["per_query_ndcg@10"][b] == pytest.approx(report["per_query_ndcg@10"][a], abs=1e-6)


@pytest.mark.parametrize(
    "content, message",
    [
        ("q1 Q0 d1 1 0.9 x\nq1 Q0 d2 2 0.8\n", "run.trec, line 2: 5 fields, a TREC run line has 6"),
        ("q1 Q0 d1 1 high x\n", "run.trec, line 1: field 'score': 'high' is not a number"),
        ("q1 Q0 d1 1 nan x\n", "run.trec, line 1: field 'score': 'nan' is not a finite number"),
        ("q1 Q0 d1 1 0.9 x\nq1 Q0 d1 2 0.8 x\n", "run.trec, line 2: document 'd1' ranked twice for query 'q1'"),
        ("q1 Q0 d1 1 0.9 x\nq1 Q0 d77 2 0.8 x\n", "run.trec, line 2: document 'd77' is not in the corpus evaluated"),
        ("q9 Q0 d1 1 0.9 x\n", "run.trec: none of its 1 queries is among the 2 evaluated"),
        ("\n", "run.trec: no ranking in the file"),
    ],
    ids=["fields", "score", "nan", "twice", "other corpus", "other queries", "empty"],
)
def test_a_bad_run_file_is_named_with_its_line_and_field(tmp_path, capsys, content, message):
    from dreamir.cli import main

    folder = make_beir(tmp_path / "beir")
    (tmp_path / "run.trec").write_text(content)
    assert main(["eval", "--data", str(folder), "--model", "bm25", "--model", f"run:{tmp_path / 'run.trec'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_run_file_is_refused_where_vectors_are_needed(tmp_path, capsys):
    from dreamir.cli import main

    folder = make_beir(tmp_path / "beir")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 0.9 x\n")
    out = str(tmp_path / "idx")
    assert main(["index", "--data", str(folder), "--model", f"run:{tmp_path / 'run.trec'}", "--out", out]) == 2
    assert "is a ranking read from a file, not a model" in capsys.readouterr().err
    assert main(["eval", "--data", str(folder), "--model", f"run:{tmp_path / 'missing.trec'}"]) == 2
    assert "no run file" in capsys.readouterr().err
