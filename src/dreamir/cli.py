"""Command line: `dreamir <command>`; every command is a thin shell over the Python API."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dreamir.config import ConfigError, load_config, parse_override
from dreamir.data.jsonl import DataError
from dreamir.objectives import OBJECTIVES


def _cmd_build_data(args: argparse.Namespace) -> None:
    from dreamir.data.jsonl import write_jsonl_atomic
    from dreamir.data.questions import QuestionConfig
    from dreamir.data.text import (
        BuildConfig,
        build_from_qa,
        build_self_supervised,
        examples_to_rows,
        read_corpus,
        read_qa_pairs,
        resolve_corpus_path,
    )
    from dreamir.data.training import DataStats

    stats = DataStats()
    titles: dict[str, str] = {}
    documents = read_corpus(resolve_corpus_path(args.corpus), stats, titles)
    settings = BuildConfig(
        recipe=args.recipe,
        target_words=args.target_words,
        candidates=args.candidates,
        chunk_words=args.chunk_words,
        max_examples=args.max_examples,
        seed=args.seed,
        questions=QuestionConfig(
            llm=args.question_llm, device=args.device, cache=args.questions_cache, batch_size=args.question_batch_size
        ),
    )
    if args.qa:
        examples = build_from_qa(read_qa_pairs(args.qa, stats), documents, settings, stats)
    else:
        examples = build_self_supervised(documents, settings, stats, titles=titles)
    n = write_jsonl_atomic(args.out, examples_to_rows(examples))
    print(f"wrote {n} examples to {args.out} ({stats.summary()})")


def _cmd_heads(args: argparse.Namespace) -> None:
    from dreamir.data.text import read_corpus, resolve_corpus_path
    from dreamir.data.training import load_examples
    from dreamir.heads import detection_examples_from_texts, examples_from_qrels, score_heads
    from dreamir.models.frozen_lm import FrozenLM
    from dreamir.settings import TokenLimits

    lm = FrozenLM.load(args.llm, device=args.device, dtype=args.dtype)
    if args.beir:
        examples = examples_from_qrels(args.beir, args.split, args.num_examples, args.candidates, args.seed)
    elif args.data is None:
        raise SystemExit("dreamir heads: give --data (a corpus JSONL or detection JSONL) or --beir DIR")
    elif _looks_like_training_jsonl(args.data):
        examples = load_examples(args.data)[: args.num_examples]
    else:
        texts = list(read_corpus(resolve_corpus_path(args.data)).values())
        examples = detection_examples_from_texts(texts, args.num_examples, args.candidates, seed=args.seed)
    ranking = score_heads(lm, examples, args.method, TokenLimits(), batch_size=args.batch_size)
    k = lm.num_layers * lm.num_heads if args.k == "all" else int(args.k)
    path = ranking.save(args.out, k)
    top = ", ".join(f"L{layer}H{h}" for layer, h in ranking.top(min(k, 8)))
    print(
        f"scored {lm.num_layers}×{lm.num_heads} heads on {len(examples)} examples ({args.method}); "
        f"top: {top}\nwrote {path} and {path.with_suffix('.png')}"
    )


def _looks_like_training_jsonl(path: str) -> bool:
    from dreamir.data.jsonl import iter_jsonl

    for _, obj in iter_jsonl(path):
        return "candidates" in obj
    return False


def _config_from_args(args: argparse.Namespace):
    overrides = dict(parse_override(item) for item in args.set or [])
    shortcuts = {
        "run_dir": args.run_dir,
        "llm.name": args.llm,
        "retriever.name": args.retriever,
        "data.train": args.data,
        "heads.file": args.heads,
        "train.max_steps": args.max_steps,
        "device": args.device,
        "dtype": args.dtype,
        "seed": args.seed,
        "dream.reference_step": True if args.reference_step else None,
        "dream.document_cache_mb": args.document_cache_mb,
        "dream.document_cache_dir": args.document_cache_dir,
        "train.objective": args.objective,
    }
    overrides.update({k: v for k, v in shortcuts.items() if v is not None})
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> None:
    if args.config is None and args.data is None and not args.set:
        from dreamir.apps.quickstart import run_quickstart

        run_quickstart(run_dir=args.run_dir or "runs/quickstart", device=args.device or "cpu")
        return
    from dreamir.trainer import Trainer

    config = _config_from_args(args)
    _apply_tf32(args)
    trainer = Trainer(config)
    if args.precompute:
        print(trainer.precompute())
        return
    result = trainer.train(resume=args.resume, allow_config_change=args.allow_config_change)
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s; mean batch loss "
        f"{result.loss_start:.4f} (first quarter of steps) → {result.loss_end:.4f} (last quarter)\n"
        f"exported retriever: {result.retriever_dir}"
    )


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
    from dreamir.eval.encoder import ModelSpec
    from dreamir.eval.evaluate import evaluate_model
    from dreamir.eval.report import format_paired_tests, format_table, write_report
    from dreamir.zeroshot.retrieval import ZeroShotOptions

    # Fail before loading data or encoding anything: the output must be a folder, every model must exist.
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise FileExistsError(f"--out {args.out} is a file; give a folder for the report")
    specs = [ModelSpec.parse(model) for model in args.model]
    data = load_beir(args.data, args.split)
    if args.sample_docs:
        data = sample_corpus(data, args.sample_docs, args.sample_seed)
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
    print(f"data: {data.stats.summary()}")
    if args.out:
        print(f"report: {write_report(args.out, results, data, args.split)}")


def _cmd_index(args: argparse.Namespace) -> None:
    from dreamir.eval.indexing import Shard, build_index, merge_index

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
    )
    if index is not None:
        print(f"indexed {index.size} documents with {args.model} ({args.factory}) → {args.out}")
    elif shard is not None:
        print(f"wrote part {shard.index + 1} of {shard.count} to {args.out}/parts; `dreamir index --merge` joins them")


def _cmd_search(args: argparse.Namespace) -> None:
    from dreamir.eval.indexing import search_index

    for rank, hit in enumerate(search_index(args.index, args.query, args.k, force=args.force), start=1):
        print(f"{rank:3d}  {hit['score']:.4f}  {hit['doc_id']}  {hit['snippet']}")


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from dreamir.apps.quickstart import run_quickstart

    run_quickstart(run_dir=args.run_dir, device=args.device, steps=args.steps)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamir", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="build data, select heads, train DREAM and compare before/after")
    p.add_argument("--run-dir", default="runs/quickstart")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=_positive_int, help="optimiser steps (default: fits ~4 min on 2 cores)")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("build-data", help="self-supervised training examples from an unlabelled corpus")
    p.add_argument("--corpus", required=True, help="corpus JSONL ({'text', 'title'?}) or a BEIR folder")
    p.add_argument("--out", required=True)
    p.add_argument("--qa", help="question/answer pairs JSONL ({'question', 'answer'}): q = question, y = answer")
    p.add_argument(
        "--recipe",
        choices=["halves", "title", "spans", "questions"],
        default="halves",
        help="how q and y are cut from a document (README 'Training data'); ignored with --qa",
    )
    p.add_argument(
        "--target-words", type=_positive_int, default=32, help="words of y for the title, spans and questions recipes"
    )
    p.add_argument(
        "--question-llm",
        default="qwen2.5-coder-0.5b-instruct",
        help="questions recipe: the instruct LLM that writes a question per chunk",
    )
    p.add_argument("--questions-cache", help="questions recipe: JSONL cache of written questions (resumable)")
    p.add_argument("--question-batch-size", type=_positive_int, default=8)
    p.add_argument("--device", default="cpu", help="questions recipe: where the question writer runs")
    p.add_argument("--candidates", type=_positive_int, default=8)
    p.add_argument("--chunk-words", type=_positive_int, default=96)
    p.add_argument("--max-examples", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_build_data)

    p = sub.add_parser("heads", help="rank the frozen LLM's heads and write the head set H")
    p.add_argument("--llm", default="smollm2-135m-instruct")
    p.add_argument("--data", help="corpus JSONL (label-free) or JSONL with query/target/candidates/positive")
    p.add_argument("--beir", help="BEIR folder: use its qrels as the detection set instead")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["gradient", "attention"], default="gradient")
    p.add_argument("--k", default="16", help="heads to keep (a number or 'all')")
    p.add_argument("--num-examples", type=_positive_int, default=64)
    p.add_argument("--candidates", type=_positive_int, default=8)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.set_defaults(func=_cmd_heads)

    p = sub.add_parser("train", help="train a retriever (no arguments: the quickstart on defaults)")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-4")
    p.add_argument("--run-dir")
    p.add_argument("--llm")
    p.add_argument("--retriever")
    p.add_argument("--data")
    p.add_argument("--heads")
    p.add_argument("--max-steps", type=_positive_int)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
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
        "--document-cache-mb",
        type=_non_negative_int,
        help="keep up to this many MB of document keys/values across epochs (DREAM reuse step; 0 = off)",
    )
    p.add_argument("--document-cache-dir", help="keep the document cache in this folder instead of memory")
    p.add_argument("--objective", help=f"one of {', '.join(OBJECTIVES)} (default dream)")
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
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="bm25, a sentence-transformers folder, a dreamir run folder, an alias or hub name; repeatable",
    )
    p.add_argument("--split", default="test")
    p.add_argument("--out", help="folder for metrics.json, run.trec, report.md and comparison.png")
    p.add_argument("--no-cache", action="store_true", help="re-encode even if cached embeddings exist")
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
    zs.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_eval)

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
    p.add_argument("--model")
    p.add_argument("--out", required=True)
    p.add_argument("--shard", metavar="I/N", help="encode only the I-th of N slices into OUT/parts (several machines)")
    p.add_argument("--merge", action="store_true", help="join the parts in OUT/parts into one index")
    p.add_argument("--device", default="cpu")
    p.add_argument("--factory", default="exact", help="'exact' or a faiss index-factory string, e.g. IVF1024,Flat")
    p.add_argument("--params", default="", help="faiss search parameters, e.g. nprobe=64 or efSearch=128")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="query an index built by `dreamir index`")
    p.add_argument("--index", required=True)
    p.add_argument("query")
    p.add_argument("-k", type=_positive_int, default=10)
    p.add_argument("--force", action="store_true", help="search even if the model changed since indexing")
    p.set_defaults(func=_cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except (
        ConfigError,
        DataError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    ) as err:
        if args.verbose:
            raise
        print(f"dreamir {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
