"""The reference trainer: one model, one torch optimizer, one registry schedule, epoch by epoch.

The ground truth the population engine is checked against: the plain PyTorch loop, read top to bottom.
torch only (no optuna, no mlflow), so it can be tested and timed alone. A study hooks in through
``on_epoch``: it receives each epoch's metrics and may ask to stop (pruning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench import schedules
from bench.data import Task
from bench.lazy import LazyModule
from bench.model import build, loss_and_score, mean_loss
from bench.train.optimizers import OPTIMIZERS
from bench.train.trial import EpochMetrics, TrainConfig, TrialResult

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target_std: float | None = None
) -> tuple[float, float]:
    """The mean loss and the score (:func:`bench.model.loss_and_score`) on the rows."""
    model.eval()
    with torch.no_grad():
        loss, score = loss_and_score(model(x), y, target_std)
    model.train()
    return float(loss), float(score)


def batch_weights(n_train: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """Samples in each step's batch of an epoch (the last may be short): the weights of the epoch's mean
    training loss."""
    steps = math.ceil(n_train / batch_size)
    weights = torch.full((steps,), float(batch_size), device=device)
    weights[-1] = n_train - batch_size * (steps - 1)
    return weights


def train(
    task: Task,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    keep_model: bool = False,
) -> TrialResult:
    """Train one trial. A non-finite loss ends it as diverged (with the first bad step); ``on_epoch``
    returning True ends it early (``stopped_early``). Test metrics are computed for every trial that
    did not diverge."""
    cfg.check()
    started = time.perf_counter()
    device = task.device
    family = schedules.get(cfg.scheduler)

    torch.manual_seed(cfg.seed)
    model = build(task.input_shape, task.n_classes, cfg.model).to(device)
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)

    n_train = len(task.y_train)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    horizon = family.horizon(cfg.epochs, steps_per_epoch, cfg.lr)
    args = family.resolve(cfg.scheduler_args, horizon)
    scheduler = family.build(optimizer, args, horizon)

    # Batch order has its own generator, so it does not depend on how many random numbers init drew. It is
    # a CPU generator whatever the device: a seed gives the same batch order on CPU and CUDA, and the
    # population engine draws K orders without a kernel launch each.
    generator = torch.Generator().manual_seed(cfg.seed)
    # Per-step losses stay on the device and are read once per epoch: no host sync inside the loop.
    step_losses = torch.empty(steps_per_epoch, device=device)
    weights = batch_weights(n_train, cfg.batch_size, device)

    result = TrialResult(cfg.scheduler, args, task.score, steps_per_epoch=steps_per_epoch, device=str(device))
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_train, generator=generator).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            # The LR this step uses, as the scheduler left it on the optimizer.
            result.lrs.append(optimizer.param_groups[0]["lr"])
            loss = mean_loss(model(task.x_train[idx]), task.y_train[idx], task.regression)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_losses[i] = loss.detach()
            if family.per_step:
                scheduler.step()

        finite = torch.isfinite(step_losses)
        if not bool(finite.all()):
            first_bad = int((~finite).nonzero()[0])
            result.diverged, result.diverged_step = True, epoch * steps_per_epoch + first_bad
            result.epochs_run = epoch + 1
            break
        train_loss = float((step_losses * weights).sum()) / n_train
        val_loss, val_score = evaluate(model, task.x_val, task.y_val, task.target_std)
        result.epochs_run = epoch + 1
        if not math.isfinite(val_loss):
            # Weights blew up without the training loss noticing (yet): diverged at this epoch's last step.
            result.diverged, result.diverged_step = True, (epoch + 1) * steps_per_epoch - 1
            break
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        result.val_score.append(val_score)
        if not family.per_step:
            # After the epoch's optimizer steps, as PyTorch prescribes; ReduceLROnPlateau on the val loss.
            schedules.step_scheduler(scheduler, family, val_loss)
        if on_epoch is not None and on_epoch(EpochMetrics(epoch, train_loss, val_loss, val_score)):
            result.stopped_early = True
            break

    if not result.diverged:
        result.test_loss, result.test_score = evaluate(model, task.x_test, task.y_test, task.target_std)
    result.seconds = time.perf_counter() - started
    if keep_model:
        result.model = model
    return result
