"""The label-free check (`dreamir check`): its test set, its filters, its verdicts and the command."""

from __future__ import annotations

import itertools
import json

import pytest

from dreamir.cli import main
from dreamir.data.jsonl import DataError
from dreamir.data.questions import QuestionCache, QuestionConfig, question_key
from dreamir.evaluation.check import (
    CheckConfig,
    Validity,
    build_check_queries,
    longest_shared_run,
    passage_of,
    run_check,
    sample_documents,
    training_documents,
    verdict_line,
    words,
)
from dreamir.evaluation.significance import PairedTest, paired_test
from dreamir.testing import save_tiny_encoder

TOPICS = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human", "virus", "liver"]


def corpus_of(n: int = 24) -> dict[str, str]:
    """Documents of distinct vocabulary, long enough to be asked about."""
    return {
        f"d{i}": " ".join(f"{TOPICS[i % 12]}{i} {TOPICS[(i + j) % 12]} word{j}" for j in range(12)) for i in range(n)
    }


class Writer:
    """A stand-in question writer: asks about a document's first word, so BM25 finds the source."""

    def __init__(self, answer=None):
        self.calls = 0
        self.answer = answer or (lambda passage: f"what is known about {passage.split()[0]} here")

    def __call__(self, passages):
        self.calls += 1
        return [self.answer(p) for p in passages]


def config(tmp_path, **overrides) -> CheckConfig:
    writer = QuestionConfig(llm="stand-in", cache=str(tmp_path / "questions.jsonl"))
    return CheckConfig(writer=writer, **{"sample": 10, "min_words": 5, **overrides})


def reference_longest_run(a: list[str], b: list[str]) -> int:
    """Every run of `a` tried against every position of `b` (the plain definition)."""
    best = 0
    for i, j in itertools.product(range(len(a)), range(len(b))):
        n = 0
        while i + n < len(a) and j + n < len(b) and a[i + n] == b[j + n]:
            n += 1
        best = max(best, n)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_longest_shared_run_matches_the_plain_definition(seed):
    import random

    rng = random.Random(seed)
    a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
    b = [rng.choice("abcd") for _ in range(rng.randint(0, 30))]
    assert longest_shared_run(a, b) == reference_longest_run(a, b)


def test_questions_skip_training_documents_and_drop_copies_duplicates_and_empty(tmp_path):
    corpus = corpus_of()
    answers = iter(["", "what", "what is known about protein0 here"])

    def answer(passage: str) -> str:
        special = next(answers, None)
        if special is not None:
            return special  # an empty, a too-short, then a question every later one duplicates
        if passage.startswith("gene"):
            return passage  # copies its source
        return f"what is known about {passage.split()[0]} here"

    exclude = {"d1", "d2", "d3"}
    built = build_check_queries(corpus, config(tmp_path, sample=20), exclude, False, Writer(answer))
    sources = {next(iter(docs)) for docs in built.qrels.values()}
    assert not sources & exclude
    assert built.stats.counts["documents_used_in_training"] == 3
    assert built.stats.counts["dropped_empty_or_short_question"] == 2
    assert built.stats.counts["dropped_copies_its_source"] >= 1
    for qid, docs in built.qrels.items():
        (doc,) = docs
        assert qid == f"check-{doc}" and docs[doc] == 1
        passage = words(passage_of(corpus[doc], config(tmp_path)))
        assert longest_shared_run(words(built.queries[qid]), passage) < 8
    texts = list(built.queries.values())
    assert len(texts) == len(set(texts))  # no near-duplicate (here: identical) question kept twice


def test_questions_are_written_once_a_second_check_reads_them_back(tmp_path):
    corpus, first = corpus_of(), Writer()
    built = build_check_queries(corpus, config(tmp_path), set(), False, first)
    again = Writer()
    assert build_check_queries(corpus, config(tmp_path), set(), False, again).queries == built.queries
    assert first.calls > 0 and again.calls == 0
    # other filter settings reuse the written questions and keep their ids
    loose = build_check_queries(corpus, config(tmp_path, max_copied_words=None), set(), False, again)
    assert again.calls == 0 and set(built.queries) <= set(loose.queries)


def test_the_sample_is_seeded_and_short_documents_are_not_asked_about(tmp_path):
    from dreamir.data.training import DataStats

    corpus = {**corpus_of(), "short": "two words"}
    stats = DataStats()
    picked = sample_documents(corpus, config(tmp_path), set(), stats)
    assert "short" not in picked and stats.counts["documents_too_short"] == 1
    assert picked == sample_documents(corpus, config(tmp_path), set(), DataStats())
    assert picked != sample_documents(corpus, config(tmp_path, seed=1), set(), DataStats())


def test_training_documents_must_name_the_corpus_ids(tmp_path):
    corpus = corpus_of()
    train = tmp_path / "train.jsonl"
    rows = [{"query": "q", "target": "t", "candidates": ["a", "b"], "source": s} for s in ("d4", "d5", "gone")]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_documents(train, corpus) == {"d4", "d5"}
    train.write_text(json.dumps({"query": "q", "target": "t", "candidates": ["a"], "source": "x9"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl.*no source id is a document of the corpus"):
        training_documents(train, corpus)
    train.write_text(json.dumps({"query": "q", "target": "t", "candidates": ["a"]}) + "\n")
    with pytest.raises(DataError, match="no example names its source document"):
        training_documents(train, corpus)


def _test(diff: float, p: float) -> PairedTest:
    return PairedTest(diff, diff - 0.01, diff + 0.01, p, 100)


RELIABLE = Validity("v", {"scifact": {"kendall_tau": 0.8, "sign_agreement": 1.0, "false_better": 0,
                                      "models": 12, "significant_real": 5}})  # fmt: skip
UNRELIABLE = Validity("v", {"scifact": {"kendall_tau": 0.4, "sign_agreement": 0.7, "false_better": 1,
                                        "models": 12, "significant_real": 5}})  # fmt: skip


def test_verdict_lines_say_better_worse_or_cannot_tell_and_hedge_an_unmeasured_check():
    assert verdict_line("B", "A", _test(0.03, 0.01), RELIABLE).startswith("B is better than A on your corpus: +3.0")
    assert verdict_line("B", "A", _test(-0.03, 0.01), RELIABLE).startswith("B is worse than A")
    assert verdict_line("B", "A", _test(0.03, 0.2), RELIABLE).startswith("cannot tell whether B differs from A")
    assert "indicative only" not in verdict_line("B", "A", _test(0.03, 0.01), RELIABLE)
    assert "indicative only" in verdict_line("B", "A", _test(0.03, 0.01), UNRELIABLE)
    assert "never measured" in verdict_line("B", "A", _test(0.03, 0.01), None)
    assert RELIABLE.reliable() and not UNRELIABLE.reliable()


def test_the_check_end_to_end_with_bm25_against_a_random_encoder(tmp_path):
    encoder = save_tiny_encoder(tmp_path / "random-encoder")
    corpus = corpus_of()
    validity = tmp_path / "validity.json"
    shipped = config(tmp_path).variant()
    figures = {"kendall_tau": 0.9, "sign_agreement": 1.0, "false_better": 0, "models": 12, "significant_real": 4}
    validity.write_text(json.dumps({"variants": {shipped: {"scifact": figures, "nfcorpus": figures}}}))
    out = tmp_path / "report"
    result = run_check(
        corpus, [str(encoder), "bm25"], config(tmp_path), out=out, show_progress=False,
        generator=Writer(), validity_file=validity,
    )  # fmt: skip
    base, bm25 = result.results
    assert bm25.metrics["ndcg@10"] > 0.9 > base.metrics["ndcg@10"]  # the questions name their source's first word
    test = result.tests[bm25.model]
    assert test == paired_test(base.per_query, bm25.per_query)
    lines = result.lines()
    assert lines[0].startswith(f"bm25 is better than {base.model} on your corpus: +")
    assert lines[-1].startswith("how far to trust it") and "meets the bar" in lines[-1]
    saved = json.loads((out / "check.json").read_text())
    assert saved["vs_baseline"]["bm25"]["verdict"] == "better" and saved["reliable"] is True
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == saved["questions"] == len(result.queries.queries)
    assert all(r["writer"] == "stand-in" and r["source"] in corpus for r in rows)
    assert (out / "qrels.tsv").read_text().count("\n") == len(rows) + 1


def test_dreamir_check_reads_written_questions_and_prints_one_verdict_per_model(tmp_path, capsys, monkeypatch):
    import dreamir.data.questions as questions

    def no_llm(config):
        raise AssertionError("every question is in the cache: no writer may be loaded")

    monkeypatch.setattr(questions, "load_generator", no_llm)
    corpus = corpus_of()
    folder = tmp_path / "corpus.jsonl"
    folder.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in corpus.items()))
    cache = tmp_path / "questions.jsonl"
    writer = QuestionConfig(cache=str(cache))  # the shipped writer's settings
    shipped = CheckConfig(sample=10, writer=writer)
    # the questions were written earlier (as by a killed check): this run loads no LLM at all
    from dreamir.data.training import DataStats

    docs = sample_documents(corpus, shipped, set(), DataStats())
    written = {question_key(writer, passage_of(corpus[d], shipped)): f"about {corpus[d].split()[0]} now" for d in docs}
    QuestionCache(cache).add(written)
    encoder = save_tiny_encoder(tmp_path / "enc")
    argv = ["check", "--corpus", str(folder), "--model", str(encoder), "--model", "bm25", "--sample", "10"]
    assert main([*argv, "--questions-cache", str(cache), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "label-free check: 10 written questions" in printed
    assert "bm25 is better than" in printed and "how far to trust it" in printed
    assert (tmp_path / "out" / "check.md").exists()


def test_dreamir_check_refuses_one_model_and_names_a_writer_without_a_chat_template(tmp_path, capsys):
    from dreamir.testing import save_tiny_decoder

    folder = tmp_path / "corpus.jsonl"
    folder.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in corpus_of().items()))
    assert main(["check", "--corpus", str(folder), "--model", "bm25"]) == 2
    assert "at least two" in capsys.readouterr().err
    decoder = save_tiny_decoder(tmp_path / "plain-lm")
    argv = ["check", "--corpus", str(folder), "--model", "bm25", "--model", "bm25"]
    assert main(argv) == 2 and "given twice" in capsys.readouterr().err
    argv = ["check", "--corpus", str(folder), "--model", "bm25", "--model", str(decoder), "--writer", str(decoder)]
    assert main([*argv, "--questions-cache", str(tmp_path / "q.jsonl"), "--min-words", "5"]) == 2
    assert "has no chat template" in capsys.readouterr().err


def test_train_check_ends_a_training_with_a_verdict_against_the_start(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys, monkeypatch
):
    import dreamir.data.questions as questions

    from .test_trainer import write_train_data

    data = write_train_data(tmp_path / "train.jsonl", n=6)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in corpus_of().items()))
    monkeypatch.setattr(questions, "load_generator", lambda config: Writer())
    common = ["--llm", str(tiny_llm_dir), "--retriever", str(tiny_encoder_dir), "--data", str(data)]
    settings = ["train.batch_size=3", "train.max_steps=2", "train.warmup_steps=0", "heads.count=4"]
    args = [*common, "--objective", "infonce", *(x for kv in settings for x in ("--set", kv))]
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *args, "--check", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err and not run.exists()  # refused before any training
    assert main(["train", "--run-dir", str(run), *args, "--check", str(corpus)]) == 0
    printed = capsys.readouterr().out
    assert "no example names its source document" in printed  # this training data names no sources
    assert "trained" in printed and "how far to trust it" in printed
    saved = json.loads((run / "check" / "check.json").read_text())
    assert saved["baseline"] == f"start ({tiny_encoder_dir})" and set(saved["vs_baseline"]) == {"trained"}


def test_the_shipped_validity_is_what_the_benchmark_measured():
    """The figures `dreamir check` prints under its verdicts are bench/results/check_validity.json's, and the shipped
    default settings are the variant the benchmark recorded as shipped."""
    from pathlib import Path

    from dreamir.evaluation.check import measured_validity

    bench = json.loads((Path(__file__).parents[1] / "bench/results/check_validity.json").read_text())
    shipped = CheckConfig().variant()
    assert bench["shipped_variant"] == shipped
    validity = measured_validity(shipped)
    assert validity is not None and set(validity.datasets) == {"scifact", "nfcorpus"}
    for dataset, figures in validity.datasets.items():
        measured = bench["variants"][shipped][dataset]
        assert {k: measured[k] for k in figures} == figures
        assert bench[dataset]["kendall_tau"] == figures["kendall_tau"]
    assert not validity.reliable()  # NFCorpus τ 0.697 < 0.7: verdicts are marked "indicative only"
