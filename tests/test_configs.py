"""Every config shipped in configs/ validates against the current settings (a renamed or removed key
would otherwise surface only hours into a benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "research" / "configs").glob("*.yaml")])


def test_configs_are_found():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    from dreamir.apps.compare import load_compare_config
    from dreamir.config import load_config

    tree = yaml.safe_load(path.read_text())
    if "datasets" in tree:  # a comparison: validates every objective's run config too
        config = load_compare_config(path)
        assert config.datasets and config.objectives
    else:
        config = load_config(path)
        assert config.train.max_steps > 0
