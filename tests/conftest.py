from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = Path(os.environ.get("DREAMIR_SHARED_ASSETS", REPO.parent / "shared" / "assets"))

ARCHS = ["llama", "qwen2", "gemma3_text"]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def require_alias(alias: str) -> None:
    from dreamir.assets import ALIASES, alias_available

    if not alias_available(alias):
        pytest.skip(
            f"asset '{alias}' absent: install it with `{ALIASES[alias].pip_hint}` (see ../shared/assets/README.md)"
        )


def require_beir(name: str) -> Path:
    path = SHARED_ASSETS / "beir" / name
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"BEIR folder {path} absent (expected ../shared/assets beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    from dreamir.testing import save_tiny_encoder

    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    from dreamir.testing import save_tiny_decoder

    return save_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama")
