"""The `questions` recipe: questions written once per chunk, cached, resumable; examples built around them."""

from __future__ import annotations

import json

import pytest

from dreamir.data.jsonl import DataError
from dreamir.data.questions import QuestionCache, QuestionConfig, clean_question, load_generator, write_questions
from dreamir.data.text import BuildConfig, build_self_supervised
from dreamir.data.training import DataStats

CHAT_TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"


class CountingWriter:
    """A stand-in question writer that records what it was asked."""

    def __init__(self, answer=lambda passage: f"What about {passage.split()[0]}?"):
        self.calls: list[list[str]] = []
        self.answer = answer

    def __call__(self, passages):
        self.calls.append(list(passages))
        return [self.answer(p) for p in passages]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Question: What is X?\nExtra text", "What is X?"),
        ('\n  "What binds Y?"  ', "What binds Y?"),
        ("query - how fast", "how fast"),
        ("   \n\n", ""),
    ],
)
def test_clean_question_keeps_the_first_line_without_labels(raw, clean):
    assert clean_question(raw) == clean


def test_questions_are_written_once_and_reused(tmp_path):
    config = QuestionConfig(cache=str(tmp_path / "q.jsonl"), batch_size=2)
    writer = CountingWriter()
    passages = ["alpha one", "beta two", "alpha one", "gamma three"]
    stats = DataStats()
    first = write_questions(passages, config, stats, show_progress=False, generator=writer)
    assert first == ["What about alpha?", "What about beta?", "What about alpha?", "What about gamma?"]
    assert writer.calls == [["alpha one", "beta two"], ["gamma three"]]  # the repeat is written once
    assert stats.counts["questions_written"] == 3
    again = write_questions(passages, config, DataStats(), show_progress=False, generator=CountingWriter())
    assert again == first
    # Another prompt is another question: the cache never answers for a different writer setting.
    other = config.model_copy(update={"prompt": "Ask about: {passage}"})
    fresh = CountingWriter()
    write_questions(passages[:1], other, show_progress=False, generator=fresh)
    assert fresh.calls == [["alpha one"]]


def test_a_build_killed_mid_write_resumes_without_the_torn_line(tmp_path):
    path = tmp_path / "q.jsonl"
    config = QuestionConfig(cache=str(path), batch_size=1)
    write_questions(["alpha one", "beta two"], config, show_progress=False, generator=CountingWriter())
    with open(path, "a") as handle:
        handle.write('{"key": "abc", "quest')  # the write a crash cut short
    writer = CountingWriter()
    assert (
        write_questions(["alpha one", "beta two", "gamma three"], config, show_progress=False, generator=writer)[2]
        == "What about gamma?"
    )
    assert writer.calls == [["gamma three"]]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3 and all(set(r) == {"key", "question"} for r in rows)


def test_a_corrupt_cache_line_names_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"key": "a", "question": "q"}\n{"key": 3, "question": "q"}\n')
    with pytest.raises(DataError, match=r"q.jsonl, line 2: field 'key'"):
        QuestionCache(path)


def test_questions_recipe_builds_examples_around_the_written_question(tmp_path, monkeypatch):
    import dreamir.data.questions as questions

    words = ["protein", "cell", "gene", "tumor", "blood", "heart", "brain", "acid", "mouse", "human"]
    texts = [" ".join(words[(i + j) % 10] + f"{i % 5}" for j in range(30)) + "." for i in range(10)]
    # The writer gives no question for one chunk: that chunk is skipped and counted, not kept with q = "".
    writer = CountingWriter(lambda p: "" if p.startswith("protein0") else f"which {p.split()[1]} {p.split()[2]}")
    monkeypatch.setattr(questions, "load_generator", lambda config: writer)
    settings = BuildConfig(
        recipe="questions", candidates=3, chunk_words=30, min_words=10, target_words=8, seed=1,
        questions=QuestionConfig(cache=str(tmp_path / "q.jsonl")),
    )  # fmt: skip
    stats = DataStats()
    built = build_self_supervised(texts, settings, stats, show_progress=False)
    assert stats.counts["skipped_empty_question"] == 1 and len(built) == 9
    for ex in built:
        chunk = texts[int(ex.source)]
        assert ex.query == f"which {chunk.split()[1]} {chunk.split()[2]}"
        assert ex.target == " ".join(chunk.split()[:8])
        assert chunk not in ex.candidates and len(ex.candidates) == 3
    assert len(writer.calls) == 2  # 10 chunks, batches of 8
    assert [e.query for e in build_self_supervised(texts, settings, show_progress=False)] == [e.query for e in built]
    assert len(writer.calls) == 2  # the second build reads every question from the cache


def test_a_writer_that_returns_no_question_is_named_not_blamed_on_the_documents(tmp_path, monkeypatch):
    import dreamir.data.questions as questions

    texts = [" ".join(f"word{i}x{j}" for j in range(30)) + "." for i in range(10)]
    monkeypatch.setattr(questions, "load_generator", lambda config: CountingWriter(lambda p: ""))
    settings = BuildConfig(
        recipe="questions", candidates=3, chunk_words=30, min_words=10, target_words=8,
        questions=QuestionConfig(cache=str(tmp_path / "q.jsonl")),
    )  # fmt: skip
    with pytest.raises(ValueError, match="returned no usable question for any of the 10 chunks"):
        build_self_supervised(texts, settings, show_progress=False)


def test_writer_generates_greedily_and_a_batch_equals_single_passages(tiny_llm_dir, tmp_path):
    """Left padding must not change a row's generation: each passage alone gives what it gives in a batch."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tiny_llm_dir / "chat")
    (tiny_llm_dir / "chat").joinpath("config.json").write_text((tiny_llm_dir / "config.json").read_text())
    for name in ("model.safetensors", "generation_config.json"):
        if (tiny_llm_dir / name).exists():
            (tiny_llm_dir / "chat" / name).symlink_to(tiny_llm_dir / name)
    config = QuestionConfig(llm=str(tiny_llm_dir / "chat"), max_new_tokens=6)
    generate = load_generator(config)
    passages = ["a b c", "d e f g h i j k l m n o p"]
    batched = generate(passages)
    assert batched == [generate([p])[0] for p in passages]
    assert generate(passages) == batched


def test_writer_refuses_a_model_without_chat_template_or_a_prompt_without_passage(tiny_llm_dir):
    with pytest.raises(ValueError, match="no chat template"):
        load_generator(QuestionConfig(llm=str(tiny_llm_dir)))
    with pytest.raises(ValueError, match=r"prompt\n.*must contain \{passage\}"):
        QuestionConfig(prompt="no placeholder")
