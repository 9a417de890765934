"""The LR sensitivity sweep: K constant LRs, log-spaced, times S seeds, each trained a few epochs, all as
one population; beside it the LR range test on the same seeds; and the ``training.lr`` range the sweep
suggests (:func:`bench.sweep.suggest.suggest_range`).

The sweep trains what the study trains (its model, data, first optimizer, momentum, weight decay and batch
size) with no schedule, so each member answers one question: how far does this LR get in a few epochs?
Seed ``i`` is the study's ``training.seed + i``, as a study's trial ``i`` is.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.config import StudyConfig, TrainingSection
from bench.data import Task, load_task
from bench.errors import UserError
from bench.sweep.rangetest import RangeTestCurve, range_test
from bench.sweep.suggest import MIN_STEPS, LrRange, NoRange, log_median, suggest_range
from bench.train import TrainConfig, TrialResult, resolve_device, train

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepSettings:
    """What the sweep trains: ``lrs`` LRs log-spaced from ``low`` to ``high`` (both included), on ``seeds``
    seeds, ``epochs`` epochs each; the range test rises over the same LRs in ``steps`` optimizer steps.

    200 steps, not the 100 of fastai and torch-lr-finder: the smoothed loss averages about the last 50
    steps (beta 0.98), so over 100 steps across these five decades it lags the LR by more than a decade
    and each seed's steepest descent lands somewhere else; over 200 they agree (docs/lr-sweep.md)."""

    low: float = 1e-5
    high: float = 1.0
    lrs: int = 24
    seeds: int = 3
    epochs: int = 5
    steps: int = 200

    def check(self) -> None:
        if not (0 < self.low < self.high and math.isfinite(self.high)):
            raise UserError(f"0 < low < high must hold, but got (low={self.low:g}, high={self.high:g})")
        for name, least in (("lrs", 3), ("seeds", 1), ("epochs", 1), ("steps", MIN_STEPS)):
            value = getattr(self, name)
            if value < least:
                raise UserError(f"{name} must be at least {least}, got {value}")

    def grid(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.geomspace(self.low, self.high, self.lrs))


@dataclass(frozen=True)
class Member:
    """One sweep member's last epoch (NaN where it diverged: ``epochs_run`` says when)."""

    lr: float
    seed: int
    diverged: bool
    epochs_run: int
    train_loss: float
    val_loss: float
    val_score: float


@dataclass(frozen=True)
class SweepResult:
    """The sweep's members (LR by LR, each LR's seeds in order), the range tests (one per seed) and the
    suggestion (None, with ``no_suggestion`` saying why, where the curve gives none)."""

    study: str
    optimizer: str
    score: str  # accuracy or rmse: what ``Member.val_score`` is
    settings: SweepSettings
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    members: tuple[Member, ...]
    range_tests: tuple[RangeTestCurve, ...]
    suggestion: LrRange | None
    no_suggestion: str
    device: str
    seconds: float

    def by_lr(self) -> list[tuple[Member, ...]]:
        """The members of each LR."""
        n = len(self.seeds)
        return [self.members[i * n : (i + 1) * n] for i in range(len(self.lrs))]

    def mean_val_loss(self) -> list[float]:
        """The seed-mean validation loss at each LR (NaN where a member diverged)."""
        return [_mean([m.val_loss for m in group]) for group in self.by_lr()]

    def diverged(self) -> list[bool]:
        """Whether a member diverged at each LR."""
        return [any(m.diverged for m in group) for group in self.by_lr()]

    @property
    def range_steepest_lr(self) -> float | None:
        """The range tests' steepest-descent LR, the median over seeds (in log scale)."""
        return log_median([c.steepest_lr for c in self.range_tests])

    @property
    def range_lowest_lr(self) -> float | None:
        """The range tests' lowest-smoothed-loss LR, the median over seeds (in log scale)."""
        return log_median([c.lowest_lr for c in self.range_tests])

    @property
    def range_stop_lr(self) -> float | None:
        """The smallest LR at which a range test stopped (its loss exploded); None: none did."""
        stops = [c.stop_lr for c in self.range_tests if c.stop_lr is not None]
        return min(stops) if stops else None


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan


def member_configs(cfg: StudyConfig, settings: SweepSettings) -> list[TrainConfig]:
    """The sweep's members: every LR of the grid on every seed, LR-major; what the study trains, at a
    constant LR for ``settings.epochs`` epochs."""
    t = cfg.training
    base = TrainConfig(
        scheduler="constant",
        optimizer=t.optimizer[0],
        lr=settings.low,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        epochs=settings.epochs,
        batch_size=t.batch_size,
        seed=t.seed,
        model=cfg.model,
    )
    base.check()
    return [
        dataclasses.replace(base, lr=lr, seed=t.seed + s)
        for lr in settings.grid()
        for s in range(settings.seeds)
    ]


def _train(
    task: Task, cfgs: list[TrainConfig], training: TrainingSection, say: Progress
) -> list[TrialResult]:
    """Every member trained: as populations (the study's population size, else what fits the device), or
    one at a time where the study asks for the reference engine or torch.func cannot batch its model."""
    from bench.train.population import auto_population_size, fallback_line, train_population

    line = fallback_line(task, cfgs[0].model) if training.engine == "population" else None
    if line is not None:
        say(line)
    if training.engine == "reference" or line is not None:
        return [train(task, c) for c in cfgs]

    size = training.population_size or auto_population_size(task, cfgs[0].model, cfgs[0].batch_size)
    out: list[TrialResult] = []
    for start in range(0, len(cfgs), size):
        out += train_population(task, cfgs[start : start + size])
    return out


def _member(c: TrainConfig, r: TrialResult) -> Member:
    ok = not r.diverged and bool(r.val_loss)
    last = (r.train_loss[-1], r.val_loss[-1], r.val_score[-1]) if ok else (math.nan,) * 3
    return Member(c.lr, c.seed, r.diverged, r.epochs_run, *last)


def run_sweep(
    cfg: StudyConfig, settings: SweepSettings, device: str | None = None, progress: Progress | None = None
) -> SweepResult:
    """The sweep and the range tests of a study (checked already: :func:`bench.config.check_runnable`), on
    ``device`` (default: the study's ``training.device``). ``progress`` receives a line per stage."""
    settings.check()
    say = progress or (lambda _: None)
    started = time.perf_counter()
    cfgs = member_configs(cfg, settings)
    task = load_task(cfg.task, resolve_device(device or cfg.training.device))
    lrs, seeds = settings.grid(), tuple(cfg.training.seed + s for s in range(settings.seeds))
    say(
        f"{len(cfgs)} members ({len(lrs)} LRs x {len(seeds)} seeds), {settings.epochs} epochs each, "
        f"{cfgs[0].optimizer} at constant LRs from {settings.low:g} to {settings.high:g} on {task.device}"
    )
    results = _train(task, cfgs, cfg.training, say)
    members = tuple(_member(c, r) for c, r in zip(cfgs, results, strict=True))
    say(
        f"range test: {len(seeds)} run(s) of {settings.steps} steps, "
        f"LR rising from {settings.low:g} to {settings.high:g}"
    )
    curves = tuple(
        range_test(task, dataclasses.replace(cfgs[0], seed=s), settings.high, settings.steps) for s in seeds
    )
    result = SweepResult(
        study=cfg.name,
        optimizer=cfgs[0].optimizer,
        score=task.score,
        settings=settings,
        lrs=lrs,
        seeds=seeds,
        members=members,
        range_tests=curves,
        suggestion=None,
        no_suggestion="",
        device=str(task.device),
        seconds=0.0,
    )
    try:
        suggestion, why = suggest_range(lrs, result.mean_val_loss(), result.diverged()), ""
    except NoRange as exc:
        suggestion, why = None, str(exc)
    return dataclasses.replace(
        result, suggestion=suggestion, no_suggestion=why, seconds=time.perf_counter() - started
    )
