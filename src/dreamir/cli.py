"""Command line: `dreamir <command>`; every command is a thin shell over the Python API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel

from dreamir.config import ConfigError, RunConfig, load_config, parse_override, set_dotted
from dreamir.data.jsonl import DataError
from dreamir.data.text import BuildConfig
from dreamir.evaluation.check import CheckConfig
from dreamir.files import atomic_open, refuse_output_over_inputs
from dreamir.objectives import OBJECTIVES
from dreamir.settings import HeadsConfig

# ---------------------------------------------------------------- flags generated from the config schema
# A flag that sets a config key gets its type, choices and default from the pydantic field, so a default lives
# in the schema only. Flag → dotted key, per command:
TRAIN_FLAGS = {
    "--run-dir": "run_dir",
    "--llm": "llm.name",
    "--retriever": "retriever.name",
    "--data": "data.train",
    "--heads": "heads.file",
    "--objective": "train.objective",
    "--max-steps": "train.max_steps",
    "--device": "device",
    "--dtype": "dtype",
    "--seed": "seed",
    "--document-cache-mb": "dream.document_cache_mb",
    "--document-cache-dir": "dream.document_cache_dir",
}
BUILD_FLAGS = {
    "--recipe": "recipe",
    "--target-words": "target_words",
    "--candidates": "candidates",
    "--chunk-words": "chunk_words",
    "--max-examples": "max_examples",
    "--seed": "seed",
    "--question-llm": "questions.llm",
    "--questions-cache": "questions.cache",
    "--question-batch-size": "questions.batch_size",
    "--device": "questions.device",
}
HEADS_FLAGS = {"--num-examples": "detection_examples", "--k": "count", "--method": "scoring"}
CHECK_FLAGS = {
    "--sample": "sample",
    "--seed": "seed",
    "--passage-words": "passage_words",
    "--min-words": "min_words",
    "--max-copied-words": "max_copied_words",
    "--near-duplicate": "near_duplicate",
    "--writer": "writer.llm",
    "--writer-batch-size": "writer.batch_size",
    "--questions-cache": "writer.cache",
}


def schema_field(model: type[BaseModel], key: str):
    """The pydantic field of a dotted key."""
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    return model.model_fields[name]


def _flag_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """argparse type and choices for a field's annotation (None dropped; int | "all" read as text)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _flag_type(args[0]) if len(args) == 1 else (str, None)
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0]), [str(a) for a in args]
    return annotation, None


def add_schema_flags(parser: argparse.ArgumentParser, model: type[BaseModel], flags: dict[str, str], **helps: str):
    """One flag per key, typed and documented from the schema; left unset it leaves the key to the config
    file or the schema's default (shown in --help)."""
    for flag, key in flags.items():
        field = schema_field(model, key)
        kind, choices = _flag_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        text = helps.get(flag.lstrip("-").replace("-", "_"), "")
        help_text = f"{text + '; ' if text else ''}sets {key} (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": None}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=_positive_int if kind is int and _must_be_positive(field) else kind, choices=choices)
        parser.add_argument(flag, **kwargs)


def _must_be_positive(field) -> bool:
    return any(getattr(m, "gt", None) == 0 for m in field.metadata)


def schema_values(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """{dotted key: value} of the schema flags given on the command line."""
    given = {key: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, key in flags.items()}
    return {key: value for key, value in given.items() if value is not None}


def nested(values: dict[str, Any]) -> dict:
    tree: dict = {}
    for key, value in values.items():
        set_dotted(tree, key, value)
    return tree


def _cmd_build_data(args: argparse.Namespace) -> None:
    from dreamir.data.beir import read_corpus
    from dreamir.data.jsonl import write_jsonl_atomic
    from dreamir.data.text import (
        build_from_qa,
        build_self_supervised,
        examples_to_rows,
        read_qa_pairs,
        resolve_corpus_path,
        shortfall,
    )
    from dreamir.data.training import DataStats

    refuse_output_over_inputs(args.out, args.corpus, args.qa, args.questions_cache)
    stats = DataStats()
    titles: dict[str, str] = {}
    documents = read_corpus(resolve_corpus_path(args.corpus), stats, titles)
    settings = BuildConfig.model_validate(nested(schema_values(args, BUILD_FLAGS)))
    if args.qa:
        examples = build_from_qa(read_qa_pairs(args.qa, stats), documents, settings, stats)
    else:
        examples = build_self_supervised(documents, settings, stats, titles=titles)
    n = write_jsonl_atomic(args.out, examples_to_rows(examples))
    print(f"wrote {n} examples to {args.out} ({stats.summary()})")
    if not args.qa and (missing := shortfall(n, settings, stats)):
        print(f"[dreamir] warning: {missing}", file=sys.stderr)


def _cmd_heads(args: argparse.Namespace) -> None:
    from pathlib import Path

    from dreamir.data.beir import read_corpus
    from dreamir.data.text import resolve_corpus_path
    from dreamir.data.training import load_examples
    from dreamir.heads import (
        detection_examples_from_texts,
        examples_from_qrels,
        head_count,
        score_heads,
        select_heads_label_free,
    )
    from dreamir.models.frozen_lm import FrozenLM
    from dreamir.settings import TokenLimits

    refuse_output_over_inputs(args.out, args.data, args.beir)
    heads = HeadsConfig.model_validate(schema_values(args, HEADS_FLAGS))  # its defaults where no flag is given
    n = heads.detection_examples
    if not (args.beir or args.data):
        raise SystemExit("dreamir heads: give --data (a corpus JSONL or detection JSONL) or --beir DIR")
    # Every input is read and checked before the LLM loads (minutes for a large judge).
    training = None
    if args.beir:
        examples = examples_from_qrels(args.beir, args.split, n, args.candidates, args.seed)
    elif Path(args.data).is_file() and _looks_like_training_jsonl(args.data):
        training = load_examples(args.data)  # e.g. a build-data file: positives where it has them
        examples = [ex for ex in training if ex.positive is not None][:n]
    else:  # a corpus JSONL or a BEIR folder
        texts = list(read_corpus(resolve_corpus_path(args.data)).values())
        examples = detection_examples_from_texts(texts, n, args.candidates, seed=args.seed)
    lm = FrozenLM.load(args.llm, device=args.device, dtype=args.dtype)
    if training is not None and not examples:  # no positives (build-data's recipes): the trainer's own rule
        ranking = select_heads_label_free(lm, training, n, heads.scoring, TokenLimits(), seed=args.seed)
        how = "detection examples cut from the training texts, as `dreamir train` selects them"
    else:
        ranking = score_heads(lm, examples, heads.scoring, TokenLimits(), batch_size=args.batch_size)
        how = "examples"
    k = head_count(heads, lm)
    path = ranking.save(args.out, k)
    top = ", ".join(f"L{layer}H{h}" for layer, h in ranking.top(min(k, 8)))
    fewer = (
        f" (--num-examples asked for {n}; the data gave only {ranking.num_examples})"
        if ranking.num_examples < n
        else ""
    )
    print(
        f"scored {lm.num_layers}×{lm.num_heads} heads on {ranking.num_examples} {how} ({heads.scoring}){fewer}; "
        f"top: {top}\nwrote {path} and {path.with_suffix('.png')}"
    )


def _looks_like_training_jsonl(path: str) -> bool:
    from dreamir.data.jsonl import iter_jsonl

    for _, obj in iter_jsonl(path):
        return "candidates" in obj
    return False


def _config_from_args(args: argparse.Namespace):
    overrides = dict(parse_override(item) for item in args.set or [])
    overrides.update(schema_values(args, TRAIN_FLAGS))
    if args.reference_step:
        overrides["dream.reference_step"] = True
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> None:
    if args.config is None and args.data is None and not args.set:
        from dreamir.apps.quickstart import run_quickstart

        run_quickstart(run_dir=args.run_dir or "runs/quickstart", device=args.device or "cpu")
        return
    from dreamir.trainer import Trainer

    config = _config_from_args(args)
    check = _prepare_check(config, args.check) if args.check else None  # a bad corpus fails before training
    _apply_tf32(args)
    trainer = Trainer(config)
    if args.precompute:
        print(trainer.precompute())
        return
    result = trainer.train(resume=args.resume, allow_config_change=args.allow_config_change)
    resumed = f" (resumed at step {result.resumed_from}; {result.steps} in all)" if result.resumed_from else ""
    print(
        f"trained {result.steps_this_session} steps in {result.seconds:.0f} s{resumed}; mean batch loss "
        f"{result.loss_start:.4f} (first quarter of steps) → {result.loss_end:.4f} (last quarter)\n"
        f"exported retriever: {result.retriever_dir}"
    )
    if check is not None:
        _check_against_start(config, result.retriever_dir, *check)


def _prepare_check(config: RunConfig, corpus_path: str) -> tuple[dict[str, str], set[str]]:
    """`train --check CORPUS`, read before training: the corpus, and the documents the training data names as
    sources, left out of the check (none when it names none: every document may be asked about, and the run says so)."""
    from dreamir.evaluation.check import load_check_corpus, training_documents

    corpus = load_check_corpus(corpus_path)
    try:
        return corpus, training_documents(config.data.train, corpus)
    except DataError as err:
        print(f"[dreamir] --check: {err}; no document is left out of the check")
        return corpus, set()


def _check_against_start(config: RunConfig, trained: Any, corpus: dict[str, str], exclude: set[str]) -> None:
    """The label-free check of the trained retriever against its start, so a training ends with an answer."""
    from pathlib import Path

    from dreamir.evaluation.check import run_check
    from dreamir.trainer import build_retriever

    start = build_retriever(config)  # the start as training began (the run's seed, before any step)
    start.eval()
    out = Path(config.run_dir) / "check"
    names = [f"start ({config.retriever.name})", "trained"]
    result = run_check(corpus, [start, str(trained)], exclude=exclude, out=out, names=names)
    print("\n".join(result.lines()) + f"\ncheck report: {out}")


def _add_tf32(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tf32",
        action="store_true",
        help="CUDA: TF32 matrix products for fp32 models (several times faster on recent GPUs; ~1e-3 relative error)",
    )


def _apply_tf32(args: argparse.Namespace) -> None:
    if args.tf32:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True


def _cmd_compare(args: argparse.Namespace) -> None:
    from dreamir.apps.compare import load_compare_config, run_compare

    overrides = dict(parse_override(item) for item in args.set or [])
    config = load_compare_config(args.config, overrides)
    _apply_tf32(args)
    if args.precompute:
        from dreamir.apps.compare import precompute_compare

        precompute_compare(config)
        return
    if not run_compare(config, report_only=args.report_only):
        print(f"nothing finished yet in {config.out} on the configured evaluation scope")
        return
    print(f"comparison: {config.out}/compare.md, compare.json, compare.png")


def _cmd_export(args: argparse.Namespace) -> None:
    from dreamir.trainer import export_run

    path = export_run(args.run, args.out)
    print(f"exported sentence-transformers model to {path}")


def _bounded_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {'positive' if minimum == 1 else f'≥ {minimum}'}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _bounded_int(text, 1)


def _non_negative_int(text: str) -> int:
    return _bounded_int(text, 0)


def _cmd_eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from dreamir.data.beir import load_beir, sample_corpus
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.evaluation.report import (
        format_paired_tests,
        format_pooled_tests,
        format_table,
        pooled_tests,
        write_report,
    )
    from dreamir.retrieval.base import ModelSpec
    from dreamir.retrieval.zeroshot.retrieval import ZeroShotOptions

    # Fail before loading data or encoding anything: the output must be a new or report folder and not an input,
    # every model must exist, no model twice (its rows would be written twice under one name).
    if args.out:
        refuse_output_over_inputs(args.out, args.data, *args.model)
    _refuse_models_given_twice(args.model)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise FileExistsError(f"--out {args.out} is a file; give a folder for the report")
    pools = _parse_pools(args.pool or [])
    extra = [m for members in pools.values() for m in members if m not in args.model]  # pool members not listed
    specs = [ModelSpec.parse(model, device=args.device) for model in [*args.model, *dict.fromkeys(extra)]]
    data = load_beir(args.data, args.split, encode_ids=args.id_map)
    if args.sample_docs:
        data = sample_corpus(data, args.sample_docs, args.sample_seed)
    specs, fusion_choices = _fusion_weights_chosen(args, specs)
    zero_shot = ZeroShotOptions(args.mode, args.words, args.templates, args.device, args.trust_remote_code)
    results = [
        evaluate_model(
            spec,
            data,
            name=f"{spec.text} ({zero_shot.mode})" if spec.is_zero_shot and zero_shot.mode != "dense" else spec.text,
            use_cache=not args.no_cache,
            ignore_identical_ids=not args.keep_identical_ids,
            zero_shot=zero_shot,
        )
        for spec in specs
    ]
    print(format_table(results, f"{data.name} ({args.split})"))
    if paired := format_paired_tests(results):
        print("\n" + paired)
    pooled = pooled_tests(results, pools)
    if pooled:
        print("\n" + format_pooled_tests(pooled))
    print(f"data: {data.stats.summary()}")
    if args.out:
        print(f"report: {write_report(args.out, results, data, args.split, pooled, fusion_choices)}")


def _fusion_weights_chosen(args: argparse.Namespace, specs: list) -> tuple[list, list]:
    """`fuse:A+B` specs (no weight) with their weight chosen on --fusion-dev-split (refused without it), and the
    choices made."""
    from dreamir.data.beir import load_beir, sample_corpus
    from dreamir.evaluation.evaluate import choose_fusion_weights
    from dreamir.retrieval.base import split_fusion_spec

    open_weights = [s.text for s in specs if s.kind == "fusion" and split_fusion_spec(s.text)[:2] == ("fuse", None)]
    if not open_weights:
        if args.fusion_dev_split:
            raise ValueError("--fusion-dev-split is given but no --model is fuse:A+B (a fusion without a weight)")
        return specs, []
    if not args.fusion_dev_split:
        raise ValueError(
            f"{', '.join(open_weights)}: a convex fusion needs its weight — write fuse:W:A+B, or give "
            "--fusion-dev-split SPLIT to choose W on a dev split of the same folder"
        )
    if args.fusion_dev_split == args.split:
        raise ValueError(
            f"--fusion-dev-split {args.fusion_dev_split} is the split evaluated: choose the weight on another "
            "split (e.g. dev or train), or the reported score flatters the fusion"
        )
    dev = load_beir(args.data, args.fusion_dev_split, encode_ids=args.id_map)
    if args.sample_docs:
        dev = sample_corpus(dev, args.sample_docs, args.sample_seed)
    specs, choices = choose_fusion_weights(
        specs, dev, args.fusion_dev_split, not args.no_cache, not args.keep_identical_ids
    )
    for choice in choices:
        print(f"[eval] {choice.describe()}")
    return specs, choices


def _parse_pools(items: list[str]) -> dict[str, list[str]]:
    """`--pool NAME=A,B,C` → {NAME: [A, B, C]} (several seeds of one method, tested together)."""
    pools: dict[str, list[str]] = {}
    for item in items:
        name, sep, members = item.partition("=")
        models = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name.strip() or len(models) < 2:
            raise ValueError(f"--pool {item!r}: expected NAME=MODEL,MODEL[,...] (two or more models, e.g. seeds)")
        if name.strip() in pools:
            raise ValueError(f"--pool {name.strip()!r} given twice")
        pools[name.strip()] = models
    return pools


def _cmd_index(args: argparse.Namespace) -> None:
    from dreamir.retrieval.base import ModelSpec
    from dreamir.retrieval.index import load_checked_meta
    from dreamir.retrieval.indexing import Shard, build_index, merge_index

    refuse_output_over_inputs(args.out, args.data, args.model)
    if args.merge:
        index = merge_index(args.out, args.factory, args.params)
        print(f"merged {index.meta['merged_parts']} parts: {index.size} documents ({args.factory}) → {args.out}")
        return
    if not (args.data and args.model):
        raise ValueError("dreamir index needs --data and --model (or --merge)")
    shard = Shard.parse(args.shard) if args.shard else None
    index = build_index(
        args.data,
        args.model,
        args.out,
        args.factory,
        args.params,
        use_cache=not args.no_cache,
        shard=shard,
        device=args.device,
        encode_ids=args.id_map,
    )
    if index is not None:
        print(f"indexed {index.size} documents with {args.model} ({args.factory}) → {args.out}")
    elif shard is not None:
        print(f"wrote part {shard.index + 1} of {shard.count} to {args.out}/parts; `dreamir index --merge` joins them")
    elif ModelSpec.parse(args.model).kind == "fusion":  # one index per side, built in one piece
        size = load_checked_meta(args.out)["size"]
        print(f"indexed {size} documents with {args.model} (one index per side, fused at search) → {args.out}")


SEARCH_CHUNK = 1024  # queries encoded, searched and written per round of `dreamir search --queries`


def _cmd_search(args: argparse.Namespace) -> None:
    from dreamir.retrieval.indexing import IndexSearcher

    if (args.query is None) == (args.queries is None):
        raise ValueError("dreamir search takes one QUERY or --queries FILE (not both, not neither)")
    if args.out and args.queries is None:
        raise ValueError("--out writes the run of a --queries file; a single QUERY prints its hits")
    if args.out:
        refuse_output_over_inputs(args.out, args.queries, args.index)
    searcher = IndexSearcher(args.index, force=args.force, device=args.device)
    if args.query is not None:
        for rank, hit in enumerate(searcher.search([args.query], args.k)[0], start=1):
            print(f"{rank:3d}  {hit['score']:.4f}  {hit['doc_id']}  {hit['snippet']}")
        return
    from contextlib import nullcontext

    from tqdm.auto import tqdm

    from dreamir.data.beir import load_queries
    from dreamir.data.training import DataStats
    from dreamir.evaluation.report import trec_lines

    stats = DataStats()
    queries = load_queries(args.queries, stats, encode_ids=args.id_map)
    if not queries:
        why = stats.summary() if stats.counts else "the file is empty"
        raise DataError(args.queries, None, f"no query to search ({why})")
    ids = list(queries)
    chunks = range(0, len(ids), SEARCH_CHUNK)  # memory stays bounded; progress shows on a long file
    with atomic_open(args.out) if args.out else nullcontext(sys.stdout) as handle:
        for start in tqdm(chunks, desc="search", unit="chunk", disable=len(chunks) < 2 or not args.out):
            run, _ = searcher.run({q: queries[q] for q in ids[start : start + SEARCH_CHUNK]}, args.k)
            handle.writelines(trec_lines(run, "dreamir"))
    if args.out:
        skipped = f" ({stats.summary()})" if stats.counts else ""
        print(f"searched {len(queries)} queries{skipped}: top {args.k} each → {args.out} (TREC run format)")


def _cmd_check(args: argparse.Namespace) -> None:
    from dreamir.evaluation.check import CheckConfig, run_check
    from dreamir.evaluation.report import format_table
    from dreamir.retrieval.base import ModelSpec

    if args.out:
        refuse_output_over_inputs(args.out, args.corpus, *args.model, *([args.train_data] if args.train_data else []))
    _refuse_models_given_twice(args.model)
    values = schema_values(args, CHECK_FLAGS)
    if args.device:
        values["writer.device"] = args.device
    config = CheckConfig.model_validate(nested(values))
    specs = [ModelSpec.parse(model, device=args.device or "cpu") for model in args.model]
    result = run_check(
        args.corpus, specs, config, args.train_data, args.out, use_cache=not args.no_cache, encode_ids=args.id_map
    )
    print(format_table(result.results, f"label-free check: {len(result.queries.queries)} written questions"))
    print(f"questions: {result.queries.stats.summary()}")
    print()
    print("\n".join(result.lines()))
    if args.out:
        print(f"report: {args.out}")


def _add_models(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--model", action="append", required=True, help=f"{what}; repeatable")


def _refuse_models_given_twice(models: list[str]) -> None:
    """A model given twice would write its rows twice under one name."""
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ValueError(f"--model {', '.join(twice)} given twice: each model once, please")


def _add_id_map(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--id-map",
        action="store_true",
        help="ids with whitespace (which TREC runs cannot carry) are percent-encoded, reversibly: a space becomes "
        "%%20 and %% becomes %%25 (decode with urllib.parse.unquote); without it such ids are refused",
    )


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from dreamir.apps.quickstart import run_quickstart

    run_quickstart(run_dir=args.run_dir, device=args.device, steps=args.steps)


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: `--max-step` is not silently read as `--max-steps` (a renamed flag fails loudly)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dreamir", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "quickstart", help="build data, select heads, train DREAM-distill from a static start and compare before/after"
    )
    p.add_argument("--run-dir", default="runs/quickstart")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--steps", type=_positive_int, help="optimiser steps (default: 1200, about 10 minutes in all on 2 cores)"
    )
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("build-data", help="self-supervised training examples from an unlabelled corpus")
    p.add_argument("--corpus", required=True, help="corpus JSONL ({'text', 'title'?}) or a BEIR folder")
    p.add_argument("--out", required=True)
    p.add_argument("--qa", help="question/answer pairs JSONL ({'question', 'answer'}): q = question, y = answer")
    add_schema_flags(
        p,
        BuildConfig,
        BUILD_FLAGS,
        recipe="how q and y are cut from a document (README 'Training data'); ignored with --qa",
        target_words="words of y for the title, spans and questions recipes",
        question_llm="questions recipe: the instruct LLM that writes a question per chunk",
        questions_cache="questions recipe: JSONL cache of written questions (resumable)",
        device="questions recipe: where the question writer runs",
    )
    p.set_defaults(func=_cmd_build_data)

    p = sub.add_parser("heads", help="rank the frozen LLM's heads and write the head set H")
    p.add_argument("--llm", default="smollm2-135m-instruct")
    p.add_argument("--data", help="corpus JSONL (label-free) or JSONL with query/target/candidates/positive")
    p.add_argument("--beir", help="BEIR folder: use its qrels as the detection set instead")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True)
    add_schema_flags(p, HeadsConfig, HEADS_FLAGS, k="heads to keep (a number or 'all')", num_examples="examples scored")
    p.add_argument("--candidates", type=_positive_int, default=8)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.set_defaults(func=_cmd_heads)

    p = sub.add_parser("train", help="train a retriever (no arguments: the quickstart on defaults)")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-4")
    add_schema_flags(
        p,
        RunConfig,
        TRAIN_FLAGS,
        objective=f"one of {', '.join(OBJECTIVES)}, or a weighted sum such as 'dream_distill + 0.5 * infonce'",
        heads="a `dreamir heads` JSON (default: selected label-free at the start)",
        document_cache_mb="keep up to this many MB of document keys/values across epochs (DREAM reuse step; 0 = off)",
        document_cache_dir="keep the document cache in this folder instead of memory",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument(
        "--check",
        metavar="CORPUS",
        help="after training, run the label-free check (`dreamir check`) of the trained retriever against its "
        "start on this corpus (JSONL or BEIR folder); report in RUN_DIR/check",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept settings that differ from the checkpoint's (default: refuse, listing them)",
    )
    p.add_argument(
        "--reference-step",
        action="store_true",
        help="train with the full-graph reference step instead of reusing document keys/values",
    )
    p.add_argument(
        "--precompute",
        action="store_true",
        help="compute what the objective keeps ahead of training and train nothing (dream_distill: the judge "
        "signal per example into dream_distill.signal_cache_dir; replug: the LLM's candidate NLL into "
        "replug.signal_cache_dir; e.g. on a GPU, training elsewhere then reads it)",
    )
    _add_tf32(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write a run's retriever as a sentence-transformers folder")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("eval", help="evaluate retrievers on a BEIR folder")
    p.add_argument("--data", required=True, help="BEIR folder")
    _add_models(
        p,
        "bm25, a sentence-transformers folder, a dreamir run folder, an alias or hub name, run:FILE (a TREC run "
        "computed elsewhere), or two of them fused: rrf:A+B, fuse:W:A+B (W·A + (1 − W)·B of normalised scores), "
        "fuse:A+B (W chosen by --fusion-dev-split)",
    )
    p.add_argument("--split", default="test")
    p.add_argument(
        "--fusion-dev-split",
        metavar="SPLIT",
        help="choose the weight W of each fuse:A+B model on this split of --data (best nDCG@10 over W = 0, 0.1, "
        "… 1), then evaluate --split with it",
    )
    _add_id_map(p)
    p.add_argument(
        "--pool",
        action="append",
        metavar="NAME=A,B,C",
        help="test several seeds of one method together against the first --model: per-query nDCG@10 averaged "
        "over A, B, C (evaluated too if not given as --model); repeatable",
    )
    p.add_argument("--out", help="folder for metrics.json, run.trec, report.md and comparison.png")
    p.add_argument("--no-cache", action="store_true", help="re-encode even if cached embeddings exist")
    p.add_argument("--device", default="cpu", help="where every model runs (dense and zero-shot), e.g. cuda")
    p.add_argument(
        "--sample-docs",
        type=_positive_int,
        metavar="N",
        help="evaluate over N documents: every judged one plus others drawn with --sample-seed "
        "(for slow encoders; scores are comparable only with runs on the same sample)",
    )
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument(
        "--keep-identical-ids",
        action="store_true",
        help="keep hits whose id equals the query id (BEIR drops them by default)",
    )
    zs = p.add_argument_group("zero-shot LLM retrievers (--model promptreps:NAME / diffretriever:NAME)")
    zs.add_argument("--mode", choices=["dense", "sparse", "hybrid", "multivector"], default="dense")
    zs.add_argument(
        "--k", dest="words", type=_positive_int, help="words: DiffRetriever's mask tokens (4), PromptReps' (1)"
    )
    zs.add_argument("--templates", help="prompt templates YAML (default: the packaged zeroshot_templates.yaml)")
    zs.add_argument("--trust-remote-code", action="store_true", help="allow Dream / LLaDA remote model code")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "check", help="did training help? compare retrievers on questions an LLM writes about your corpus (no labels)"
    )
    p.add_argument("--corpus", required=True, help="corpus JSONL ({'_id', 'text', 'title'?}) or a BEIR folder")
    _add_models(p, "any model `dreamir eval` takes; the first is the baseline")
    p.add_argument("--train-data", help="the training JSONL behind the models: its sources are not asked about")
    p.add_argument("--out", help="folder for check.json, check.md and the written questions")
    p.add_argument("--no-cache", action="store_true", help="re-encode even if cached embeddings exist")
    p.add_argument("--device", help="where the writer and the models run (default: cpu)")
    _add_id_map(p)
    add_schema_flags(
        p,
        CheckConfig,
        CHECK_FLAGS,
        sample="documents that get a question",
        writer="the instruct LLM that writes the questions",
        questions_cache="JSONL cache of written questions (resumable)",
    )
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("compare", help="train every objective on the same data and budget; one table + plot")
    p.add_argument("--config", required=True, help="comparison YAML (see configs/compare-*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key, e.g. out=runs/cmp2")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train and evaluate nothing: write the report from the methods already finished (safe while it runs)",
    )
    p.add_argument(
        "--precompute",
        action="store_true",
        help="compute what the runs keep ahead of training and train nothing (dream_distill: the judge signal of "
        "every example, real and shuffled targets; replug: the candidate NLL; e.g. on a GPU, the comparison run "
        "elsewhere then reads it)",
    )
    _add_tf32(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("index", help="encode a corpus once into a reusable index")
    p.add_argument("--data", help="BEIR folder or corpus JSONL with _id/title/text")
    p.add_argument(
        "--model",
        help="a dense model, or two fused (rrf:bm25+MODEL, fuse:W:bm25+MODEL): one index per side, fused at search",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--shard", metavar="I/N", help="encode only the I-th of N slices into OUT/parts (several machines)")
    p.add_argument("--merge", action="store_true", help="join the parts in OUT/parts into one index")
    p.add_argument("--device", default="cpu")
    p.add_argument("--factory", default="exact", help="'exact' or a faiss index-factory string, e.g. IVF1024,Flat")
    p.add_argument("--params", default="", help="faiss search parameters, e.g. nprobe=64 or efSearch=128")
    p.add_argument("--no-cache", action="store_true")
    _add_id_map(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="query an index built by `dreamir index`")
    p.add_argument("--index", required=True)
    p.add_argument("query", nargs="?", help="one query: its hits are printed with their snippets")
    p.add_argument(
        "--queries",
        metavar="FILE",
        help='many queries, a JSONL of {"_id", "text"} (BEIR\'s queries.jsonl): the index and the query encoder '
        "load once, and the run is printed (or written with --out) in TREC format",
    )
    p.add_argument("--out", help="with --queries: the TREC run file, written atomically")
    _add_id_map(p)
    p.add_argument("-k", type=_positive_int, default=10)
    p.add_argument("--force", action="store_true", help="search even if the model changed since indexing")
    p.add_argument("--device", default="cpu", help="where the query encoder runs")
    p.set_defaults(func=_cmd_search)
    return parser


# What an interrupted command leaves, and how to go on (Ctrl-C / SIGTERM: exit 130, one line, no traceback).
_ON_INTERRUPT = {
    "train": "finished checkpoints are kept; continue with the same command and --resume",
    "compare": "finished runs are kept and an interrupted one resumes; run the same command again",
    "eval": "the report folder keeps its previous version (or none); run it again",
    "index": "the index folder keeps its previous version (or none); run it again",
    "export": "the export folder keeps its previous version (or none); run it again",
    "build-data": "the output file keeps its previous version (or none); run it again",
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that temp files are removed and locks released as on Ctrl-C."""


def _interrupt_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM raised as one) that `err` is, or that it was raised while handling."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def _report_interrupt(command: str, stop: KeyboardInterrupt) -> int:
    why = "terminated" if isinstance(stop, _Terminated) else "interrupted"
    print(f"dreamir {command}: {why}; {_ON_INTERRUPT.get(command, 'nothing half-written is left')}", file=sys.stderr)
    return 130


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM landing as the command returns, after its own handling
        command = (argv if argv is not None else sys.argv[1:] or ["dreamir"])[0]
        print(
            f"dreamir {command}: interrupted as it ended; its outputs are whole (the old or the new)",
            file=sys.stderr,
        )
        return 130


def _main(argv: list[str] | None) -> int:
    import signal

    # First of all (a signal may come at any moment): SIGTERM, like Ctrl-C, unwinds so temp files are removed.
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading_main() else None
    from dreamir.files import FolderBusy

    args = argparse.Namespace(verbose=False, command=(argv or sys.argv[1:] or ["dreamir"])[0])
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        args.func(args)
    except KeyboardInterrupt as stop:
        if args.verbose:
            raise
        return _report_interrupt(args.command, stop)
    except (ConfigError, DataError, FolderBusy, ValueError) as err:
        if args.verbose:
            raise
        if stop := _interrupt_behind(err):
            return _report_interrupt(args.command, stop)
        print(f"dreamir {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # missing files, full disks, read-only targets: one line naming the path
        if args.verbose:
            raise
        if stop := _interrupt_behind(err):
            return _report_interrupt(args.command, stop)
        where = f"{err.filename}: " if err.filename else ""
        print(f"dreamir {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:
        # Ctrl-C / SIGTERM that a library turned into its own error while unwinding (torch.save's zip writer
        # raises a RuntimeError; an extension interrupted in its init, an ImportError)
        stop = _interrupt_behind(err)
        if stop is None or args.verbose:
            raise
        return _report_interrupt(args.command, stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
