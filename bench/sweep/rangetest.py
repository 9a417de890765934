"""The classic LR range test (Smith 2017; fastai's ``lr_find``, torch-lr-finder, ignite's ``FastaiLRFinder``):
one run whose LR rises exponentially every optimizer step, its training loss recorded and smoothed, stopped
once the smoothed loss explodes. The schedule is torch's own ``ExponentialLR``, stepped after every batch.

A run starts from the same initialisation as the sweep's members of its seed (the reference trainer's:
``torch.manual_seed(seed)``, then the model is built) and draws its batches from a CPU generator of the same
seed, cycling through shuffled epochs for as many steps as it takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.data import Task
from bench.lazy import LazyModule
from bench.model import build, mean_loss
from bench.sweep.suggest import DIVERGE_FACTOR, SmoothedLoss, exploded, lowest_lr, steepest_lr
from bench.train import OPTIMIZERS, TrainConfig

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")


@dataclass(frozen=True)
class RangeTestCurve:
    """One range test: the LR each step used, its batch's training loss and the smoothed loss; where it
    stopped early (``stop_lr``: the LR of the step that stopped it; None: it ran every step) and why."""

    seed: int
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    stop_lr: float | None = None
    stop_reason: str = ""

    @property
    def steepest_lr(self) -> float | None:
        return steepest_lr(self.lrs, self.smoothed)

    @property
    def lowest_lr(self) -> float | None:
        return lowest_lr(self.lrs, self.smoothed)


def growth(lr_start: float, lr_end: float, steps: int) -> float:
    """ExponentialLR's gamma that takes the LR from ``lr_start`` at the first step to ``lr_end`` at the
    last of ``steps``."""
    return (lr_end / lr_start) ** (1 / max(1, steps - 1))


def range_test(task: Task, cfg: TrainConfig, lr_end: float, steps: int) -> RangeTestCurve:
    """The range test of ``cfg`` (its optimizer, momentum, weight decay, batch size, model and seed), the
    LR rising from ``cfg.lr`` to ``lr_end`` over ``steps`` optimizer steps."""
    device = task.device
    torch.manual_seed(cfg.seed)
    model = build(task.input_shape, task.n_classes, cfg.model).to(device)
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, growth(cfg.lr, lr_end, steps))

    n_train = len(task.y_train)
    per_epoch = math.ceil(n_train / cfg.batch_size)
    generator = torch.Generator().manual_seed(cfg.seed)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average = SmoothedLoss()
    best = math.inf
    model.train()
    order = torch.empty(0, dtype=torch.int64)
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(n_train, generator=generator).to(device)
        i = step % per_epoch
        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        lr = float(optimizer.param_groups[0]["lr"])  # the LR this step uses, as the scheduler left it
        loss = mean_loss(model(task.x_train[idx]), task.y_train[idx], task.regression)
        value = float(loss.detach())  # a host sync each step: the stopping rule reads every loss
        if not math.isfinite(value):
            return RangeTestCurve(cfg.seed, *_tuples(lrs, losses, smoothed), lr, "non-finite loss")
        lrs.append(lr)
        losses.append(value)
        smoothed.append(average.add(value))
        best = min(best, smoothed[-1])
        if exploded(smoothed[-1], best):
            why = f"smoothed loss above {DIVERGE_FACTOR:g}x its best"
            return RangeTestCurve(cfg.seed, *_tuples(lrs, losses, smoothed), lr, why)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return RangeTestCurve(cfg.seed, *_tuples(lrs, losses, smoothed))


def _tuples(
    lrs: list[float], losses: list[float], smoothed: list[float]
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    return tuple(lrs), tuple(losses), tuple(smoothed)
