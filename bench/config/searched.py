"""What a trial of a family draws: the ranges its arguments are searched in and the arguments it is given.
One definition for the search (bench.search.space.sample) and for the check of a study's schedules at the
ends of those ranges (bench.config.runnable)."""

from __future__ import annotations

from typing import Any

from bench import schedules
from bench.config.schema import StudyConfig


def family_space(
    cfg: StudyConfig, name: str, horizon: schedules.Horizon
) -> tuple[dict[str, schedules.Range], dict[str, Any]]:
    """The family's search ranges (the registry's, narrowed by the study's ``[low, high]`` or list of
    choices; none under the grid sampler, which trains each family at its given and default values) and
    its given arguments (the registry's fixed ones for a search, and the study's fixed values)."""
    family = schedules.SCHEDULES[name]
    grid = cfg.optuna.sampler == "grid"
    space = {} if grid else family.space(horizon)
    given: dict[str, Any] = family.search_fixed()
    for arg, spec in cfg.schedulers[name].items():
        declared = family.args[arg]
        if isinstance(spec, list) and (grid or declared.kind is not list):
            if not grid:
                space[arg] = (
                    schedules.Range(declared.kind, low=spec[0], high=spec[1], log=declared.log)
                    if declared.kind in (int, float)
                    else schedules.Range(declared.kind, choices=tuple(spec))
                )
            continue
        space.pop(arg, None)
        given[arg] = spec
    return space, given
