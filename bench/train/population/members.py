"""A population's members: each one's own real torch scheduler, and the table of the LR (and momentum) it
gives every optimizer step.

Each member's scheduler is built by the registry on a one-parameter stand-in ("proxy") of the member's
optimizer (same class and hyperparameters). Schedules that do not depend on the validation loss are
stepped through the whole run up front, exactly as a training loop would step them, and give a table of
the LR and momentum each optimizer step uses. ReduceLROnPlateau is stepped live, each epoch, with the
member's own validation loss, and fills its next epoch's row.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LRScheduler

from bench import schedules
from bench.train.optimizers import OPTIMIZERS
from bench.train.trial import TrainConfig, TrialResult


def group_key(cfg: TrainConfig) -> tuple[object, ...]:
    """Trials that can share one population: same architecture, batch size, run length and optimizer kind."""
    return (cfg.model, cfg.batch_size, cfg.epochs, cfg.optimizer)


@dataclass(frozen=True)
class ProxySchedule:
    """A trial's own torch scheduler on a stand-in of its optimizer, with the family and the arguments it
    was built with."""

    family: schedules.Family
    args: dict[str, object]
    proxy: torch.optim.Optimizer
    scheduler: LRScheduler


def proxy_schedule(cfg: TrainConfig, steps_per_epoch: int) -> ProxySchedule:
    """A trial's scheduler, built fresh (never stepped); bad arguments raise here, for this trial alone."""
    family = schedules.get(cfg.scheduler)
    horizon = family.horizon(cfg.epochs, steps_per_epoch, cfg.lr)
    args = family.resolve(cfg.scheduler_args, horizon)
    proxy = OPTIMIZERS[cfg.optimizer](
        [torch.zeros(1, requires_grad=True)], cfg.lr, cfg.momentum, cfg.weight_decay
    )
    return ProxySchedule(family, args, proxy, family.build(proxy, args, horizon))


@contextlib.contextmanager
def _proxy_steps() -> Iterator[None]:
    """Scheduler steps on a proxy: its optimizer never steps (a schedule does not depend on optimizer
    steps; the contract tests compare with a loop that steps both), so torch's warning that a scheduler
    stepped before its optimizer does not apply. Older torch's SequentialLR (2.4 here) steps its schedulers
    with an epoch argument at each milestone and warns that the argument is deprecated: torch's own call,
    nothing a caller can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        warnings.filterwarnings("ignore", message=r"The epoch parameter in `scheduler\.step\(\)`")
        yield


def _momentum(group: dict[str, object], optimizer: str) -> float:
    if optimizer == "sgd":
        return float(group["momentum"])  # type: ignore[arg-type]
    return float(group["betas"][0])  # type: ignore[index]


@dataclass
class Member:
    """One trial in a population."""

    index: int  # the caller's number for it
    schedule: ProxySchedule
    generator: torch.Generator  # its batch order, seeded as the reference trainer seeds its own
    result: TrialResult
    cohort: int  # members that joined together share their optimizer step count
    epoch: int = 0  # epochs trained: the member's own clock (members that joined later lag behind)

    @property
    def live(self) -> bool:
        """Stepped each epoch on its validation loss (its table is filled as it trains)."""
        return self.schedule.family.needs_metric


def schedule_rows(
    schedule: ProxySchedule, optimizer: str, epochs: int, steps_per_epoch: int
) -> tuple[list[float], list[float]]:
    """The LR and momentum of every optimizer step of a run, from the member's own torch scheduler, stepped
    where a training loop steps it. A live-stepped (metric) family gets its first epoch only; the rest of
    its rows are NaN until it trains."""
    family, scheduler = schedule.family, schedule.scheduler
    group = schedule.proxy.param_groups[0]
    lrs: list[float] = []
    moms: list[float] = []
    with _proxy_steps():
        for _ in range(1 if family.needs_metric else epochs):
            if family.per_step:
                for _ in range(steps_per_epoch):
                    lrs.append(float(group["lr"]))
                    moms.append(_momentum(group, optimizer))
                    scheduler.step()
            else:
                lrs += [float(group["lr"])] * steps_per_epoch
                moms += [_momentum(group, optimizer)] * steps_per_epoch
                if not family.needs_metric:
                    scheduler.step()
    pad = epochs * steps_per_epoch - len(lrs)
    return lrs + [math.nan] * pad, moms + [math.nan] * pad


def step_live(member: Member, val_loss: float, optimizer: str) -> tuple[float, float]:
    """A live member's epoch ended: its scheduler steps on its validation loss; the LR and momentum of its
    next epoch."""
    schedule = member.schedule
    with _proxy_steps():
        schedules.step_scheduler(schedule.scheduler, schedule.family, val_loss)
    group = schedule.proxy.param_groups[0]
    return float(group["lr"]), _momentum(group, optimizer)
