"""One trial's settings and what training it gives back: the types the engines share with the study."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench import schedules
from bench.data import SCORES
from bench.errors import UserError
from bench.model import ModelConfig
from bench.model import check as check_model
from bench.train.optimizers import OPTIMIZERS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainConfig:
    """One trial's training settings (the schedule's arguments are resolved against its run length)."""

    scheduler: str = "constant"
    scheduler_args: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 32
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"lr > 0 must hold, but got (lr={self.lr})")
        if self.epochs < 1:
            raise UserError(f"epochs >= 1 must hold, but got (epochs={self.epochs})")
        if self.batch_size < 1:
            raise UserError(f"batch_size >= 1 must hold, but got (batch_size={self.batch_size})")
        if not 0 <= self.momentum < 1:
            raise UserError(f"0 <= momentum < 1 must hold, but got (momentum={self.momentum})")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"weight_decay >= 0 must hold, but got (weight_decay={self.weight_decay})")
        check_model(self.model)
        # The given arguments' names and values, before any data is loaded (the run's length, which the
        # schedule is stepped through, is known once it is: bench.schedules.check).
        family = schedules.get(self.scheduler)
        family.resolve(self.scheduler_args, family.horizon(self.epochs, 1, self.lr))


@dataclass(frozen=True)
class EpochMetrics:
    """What ``on_epoch`` receives after each epoch (0-based). ``val_score``: the task's score (accuracy, or
    RMSE for a regression)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_score: float


@dataclass
class TrialResult:
    """What a trial gave. ``*_score``: the task's score, named by ``score``: ``accuracy`` (higher is better),
    or ``rmse`` (a regression's, in the target's own units; lower is better)."""

    scheduler: str
    scheduler_args: dict[str, Any]
    score: str = "accuracy"
    lrs: list[float] = field(default_factory=list)  # the LR used at each optimizer step
    train_loss: list[float] = field(default_factory=list)  # per epoch
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    test_loss: float = math.nan
    test_score: float = math.nan
    epochs_run: int = 0
    steps_per_epoch: int = 0
    diverged: bool = False
    diverged_step: int | None = None
    stopped_early: bool = False  # on_epoch asked to stop (e.g. pruned)
    seconds: float = 0.0
    device: str = "cpu"
    model: torch.nn.Module | None = field(default=None, repr=False)  # kept only when asked (tests)

    @property
    def best_val_score(self) -> float:
        """The best epoch's validation score, in the score's direction."""
        best = max if SCORES[self.score].direction == "maximize" else min
        return best(self.val_score, default=math.nan)

    @property
    def best_val_loss(self) -> float:
        return min(self.val_loss, default=math.nan)

    def summary(self) -> dict[str, Any]:
        """The scalar results (what ``lrbench train --json`` prints), the scores under their own names
        (``test_accuracy``, ``val_rmse``, ...)."""
        skip = ("lrs", "train_loss", "val_loss", "val_score", "test_score", "model")
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        out["scheduler_args"] = dict(self.scheduler_args)
        out[f"test_{self.score}"] = self.test_score
        out[f"val_{self.score}"] = self.val_score[-1] if self.val_score else math.nan
        out["val_loss"] = self.val_loss[-1] if self.val_loss else math.nan
        out[f"best_val_{self.score}"] = self.best_val_score
        out["final_lr"] = self.lrs[-1] if self.lrs else math.nan
        return out
