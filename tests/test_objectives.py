"""The peer objectives' math on tiny models, against hand computations (METHOD §2)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dreamir.data.training import Example, tokenize_examples
from dreamir.models.injection import InBatchAttention
from dreamir.objectives.base import candidate_scores, trainable_parameters
from dreamir.settings import TokenLimits

from .test_injection import make_lm

EXAMPLES = [
    Example("what causes scurvy", "vitamin c deficiency", ["vitamin c scurvy", "the heart", "blood cells"]),
    Example("brain energy", "the brain uses glucose", ["brain energy use", "mouse gene study"]),
    Example("heart blood", "pumps blood through the body", ["the heart pumps", "gene study", "cells"]),
]


@pytest.fixture
def retriever(tiny_encoder_dir):
    from dreamir.models.retriever import Retriever

    r = Retriever.load(str(tiny_encoder_dir))
    r.eval()
    return r


def tokenized(lm):
    return tokenize_examples(EXAMPLES, lm.tokenize, TokenLimits(query=32, target=32, doc=48))


def plain_target_nll(lm, prefix: list[int], target: list[int]) -> float:
    """Mean NLL of `target` after `prefix` from one ordinary causal forward of the HF model."""
    ids = torch.tensor([prefix + target])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].float()
    rows = torch.arange(len(prefix) - 1, len(prefix) + len(target) - 1)
    return float(F.cross_entropy(logits[rows], torch.tensor(target)))


def test_replug_lm_scores_and_loss_match_a_hand_computation(retriever):
    from dreamir.objectives.replug import ReplugConfig, ReplugObjective

    lm = make_lm("llama")
    toks = tokenized(lm)
    objective = ReplugObjective(lm, retriever, ReplugConfig(lm_temperature=0.1, temperature=0.1))
    nll = objective.teacher.nll(toks)
    sink = [lm.sink_token_id]
    for ex, values in zip(toks, nll, strict=True):
        hand = [plain_target_nll(lm, sink + doc + ex.query, ex.target) for doc in ex.docs]
        assert values.tolist() == pytest.approx(hand, rel=1e-5)

    out = objective(EXAMPLES, toks)
    scores, _mask = candidate_scores(retriever, EXAMPLES)
    expected = 0.0
    for b, values in enumerate(nll):
        n = len(values)
        p_lm = [math.exp(-v / 0.1) for v in values.tolist()]
        p_lm = [p / sum(p_lm) for p in p_lm]
        log_p_r = torch.log_softmax(scores[b, :n] / 0.1, -1).tolist()
        expected += sum(p * (math.log(p) - lr) for p, lr in zip(p_lm, log_p_r, strict=True) if p > 0)
    assert out.loss.item() == pytest.approx(expected / len(EXAMPLES), rel=1e-4)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in retriever.parameters())


def test_replug_computes_lm_scores_once_per_example(retriever, monkeypatch):
    from dreamir.models import lm_passes
    from dreamir.objectives.replug import ReplugObjective

    lm = make_lm("qwen2")
    calls = []
    original = lm_passes.target_nll
    monkeypatch.setattr(lm_passes, "target_nll", lambda *a, **k: calls.append(1) or original(*a, **k))
    objective = ReplugObjective(lm, retriever)
    first = objective.teacher.nll(tokenized(lm))
    runs = len(calls)
    again = objective.teacher.nll(tokenized(lm))
    assert runs > 0 and len(calls) == runs
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_replug_keeps_lm_scores_on_disk_for_later_runs_and_precomputes_them(tmp_path, retriever, monkeypatch):
    """With `signal_cache_dir`, a second run (another seed, a variant) reads ℓ without an LLM pass; `precompute`
    fills the folder ahead of training; a different score (sum vs mean) is a different key."""
    from dreamir.models import lm_passes
    from dreamir.objectives.replug import ReplugConfig, ReplugObjective

    lm = make_lm("qwen2")
    toks = tokenized(lm)
    config = ReplugConfig(signal_cache_dir=str(tmp_path / "nll"))
    line = ReplugObjective(lm, retriever, config).precompute(toks[:2], batch_size=1, show_progress=False)
    assert line.startswith("candidate NLL: 2 examples computed, 0 already stored")
    assert len(list((tmp_path / "nll").glob("*.pt"))) == 2

    first = ReplugObjective(lm, retriever, config).teacher.nll(toks)  # computes the third example only
    calls = []
    original = lm_passes.target_nll
    monkeypatch.setattr(lm_passes, "target_nll", lambda *a, **k: calls.append(1) or original(*a, **k))
    later = ReplugObjective(lm, retriever, config)
    again = later.teacher.nll(toks)
    assert calls == [] and later.teacher.nll.calls == 0
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    summed = ReplugObjective(lm, retriever, ReplugConfig(signal_cache_dir=str(tmp_path / "nll"), lm_score="sum"))
    assert summed.teacher.nll.key(toks[0]) != later.teacher.nll.key(toks[0])
    assert summed.teacher.nll.cached(toks[0]) is None


def test_infonce_loss_matches_a_hand_computation(retriever):
    from dreamir.objectives.infonce import InfoNCEObjective

    out = InfoNCEObjective(retriever).__call__(EXAMPLES)
    with torch.no_grad():
        q = retriever.embed([ex.query for ex in EXAMPLES], "query")
        pos = retriever.embed([ex.target for ex in EXAMPLES], "document")
        total = 0.0
        for b, ex in enumerate(EXAMPLES):
            cands = retriever.embed(ex.candidates, "document")
            logits = torch.cat([q[b] @ pos.T, cands @ q[b]]) / 0.05
            total += float(torch.logsumexp(logits, 0) - logits[b])
    assert float(out.loss.detach()) == pytest.approx(total / len(EXAMPLES), rel=1e-5)


def _hand_infonce(retriever, examples, positives, negatives) -> float:
    """Mean over rows of −log softmax at the positive, over the positive + the listed negatives
    (`negatives[b]`: texts)."""
    total = 0.0
    with torch.no_grad():
        for b, ex in enumerate(examples):
            q = retriever.embed([ex.query], "query")[0]
            texts = [positives[b], *negatives[b]]
            logits = retriever.embed(texts, "document") @ q / 0.05
            total += float(torch.logsumexp(logits, 0) - logits[0])
    return total / len(examples)


def test_infonce_never_uses_the_querys_own_document_or_its_positive_as_a_negative(retriever):
    from dreamir.objectives.infonce import InfoNCEConfig, InfoNCEObjective

    examples = [
        Example(
            "scurvy cause",
            "vitamin c deficiency",
            ["same doc more", "the heart", "blood cells"],
            source="d1",
            candidate_sources=["d1", "d2", "d3"],
        ),
        Example(
            "scurvy signs",
            "bleeding gums",
            ["vitamin c scurvy", "gene study"],
            source="d1",
            candidate_sources=["d4", "d1"],
        ),
        Example(
            "heart blood",
            "pumps blood",
            ["the heart pumps", "gene study", "cells"],
            positive=0,
            source="d7",
            candidate_sources=["d8", "d9", "d7"],
        ),
    ]
    positives = ["vitamin c deficiency", "bleeding gums", "the heart pumps"]
    # Row 0: not its own-document candidate, nor row 1's positive (same document d1); row 1 likewise.
    # Row 2: its labelled positive is candidate 0, not a negative; candidate 2 is from d7.
    negatives = [
        ["the heart", "blood cells", "the heart pumps"],
        ["vitamin c scurvy", "the heart pumps"],
        ["gene study", "vitamin c deficiency", "bleeding gums"],
    ]
    out = InfoNCEObjective(retriever)(examples)
    assert float(out.loss.detach()) == pytest.approx(_hand_infonce(retriever, examples, positives, negatives), rel=1e-5)
    literal = InfoNCEObjective(retriever, InfoNCEConfig(same_document_negatives=True))(examples)
    negatives_literal = [
        ["same doc more", "the heart", "blood cells", "bleeding gums", "the heart pumps"],
        ["vitamin c scurvy", "gene study", "vitamin c deficiency", "the heart pumps"],
        ["gene study", "cells", "vitamin c deficiency", "bleeding gums"],
    ]
    want = _hand_infonce(retriever, examples, positives, negatives_literal)
    assert float(literal.loss.detach()) == pytest.approx(want, rel=1e-5)


def test_inbatch_term_matches_a_hand_computation():
    torch.manual_seed(0)
    batch, heads, length, dim = 2, 3, 9, 4
    query, key, value = (torch.randn(batch, heads, length, dim) for _ in range(3))
    doc_index = torch.tensor([[-1, 0, 0, 0, 1, 1, -1, -1, -1], [-1, 0, 0, 1, 1, 1, -1, -1, -1]])
    inject = torch.zeros(batch, length, dtype=torch.bool)
    inject[:, 6:] = True
    weights = torch.tensor([[0.3, 0.7], [0.9, 0.1]])
    got = InBatchAttention(weights, doc_index, inject).output_offsets(query, key, value, 0.5, None)
    for b in range(batch):
        for h in range(heads):
            for t in range(length):
                want = torch.zeros(dim)
                if inject[b, t]:
                    for j in range(2):
                        keys = (doc_index[b] == j).nonzero().flatten()
                        a = torch.softmax(query[b, h, t] @ key[b, h, keys].T * 0.5, -1)
                        o = a @ value[b, h, keys]
                        norm = (a * value[b, h, keys].norm(dim=-1)).sum()
                        want += weights[b, j] * o / norm
                torch.testing.assert_close(got[b, h, t], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_revela_with_zero_weights_is_the_plain_lm(arch):
    from dreamir.models.lm_passes import target_nll
    from dreamir.objectives.revela import own_context_layout

    lm = make_lm(arch)
    toks = tokenized(lm)
    packed = own_context_layout(lm.pack(toks), lm.sink_token_id is not None)
    zero = InBatchAttention(torch.zeros(3, 3), packed.doc_index, packed.inject_rows)
    for reuse in (False, True):
        with torch.no_grad():
            nll = target_nll(lm, packed, None, reuse_documents=reuse, inbatch=zero)
        hand = [plain_target_nll(lm, [lm.sink_token_id, *ex.query], ex.target) for ex in toks]
        assert nll.tolist() == pytest.approx(hand, rel=1e-5)


def test_revela_trains_the_retriever_and_optionally_lm_lora(retriever):
    from dreamir.objectives.revela import RevelaConfig, RevelaObjective

    lm = make_lm("llama")
    toks = tokenized(lm)
    losses = {}
    for train_lm in (False, True):
        retriever.zero_grad(set_to_none=True)
        objective = RevelaObjective(lm, retriever, RevelaConfig(temperature=0.1, train_lm=train_lm))
        out = objective(EXAMPLES, toks)
        out.loss.backward()
        losses[train_lm] = float(out.loss.detach())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in retriever.parameters())
        extra = trainable_parameters(objective)  # the LM's LoRA adapters: parameters of the loss
        assert bool(extra) == train_lm
        if train_lm:  # LoRA's B starts at 0, so the loss is unchanged and A gets no gradient yet; B does
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in extra.items() if "lora_B" in n)
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)  # reuse step (frozen) = full graph (LoRA at 0)


@pytest.mark.parametrize("objective", ["dream", "dream_distill"])
def test_learnable_temperature_has_its_own_rate_and_resumes(objective, tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """<objective>.learn_temperature: log τ is a trainable parameter in its own optimiser group (lr
    <objective>.temperature_lr, no weight decay), logged as `tau`, and checkpointed; off, τ is the constant."""
    from dreamir.config import load_config
    from dreamir.trainer import Trainer
    from tests.test_trainer import write_config

    base = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, "fixed", steps=3)
    fixed = Trainer(load_config(base, {"train.objective": objective}), show_progress=False)
    assert fixed.objective_params == {} and len(fixed.optimizer.param_groups) == 1
    overrides = {
        "run_dir": str(tmp_path / "learn"),
        "train.objective": objective,
        f"{objective}.learn_temperature": True,
        f"{objective}.temperature_lr": 0.05,
    }
    trainer = Trainer(load_config(base, overrides), show_progress=False)
    log_tau = trainer.objective_params["temperature.log_value"]
    assert float(log_tau.detach().exp()) == pytest.approx(0.05)
    group = trainer.optimizer.param_groups[1]
    assert group["params"] == [log_tau] and group["weight_decay"] == 0.0 and group["initial_lr"] == 0.05
    trainer.train()
    tau = float(log_tau.detach().exp())
    assert tau != pytest.approx(0.05, rel=1e-3)  # moved: at lr 1e-3 (train.lr) it could not have moved this far
    logged = [json.loads(line) for line in (tmp_path / "learn" / "log.jsonl").read_text().splitlines()]
    # τ as each step used it: the start, then values the updates gave
    assert logged[0]["tau"] == pytest.approx(0.05) and logged[-1]["tau"] != pytest.approx(0.05, rel=1e-3)
    resumed = Trainer(load_config(base, overrides), show_progress=False)
    resumed.resume()
    assert float(resumed.objective_params["temperature.log_value"].detach().exp()) == pytest.approx(tau)
