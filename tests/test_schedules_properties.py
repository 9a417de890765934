"""Properties every curve of a family has, whatever its arguments: hundreds of draws from each family's own
search space (Optuna's RandomSampler, as a study samples it), over runs of random lengths.

- the curve has the run's length, and is finite and positive;
- a warmup ends at the base LR times its factor (:attr:`Shape.warmup`);
- a family that does not restart never rises once its warmup has ended (or from the first step);
- a schedule built to span the run ends at its floor once the run's last step is taken (:attr:`Shape.final`);
- the arguments it was built with, logged as the run's params, rebuild the same curve.

A family added to the registry is checked here without other edits.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import optuna
import pytest

from bench import schedules
from bench.schedules import SCHEDULES, Family, Horizon
from bench.search.space import suggest

FAMILIES = sorted(SCHEDULES)
DRAWS = [25, pytest.param(300, marks=pytest.mark.slow)]


def _draws(family: Family, n: int, seed: int) -> list[tuple[Horizon, dict[str, Any]]]:
    """``n`` runs (epochs, steps per epoch and base LR drawn at random), each with arguments drawn from the
    family's search space for that run, plus the values a study fixes."""
    rng = random.Random(seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        epochs, spe = rng.randint(4, 40), rng.randint(1, 6)
        lr = 10 ** rng.uniform(-4, 0)
        horizon = family.horizon(epochs, spe, lr)
        trial = study.ask()
        given = family.search_fixed()
        given.update({arg: suggest(trial, arg, r) for arg, r in family.space(horizon).items()})
        study.tell(trial, 0.0)
        out.append((horizon, given))
    return out


def _step(family: Family, horizon: Horizon, at: int) -> int:
    """The optimizer step at which the scheduler's ``at``-th step is first in force."""
    return at if family.per_step else at * horizon.steps_per_epoch


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_curve_of_a_family_has_its_shape(name: str, draws: int) -> None:
    family = SCHEDULES[name]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for horizon, given in _draws(family, draws, seed=FAMILIES.index(name)):
        run = dict(lr=horizon.lr, epochs=horizon.epochs, steps_per_epoch=horizon.steps_per_epoch)
        c = schedules.curve(name, given, **run)
        where = f"{name}({c.args}) over {horizon}"
        lrs = c.lrs
        assert len(lrs) == horizon.epochs * horizon.steps_per_epoch, where
        bad = [t for t, v in enumerate(lrs) if not (math.isfinite(v) and v > 0)]
        assert not bad, f"{where}: LR {lrs[bad[0]]} at step {bad[0]}"
        start = 0
        if family.shape.warmup is not None:
            at, expected = family.shape.warmup(c.args, horizon)
            start = _step(family, horizon, at)
            if expected is not None and start < len(lrs):
                assert lrs[start] == pytest.approx(expected, rel=1e-9), where
        if not family.shape.restarts:
            rises = [
                t for t, (a, b) in enumerate(itertools.pairwise(lrs[start:]), start) if b > a * (1 + 1e-12)
            ]
            assert not rises, f"{where} rises at step {rises[0] + 1}"
        if family.shape.final is not None:
            assert c.final == pytest.approx(
                family.shape.final(c.args, horizon), rel=1e-9, abs=1e-12 * horizon.lr
            ), where
        assert schedules.curve(name, c.args, **run).lrs == lrs, (
            f"{where}: its arguments rebuild another curve"
        )
