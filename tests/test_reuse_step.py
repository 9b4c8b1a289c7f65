"""The document key/value reuse step against the full-graph reference step (METHOD §1.3)."""

from __future__ import annotations

import pytest
import torch

from dreamir.data.training import Example, tokenize_examples
from dreamir.models.lm_passes import target_nll
from dreamir.objectives.dream import DreamConfig, DreamObjective
from dreamir.settings import TokenLimits

from .conftest import ARCHS, require_alias
from .test_injection import SOME_HEADS, doc_mask, injection, make_lm, packed


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["bias", "reweight"])
def test_reuse_step_matches_reference_loss_and_gradient(arch, mode):
    lm = make_lm(arch)
    pb = packed(lm)
    results = []
    for reuse in (False, True):
        scores = torch.randn(2, 3, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
        log_w = torch.log_softmax((scores / 0.5).masked_fill(~doc_mask(pb), float("-inf")), -1)
        nll = target_nll(lm, pb, injection(pb, SOME_HEADS, log_w, mode), reuse_documents=reuse)
        nll.sum().backward()
        results.append((nll.detach(), scores.grad.clone()))
    (ref_loss, ref_grad), (loss, grad) = results
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)
    assert ref_grad.abs().sum() > 0


def objective_loss_and_grads(lm, retriever, examples, heads, reuse, mode="bias"):
    objective = DreamObjective(lm, retriever, DreamConfig(temperature=0.05, mode=mode, reference_step=not reuse), heads)
    retriever.zero_grad(set_to_none=True)
    tokenized = tokenize_examples(examples, lm.tokenize, TokenLimits(query=32, target=32, doc=48))
    out = objective(examples, tokenized)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in retriever.named_parameters() if p.grad is not None}
    return float(out.loss.detach()), grads


def assert_same_step(lm, retriever, examples, heads):
    retriever.eval()  # no dropout, so both steps see the same retriever function
    ref_loss, ref_grads = objective_loss_and_grads(lm, retriever, examples, heads, reuse=False)
    loss, grads = objective_loss_and_grads(lm, retriever, examples, heads, reuse=True)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert grads.keys() == ref_grads.keys() and grads
    flat_ref = torch.cat([g.flatten() for g in ref_grads.values()])
    flat = torch.cat([grads[n].flatten() for n in ref_grads])
    rel = float((flat - flat_ref).norm() / flat_ref.norm())
    assert rel < 1e-4, f"relative gradient difference {rel:.2e}"
    return ref_loss, rel


@pytest.mark.parametrize("arch", ARCHS)
def test_objective_reuse_step_gives_the_reference_retriever_gradients(arch, tiny_encoder_dir):
    from dreamir.models.retriever import Retriever

    lm = make_lm(arch)
    retriever = Retriever.load(str(tiny_encoder_dir))
    examples = [
        Example("what causes scurvy", "vitamin c deficiency", ["vitamin c scurvy", "the heart", "blood cells"]),
        Example("brain energy", "the brain uses glucose", ["brain energy use", "mouse gene study"]),
    ]
    assert_same_step(lm, retriever, examples, SOME_HEADS)


@pytest.mark.integration
def test_reuse_step_on_smollm2(tmp_path):
    require_alias("smollm2-135m-instruct")
    require_alias("all-minilm-l6-v2")
    from dreamir.models.frozen_lm import FrozenLM
    from dreamir.models.retriever import Retriever

    lm = FrozenLM.load("smollm2-135m-instruct")
    retriever = Retriever.load("all-minilm-l6-v2")
    examples = [
        Example(
            "Vitamin C deficiency causes",
            "scurvy, a disease of collagen synthesis in humans.",
            ["Scurvy results from a lack of vitamin C.", "The heart pumps blood.", "Mice were fed a diet."],
        ),
        Example(
            "The brain consumes",
            "about twenty percent of the body's energy at rest.",
            ["Neurons use glucose for energy.", "Tumor growth was measured.", "Gene expression in cells."],
        ),
    ]
    heads = [(layer, head) for layer in (4, 12, 20) for head in (0, 4, 8)]
    loss, rel = assert_same_step(lm, retriever, examples, heads)
    print(f"SmolLM2 reuse vs reference: loss {loss:.5f}, relative gradient difference {rel:.2e}")


def _score_step(lm, pb, mode, reuse, keys=None, store=None):
    scores = torch.randn(2, 3, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    log_w = torch.log_softmax((scores / 0.5).masked_fill(~doc_mask(pb), float("-inf")), -1)
    nll = target_nll(lm, pb, injection(pb, SOME_HEADS, log_w, mode), reuse, keys, store)
    nll.sum().backward()
    return nll.detach(), scores.grad.clone()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_warm_document_cache_matches_reference(arch, where, tmp_path):
    from dreamir.models.kv_store import DocumentKVStore
    from dreamir.models.layout import pack_batch

    from .test_injection import examples

    lm = make_lm(arch)
    store = DocumentKVStore(2**30, tmp_path / "kv" if where == "disk" else None)
    keys = [DocumentKVStore.key(ex.docs, "tag") for ex in examples()]
    # Warm the cache with example 1 alone: its region is padded differently there than in the pair batch.
    alone = pack_batch(examples()[1:], lm.sink_token_id, lm.tokenizer.pad_token_id)
    target_nll(lm, alone, None, True, keys[1:], store)
    pb = packed(lm)
    ref_loss, ref_grad = _score_step(lm, pb, "bias", reuse=False)
    first = _score_step(lm, pb, "bias", True, keys, store)  # example 0 misses, example 1 hits
    warm = _score_step(lm, pb, "bias", True, keys, store)  # both hit
    assert (store.hits, store.misses) == (3, 2)
    for loss, grad in (first, warm):
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_document_cache_respects_its_size_limit(tmp_path):
    from dreamir.models.kv_store import DocumentKVStore

    entry = torch.ones(2, 2, 1, 5, 4)  # 320 bytes
    store = DocumentKVStore(700, tmp_path)
    assert [store.put(k, entry) for k in ("a", "b", "c")] == [True, True, False]
    assert store.bytes_used == 640 and store.refused == 1 and store.get("c") is None
    reopened = DocumentKVStore(700, tmp_path)  # a resumed run finds the finished entries
    assert reopened.bytes_used > 0 and torch.equal(reopened.get("a"), entry)
    assert not reopened.put("d", entry)
    with pytest.raises(ValueError, match="positive size limit"):
        DocumentKVStore(0)
    assert list(tmp_path.glob("*.tmp")) == []


def test_document_keys_depend_on_tokens_and_tag():
    from dreamir.models.kv_store import DocumentKVStore

    key = DocumentKVStore.key
    assert key([[1, 2], [3]], "m") == key([[1, 2], [3]], "m")
    assert len({key([[1, 2], [3]], "m"), key([[1], [2, 3]], "m"), key([[1, 2], [3]], "other")}) == 3


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("reuse", [False, True])
def test_checkpointed_layers_give_the_same_loss_and_gradient(arch, reuse):
    """Layer checkpointing of the frozen LLM recomputes every layer in the backward pass (its attention runs again)
    and changes neither the loss nor the gradient; the model is left as it was."""
    lm = make_lm(arch)
    pb = packed(lm)
    calls = []
    for layer in lm.decoder.layers:
        layer.self_attn.register_forward_hook(lambda *_: calls.append(1))
    results = []
    for recompute in (False, True):
        lm.gradient_checkpointing = recompute
        calls.clear()
        scores = torch.randn(2, 3, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
        log_w = torch.log_softmax((scores / 0.5).masked_fill(~doc_mask(pb), float("-inf")), -1)
        nll = target_nll(lm, pb, injection(pb, SOME_HEADS, log_w, "bias"), reuse_documents=reuse)
        nll.sum().backward()
        results.append((nll.detach(), scores.grad.clone(), len(calls)))
    (ref_loss, ref_grad, plain_calls), (loss, grad, recomputed_calls) = results
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)
    assert ref_grad.abs().sum() > 0
    assert recomputed_calls == plain_calls + len(lm.decoder.layers)  # each layer of the graph pass replayed once
    layer = lm.decoder.layers[0]
    assert not layer.training and not layer.gradient_checkpointing and "_gradient_checkpointing_func" not in vars(layer)
