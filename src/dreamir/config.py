"""Training configuration: a YAML file and/or flags, validated by pydantic.

Unknown keys and wrong types are errors that name the key (e.g. "train.lr: Input should be a
valid number"). Every METHOD decision is a field, with METHOD's default: the run's own settings
here, each objective's in its own file (its `Config`, the `<name>:` section).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, create_model, field_validator, model_validator

from dreamir.objectives import OBJECTIVES, get_objective
from dreamir.settings import LoraConfig, StrictConfig, TokenLimits

__all__ = ["ConfigError", "LoraConfig", "RunConfig", "StrictConfig", "TokenLimits", "load_config"]


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
    # (`dream_distill.contrastive_weight`), whose positive is the target
    shuffle_targets_for: Literal["all", "llm"] = "all"
    limits: TokenLimits = TokenLimits()


class HeadsConfig(StrictConfig):
    file: str | None = None  # a `dreamir heads` JSON; if unset, heads are selected at the start of training
    count: int | Literal["all"] = 16
    scoring: Literal["gradient", "attention"] = "gradient"
    detection_examples: int = Field(32, gt=0)

    @field_validator("count")
    @classmethod
    def _positive_count(cls, count: int | str) -> int | str:
        if isinstance(count, int) and count < 1:
            raise ValueError(f"a positive number of heads or 'all', got {count}")
        return count


def _known_objective(name: str) -> str:
    get_objective(name)
    return name


ObjectiveName = Annotated[str, AfterValidator(_known_objective)]  # a name in dreamir.objectives.OBJECTIVES


class TrainConfig(StrictConfig):
    objective: ObjectiveName = "dream"
    batch_size: int = Field(4, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(10, ge=0)
    schedule: Literal["linear", "constant"] = "linear"
    max_steps: int = Field(100, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    checkpoint_every: int = Field(25, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    # Keep a good start near itself unless the signal says otherwise (any objective): "kl" adds
    # anchor_weight · KL(P_start ‖ P_θ) over each example's candidates, P = softmax(s / anchor_temperature)
    # with P_start from the retriever as it was before training; "l2sp" adds anchor_weight · ‖θ − θ_start‖²
    # over the trainable weights.
    anchor: Literal["none", "kl", "l2sp"] = "none"
    # An exponential moving average of the trainable weights (e ← d·e + (1−d)·θ after every step);
    # when set, the run ends with (and exports) the averaged weights. None = off.
    ema_decay: float | None = Field(None, ge=0, lt=1)
    anchor_weight: float = Field(1.0, ge=0)
    anchor_temperature: float = Field(0.05, gt=0)
    # Recompute layer activations in the backward pass (the retriever's backbone and the frozen LLM's
    # [q][y] graph segment) instead of keeping them: less memory, one more forward, same gradients.
    gradient_checkpointing: bool = False


class RunSettings(StrictConfig):
    """The run's own settings; `RunConfig` adds one section per registered objective."""

    run_dir: str = "runs/dream"
    seed: int = 0
    device: str = "cpu"
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

    def objective_config(self) -> StrictConfig:
        """The section of the objective this run trains with."""
        return getattr(self, self.train.objective)


if TYPE_CHECKING:
    RunConfig = RunSettings
else:
    # One section per registered objective (`dream:`, `replug:`, ...), each the objective's own Config.
    RunConfig = create_model(
        "RunConfig",
        __base__=RunSettings,
        __module__=__name__,
        **{name: (cls.Config, Field(default_factory=cls.Config)) for name, cls in OBJECTIVES.items()},
    )


class ConfigError(ValueError):
    pass


def format_config_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in a YAML tree; a number indexes a list ("datasets.0.build.max_examples")."""
    node: Any = tree
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"cannot set '{dotted}': '{part}' is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"cannot set '{dotted}': '{parts[depth - 1]}' is not a section")


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML (if given), apply dotted-key overrides, validate."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        tree = loaded or {}
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_config_errors(err, source)) from None


def parse_override(item: str) -> tuple[str, Any]:
    """ "train.lr=1e-4" → ("train.lr", 1e-4); values parsed as YAML scalars."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"--set {item}: the value is not valid YAML ({reason})") from None


def dump_config(config: RunConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
