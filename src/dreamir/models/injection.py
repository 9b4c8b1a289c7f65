"""Score injection into selected attention heads, through transformers' AttentionInterface.

The frozen LLM's attention modules call whatever function is registered under
`config._attn_implementation`. dreamir registers one (`ATTENTION_NAME`) that behaves exactly
like SDPA unless the forward call carries a `dreamir` keyword (transformers passes unknown
keywords down to the attention function): one typed bundle, `AttentionArgs`, with the absolute
positions (sliding windows are re-masked from them) and a list of small modifiers, each applied
to the attention output in turn:
- `HeadInjection` (DREAM, head scoring): the heads in H get an additive per-(row, document) offset
  on their pre-softmax logits for the rows of the [q][y] segment (docs/method.md);
- `AttentionRecorder` (head scoring by attention): records each head's document attention shares;
- `InBatchAttention` (Revela): adds the in-batch attention term in every layer and head.

Injection modes:

- "bias":     z'_{t,j} = z_{t,j} + log(N_b · w_i)              for key j in document i
- "reweight": z'_{t,j} = z_{t,j} − LSE_{d_i}(z_t) + LSE_D(z_t) + log w_i

Heads not in H and rows outside the injected segment go through SDPA unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

ATTENTION_NAME = "dreamir"
InjectionMode = Literal["bias", "reweight"]
SELF_SHARE = "self_share"  # diagnostic weights for "reweight": each row's own document share (a no-op)


class AttentionModifier(Protocol):
    def apply(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        scaling: float,
        softcap: float | None,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """The attention output (B, h, rows, d) after this modifier; keys/values already repeated per head."""
        ...


@dataclass
class AttentionArgs:
    """Everything dreamir's attention function receives in one forward pass (the `dreamir` keyword)."""

    positions: torch.Tensor  # (B, L) absolute position of every key column of the pass (sliding windows)
    modifiers: Sequence[AttentionModifier] = ()


@dataclass
class HeadInjection:
    """What to inject in one forward pass.

    heads:       the head set H as (layer, head) pairs; the order indexes `log_weights`' head axis.
    log_weights: log w, normalised over each example's documents. Shape (B, N) — shared by all
                 heads in H — or (B, |H|, N) — one distribution per head (head selection uses
                 this) — or (B, |H|, L, N) — one per head and row. May also be SELF_SHARE.
    doc_index:   (B, L) document index of each key position, -1 for non-document tokens.
    inject_rows: (B, L) bool, the rows whose attention is modified (the [q][y] segment).
    num_docs:    (B,) number of real documents per example (N_b in the bias formula).
    """

    heads: list[tuple[int, int]]
    log_weights: torch.Tensor | str
    doc_index: torch.Tensor
    inject_rows: torch.Tensor
    num_docs: torch.Tensor
    mode: InjectionMode = "bias"
    _by_layer: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("bias", "reweight"):
            raise ValueError(f"unknown injection mode '{self.mode}'; use 'bias' or 'reweight'")
        if isinstance(self.log_weights, str) and (self.log_weights != SELF_SHARE or self.mode != "reweight"):
            raise ValueError("log_weights may only be the string 'self_share', and only in 'reweight' mode")
        grouped: dict[int, tuple[list[int], list[int]]] = {}
        for slot, (layer, head) in enumerate(self.heads):
            heads, slots = grouped.setdefault(int(layer), ([], []))
            heads.append(int(head))
            slots.append(slot)
        device = self.doc_index.device
        self._by_layer = {
            layer: (torch.tensor(h, device=device), torch.tensor(s, device=device)) for layer, (h, s) in grouped.items()
        }

    @property
    def max_docs(self) -> int:
        return _max_docs(self.num_docs)

    def apply(self, layer, query, key, value, mask, scaling, softcap, out):
        selected = self.layer_heads(layer)
        if selected is None:
            return out
        heads, slots = selected
        scores = _masked_scores(query[:, heads], key[:, heads], mask, scaling, softcap)
        scores = scores + self.logit_offsets(scores, slots)
        probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        return out.index_copy(1, heads, probs @ value[:, heads])

    def layer_heads(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(head indices, slots in `heads`) for a layer, or None if no head of it is in H."""
        return self._by_layer.get(layer)

    def _weights_for(self, slots: torch.Tensor) -> torch.Tensor:
        """log w as (B, h_sel, R, N) with R = 1 or L."""
        lw = self.log_weights
        assert isinstance(lw, torch.Tensor)
        if lw.dim() == 2:
            return lw[:, None, None, :]
        if lw.dim() == 3:
            return lw[:, slots, None, :]
        if lw.dim() == 4:
            return lw[:, slots]
        raise ValueError(f"log_weights must have 2, 3 or 4 dims, got shape {tuple(lw.shape)}")

    def logit_offsets(self, scores: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Additive offsets (B, h_sel, rows, keys) for the masked pre-softmax scores of the selected heads.

        The rows are the last `rows` of the first `keys` positions (a pass may cover the whole
        sequence, or only the [q][y] segment on top of cached document keys/values).
        """
        rows, keys = scores.shape[-2:]
        n_docs = max(self.max_docs, 1)
        membership = F.one_hot(self.doc_index[:, :keys].clamp_min(-1) + 1, n_docs + 1)[..., 1:]  # (B, keys, N)
        membership = membership.to(scores.dtype)
        if self.mode == "bias":
            per_doc = self._weights_for(slots) + torch.log(self.num_docs.to(scores.dtype))[:, None, None, None]
        else:
            per_doc = self._reweight_offsets(scores, membership, slots)
        # Padding documents own no key positions; zero them so -inf weights cannot make 0·inf = NaN.
        doc_exists = torch.arange(n_docs, device=scores.device)[None, :] < self.num_docs[:, None]
        per_doc = torch.where(doc_exists[:, None, None, :], per_doc, torch.zeros((), dtype=per_doc.dtype))
        # Spread per-document offsets onto that document's key positions; non-document keys get 0.
        per_key = per_doc @ membership.transpose(1, 2)[:, None]  # (B, h, R, L)
        return per_key * self.inject_rows[:, keys - rows : keys, None].to(scores.dtype)[:, None]

    def _reweight_offsets(self, scores: torch.Tensor, membership: torch.Tensor, slots: torch.Tensor):
        # Per-row log-sum-exp inside each document, via one matmul of exp(z − rowmax) with the
        # document membership matrix (memory O(L·N), not O(L·L·N)).
        z = scores.float()
        row_max = z.amax(dim=-1, keepdim=True).detach().clamp_min(-1e30)
        mass = torch.exp(z - row_max) @ membership.float()[:, None]  # (B, h, L, N)
        tiny = torch.finfo(torch.float32).tiny
        lse_doc = torch.log(mass.clamp_min(tiny)) + row_max
        lse_all_docs = torch.log(mass.sum(-1, keepdim=True).clamp_min(tiny)) + row_max
        if isinstance(self.log_weights, str):  # SELF_SHARE: w_i = m_i / M_t
            log_w = (lse_doc - lse_all_docs).detach()
        else:
            log_w = self._weights_for(slots).float()
        return (log_w - lse_doc + lse_all_docs).to(scores.dtype)


def _max_docs(num_docs: torch.Tensor) -> int:
    return int(num_docs.max().item()) if num_docs.numel() else 0


@dataclass
class AttentionRecorder:
    """Records, per layer and head, the mean (over `record_rows`) share of each document in those rows'
    attention mass on documents (QRHead-style head scoring); leaves the output unchanged.

    doc_index:   (B, L) document of each key position, -1 otherwise.
    num_docs:    (B,) number of real documents per example.
    record_rows: (B, L) bool, the rows whose attention is recorded.
    """

    doc_index: torch.Tensor
    num_docs: torch.Tensor
    record_rows: torch.Tensor
    recorded_doc_mass: dict[int, torch.Tensor] = field(default_factory=dict)

    def apply(self, layer, query, key, value, mask, scaling, softcap, out):
        probs = torch.softmax(_masked_scores(query, key, mask, scaling, softcap).float(), -1)
        n_rows, keys = probs.shape[-2:]
        n_docs = max(_max_docs(self.num_docs), 1)
        membership = F.one_hot(self.doc_index[:, :keys].clamp_min(-1) + 1, n_docs + 1)[..., 1:].to(probs.dtype)
        doc_mass = probs @ membership[:, None]  # (B, H, rows, N)
        share = doc_mass / doc_mass.sum(-1, keepdim=True).clamp_min(1e-12)
        rows = self.record_rows[:, None, keys - n_rows : keys, None].to(probs.dtype)
        self.recorded_doc_mass[layer] = ((share * rows).sum(2) / rows.sum(2).clamp_min(1)).detach()
        return out


@dataclass
class InBatchAttention:
    """Revela's in-batch attention (docs/method.md), added to every layer and head of a pass.

    Each row t of the [q][y] segment also attends, without a causal mask, to every candidate
    document j separately: a_{t,j} = softmax over d_j's keys, o_{t,j} = Σ_k a v_k. The output is
    divided by the attention-weighted value norm n_{t,j} = Σ_k a ‖v_k‖, mixed with the retriever's
    weights W_j and added to the row's ordinary attention output:  out_t += Σ_j W_j · o_{t,j} / n_{t,j}.
    With W = 0 the pass is the plain LM (tests/test_objectives.py).

    weights:     (B, N) W, rows summing to 1 over each example's documents (0 for padding).
    doc_index:   (B, L) document of each key position, -1 otherwise.
    inject_rows: (B, L) bool, the rows that receive the in-batch term (the [q][y] segment).
    """

    weights: torch.Tensor
    doc_index: torch.Tensor
    inject_rows: torch.Tensor
    value_norm: bool = True  # False: o_{t,j} undivided (plain per-document attention outputs)

    def apply(self, layer, query, key, value, mask, scaling, softcap, out):
        return out + self.output_offsets(query, key, value, scaling, softcap)

    def output_offsets(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, softcap: float | None
    ) -> torch.Tensor:
        """(B, h, rows, d): the in-batch term for the rows (the last `rows` of the first `keys` positions)."""
        rows, keys = query.shape[-2], key.shape[-2]
        n_docs = self.weights.shape[-1]
        membership = F.one_hot(self.doc_index[:, :keys].clamp_min(-1) + 1, n_docs + 1)[..., 1:].float()  # (B, K, N)
        in_doc = membership.sum(-1) > 0
        z = _masked_scores(query, key, None, scaling, softcap).float()
        z = z.masked_fill(~in_doc[:, None, None, :], float("-inf"))
        # One shift per row (not per document) keeps this to matmuls; a document whose best logit
        # sits ~80 nats below the row's best contributes 0 instead of its (negligible) share.
        shift = z.amax(-1, keepdim=True).detach().clamp_min(-1e30)
        e = torch.exp(z - shift)
        key_scale = (
            value.float().norm(dim=-1) if self.value_norm else torch.ones_like(value[..., 0], dtype=torch.float32)
        )
        weighted_norm = (e * key_scale[:, :, None, :]) @ membership[:, None]  # (B, h, R, N): n_{t,j} (or Σ e)
        per_doc = torch.where(
            weighted_norm > 0,
            self.weights.float()[:, None, None, :] / weighted_norm.clamp_min(torch.finfo(torch.float32).tiny),
            torch.zeros((), device=z.device),
        )
        coefficients = e * (per_doc @ membership.transpose(1, 2)[:, None])  # (B, h, R, K)
        offsets = coefficients.to(value.dtype) @ value
        return offsets * self.inject_rows[:, None, keys - rows : keys, None].to(value.dtype)


def _repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return states
    return states.repeat_interleave(groups, dim=1)


def _masked_scores(query, key, mask, scaling, softcap):
    scores = (query @ key.transpose(-1, -2)) * scaling
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    return scores + mask if mask is not None else scores


def dreamir_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    softcap: float | None = None,
    dreamir: AttentionArgs | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention with optional modifiers (`dreamir`). Shapes follow transformers: q (B, h, L, d)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dreamir is None:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            sliding_window=sliding_window,
            softcap=softcap,
            **kwargs,
        )
    if attention_mask is None:
        raise ValueError("dreamir's layout always passes an explicit 4D attention mask")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    groups = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
    mask = attention_mask[..., : key.shape[-2]]
    if sliding_window is not None:
        # Sliding-window layers (Gemma3, some Qwen2) see keys less than `window` positions back.
        # The query rows are the last rows of the first `keys` positions (see HeadInjection).
        keys, rows = key.shape[-2], query.shape[-2]
        key_pos = dreamir.positions[:, :keys]
        distance = key_pos[:, None, keys - rows :, None] - key_pos[:, None, None, :]
        mask = mask.masked_fill(distance >= sliding_window, torch.finfo(mask.dtype).min)

    if softcap:
        probs = torch.softmax(_masked_scores(query, key, mask, scaling, softcap).float(), -1).to(query.dtype)
        out = probs @ value
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling)

    layer = int(module.layer_idx)
    for modifier in dreamir.modifiers:
        out = modifier.apply(layer, query, key, value, mask, scaling, softcap, out)
    return out.transpose(1, 2).contiguous(), None


_registered = False


def register_attention() -> None:
    """Register dreamir's attention (and the standard SDPA mask builder for it) with transformers."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, dreamir_attention)
    # Without a registered mask function transformers passes attention_mask=None to custom
    # attention (docs/method.md), which would make plain calls non-causal. SDPA's mask keeps them causal.
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    _registered = True
