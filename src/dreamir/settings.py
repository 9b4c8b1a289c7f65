"""The run's settings, section by section (the bottom of the house: imports nothing of dreamir).

Each setting is defined once, here or in the module that owns it (each objective's section lives in
its objective's file); `config.py` assembles them into a run configuration (`RunConfig` = `RunSettings`
plus one section per objective) and reads it from YAML. Sections reject unknown keys, so a typo fails
loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Tags on fields (`json_schema_extra`), from which the resume and reuse rules derive:
NO_EFFECT = "no_effect"  # where or how a run works, not what it computes: resume and reuse ignore a change
RESUMABLE = "resumable"  # may change when an interrupted run resumes (not when a finished one is reused)


def tagged(tag: str) -> dict[str, bool]:
    return {tag: True}


class StrictConfig(BaseModel):
    """A config section that rejects unknown keys, so a typo fails loudly instead of being ignored."""

    # allow_inf_nan=False: `train.lr: .inf` is refused here, not discovered as a NaN model hours later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @classmethod
    def tagged_keys(cls, tag: str, prefix: str = "") -> tuple[str, ...]:
        """The dotted keys of the fields carrying `tag`, through nested sections."""
        keys: list[str] = []
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get(tag):
                keys.append(prefix + name)
            section = field.annotation
            if isinstance(section, type) and issubclass(section, StrictConfig):
                keys += section.tagged_keys(tag, f"{prefix}{name}.")
        return tuple(keys)


class LoraConfig(StrictConfig):
    """LoRA adapters (peft) for a retriever or, in Revela, the LM."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class TokenLimits(StrictConfig):
    """Frozen-LLM tokens kept per query, target and candidate document (longer ones are truncated)."""

    query: int = Field(64, gt=0)
    target: int = Field(64, gt=0)
    doc: int = Field(128, gt=0)


class LLMConfig(StrictConfig):
    name: str = "smollm2-135m-instruct"


class RetrieverConfig(StrictConfig):
    name: str = "all-minilm-l6-v2"
    # "static": a bag of trainable token vectors from `name`'s tokenizer and input embeddings (see
    # dreamir.models.retriever; pooling, LoRA and max_length do not apply); "transformer": the model itself.
    architecture: Literal["transformer", "static"] = "transformer"
    pooling: Literal["mean", "cls", "lasttoken"] | None = None
    query_prefix: str | None = None
    doc_prefix: str | None = None
    max_length: int | None = Field(256, gt=0)
    lora: LoraConfig | None = None


class DataConfig(StrictConfig):
    train: str | None = None
    max_examples: int | None = Field(None, gt=0)
    # The control run: each query keeps its candidates and gets another example's target. The shuffle has
    # its own seed, so a control's seeds differ in training only (and share one judge signal cache).
    shuffle_targets: bool = False
    shuffle_seed: int = 0
    # "llm": only the frozen LLM sees the shuffled targets (the judge's signal becomes the control's) while the
    # retriever's own terms keep the real ones — the control of a judge term beside InfoNCE
    # (`train.objective: dream_distill + 0.5 * infonce`), whose positive is the target
    shuffle_targets_for: Literal["all", "llm"] = "all"
    limits: TokenLimits = TokenLimits()


class HeadsConfig(StrictConfig):
    file: str | None = None  # a `dreamir heads` JSON; if unset, heads are selected at the start of training
    count: int | Literal["all"] = 16
    scoring: Literal["gradient", "attention"] = "gradient"
    detection_examples: int = Field(32, gt=0)
    # The label-free selection's sample seed, apart from the run's `seed`: every training seed of one setup selects
    # the same head set, so the seeds share one judge signal (DREAM-distill's store is keyed by H).
    seed: int = 0

    @field_validator("count")
    @classmethod
    def _positive_count(cls, count: int | str) -> int | str:
        if isinstance(count, int) and count < 1:
            raise ValueError(f"a positive number of heads or 'all', got {count}")
        return count


class TrainConfig(StrictConfig):
    # an objective's name, or a weighted sum of them ("dream_distill + 0.5 * infonce"); checked by config.RunConfig
    objective: str = "dream"
    batch_size: int = Field(4, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(10, ge=0)
    schedule: Literal["linear", "constant"] = "linear"
    max_steps: int = Field(100, gt=0, json_schema_extra=tagged(RESUMABLE))  # a resumed run may go further
    max_grad_norm: float | None = Field(1.0, gt=0)
    checkpoint_every: int = Field(25, gt=0, json_schema_extra=tagged(NO_EFFECT))
    keep_checkpoints: int = Field(2, gt=0, json_schema_extra=tagged(NO_EFFECT))
    # Keep a good start near itself unless the signal says otherwise (any objective): "kl" adds
    # anchor_weight · KL(P_start ‖ P_θ) over each example's candidates, P = softmax(s / anchor_temperature)
    # with P_start from the retriever as it was before training; "l2sp" adds anchor_weight · ‖θ − θ_start‖²
    # over the trainable weights.
    # (Built as one more term of the run's weighted sum of objectives.)
    anchor: Literal["none", "kl", "l2sp"] = "none"
    # An exponential moving average of the trainable weights (e ← d·e + (1−d)·θ after every step);
    # when set, the run ends with (and exports) the averaged weights. None = off.
    ema_decay: float | None = Field(None, ge=0, lt=1)
    anchor_weight: float = Field(1.0, ge=0)
    anchor_temperature: float = Field(0.05, gt=0)
    # Recompute layer activations in the backward pass (the retriever's backbone and the frozen LLM's
    # [q][y] graph segment) instead of keeping them: less memory, one more forward, same gradients.
    gradient_checkpointing: bool = False
    # Training metrics also as TensorBoard event files in run_dir/tensorboard (when tensorboard is installed).
    tensorboard: bool = Field(True, json_schema_extra=tagged(NO_EFFECT))


class RunSettings(StrictConfig):
    """The run's own settings; `RunConfig` adds one section per registered objective."""

    run_dir: str = Field("runs/dream", json_schema_extra=tagged(NO_EFFECT))
    seed: int = 0
    device: str = Field("cpu", json_schema_extra=tagged(NO_EFFECT))
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    llm: LLMConfig = LLMConfig()
    retriever: RetrieverConfig = RetrieverConfig()
    data: DataConfig = DataConfig()
    heads: HeadsConfig = HeadsConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _device_known(self) -> RunSettings:
        if not (self.device == "cpu" or self.device.startswith(("cuda", "mps"))):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'mps', got '{self.device}'")
        return self
