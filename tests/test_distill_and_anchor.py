"""The judge signal (weight_gradient), DREAM-distill, the anchors and the shuffled-targets control."""

from __future__ import annotations

import math

import pytest
import torch

from dreamir.data.training import Example, shuffled_targets, tokenize_examples
from dreamir.models.lm_passes import target_nll, weight_gradient
from dreamir.objectives.base import ScoredBatch, candidate_scores
from dreamir.settings import TokenLimits

from .conftest import ARCHS
from .test_injection import SOME_HEADS, doc_mask, injection, make_lm, packed
from .test_objectives import EXAMPLES, tokenized


@pytest.fixture
def retriever(tiny_encoder_dir):
    from dreamir.models.retriever import Retriever

    r = Retriever.load(str(tiny_encoder_dir))
    r.eval()
    return r


def uniform_log_w(pb) -> torch.Tensor:
    return torch.log_softmax(torch.zeros(doc_mask(pb).shape).masked_fill(~doc_mask(pb), float("-inf")), -1)


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_gradient_is_the_online_gradient_at_uniform_weights(arch):
    """g equals ∂L/∂log w of the full-graph reference pass, and matches finite differences."""
    lm = make_lm(arch)
    pb = packed(lm)
    g, nll = weight_gradient(lm, pb, SOME_HEADS, "bias")
    log_w = uniform_log_w(pb).requires_grad_(True)
    reference = target_nll(lm, pb, injection(pb, SOME_HEADS, log_w), reuse_documents=False)
    reference.sum().backward()
    expected = log_w.grad.masked_fill(~doc_mask(pb), 0)
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(nll, reference.detach(), rtol=1e-5, atol=1e-6)
    assert g.abs().sum() > 0
    # central finite differences (the NLL is fp32: a wide step keeps rounding below the tolerance)
    eps = 0.05
    for b, i in ((0, 0), (0, 2), (1, 1)):
        bumped = []
        for sign in (1, -1):
            lw = uniform_log_w(pb)
            lw[b, i] += sign * eps
            with torch.no_grad():
                bumped.append(float(target_nll(lm, pb, injection(pb, SOME_HEADS, lw))[b]))
        assert (bumped[0] - bumped[1]) / (2 * eps) == pytest.approx(float(g[b, i]), rel=0.1, abs=2e-5)


def distill_objective(lm, retriever, tmp_path=None, **settings):
    from dreamir.objectives.dream_distill import DreamDistillConfig, DreamDistillObjective

    config = DreamDistillConfig(signal_cache_dir=str(tmp_path) if tmp_path else None, **settings)
    return DreamDistillObjective(lm, retriever, config, SOME_HEADS)


def test_distill_target_is_the_judge_gradient_and_the_kl_gradient_matches_a_hand_computation(retriever):
    lm = make_lm("qwen2")
    toks = tokenized(lm)
    objective = distill_objective(lm, retriever, judge_scale="raw", judge_temperature=0.01, temperature=0.1)
    online, _ = weight_gradient(lm, lm.pack(toks), SOME_HEADS, "bias")
    for b, g in enumerate(objective.judge.signal(toks)):
        torch.testing.assert_close(g, online[b, : len(EXAMPLES[b].candidates)])

    scores = torch.randn(3, 3, requires_grad=True, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    log_p_judge = objective.judge(EXAMPLES, toks)
    p_judge = log_p_judge.exp()
    # the formula: P_J = softmax(−g / τ_J) over each example's candidates
    for b, ex in enumerate(EXAMPLES):
        n = len(ex.candidates)
        expected = torch.softmax(-online[b, :n] / 0.01, -1)
        torch.testing.assert_close(p_judge[b, :n], expected, rtol=1e-5, atol=1e-7)
    log_p_r = torch.log_softmax((scores / 0.1).masked_fill(~mask, float("-inf")), -1)
    loss = (p_judge * (log_p_judge - log_p_r)).masked_fill(~mask, 0).sum(-1).mean()
    loss.backward()
    # d KL(P ‖ softmax(s/τ)) / d s_i = (Q_i − P_i) / τ, per example, divided by B for the mean
    q = log_p_r.exp().detach()
    hand = ((q - p_judge) / 0.1 / 3).masked_fill(~mask, 0)
    torch.testing.assert_close(scores.grad, hand, rtol=1e-4, atol=1e-6)


def test_distill_trains_the_retriever_and_a_second_epoch_never_calls_the_judge(retriever, tmp_path, monkeypatch):
    from dreamir.objectives import teachers

    lm = make_lm("llama")
    toks = tokenized(lm)
    calls = []
    original = teachers.weight_gradient
    monkeypatch.setattr(teachers, "weight_gradient", lambda *a, **k: calls.append(1) or original(*a, **k))
    objective = distill_objective(lm, retriever, tmp_path)
    assert all(objective.judge.signal.cached(t) is None for t in toks)
    out = objective(EXAMPLES, toks)
    out.loss.backward()
    assert len(calls) == 1 and math.isfinite(out.loss.item())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in retriever.parameters())
    objective(EXAMPLES, toks)  # second epoch, same objective
    fresh = distill_objective(lm, retriever, tmp_path)  # a resumed run or another seed: the disk store
    again = fresh(EXAMPLES, toks)
    assert len(calls) == 1 and fresh.judge.signal.calls == 0
    assert all(fresh.judge.signal.cached(t) is not None for t in toks)  # what the first run stored, read without a pass
    assert again.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_kl_anchor_is_zero_at_the_start_and_matches_a_hand_computation(retriever):
    from dreamir.objectives.anchor import KLAnchor
    from dreamir.objectives.combine import Sum

    anchor = Sum([(2.0, KLAnchor(retriever, 0.5))])  # train.anchor_weight 2: a weighted term of the run's sum
    scores, mask = candidate_scores(retriever, EXAMPLES)
    start = anchor(EXAMPLES, [], ScoredBatch.with_scores(retriever, EXAMPLES, scores, mask)).loss
    assert float(start.detach()) == pytest.approx(0.0, abs=1e-6)
    moved = scores + torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    value = anchor(EXAMPLES, [], ScoredBatch.with_scores(retriever, EXAMPLES, moved, mask)).loss
    hand = 0.0
    for b, ex in enumerate(EXAMPLES):
        n = len(ex.candidates)
        p = torch.softmax(scores[b, :n] / 0.5, -1)
        q = torch.softmax(moved[b, :n] / 0.5, -1)
        hand += float((p * (p.log() - q.log())).sum().detach())
    assert float(value.detach()) == pytest.approx(2.0 * hand / 3, rel=1e-4)
    assert float(value.detach()) > 0
    assert "kl_uniform" not in anchor(EXAMPLES, [], ScoredBatch.with_scores(retriever, EXAMPLES, moved, mask)).metrics


class FixedTeacher(torch.nn.Module):
    """A teacher whose distribution over each example's candidates is given."""

    def __init__(self, probabilities: list[list[float]]) -> None:
        super().__init__()
        self.log_p = torch.full((len(probabilities), max(map(len, probabilities))), float("-inf"))
        for b, p in enumerate(probabilities):
            self.log_p[b, : len(p)] = torch.tensor(p).log()

    def forward(self, examples, tokenized):
        return self.log_p


def test_distillation_logs_what_equal_weights_would_pay(retriever):
    """kl_uniform = mean over examples of log n − H(P_T) (n real candidates, no padding); kl_teacher = the loss."""
    from dreamir.objectives.base import Temperature
    from dreamir.objectives.distill import Distill

    teacher = [[0.7, 0.2, 0.1], [0.9, 0.1], [1 / 3, 1 / 3, 1 / 3]]  # EXAMPLES have 3, 2 and 3 candidates
    out = Distill(retriever, FixedTeacher(teacher), Temperature(0.1))(EXAMPLES, [])
    by_hand = [math.log(len(p)) + sum(q * math.log(q) for q in p) for p in teacher]
    assert out.metrics["kl_uniform"] == pytest.approx(sum(by_hand) / 3, rel=1e-5)
    assert out.metrics["kl_teacher"] == pytest.approx(out.loss.item())


def test_teacher_fit_says_when_the_retriever_has_not_fitted_its_teacher():
    from dreamir.objectives.distill import teacher_fit

    def rows(kl_end: float) -> list[dict]:  # 8 steps: the first quarter far off, the last quarter at kl_end
        return [{"step": i, "kl_teacher": 2.0 if i < 6 else kl_end, "kl_uniform": 0.75} for i in range(8)]

    learned = teacher_fit(rows(0.24))
    assert learned is not None and "KL 0.240" in learned and "pay 0.750" in learned and "not yet closer" not in learned
    stuck = teacher_fit(rows(0.77))
    assert stuck is not None and "KL 0.770" in stuck and "not yet closer to its teacher" in stuck
    assert "not yet closer" in (teacher_fit(rows(0.9 * 0.75)) or "")  # within a tenth of equal weights
    assert teacher_fit([{"step": 1, "loss": 0.5}]) is None  # an objective without a teacher says nothing


def test_l2sp_anchor_measures_the_distance_from_the_start(retriever):
    from dreamir.objectives.anchor import L2SPAnchor
    from dreamir.objectives.combine import Sum

    anchor = Sum([(0.5, L2SPAnchor(retriever))])
    assert float(anchor(EXAMPLES[:1], []).loss.detach()) == 0.0
    first = next(p for p in retriever.parameters() if p.requires_grad)
    with torch.no_grad():
        first.add_(0.1)
    assert float(anchor(EXAMPLES[:1], []).loss.detach()) == pytest.approx(0.5 * 0.01 * first.numel(), rel=1e-3)


def test_shuffled_targets_keep_queries_and_candidates_and_move_every_target():
    examples = [Example(f"q{i}", f"y{i}", [f"c{i}"]) for i in range(7)]
    control = shuffled_targets(examples, seed=3)
    assert [ex.query for ex in control] == [ex.query for ex in examples]
    assert [ex.candidates for ex in control] == [ex.candidates for ex in examples]
    assert all(c.target != ex.target for c, ex in zip(control, examples, strict=True))
    assert sorted(c.target for c in control) == sorted(ex.target for ex in examples)
    assert control == shuffled_targets(examples, seed=3) and control != shuffled_targets(examples, seed=4)
    with pytest.raises(ValueError, match="at least 2"):
        shuffled_targets(examples[:1])


def test_trainer_with_distill_and_anchor_runs_from_config(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """The new objective is reachable by name alone, and the anchor shows up in the log."""
    import json

    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    from .test_trainer import write_train_data

    data = write_train_data(tmp_path / "train.jsonl")
    config = load_config(
        None,
        {
            "run_dir": str(tmp_path / "run"),
            "llm.name": str(tiny_llm_dir),
            "retriever.name": str(tiny_encoder_dir),
            "data.train": str(data),
            "data.shuffle_targets": True,
            "heads.count": 4,
            "heads.detection_examples": 4,
            "train.objective": "dream_distill",
            "train.anchor": "kl",
            "train.batch_size": 3,
            "train.max_steps": 3,
            "train.warmup_steps": 0,
        },
    )
    result = Trainer(config, show_progress=False).train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert result.steps == 3 and all("loss_anchor" in row and math.isfinite(row["loss"]) for row in log)
    assert all(row["loss"] == pytest.approx(row["loss_dream_distill"] + row["loss_anchor"]) for row in log)
    assert (tmp_path / "run" / "retriever" / "modules.json").exists()


def test_shuffling_targets_for_the_llm_only_keeps_the_retrievers_targets_real(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """`data.shuffle_targets_for: llm`: the judge sees exactly the control's shuffled targets (the same token ids,
    so the same cached signal), the retriever's terms (InfoNCE's positive) the real ones."""
    from dreamir.config import load_config
    from dreamir.data.training import load_examples
    from dreamir.trainer import Trainer

    from .test_trainer import write_train_data

    data = write_train_data(tmp_path / "train.jsonl")
    common = {"llm.name": str(tiny_llm_dir), "retriever.name": str(tiny_encoder_dir), "data.train": str(data)}
    common |= {"data.shuffle_targets": True, "heads.count": 4, "train.objective": "dream_distill"}
    control = Trainer(load_config(None, common | {"run_dir": str(tmp_path / "a")}), show_progress=False)
    judge_only = Trainer(
        load_config(None, common | {"run_dir": str(tmp_path / "b"), "data.shuffle_targets_for": "llm"}),
        show_progress=False,
    )
    real = load_examples(str(data))
    assert [ex.target for ex in judge_only.examples] == [ex.target for ex in real]
    assert [ex.target for ex in control.examples] != [ex.target for ex in real]
    assert [t.target for t in judge_only.tokenized] == [t.target for t in control.tokenized]


def test_a_weighted_sum_adds_that_many_infonce_losses_of_the_same_batch(retriever):
    """dream_distill + 0.7 * infonce: loss = KL(P_J ‖ P_R) + 0.7 · InfoNCE, each term as its own objective
    computes it, and both terms reach the retriever's weights."""
    from dreamir.objectives.combine import Sum
    from dreamir.objectives.infonce import InfoNCEConfig, InfoNCEObjective

    lm = make_lm("qwen2")
    toks = tokenized(lm)
    contrastive = InfoNCEConfig(temperature=0.1)
    plain = distill_objective(lm, retriever)(EXAMPLES, toks)
    infonce = InfoNCEObjective(retriever, contrastive)(EXAMPLES, toks)
    both = Sum([(1.0, distill_objective(lm, retriever)), (0.7, InfoNCEObjective(retriever, contrastive))])
    out = both(EXAMPLES, toks)
    torch.testing.assert_close(out.loss, plain.loss + 0.7 * infonce.loss, rtol=1e-5, atol=1e-6)
    assert out.metrics["loss_dream_distill"] == pytest.approx(plain.metrics["loss"], rel=1e-5)
    assert out.metrics["loss_infonce"] == pytest.approx(0.7 * infonce.metrics["loss"], rel=1e-5)
    retriever.zero_grad()
    out.loss.backward()
    with_both = [p.grad.clone() for p in retriever.parameters() if p.grad is not None]
    retriever.zero_grad()
    distill_objective(lm, retriever)(EXAMPLES, toks).loss.backward()
    alone = [p.grad for p in retriever.parameters() if p.grad is not None]
    assert any(not torch.allclose(a, b) for a, b in zip(with_both, alone, strict=True))


def test_precompute_stores_the_judge_signal_and_training_then_makes_no_judge_pass(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys, monkeypatch
):
    """`dreamir train --precompute` (e.g. on a GPU) fills the signal cache; a run with the same judge, heads
    and examples then trains without the judge; objectives with nothing to precompute say so."""
    from dreamir.cli import main
    from dreamir.objectives import teachers

    from .test_trainer import write_train_data

    data = write_train_data(tmp_path / "train.jsonl", n=7)
    common = ["--llm", str(tiny_llm_dir), "--retriever", str(tiny_encoder_dir), "--data", str(data)]
    settings = ["heads.count=4", "heads.detection_examples=4", "train.batch_size=3", "train.max_steps=3"]
    settings += ["train.warmup_steps=0", f"dream_distill.signal_cache_dir={tmp_path / 'signal'}"]
    args = [*common, "--objective", "dream_distill", *(x for kv in settings for x in ("--set", kv))]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        assert main(["train", "--run-dir", str(tmp_path / "gpu"), *args, "--precompute", "--tf32"]) == 0
        assert torch.backends.cuda.matmul.allow_tf32  # --tf32: what a GPU's judge pass would use
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert "judge signal: 7 examples computed, 0 already stored" in capsys.readouterr().out
    assert len(list((tmp_path / "signal").glob("*.pt"))) == 7 and not (tmp_path / "gpu" / "retriever").exists()
    assert main(["train", "--run-dir", str(tmp_path / "gpu"), *args, "--precompute"]) == 0  # nothing left
    assert "0 examples computed, 7 already stored" in capsys.readouterr().out

    heads = str(tmp_path / "gpu" / "heads.json")  # the head set the signal was computed with
    monkeypatch.setattr(teachers, "weight_gradient", lambda *a, **k: pytest.fail("the judge ran again"))
    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "cpu"), *args, "--heads", heads]) == 0
    assert (tmp_path / "cpu" / "retriever" / "modules.json").exists()
    said = f"judge signal: 7 of 7 examples stored in {tmp_path / 'signal'}; the judge runs for none"
    out = capsys.readouterr().out
    assert said in out  # said before training, so that hours of judge passes are no surprise
    assert "[dreamir] fit to the teacher: KL " in out  # and after it, whether the retriever fits its teacher
    monkeypatch.undo()
    fresh = [*args, "--heads", heads, "--set", f"dream_distill.signal_cache_dir={tmp_path / 'fresh'}"]
    assert main(["train", "--run-dir", str(tmp_path / "fresh-run"), *fresh]) == 0
    said = f"judge signal: 0 of 7 examples stored in {tmp_path / 'fresh'}; the judge runs for the other 7, once each"
    assert said in capsys.readouterr().out

    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "x"), *common, "--objective", "infonce", "--precompute"]) == 2
    assert "computes nothing ahead of training" in capsys.readouterr().err


def test_tokenized_examples_for_distill_keys_differ_by_target():
    lm = make_lm("llama")
    objective = distill_objective(lm, None)
    a = tokenize_examples(EXAMPLES[:1], lm.tokenize, TokenLimits())[0]
    b = tokenize_examples(shuffled_targets(EXAMPLES)[:1], lm.tokenize, TokenLimits())[0]
    assert objective.judge.signal.key(a) != objective.judge.signal.key(b)


def test_ema_exports_the_moving_average_of_the_weights(tmp_path, tiny_llm_dir, tiny_encoder_dir):
    """e_2 = 0.25·θ_0 + 0.25·θ_1 + 0.5·θ_2 for decay 0.5, against the same run's weights without EMA."""
    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    from .test_trainer import write_config

    def run(name, **extra):
        overrides = {"train.checkpoint_every": 1, "train.keep_checkpoints": 5, "train.objective": "infonce"}
        config = load_config(
            write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, name, steps=2), {**overrides, **extra}
        )
        trainer = Trainer(config, show_progress=False)
        start = {n: p.detach().clone() for n, p in trainer.retriever.named_parameters() if p.requires_grad}
        trainer.train()
        return trainer, start

    _plain, start = run("plain")
    steps = [
        torch.load(tmp_path / "plain" / "checkpoints" / f"step-000000{i}.pt", weights_only=True)["retriever"]
        for i in (1, 2)
    ]
    averaged, _ = run("ema", **{"train.ema_decay": 0.5})
    params = dict(averaged.retriever.named_parameters())
    checked = 0
    for name, theta0 in start.items():
        expected = 0.25 * theta0 + 0.25 * steps[0][name] + 0.5 * steps[1][name]
        torch.testing.assert_close(params[name].detach(), expected, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == len(steps[1])
    assert any(not torch.equal(params[n].detach(), steps[1][n]) for n in start)  # not just the last weights


def test_judge_and_start_teacher_is_the_renormalised_product_and_keeps_the_start(retriever):
    """P_T ∝ P_start · P_J, P_start from the retriever as it was when the objective was built."""
    lm = make_lm("qwen2")
    toks = tokenized(lm)
    objective = distill_objective(lm, retriever, teacher="judge_and_start", temperature=0.1, judge_temperature=0.3)
    with torch.no_grad():
        start_scores, _ = candidate_scores(retriever, EXAMPLES)
    log_p_judge = objective.judge(EXAMPLES, toks)
    with torch.no_grad():  # training moves the retriever; the teacher's start must not move with it
        for p in retriever.parameters():
            p.add_(0.05 * torch.randn_like(p))
    p_teacher = objective.teacher(EXAMPLES, toks).exp()
    for b, ex in enumerate(EXAMPLES):
        n = len(ex.candidates)
        product = torch.softmax(start_scores[b, :n] / 0.1, -1) * log_p_judge[b, :n].exp()
        torch.testing.assert_close(p_teacher[b, :n], product / product.sum(), rtol=1e-5, atol=1e-7)
        assert p_teacher[b, n:].sum() == 0
    plain = distill_objective(lm, retriever, temperature=0.1, judge_temperature=0.3)
    torch.testing.assert_close(plain.teacher(EXAMPLES, toks), log_p_judge)
