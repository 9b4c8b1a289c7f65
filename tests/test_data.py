from __future__ import annotations

import json

import pytest

from dreamir.data.jsonl import DataError
from dreamir.data.text import BuildConfig, build_self_supervised, chunk_text
from dreamir.data.training import DataStats, load_examples, tokenize_examples
from dreamir.settings import TokenLimits


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"query": "what causes scurvy", "target": "vitamin c deficiency", "candidates": ["a", "b"]})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "target": "t", "candidates": ["a"]', "line 2: malformed JSON"),
        ('["not", "an", "object"]', "line 2: expected a JSON object"),
        ('{"target": "t", "candidates": ["a"]}', "line 2: field 'query': missing"),
        ('{"query": 3, "target": "t", "candidates": ["a"]}', "line 2: field 'query': expected a string"),
        ('{"query": "q", "target": "t"}', "line 2: field 'candidates': missing"),
        ('{"query": "q", "target": "t", "candidates": "a"}', "line 2: field 'candidates': expected a list"),
        ('{"query": "q", "target": "t", "candidates": ["a"], "positive": 4}', "line 2: field 'positive'"),
        ('{"query": "q", "target": "t", "candidates": ["a"], "source": 4}', "line 2: field 'source'"),
        (
            '{"query": "q", "target": "t", "candidates": ["a", "b"], "candidate_sources": ["d1"]}',
            "line 2: field 'candidate_sources': expected a list of 2 strings",
        ),
    ],
)
def test_bad_training_lines_name_file_line_and_field(tmp_path, line, message):
    path = write_lines(tmp_path / "train.jsonl", [GOOD, line])
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_non_utf8_bytes_are_reported_with_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + b'{"query": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        load_examples(path)


def test_imperfect_lines_are_skipped_and_counted(tmp_path):
    rows = [
        GOOD,
        json.dumps({"query": " ", "target": "t", "candidates": ["a"]}),
        json.dumps({"query": "q", "target": "", "candidates": ["a"]}),
        json.dumps({"query": "q", "target": "t", "candidates": []}),
        json.dumps(
            {
                "query": "q",
                "target": "t",
                "candidates": ["", "x", "x", "y"],
                "positive": 2,
                "source": "d0",
                "candidate_sources": ["d1", "d2", "d2", "d0"],
            }
        ),
        "",
    ]
    stats = DataStats()
    examples = load_examples(write_lines(tmp_path / "t.jsonl", rows), stats)
    assert len(examples) == 2
    assert examples[1].candidates == ["x", "y"] and examples[1].positive == 0
    assert examples[1].candidate_sources == ["d2", "d0"] and examples[1].same_document(1)
    assert examples[1].own_document_split() == ([1], [0])
    assert examples[0].own_document_split() is None  # no sources: a proxy cannot use it
    assert stats.counts == {
        "examples": 2,
        "skipped_empty_query": 1,
        "skipped_empty_target": 1,
        "skipped_no_candidates": 1,
        "dropped_empty_candidate": 1,
        "dropped_duplicate_candidate": 1,
    }


def test_truncation_is_counted(tmp_path):
    from dreamir.data.training import Example

    def tokenize(text):
        return list(range(len(text.split())))

    stats = DataStats()
    ex = Example("a b c d e", "f g", ["h i j k l m n"])
    tok = tokenize_examples([ex], tokenize, TokenLimits(query=3, target=5, doc=4), stats)[0]
    assert (len(tok.query), len(tok.target), len(tok.docs[0])) == (3, 2, 4)
    assert stats.counts == {"truncated_query": 1, "truncated_candidate": 1}


def test_chunking_respects_sentences_and_cuts_huge_ones():
    text = "One two three four. Five six seven eight. " + " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(text, chunk_words=10, min_words=2)
    assert chunks[0] == "One two three four. Five six seven eight."
    assert all(len(c.split()) <= 10 for c in chunks)
    assert sum(len(c.split()) for c in chunks) == 33


def test_self_supervised_examples_never_contain_their_own_chunk():
    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human"]
    texts = [" ".join(words[(i + j) % 10] + f"{i}" for j in range(30)) + "." for i in range(12)]
    settings = BuildConfig(candidates=3, chunk_words=30, min_words=10, seed=1)
    first = build_self_supervised(texts, settings, show_progress=False)
    again = build_self_supervised(texts, settings, show_progress=False)
    assert [(e.query, e.candidates) for e in first] == [(e.query, e.candidates) for e in again]
    for ex in first:
        own = f"{ex.query} {ex.target}"
        assert own not in ex.candidates and len(ex.candidates) == 3
        assert len(set(ex.candidates)) == 3
        # Sources are the documents' positions (a plain list of texts) and name where each text came from.
        assert own in texts[int(ex.source)]
        assert all(c in texts[int(s)] for c, s in zip(ex.candidates, ex.candidate_sources, strict=True))


def test_spans_never_builds_the_same_example_twice():
    # 40 words a document, chunks of 16, q and y 16 words each: the chunks at words 16 and 32 both have their
    # start clamped to word 8 (q and y must fit in the document), so they would give the same (q, y).
    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human"]
    texts = [" ".join(f"{words[(i + j) % 10]}{i}x{j}" for j in range(40)) for i in range(8)]
    settings = BuildConfig(recipe="spans", candidates=2, chunk_words=16, min_words=8, target_words=16, seed=0)
    stats = DataStats()
    built = build_self_supervised(texts, settings, stats, show_progress=False)
    pairs = [(e.query, e.target) for e in built]
    assert len(pairs) == len(set(pairs)) == 16  # two distinct spans per document
    assert stats.counts["spans_repeated"] == 8  # the third chunk of each document, counted, not kept


def test_built_examples_keep_document_ids_through_a_file(tmp_path):
    from dreamir.data.beir import read_corpus
    from dreamir.data.text import examples_to_rows

    corpus = tmp_path / "corpus.jsonl"
    sentences = [" ".join(f"w{d}x{i}" for i in range(8)) + "." for d in range(6)]
    corpus.write_text(
        "".join(json.dumps({"_id": f"doc{d}", "text": " ".join([sentences[d]] * 2)}) + "\n" for d in range(6))
    )
    documents = read_corpus(corpus)
    assert list(documents) == [f"doc{d}" for d in range(6)]
    built = build_self_supervised(documents, BuildConfig(candidates=2, chunk_words=8, min_words=4))
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in examples_to_rows(built)))
    loaded = load_examples(path)
    assert [(e.source, e.candidate_sources) for e in loaded] == [(e.source, e.candidate_sources) for e in built]
    for ex in loaded:  # each document is two identical chunks: its twin is deduplicated, never both
        assert ex.query.split()[0].split("x")[0] == f"w{ex.source[3:]}"


def test_corpus_ids_must_be_unique(tmp_path):
    from dreamir.data.beir import read_corpus

    corpus = write_lines(tmp_path / "c.jsonl", [json.dumps({"_id": "a", "text": "x"})] * 2)
    with pytest.raises(DataError, match="line 2: field '_id': duplicate document id 'a'"):
        read_corpus(corpus)


def test_too_little_text_is_a_clear_error():
    with pytest.raises(ValueError, match="need at least"):
        build_self_supervised(["short text only"], BuildConfig(min_words=1), show_progress=False)


def test_build_data_from_qa_pairs(tmp_path, capsys):
    from dreamir.cli import main

    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": " ".join(f"{words[(i + j) % 10]}{i % 4}" for j in range(30))}) + "\n" for i in range(9)
        )
    )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"question": "what does gene1 do", "answer": "it codes protein1"})
        + "\n"
        + json.dumps({"question": "", "answer": "skipped"})
        + "\n"
        + json.dumps({"question": "tumor2 growth", "answer": "fast"})
        + "\n"
    )
    out = tmp_path / "train.jsonl"
    args = ["build-data", "--qa", str(pairs), "--corpus", str(corpus), "--out", str(out), "--candidates", "3"]
    assert main(args) == 0
    assert "skipped_empty_pair" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["query"] for r in rows) == ["tumor2 growth", "what does gene1 do"]
    gene = next(r for r in rows if r["query"].startswith("what"))
    assert gene["target"] == "it codes protein1" and len(gene["candidates"]) == 3
    assert ["gene1" in c for c in gene["candidates"]] == [True, True, False]  # the 2 chunks with gene1 rank first
    first = out.read_text()
    assert main(args) == 0 and out.read_text() == first  # deterministic

    pairs.write_text(json.dumps({"question": "q", "answer": 3}) + "\n")
    assert main(args) == 2
    assert f"{pairs}, line 1: field 'answer'" in capsys.readouterr().err
