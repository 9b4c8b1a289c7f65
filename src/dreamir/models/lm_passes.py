"""The frozen LLM's forward passes, shared by every objective, head scoring and the benches.

- `target_nll`: per-example mean NLL of the target tokens through dreamir's layout, optionally with
  heads injected (DREAM, head scoring) or Revela's in-batch term, as one full-graph pass (the
  reference step) or as a graph over the [q][y] segment on top of document keys/values computed
  without one (the reuse step; both give the same loss and gradients, tests/test_reuse_step.py);
- `document_cache`: those document keys/values, optionally kept across epochs in a `DocumentKVStore`;
- `candidate_nll`: REPLUG's ℓ_i, the target NLL with one candidate alone in a plain causal context;
- `weight_gradient`: the judge's gradient over an example's candidates at uniform weights (the signal
  that online DREAM follows, and that DREAM-distill and research/scripts/dream_signal.py read).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from dreamir.data.training import TokenizedExample
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import AttentionArgs, AttentionModifier, HeadInjection, InBatchAttention, InjectionMode
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.layout import PackedBatch


def target_nll(
    lm: FrozenLM,
    packed: PackedBatch,
    injection: AttentionModifier | None,
    reuse_documents: bool = False,
    document_keys: list[str] | None = None,
    store: DocumentKVStore | None = None,
    inbatch: InBatchAttention | None = None,
) -> torch.Tensor:
    """Per-example mean NLL of the target tokens, (B,). Logits only at the target rows.

    reuse_documents=False is the reference step: one pass over the whole layout, with a graph over
    every row. reuse_documents=True runs the document region once without a graph (its keys and
    values do not depend on the retriever: documents never attend to [q][y], and injection only
    touches [q][y] rows) and the graph only over the [q][y] segment on top of those keys/values,
    which `store` may keep across epochs (keyed by `document_keys`, one per example). `inbatch`
    adds Revela's in-batch attention term instead of (or besides) the head injection.
    """
    split = packed.doc_region if reuse_documents else 0
    modifiers = [m for m in (injection, inbatch) if m is not None]
    inputs = {**packed.model_inputs(*modifiers), "use_cache": False}
    if split:
        cache = document_cache(lm, packed, document_keys, store)
        inputs = {
            "input_ids": packed.input_ids[:, split:],
            "position_ids": packed.position_ids[:, split:],
            "attention_mask": packed.attention_mask[:, :, split:, :],
            "dreamir": AttentionArgs(packed.position_ids, modifiers),
            "cache": cache,  # read, never extended
            "use_cache": False,
        }
    recompute = lm.gradient_checkpointing and torch.is_grad_enabled()
    with checkpointed_layers(lm) if recompute else nullcontext():
        hidden = lm.decoder(**inputs).last_hidden_state
    rows = (packed.predict_rows - split).clamp_min(0)
    picked = torch.gather(hidden, 1, rows[..., None].expand(-1, -1, hidden.shape[-1]))
    logits = lm.logits(picked).float()
    nll = F.cross_entropy(logits.transpose(1, 2), packed.target_ids, reduction="none")
    mask = packed.target_mask.to(nll.dtype)
    return (nll * mask).sum(1) / mask.sum(1)


class PrefixCache(DynamicCache):
    """Document keys/values that the [q][y] segment reads and never extends: each layer's `update` returns
    the prefix joined with the segment's own keys/values without storing them. So a layer's output depends
    on its inputs only, which layer checkpointing needs (its backward replays the layer), and the cache does
    not keep a second copy of every layer's keys."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        layer = self.layers[layer_idx]
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)


@contextmanager
def checkpointed_layers(lm: FrozenLM) -> Iterator[None]:
    """Checkpoint every decoder layer of the frozen LLM for one pass, with transformers' own mechanism
    (`GradientCheckpointingLayer`): a layer keeps only its input and recomputes its activations in the
    backward pass. That mechanism acts only on a layer in training mode and drops a cache unless the layer
    only reads it; here the layer module itself is flagged as training (its attention and MLP submodules
    stay in eval mode, and dreamir's attention applies no dropout) and the cache is a read-only
    `PrefixCache`. Restored on exit."""
    layers = list(lm.decoder.layers)
    saved = [(layer.training, layer.gradient_checkpointing, dict(layer.__dict__)) for layer in layers]
    for layer in layers:
        layer.training = True
        layer.gradient_checkpointing = True
        layer._can_checkpoint_with_cache = True
        layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)
    try:
        yield
    finally:
        for layer, (training, enabled, attributes) in zip(layers, saved):
            layer.training, layer.gradient_checkpointing = training, enabled
            for name in ("_can_checkpoint_with_cache", "_gradient_checkpointing_func"):
                if name in attributes:
                    setattr(layer, name, attributes[name])
                else:
                    layer.__dict__.pop(name, None)


def document_region_kv(lm: FrozenLM, packed: PackedBatch, rows: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of the sink + document region of the given batch rows, no graph."""
    split = packed.doc_region
    # A cache without the model config keeps every key (no sliding-window eviction); windows are
    # applied by dreamir's attention from the positions, as in the reference step.
    cache = DynamicCache()
    index = torch.tensor(rows, device=packed.input_ids.device)
    lm.decoder(
        input_ids=packed.input_ids[index, :split],
        position_ids=packed.position_ids[index, :split],
        attention_mask=packed.attention_mask[index][:, :, :split, :split],
        dreamir=AttentionArgs(packed.position_ids[index]),
        cache=cache,
        use_cache=True,
    )
    return [(layer.keys, layer.values) for layer in cache.layers]


@torch.no_grad()
def document_cache(
    lm: FrozenLM, packed: PackedBatch, document_keys: list[str] | None = None, store: DocumentKVStore | None = None
):
    """Keys/values of the sink + document region for every layer, computed without a graph (or
    taken from `store`). Columns past an example's own documents are padding the [q][y] rows never
    attend to, so stored entries are trimmed to the example's length and zero-filled back."""
    batch = packed.input_ids.shape[0]
    if store is None or document_keys is None:
        return PrefixCache(document_region_kv(lm, packed, list(range(batch))))
    assert packed.doc_lengths is not None
    stored = [store.get(key) for key in document_keys]
    missing = [b for b, kv in enumerate(stored) if kv is None]
    if missing:
        fresh = document_region_kv(lm, packed, missing)
        for slot, b in enumerate(missing):
            length = int(packed.doc_lengths[b])
            kv = torch.stack([torch.stack((k[slot, :, :length], v[slot, :, :length])) for k, v in fresh])
            stored[b] = kv
            store.put(document_keys[b], kv)
    first = stored[0]
    layers, _, kv_heads, _, head_dim = first.shape
    full = torch.zeros(
        (layers, 2, batch, kv_heads, packed.doc_region, head_dim), dtype=first.dtype, device=packed.input_ids.device
    )
    for b, kv in enumerate(stored):
        full[:, :, b, :, : kv.shape[3]] = kv.to(full.device)
    return PrefixCache([(full[i, 0], full[i, 1]) for i in range(layers)])


@torch.no_grad()
def candidate_nll(
    lm: FrozenLM,
    tokenized: list[TokenizedExample],
    score: Literal["mean", "sum"] = "mean",
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """ℓ_i for every candidate of every example: [(N_b,)], each from its own [sink][d_i][q][y] pass.

    "mean": the mean NLL per target token; "sum": the total, −log p(y | d_i, q)."""
    todo = [TokenizedExample(ex.query, ex.target, [doc]) for ex in tokenized for doc in ex.docs]
    values: list[float] = []
    for start in range(0, len(todo), batch_size):
        packed = lm.pack(todo[start : start + batch_size], "separate")  # one document each: plain causal
        nll = target_nll(lm, packed, None)
        if score == "sum":
            nll = nll * packed.target_mask.sum(1)
        values.extend(nll.float().cpu().tolist())
    out, start = [], 0
    for ex in tokenized:
        out.append(torch.tensor(values[start : start + len(ex.docs)]))
        start += len(ex.docs)
    return out


def weight_gradient(
    lm: FrozenLM,
    packed: PackedBatch,
    heads: list[tuple[int, int]],
    mode: InjectionMode = "bias",
    document_keys: list[str] | None = None,
    store: DocumentKVStore | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The judge's signal at uniform weights: g = ∂L_b/∂log w_b (B, N_max; 0 for padding) and L_b (B,).

    The retriever's gradient is ∂L/∂s_i = (w_i/τ)(g_i − Σ_j w_j g_j), so at uniform w a candidate with
    a lower g is the one DREAM's step pushes up. Each example's gradient is its own (losses summed).
    """
    n_max = int(packed.num_docs.max())
    real = torch.arange(n_max, device=lm.device)[None] < packed.num_docs[:, None].to(lm.device)
    uniform = (-torch.log(packed.num_docs.to(lm.device).float()))[:, None].expand(-1, n_max)
    uniform = uniform.masked_fill(~real, float("-inf")).to(lm.dtype)
    offset = torch.zeros_like(uniform, requires_grad=True)
    injection = HeadInjection(heads, uniform + offset, packed.doc_index, packed.inject_rows, packed.num_docs, mode)
    with torch.enable_grad():
        nll = target_nll(lm, packed, injection, True, document_keys, store)
        (gradient,) = torch.autograd.grad(nll.sum(), offset)
    return gradient.float().masked_fill(~real, 0.0), nll.detach().float()
