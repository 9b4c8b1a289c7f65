"""The retriever E_θ: any Hugging Face encoder or decoder as a sentence-transformers pipeline.

Built on sentence-transformers modules (Transformer → Pooling → Normalize) so that the exported
folder *is* the model dreamir trained: `SentenceTransformer(path)` reproduces dreamir's
embeddings, query/passage prefixes included (saved as the "query"/"document" prompts).

`architecture="static"` builds a bag-of-tokens retriever instead (StaticEmbedding → Normalize): the
mean of one trainable vector per token, initialised from the named model's input embeddings and
tokenizer. It knows nothing about retrieval when it starts and trains in milliseconds per step on a
CPU: the start where a training signal has room to show what it teaches.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from dreamir.files import atomic_folder
from dreamir.settings import LoraConfig

EXPORT_MARKER = "dreamir_export.json"  # written into every exported folder: only such folders are replaced

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "lasttoken"]
TextKind = Literal["query", "document"]
Architecture = Literal["transformer", "static"]


class Retriever(nn.Module):
    """Embeds queries and documents into L2-normalised vectors; differentiable in `embed`."""

    def __init__(self, st_model: nn.Module, query_prefix: str, doc_prefix: str, source: str = "") -> None:
        super().__init__()
        self.st = st_model
        self.query_prefix = query_prefix
        self.doc_prefix = doc_prefix
        self.source = source
        self.st.prompts = {"query": query_prefix, "document": doc_prefix}

    # ----------------------------------------------------------------- construction
    @classmethod
    def load(
        cls,
        spec: str,
        pooling: Pooling | None = None,
        query_prefix: str | None = None,
        doc_prefix: str | None = None,
        max_length: int | None = None,
        lora: LoraConfig | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        architecture: Architecture = "transformer",
    ) -> Retriever:
        """Load a sentence-transformers folder or build a pipeline around any HF model.

        An existing sentence-transformers model keeps its own pooling and prompts unless
        overridden; a bare HF backbone gets `pooling` (default: lasttoken for decoders, mean
        otherwise) and the docs/method.md prefixes "query: " / "passage: ". `architecture="static"`
        builds a bag-of-tokens retriever from `spec`'s tokenizer and input embeddings (no prefixes,
        no truncation, no pooling choice, no LoRA: every token vector is trained).
        """
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling as PoolingModule

        from dreamir.assets import load_failure, plain_model_source

        source = plain_model_source(spec)  # a GGUF decoder is de-quantised once, as for the frozen LLM
        is_st_folder = (Path(source.name_or_path) / "modules.json").exists()
        described = source.describe()
        if architecture == "static" and pooling is not None:
            raise ValueError("a static retriever has no pooling choice (a text is the mean of its token vectors)")
        try:
            if architecture == "static":  # LoRA is refused by add_lora below, as for an exported static folder
                st = _static_pipeline(source.name_or_path, spec, device)
                saved_prompts = {}
                described = f"static embeddings of {described}"
            elif is_st_folder:
                st = SentenceTransformer(source.name_or_path, device=str(device))
                saved_prompts = dict(st.prompts or {})
            else:
                backbone = Transformer(source.name_or_path, model_kwargs={"dtype": dtype})
                _plain_text_only(backbone)
                is_decoder = _is_decoder(backbone.auto_model.config)
                mode = pooling or ("lasttoken" if is_decoder else "mean")
                dim = backbone.auto_model.config.hidden_size
                st = SentenceTransformer(modules=[backbone, PoolingModule(dim, mode), Normalize()], device=str(device))
                saved_prompts = {"query": "query: ", "document": "passage: "}
        except Exception as err:  # a damaged weights file raises the reading library's own error type
            raise load_failure("retriever", spec, source, err) from err
        if pooling is not None and is_st_folder:
            _set_pooling(st, pooling)
        if not any(isinstance(m, Normalize) for m in st):
            st.append(Normalize())
        if not _is_static(st):  # an exported static retriever has no truncation or pooling to set
            if max_length is not None:
                st.max_seq_length = max_length
            _prepare_tokenizer(st, _pooling_mode(st))
        retriever = cls(
            st,
            query_prefix if query_prefix is not None else saved_prompts.get("query", ""),
            doc_prefix if doc_prefix is not None else saved_prompts.get("document", ""),
            source=described,
        )
        if lora is not None:
            retriever.add_lora(lora)
        return retriever.to(device=device, dtype=dtype)

    def add_lora(self, settings: LoraConfig) -> None:
        if self.is_static:
            raise ValueError("a static retriever trains every token vector; LoRA does not apply")
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        config = PeftLoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=settings.target_modules,
        )
        # sentence-transformers keeps the HF model as `.model` (`auto_model` is a read-only alias).
        self.backbone_module.model = get_peft_model(self.backbone_module.model, config)

    @property
    def backbone_module(self) -> nn.Module:
        return self.st[0]

    @property
    def is_static(self) -> bool:
        return _is_static(self.st)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the backbone's layer activations in the backward pass (transformers' own checkpointing,
        non-reentrant: works under LoRA without making the inputs require grad; dropout replays the same RNG)."""
        if self.is_static:
            return  # no layer activations to recompute
        model = self.backbone_module.model
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.23 (the older name is deprecated)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    @property
    def uses_lora(self) -> bool:
        return hasattr(getattr(self.backbone_module, "model", None), "peft_config")

    @property
    def dim(self) -> int:
        return int(self.st.get_embedding_dimension())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes (all weights, or the LoRA adapters)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        unknown = [n for n in state if n not in params]
        if missing or unknown:
            raise ValueError(f"retriever state does not match the model: missing {missing[:3]}, unknown {unknown[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    # ----------------------------------------------------------------- embedding
    def _with_prefix(self, texts: Sequence[str], kind: TextKind) -> list[str]:
        prefix = self.query_prefix if kind == "query" else self.doc_prefix
        return [prefix + t for t in texts]

    def embed(self, texts: Sequence[str], kind: TextKind) -> torch.Tensor:
        """Differentiable embeddings (B, dim), L2-normalised."""
        features = self.st.preprocess(self._with_prefix(texts, kind))
        features = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        return self.st(features)["sentence_embedding"]

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        kind: TextKind,
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Inference embeddings as float32 numpy, longest texts first to bound padding."""
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        order = np.argsort([-n for n in self._token_counts(texts, kind)], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = range(0, len(texts), batch_size)
        for start in tqdm(
            batches,
            desc="encode queries" if kind == "query" else "encode documents",
            disable=not show_progress,
            unit="batch",
        ):
            idx = order[start : start + batch_size]
            out[idx] = self.embed([texts[i] for i in idx], kind).float().cpu().numpy()
        self.train(was_training)
        return out

    def _token_counts(self, texts: Sequence[str], kind: TextKind) -> list[int]:
        """Exact truncated token counts, so batches group texts of equal padded length."""
        tokenizer = self.backbone_module.tokenizer
        if self.is_static:  # a `tokenizers.Tokenizer`, no truncation
            encoded = tokenizer.encode_batch(self._with_prefix(texts, kind), add_special_tokens=False)
            return [len(e.ids) for e in encoded]
        ids = tokenizer(self._with_prefix(texts, kind), truncation=True, max_length=self.st.max_seq_length)
        return [len(x) for x in ids["input_ids"]]

    # ----------------------------------------------------------------- export
    def export(self, path: str | os.PathLike, extra_files: dict[str, Path] | None = None) -> Path:
        """Write a sentence-transformers folder (LoRA merged) that reproduces `encode`.

        The folder is built aside and swapped in whole; an existing `path` is replaced only if it is
        an earlier export (it holds EXPORT_MARKER) or empty, anything else is refused. `extra_files`
        (name → source file) are copied into it.
        """
        path = Path(path)
        st = copy.deepcopy(self.st)
        backbone = st[0]
        if hasattr(getattr(backbone, "model", None), "merge_and_unload"):
            backbone.model = backbone.model.merge_and_unload()
        st.prompts = {"query": self.query_prefix, "document": self.doc_prefix}
        with atomic_folder(path, EXPORT_MARKER) as tmp:
            st.save(str(tmp))
            for name, source in (extra_files or {}).items():
                shutil.copyfile(source, tmp / name)
            (tmp / EXPORT_MARKER).write_text(json.dumps({"format": 1, "source": self.source}) + "\n")
        return path


def _is_static(st) -> bool:
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    return isinstance(st[0], StaticEmbedding)


def _static_pipeline(path: str, spec: str, device: str | torch.device):
    """StaticEmbedding → Normalize from a model's fast tokenizer and input-embedding matrix."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)  # an OSError here is reported by Retriever.load
    weights = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().float().clone()
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"retriever '{spec}': static embeddings need a fast (Rust) tokenizer")
    if weights.shape[0] < len(tokenizer):  # the embedding matrix must cover every id the tokenizer emits
        raise ValueError(f"retriever '{spec}': {len(weights)} input embeddings for a vocabulary of {len(tokenizer)}")
    modules = [StaticEmbedding(tokenizer, embedding_weights=weights), Normalize()]
    return SentenceTransformer(modules=modules, device=str(device))


def _is_decoder(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return (
        bool(getattr(config, "is_decoder", False))
        or any("CausalLM" in a for a in archs)
        or getattr(config, "model_type", "") in {"llama", "qwen2", "qwen3", "gemma3_text", "mistral", "gpt2"}
    )


def _pooling_module(st):
    from sentence_transformers.sentence_transformer.modules import Pooling as PoolingModule

    for module in st:
        if isinstance(module, PoolingModule):
            return module
    raise ValueError("the sentence-transformers model has no Pooling module")


def _pooling_mode(st) -> str:
    module = _pooling_module(st)
    modes = getattr(module, "pooling_mode", None) or module.get_config_dict().get("pooling_mode")
    return modes if isinstance(modes, str) else modes[0]


def _set_pooling(st, mode: str) -> None:
    from sentence_transformers.sentence_transformer.modules import Pooling as PoolingModule

    for i, module in enumerate(st):
        if isinstance(module, PoolingModule):
            st[i] = PoolingModule(module.get_config_dict()["embedding_dimension"], mode)
            return


def _plain_text_only(backbone) -> None:
    """Embed texts as they are: sentence-transformers would wrap every text of a backbone whose
    tokenizer has a chat template (an instruct LLM) in a chat conversation, system prompt included."""
    modalities = getattr(backbone, "modality_config", None)
    if isinstance(modalities, dict) and "message" in modalities:
        modalities.pop("message")
        backbone.tokenizer.chat_template = None


def _prepare_tokenizer(st, pooling_mode: str) -> None:
    """Decoders need a pad token, and last-token pooling needs an EOS at the end of every text.

    The EOS is added by the tokenizer's own post-processor so the saved tokenizer does the same
    for anyone loading the exported folder.
    """
    tokenizer = st[0].tokenizer
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if pooling_mode != "lasttoken" or tokenizer.eos_token_id is None:
        return
    probe = tokenizer("a")["input_ids"]
    if probe and probe[-1] == tokenizer.eos_token_id:
        return
    backend = getattr(tokenizer, "_tokenizer", None) or getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("last-token pooling needs a fast tokenizer to append EOS")
    from tokenizers.processors import TemplateProcessing

    eos = tokenizer.eos_token
    backend.post_processor = TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1", special_tokens=[(eos, tokenizer.eos_token_id)]
    )
    if tokenizer("a")["input_ids"][-1] != tokenizer.eos_token_id:
        raise ValueError("could not make the retriever's tokenizer append EOS for last-token pooling")
    tokenizer.padding_side = "right"
