"""Questions written by a frozen instruct LLM about corpus chunks (the `questions` recipe, docs/method.md).

The self-supervised recipes (`halves`, `spans`, `title`) ask which chunk a piece of text continues
into; the student learns that task and it does not carry to real queries (README "What did the student
learn?"). Here the query looks like an information need: a frozen instruct LLM reads a chunk and writes
one question about it (doc2query-style). No benchmark query or label is read: the questions are
generated from the corpus alone.

Generation is the slow part (about 1.6 s per chunk with the 0.5B writer on 2 CPU cores), so every
question is appended to a JSONL cache as soon as its batch is done, keyed by the generator, the prompt
and the chunk's text: a killed build resumes where it stopped, and other seeds, data sizes or runs
that need the same chunk reuse its question.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import Field, field_validator
from tqdm.auto import tqdm

from dreamir.data.jsonl import iter_jsonl, require_str
from dreamir.data.training import DataStats
from dreamir.settings import StrictConfig

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "Passage: {passage}\n\nWrite one question that this passage answers. Reply with the question only."
_PREFIX = re.compile(r"^(?:question|query)\s*[:\-]\s*", re.IGNORECASE)


class QuestionConfig(StrictConfig):
    """The question writer of the `questions` recipe."""

    llm: str = "qwen2.5-coder-0.5b-instruct"  # any instruct causal LM with a chat template
    prompt: str = DEFAULT_PROMPT  # must contain {passage} (replaced by the chunk; other braces are kept)
    max_new_tokens: int = Field(40, gt=0)
    batch_size: int = Field(8, gt=0)
    device: str = "cpu"
    dtype: str = "fp32"
    cache: str | None = None  # JSONL of written questions; default <dreamir cache>/questions/<llm>.jsonl

    @field_validator("prompt")
    @classmethod
    def _has_placeholder(cls, prompt: str) -> str:
        if "{passage}" not in prompt:
            raise ValueError("must contain {passage} (where the chunk goes)")
        return prompt

    def cache_path(self) -> Path:
        if self.cache:
            return Path(self.cache)
        from dreamir.assets import cache_dir

        return cache_dir() / "questions" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.llm)}.jsonl"


def clean_question(text: str) -> str:
    """The first non-empty line of a generation, without a "Question:" label or wrapping quotes."""
    for line in text.splitlines():
        line = _PREFIX.sub("", line.strip()).strip().strip('"“”').strip()
        if line:
            return line
    return ""


class QuestionCache:
    """Append-only JSONL of {"key", "question"}; a line torn by a crash is dropped on the next open."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.questions: dict[str, str] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete, _, torn = raw.rpartition(b"\n")
        if torn.strip():  # a write cut short by a crash: keep the whole lines before it
            log.warning("%s: dropping an incomplete last line (an interrupted write)", self.path)
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        for line, obj in iter_jsonl(self.path):  # bad JSON or bytes: an error naming the line
            question = require_str(self.path, line, obj, "question", allow_empty=True)  # "": the writer gave none
            self.questions[require_str(self.path, line, obj, "key")] = question

    def add(self, rows: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for key, question in rows.items():
                handle.write(json.dumps({"key": key, "question": question}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.questions.update(rows)


def question_key(config: QuestionConfig, passage: str) -> str:
    return hashlib.sha256(f"{config.llm}\0{config.prompt}\0{config.max_new_tokens}\0{passage}".encode()).hexdigest()


Generator = Callable[[Sequence[str]], list[str]]


def load_generator(config: QuestionConfig) -> Generator:
    """Greedy chat-template generation with `config.llm`, a batch of passages at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dreamir.assets import parse_dtype, plain_model_source

    source = plain_model_source(config.llm)
    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"questions.llm '{config.llm}' has no chat template: give an instruct model")
    tokenizer.padding_side = "left"  # generation continues every row from its last real token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=parse_dtype(config.dtype))
    model.to(config.device).eval()

    def generate(passages: Sequence[str]) -> list[str]:
        chats = [[{"role": "user", "content": config.prompt.replace("{passage}", p)}] for p in passages]
        prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(config.device)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        return [clean_question(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]

    return generate


def write_questions(
    passages: Sequence[str],
    config: QuestionConfig,
    stats: DataStats | None = None,
    show_progress: bool = True,
    generator: Generator | None = None,
) -> list[str]:
    """One question per passage ("" where the writer gave none, counted), from the cache where it has
    them; the rest generated in batches and appended to the cache batch by batch."""
    stats = stats if stats is not None else DataStats()
    cache = QuestionCache(config.cache_path())
    keys = [question_key(config, p) for p in passages]
    missing = list(dict.fromkeys(k for k in keys if k not in cache.questions))
    stats.add("questions_from_cache", sum(k in cache.questions for k in keys))
    if missing:
        by_key = dict(zip(keys, passages, strict=True))
        generate = generator or load_generator(config)
        with tqdm(total=len(missing), desc=f"write questions ({config.llm})", disable=not show_progress) as bar:
            for start in range(0, len(missing), config.batch_size):
                batch = missing[start : start + config.batch_size]
                cache.add(dict(zip(batch, generate([by_key[k] for k in batch]), strict=True)))
                bar.update(len(batch))
        stats.add("questions_written", len(missing))
    questions = [cache.questions[k] for k in keys]
    stats.add("skipped_empty_question", sum(not q for q in questions))
    return questions
