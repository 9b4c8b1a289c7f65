"""docs/results.md quotes bench/results/compare.json: a figure typed by hand can drift from the measurement.

For each section whose heading names a comparison config with a track in compare.json, every figure of the
section's first table is checked against that track: a dataset column's nDCG@10 must be a row's nDCG@10 ×100 on
that dataset, and each "difference, p" cell beside it must be one of that dataset's paired tests (mean
difference ×100 and p-value), each equal to the figure as written up to its last shown digit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DOC = ROOT / "docs" / "results.md"
COMPARE = ROOT / "bench" / "results" / "compare.json"
DATASET_COLUMNS = {"SciFact": "scifact", "NFCorpus": "nfcorpus"}
NUMBER = r"[+−-]?\d+(?:\.\d+)?"


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, lines) for each `## ` section."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            found.append((line, []))
        elif found:
            found[-1][1].append(line)
    return found


def first_table(lines: list[str]) -> list[list[str]]:
    """The cells of the section's first Markdown table, its separator row dropped."""
    rows, started = [], False
    for line in lines:
        if line.startswith("|"):
            started = True
            if not re.fullmatch(r"\|[-:| ]+\|", line.strip()):
                rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif started:
            break
    return rows


def tracks_of(heading: str) -> list[str]:
    names = ["configs/" + name for name in re.findall(r"`(?:configs/)?(compare-[\w.-]+\.yaml)`", heading)]
    return [yaml.safe_load((ROOT / name).read_text())["track"] for name in names]


def as_written(figure: str, value: float) -> bool:
    """Whether `value` rounds to `figure` at the figure's last shown digit."""
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    return abs(value - float(figure.replace("−", "-"))) <= 0.5 * 10**-decimals + 1e-9


def measured(results: dict, tracks: list[str], dataset: str) -> tuple[list[float], list[tuple[float, float]]]:
    """nDCG@10 ×100 of every row, and (difference ×100, p) of every paired test, of `dataset` in `tracks`."""
    ndcg, tests = [], []
    for track in tracks:
        for row in results[track].get(dataset, {}).values():
            if "ndcg@10" in row:
                ndcg.append(100 * row["ndcg@10"])
            for key, test in row.items():
                if key.startswith("vs_") and isinstance(test, dict) and "p_value" in test:
                    tests.append((100 * test["mean_difference"], test["p_value"]))
    return ndcg, tests


def checked_tables() -> list[tuple[str, list[str], list[list[str]]]]:
    return [
        (heading, tracks, first_table(lines))
        for heading, lines in sections(RESULTS_DOC.read_text())
        if (tracks := tracks_of(heading))
    ]


def test_the_results_doc_names_tracks_to_check():
    checked = checked_tables()
    assert len(checked) >= 4, [heading for heading, _, _ in checked]
    assert all(table for _, _, table in checked)


@pytest.mark.parametrize(("heading", "tracks", "table"), checked_tables(), ids=lambda x: str(x)[:40])
def test_the_results_doc_quotes_compare_json(heading, tracks, table):
    results = json.loads(COMPARE.read_text())
    header, body = table[0], table[1:]
    wrong, checked = [], 0
    dataset = None
    for column, name in enumerate(header):
        dataset = DATASET_COLUMNS.get(name, dataset if name.startswith("vs ") else None)
        if dataset is None:
            continue
        ndcg, tests = measured(results, tracks, dataset)
        for row in body:
            cell = row[column] if column < len(row) else ""
            if not cell:
                continue
            if name in DATASET_COLUMNS:
                ok = bool(re.fullmatch(NUMBER, cell)) and any(as_written(cell, value) for value in ndcg)
            else:
                match = re.fullmatch(rf"({NUMBER}), ({NUMBER})", cell)
                if match is None:  # a p-value alone (e.g. against the control)
                    ok = bool(re.fullmatch(NUMBER, cell)) and any(as_written(cell, p) for _, p in tests)
                else:
                    difference, p = match.groups()
                    ok = any(as_written(difference, d) and as_written(p, q) for d, q in tests)
            checked += 1
            if not ok:
                wrong.append(f"row {row[0]!r}, column {name!r}: {cell!r} is not in {', '.join(tracks)} / {dataset}")
    assert checked, f"{heading}: no figure checked"
    assert not wrong, f"{heading}:\n" + "\n".join(wrong)


def test_a_mistyped_figure_is_caught():
    assert as_written("45.7", 45.683)
    assert not as_written("45.8", 45.683)
    assert as_written("0.0002", 0.00019998)
    assert not as_written("0.002", 0.00019998)
    assert as_written("−0.1", -0.14)
