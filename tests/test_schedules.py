"""Contract tests over the whole schedule registry: a new family is covered by adding it to SCHEDULES."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as sched

from bench import schedules
from bench.data import Task
from bench.errors import UserError
from bench.schedules import SCHEDULES, Horizon
from bench.train import TrainConfig, train

FAMILIES = sorted(SCHEDULES)


def _plain_torch(name: str) -> Callable[[torch.optim.Optimizer, dict[str, Any], Horizon], Any]:
    return lambda opt, a, h: getattr(sched, name)(opt, **a)


# How a user would write each family by hand with torch's classes, from the resolved arguments alone: an
# oracle written apart from the registry's builders. Families that are a torch class need no entry; a new
# composition is checked without one (its curves' shape, the trainer against the preview, the population
# against the reference trainer), and is better checked with one.
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


def hand_loop(
    name: str, args: dict[str, Any], horizon: Horizon, val_losses: list[float]
) -> list[float] | None:
    """The LR at every optimizer step of a plain loop a user writes with the same torch classes (None for a
    family with no hand-written reference)."""
    family = SCHEDULES[name]
    build = HAND_BUILT.get(name) or (_plain_torch(name) if family.torch_class else None)
    if build is None:
        return None
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=horizon.lr)
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


def test_every_shipped_family_has_a_hand_written_reference() -> None:
    shipped = {
        "constant", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR",
        "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "ReduceLROnPlateau",
        "LambdaLR", "MultiplicativeLR", "warmup_cosine", "wsd", "warmup_exponential",
    }  # fmt: skip
    missing = [n for n in shipped if n not in HAND_BUILT and not SCHEDULES[n].torch_class]
    assert shipped <= set(SCHEDULES) and not missing, missing


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
    if expected is not None:
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
    assert previewed == result.lrs


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


TORCH_CLASSES = [n for n in FAMILIES if SCHEDULES[n].torch_class]


def test_families_named_after_a_torch_class_say_so() -> None:
    """LambdaLR and MultiplicativeLR take named functions (never a user's code), so they are not torch's
    class argument for argument; every other family named after a torch class is."""
    named = {n for n in FAMILIES if hasattr(sched, n)}
    assert set(TORCH_CLASSES) == named - {"LambdaLR", "MultiplicativeLR"}
    assert all(SCHEDULES[n].torch_class == n for n in TORCH_CLASSES)


def _steps(scheduler: Any, opt: torch.optim.Optimizer, per_step: bool, n: int) -> list[tuple[float, float]]:
    """(LR, momentum) at each of n steps, the scheduler stepped after each (with a flat loss if it needs
    one)."""
    out = []
    for _ in range(n):
        group = opt.param_groups[0]
        out.append((group["lr"], group["momentum"]))
        opt.step()
        if isinstance(scheduler, sched.ReduceLROnPlateau):
            scheduler.step(1.0)
        else:
            scheduler.step()
    return out


@pytest.mark.parametrize("name", TORCH_CLASSES)
def test_a_family_that_is_a_torch_class_has_torchs_defaults(name: str) -> None:
    """Built with explicit values for its derived arguments and nothing else, the family gives the LR and
    the momentum of every step that the torch class gives, built with the same values and torch's defaults
    for the rest (the values torch requires, and lrbench defaults, given to both)."""
    family = SCHEDULES[name]
    cls = getattr(sched, name)
    params = inspect.signature(cls.__init__).parameters
    assert set(family.args) <= set(params), f"{name}: arguments not under torch's names"
    horizon = family.horizon(15, 4, 0.3)
    resolved = family.resolve({}, horizon)
    derived = {k: v for k, v in resolved.items() if family.args[k].derived}
    required = {
        k: resolved[k]
        for k, p in params.items()
        if p.default is inspect.Parameter.empty and k in family.args and k not in derived
    }

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=horizon.lr, momentum=0.9)

    mine_opt, theirs_opt = optimizer(), optimizer()
    mine = family.build(mine_opt, family.resolve(derived, horizon), horizon)
    theirs = cls(theirs_opt, **derived, **required)
    assert _steps(mine, mine_opt, family.per_step, horizon.n) == _steps(
        theirs, theirs_opt, family.per_step, horizon.n
    )


def test_warmup_cosine_decays_to_its_minimum_whatever_the_warmup() -> None:
    """T_max follows the warmup actually given (it once followed the default warmup: a cosine that reached
    0 early and climbed again, here near step 488 of 510)."""
    lrs, args = schedules.preview(
        "warmup_cosine", {"warmup_iters": 4}, lr=0.01, epochs=30, steps_per_epoch=17
    )
    assert args["T_max"] == 510 - 4
    after = lrs[4:]
    assert all(b <= a for a, b in itertools.pairwise(after)) and min(lrs) == lrs[-1] > 0
