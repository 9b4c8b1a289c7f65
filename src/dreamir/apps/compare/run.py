"""Running a comparison: plan each dataset's runs, train or reuse them, evaluate, report; or only precompute."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dreamir.apps.compare.config import CompareConfig, DatasetConfig, run_config, training_data
from dreamir.apps.compare.report import write_outputs
from dreamir.apps.compare.results import (
    add_paired_tests,
    check_trained_as_configured,
    finished_result,
    finished_run,
    pool_seeds,
    result_scores,
    same_scope,
    write_json_atomic,
)
from dreamir.config import (
    ConfigError,
    RunConfig,
)
from dreamir.evaluation.evaluate import evaluate_model
from dreamir.objectives import OBJECTIVES, objective_classes

if TYPE_CHECKING:
    from dreamir.models.frozen_lm import FrozenLM


def device_label(device: str) -> str:
    """Where a result was measured, stored with it: train seconds mean little without it."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores)" if device == "cpu" else device


def train_and_evaluate(
    config: CompareConfig, dataset: DatasetConfig, objective: str, data, seed: int | None = None, control: bool = False
) -> dict:
    """Train one objective at one seed (resuming if interrupted) and evaluate it; cached in result.json."""
    from dreamir.trainer import Trainer

    run = run_config(config, dataset, objective, training_data(config, dataset), seed, control)
    run_dir = Path(run.run_dir)
    result_path = run_dir / "result.json"
    if result_path.exists():
        check_trained_as_configured(run)
        cached = json.loads(result_path.read_text())
        if same_scope(cached, data):
            return cached
        # the evaluation scope changed (split, corpus sample): re-evaluate the exported model, keep the training
        from dreamir.models.retriever import Retriever

        result = {
            **cached,
            **result_scores(evaluate_model(Retriever.load(str(run_dir / "retriever")), data, name=objective), data),
        }
        write_json_atomic(result_path, result)
        return result
    trainer = Trainer(run)
    trained = trainer.train(resume=trainer.latest_checkpoint() is not None)
    trainer.retriever.eval()
    evaluated = evaluate_model(trainer.retriever, data, name=objective)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    result = {
        **result_scores(evaluated, data),
        "train_s": sum(entry["seconds"] for entry in log),  # summed over resumed attempts
        "steps": trained.steps,
        "examples_seen": trained.steps * run.train.batch_size * run.train.grad_accum,
        "loss_first_quarter": trained.loss_start,
        "loss_last_quarter": trained.loss_end,
        "device": device_label(run.device),
    }
    write_json_atomic(result_path, result)
    return result


def start_retriever(config: CompareConfig, dataset: DatasetConfig):
    """The retriever every objective starts from, untrained, in evaluation mode."""
    from dreamir.trainer import build_retriever

    retriever = build_retriever(run_config(config, dataset, config.objectives[0], Path("unused")))
    retriever.eval()
    return retriever


def baseline(config: CompareConfig, dataset: DatasetConfig, name: str, data) -> dict:
    path = Path(config.out) / dataset.name / f"{name}.json"
    cached = finished_result(path, data)
    if cached:
        return cached
    if name == "bm25":
        evaluated, device = evaluate_model("bm25", data), "cpu"
    else:  # the retriever every objective starts from
        run = run_config(config, dataset, config.objectives[0], Path("unused"))
        evaluated = evaluate_model(start_retriever(config, dataset), data, name="untrained")
        device = run.device
    result = {**result_scores(evaluated, data), "train_s": 0, "device": device_label(device)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result


def fused_result(
    config: CompareConfig,
    dataset: DatasetConfig,
    data,
    make_model: Callable[[], object],
    path: Path,
    source: dict,
    report_only: bool = False,
) -> dict | None:
    """The model `make_model()` gives (a retriever in memory or a model spec; called only when the result is not
    cached) fused with `config.fuse_with` as `dataset` says, evaluated on `data` and cached at `path`; `source` is the
    unfused row's result (its training cost and device carry over). With `report_only`, only a finished result."""
    from dreamir.retrieval.encoder import load_encoder
    from dreamir.retrieval.fusion import FusionEncoder

    spec = config.fusion_spec("MODEL", dataset)
    cached = finished_result(path, data)
    if cached and cached.get("spec") == spec:
        return cached
    if report_only:
        return None
    fusion = config.fusion_for(dataset)
    method, weight = ("rrf", None) if fusion == "rrf" else ("fuse", float(fusion))
    assert config.fuse_with is not None
    fused = FusionEncoder(method, load_encoder(config.fuse_with), load_encoder(make_model()), weight, spec)
    evaluated = evaluate_model(fused, data, name=spec)
    result = {
        **result_scores(evaluated, data),
        "train_s": source.get("train_s", 0),
        "device": source.get("device", device_label("cpu")),
        "spec": spec,
        "fused_with": config.fuse_with,
    }
    write_json_atomic(path, result)
    return result


def fused_file(config: CompareConfig, dataset: DatasetConfig) -> str:
    """The file a run's (or baseline's) fused result is cached in, named by the fusion: fused-rrf-bm25.json."""
    slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in config.fusion_spec("", dataset).rstrip("+"))
    return f"fused-{slug}.json"


def run_compare(config: CompareConfig, report_only: bool = False) -> dict:
    """Train and evaluate what is not finished, writing the report after every method. With
    `report_only`, nothing is trained or evaluated: the report shows the methods already finished on
    the current evaluation scope (e.g. while a long comparison is still running). Returns what
    compare.json holds: {dataset: {row: metrics, seeds and paired tests}}."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    for dataset in config.datasets:
        # a label-free dataset's questions leave out its training data's source documents: build that first
        data = dataset.evaluation_data(training_data(config, dataset) if dataset.split is None else None)
        rows = results.setdefault(dataset.name, {})
        fused_rows: dict[str, dict] = {}  # reported after the plain rows
        fused_name = f"{config.fuse_with}+{{}}"
        for name in config.baselines:
            path = Path(config.out) / dataset.name / f"{name}.json"
            result = finished_result(path, data) if report_only else baseline(config, dataset, name, data)
            if result:
                rows[name] = result
                if name in config.fused_rows():
                    fused = fused_result(
                        config,
                        dataset,
                        data,
                        lambda dataset=dataset: start_retriever(config, dataset),
                        path.with_name(f"{name}-{fused_file(config, dataset)}"),
                        result,
                        report_only,
                    )
                    if fused:
                        fused_rows[fused_name.format(name)] = fused
        for row, objective, control in config.methods():
            per_seed, per_seed_fused = [], []
            for seed in config.run_seeds():
                if report_only:
                    result = finished_run(config, dataset, objective, data, seed, control)
                else:
                    started = time.perf_counter()
                    result = train_and_evaluate(config, dataset, objective, data, seed, control)
                    print(
                        f"[compare] {dataset.name} {row} seed {seed}: nDCG@10 {100 * result['ndcg@10']:.1f} "
                        f"({time.perf_counter() - started:.0f} s this call)"
                    )
                if result:
                    per_seed.append((seed, result))
                    if not control and row in config.fused_rows():
                        run_dir = Path(run_config(config, dataset, objective, Path("unused"), seed, control).run_dir)
                        fused = fused_result(
                            config,
                            dataset,
                            data,
                            lambda run_dir=run_dir: str(run_dir / "retriever"),
                            run_dir / fused_file(config, dataset),
                            result,
                            report_only,
                        )
                        if fused:
                            per_seed_fused.append((seed, fused))
            if per_seed:
                rows[row] = pool_seeds(per_seed)
            if per_seed_fused:
                fused_rows[fused_name.format(row)] = pool_seeds(per_seed_fused)
            if not report_only:
                write_outputs(config, {**results, dataset.name: {**rows, **fused_rows}})
        rows.update(fused_rows)
    results = {name: rows for name, rows in results.items() if rows}
    if results:
        write_outputs(config, results)
    return {dataset: add_paired_tests(rows) for dataset, rows in results.items()}


def select_shared_heads(run: RunConfig, lm: FrozenLM) -> None:
    """A heads file named but not there yet: selected label-free from this run's (real) training texts and
    written, so that every later run — seeds, controls, other datasets — shares it and its signal keys."""
    from dreamir.data.training import load_examples
    from dreamir.heads import select_run_heads

    assert run.heads.file is not None
    select_run_heads(run, run.dream.layout, lm, load_examples(run.data.train), run.heads.file)
    print(f"[compare] heads: selected label-free from {run.data.train} -> {run.heads.file}", flush=True)


def precompute_compare(config: CompareConfig) -> list[str]:
    """What the comparison's runs can compute ahead of training — DREAM-distill's judge signal, REPLUG's candidate
    NLL — of every example, with its real and (for a control) shuffled targets, for every dataset and seed; trains
    and evaluates nothing. Meant for a GPU: a later `dreamir compare` with the same judge, heads, dtype and
    examples reads them from `<objective>.signal_cache_dir` and makes no judge pass. Returns a line per run."""
    from dreamir.models.frozen_lm import FrozenLM
    from dreamir.trainer import Trainer

    lines: list[str] = []
    loaded: dict[tuple[str, str, str], FrozenLM] = {}  # the judge the runs share
    for dataset in config.datasets:
        train_path = training_data(config, dataset)
        for row, objective, control in config.methods():
            kinds = objective_classes(objective)
            if not any(kind.precomputes for kind in kinds):
                continue
            uses_heads = any(kind.uses_heads for kind in kinds)
            for seed in config.run_seeds():
                run = run_config(config, dataset, objective, train_path, seed, control)
                if seed != config.run_seeds()[0] and (run.heads.file or not uses_heads):
                    break  # the keys do not depend on the seed (heads: without a file, each seed selects its own)
                judge = (run.llm.name, run.device, run.dtype)
                if judge not in loaded:
                    loaded.clear()  # another judge (per_objective settings): free the last before loading it
                    loaded[judge] = FrozenLM.load(*judge)
                if uses_heads and run.heads.file and not Path(run.heads.file).exists():
                    select_shared_heads(run, loaded[judge])
                lines.append(f"{dataset.name} {row} seed {seed}: {Trainer(run, lm=loaded[judge]).precompute()}")
                print(f"[compare] {lines[-1]}", flush=True)
    if not lines:
        raise ConfigError(
            f"nothing to precompute: none of the objectives {', '.join(config.objectives)} computes anything "
            f"ahead of training ({', '.join(name for name, kind in OBJECTIVES.items() if kind.precomputes)} do)"
        )
    return lines
