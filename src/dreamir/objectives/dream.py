"""The DREAM objective (METHOD §1): the frozen LLM's target loss, trained through injected heads.

    s_i = e_q · e_i,  w = softmax(s / τ),  L = −(1/T) Σ_t log p_Φ(y_t | y_<t, q, D; w)

The retriever's weights w enter only the heads in H (injection.py), in the [q][y] rows of the
layout (layout.py); Φ is frozen, so gradients reach θ only through w.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamir.data.training import Example
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.injection import HeadInjection, InBatchAttention, InjectionMode
from dreamir.models.kv_store import DocumentKVStore
from dreamir.models.layout import Layout, PackedBatch, TokenizedExample
from dreamir.models.retriever import Retriever
from dreamir.objectives.base import Objective, ObjectiveOutput, candidate_scores, log_doc_weights


@dataclass
class DreamSettings:
    heads: list[tuple[int, int]]
    temperature: float = 0.05
    mode: InjectionMode = "bias"
    layout: Layout = "separate"
    reuse_documents: bool = True  # False: the full-graph reference step (METHOD §1.3)


def target_nll(
    lm: FrozenLM,
    packed: PackedBatch,
    injection: HeadInjection | None,
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
    Both give the same loss and gradients (tests/test_reuse_step.py).
    """
    split = packed.doc_region if reuse_documents else 0
    inputs = packed.model_inputs()
    if split:
        cache = document_cache(lm, packed, document_keys, store)
        inputs = {
            "input_ids": packed.input_ids[:, split:],
            "position_ids": packed.position_ids[:, split:],
            "attention_mask": packed.attention_mask[:, :, split:, :],
            "dreamir_positions": packed.position_ids,
            "past_key_values": cache,
            "use_cache": True,
        }
    hidden = lm.decoder(**inputs, dreamir_injection=injection, dreamir_inbatch=inbatch).last_hidden_state
    rows = (packed.predict_rows - split).clamp_min(0)
    picked = torch.gather(hidden, 1, rows[..., None].expand(-1, -1, hidden.shape[-1]))
    logits = lm.logits(picked).float()
    nll = F.cross_entropy(logits.transpose(1, 2), packed.target_ids, reduction="none")
    mask = packed.target_mask.to(nll.dtype)
    return (nll * mask).sum(1) / mask.sum(1)


def _run_document_region(lm: FrozenLM, packed: PackedBatch, rows: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of the sink + document region of the given batch rows, no graph."""
    from transformers import DynamicCache

    split = packed.doc_region
    # A cache without the model config keeps every key (no sliding-window eviction); windows are
    # applied by dreamir's attention from the positions, as in the reference step.
    cache = DynamicCache()
    index = torch.tensor(rows, device=packed.input_ids.device)
    lm.decoder(
        input_ids=packed.input_ids[index, :split],
        position_ids=packed.position_ids[index, :split],
        attention_mask=packed.attention_mask[index][:, :, :split, :split],
        dreamir_positions=packed.position_ids[index],
        past_key_values=cache,
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
    from transformers import DynamicCache

    batch = packed.input_ids.shape[0]
    if store is None or document_keys is None:
        return DynamicCache(_run_document_region(lm, packed, list(range(batch))))
    assert packed.doc_lengths is not None
    stored = [store.get(key) for key in document_keys]
    missing = [b for b, kv in enumerate(stored) if kv is None]
    if missing:
        fresh = _run_document_region(lm, packed, missing)
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
    return DynamicCache([(full[i, 0], full[i, 1]) for i in range(layers)])


class DreamObjective(Objective):
    name = "dream"

    def __init__(
        self,
        lm: FrozenLM,
        retriever: Retriever,
        settings: DreamSettings,
        document_store: DocumentKVStore | None = None,
    ) -> None:
        if document_store is not None and not settings.reuse_documents:
            raise ValueError("the document key/value cache needs the reuse step (not the reference step)")
        if not settings.heads:
            raise ValueError("DREAM needs a non-empty head set H (run `dreamir heads` first)")
        bad = [(lay, h) for lay, h in settings.heads if not (0 <= lay < lm.num_layers and 0 <= h < lm.num_heads)]
        if bad:
            raise ValueError(
                f"heads {bad[:5]} are outside the frozen LLM ({lm.num_layers} layers × {lm.num_heads} heads)"
            )
        self.lm, self.retriever, self.settings = lm, retriever, settings
        self.document_store = document_store
        self._store_tag = f"{lm.source}|{lm.dtype}|{settings.layout}|{lm.sink_token_id}"

    def __call__(self, examples: list[Example], tokenized: list[TokenizedExample]) -> ObjectiveOutput:
        scores, mask = candidate_scores(self.retriever, examples)
        log_w = log_doc_weights(scores, mask, self.settings.temperature)
        packed = self.lm.pack(tokenized, self.settings.layout)
        injection = HeadInjection(
            heads=self.settings.heads,
            log_weights=log_w.to(self.lm.dtype).to(self.lm.device),
            doc_index=packed.doc_index,
            inject_rows=packed.inject_rows,
            num_docs=packed.num_docs,
            mode=self.settings.mode,
        )
        keys = None
        if self.document_store is not None:
            keys = [DocumentKVStore.key(t.docs, self._store_tag) for t in tokenized]
        nll = target_nll(self.lm, packed, injection, self.settings.reuse_documents, keys, self.document_store)
        loss = nll.mean()
        with torch.no_grad():
            w = log_w.exp()
            entropy = -(w * log_w.masked_fill(~mask, 0)).sum(-1).mean()
        return ObjectiveOutput(
            loss=loss,
            metrics={
                "loss": loss.item(),
                "w_max": float(w.max(-1).values.mean()),
                "w_entropy": float(entropy),
            },
        )
