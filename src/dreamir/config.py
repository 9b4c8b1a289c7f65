"""Training configuration: a YAML file and/or flags, validated by pydantic.

Unknown keys and wrong types are errors that name the key (e.g. "train.lr: Input should be a
valid number"). Every method decision is a field with its default: the run's own settings in
`settings.py`, each objective's in its own file (its `Config`, the `<name>:` section); `RunConfig`
joins them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError, create_model, model_validator

from dreamir.objectives import OBJECTIVES, canonical_objective, unread_sections
from dreamir.settings import NO_EFFECT, RESUMABLE, LoraConfig, RunSettings, StrictConfig, TokenLimits

__all__ = ["ConfigError", "LoraConfig", "RunConfig", "StrictConfig", "TokenLimits", "load_config"]


def _known_objective(text: str) -> str:
    return canonical_objective(text)


# A name in dreamir.objectives.OBJECTIVES or a weighted sum of them ("dream_distill + 0.5 * infonce"), canonical
ObjectiveName = Annotated[str, AfterValidator(_known_objective)]


def _canonical_run_objective(config: RunSettings) -> RunSettings:
    """train.objective: a known objective or sum, stored in its one spelling (an error names the key)."""
    try:
        canonical = canonical_objective(config.train.objective)
    except ValueError as err:
        raise ValueError(f"train.objective: {err}") from None
    if canonical != config.train.objective:
        config.train.objective = canonical
    return config


if TYPE_CHECKING:
    RunConfig = RunSettings
else:
    # One section per registered objective (`dream:`, `replug:`, ...), each the objective's own Config.
    RunConfig = create_model(
        "RunConfig",
        __base__=RunSettings,
        __module__=__name__,
        __validators__={"_objective_known": model_validator(mode="after")(_canonical_run_objective)},
        **{name: (cls.Config, Field(default_factory=cls.Config)) for name, cls in OBJECTIVES.items()},
    )


class ConfigError(ValueError):
    pass


def settings_without_effect(objective: str, resuming: bool) -> tuple[str, ...]:
    """Dotted prefixes of the settings that cannot change what a run computed, so resuming an interrupted run
    (`resuming`) or reusing a finished one ignores a change in them: the fields the schema tags `no_effect`, on
    resume also those tagged `resumable`, and the sections of objectives the run does not read."""
    keys = RunConfig.tagged_keys(NO_EFFECT) + (RunConfig.tagged_keys(RESUMABLE) if resuming else ())
    return keys + unread_sections(objective)


# Keys that were renamed or replaced: an old config fails with a message naming the new form.
MOVED_KEYS = {
    "dream_distill.contrastive_weight": (
        "a weighted sum of objectives replaced it: train.objective: 'dream_distill + W * infonce'"
    ),
    "replug.retriever_temperature": "renamed replug.temperature (every objective's retriever τ is `temperature`)",
}


def format_config_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "extra_forbidden" and key in MOVED_KEYS:
            msg = f"no longer a key: {MOVED_KEYS[key]}"
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, except that a key given twice in one mapping is an error (yaml keeps the last one,
    silently dropping the first: two `train:` sections would lose one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' given twice (lines {seen[key]} and {line})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_config_tree(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> dict:
    """A config file's YAML as a tree, with dotted-key overrides applied: the one reader of every config (runs,
    comparisons). Errors name the file and line; nothing is read but plain YAML (no tags that build objects)."""
    tree: dict = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (IsADirectoryError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not a YAML text file ({err.__class__.__name__})") from None
        try:
            loaded = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        tree = loaded or {}
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    return tree


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML (if given), apply dotted-key overrides, validate."""
    tree = read_config_tree(path, overrides)
    source = str(path) if path is not None else "defaults"
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
