"""Training objectives as plug-ins, looked up by name; a run's objective is one of them or a weighted sum.

To add an objective: write `objectives/<name>.py` with an `Objective` subclass (its `name`, its pydantic `Config`
section — which becomes the run config's `<name>:` section —, `needs_llm` and `build`), and add the class to
`OBJECTIVES` below. An objective that distils a distribution over candidates is a `Distill` over a teacher
(`teachers.py`): a new teacher is one class there. Nothing else names them.

`train.objective` is a name or a weighted sum of names, e.g. `"dream_distill + 0.5 * infonce"`.
"""

from __future__ import annotations

import re

from dreamir.objectives.anchor import build_anchor
from dreamir.objectives.base import Objective, ObjectiveContext, ObjectiveOutput
from dreamir.objectives.combine import Sum
from dreamir.objectives.dream import DreamObjective
from dreamir.objectives.dream_distill import DreamDistillObjective
from dreamir.objectives.infonce import InfoNCEObjective
from dreamir.objectives.replug import ReplugObjective
from dreamir.objectives.revela import RevelaObjective

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (
        DreamObjective,
        DreamDistillObjective,
        ReplugObjective,
        RevelaObjective,
        InfoNCEObjective,
    )
}

_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*?\s*)?(?P<name>[A-Za-z_]\w*)\s*$")


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective '{name}'; use one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def parse_objective(text: str) -> list[tuple[float, str]]:
    """`"dream_distill + 0.5 * infonce"` → [(1.0, "dream_distill"), (0.5, "infonce")]; a plain name is one term."""
    terms: list[tuple[float, str]] = []
    for part in str(text).split("+"):
        found = _TERM.match(part)
        if not found:
            raise ValueError(
                f"cannot read objective '{text}': write a name or a sum like 'dream_distill + 0.5 * infonce'"
            )
        weight = float(found["weight"]) if found["weight"] else 1.0
        get_objective(found["name"])
        if weight <= 0:
            raise ValueError(f"objective '{text}': every weight must be positive")
        if any(name == found["name"] for _, name in terms):
            raise ValueError(f"objective '{text}' names '{found['name']}' twice")
        terms.append((weight, found["name"]))
    return terms


def canonical_objective(text: str) -> str:
    """The one spelling of an objective expression (stored in configs, compared on resume and reuse)."""
    return " + ".join(name if weight == 1.0 else f"{weight:g} * {name}" for weight, name in parse_objective(text))


def objective_slug(text: str) -> str:
    """A file-name form of an objective expression: "dream_distill + 0.5 * infonce" → "dream_distill+0.5xinfonce"."""
    return canonical_objective(text).replace(" * ", "x").replace(" ", "")


def objective_classes(text: str) -> list[type[Objective]]:
    return [get_objective(name) for _, name in parse_objective(text)]


def unread_sections(text: str) -> tuple[str, ...]:
    """The dotted prefixes of the objective sections a run of objective `text` never reads (e.g.
    `dream_distill.` for an InfoNCE run): changing them cannot change what the run computed, so neither
    reusing a finished run nor resuming an interrupted one compares them."""
    read = {section for cls in objective_classes(text) for section in cls.sections_read()}
    return tuple(f"{other}." for other in OBJECTIVES if other not in read)


def build_objective(context: ObjectiveContext) -> Objective:
    """The run's loss: its objective (or weighted sum of objectives) plus the `train.anchor` term, if any."""
    train = context.config.train
    terms = [(weight, get_objective(name).build(context)) for weight, name in parse_objective(train.objective)]
    if train.anchor != "none":
        terms.append((train.anchor_weight, build_anchor(train.anchor, train.anchor_temperature, context.retriever)))
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]
    return Sum(terms)


__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveContext",
    "ObjectiveOutput",
    "build_objective",
    "canonical_objective",
    "get_objective",
    "objective_classes",
    "objective_slug",
    "parse_objective",
    "unread_sections",
]
