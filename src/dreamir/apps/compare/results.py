"""Stored results: a run's or baseline's result.json (with its per-query nDCG@10), seeds pooled, paired tests;
`load_results` / `run_result` are the public way to read a finished comparison."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dreamir.apps.compare.config import CONTROL_SUFFIX, CompareConfig, DatasetConfig, run_config, training_data_path
from dreamir.checkpoints import changed_settings, describe_changes
from dreamir.config import (
    ConfigError,
    RunConfig,
    load_config,
    settings_without_effect,
)
from dreamir.data.beir import BeirData
from dreamir.evaluation.significance import paired_test, pooled
from dreamir.files import atomic_write

if TYPE_CHECKING:
    pass


REPORTED = ("ndcg@10", "recall@100", "mrr@10")

PER_QUERY = "per_query_ndcg@10"  # kept in each run's result.json for the paired tests, not in compare.json


def write_json_atomic(path: Path, value: dict) -> None:
    atomic_write(path, json.dumps(value, indent=1))


def scope_of(data: BeirData) -> dict:
    """What a score was measured on, stored with it so a cached result is never reused for another
    split or corpus sample (`scope_id` hashes the query and document ids)."""
    digest = hashlib.sha256()
    for ids in (sorted(data.queries), sorted(data.corpus)):
        digest.update("\n".join(ids).encode() + b"\0")
    return {"queries": len(data.queries), "corpus_docs": len(data.corpus), "scope_id": digest.hexdigest()[:16]}


def result_scores(evaluated, data: BeirData) -> dict:
    return {m: evaluated.metrics[m] for m in REPORTED} | scope_of(data) | {PER_QUERY: evaluated.per_query}


def same_scope(cached: dict, data: BeirData) -> bool:
    return all(cached.get(key) == value for key, value in scope_of(data).items())


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
    public = {}
    for name, row in rows.items():
        per_query = row.get(PER_QUERY)
        out = {k: v for k, v in row.items() if k != PER_QUERY}
        fused_with = row.get("fused_with")
        start_name = start_row(row)  # a fused row's start is the untrained start fused the same way
        start = rows.get(start_name, {}).get(PER_QUERY)
        if per_query and start and name not in ("untrained", "bm25", start_name):
            out["vs_start"] = paired_test(start, per_query).as_dict()
        alone = rows.get(fused_with, {}).get(PER_QUERY) if fused_with else None
        if per_query and alone:
            out["vs_fused_with"] = paired_test(alone, per_query).as_dict()
        control = rows.get(name + CONTROL_SUFFIX, {}).get(PER_QUERY)
        if per_query and control:
            out["vs_control"] = paired_test(control, per_query).as_dict()
        public[name] = out
    return public


def start_row(row: dict) -> str:
    """The row a row's `vs_start` test is against: the untrained start, fused as the row is (if it is)."""
    return f"{row['fused_with']}+untrained" if row.get("fused_with") else "untrained"


def finished_result(path: Path, data: BeirData) -> dict | None:
    """A method's stored result if it was measured on `data`'s scope; None if absent or measured on another."""
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if same_scope(result, data) else None


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
    ignored = settings_without_effect(run.train.objective, resuming=False)
    changed = changed_settings(saved.model_dump(mode="json"), run.model_dump(mode="json"), ignored)
    if "data.train" in changed and same_content(Path(saved.data.train or ""), Path(run.data.train or "")):
        del changed["data.train"]
    if changed:
        raise ConfigError(
            f"{run_dir} holds a finished run trained with other settings than the config's "
            f"({len(changed)} key(s): {describe_changes(changed)}). A finished run is reused only when its "
            "settings match: set another `out:`, or delete that folder to train it again"
        )


def same_content(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def load_results(out: str | os.PathLike) -> dict[str, dict[str, dict[str, dict]]]:
    """A comparison's results as written to OUT/compare.json: {track: {dataset: {method: row}}}, each trained row
    with its metrics (fractions), per-seed nDCG@10 and paired tests (`vs_start`, `vs_control`)."""
    path = Path(out) / "compare.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `dreamir compare` writes it into its `out:` folder")
    return json.loads(path.read_text())


def run_result(run_dir: str | os.PathLike) -> dict:
    """One finished run's (or baseline's) stored evaluation: its metrics and, under `per_query`, its nDCG@10 per
    judged query (what paired tests compare). A compare run folder holds it as result.json."""
    folder = Path(run_dir)
    path = folder / "result.json" if folder.is_dir() else folder
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has not finished its evaluation")
    result = json.loads(path.read_text())
    if PER_QUERY not in result:
        raise ValueError(f"{path} holds no per-query nDCG@10 ('{PER_QUERY}')")
    return {**{k: v for k, v in result.items() if k != PER_QUERY}, "per_query": result[PER_QUERY]}
