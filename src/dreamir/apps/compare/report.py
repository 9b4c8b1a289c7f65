"""The comparison's report: table, paired tests, compare.json / compare.md / compare.png."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from dreamir.apps.compare.config import CONTROL_SUFFIX, CompareConfig
from dreamir.apps.compare.results import add_paired_tests, start_row, write_json_atomic
from dreamir.evaluation.report import grouped_bars
from dreamir.files import atomic_write

if TYPE_CHECKING:
    pass


def format_significance(results: dict[str, dict[str, dict]]) -> str:
    """Paired tests per query (nDCG@10 ×100, seeds pooled): difference [95% CI], p."""
    lines = []
    for dataset, rows in results.items():
        for name, row in rows.items():
            start = "untrained start" if start_row(row) == "untrained" else start_row(row)
            tests = (
                ("vs_start", start),
                ("vs_control", f"{name}{CONTROL_SUFFIX}"),
                ("vs_fused_with", row.get("fused_with")),
            )
            for key, against in tests:
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
        fused = [f"{config.fuse_with}+{row}" for row in config.fused_rows()]
        names = [m for m in (*config.baselines, *(row for row, _, _ in config.methods()), *fused) if m not in rows]
        if names:
            missing.append(f"{dataset.name}: {', '.join(names)}")
    return missing


def write_outputs(config: CompareConfig, results: dict[str, dict[str, dict]]) -> None:
    out = Path(config.out)
    results = {dataset: add_paired_tests(rows) for dataset, rows in results.items()}
    write_json_atomic(out / "compare.json", {config.track: results})
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
