"""The frozen causal LLM whose next-token loss supervises the retriever.

Loads any causal LM (hub name, local folder, or GGUF file through transformers' gguf support),
freezes it, and switches its attention to dreamir's registered attention function so that
scores can be injected into selected heads (see `injection.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dreamir.assets import dequantised_copy, load_failure, parse_dtype, portable_name, resolve_model
from dreamir.data.training import TokenizedExample
from dreamir.models.injection import ATTENTION_NAME, register_attention
from dreamir.models.layout import Layout, PackedBatch, pack_batch

log = logging.getLogger(__name__)

# Architectures whose attention modules are known to route through AttentionInterface with
# the (module, query, key, value, mask, scaling, ...) contract, and that tests cover.
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "gemma3_text")


class UnsupportedModelError(ValueError):
    pass


def check_supported(model: nn.Module) -> None:
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"frozen LLM architecture '{model_type}' is not supported for score injection; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}. Each architecture needs its attention "
            "path checked against the injection identities (tests/test_injection.py) before use."
        )


@dataclass
class FrozenLM:
    """A frozen causal LM plus its tokenizer, ready for injected forward passes."""

    model: nn.Module  # *ForCausalLM
    tokenizer: object
    source: str  # the name caches are keyed by (assets.portable_name): the same on every machine
    # Recompute each layer's activations in the backward pass instead of keeping them (lm_passes.target_nll):
    # memory for time, same loss and gradients.
    gradient_checkpointing: bool = False

    @property
    def config(self):
        return self.model.config

    @property
    def decoder(self) -> nn.Module:
        """The transformer body (no LM head), so logits are only computed where needed."""
        return self.model.get_decoder()

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def sink_token_id(self) -> int | None:
        """Token every document and the query attend to (the shared BOS of the layout)."""
        tok = self.tokenizer
        if getattr(tok, "bos_token_id", None) is not None:
            return int(tok.bos_token_id)
        if getattr(tok, "eos_token_id", None) is not None:
            return int(tok.eos_token_id)
        return None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits for selected hidden rows (applies Gemma-style final soft-capping)."""
        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def pack(self, tokenized: list[TokenizedExample], layout: Layout = "separate") -> PackedBatch:
        """The layout of these examples on this model's device (padding with the pad token, or 0)."""
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        return pack_batch(tokenized, self.sink_token_id, pad, layout, self.dtype).to(self.device)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer: object, source: str = "<in-memory>") -> FrozenLM:
        """Wrap an already built model (tests build tiny ones from configs)."""
        check_supported(model)
        register_attention()
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        model.set_attn_implementation(ATTENTION_NAME)
        return cls(model=model, tokenizer=tokenizer, source=source)

    @classmethod
    def load(
        cls,
        spec: str,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
        use_cache: bool = True,
    ) -> FrozenLM:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = resolve_model(spec)
        torch_dtype = parse_dtype(dtype)
        if source.gguf_file and use_cache:
            source = dequantised_copy(source)
        kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=torch_dtype, **kwargs)
        except Exception as err:  # a damaged weights file raises the reading library's own error type
            raise load_failure("frozen LLM", spec, source, err) from err
        model.to(device=device, dtype=torch_dtype)
        return cls.from_model(model, tokenizer, source=portable_name(source))


def llm_shape(spec: str) -> tuple[int, int]:
    """(layers, attention heads) of a causal LM from its config alone, no weights loaded: what a head set is
    checked against before any model work. A GGUF reads its de-quantised copy's config.json when one is cached,
    else its metadata (a few seconds)."""
    from transformers import AutoConfig

    from dreamir.assets import plain_copy_dir

    source = resolve_model(spec)
    try:
        if source.gguf_file:
            plain = plain_copy_dir(Path(source.name_or_path) / source.gguf_file)
            if (plain / "config.json").is_file():
                config = AutoConfig.from_pretrained(plain)
            else:
                config = AutoConfig.from_pretrained(source.name_or_path, gguf_file=source.gguf_file)
        else:
            config = AutoConfig.from_pretrained(source.name_or_path)
    except (OSError, ValueError) as err:
        where = f"frozen LLM '{spec}' ({source.describe()})"
        raise FileNotFoundError(f"could not read the config of {where}: {err}") from err
    config = getattr(config, "text_config", config)
    return int(config.num_hidden_layers), int(config.num_attention_heads)
