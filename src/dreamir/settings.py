"""Config sections shared by several layers (the bottom of the house: imports nothing of dreamir).

Each setting is defined once, here or in the module that owns it (each objective's section lives in
its objective's file); `config.py` assembles them into a run configuration. Sections reject unknown
keys, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictConfig(BaseModel):
    """A config section that rejects unknown keys, so a typo fails loudly instead of being ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
