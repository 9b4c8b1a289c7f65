"""The package's layers, checked: every import — at module level, inside functions and under TYPE_CHECKING —
points down the stack, so there is no import circle and nothing reaches back up.

    base (settings, files, distributed → assets, checkpoints, testing) → data → models → heads
    → objectives (teachers and losses) → config → trainer → retrieval → evaluation → apps → cli

A new top-level module or package must be given a layer here.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dreamir"

LAYERS = [
    {"settings", "files", "distributed"},
    {"assets", "checkpoints", "testing"},
    {"data"},
    {"models"},
    {"heads"},
    {"objectives"},
    {"config"},
    {"trainer"},
    {"retrieval"},
    {"evaluation"},
    {"apps"},
    {"cli"},
]
LAYER = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """`dreamir.objectives.teachers` → `objectives`: a top-level module or subpackage of dreamir."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_edges() -> list[tuple[str, str, str]]:
    """(importing file, importing unit, imported unit) for every dreamir import in src/dreamir."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = "dreamir." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dreamir"):
                targets = [node.module]
                if node.module == "dreamir":
                    targets = [f"dreamir.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("dreamir")]
            else:
                continue
            for target in targets:
                if unit_of(target) and unit_of(target) != unit_of(module):
                    edges.append((str(path.relative_to(SRC)), unit_of(module), unit_of(target)))
    return edges


def test_every_unit_has_a_layer():
    units = {unit_of("dreamir." + ".".join(p.relative_to(SRC).with_suffix("").parts)) for p in SRC.rglob("*.py")}
    units.discard("__init__")
    assert units - set(LAYER) == set(), "give each new module or package a layer in LAYERS"


def test_imports_point_down_the_layers():
    upward = [
        f"{path}: {unit} (layer {LAYER[unit]}) imports {target} (layer {LAYER[target]})"
        for path, unit, target in import_edges()
        if unit in LAYER and target in LAYER and LAYER[target] >= LAYER[unit]
    ]
    assert upward == []


def test_the_check_sees_an_import_that_points_up(tmp_path, monkeypatch):
    """The walker finds imports inside functions and under TYPE_CHECKING (a check that could not fail would
    prove nothing)."""
    package = tmp_path / "dreamir" / "data"
    package.mkdir(parents=True)
    (package / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dreamir.config import RunConfig\n"
        "def f():\n    from dreamir.trainer import Trainer\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "dreamir")
    assert [(u, t) for _, u, t in import_edges()] == [("data", "config"), ("data", "trainer")]
