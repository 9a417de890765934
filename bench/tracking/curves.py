"""A trial's curves as MLflow metric points: the LR curve compacted without losing a step's value."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bench.tracking.names import LR, TEST_LOSS, TRAIN_LOSS, VAL_LOSS, score_key

if TYPE_CHECKING:
    from bench.train import TrialResult

Point = tuple[str, float, int]  # (metric key, value, step)


def compact_curve(values: Sequence[float], rel_tol: float = 1e-12) -> list[tuple[int, float]]:
    """The (step, value) points that linear interpolation needs to give back every value.

    A point is dropped when it is collinear with both neighbours (equal steps before and after it). Between
    two kept points every dropped point then has the same step, so the stretch is one straight line: flat
    stretches and linear ramps cost two points, curved stretches keep every point.
    """
    n = len(values)
    kept = [(i, values[i]) for i in (0,) if n]
    for i in range(1, n - 1):
        before, after = values[i] - values[i - 1], values[i + 1] - values[i]
        scale = max(abs(values[i - 1]), abs(values[i]), abs(values[i + 1]))
        if abs(after - before) > rel_tol * scale:
            kept.append((i, values[i]))
    if n > 1:
        kept.append((n - 1, values[-1]))
    return kept


def expand_curve(points: Iterable[tuple[int, float]]) -> list[float]:
    """Linear interpolation of compact points back to one value per step (the inverse of compact_curve)."""
    pts = sorted(points)
    out: list[float] = []
    for (s0, v0), (s1, v1) in itertools.pairwise(pts):
        out.extend(v0 + (v1 - v0) * (k - s0) / (s1 - s0) for k in range(s0, s1))
    if pts:
        out.append(pts[-1][1])
    return out


def metric_points(result: TrialResult) -> list[Point]:
    """DESIGN.md's names: lr per optimizer step (compact), per-epoch curves, final test metrics; the score
    under the task's name for it (``val/accuracy``, ``val/rmse``)."""
    out: list[Point] = [(LR, float(v), step) for step, v in compact_curve(result.lrs)]
    for key, values in (
        (TRAIN_LOSS, result.train_loss),
        (VAL_LOSS, result.val_loss),
        (score_key("val", result.score), result.val_score),
    ):
        out += [(key, float(v), epoch) for epoch, v in enumerate(values)]
    if not math.isnan(result.test_score):
        out += [(TEST_LOSS, result.test_loss, 0), (score_key("test", result.score), result.test_score, 0)]
    return out
