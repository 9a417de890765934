"""Contract tests over the whole schedule registry: a new family is covered by adding it to SCHEDULES."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as sched

from bench import schedules
from bench.data import Task
from bench.engine import TrainConfig, train
from bench.errors import UserError
from bench.schedules import SCHEDULES, Horizon

FAMILIES = sorted(SCHEDULES)


def _plain_torch(name: str) -> Callable[[torch.optim.Optimizer, dict[str, Any], Horizon], Any]:
    return lambda opt, a, h: getattr(sched, name)(opt, **a)


# How a user would write each family by hand with torch's classes, from the resolved arguments alone.
# Families named after a torch class need no entry.
HAND_BUILT: dict[str, Callable[[torch.optim.Optimizer, dict[str, Any], Horizon], Any]] = {
    "constant": lambda opt, a, h: sched.LambdaLR(opt, lambda step: 1.0),
    "ReduceLROnPlateau": lambda opt, a, h: sched.ReduceLROnPlateau(opt, mode="min", **a),
    "LambdaLR": lambda opt, a, h: sched.LambdaLR(
        opt,
        {
            "inverse_sqrt": lambda s: 1 / math.sqrt(s + 1),
            "inverse_time": lambda s: 1 / (1 + 10 * s / h.n),
            "linear_to_zero": lambda s: max(0.0, 1 - s / h.n),
        }[a["lr_lambda"]],
    ),
    "MultiplicativeLR": lambda opt, a, h: sched.MultiplicativeLR(
        opt,
        {
            "decay_0.9": lambda s: 0.9,
            "decay_0.95": lambda s: 0.95,
            "decay_0.99": lambda s: 0.99,
            "inverse_sqrt": lambda s: math.sqrt(s / (s + 1)),
        }[a["lr_lambda"]],
    ),
    "warmup_cosine": lambda opt, a, h: sched.SequentialLR(
        opt,
        [
            sched.LinearLR(opt, start_factor=a["warmup_start_factor"], total_iters=a["warmup_iters"]),
            sched.CosineAnnealingLR(opt, T_max=a["T_max"], eta_min=a["eta_min"]),
        ],
        milestones=[a["warmup_iters"]],
    ),
    "wsd": lambda opt, a, h: sched.SequentialLR(
        opt,
        [
            sched.LinearLR(opt, start_factor=a["warmup_start_factor"], total_iters=a["warmup_iters"]),
            sched.ConstantLR(opt, factor=1.0, total_iters=h.n - a["warmup_iters"] - a["decay_iters"]),
            sched.LinearLR(opt, start_factor=1.0, end_factor=a["end_factor"], total_iters=a["decay_iters"]),
        ],
        milestones=[a["warmup_iters"], h.n - a["decay_iters"]],
    ),
    "warmup_exponential": lambda opt, a, h: sched.ChainedScheduler(
        [
            sched.LinearLR(opt, start_factor=a["warmup_start_factor"], total_iters=a["warmup_iters"]),
            sched.ExponentialLR(opt, gamma=a["gamma"]),
        ]
    ),
}


def hand_loop(name: str, args: dict[str, Any], horizon: Horizon, val_losses: list[float]) -> list[float]:
    """The LR at every optimizer step of a plain loop a user writes with the same torch classes."""
    family = SCHEDULES[name]
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=horizon.lr)
    build = HAND_BUILT.get(name) or _plain_torch(name)
    scheduler = build(opt, dict(args), horizon)
    lrs = []
    for epoch in range(horizon.epochs):
        for _ in range(horizon.steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            param.grad = torch.ones(1)
            opt.step()
            if family.per_step:
                scheduler.step()
        if not family.per_step:
            if family.needs_metric:
                scheduler.step(val_losses[epoch])
            else:
                scheduler.step()
    return lrs


def test_every_family_has_a_hand_written_reference() -> None:
    missing = [n for n in FAMILIES if n not in HAND_BUILT and not hasattr(sched, n)]
    assert not missing, f"add a hand-built torch reference for {missing} to HAND_BUILT"


@pytest.mark.parametrize("name", FAMILIES)
def test_trainer_lr_curve_equals_hand_written_torch_loop(name: str, tiny_task: Task) -> None:
    # Small patience so that ReduceLROnPlateau actually reduces within the run.
    given = {"patience": 1} if name == "ReduceLROnPlateau" else {}
    cfg = TrainConfig(
        scheduler=name, scheduler_args=given, optimizer="sgd", lr=0.05, epochs=12, batch_size=32
    )
    result = train(tiny_task, cfg)
    family = SCHEDULES[name]
    horizon = family.horizon(cfg.epochs, result.steps_per_epoch, cfg.lr)
    assert result.steps_per_epoch > 1
    assert len(result.lrs) == cfg.epochs * result.steps_per_epoch
    expected = hand_loop(name, result.scheduler_args, horizon, result.val_loss)
    assert result.lrs == expected
    # The preview (no training) gives the same curve when fed the same validation losses.
    previewed, _ = schedules.preview(
        name,
        given,
        lr=cfg.lr,
        epochs=cfg.epochs,
        steps_per_epoch=result.steps_per_epoch,
        val_losses=result.val_loss,
    )
    assert previewed == expected


def test_schedules_do_change_the_lr() -> None:
    """Guards the contract test above against comparing two flat lines."""
    for name in FAMILIES:
        lrs, _ = schedules.preview(name, {}, lr=0.1, epochs=40, steps_per_epoch=3)
        distinct = len({round(v, 12) for v in lrs})
        assert (distinct == 1) == (name == "constant"), (name, distinct)


@pytest.mark.parametrize("name", FAMILIES)
def test_search_space_corners_build(name: str) -> None:
    """Every corner of a family's default search space is accepted by torch."""
    family = SCHEDULES[name]
    horizon = family.horizon(50, 12, 1e-3)
    space = family.space(horizon)
    for pick in ("low", "high"):
        given = {}
        for arg, rng in space.items():
            if rng.choices is not None:
                given[arg] = rng.choices[0 if pick == "low" else -1]
            else:
                assert rng.low is not None and rng.high is not None and rng.low <= rng.high, (arg, rng)
                given[arg] = getattr(rng, pick)
        lrs, _ = schedules.preview(name, given, lr=1e-3, epochs=50, steps_per_epoch=12)
        assert all(math.isfinite(v) and v >= 0 for v in lrs)


def test_resolve_fills_derived_arguments() -> None:
    one_cycle = SCHEDULES["OneCycleLR"]
    args = one_cycle.resolve({}, one_cycle.horizon(50, 12, 0.01))
    assert args["total_steps"] == 600 and args["max_lr"] == 0.01
    cosine = SCHEDULES["CosineAnnealingLR"]
    assert cosine.resolve({}, cosine.horizon(50, 12, 0.01))["T_max"] == 50
    assert cosine.resolve({"T_max": 7}, cosine.horizon(50, 12, 0.01))["T_max"] == 7


# The table printed in shared seed 000: SGD lr=0.1, StepLR(step_size=10, gamma=0.9), "Epoch N" = 1-based
# epoch N, printed after scheduler.step(), i.e. the LR that 0-based epoch N uses.
SEED_000 = (
    {n: 0.1 for n in range(1, 10)} | {n: 0.09 for n in range(10, 20)} | {n: 0.081 for n in range(20, 30)}
)
SEED_000[30] = 0.0729


def test_seed_000_step_lr_table() -> None:
    lrs, _ = schedules.preview("StepLR", {"step_size": 10, "gamma": 0.9}, lr=0.1, epochs=31)
    assert lrs[0] == 0.1
    for epoch, expected in SEED_000.items():
        assert f"{lrs[epoch]:.5f}" == f"{expected:.5f}", epoch


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("Steplr", {}, "unknown scheduler 'Steplr'; choose one of: constant, StepLR"),
        ("StepLR", {"gama": 0.5}, "StepLR has no argument 'gama'; its arguments are: step_size, gamma"),
        ("StepLR", {"step_size": 2.5}, "argument 'step_size' must be an integer, got 2.5"),
        ("StepLR", {"gamma": "x"}, "argument 'gamma' must be a finite number, got 'x'"),
        ("OneCycleLR", {"anneal_strategy": "cosine"}, "must be one of cos, linear"),
        ("MultiStepLR", {"milestones": 10}, "must be a list of integers"),
        ("ConstantLR", {"factor": 2.0}, "rejected by torch"),
        ("LambdaLR", {"lr_lambda": "lambda e: 0.9 ** e"}, "must be one of inverse_sqrt"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(name: str, given: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as info:
        schedules.preview(name, given, lr=0.1, epochs=10)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
