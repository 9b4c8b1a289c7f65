"""METHOD §1.2 identities and invariants of score injection, on tiny Llama / Qwen2 / Gemma3 models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dreamir.data.training import TokenizedExample
from dreamir.models.frozen_lm import FrozenLM, UnsupportedModelError
from dreamir.models.injection import SELF_SHARE, HeadInjection
from dreamir.models.layout import pack_batch
from dreamir.models.lm_passes import target_nll
from dreamir.testing import tiny_causal_lm

from .conftest import ARCHS


def make_lm(arch: str) -> FrozenLM:
    model, tok = tiny_causal_lm(arch, seed=1)
    return FrozenLM.from_model(model, tok)


def examples() -> list[TokenizedExample]:
    # Two examples with different document counts and lengths; the longest sequence (31 tokens)
    # exceeds Gemma3's test sliding window (16), so windowed layers matter.
    return [
        TokenizedExample(
            query=[5, 6, 7], target=[8, 9, 10, 11], docs=[[12, 13, 14, 30, 31], [15, 16], [17, 18, 19, 20]]
        ),
        TokenizedExample(query=[5, 6], target=[8, 9, 40], docs=[[12, 13], [21, 22, 23, 24, 25, 26, 27, 28, 29, 32]]),
    ]


def packed(lm: FrozenLM, layout: str = "separate"):
    return pack_batch(examples(), lm.sink_token_id, lm.tokenizer.pad_token_id, layout)


def hidden(lm: FrozenLM, pb, injection=None) -> torch.Tensor:
    return lm.decoder(**pb.model_inputs(*([injection] if injection is not None else []))).last_hidden_state


def injection(pb, heads, log_w, mode="bias") -> HeadInjection:
    return HeadInjection(heads, log_w, pb.doc_index, pb.inject_rows, pb.num_docs, mode=mode)


def doc_mask(pb) -> torch.Tensor:
    return torch.arange(int(pb.num_docs.max()))[None] < pb.num_docs[:, None]


def random_log_w(pb, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(pb.num_docs.shape[0], int(pb.num_docs.max()), generator=g) * 2
    return torch.log_softmax(scores.masked_fill(~doc_mask(pb), float("-inf")), -1)


def real_rows(pb) -> torch.Tensor:
    return pb.input_ids != -1  # all rows; padding rows are compared too (they must not be NaN)


SOME_HEADS = [(0, 1), (1, 3), (2, 0), (2, 2)]


@pytest.mark.parametrize("arch", ARCHS)
def test_uniform_bias_is_a_no_op(arch):
    lm = make_lm(arch)
    pb = packed(lm)
    uniform = torch.log_softmax(torch.zeros(2, 3).masked_fill(~doc_mask(pb), float("-inf")), -1)
    plain = hidden(lm, pb)
    injected = hidden(lm, pb, injection(pb, SOME_HEADS, uniform, "bias"))
    assert torch.isfinite(injected).all()
    torch.testing.assert_close(injected, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_self_share_reweight_is_a_no_op_but_uniform_reweight_is_not(arch):
    lm = make_lm(arch)
    pb = packed(lm)
    plain = hidden(lm, pb)
    self_share = hidden(lm, pb, injection(pb, SOME_HEADS, SELF_SHARE, "reweight"))
    torch.testing.assert_close(self_share, plain, atol=1e-5, rtol=0)
    uniform = torch.log_softmax(torch.zeros(2, 3).masked_fill(~doc_mask(pb), float("-inf")), -1)
    equalised = hidden(lm, pb, injection(pb, SOME_HEADS, uniform, "reweight"))
    assert (equalised - plain).abs().max() > 1e-4  # METHOD: uniform w is NOT a no-op in reweight mode


def test_reweight_matches_the_mass_definition():
    """new weight on token j of d_i = M_t · w_i · ã_{t,j}; mass on [q][y] tokens unchanged."""
    torch.manual_seed(3)
    lm = make_lm("llama")
    pb = packed(lm)
    layer_heads = [(1, 0)]
    log_w = random_log_w(pb, seed=5)
    inj = injection(pb, layer_heads, log_w, "reweight")
    scores = torch.randn(2, 1, pb.input_ids.shape[1], pb.input_ids.shape[1]) + pb.attention_mask
    new = torch.softmax(scores + inj.logit_offsets(scores, torch.tensor([0])), -1)
    old = torch.softmax(scores, -1)
    for b in range(2):
        for t in torch.nonzero(pb.inject_rows[b]).flatten().tolist():
            docs = pb.doc_index[b]
            total_doc_mass = old[b, 0, t][docs >= 0].sum()
            for i in range(int(pb.num_docs[b])):
                in_doc = docs == i
                within = old[b, 0, t][in_doc] / old[b, 0, t][in_doc].sum()
                expected = total_doc_mass * log_w[b, i].exp() * within
                torch.testing.assert_close(new[b, 0, t][in_doc], expected, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(new[b, 0, t][docs < 0], old[b, 0, t][docs < 0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_outside_H_and_document_rows_are_untouched(arch):
    lm = make_lm(arch)
    pb = packed(lm)
    layer, chosen = 1, [1, 3]
    captured = {}

    def grab(_module, args):
        captured["x"] = args[0].detach()

    o_proj = lm.decoder.layers[layer].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(grab)
    plain_hidden = hidden(lm, pb)
    plain = captured["x"].view(*captured["x"].shape[:2], lm.num_heads, -1)
    inj_hidden = hidden(lm, pb, injection(pb, [(layer, h) for h in chosen], random_log_w(pb), "bias"))
    injected = captured["x"].view(*captured["x"].shape[:2], lm.num_heads, -1)
    handle.remove()
    rows = pb.inject_rows
    for h in range(lm.num_heads):
        diff = (injected[:, :, h] - plain[:, :, h]).abs()
        if h in chosen:
            assert diff[rows].max() > 1e-5, f"head {h} in H was not changed"
        else:
            assert diff.max() < 1e-6, f"head {h} not in H changed"
    # Document and sink rows never see the [q][y] segment, so they are unchanged in every layer.
    torch.testing.assert_close(inj_hidden[~rows], plain_hidden[~rows], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_reaches_the_weights_never_the_llm(arch):
    lm = make_lm(arch)
    pb = packed(lm)
    scores = torch.randn(2, 3, requires_grad=True)
    log_w = torch.log_softmax((scores / 0.05).masked_fill(~doc_mask(pb), float("-inf")), -1)
    loss = target_nll(lm, pb, injection(pb, SOME_HEADS, log_w)).mean()
    loss.backward()
    assert scores.grad is not None and scores.grad[doc_mask(pb)].abs().sum() > 0
    assert torch.isfinite(scores.grad).all()
    assert all(p.grad is None and not p.requires_grad for p in lm.model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_later_tokens_do_not_change_earlier_outputs(arch):
    """METHOD §5: a custom attention function must keep causality itself."""
    lm = make_lm(arch)
    pb = packed(lm)
    before = hidden(lm, pb, injection(pb, SOME_HEADS, random_log_w(pb)))
    last_target = pb.predict_rows[0, pb.target_mask[0]].max() + 1
    pb.input_ids[0, last_target] = 33  # change only the final target token of example 0
    after = hidden(lm, pb, injection(pb, SOME_HEADS, random_log_w(pb)))
    torch.testing.assert_close(after[0, :last_target], before[0, :last_target], atol=1e-6, rtol=0)
    assert (after[0, last_target] - before[0, last_target]).abs().max() > 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_separate_layout_is_order_invariant(arch):
    lm = make_lm(arch)
    ex = examples()[0]
    log_w = torch.log_softmax(torch.tensor([[0.3, -1.0, 2.0]]), -1)
    perm = [2, 0, 1]
    swapped = TokenizedExample(ex.query, ex.target, [ex.docs[i] for i in perm])
    losses = []
    for e, lw in ((ex, log_w), (swapped, log_w[:, perm])):
        pb = pack_batch([e], lm.sink_token_id, lm.tokenizer.pad_token_id)
        losses.append(target_nll(lm, pb, injection(pb, SOME_HEADS, lw)))
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_concat_layout_equals_the_plain_model(arch):
    """Without injection, the concat layout through dreamir's attention is the LLM's own forward."""
    lm = make_lm(arch)
    ex = examples()[0]
    pb = pack_batch([ex], lm.sink_token_id, lm.tokenizer.pad_token_id, "concat")
    ours = lm.logits(hidden(lm, pb))
    reference = lm.model(input_ids=pb.input_ids).logits
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    nll = target_nll(lm, pb, None)
    ref_nll = F.cross_entropy(reference[0, pb.predict_rows[0]], pb.target_ids[0])
    torch.testing.assert_close(nll[0], ref_nll, atol=1e-5, rtol=1e-5)


def test_unsupported_architecture_fails_clearly():
    from transformers import GPT2Config, GPT2LMHeadModel

    from dreamir.testing import make_tokenizer

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100))
    with pytest.raises(UnsupportedModelError, match=r"gpt2.*not supported"):
        FrozenLM.from_model(model, make_tokenizer())
