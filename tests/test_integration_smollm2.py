"""Integration: the real frozen SmolLM2-135M and the real all-MiniLM-L6-v2 (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import require_alias, require_beir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2():
    require_alias("smollm2-135m-instruct")
    from dreamir.models.frozen_lm import FrozenLM

    return FrozenLM.load("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def slice_examples():
    from dreamir.data.beir import read_corpus
    from dreamir.data.text import BuildConfig, build_self_supervised

    folder = require_beir("scifact")
    texts = list(read_corpus(folder / "corpus.jsonl").values())[:200]
    return build_self_supervised(
        texts, BuildConfig(candidates=4, chunk_words=40, max_examples=8, seed=0), show_progress=False
    )


def test_the_judge_is_named_by_its_cached_copy_not_by_the_cache_path(smollm2):
    # what judge-signal and document caches are keyed by: the same on a machine with another cache folder
    assert smollm2.source.startswith("dreamir-cache/gguf-plain/SmolLM2-135M-Instruct.Q4_1-")


def test_smollm2_is_a_real_language_model(smollm2):
    """Guards against random or mis-loaded weights: plain English must be predictable."""
    from dreamir.data.training import TokenizedExample
    from dreamir.models.layout import pack_batch
    from dreamir.models.lm_passes import target_nll

    ids = smollm2.tokenize("The capital of France is Paris. The capital of Germany is Berlin.")
    ex = TokenizedExample(query=ids[:6], target=ids[6:], docs=[])
    pb = pack_batch([ex], smollm2.sink_token_id, 0, "concat")
    with torch.no_grad():
        nll = float(target_nll(smollm2, pb, None)[0])
    assert nll < 3.0, f"per-token loss {nll:.2f} nats: weights look wrong"


def test_thirty_dream_steps_lower_the_loss_and_change_the_retriever(smollm2, slice_examples, tmp_path):
    require_alias("all-minilm-l6-v2")
    from dreamir.config import load_config
    from dreamir.data.training import tokenize_examples
    from dreamir.settings import TokenLimits
    from dreamir.trainer import Trainer

    config = load_config(
        None,
        {
            "run_dir": str(tmp_path / "run"),
            "retriever.name": "all-minilm-l6-v2",
            "data.limits": {"query": 32, "target": 32, "doc": 48},
            "heads.count": 16,
            "heads.detection_examples": 8,
            "train.batch_size": 2,
            "train.lr": 3e-4,
            "train.warmup_steps": 2,
            "train.max_steps": 30,
            "train.schedule": "constant",
            "train.checkpoint_every": 30,
        },
    )
    trainer = Trainer(config, lm=smollm2, examples=slice_examples, show_progress=False)
    tokenized = tokenize_examples(slice_examples, smollm2.tokenize, TokenLimits(query=32, target=32, doc=48))

    def slice_loss() -> float:
        trainer.retriever.eval()
        with torch.no_grad():
            loss = float(trainer.objective(slice_examples, tokenized).loss)
        trainer.retriever.train()
        return loss

    before_loss = slice_loss()
    before = {n: p.detach().clone() for n, p in trainer.retriever.named_parameters()}
    trainer.train()
    after_loss = slice_loss()
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in trainer.retriever.named_parameters())
    print(f"slice loss {before_loss:.4f} -> {after_loss:.4f}; max weight change {moved:.2e}")
    assert after_loss < before_loss - 1e-3
    assert moved > 1e-4


def test_minilm_export_matches_sentence_transformers(tmp_path):
    require_alias("all-minilm-l6-v2")
    from sentence_transformers import SentenceTransformer

    from dreamir.models.retriever import Retriever

    texts = ["what causes scurvy", "Vitamin C deficiency leads to scurvy, a disease of collagen synthesis."]
    retriever = Retriever.load("all-minilm-l6-v2")
    out = retriever.export(tmp_path / "minilm")
    original = SentenceTransformer(retriever.source).encode(texts)
    np.testing.assert_allclose(retriever.encode(texts, "document"), original, atol=1e-5)
    np.testing.assert_allclose(SentenceTransformer(str(out)).encode(texts, prompt_name="document"), original, atol=1e-5)


def test_lora_decoder_retriever_from_gguf_exports_and_reloads(tmp_path):
    """The scratch track's retriever (SmolLM2 from GGUF, LoRA, last-token pooling) must export:
    its de-quantised copy may not carry the GGUF quantization marker, which makes saving fail."""
    require_alias("smollm2-135m-instruct")
    import json

    from sentence_transformers import SentenceTransformer

    from dreamir.assets import plain_model_source
    from dreamir.models.retriever import Retriever
    from dreamir.settings import LoraConfig

    plain = plain_model_source("smollm2-135m-instruct")
    config = json.loads((Path(plain.name_or_path) / "config.json").read_text())
    assert "quantization_config" not in config
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    retriever = Retriever.load("smollm2-135m-instruct", pooling="lasttoken", max_length=64, lora=lora)
    with torch.no_grad():  # make the adapter non-zero so the merge is actually exercised
        for name, param in retriever.st.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    texts = ["what causes scurvy", "Vitamin C deficiency leads to scurvy."]
    out = retriever.export(tmp_path / "scratch")
    reloaded = SentenceTransformer(str(out)).encode(texts, prompt_name="document")
    np.testing.assert_allclose(reloaded, retriever.encode(texts, "document"), atol=1e-4)
