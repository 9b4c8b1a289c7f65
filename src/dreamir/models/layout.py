"""Token layout of one frozen-LLM pass: [sink][d_1]…[d_N][q][y], positions and attention mask.

"separate" (default, docs/method.md): each document is its own context at positions 1..L_i after a
shared sink token (BOS), attending only to the sink and to itself; the [q][y] segment starts
after the longest document and attends to the sink, every document token, and itself causally.
Document order therefore carries no bias and a document's keys/values never depend on the
other documents or on q. "concat": the plain causal concatenation, documents in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dreamir.data.training import TokenizedExample
from dreamir.models.injection import AttentionArgs, AttentionModifier

Layout = Literal["separate", "concat"]

# Segment codes for the mask builder.
_PAD, _SINK, _QY = -3, -2, -1


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, 1, L, L) additive float mask
    doc_index: torch.Tensor  # (B, L) document of each token, -1 otherwise
    inject_rows: torch.Tensor  # (B, L) bool: the [q][y] segment
    query_rows: torch.Tensor  # (B, L) bool: the q tokens only
    num_docs: torch.Tensor  # (B,)
    predict_rows: torch.Tensor  # (B, T) row whose output predicts each target token
    target_ids: torch.Tensor  # (B, T)
    target_mask: torch.Tensor  # (B, T) bool
    doc_region: int = 0  # columns [0, doc_region) hold the sink and documents; the [q][y] segment follows
    doc_lengths: torch.Tensor | None = None  # (B,) each example's own sink + document length (≤ doc_region)

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(
            **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        )

    def model_inputs(self, *modifiers: AttentionModifier) -> dict:
        """Keyword arguments for the frozen LLM's decoder body over the whole layout, with `modifiers`."""
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": self.attention_mask,
            "dreamir": AttentionArgs(self.position_ids, modifiers),
        }


def pack_batch(
    examples: list[TokenizedExample],
    sink_token_id: int | None,
    pad_token_id: int,
    layout: Layout = "separate",
    dtype: torch.dtype = torch.float32,
) -> PackedBatch:
    """Pack examples into two aligned regions: [sink][d_1]…[d_N] (padded to the batch's longest) then
    [q][y] (padded likewise), so the document region can be run on its own (`doc_region`)."""
    if layout not in ("separate", "concat"):
        raise ValueError(f"unknown layout '{layout}'; use 'separate' or 'concat'")
    rows = [_flatten(ex, sink_token_id, layout) for ex in examples]
    batch = len(rows)
    doc_region = max(r[3] for r in rows)  # q_start = length of the document region
    qy_region = max(len(r[0]) - r[3] for r in rows)
    length = doc_region + qy_region
    max_t = max(len(ex.target) for ex in examples)

    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    positions = torch.zeros((batch, length), dtype=torch.long)
    segments = torch.full((batch, length), _PAD, dtype=torch.long)
    predict_rows = torch.zeros((batch, max_t), dtype=torch.long)
    target_ids = torch.full((batch, max_t), pad_token_id, dtype=torch.long)
    target_mask = torch.zeros((batch, max_t), dtype=torch.bool)
    query_rows = torch.zeros((batch, length), dtype=torch.bool)
    for b, (ids, pos, seg, q_start, y_start) in enumerate(rows):
        qy = len(ids) - q_start
        for region_start, src in ((0, slice(0, q_start)), (doc_region, slice(q_start, len(ids)))):
            n = src.stop - src.start
            input_ids[b, region_start : region_start + n] = torch.tensor(ids[src], dtype=torch.long)
            positions[b, region_start : region_start + n] = torch.tensor(pos[src], dtype=torch.long)
            segments[b, region_start : region_start + n] = torch.tensor(seg[src], dtype=torch.long)
        y_row = doc_region + (y_start - q_start)
        query_rows[b, doc_region:y_row] = True
        t = qy - (y_start - q_start)
        target_ids[b, :t] = input_ids[b, y_row : doc_region + qy]
        predict_rows[b, :t] = torch.arange(y_row - 1, doc_region + qy - 1)
        target_mask[b, :t] = True

    allowed = _allowed(segments, layout)
    mask = torch.zeros((batch, 1, length, length), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return PackedBatch(
        input_ids=input_ids,
        position_ids=positions,
        attention_mask=mask,
        doc_index=torch.where(segments >= 0, segments, torch.full_like(segments, -1)),
        inject_rows=segments == _QY,
        query_rows=query_rows,
        num_docs=torch.tensor([len(ex.docs) for ex in examples]),
        predict_rows=predict_rows,
        target_ids=target_ids,
        target_mask=target_mask,
        doc_region=doc_region,
        doc_lengths=torch.tensor([r[3] for r in rows], dtype=torch.long),
    )


def _flatten(ex: TokenizedExample, sink: int | None, layout: Layout):
    if not ex.query or not ex.target:
        raise ValueError("a packed example needs a non-empty query and target")
    ids: list[int] = []
    pos: list[int] = []
    seg: list[int] = []
    if sink is not None:
        ids.append(sink)
        pos.append(0)
        seg.append(_SINK)
    start = len(ids)
    for i, doc in enumerate(ex.docs):
        ids.extend(doc)
        seg.extend([i] * len(doc))
        if layout == "separate":
            pos.extend(range(start, start + len(doc)))
        else:
            pos.extend(range(len(pos), len(pos) + len(doc)))
    qy_start = start + max((len(d) for d in ex.docs), default=0) if layout == "separate" else len(pos)
    q_start = len(ids)
    ids.extend(ex.query + ex.target)
    seg.extend([_QY] * (len(ex.query) + len(ex.target)))
    pos.extend(range(qy_start, qy_start + len(ex.query) + len(ex.target)))
    return ids, pos, seg, q_start, q_start + len(ex.query)


def _allowed(segments: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(B, L, L) bool: may row (query position) attend to column (key position)."""
    length = segments.shape[1]
    idx = torch.arange(length)
    causal = idx[None, :, None] >= idx[None, None, :]
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    key_real = seg_k != _PAD
    if layout == "concat":
        allowed = causal & key_real
    else:
        same_segment = (seg_q == seg_k) & causal
        to_sink = seg_k == _SINK
        qy_to_docs = (seg_q == _QY) & (seg_k >= 0)
        allowed = key_real & (same_segment | to_sink | qy_to_docs)
    # Padding rows attend to themselves only, so no row is fully masked (softmax would be NaN).
    return allowed | (torch.eye(length, dtype=torch.bool)[None] & (seg_q == _PAD))
