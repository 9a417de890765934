"""What a study will train, checked before anything is created: its size (:mod:`.limits`), its device,
and every family's schedule, built and stepped through the run at the ends of what the study searches.

A search draws each argument from its range: a schedule that torch refuses, or that gives a negative or
non-finite LR, at the low or the high ends of the ranges would fail trials (or, for a negative LR, train
and be ranked) long after the study's stores were created. This needs torch (a second to import), which
``lrbench export`` and ``ui`` never import: the commands that train call it after :func:`load`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench import schedules
from bench.config.limits import check_size, steps_per_epoch
from bench.config.schema import FloatRange, StudyConfig
from bench.data import Sizes
from bench.errors import UserError
from bench.train.device import resolve_device


def check_runnable(cfg: StudyConfig, sizes: Sizes, n_trials: int | None = None) -> None:
    check_size(cfg, sizes, n_trials)
    try:
        resolve_device(cfg.training.device)
    except UserError as exc:
        raise UserError(f"training.device: {exc}") from None
    per_epoch = steps_per_epoch(cfg, sizes)
    for name in cfg.schedulers:
        family = schedules.SCHEDULES[name]
        for end, horizon, given in _extremes(cfg, name, per_epoch):
            try:
                schedules.verify(family, family.resolve(given, horizon), horizon)
            except UserError as exc:
                raise UserError(f"schedulers.{name}: {exc} ({end})") from None


def _lr_ends(cfg: StudyConfig) -> tuple[float, float]:
    lr = cfg.training.lr
    if isinstance(lr, FloatRange):
        return lr.low, lr.high
    if isinstance(lr, tuple):
        return min(lr), max(lr)
    return lr, lr


# A search draws an integer's ends, but never a float's exactly: a float is taken this share inside its end
# (of the range, or of the end itself where that is less), where a OneCycleLR of 10 steps with pct_start 0.1
# exactly has a first phase of no length at all.
INSIDE = 1e-3


def _end(rng: schedules.Range, high: int) -> float | int:
    assert rng.low is not None and rng.high is not None
    low, top = rng.low, rng.high
    end = top if high else low
    if rng.kind is int or low == top:
        return end
    if rng.log and low > 0:
        ratio = min((top / low) ** INSIDE, 1 + INSIDE)
        return top / ratio if high else low * ratio
    step = INSIDE * (min(top - low, abs(end)) if end else top - low)
    return top - step if high else low + step


def _extremes(cfg: StudyConfig, name: str, per_epoch: int) -> Iterator[tuple[str, schedules.Horizon, Any]]:
    """The family's arguments at the low ends of every searched range (with the lowest base LR), then at
    the high ends (with the highest), each choice of a categorical argument taken in turn; as the search
    draws them (bench.search.space.sample: the registry's space, narrowed by the study, fixed values
    given)."""
    family = schedules.SCHEDULES[name]
    narrowed = cfg.schedulers[name]
    ranged = {a: s for a, s in narrowed.items() if isinstance(s, list) and family.args[a].kind is not list}
    fixed = family.search_fixed() | {a: s for a, s in narrowed.items() if a not in ranged}
    searched = cfg.optuna.sampler != "grid"  # the grid trains each family at its fixed and default values
    lows_highs = _lr_ends(cfg)
    variants = 2
    for arg, spec in ranged.items():
        if family.args[arg].kind not in (int, float):
            variants = max(variants, len(spec))
    for declared in family.args.values():
        if searched and declared.choices is not None:
            variants = max(variants, len(declared.choices))
    for j in range(variants):
        high = j % 2
        horizon = family.horizon(cfg.training.epochs, per_epoch, lows_highs[high])
        given = dict(fixed)
        where = f"with lr={horizon.lr:g}"
        if searched:
            space = family.space(horizon)
            for arg, spec in ranged.items():
                declared = family.args[arg]
                space[arg] = (
                    schedules.Range(declared.kind, low=spec[0], high=spec[1], log=declared.log)
                    if declared.kind in (int, float)
                    else schedules.Range(declared.kind, choices=tuple(spec))
                )
            for arg, rng in space.items():
                if arg in fixed:
                    continue
                if rng.choices is not None:
                    given[arg] = rng.choices[j % len(rng.choices)]
                else:
                    given[arg] = _end(rng, high)
                    where = (
                        f"with lr={horizon.lr:g} and each searched range at its {('low', 'high')[high]} end"
                    )
        yield where, horizon, given
