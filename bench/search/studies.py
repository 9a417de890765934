"""The search's studies. ``search.budget: joint``: one conditional study, whose sampler also chooses the
family. ``per_family``: one study per family in the same storage (``<name>/<family>``), each with its own
sampler and pruner, so that a family's trials are drawn and pruned knowing that family's trials alone, and
each family gets the same number of trials; they train together in the same populations. The study named
``<name>`` holds what belongs to the whole study (its uid, definition and MLflow parent run) either way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import optuna

from bench.config import Locations, StudyConfig
from bench.search.opening import OpenedStudy, family_study, open_study
from bench.search.round import ask_places
from bench.search.space import TrialSpec, sample
from bench.search.workers import holds_a_place


@dataclass
class Search:
    """The studies a worker searches, as a round's source of trials (bench.search.round.Source)."""

    main: OpenedStudy  # the study's attributes; in joint mode its trials too
    parts: dict[str, OpenedStudy]  # the studies that hold trials, by name
    target: int  # COMPLETE + PRUNED trials each part is to reach
    steps_per_epoch: int
    me: str = ""  # this worker
    stage: str = "search"
    reports: bool = True

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return [t for p in self.parts.values() for t in p.study.get_trials(deepcopy=False)]

    def need(self, part: OpenedStudy) -> int:
        """Trials the part still needs, counting every live worker's running trials."""
        # One read: a trial told between two reads (running, then ended) would count in neither.
        held = sum(map(holds_a_place, part.study.get_trials(deepcopy=False)))
        sampler = part.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(part.study):
            return 0
        return max(0, self.target - held)

    def needs(self) -> dict[str, int]:
        return {name: self.need(part) for name, part in self.parts.items()}

    def ask(self, k: int) -> list[optuna.Trial]:
        """At most k trials, each from the part that needs the most (families advance together)."""
        needs, share = self.needs(), dict.fromkeys(self.parts, 0)
        for _ in range(k):
            name = max(needs, key=lambda n: needs[n])
            if needs[name] <= 0:
                break
            needs[name] -= 1
            share[name] += 1
        return [
            t for name, n in share.items() if n for t in ask_places(self.parts[name], n, self.target, self.me)
        ]

    def draw(self, trial: optuna.Trial) -> TrialSpec:
        return sample(trial, self.parts[trial.study.study_name].cfg, self.steps_per_epoch)


def open_search(cfg: StudyConfig, loc: Locations, target: int, steps_per_epoch: int) -> Search:
    """Open (or create) the study and, per family, its family's study; a family's study searches that
    family alone (its definition's schedulers are that family's)."""
    main = open_study(cfg, loc)
    if cfg.search.budget == "joint":
        return Search(main, {cfg.name: main}, target, steps_per_epoch)
    parts = {}
    for family in cfg.schedulers:
        alone = dataclasses.replace(cfg, schedulers={family: cfg.schedulers[family]})
        name = family_study(cfg, family)
        parts[name] = dataclasses.replace(
            open_study(alone, loc, name=name, storage=main.storage), uid=main.uid
        )
    return Search(main, parts, target, steps_per_epoch)
