"""Golden values: every objective/teacher/anchor combination's loss and retriever gradient on the tiny models.

The values in tests/data/golden_losses.safetensors were written by the code before the teachers-and-losses
redesign (issue 33, commit 584dce5: `python -m tests.test_golden_losses --write`, where a sum was
`dream_distill.contrastive_weight` and the metric `loss` left out the anchor); the redesign reproduced them to 1e-6
on the machine that wrote them. On another CPU the same fp32 code sums in another order (other vector widths in the
kernels): on an AMD EPYC the losses agree to 1.6e-6 relative and the gradients to 6.3e-5 (measured over every
combination, 2026-12-08), hence the relative tolerances below — a changed term (an anchor, a τ, a stop-gradient)
moves a loss or gradient by far more than 1e-3.
A combination is named `<objective>[-variant]|<anchor>`; COMBINATIONS says how each is configured today.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.test_trainer import write_train_data

GOLDEN = Path(__file__).parent / "data" / "golden_losses.safetensors"
# fp32 across CPUs: what rounding in another summation order can move, with a margin (measured: 1.6e-6 and 6.3e-5).
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL = 1e-3

# name → (train.objective, overrides)
COMBINATIONS: dict[str, tuple[str, dict]] = {
    "dream-bias": ("dream", {"dream.mode": "bias"}),
    "dream-reweight": ("dream", {"dream.mode": "reweight"}),
    "dream-learned-tau": ("dream", {"dream.learn_temperature": True}),
    "distill-judge": ("dream_distill", {}),
    "distill-judge-and-start": ("dream_distill", {"dream_distill.teacher": "judge_and_start"}),
    "distill-judge-plus-infonce": ("dream_distill + 0.5 * infonce", {}),
    "distill-judge-and-start-plus-infonce": (
        "dream_distill + 0.5 * infonce",
        {"dream_distill.teacher": "judge_and_start"},
    ),
    "distill-learned-tau": ("dream_distill", {"dream_distill.learn_temperature": True}),
    "replug": ("replug", {}),
    "revela": ("revela", {"revela.temperature": 0.1}),
    "revela-lm-lora": ("revela", {"revela.temperature": 0.1, "revela.train_lm": True}),
    "infonce": ("infonce", {}),
}
ANCHORS = ("none", "kl", "l2sp")


def measure(name: str, anchor: str, tmp_path: Path, llm_dir: Path, encoder_dir: Path) -> dict[str, torch.Tensor]:
    """The total loss of the second optimiser step (the first moves the weights off the start, so the anchors
    are not zero) and the gradient it leaves on the trainable weights (the retriever's, then the loss's own),
    before its update; no clipping, eval mode."""
    from dreamir.config import load_config
    from dreamir.trainer import Trainer

    objective, overrides = COMBINATIONS[name]
    data = tmp_path / "train.jsonl"
    if not data.exists():
        write_train_data(data, n=8)
    settings = {
        "run_dir": str(tmp_path / f"{name}-{anchor}"),
        "seed": 3,
        "llm.name": str(llm_dir),
        "retriever.name": str(encoder_dir),
        "data.train": str(data),
        "heads.count": 4,
        "heads.detection_examples": 4,
        "heads.seed": 3,  # the values were recorded when label-free head selection was seeded by the run's seed
        "train.objective": objective,
        "train.batch_size": 4,
        "train.max_grad_norm": None,
        "train.warmup_steps": 0,
        "train.lr": 0.02,  # a first step large enough that the anchors are far from zero
        "train.anchor": anchor,
        "train.anchor_weight": 0.7,
        **overrides,
    }
    torch.manual_seed(0)
    trainer = Trainer(load_config(None, settings), show_progress=False)
    trainer.retriever.eval()  # no dropout: the values depend on the math only
    trainer._optimizer_step()
    trainer.step += 1
    metrics = trainer._optimizer_step()
    grads = [p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in trainer._trainable()]
    return {"loss": torch.tensor([metrics["loss"]], dtype=torch.float64), "grad": project(torch.cat(grads).double())}


def project(gradient: torch.Tensor, directions: int = 256) -> torch.Tensor:
    """The gradient's coordinates along fixed random unit-variance directions, scaled so that the distance
    between two projections estimates the distance between the full gradients (Johnson–Lindenstrauss), plus its
    norm: a few KB instead of the full vectors, and any difference above the tolerance shows."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(directions, gradient.numel(), generator=generator, dtype=torch.float64)
    return torch.cat([basis @ gradient / directions**0.5, gradient.norm().reshape(1)])


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_loss_and_gradient_match_the_values_before_the_redesign(name, anchor, tmp_path, tiny_llm_dir, tiny_encoder_dir):
    golden = load_file(GOLDEN)
    got = measure(name, anchor, tmp_path, tiny_llm_dir, tiny_encoder_dir)
    key = f"{name}|{anchor}"
    torch.testing.assert_close(got["loss"], golden[f"{key}|loss"], rtol=LOSS_RTOL, atol=LOSS_ATOL)
    assert golden[f"{key}|grad"][-1] > 1e-3  # a gradient that could disagree
    if anchor != "none":  # the anchor term is in the values
        assert golden[f"{key}|loss"] != golden[f"{name}|none|loss"]
    # ‖P(g − g_golden)‖ ≈ ‖g − g_golden‖ (to a few % at 256 directions), relative to the gradient norm (last entry)
    assert float((got["grad"] - golden[f"{key}|grad"]).norm()) < GRAD_RTOL * float(golden[f"{key}|grad"][-1])


def write_golden() -> None:
    import tempfile

    from dreamir.testing import save_tiny_decoder, save_tiny_encoder

    values: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        encoder = save_tiny_encoder(root / "tiny-bert")
        llm = save_tiny_decoder(root / "tiny-llama", "llama")
        for name in COMBINATIONS:
            for anchor in ANCHORS:
                work = root / f"w-{name}-{anchor}"
                work.mkdir()
                for field, value in measure(name, anchor, work, llm, encoder).items():
                    values[f"{name}|{anchor}|{field}"] = value.contiguous()
                print(name, anchor, float(values[f"{name}|{anchor}|loss"]), flush=True)
    GOLDEN.parent.mkdir(exist_ok=True)
    save_file(values, str(GOLDEN))


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_golden()
