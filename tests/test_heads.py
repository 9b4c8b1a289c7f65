from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dreamir.data.training import Example, tokenize_examples
from dreamir.heads import detection_examples_from_texts, load_heads, score_heads
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection
from dreamir.models.layout import pack_batch
from dreamir.models.lm_passes import target_nll
from dreamir.settings import TokenLimits
from dreamir.testing import WORDS, tiny_causal_lm


def tiny_lm() -> FrozenLM:
    model, tok = tiny_causal_lm("llama", seed=2)
    return FrozenLM.from_model(model, tok)


def detection_set(n=6) -> list[Example]:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS[:60], size=40)) for _ in range(12)]
    return detection_examples_from_texts(
        texts, n, num_candidates=3, query_words=6, target_words=6, passage_words=12, seed=0
    )


def test_detection_examples_hide_the_target_and_mark_the_passage():
    examples = detection_set()
    for ex in examples:
        assert ex.positive is not None and len(ex.candidates) == 3
        assert ex.target not in ex.candidates[ex.positive]


def test_gradient_scores_equal_one_head_at_a_time_reference():
    """The all-heads-at-once score equals a separate backward pass per head."""
    lm = tiny_lm()
    examples = detection_set(4)
    ranking = score_heads(lm, examples, "gradient", TokenLimits(), batch_size=3, show_progress=False)
    tokenized = tokenize_examples(examples, lm.tokenize, TokenLimits())
    pb = pack_batch(tokenized, lm.sink_token_id, lm.tokenizer.pad_token_id)
    pos = torch.tensor([ex.positive for ex in examples])
    for layer, head in [(0, 0), (1, 2), (2, 3)]:
        bias = torch.zeros(len(examples), 3, requires_grad=True)
        inj = HeadInjection(
            [(layer, head)], -torch.log(torch.tensor(3.0)) + bias, pb.doc_index, pb.inject_rows, pb.num_docs
        )
        target_nll(lm, pb, inj).sum().backward()
        g = bias.grad
        is_pos = torch.nn.functional.one_hot(pos, 3).bool()
        expected = ((g * ~is_pos).sum(1) / 2 - g[is_pos]).mean()
        assert ranking.scores[layer, head] == pytest.approx(float(expected), rel=1e-4, abs=1e-7)


def test_attention_scores_are_shares_and_json_png_written(tmp_path):
    lm = tiny_lm()
    ranking = score_heads(lm, detection_set(), "attention", show_progress=False)
    assert ranking.scores.shape == (lm.num_layers, lm.num_heads)
    assert ((ranking.scores >= 0) & (ranking.scores <= 1)).all()
    path = ranking.save(tmp_path / "heads.json", k=5)
    data = json.loads(path.read_text())
    assert len(data["selected"]) == 5 and len(data["ranking"]) == lm.num_layers * lm.num_heads
    scores = [r["score"] for r in data["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert path.with_suffix(".png").stat().st_size > 1000
    assert load_heads(path) == [tuple(h) for h in data["selected"]]
    assert len(load_heads(path, 7)) == 7


def test_detection_needs_positives():
    with pytest.raises(ValueError, match="positive"):
        score_heads(tiny_lm(), [Example("q", "t", ["a", "b"])], show_progress=False)


def write_tiny_beir(folder, n_docs=12, n_queries=4):
    rng = np.random.default_rng(1)
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            f.write(
                json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(WORDS[:60], size=110))}) + "\n"
            )
    with open(folder / "queries.jsonl", "w") as f:
        for i in range(n_queries):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choice(WORDS[:60], size=5))}) + "\n")
    with open(folder / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(n_queries)))
    return folder


def test_qrels_detection_set_hides_the_target(tmp_path):
    from dreamir.heads import examples_from_qrels

    folder = write_tiny_beir(tmp_path / "beir")
    examples = examples_from_qrels(folder, "train", 10, num_candidates=3, target_words=20, passage_words=30)
    assert len(examples) == 4
    with open(folder / "corpus.jsonl") as f:
        corpus = {d["_id"]: d["text"] for d in map(json.loads, f)}
    for ex in examples:
        gold = next(t for t in corpus.values() if t.startswith(ex.target))
        assert ex.candidates[ex.positive] == " ".join(gold.split()[20:50])
        assert len(ex.candidates) == 3


def test_heads_cli_writes_json_and_heat_map(tmp_path, tiny_llm_dir):
    from dreamir.cli import main

    folder = write_tiny_beir(tmp_path / "beir")
    out = tmp_path / "heads.json"
    assert (
        main(
            [
                "heads",
                "--llm",
                str(tiny_llm_dir),
                "--data",
                str(folder / "corpus.jsonl"),
                "--out",
                str(out),
                "--k",
                "5",
                "--num-examples",
                "4",
                "--candidates",
                "3",
            ]
        )
        == 0
    )
    assert len(json.loads(out.read_text())["selected"]) == 5 and out.with_suffix(".png").exists()
    out2 = tmp_path / "heads-qrels.json"
    assert (
        main(
            [
                "heads",
                "--llm",
                str(tiny_llm_dir),
                "--beir",
                str(folder),
                "--out",
                str(out2),
                "--k",
                "all",
                "--method",
                "attention",
                "--candidates",
                "3",
            ]
        )
        == 0
    )
    assert len(json.loads(out2.read_text())["selected"]) == 12
