"""``lrbench lr-sweep``'s figure (a PNG, matplotlib headless): the sweep's validation loss and score against
a constant LR, the seed mean with a band from the smallest to the largest seed's value, and the LR range
test's smoothed training loss against its rising LR below them, on the same LR axis, the suggested
``training.lr`` range shaded on every panel, so that the two methods can be read side by side.

The figure's input is plain data (:class:`SweepFigure`): the report never imports the sweep that trains.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cache import write_whole
from bench.report.figures import prepare

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RANGE_TEST_LABEL = "range test (one run per seed, LR rising each step)"


@dataclass(frozen=True)
class RangeCurve:
    """One range test run: each step's LR, its batch's training loss and the smoothed loss; ``stop_lr``:
    where it stopped early (None: it ran every step)."""

    seed: int
    lrs: Sequence[float]
    losses: Sequence[float]
    smoothed: Sequence[float]
    stop_lr: float | None = None


@dataclass(frozen=True)
class SweepFigure:
    """What the figure shows. ``val_loss`` and ``val_score``: one row per LR of ``lrs``, a value per seed
    (NaN where the member diverged); ``score_label``: accuracy or RMSE; ``suggested``: the suggested range
    (None: none); ``study_lr``: the study's current ``training.lr`` (its lowest and highest values);
    ``steepest_lr``: the range tests' steepest descent."""

    title: str
    lrs: Sequence[float]
    val_loss: Sequence[Sequence[float]]
    val_score: Sequence[Sequence[float]]
    score_label: str
    sweep_label: str
    range_tests: Sequence[RangeCurve]
    suggested: tuple[float, float] | None = None
    study_lr: tuple[float, float] | None = None
    steepest_lr: float | None = None


def _band(rows: Sequence[Sequence[float]]) -> tuple[list[float], list[float], list[float]]:
    """Each row's mean, smallest and largest value; NaN for a row with a NaN (a diverged member)."""
    means, lows, highs = [], [], []
    for row in rows:
        if row and all(math.isfinite(v) for v in row):
            means.append(math.fsum(row) / len(row))
            lows.append(min(row))
            highs.append(max(row))
        else:
            means.append(math.nan)
            lows.append(math.nan)
            highs.append(math.nan)
    return means, lows, highs


def _marks(ax: Axes, fig: SweepFigure, legend: bool) -> None:
    """The suggested range shaded, the study's current range as dotted lines."""
    if fig.suggested is not None:
        low, high = fig.suggested
        ax.axvspan(
            low, high, color="tab:green", alpha=0.13, label=f"suggested training.lr {low:.2g} to {high:.2g}"
        )
    if fig.study_lr is not None:
        for i, lr in enumerate(sorted(set(fig.study_lr))):
            label = "the study's training.lr" if i == 0 else None
            ax.axvline(lr, color="0.35", linestyle=":", linewidth=1.2, label=label)
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    if legend:
        ax.legend(fontsize=7, loc="best")


def _sweep_panel(ax: Axes, fig: SweepFigure, rows: Sequence[Sequence[float]], ylabel: str, log: bool) -> None:
    means, lows, highs = _band(rows)
    ax.fill_between(
        fig.lrs, lows, highs, color="tab:blue", alpha=0.25, linewidth=0, label="min–max over seeds"
    )
    ax.plot(fig.lrs, means, "o-", color="tab:blue", markersize=3, linewidth=1.5, label="mean over seeds")
    diverged = [lr for lr, row in zip(fig.lrs, rows, strict=True) if any(not math.isfinite(v) for v in row)]
    if diverged:
        # Along the top of the panel, whatever the values' scale.
        ax.plot(
            diverged,
            [0.95] * len(diverged),
            "x",
            color="tab:red",
            transform=ax.get_xaxis_transform(),
            label="a member diverged",
        )
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)


def draw_sweep(fig: SweepFigure, path: str | Path) -> None:
    """The figure, written whole to ``path`` (PNG)."""
    plt = prepare()
    figure, axes = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    loss_ax, score_ax, range_ax = axes
    _sweep_panel(loss_ax, fig, fig.val_loss, "validation loss", log=True)
    loss_ax.set_title(fig.sweep_label, fontsize=9)
    _marks(loss_ax, fig, legend=True)
    _sweep_panel(score_ax, fig, fig.val_score, f"validation {fig.score_label}", log=False)
    _marks(score_ax, fig, legend=False)

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(fig.range_tests):
        colour = colours[(i + 1) % len(colours)]
        ax_label = f"seed {curve.seed}: smoothed"
        range_ax.plot(curve.lrs, curve.losses, color=colour, alpha=0.2, linewidth=0.8)
        range_ax.plot(curve.lrs, curve.smoothed, color=colour, linewidth=1.6, label=ax_label)
        if curve.stop_lr is not None and curve.smoothed:
            range_ax.plot([curve.lrs[-1]], [curve.smoothed[-1]], "x", color=colour, markersize=7)
    if fig.steepest_lr is not None:
        range_ax.axvline(
            fig.steepest_lr,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"steepest descent {fig.steepest_lr:.2g} (median over seeds)",
        )
    range_ax.set_yscale("log")
    smoothed = [v for c in fig.range_tests for v in c.smoothed if v > 0]
    if smoothed:  # the smoothed curves' scale: a single step's loss can be orders of magnitude off them
        range_ax.set_ylim(min(smoothed) / 4, max(smoothed) * 4)
    range_ax.set_ylabel("training loss (faint: each step's)")
    range_ax.set_title(RANGE_TEST_LABEL, fontsize=9)
    range_ax.set_xlabel("learning rate")
    _marks(range_ax, fig, legend=True)

    figure.suptitle(fig.title, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_whole(Path(path), lambda f: f.write(buffer.getvalue()))
