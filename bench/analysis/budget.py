"""Tuning budget and time to target.

- The expected best validation score after n trials (Dodge et al. 2019, "Show Your Work"): the expected
  maximum of n draws, with replacement, from the empirical distribution of a family's N trial scores,
  ``sum_i v_(i) * ((i/N)^n - ((i-1)/N)^n)`` over the scores sorted ascending. It tells whether a family
  wins out of the box (a flat curve) or only after tuning (a rising one).
- Time to target (AlgoPerf): the first epoch at which a run's validation score reaches a target.

Scores are oriented so that higher is better (the caller negates a loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def expected_best(scores: Sequence[float], n: int) -> float:
    """The expected best of ``n`` trials drawn from ``scores`` (with replacement)."""
    v = np.sort(np.asarray(scores, dtype=float))
    if v.size == 0 or n < 1:
        return math.nan
    big_n = v.size
    i = np.arange(1, big_n + 1)
    weights = (i / big_n) ** n - ((i - 1) / big_n) ** n
    return float(np.dot(weights, v))


def budget_curve(scores: Sequence[float], budget: int) -> list[float]:
    """:func:`expected_best` for n = 1 .. budget."""
    return [expected_best(scores, n) for n in range(1, budget + 1)]


def first_epoch_reaching(curve: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) whose score is at or above ``target``; None if none is."""
    for epoch, value in enumerate(curve, start=1):
        if value >= target:
            return epoch
    return None


def time_to_target(curves: Sequence[Sequence[float]], target: float) -> tuple[float, float]:
    """Over runs: the median epoch at which each reaches ``target`` (a run that never does counts as
    never: the median is NaN when half the runs or more never reach it), and the fraction that reach it."""
    if not curves:
        return math.nan, math.nan
    epochs = [first_epoch_reaching(c, target) for c in curves]
    reached = [e for e in epochs if e is not None]
    median = float(np.median([math.inf if e is None else e for e in epochs]))
    return (median if math.isfinite(median) else math.nan), len(reached) / len(epochs)
