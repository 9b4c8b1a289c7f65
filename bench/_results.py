"""What every benchmark records: the machine it ran on, and its JSON written atomically."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from dreamir.config import ConfigError
from dreamir.data.jsonl import DataError
from dreamir.files import atomic_write


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    threads = torch.get_num_threads()
    return f"{platform.machine()} {device}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


def write_result(path: str | os.PathLike, result: dict) -> Path:
    return atomic_write(path, json.dumps({"machine": machine(), **result}, indent=1))


def read_result(path: str | os.PathLike) -> dict | None:
    """A benchmark's earlier JSON (to merge rows into), or None when there is none yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main: a configuration error (a bad key, a run trained with other settings) or
    bad input data (its file, line and field named) ends it with its message, not a traceback."""
    try:
        main()
    except (ConfigError, DataError) as err:
        raise SystemExit(f"error: {err}") from None
