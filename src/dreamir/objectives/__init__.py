"""Training objectives as plug-ins (METHOD §1–2), looked up by name.

To add an objective: write `objectives/<name>.py` with an `Objective` subclass (its `name`, its
pydantic `Config` section — which becomes the run config's `<name>:` section —, `needs_llm` and
`build`), and add the class to `OBJECTIVES` below. Nothing else names it.
"""

from __future__ import annotations

from dreamir.objectives.base import Objective, ObjectiveContext, ObjectiveOutput
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


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective '{name}'; use one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def unread_sections(name: str) -> tuple[str, ...]:
    """The dotted prefixes of the objective sections a run of objective `name` never reads (e.g.
    `dream_distill.` for an InfoNCE run): changing them cannot change what the run computed, so neither
    reusing a finished run nor resuming an interrupted one compares them."""
    read = get_objective(name).sections_read()
    return tuple(f"{other}." for other in OBJECTIVES if other not in read)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "ObjectiveOutput", "get_objective", "unread_sections"]
