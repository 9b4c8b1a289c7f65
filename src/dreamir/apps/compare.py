"""`dreamir compare`: train every objective on the same data and budget, evaluate, one table + plot.

For each dataset of the comparison config:
1. training data is built from the dataset's own corpus (label-free; never its queries or qrels),
   once, into OUT/<dataset>/train.jsonl;
2. each objective is trained with the same examples, steps, seed, retriever start and frozen LLM
   (the `base` run settings; `objectives.<name>` may add settings of that objective only), in
   OUT/<dataset>/<objective>/;
3. every trained retriever, the untrained start and BM25 are evaluated on the split with the
   evaluation code of `dreamir eval`.
Finished objectives leave OUT/<dataset>/<objective>/result.json and are not trained again, and an
interrupted training resumes from its checkpoint, so re-running the command continues the work.
Writes OUT/compare.json ({track: {dataset: {method: {metric: fraction}}}}), OUT/compare.md and
OUT/compare.png.
"""

from __future__ import annotations

import copy
import filecmp
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import Field

from dreamir.checkpoints import changed_settings, describe_changes
from dreamir.config import (
    ConfigError,
    ObjectiveName,
    RunConfig,
    StrictConfig,
    format_config_errors,
    load_config,
    set_dotted,
)
from dreamir.data.beir import BeirData, load_beir, sample_corpus
from dreamir.data.jsonl import write_jsonl_atomic
from dreamir.data.text import BuildConfig, build_self_supervised, examples_to_rows, read_corpus
from dreamir.data.training import DataStats
from dreamir.eval.evaluate import evaluate_model
from dreamir.eval.report import grouped_bars
from dreamir.eval.significance import paired_test, pooled
from dreamir.files import atomic_write
from dreamir.objectives import OBJECTIVES, get_objective, unread_sections
from dreamir.objectives.signal_store import SignalCacheConfig

if TYPE_CHECKING:
    from dreamir.models.frozen_lm import FrozenLM

REPORTED = ("ndcg@10", "recall@100", "mrr@10")
CONTROL_SUFFIX = "-shuffled"
PER_QUERY = "per_query_ndcg@10"  # kept in each run's result.json for the paired tests, not in compare.json


class DatasetConfig(StrictConfig):
    name: str
    beir: str  # BEIR folder: its corpus builds the training data, its split is evaluated
    split: str = "test"
    train_data: str | None = None  # a ready training JSONL instead of building one
    build: BuildConfig = BuildConfig()
    # evaluate over a seeded corpus sample (every judged document + others, this many in all) when
    # encoding the whole corpus is too slow; such scores are comparable only with each other
    eval_docs: int | None = Field(None, gt=0)
    eval_seed: int = 0

    def evaluation_data(self) -> BeirData:
        """The split the methods are scored on: its queries, qrels and corpus (or the corpus sample)."""
        data = load_beir(self.beir, self.split)
        return sample_corpus(data, self.eval_docs, self.eval_seed) if self.eval_docs else data


class CompareConfig(StrictConfig):
    out: str = "runs/compare"
    track: str = "adapt"
    datasets: list[DatasetConfig]
    objectives: list[ObjectiveName] = Field(default_factory=lambda: list(OBJECTIVES))
    baselines: list[Literal["untrained", "bm25"]] = Field(default_factory=lambda: ["untrained", "bm25"])
    base: dict[str, Any] = Field(
        default_factory=dict
    )  # RunConfig settings (nested, as in a train config) shared by every objective
    per_objective: dict[ObjectiveName, dict[str, Any]] = Field(default_factory=dict)  # settings for one objective only
    # The protocol (issue 17): each objective once per seed (rows report the mean, its spread and a
    # paired test per query against the untrained start, seeds pooled); `controls` also run with
    # shuffled targets (row "<objective>-shuffled", tested against its objective). Empty seeds: base's seed.
    seeds: list[int] = Field(default_factory=list)
    controls: list[ObjectiveName] = Field(default_factory=list)
    # whose targets a control shuffles (`data.shuffle_targets_for` of the control runs only): "llm" keeps the
    # retriever's real targets, the control of a judge term beside InfoNCE (`dream_distill.contrastive_weight`)
    control_shuffles: Literal["all", "llm"] = "all"

    def run_seeds(self) -> list[int]:
        return self.seeds or [int(self.base.get("seed", 0))]

    def dataset(self, name: str) -> DatasetConfig:
        """The dataset entry called `name` (a clear error naming the ones there are, if none)."""
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise ConfigError(f"no dataset '{name}' in the comparison; it has: {', '.join(d.name for d in self.datasets)}")

    def methods(self) -> list[tuple[str, str, bool]]:
        """(row name, objective, shuffled targets) for every trained row."""
        rows = [(o, o, False) for o in self.objectives]
        return rows + [(f"{o}{CONTROL_SUFFIX}", o, True) for o in self.controls]


def load_compare_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> CompareConfig:
    from pydantic import ValidationError

    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    try:
        config = CompareConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_config_errors(err, str(path))) from None
    for _, objective, control in config.methods():  # fail now, not after hours of training the first ones
        run_config(config, config.datasets[0], objective, Path("/nonexistent"), control=control)
    return config


def run_config(
    config: CompareConfig,
    dataset: DatasetConfig,
    objective: str,
    train_path: Path,
    seed: int | None = None,
    control: bool = False,
) -> RunConfig:
    """One training run of the comparison: `objective` (with shuffled targets when `control`) at `seed`.
    The first seed of the protocol runs in OUT/<dataset>/<row>, later ones in OUT/<dataset>/<row>-seed<S>."""
    tree = copy.deepcopy(_deep_merge(config.base, config.per_objective.get(objective, {})))  # type: ignore[call-overload]
    seeds = config.run_seeds()
    seed = seeds[0] if seed is None else seed
    name = objective + (CONTROL_SUFFIX if control else "") + ("" if seed == seeds[0] else f"-seed{seed}")
    set_dotted(tree, "seed", seed)
    set_dotted(tree, "train.objective", objective)
    set_dotted(tree, "data.train", str(train_path))
    if control:
        set_dotted(tree, "data.shuffle_targets", True)
        set_dotted(tree, "data.shuffle_targets_for", config.control_shuffles)
    set_dotted(tree, "run_dir", str(Path(config.out) / dataset.name / name))
    from pydantic import ValidationError

    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_config_errors(err, f"compare settings for {objective}")) from None


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            _deep_merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
        )
    return merged


def training_data_path(config: CompareConfig, dataset: DatasetConfig) -> Path:
    """Where a dataset's training examples are (or will be built): the same file for every objective."""
    return Path(dataset.train_data) if dataset.train_data else Path(config.out) / dataset.name / "train.jsonl"


def training_data(config: CompareConfig, dataset: DatasetConfig) -> Path:
    """The dataset's training examples, built from its corpus on first use."""
    path = training_data_path(config, dataset)
    if dataset.train_data or path.exists():
        return path
    stats = DataStats()
    corpus = Path(dataset.beir) / "corpus.jsonl"  # corpus text only: queries and qrels are not read
    titles: dict[str, str] = {}
    documents = read_corpus(corpus, stats, titles)
    examples = build_self_supervised(documents, dataset.build, stats, titles=titles)
    n = write_jsonl_atomic(path, examples_to_rows(examples))
    print(f"[compare] {dataset.name}: built {n} training examples from its corpus ({stats.summary()})")
    return path


def _write_json_atomic(path: Path, value: dict) -> None:
    atomic_write(path, json.dumps(value, indent=1))


def _scope(data: BeirData) -> dict:
    """What a score was measured on, stored with it so a cached result is never reused for another
    split or corpus sample (`scope_id` hashes the query and document ids)."""
    digest = hashlib.sha256()
    for ids in (sorted(data.queries), sorted(data.corpus)):
        digest.update("\n".join(ids).encode() + b"\0")
    return {"queries": len(data.queries), "corpus_docs": len(data.corpus), "scope_id": digest.hexdigest()[:16]}


def _scores(evaluated, data: BeirData) -> dict:
    return {m: evaluated.metrics[m] for m in REPORTED} | _scope(data) | {PER_QUERY: evaluated.per_query}


def device_label(device: str) -> str:
    """Where a result was measured, stored with it: train seconds mean little without it."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores)" if device == "cpu" else device


def _same_scope(cached: dict, data: BeirData) -> bool:
    return all(cached.get(key) == value for key, value in _scope(data).items())


# Settings that do not change what a finished run trained: where it ran, how often it saved, where and how much
# it cached (every objective whose config carries a signal cache, and DREAM's document cache).
REUSE_SAFE_KEYS = (
    "run_dir",
    "device",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    *(
        f"{name}.{key}"
        for name, kind in OBJECTIVES.items()
        if issubclass(kind.Config, SignalCacheConfig)
        for key in SignalCacheConfig.model_fields
    ),
    "dream.document_cache_mb",
    "dream.document_cache_dir",
)


def check_trained_as_configured(run: RunConfig) -> None:
    """Refuse to reuse a finished run whose settings are not `run`'s: after an edited config, its result
    would be reported under settings it was not trained with. Its training file may lie elsewhere (a run
    folder copied from another study) if the content is the same."""
    run_dir = Path(run.run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        raise ConfigError(
            f"{run_dir} holds a result but no config.yaml, so how it was trained is unknown; "
            "delete that folder to train it again"
        )
    saved = load_config(saved_path)  # validated, so settings added since then read as their defaults
    unread = unread_sections(run.train.objective)
    changed = changed_settings(saved.model_dump(mode="json"), run.model_dump(mode="json"), REUSE_SAFE_KEYS + unread)
    if "data.train" in changed and _same_content(Path(saved.data.train or ""), Path(run.data.train or "")):
        del changed["data.train"]
    if changed:
        raise ConfigError(
            f"{run_dir} holds a finished run trained with other settings than the config's "
            f"({len(changed)} key(s): {describe_changes(changed)}). A finished run is reused only when its "
            "settings match: set another `out:`, or delete that folder to train it again"
        )


def _same_content(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


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
        if _same_scope(cached, data):
            return cached
        # the evaluation scope changed (split, corpus sample): re-evaluate the exported model, keep the training
        from dreamir.models.retriever import Retriever

        result = {
            **cached,
            **_scores(evaluate_model(Retriever.load(str(run_dir / "retriever")), data, name=objective), data),
        }
        _write_json_atomic(result_path, result)
        return result
    trainer = Trainer(run)
    trained = trainer.train(resume=trainer.latest_checkpoint() is not None)
    trainer.retriever.eval()
    evaluated = evaluate_model(trainer.retriever, data, name=objective)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    result = {
        **_scores(evaluated, data),
        "train_s": sum(entry["seconds"] for entry in log),  # summed over resumed attempts
        "steps": trained.steps,
        "examples_seen": trained.steps * run.train.batch_size * run.train.grad_accum,
        "loss_first_quarter": trained.loss_start,
        "loss_last_quarter": trained.loss_end,
        "device": device_label(run.device),
    }
    _write_json_atomic(result_path, result)
    return result


def baseline(config: CompareConfig, dataset: DatasetConfig, name: str, data) -> dict:
    path = Path(config.out) / dataset.name / f"{name}.json"
    cached = finished_result(path, data)
    if cached:
        return cached
    if name == "bm25":
        evaluated, device = evaluate_model("bm25", data), "cpu"
    else:  # the retriever every objective starts from
        from dreamir.trainer import build_retriever

        run = run_config(config, dataset, config.objectives[0], Path("unused"))
        retriever = build_retriever(run)
        retriever.eval()
        evaluated, device = evaluate_model(retriever, data, name="untrained"), run.device
    result = {**_scores(evaluated, data), "train_s": 0, "device": device_label(device)}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(path, result)
    return result


def run_compare(config: CompareConfig, report_only: bool = False) -> dict:
    """Train and evaluate what is not finished, writing the report after every method. With
    `report_only`, nothing is trained or evaluated: the report shows the methods already finished on
    the current evaluation scope (e.g. while a long comparison is still running). Returns what
    compare.json holds: {dataset: {row: metrics, seeds and paired tests}}."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    for dataset in config.datasets:
        data = dataset.evaluation_data()
        rows = results.setdefault(dataset.name, {})
        for name in config.baselines:
            path = Path(config.out) / dataset.name / f"{name}.json"
            result = finished_result(path, data) if report_only else baseline(config, dataset, name, data)
            if result:
                rows[name] = result
        for row, objective, control in config.methods():
            per_seed = []
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
            if per_seed:
                rows[row] = pool_seeds(per_seed)
            if not report_only:
                write_outputs(config, results)
    results = {name: rows for name, rows in results.items() if rows}
    if results:
        write_outputs(config, results)
    return {dataset: add_paired_tests(rows) for dataset, rows in results.items()}


def select_shared_heads(run: RunConfig, lm: FrozenLM) -> None:
    """A heads file named but not there yet: selected label-free from this run's (real) training texts and
    written, so that every later run — seeds, controls, other datasets — shares it and its signal keys."""
    from dreamir.data.training import load_examples
    from dreamir.objectives.dream import select_run_heads

    assert run.heads.file is not None
    select_run_heads(run, lm, load_examples(run.data.train), run.heads.file)
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
            kind = get_objective(objective)
            if not kind.precomputes:
                continue
            for seed in config.run_seeds():
                run = run_config(config, dataset, objective, train_path, seed, control)
                if seed != config.run_seeds()[0] and (run.heads.file or not kind.uses_heads):
                    break  # the keys do not depend on the seed (heads: without a file, each seed selects its own)
                judge = (run.llm.name, run.device, run.dtype)
                if judge not in loaded:
                    loaded.clear()  # another judge (per_objective settings): free the last before loading it
                    loaded[judge] = FrozenLM.load(*judge)
                if kind.uses_heads and run.heads.file and not Path(run.heads.file).exists():
                    select_shared_heads(run, loaded[judge])
                lines.append(f"{dataset.name} {row} seed {seed}: {Trainer(run, lm=loaded[judge]).precompute()}")
                print(f"[compare] {lines[-1]}", flush=True)
    if not lines:
        raise ConfigError(
            f"nothing to precompute: none of the objectives {', '.join(config.objectives)} computes anything "
            f"ahead of training ({', '.join(name for name, kind in OBJECTIVES.items() if kind.precomputes)} do)"
        )
    return lines


def pool_seeds(per_seed: list[tuple[int, dict]]) -> dict:
    """One row from a method's runs at several seeds: metric means, nDCG@10 per seed and its spread,
    and the per-query nDCG@10 averaged over seeds (what the paired tests compare)."""
    if len(per_seed) == 1:
        return dict(per_seed[0][1])
    results = [r for _, r in per_seed]
    row = dict(results[0])
    for key in (*REPORTED, "train_s", "loss_first_quarter", "loss_last_quarter"):
        values = [r[key] for r in results if r.get(key) is not None]
        if values:
            row[key] = float(np.mean(values))
    row["seeds"] = {str(seed): r["ndcg@10"] for seed, r in per_seed}
    row["ndcg@10_std"] = float(np.std([r["ndcg@10"] for r in results], ddof=1))
    row[PER_QUERY] = pooled([r[PER_QUERY] for r in results]) if all(PER_QUERY in r for r in results) else None
    return row


def add_paired_tests(rows: dict[str, dict]) -> dict[str, dict]:
    """Rows without their per-query scores, each trained row with its paired test (seeds pooled)
    against the untrained start (`vs_start`) and, for an objective with a control, against it (`vs_control`)."""
    start = rows.get("untrained", {}).get(PER_QUERY)
    public = {}
    for name, row in rows.items():
        per_query = row.get(PER_QUERY)
        out = {k: v for k, v in row.items() if k != PER_QUERY}
        if per_query and start and name not in ("untrained", "bm25"):
            out["vs_start"] = paired_test(start, per_query).as_dict()
        control = rows.get(name + CONTROL_SUFFIX, {}).get(PER_QUERY)
        if per_query and control:
            out["vs_control"] = paired_test(control, per_query).as_dict()
        public[name] = out
    return public


def finished_run(
    config: CompareConfig, dataset: DatasetConfig, objective: str, data: BeirData, seed: int, control: bool
) -> dict | None:
    """A run's stored result if it finished on `data`'s scope (and was trained as configured: else
    ConfigError); None if it has not finished. Trains and evaluates nothing."""
    run = run_config(config, dataset, objective, training_data_path(config, dataset), seed, control)
    result = finished_result(Path(run.run_dir) / "result.json", data)
    if result:
        check_trained_as_configured(run)
    return result


def finished_result(path: Path, data: BeirData) -> dict | None:
    """A method's stored result if it was measured on `data`'s scope; None if absent or measured on another."""
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if _same_scope(result, data) else None


def format_significance(results: dict[str, dict[str, dict]]) -> str:
    """Paired tests per query (nDCG@10 ×100, seeds pooled): difference [95% CI], p."""
    lines = []
    for dataset, rows in results.items():
        for name, row in rows.items():
            for key, against in (("vs_start", "untrained start"), ("vs_control", f"{name}{CONTROL_SUFFIX}")):
                test = row.get(key)
                if test:
                    lines.append(
                        f"| {dataset} | {name} | {against} | {100 * test['mean_difference']:+.1f} "
                        f"[{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}] | {test['p_value']:.3g} |"
                    )
    if not lines:
        return ""
    header = "| dataset | method | against | Δ nDCG@10 [95% CI] | p |\n|---|---|---|---:|---:|"
    return (
        "Paired tests over queries (randomization test and bootstrap CI, scipy; per-query nDCG@10 averaged "
        "over seeds):\n\n" + header + "\n" + "\n".join(lines)
    )


def format_compare_table(results: dict[str, dict[str, dict]]) -> str:
    methods = list(dict.fromkeys(m for rows in results.values() for m in rows))
    header = "| method | " + " | ".join(f"{d} nDCG@10 | {d} R@100 | {d} train s" for d in results) + " |"
    lines = [header, "|---|" + "---:|---:|---:|" * len(results)]
    for method in methods:
        cells = []
        for rows in results.values():
            r = rows.get(method)
            if r is None:
                cells += ["–"] * 3
                continue
            spread = f" ± {100 * r['ndcg@10_std']:.1f} ({len(r['seeds'])} seeds)" if "seeds" in r else ""
            cells += [f"{100 * r['ndcg@10']:.1f}{spread}", f"{100 * r['recall@100']:.1f}", f"{r['train_s']:.0f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measured_on_text(results: dict[str, dict[str, dict]]) -> str:
    """'scifact: CPU (2 cores); nfcorpus: NVIDIA H100 (…), CPU (16 cores) (bm25)': the device of each
    dataset's rows, naming the methods when a dataset's rows come from more than one."""
    parts = []
    for dataset, rows in results.items():
        by_device: dict[str, list[str]] = {}
        for method, row in rows.items():
            by_device.setdefault(row.get("device", "device not recorded"), []).append(method)
        if len(by_device) == 1:
            parts.append(f"{dataset}: {next(iter(by_device))}")
        else:
            parts.append(f"{dataset}: " + ", ".join(f"{d} ({', '.join(m)})" for d, m in by_device.items()))
    return "; ".join(parts)


def unfinished(config: CompareConfig, results: dict[str, dict[str, dict]]) -> list[str]:
    """'dataset: method, ...' for each dataset of the config with methods not in `results` yet."""
    missing = []
    for dataset in config.datasets:
        rows = results.get(dataset.name, {})
        names = [m for m in (*config.baselines, *(row for row, _, _ in config.methods())) if m not in rows]
        if names:
            missing.append(f"{dataset.name}: {', '.join(names)}")
    return missing


def write_outputs(config: CompareConfig, results: dict[str, dict[str, dict]]) -> None:
    out = Path(config.out)
    results = {dataset: add_paired_tests(rows) for dataset, rows in results.items()}
    _write_json_atomic(out / "compare.json", {config.track: results})
    table = format_compare_table(results)
    if tests := format_significance(results):
        table += "\n\n" + tests
    missing = unfinished(config, results)
    if missing:
        table += "\n\nNot finished yet: " + "; ".join(missing) + "."
    sampled = [f"{d.name}: {d.eval_docs}-document corpus sample" for d in config.datasets if d.eval_docs]
    scope = f" ({'; '.join(sampled)}; not comparable with full-corpus scores)" if sampled else ""
    measured_on = f" Measured on — {where}." if (where := measured_on_text(results)) else ""
    settings = yaml.safe_dump(config.model_dump(), sort_keys=False)
    atomic_write(
        out / "compare.md",
        f"# Objective comparison (track {config.track})\n\n{table}\n\nScores ×100 on each dataset's evaluated "
        f"split{scope}; train s = training seconds.{measured_on}\n\n![comparison](compare.png)\n\n"
        f"Settings:\n\n```yaml\n{settings}```\n",
    )
    plot_compare(out / "compare.png", results, config.track)
    print(table)


def plot_compare(path: Path, results: dict[str, dict[str, dict]], track: str) -> None:
    datasets = list(results)
    methods = list(dict.fromkeys(m for rows in results.values() for m in rows))
    series = {m: [100 * results[d][m]["ndcg@10"] if m in results[d] else 0 for d in datasets] for m in methods}
    grouped_bars(path, datasets, series, "nDCG@10 × 100", f"objectives compared (track {track})", legend_columns=3)
