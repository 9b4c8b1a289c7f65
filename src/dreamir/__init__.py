"""dreamir: label-free dense retriever training from a frozen LLM's next-token loss (DREAM).

Public names are imported lazily so that `import dreamir` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FrozenLM": "dreamir.models.frozen_lm",
    "Retriever": "dreamir.models.retriever",
    "LoraConfig": "dreamir.settings",
    "TokenLimits": "dreamir.settings",
    "HeadInjection": "dreamir.models.injection",
    "DreamObjective": "dreamir.objectives.dream",
    "DreamConfig": "dreamir.objectives.dream",
    "OBJECTIVES": "dreamir.objectives",
    "Trainer": "dreamir.trainer",
    "export_run": "dreamir.trainer",
    "RunConfig": "dreamir.config",
    "load_config": "dreamir.config",
    "score_heads": "dreamir.heads",
    "load_heads": "dreamir.heads",
    "detection_examples_from_texts": "dreamir.heads",
    "examples_from_qrels": "dreamir.heads",
    "Example": "dreamir.data.training",
    "load_examples": "dreamir.data.training",
    "build_self_supervised": "dreamir.data.text",
    "load_beir": "dreamir.data.beir",
    "evaluate_model": "dreamir.evaluation.evaluate",
    "run_quickstart": "dreamir.apps.quickstart",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dreamir' has no attribute '{name}'")
