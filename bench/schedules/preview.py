"""Stepping a family's scheduler the way a training loop does, and its LR curve without training."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.errors import UserError
from bench.schedules.families import get, sched
from bench.schedules.registry import Args, Family, Horizon, Value

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LRScheduler as Scheduler


def step_scheduler(scheduler: Scheduler, family: Family, val_loss: float | None = None) -> None:
    """Step the way the family says: ReduceLROnPlateau with the validation loss, the others plainly."""
    if family.needs_metric:
        assert isinstance(scheduler, sched.ReduceLROnPlateau) and val_loss is not None
        scheduler.step(val_loss)
    else:
        scheduler.step()


@dataclass(frozen=True)
class Curve:
    """A schedule's LR at each optimizer step of a run, the LR it leaves once the run's last step is taken,
    and the arguments it was built with."""

    lrs: list[float]
    final: float
    args: dict[str, Value]


def curve(
    name: str,
    given: Args,
    *,
    lr: float,
    epochs: int,
    steps_per_epoch: int = 1,
    val_losses: Sequence[float] | None = None,
) -> Curve:
    """The schedule stepped as a training loop steps it, without training.

    ReduceLROnPlateau needs a validation loss per epoch; without ``val_losses`` it is fed a flat loss,
    which shows where a stalled run would get its reductions.
    """
    import torch

    family = get(name)
    horizon = family.horizon(epochs, steps_per_epoch, lr)
    args = family.resolve(given, horizon)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = family.build(optimizer, args, horizon)
    lrs: list[float] = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if family.per_step:
                scheduler.step()
        if not family.per_step:
            step_scheduler(scheduler, family, val_losses[epoch] if val_losses else 1.0)
    return Curve(lrs, float(optimizer.param_groups[0]["lr"]), args)


def preview(
    name: str,
    given: Args,
    *,
    lr: float,
    epochs: int,
    steps_per_epoch: int = 1,
    val_losses: Sequence[float] | None = None,
) -> tuple[list[float], dict[str, Value]]:
    """The LR used at each optimizer step of a run, without training, and the resolved arguments."""
    c = curve(name, given, lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, val_losses=val_losses)
    return c.lrs, c.args


def verify(family: Family, args: Args, horizon: Horizon) -> None:
    """Step the schedule built from resolved ``args`` through the whole run, as a training loop steps it
    (ReduceLROnPlateau on a flat loss, which takes every reduction it can): an LR that is negative or not
    finite at any step, or torch raising at any step (a StepLR of step_size 0, a OneCycleLR shorter than
    the run), is one line. Only the scheduler is stepped: a few microseconds a step."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=horizon.lr)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in args.items())
    unit = "step" if family.per_step else "epoch"
    group = optimizer.param_groups[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that the optimizer was never stepped
        scheduler = family.build(optimizer, args, horizon)
        for i in range(horizon.n):
            lr = group["lr"]
            if not (math.isfinite(lr) and lr >= 0):
                raise UserError(
                    f"{family.name}({shown}) gives the LR {lr:.4g} at {unit} {i} of {horizon.n} "
                    f"(base LR {horizon.lr:g}); an LR must be finite and >= 0"
                )
            try:
                step_scheduler(scheduler, family, 1.0)
            except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
                raise UserError(
                    f"{family.name}({shown}) rejected by torch at {unit} {i + 1} of {horizon.n}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None


def check(name: str, given: Args, *, lr: float, epochs: int, steps_per_epoch: int = 1) -> dict[str, Value]:
    """The arguments a schedule of a run is built with (given ones checked, the rest defaulted or derived),
    once :func:`verify` has stepped it through the run."""
    family = get(name)
    horizon = family.horizon(epochs, steps_per_epoch, lr)
    args = family.resolve(given, horizon)
    verify(family, args, horizon)
    return args
