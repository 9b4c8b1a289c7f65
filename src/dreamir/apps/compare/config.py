"""The comparison's config (datasets, objectives, seeds, controls, base run settings) and its runs' configs."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from dreamir.config import (
    ConfigError,
    ObjectiveName,
    RunConfig,
    StrictConfig,
    format_config_errors,
    read_config_tree,
    set_dotted,
)
from dreamir.data.beir import BeirData, load_beir, read_corpus, sample_corpus
from dreamir.data.jsonl import DataError, write_jsonl_atomic
from dreamir.data.text import BuildConfig, build_self_supervised, examples_to_rows, resolve_corpus_path
from dreamir.data.training import DataStats
from dreamir.evaluation.check import CheckConfig, build_check_queries, load_check_corpus, training_documents
from dreamir.objectives import OBJECTIVES, objective_slug

if TYPE_CHECKING:
    pass


CONTROL_SUFFIX = "-shuffled"


class DatasetConfig(StrictConfig):
    name: str
    beir: str  # BEIR folder (or a corpus JSONL with split: null): its corpus builds the training data
    # the split evaluated; null: no labels, the methods are scored by the label-free check (docs/check.md)
    split: str | None = "test"
    check: CheckConfig = Field(default_factory=CheckConfig)  # how the check's questions are written (split: null)
    train_data: str | None = None  # a ready training JSONL instead of building one
    build: BuildConfig = BuildConfig()
    # evaluate over a seeded corpus sample (every judged document + others, this many in all) when
    # encoding the whole corpus is too slow; such scores are comparable only with each other
    eval_docs: int | None = Field(None, gt=0)
    eval_seed: int = 0
    # this dataset's fusion (rrf or W) when the comparison has `fuse_with`: a weight is chosen on each dataset's own
    # dev split; unset, the comparison's `fusion`
    fusion: Literal["rrf"] | Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    def evaluation_data(self, train_path: Path | None = None) -> BeirData:
        """The split the methods are scored on: its queries, qrels and corpus (or the corpus sample). With no split,
        the label-free check's questions about the corpus, the training data's source documents left out."""
        if self.split is None:
            corpus = load_check_corpus(self.beir)
            exclude: set[str] = set()
            if train_path is not None:
                try:
                    exclude = training_documents(train_path, corpus)
                except DataError as err:  # e.g. question/answer pairs: no source to leave out
                    print(f"[compare] {self.name}: {err}; every document may be asked about")
            built = build_check_queries(corpus, self.check, exclude)
            print(f"[compare] {self.name}: label-free check, {len(built.queries)} written questions ({built.writer})")
            return BeirData(self.name, corpus, built.queries, built.qrels, built.stats)
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
    # retriever's real targets, the control of a judge term beside InfoNCE (`dream_distill + 0.5 * infonce`)
    control_shuffles: Literal["all", "llm"] = "all"
    # Hybrid rows (docs/evaluation.md): every row but the controls also fused with this model spec (e.g. bm25) as
    # row "<fuse_with>+<row>", tested against "<fuse_with>+untrained" (vs_start) and `fuse_with` alone (vs_fused_with).
    # `fusion`: rrf, or the convex weight W of `fuse_with`'s side — chosen beforehand on a dev split, never on test.
    fuse_with: str | None = None
    fusion: Literal["rrf"] | Annotated[float, Field(ge=0.0, le=1.0)] = "rrf"

    def fusion_for(self, dataset: DatasetConfig) -> str | float:
        """The fusion of `dataset`'s fused rows: rrf or the convex weight W of `fuse_with`'s side."""
        return self.fusion if dataset.fusion is None else dataset.fusion

    def fusion_spec(self, model: str, dataset: DatasetConfig) -> str:
        """The model spec of `model` fused with `fuse_with` on `dataset` (rrf:bm25+MODEL or fuse:W:bm25+MODEL)."""
        fusion = self.fusion_for(dataset)
        method = "rrf" if fusion == "rrf" else f"fuse:{fusion:g}"
        return f"{method}:{self.fuse_with}+{model}"

    def fused_rows(self) -> list[str]:
        """The rows that get a fused twin: the baselines but `fuse_with` itself, and every objective."""
        if not self.fuse_with:
            return []
        return [b for b in self.baselines if b != self.fuse_with] + list(self.objectives)

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

    tree = read_config_tree(path, overrides)
    try:
        config = CompareConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_config_errors(err, str(path))) from None
    if not config.fuse_with and (fused := [d.name for d in config.datasets if d.fusion is not None]):
        raise ConfigError(f"{path}: datasets {', '.join(fused)} set a fusion, but the comparison has no fuse_with")
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
    name = (
        objective_slug(objective) + (CONTROL_SUFFIX if control else "") + ("" if seed == seeds[0] else f"-seed{seed}")
    )
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
    corpus = resolve_corpus_path(dataset.beir)  # corpus text only: queries and qrels are not read
    titles: dict[str, str] = {}
    documents = read_corpus(corpus, stats, titles)
    examples = build_self_supervised(documents, dataset.build, stats, titles=titles)
    n = write_jsonl_atomic(path, examples_to_rows(examples))
    print(f"[compare] {dataset.name}: built {n} training examples from its corpus ({stats.summary()})")
    return path
