"""The suggestions, as pure functions of curves (numbers in, numbers out), so that each can be checked on
fixed synthetic curves: the LR range a sweep's validation loss suggests, and the LR range test's smoothed
loss, its stopping rule and its own suggestions.

Every threshold is here, named once; docs/lr-sweep.md explains each.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import UserError

# --- the sweep's range -------------------------------------------------------------------------------
# Both ends are read off the seed-mean validation loss at levels set as shares of the curve's own depth (its
# smallest LR's loss minus its minimum), so they do not depend on the loss's scale or offset (a
# classification's cross-entropy, a regression's MSE).
# The low end: where the loss has fallen this share of the way from the smallest LR's loss to the minimum.
# Generous on purpose: a sweep trains a few epochs, and an LR that trains slowly in them can still be best
# in a study's longer runs; yet past the seed-to-seed noise of a curve that has not started to fall.
FALL_SHARE = 0.10
# The high end: where, past the minimum, the loss has risen back above the minimum by this share of the same
# depth (where it turns up), or the last LR before one where a member diverged. Strict on purpose: an LR
# that is already unstable in a few epochs does not get better with more. Larger shares read the end off
# the noisy shoulder past the minimum and move more from one set of seeds to another (docs/lr-sweep.md).
RISE_SHARE = 0.10
# A curve whose minimum is less than this share below its smallest LR's loss is flat: nothing trained
# enough over the swept LRs and epochs to tell good LRs from bad ones.
MIN_DEPTH = 0.05

# --- the range test ------------------------------------------------------------------------------------
# The loss is smoothed as fastai's lr_find does: an exponential moving average with beta 0.98, bias
# corrected (the first steps are a plain mean, not pulled towards 0). torch-lr-finder's smooth_f=0.05 is
# the same average with beta 0.95 and no correction.
SMOOTH_BETA = 0.98
# The test stops once the smoothed loss exceeds this many times its best so far (fastai's 4;
# torch-lr-finder's diverge_th is 5), or once a loss is not finite.
DIVERGE_FACTOR = 4.0
# The steepest descent is looked for after the first and before the last steps, as torch-lr-finder's
# suggestion does (skip_start=10, skip_end=5): the average is settling at the start, rising at the end.
SKIP_START = 10
SKIP_END = 5
# The fewest steps a range test takes: the skipped ones, and enough between them to find a slope.
MIN_STEPS = 20


class NoRange(UserError):
    """The sweep's curve suggests no range: the message says why and what to change."""


@dataclass(frozen=True)
class LrRange:
    """The suggested ``training.lr`` range, and what it was read from: the LR of the lowest seed-mean
    loss, the loss at the smallest LR and at the minimum, and why the range ends where it does
    (``rise``: the loss turned up; ``diverged``: the next LR had a member diverge; ``end``: the largest
    LR swept, where the loss had not turned up yet)."""

    low: float
    high: float
    best_lr: float
    start_loss: float
    min_loss: float
    high_reason: str

    def contains(self, lr: float) -> bool:
        return self.low <= lr <= self.high


def _crossing(lr_a: float, loss_a: float, lr_b: float, loss_b: float, level: float) -> float:
    """The LR where the loss crosses ``level`` between two neighbouring points, linear in log LR."""
    if loss_a == loss_b:
        return lr_a
    t = (loss_a - level) / (loss_a - loss_b)
    return math.exp(math.log(lr_a) + t * (math.log(lr_b) - math.log(lr_a)))


def suggest_range(lrs: Sequence[float], losses: Sequence[float], diverged: Sequence[bool]) -> LrRange:
    """The LR range a sweep's curve suggests. ``losses``: the seed-mean validation loss at each LR of
    ``lrs`` (increasing); ``diverged``: whether a member at that LR diverged (its loss may then be
    anything). Only the LRs below the first that diverged count. Raises :class:`NoRange` for a curve that
    does not fall (flat, or lowest at the smallest LR)."""
    if not (len(lrs) == len(losses) == len(diverged)):
        raise ValueError(f"{len(lrs)} LRs, {len(losses)} losses and {len(diverged)} divergence flags")
    if len(lrs) < 3:
        raise NoRange(f"{len(lrs)} LRs are too few to read a range from; sweep at least 3 (--lrs)")
    if any(not (b > a > 0) for a, b in itertools.pairwise(lrs)):
        raise ValueError("the LRs must be positive and increasing")
    usable = 0
    while usable < len(lrs) and not diverged[usable] and math.isfinite(losses[usable]):
        usable += 1
    if usable < 2:
        raise NoRange(
            f"training diverged (or gave no finite loss) at the smallest LRs swept ({lrs[0]:.3g}): "
            "sweep lower LRs (--low)"
        )
    curve = losses[:usable]
    start = curve[0]
    best = min(range(usable), key=curve.__getitem__)
    depth = start - curve[best]
    if best == 0:
        raise NoRange(
            f"the validation loss is lowest at the smallest LR swept ({lrs[0]:.3g}): sweep lower LRs (--low)"
        )
    if depth < MIN_DEPTH * abs(start):
        raise NoRange(
            f"the validation loss hardly falls over the LRs swept (from {start:.4g} to at best "
            f"{curve[best]:.4g}, less than {MIN_DEPTH:.0%}): train more epochs (--epochs) or widen the "
            "range (--low, --high)"
        )

    # Low: walk down from the minimum while the loss stays below the level; the smallest LR is above it.
    fallen = start - FALL_SHARE * depth
    i = best
    while curve[i - 1] <= fallen:
        i -= 1
    low = _crossing(lrs[i - 1], curve[i - 1], lrs[i], curve[i], fallen)

    # High: walk up from the minimum while the loss stays below the level and no member diverged.
    risen = curve[best] + RISE_SHARE * depth
    j = best
    while j + 1 < usable and curve[j + 1] <= risen:
        j += 1
    if j + 1 < usable:
        high, reason = _crossing(lrs[j], curve[j], lrs[j + 1], curve[j + 1], risen), "rise"
    elif usable < len(lrs):
        high, reason = lrs[j], "diverged"
    else:
        high, reason = lrs[j], "end"
    return LrRange(low, high, lrs[best], start, curve[best], reason)


# --- the range test ------------------------------------------------------------------------------------


class SmoothedLoss:
    """The bias-corrected exponential moving average of the losses added so far (:data:`SMOOTH_BETA`)."""

    def __init__(self, beta: float = SMOOTH_BETA) -> None:
        self.beta, self.average, self.count = beta, 0.0, 0

    def add(self, loss: float) -> float:
        """The smoothed loss once ``loss`` is added."""
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        return self.average / (1 - self.beta**self.count)


def smooth(losses: Sequence[float], beta: float = SMOOTH_BETA) -> list[float]:
    """Every prefix's smoothed loss (:class:`SmoothedLoss`)."""
    average = SmoothedLoss(beta)
    return [average.add(loss) for loss in losses]


def exploded(smoothed: float, best: float) -> bool:
    """Whether the range test stops here: the smoothed loss is past :data:`DIVERGE_FACTOR` times its best
    so far, or not finite."""
    return not math.isfinite(smoothed) or smoothed > DIVERGE_FACTOR * best


def steepest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The LR where the smoothed loss falls fastest against log LR (the steps' LRs are log-spaced, so
    against the step), leaving out :data:`SKIP_START` steps at the start and :data:`SKIP_END` at the end;
    None where fewer than 3 steps are left."""
    end = len(smoothed) - SKIP_END
    if end - SKIP_START < 3:
        return None
    slopes = np.gradient(np.asarray(smoothed[SKIP_START:end], dtype=np.float64))
    return float(lrs[SKIP_START + int(np.argmin(slopes))])


def lowest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The LR of the lowest smoothed loss (fastai suggests a tenth of it); None for no steps."""
    if not smoothed:
        return None
    return float(lrs[int(np.argmin(np.asarray(smoothed, dtype=np.float64)))])


def log_median(values: Sequence[float | None]) -> float | None:
    """The median of the given values in log scale (the seeds' suggestions), None where there are none."""
    given = [math.log(v) for v in values if v is not None]
    return math.exp(float(np.median(given))) if given else None
