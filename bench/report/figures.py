"""Figures (matplotlib, headless): a schedule's LR curve, and a study's summary figure.

The summary figure is drawn where the study's curves are read: in a study's MLflow writer process (which
runs :func:`prepare` while it waits for work), or by ``lrbench export``. matplotlib is imported when a
figure is first drawn (about a second here): importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.tracking.names import LR

if TYPE_CHECKING:
    from types import ModuleType

Curves = Mapping[str, Mapping[str, list[tuple[int, float]]]]  # label -> metric key -> (step, value) points


def prepare() -> ModuleType:
    """matplotlib's pyplot, headless (the Agg backend): imported once, here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lr_curves(curves: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> None:
    """LR against optimizer step, one line per curve."""
    plt = prepare()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, lrs in curves.items():
        ax.plot(range(len(lrs)), lrs, label=label, linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_figure(curves: Curves, key: str, metric: str, path: Path) -> list[str]:
    """The best trial of each family: LR curves overlaid (left) and their ``key`` validation curves
    (right). Returns the labels left out for want of an LR curve: with several workers, a trial another
    worker has told may not have its curves in MLflow yet."""
    plt = prepare()
    fig, (ax_lr, ax_val) = plt.subplots(1, 2, figsize=(13, 5))
    drawn = {label: (c[LR], c[key]) for label, c in curves.items() if c[LR]}
    for label, (lr_points, val_points) in drawn.items():
        line = ax_lr.plot(*zip(*lr_points, strict=True), label=label, linewidth=1.3)[0]
        if val_points:
            ax_val.plot(*zip(*val_points, strict=True), color=line.get_color(), label=label, linewidth=1.3)
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate", yscale="log")
    ax_val.set(xlabel="epoch", ylabel=metric.replace("_", "/"))
    # Titles at a fixed height (nothing is drawn above the axes): placing them automatically measures
    # every tick label, half of the figure's drawing time here.
    ax_lr.set_title("LR curves (best trial per family)", y=1.0, pad=6)
    ax_val.set_title(f"{metric} per epoch", y=1.0, pad=6)
    for ax in (ax_lr, ax_val):
        ax.grid(alpha=0.3)
    if drawn:
        ax_val.legend(fontsize=7, ncol=2)
    # Fixed margins that fit these labels: tight_layout would draw the figure once more to measure them
    # (0.7 s against 0.5 s for the whole figure here, the last thing a study waits for).
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.1, top=0.93, wspace=0.14)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [label for label in curves if label not in drawn]
