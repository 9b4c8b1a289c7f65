"""Training loop: AdamW, warm-up, accumulation, atomic checkpoints, exact resume.

Run folder layout:
    config.yaml        the validated configuration
    heads.json/.png    the head set H used (copied or selected at start)
    log.jsonl          one line of metrics per optimiser step (on CUDA also the peak allocated and
                       the reserved GPU memory in MB)
    checkpoints/       step-NNNNNNN.pt (retriever's trainable weights, optimiser, schedule, RNG)
    retriever/         the exported sentence-transformers model (written at the end)

Resume restores weights, optimiser, schedule, RNG states and the position in the data order,
so an interrupted run ends with the same weights as an uninterrupted one with the same seed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamir.assets import parse_dtype
from dreamir.checkpoints import (
    as_tuples,
    check_resumed_config,
    checkpoint_files,
    load_checkpoint,
    numpy_state_from_safe,
    numpy_state_to_safe,
)
from dreamir.config import RunConfig, dump_config, settings_without_effect
from dreamir.data.jsonl import DataError
from dreamir.data.training import (
    DataStats,
    Example,
    TokenizedExample,
    examples_fingerprint,
    load_examples,
    shuffled_targets,
    tokenize_examples,
)
from dreamir.distributed import LossStep, init_from_env
from dreamir.files import atomic_open, atomic_write, exclusive_lock
from dreamir.heads import check_heads_file
from dreamir.models.frozen_lm import FrozenLM
from dreamir.models.retriever import Retriever
from dreamir.objectives import ObjectiveContext, build_objective, objective_classes
from dreamir.objectives.base import own_learning_rates, trainable_parameters
from dreamir.objectives.distill import teacher_fit

log = logging.getLogger(__name__)

_KILL_ENV = "DREAMIR_KILL_AT_STEP"  # fault injection for the resume test: SIGKILL after this step


@dataclass
class TrainResult:
    run_dir: Path
    retriever_dir: Path
    steps: int  # the run's steps in all (earlier sessions' included after --resume)
    loss_start: float  # mean batch loss over the first quarter of the run's steps (resumed ones included)
    loss_end: float  # ... and over the last quarter (different batches: a trend, not a paired test)
    seconds: float  # this session's
    resumed_from: int = 0  # the step this session started at (0: a fresh run)

    @property
    def steps_this_session(self) -> int:
        return self.steps - self.resumed_from


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_retriever(config: RunConfig) -> Retriever:
    rc = config.retriever
    return Retriever.load(
        rc.name,
        pooling=rc.pooling,
        query_prefix=rc.query_prefix,
        doc_prefix=rc.doc_prefix,
        max_length=rc.max_length,
        lora=rc.lora,
        device=config.device,
        dtype=parse_dtype(config.dtype),
        architecture=rc.architecture,
    )


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        lm: FrozenLM | None = None,
        retriever: Retriever | None = None,
        examples: list[Example] | None = None,
        show_progress: bool = True,
    ) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.group = init_from_env(config.device)
        if self.group.world_size > 1 and config.device.startswith("cuda"):
            config = config.model_copy(update={"device": f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"})
            self.config = config
        self.show_progress = show_progress and self.group.is_main
        seed_everything(config.seed)
        self.stats = DataStats()
        if examples is None:
            if not config.data.train:
                raise ValueError("no training data: set data.train (a JSONL of query/target/candidates)")
            examples = load_examples(config.data.train, self.stats)
        if config.data.max_examples:
            examples = examples[: config.data.max_examples]
        if not examples:
            source = config.data.train or "the examples given"
            raise ValueError(f"no usable training examples in {source} ({self.stats.summary()})")
        llm_examples = examples
        if config.data.shuffle_targets:
            llm_examples = shuffled_targets(examples, config.data.shuffle_seed)
            examples = examples if config.data.shuffle_targets_for == "llm" else llm_examples
        self.examples = examples
        self.data_fingerprint = examples_fingerprint(examples)  # checked on resume: same path, other data?
        self.lm = lm
        classes = objective_classes(config.train.objective)
        if config.heads.file and any(cls.uses_heads for cls in classes):  # before any model is loaded
            check_heads_file(config.heads, config.llm.name)
        if self.lm is None and any(cls.needs_llm for cls in classes):
            self.lm = FrozenLM.load(config.llm.name, device=config.device, dtype=config.dtype)
        self.tokenized: list[TokenizedExample | None] = (
            list(tokenize_examples(llm_examples, self.lm.tokenize, config.data.limits, self.stats))
            if self.lm is not None
            else [None] * len(examples)
        )
        self.retriever = retriever or build_retriever(config)
        if config.train.gradient_checkpointing:
            self.retriever.enable_gradient_checkpointing()
            if self.lm is not None:
                self.lm.gradient_checkpointing = True
        if self.group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        context = ObjectiveContext(config, self.retriever, self.lm, examples, self.run_dir, self.group)
        # The run's loss (its objective, or their weighted sum, plus the anchor): built before any checkpoint is
        # loaded, since the anchor and the judge-and-start teacher hold the start, not a resumed state.
        self.objective = build_objective(context)
        # what each micro-batch calls: the loss, inside DistributedDataParallel when several processes train
        self.loss_step = self.group.wrap(LossStep(self.retriever, self.objective), config.device)
        tc = config.train
        # Built before any checkpoint is loaded (a resume overwrites the EMA with its saved state).
        self.ema: dict[str, torch.Tensor] = (
            {n: p.detach().clone() for n, p in self.retriever.named_parameters() if p.requires_grad}
            if tc.ema_decay is not None
            else {}
        )
        self.objective_params = trainable_parameters(self.objective)  # e.g. a learnable τ, Revela's LM adapters
        own_lr = {f"objective.{n}": lr for n, lr in own_learning_rates(self.objective).items()}
        groups = [{"params": [p for n, p in self._named_trainable() if n not in own_lr]}]
        # e.g. a learnable temperature: its own rate, and no decay pulling log τ to 0
        named = dict(self._named_trainable())
        groups += [{"params": [named[n]], "lr": lr, "weight_decay": 0.0} for n, lr in own_lr.items()]
        self.optimizer = torch.optim.AdamW(groups, lr=config.train.lr, weight_decay=config.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0

    def _named_trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        retriever = [(f"retriever.{n}", p) for n, p in self.retriever.named_parameters() if p.requires_grad]
        return retriever + [(f"objective.{n}", p) for n, p in self.objective_params.items()]

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self._named_trainable()]

    # ------------------------------------------------------------------ schedule and data order
    def _lr_factor(self, step: int) -> float:
        tc = self.config.train
        if tc.warmup_steps and step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        if tc.schedule == "constant":
            return 1.0
        remaining = tc.max_steps - tc.warmup_steps
        return max(0.0, (tc.max_steps - step) / remaining) if remaining > 0 else 1.0

    def _micro_batch(self, index: int) -> list[int]:
        """This process's example indices of global micro-batch `index` (= step × grad_accum + micro).

        A fresh seeded permutation each epoch. An optimiser step takes batch_size × world_size × grad_accum
        consecutive examples of it (a last partial step's worth is dropped), each micro-batch the next
        batch_size × world_size and each rank its slice: the data a step sees does not depend on how its batch
        is split over processes and micro-batches.
        """
        tc = self.config.train
        size, accum = tc.batch_size, tc.grad_accum
        global_size = size * self.group.world_size
        step, micro = divmod(index, accum)
        per_epoch = max(1, len(self.examples) // (global_size * accum))  # optimiser steps per epoch
        epoch, within = divmod(step, per_epoch)
        order = list(range(len(self.examples)))
        random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
        start = (within * accum + micro) * global_size + self.group.rank * size
        return order[start : start + size]

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self, step: int) -> Path:
        return self.run_dir / "checkpoints" / f"step-{step:07d}.pt"

    def save_checkpoint(self) -> Path | None:
        if not self.group.is_main:
            return None
        state = {
            "step": self.step,
            "retriever": self.retriever.trainable_state(),
            "objective": {name: p.detach().cpu().clone() for name, p in self.objective_params.items()},
            "ema": {name: value.cpu().clone() for name, value in self.ema.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": numpy_state_to_safe(np.random.get_state()),
            },
            "config": self.config.model_dump(),
            "data_fingerprint": self.data_fingerprint,
        }
        path = self._checkpoint_path(self.step)
        with atomic_open(path, "wb") as handle:  # a reader sees the old set of files or the new one
            torch.save(state, handle)
        # Prune this run's earlier checkpoints only — steps up to this one, in torch's zip format — oldest first:
        # a foreign or unreadable file in checkpoints/ (say, a later step number) is neither ours to delete nor a
        # reason to delete ours, so the one just written always survives.
        ours = [p for p in checkpoint_files(self.run_dir, up_to=self.step) if zipfile.is_zipfile(p)]
        for old in ours[: -self.config.train.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        found = checkpoint_files(self.run_dir)
        return found[-1] if found else None

    def resume(self, allow_config_change: bool = False) -> bool:
        loaded = load_checkpoint(self.run_dir)
        if loaded is None:
            if self.group.is_main:
                folder = self.run_dir / "checkpoints"
                print(f"[dreamir] --resume: no readable checkpoint in {folder}; starting at step 0")
                self._truncate_log(0)  # rows of the lost steps would be logged twice
            return False
        path, state = loaded
        saved_data = state.get("data_fingerprint")
        if saved_data is not None and saved_data != self.data_fingerprint and not allow_config_change:
            raise ValueError(
                f"--resume with other training data than the checkpoint {path} was trained on (same path "
                f"'{self.config.data.train}', different examples); pass --allow-config-change to continue anyway"
            )
        check_resumed_config(
            state.get("config", {}),
            self.config.model_dump(),
            path,
            allow_config_change,
            settings_without_effect(self.config.train.objective, resuming=True),
        )
        self.retriever.load_trainable_state(state["retriever"])
        saved = state.get("objective", {})
        if set(saved) != set(self.objective_params):
            raise ValueError(
                f"{path} holds the loss parameters {sorted(saved)}, but this run's loss has "
                f"{sorted(self.objective_params)}: it was written by another objective or version"
            )
        with torch.no_grad():
            for name, value in saved.items():
                self.objective_params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(as_tuples(state["rng"]["python"]))
        np.random.set_state(numpy_state_from_safe(state["rng"]["numpy"]))
        for name, value in state.get("ema", {}).items():
            self.ema[name].copy_(value)
        self.step = int(state["step"])
        if self.group.is_main:
            self._truncate_log(self.step)
        log.info("resumed from %s (step %d)", path, self.step)
        return True

    def _truncate_log(self, step: int) -> None:
        """Drop log lines of steps after the checkpoint: they will be trained again."""
        path = self.run_dir / "log.jsonl"
        if not path.exists():
            return
        kept = [row for row in read_log(path) if row["step"] <= step]
        atomic_write(path, "".join(json.dumps(row) + "\n" for row in kept))

    def _logged_losses(self) -> list[float]:
        """Losses of the steps already done (up to `self.step`), from log.jsonl; [] on a fresh run."""
        path = self.run_dir / "log.jsonl"
        if self.step == 0 or not path.exists():
            return []
        rows = read_log(path)
        return [row["loss"] for row in sorted(rows, key=lambda row: row["step"]) if row["step"] <= self.step]

    # ------------------------------------------------------------------ loop
    def precompute(self) -> str:
        """What the objective can compute ahead of training (DREAM-distill: the judge signal), for this
        process's share of the examples; trains nothing."""
        mine = [t for t in self.tokenized[self.group.rank :: self.group.world_size] if t is not None]
        return self.objective.precompute(mine, self.config.train.batch_size, self.show_progress)

    def train(self, resume: bool = False, allow_config_change: bool = False) -> TrainResult:
        """Train to `train.max_steps` (from the last checkpoint with `resume`). The run folder is locked for the
        run's life: a second process training into it fails at once instead of interleaving its writes."""
        if not self.group.is_main:
            return self._train(resume, allow_config_change)
        with exclusive_lock(self.run_dir, f"run folder {self.run_dir}"):
            return self._train(resume, allow_config_change)

    def _train(self, resume: bool, allow_config_change: bool) -> TrainResult:
        tc = self.config.train
        if resume:
            self.resume(allow_config_change)  # before config.yaml is written: a refused resume changes nothing
        elif self.latest_checkpoint() is not None:
            raise FileExistsError(
                f"{self.run_dir} already has checkpoints; pass --resume to continue it or choose another run_dir"
            )
        if self.group.is_main:
            if self.step == 0:
                self._truncate_log(0)  # rows of an earlier attempt that saved no checkpoint
            dump_config(self.config, self.run_dir / "config.yaml")
        if self.group.is_main:
            print(
                f"[dreamir] {len(self.examples)} training examples; data: {self.stats.summary()}; "
                f"{self.group.world_size} process(es) × batch {tc.batch_size}"
            )
            if plan := self.objective.plan([t for t in self.tokenized if t is not None]):
                print(f"[dreamir] {plan}")
        kill_at = int(os.environ.get(_KILL_ENV, "0") or 0)
        resumed_from = self.step
        self.retriever.train()
        start_time = time.perf_counter()
        losses = self._logged_losses()  # a resumed run's trend covers its steps before the crash too
        bar = tqdm(
            total=tc.max_steps,
            initial=self.step,
            desc=f"train {self.config.train.objective}",
            unit="step",
            disable=not self.show_progress,
        )
        log_path = self.run_dir / "log.jsonl" if self.group.is_main else Path(os.devnull)
        board = tensorboard_writer(self.run_dir, self.step) if self.group.is_main and tc.tensorboard else None
        with open(log_path, "a") as log_file, contextlib.closing(board) if board else contextlib.nullcontext():
            while self.step < tc.max_steps:
                t0 = time.perf_counter()
                metrics = self._optimizer_step()
                self.step += 1
                seconds = time.perf_counter() - t0
                n_ex = tc.batch_size * tc.grad_accum * self.group.world_size
                metrics.update(
                    step=self.step,
                    lr=self.scheduler.get_last_lr()[0],
                    seconds=seconds,
                    examples_per_s=n_ex / seconds,
                )
                if torch.device(self.config.device).type == "cuda":  # a growing peak is a leak, not caching
                    metrics.update(
                        cuda_peak_allocated_mb=torch.cuda.max_memory_allocated(self.config.device) / 2**20,
                        cuda_reserved_mb=torch.cuda.memory_reserved(self.config.device) / 2**20,
                    )
                log_file.write(json.dumps(metrics) + "\n")
                log_file.flush()
                if board is not None:
                    for key, value in metrics.items():
                        if key != "step":
                            board.add_scalar(key, value, self.step)
                losses.append(metrics["loss"])
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", ex_s=f"{metrics['examples_per_s']:.2f}")
                bar.update(1)
                if self.step % tc.checkpoint_every == 0 or self.step == tc.max_steps:
                    self.save_checkpoint()
                if kill_at and self.step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
        bar.close()
        if self.ema:  # the run's result is the averaged retriever
            with torch.no_grad():
                for name, p in self.retriever.named_parameters():
                    if name in self.ema:
                        p.copy_(self.ema[name])
        summary = self.objective.summary()
        if summary and self.group.is_main:
            print(f"[dreamir] {summary}")
        log_path = self.run_dir / "log.jsonl"
        if self.group.is_main and log_path.exists() and (fit := teacher_fit(read_log(log_path))):
            print(f"[dreamir] {fit}")
        retriever_dir = self.run_dir / "retriever"
        if self.group.is_main:
            export_with_heads(self.retriever, self.run_dir, retriever_dir)
            try:  # a picture of the curves: its failure never ends a finished training (log.jsonl holds them)
                plot_training(self.run_dir / "log.jsonl", self.run_dir / "training.png")
            except Exception as err:  # e.g. Ctrl-C while matplotlib's C backend loads reads as an ImportError
                print(f"[dreamir] warning: could not draw training.png ({type(err).__name__}: {err})")
        self.group.barrier()
        quarter = max(1, len(losses) // 4)
        return TrainResult(
            self.run_dir,
            retriever_dir,
            self.step,
            float(np.mean(losses[:quarter])) if losses else float("nan"),
            float(np.mean(losses[-quarter:])) if losses else float("nan"),
            time.perf_counter() - start_time,
            resumed_from,
        )

    def _check_finite(self, totals: dict[str, float], params: list[torch.nn.Parameter]) -> None:
        """Stop before a NaN or inf reaches the weights: the last checkpoint stays the run's last good state."""
        norms = [p.grad.detach().norm() for p in params if p.grad is not None]
        loss_ok = math.isfinite(totals.get("loss", 0.0))
        if loss_ok and (not norms or bool(torch.isfinite(torch.stack(norms)).all())):
            return
        kept = self.latest_checkpoint()
        raise NonFiniteTraining(
            f"non-finite {'gradient' if loss_ok else 'loss'} at step {self.step + 1} (loss {totals.get('loss')}): "
            f"training stopped before the update; "
            + (f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet")
            + " — lower train.lr or check the data, then --resume"
        )

    def _optimizer_step(self) -> dict:
        tc = self.config.train
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro in range(tc.grad_accum):
            idx = self._micro_batch(self.step * tc.grad_accum + micro)
            batch = [self.examples[i] for i in idx]
            with self.group.accumulating(self.loss_step, more_to_come=micro < tc.grad_accum - 1):
                out = self.loss_step(batch, [self.tokenized[i] for i in idx])
                (out.loss / tc.grad_accum).backward()
            for key, value in out.metrics.items():
                totals[key] = totals.get(key, 0.0) + value / tc.grad_accum
        params = self._trainable()
        self._check_finite(totals, params)
        totals = {key: self.group.average(value) for key, value in totals.items()}
        if tc.max_grad_norm is not None:
            totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema:
            decay = self.config.train.ema_decay
            with torch.no_grad():
                for name, p in self.retriever.named_parameters():
                    if name in self.ema:
                        self.ema[name].lerp_(p.detach(), 1 - decay)
        return totals


def read_log(path: Path) -> list[dict]:
    """The rows of a run's log.jsonl. A last line cut short (the process was killed mid-write) is dropped with a
    warning, as resume rewrites the log anyway; a bad line before it is an error naming the file and line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                log.warning("%s: dropping a last line cut short (line %d)", path, number)
                break
            raise DataError(path, number, "not a JSON log row; remove the line or the log") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise DataError(path, number, "a log row without an integer 'step'")
        rows.append(row)
    return rows


def tensorboard_writer(run_dir: Path, step: int):
    """A TensorBoard `SummaryWriter` on run_dir/tensorboard when tensorboard is installed, else None. A resumed run
    purges the events after its checkpoint's `step` (they are trained again)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: training metrics go to log.jsonl only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=step + 1 if step else None)


def plot_training(log_path: Path, out: Path) -> Path | None:
    """Loss per step (each term of a sum too) and τ where the objective has one, from log.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path) if log_path.exists() else []
    if not rows:
        return None
    steps = [row["step"] for row in rows]
    losses = sorted(key for key in rows[-1] if key == "loss" or key.startswith("loss_"))
    panels = [losses] + ([["tau"]] if "tau" in rows[-1] else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    for axis, keys in zip(axes[0], panels, strict=True):
        for key in keys:
            axis.plot(steps, [row.get(key, float("nan")) for row in rows], label=key)
        axis.set_xlabel("step")
        axis.set_title("τ" if keys == ["tau"] else "loss")
        if len(keys) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_open(out, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return out


class NonFiniteTraining(ValueError):
    """A loss or gradient became NaN or infinite."""


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a run's latest checkpoint (or its final retriever) as a sentence-transformers folder."""
    from dreamir.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a dreamir run (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    loaded = load_checkpoint(run_dir)
    if loaded is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to export")
    retriever = build_retriever(config)
    state = loaded[1]
    # the run's result: its moving average when train.ema_decay is set (as the export at the end of training)
    retriever.load_trainable_state(state["ema"] if state.get("ema") else state["retriever"])
    return export_with_heads(retriever, run_dir, out)


def export_with_heads(retriever: Retriever, run_dir: Path, out: str | os.PathLike) -> Path:
    broken = [name for name, p in retriever.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        raise ValueError(f"refusing to export {run_dir}: non-finite weights in {', '.join(broken[:3])}")
    heads = run_dir / "heads.json"  # keep H with the trained model (docs/method.md)
    return retriever.export(out, {"dreamir_heads.json": heads} if heads.exists() else None)
