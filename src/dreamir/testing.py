"""Tiny models and tokenizers built from configs, for fast tests and for users writing their own.

Random weights, a word-level tokenizer made on the spot: no downloads, a few MB of memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "and",
    "or",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "it",
    "this",
    "that",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "vitamin",
    "scurvy",
    "cause",
    "causes",
    "deficiency",
    "protein",
    "cell",
    "cells",
    "gene",
    "genes",
    "study",
    "patients",
    "disease",
    "risk",
    "increase",
    "decrease",
    "effect",
    "effects",
    "blood",
    "heart",
    "cancer",
    "tumor",
    "mouse",
    "mice",
    "human",
    "treatment",
    "results",
    "show",
    "shows",
    "found",
    "find",
    "we",
    "our",
    "data",
    "model",
    "method",
    "high",
    "low",
    "level",
    "levels",
    "brain",
    "acid",
    "water",
    "energy",
    "light",
    "fast",
    "slow",
    "time",
    "year",
    "years",
    "new",
    "old",
    "first",
    "second",
    "what",
    "why",
    "how",
    "which",
    "who",
    "query",
    "passage",
    ":",
    ".",
    ",",
    "?",
    "(",
    ")",
]


def make_tokenizer(kind: str = "decoder"):
    """A fast word-level tokenizer; "decoder" has <s>/</s>, "encoder" BERT-style [CLS]/[SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = (
        ["<pad>", "<s>", "</s>", "<unk>"] if kind == "decoder" else ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    )
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    unk = specials[3]
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "decoder":
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token=unk
        )
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token=unk,
        mask_token="[MASK]",
    )


def tiny_causal_lm(arch: str = "llama", seed: int = 0, layers: int = 3, heads: int = 4, kv_heads: int = 2):
    """A random causal LM of the given architecture (llama, qwen2, gemma3_text)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen2Config

    tok = make_tokenizer("decoder")
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen2":
        config = Qwen2Config(**common)
    elif arch == "gemma3_text":
        # Sliding window smaller than the test sequences, so windowed layers really differ.
        config = Gemma3TextConfig(
            **common,
            head_dim=8,
            sliding_window=16,
            query_pre_attn_scalar=8,
            layer_types=["sliding_attention", "full_attention"] * (layers // 2) + ["sliding_attention"] * (layers % 2),
        )
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tok


def _tiny_bert_config(tok, dropout: float, max_positions: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def save_tiny_encoder(path: str | Path, seed: int = 0, dropout: float = 0.1) -> Path:
    """A random BERT retriever saved as a plain HF folder."""
    from transformers import BertModel

    tok = make_tokenizer("encoder")
    torch.manual_seed(seed)
    path = Path(path)
    BertModel(_tiny_bert_config(tok, dropout, max_positions=128)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_tiny_decoder(path: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    model, tok = tiny_causal_lm(arch, seed=seed)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_tiny_masked_lm(path: str | Path, seed: int = 0) -> Path:
    """A random BERT masked LM (with [MASK]) saved as a plain HF folder: DiffRetriever's test model."""
    from transformers import BertForMaskedLM

    tok = make_tokenizer("encoder")
    torch.manual_seed(seed)
    path = Path(path)
    BertForMaskedLM(_tiny_bert_config(tok, dropout=0.1, max_positions=256)).save_pretrained(path)
    tok.save_pretrained(path)
    return path
