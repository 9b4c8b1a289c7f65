"""Checkpoints: what a run saves, and the checks that make loading one safe.

A checkpoint holds tensors and plain values only, so it loads with `torch.load(weights_only=True)`:
a crafted file in a shared run folder cannot run code. An unreadable newest checkpoint (truncated by
a crash, or foreign) is skipped with a warning and the newest intact one is used. A resumed run must
have the settings its checkpoint was written with, except the fields its schema tags `no_effect` or
`resumable` (settings.py) and the sections of objectives it does not read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def changed_settings(saved: dict, current: dict, safe_keys: tuple[str, ...]) -> dict[str, tuple[object, object]]:
    """The dotted keys whose values differ between two configuration trees, {key: (saved, current)},
    leaving out keys that start with one of `safe_keys`."""
    before, after = _flatten(saved), _flatten(current)
    return {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key) and not key.startswith(safe_keys)
    }


def describe_changes(changed: dict[str, tuple[object, object]], limit: int = 10) -> str:
    return "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in list(changed.items())[:limit])


def check_resumed_config(
    saved: dict, current: dict, path: Path, allow_change: bool, safe_keys: tuple[str, ...] = ()
) -> None:
    """Refuse to resume with settings that differ from the checkpoint's, except `safe_keys` (dotted prefixes: the
    settings a resume may change, and the sections of objectives this run does not read)."""
    changed = changed_settings(saved, current, safe_keys)
    if changed and not allow_change:
        details = describe_changes(changed)
        raise ValueError(
            f"--resume with a configuration that differs from the checkpoint {path} in {len(changed)} key(s): "
            f"{details}. Resume with the run's own settings, start a new run_dir, or pass --allow-config-change"
        )
    if changed:
        log.warning("resuming %s with changed settings: %s", path, ", ".join(changed))


def checkpoint_files(run_dir: Path, up_to: int | None = None) -> list[Path]:
    """A run's checkpoint files (checkpoints/step-NNNNNNN.pt), oldest first; with `up_to`, those of steps ≤ it."""
    found = []
    for candidate in run_dir.glob("checkpoints/step-*.pt"):
        number = candidate.stem.removeprefix("step-")
        if number.isdigit() and (up_to is None or int(number) <= up_to):
            found.append(candidate)
    return sorted(found)


def load_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads (weights only: a checkpoint never runs code), or None if there
    is none. A truncated or corrupt newer one is skipped with a warning naming it."""
    for path in reversed(checkpoint_files(run_dir)):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated zip, a foreign pickle: either way not ours to trust
            print(f"[dreamir] warning: skipping unreadable checkpoint {path} ({type(err).__name__}: {err})")
    return None


def numpy_state_to_safe(state: tuple) -> tuple:
    name, keys, position, has_gauss, cached = state
    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), float(cached))


def numpy_state_from_safe(state) -> tuple:
    name, keys, position, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached)


def as_tuples(value):
    """random.setstate wants the nested tuples it gave (a loaded checkpoint may hold lists)."""
    return tuple(as_tuples(v) for v in value) if isinstance(value, list | tuple) else value
