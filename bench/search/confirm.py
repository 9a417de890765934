"""Confirmation: after the search, the ``top_k`` configurations of each family (by the search objective on
validation) are re-trained on paired seeds, and the ranking is computed from these runs (bench.report).

Seed index *i* gives every family the same initialisation and batch order (seed ``training.seed + i``)
and, with ``resplit``, the same new stratified split (``task.split_seed + 1 + i``). The runs are trials
of a study of their own in the same storage (``<name>.confirm``): each carries its cell (family,
configuration, seed index) as a user attribute, a killed confirmation resumes with the cells not done
(today's recovery closes what the dead process left RUNNING), and their MLflow runs sit under the study's
parent run, tagged ``lrbench.stage=confirm``. One population per seed index (one split each).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from bench.config import StudyConfig
from bench.search.opening import OpenedStudy
from bench.search.progress import Progress
from bench.search.round import Round, ask_places
from bench.search.space import TrialSpec
from bench.search.telling import RESULT, SURPLUS
from bench.search.workers import holds_a_place, reclaim
from bench.tracking.writer import Writer

if TYPE_CHECKING:
    import torch

CELL = "cell"  # confirmation trial user attribute: {"family", "config", "seed_index"}
STAGE = "confirm"


@dataclass(frozen=True)
class Chosen:
    """A search trial's configuration, chosen for confirmation."""

    family: str
    config: int  # the search trial's number
    optimizer: str
    lr: float
    scheduler_args: dict[str, Any]  # as it was built (derived arguments too: the run length is the same)


def choose(cfg: StudyConfig, trials: Sequence[optuna.trial.FrozenTrial]) -> list[Chosen]:
    """The ``top_k`` COMPLETE trials of each family by the objective (ties: the earlier trial)."""
    sign = -1.0 if cfg.direction == "maximize" else 1.0
    by_family: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        if t.value is not None and math.isfinite(t.value) and RESULT in t.user_attrs:
            by_family.setdefault(str(t.params["scheduler"]), []).append(t)
    chosen = []
    for family in sorted(by_family):
        best = sorted(by_family[family], key=lambda t: (sign * float(t.value or 0.0), t.number))
        for t in best[: cfg.confirm.top_k]:
            result = t.user_attrs[RESULT]
            args = json.loads(result["scheduler_args"])
            chosen.append(Chosen(family, t.number, result["optimizer"], float(result["lr"]), args))
    return chosen


def cell_key(cell: dict[str, Any]) -> tuple[str, int, int]:
    return str(cell["family"]), int(cell["config"]), int(cell["seed_index"])


def cells_left(cfg: StudyConfig, search: Sequence[optuna.trial.FrozenTrial], study: optuna.Study) -> int:
    """The chosen configurations' cells with no ended run (COMPLETE, or PRUNED: diverged) yet: a cell whose
    run failed, or that two workers left to each other, is trained by the next run of the study."""
    cells = {(c.family, c.config, i) for c in choose(cfg, search) for i in range(cfg.confirm.seeds)}
    ended = {
        cell_key(t.user_attrs[CELL])
        for t in study.get_trials(deepcopy=False)
        if CELL in t.user_attrs
        and SURPLUS not in t.user_attrs
        and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    return len(cells - ended)


def _holding(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The confirmation trials that hold a place: done, or running in a live worker (not surplus)."""
    return [t for t in study.get_trials(deepcopy=False) if SURPLUS not in t.user_attrs and holds_a_place(t)]


def confirming_elsewhere(study: optuna.Study) -> bool:
    """Another live worker is training confirmation runs (the confirmation runs in one worker at a time:
    two would take the same cells)."""
    return any(t.state == TrialState.RUNNING for t in _holding(study))


def search_is_settled(trials: Sequence[optuna.trial.FrozenTrial]) -> bool:
    """No trial of the search is running in a live worker (another worker may still be searching: the
    last to finish confirms)."""
    return not any(t.state == TrialState.RUNNING and holds_a_place(t) for t in trials)


@dataclass
class _Cells:
    """A confirmation round's source of trials: each trial asked takes the next cell."""

    cfg: StudyConfig
    opened: OpenedStudy
    todo: list[Chosen]
    seed_index: int
    total: int  # cells in all: no more trials than these hold places
    me: str
    stage: str = STAGE
    reports: bool = False  # nothing to prune: the curve is stored with the result

    def __post_init__(self) -> None:
        self.queue = iter(self.todo)

    def ask(self, k: int) -> list[optuna.Trial]:
        return ask_places(self.opened, k, self.total, self.me)

    def draw(self, trial: optuna.Trial) -> TrialSpec:
        c = next(self.queue)
        trial.set_user_attr(CELL, {"family": c.family, "config": c.config, "seed_index": self.seed_index})
        seed = self.cfg.training.seed + self.seed_index
        split_seed = self.cfg.confirm_task(self.seed_index).split_seed
        return TrialSpec(trial.number, c.family, dict(c.scheduler_args), c.optimizer, c.lr, seed, split_seed)


def run_confirmation(
    cfg: StudyConfig,
    search: Sequence[optuna.trial.FrozenTrial],
    opened: OpenedStudy,
    writer: Writer,
    device: torch.device,
    steps_per_epoch: int,
    me: str,
) -> int:
    """Train the cells not done yet; the number trained in this run."""
    from bench.data import load_task

    study = opened.study
    reclaimed = reclaim(study, opened.storage, writer, opened.uid)
    chosen = choose(cfg, search)
    total = len(chosen) * cfg.confirm.seeds
    holding = _holding(study)
    held = {cell_key(t.user_attrs[CELL]) for t in holding if CELL in t.user_attrs}
    if reclaimed.sent:
        print(
            f"sent {reclaimed.sent} confirmation run(s) to MLflow that an earlier run kept", file=sys.stderr
        )
    if reclaimed.closed:
        print(
            f"closed {reclaimed.closed} confirmation run(s) left RUNNING by a process that died",
            file=sys.stderr,
        )
    cells = {(c.family, c.config, i) for c in chosen for i in range(cfg.confirm.seeds)}
    todo_total = total - len(held & cells)
    # The places the confirmation's trials may hold: those held now (cells of an earlier choice, where the
    # search went on since, and any cell trained twice) and the cells to do.
    places = len(holding) + todo_total
    if todo_total:
        print(
            f"confirming: the best {cfg.confirm.top_k} configuration(s) of {len({c.family for c in chosen})} "
            f"families on {cfg.confirm.seeds} paired seeds, {todo_total} run(s) to train",
            file=sys.stderr,
        )
    progress = Progress(total, total - todo_total, f"{cfg.name} confirm", best=False)
    ran = 0

    def told(frozen: optuna.trial.FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        cell = frozen.user_attrs.get(CELL, {})
        line = f"confirm {cell.get('family', '?')} #{cell.get('config', '?')} seed {cell.get('seed_index')}"
        progress.update(f"{line}: {frozen.state.name}", None, frozen.state != TrialState.FAIL)

    try:
        for i in range(cfg.confirm.seeds):
            todo = [c for c in chosen if (c.family, c.config, i) not in held]
            if not todo:
                continue
            task = load_task(cfg.confirm_task(i), device)
            source = _Cells(cfg, opened, todo, i, places, me)
            Round(cfg, source, writer, steps_per_epoch, told).run(task, len(todo), None)
    finally:
        progress.close()
    return ran
