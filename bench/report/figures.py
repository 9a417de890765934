"""A schedule's LR curve as a PNG (matplotlib, headless), for ``lrbench schedule --plot``. matplotlib is
imported when a figure is first drawn (about a second here): importing this module costs nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType


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
