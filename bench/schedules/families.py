"""The registry's entries: one :class:`Family` per schedule, each built on ``torch.optim.lr_scheduler``.

Adding a family is adding one entry to ``_FAMILIES``; the contract and property tests walk the registry
(docs/adding-a-family.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.errors import UserError
from bench.lazy import LazyModule
from bench.schedules.registry import Arg, Args, Builder, Derived, Family, Horizon, Shape, Value

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler as Scheduler

# torch's scheduler module, imported when a schedule is first built (see bench.lazy).
sched = LazyModule("torch.optim.lr_scheduler")


# --- named functions for LambdaLR and MultiplicativeLR (chosen by name, never eval'd) ----------------

# LambdaLR: lr = base_lr * f(step). Each entry maps a horizon to f.
LR_LAMBDAS: dict[str, Callable[[Horizon], Callable[[int], float]]] = {
    "inverse_sqrt": lambda h: lambda step: 1.0 / math.sqrt(step + 1),
    "inverse_time": lambda h: lambda step: 1.0 / (1.0 + 10.0 * step / h.n),
    "linear_to_zero": lambda h: lambda step: max(0.0, 1.0 - step / h.n),
}

# MultiplicativeLR: lr_t = lr_{t-1} * f(t) for t >= 1.
LR_MULTIPLIERS: dict[str, Callable[[Horizon], Callable[[int], float]]] = {
    "decay_0.9": lambda h: lambda step: 0.9,
    "decay_0.95": lambda h: lambda step: 0.95,
    "decay_0.99": lambda h: lambda step: 0.99,
    # prod_{t=1..T} sqrt(t/(t+1)) = 1/sqrt(T+1): the inverse-square-root decay in multiplicative form.
    "inverse_sqrt": lambda h: lambda step: math.sqrt(step / (step + 1)),
}


# --- builders -----------------------------------------------------------------------------------------


BASELINE = "constant"  # the family every other is compared with, and whose runs set the time-to-target target


def _torch(cls: str) -> Builder:
    """A builder that passes the resolved arguments straight to the torch scheduler class of that name."""

    def build(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
        scheduler: Scheduler = getattr(sched, cls)(optimizer, **args)
        return scheduler

    return build


def _constant(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    # The baseline: the base LR throughout. ConstantLR with factor 1 keeps it a real torch scheduler.
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _plateau(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    # Stepped with the validation loss, so the mode is always "min" (torch's default).
    return sched.ReduceLROnPlateau(optimizer, mode="min", **args)


def _lambda(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    return sched.LambdaLR(optimizer, lr_lambda=LR_LAMBDAS[args["lr_lambda"]](horizon))


def _multiplicative(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    return sched.MultiplicativeLR(optimizer, lr_lambda=LR_MULTIPLIERS[args["lr_lambda"]](horizon))


def _warmup_cosine(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    warmup = args["warmup_iters"]
    return sched.SequentialLR(
        optimizer,
        schedulers=[
            sched.LinearLR(optimizer, start_factor=args["warmup_start_factor"], total_iters=warmup),
            sched.CosineAnnealingLR(optimizer, T_max=args["T_max"], eta_min=args["eta_min"]),
        ],
        milestones=[warmup],
    )


def _wsd(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    warmup, decay = args["warmup_iters"], args["decay_iters"]
    stable = horizon.n - warmup - decay
    if stable < 0:
        raise ValueError(f"warmup_iters + decay_iters <= {horizon.n} (the run's steps) must hold")
    return sched.SequentialLR(
        optimizer,
        schedulers=[
            sched.LinearLR(optimizer, start_factor=args["warmup_start_factor"], total_iters=warmup),
            sched.ConstantLR(optimizer, factor=1.0, total_iters=stable),
            sched.LinearLR(optimizer, start_factor=1.0, end_factor=args["end_factor"], total_iters=decay),
        ],
        milestones=[warmup, warmup + stable],
    )


def _warmup_exponential(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    return sched.ChainedScheduler(
        [
            sched.LinearLR(
                optimizer, start_factor=args["warmup_start_factor"], total_iters=args["warmup_iters"]
            ),
            sched.ExponentialLR(optimizer, gamma=args["gamma"]),
        ],
        optimizer=optimizer,
    )


# --- shared pieces of the entries ---------------------------------------------------------------------


def _half(h: Horizon) -> int:
    return max(1, h.n // 2)


def _fifth(h: Horizon) -> int:
    return max(1, h.n // 5)


def _run_length(unit: str) -> Derived:
    return Derived(lambda h, a: h.n, unit)


def _warmup(fraction: int, start_factor: float, unit: str) -> dict[str, Arg]:
    """The LinearLR warmup arguments the warmup compositions share: 1/fraction of the run by default."""
    return {
        "warmup_iters": Arg(
            int,
            Derived(lambda h, a: max(1, h.n // fraction), f"{unit} // {fraction}"),
            low=1,
            high=_fifth,
            at_least=1,
        ),
        "warmup_start_factor": Arg(float, start_factor, low=0.01, high=0.5, log=True),
    }


def _ends_warmup_at_base(a: Args, h: Horizon) -> tuple[int, float | None]:
    return a["warmup_iters"], h.lr


# Keeps momentum out of the comparison (only the LR differs between families); torch cycles it by default.
_NO_MOMENTUM_CYCLE = Arg(bool, True, in_search=False, help="a study keeps it off: only the LR differs")

_FAMILIES: list[Family] = [
    Family(BASELINE, _constant, summary="no schedule: the base LR throughout (the baseline)"),
    Family(
        "StepLR",
        _torch("StepLR"),
        {
            "step_size": Arg(
                int, Derived(lambda h, a: max(1, h.n // 3), "epochs // 3"), low=1, high=_half, at_least=1
            ),
            "gamma": Arg(float, 0.1, low=0.05, high=0.9, help="decay factor"),
        },
        summary="multiply by gamma every step_size epochs",
        torch_class="StepLR",
    ),
    Family(
        "MultiStepLR",
        _torch("MultiStepLR"),
        {
            "milestones": Arg(
                list,
                Derived(lambda h, a: [max(1, h.n // 2), max(2, 3 * h.n // 4)], "[1/2, 3/4 of epochs]"),
                at_least=1,
            ),
            "gamma": Arg(float, 0.1, low=0.05, high=0.9),
        },
        summary="multiply by gamma at each milestone epoch",
        torch_class="MultiStepLR",
    ),
    Family(
        "ConstantLR",
        _torch("ConstantLR"),
        {
            "factor": Arg(float, 1.0 / 3.0, low=0.05, high=1.0),
            "total_iters": Arg(int, 5, low=1, high=_half, at_least=0),
        },
        summary="base LR times factor for total_iters epochs, then the base LR",
        shape=Shape(warmup=lambda a, h: (a["total_iters"], h.lr)),
        torch_class="ConstantLR",
    ),
    Family(
        "LinearLR",
        _torch("LinearLR"),
        {
            "start_factor": Arg(float, 1.0 / 3.0, low=0.05, high=1.0),
            "end_factor": Arg(float, 1.0, low=0.0, high=1.0),
            "total_iters": Arg(int, _run_length("epochs"), at_least=1),
        },
        summary="factor moves linearly from start_factor to end_factor over total_iters epochs",
        shape=Shape(
            warmup=lambda a, h: (a["total_iters"], h.lr * a["end_factor"]),
            final=lambda a, h: h.lr * a["end_factor"],
        ),
        torch_class="LinearLR",
    ),
    Family(
        "ExponentialLR",
        _torch("ExponentialLR"),
        {"gamma": Arg(float, 0.95, low=0.8, high=0.999)},
        summary="multiply by gamma every epoch",
        torch_class="ExponentialLR",
    ),
    Family(
        "PolynomialLR",
        _torch("PolynomialLR"),
        {
            "total_iters": Arg(int, _run_length("epochs"), at_least=1),
            "power": Arg(float, 1.0, low=0.5, high=3.0),
        },
        summary="(1 - t/total_iters)^power decay to zero",
        shape=Shape(final=lambda a, h: 0.0),
        torch_class="PolynomialLR",
    ),
    Family(
        "CosineAnnealingLR",
        _torch("CosineAnnealingLR"),
        {
            "T_max": Arg(int, _run_length("epochs"), at_least=1),
            "eta_min": Arg(
                float, 0.0, low=0.0, high=lambda h: 0.1 * h.lr, help="final LR (absolute)", at_least=0
            ),
        },
        summary="half cosine from the base LR to eta_min over T_max epochs",
        shape=Shape(final=lambda a, h: a["eta_min"]),
        torch_class="CosineAnnealingLR",
    ),
    Family(
        "CosineAnnealingWarmRestarts",
        _torch("CosineAnnealingWarmRestarts"),
        {
            "T_0": Arg(
                int, Derived(lambda h, a: max(1, h.n // 4), "epochs // 4"), low=1, high=_half, at_least=1
            ),
            "T_mult": Arg(int, 1, low=1, high=3, at_least=1),
            "eta_min": Arg(float, 0.0, at_least=0),
        },
        summary="cosine cycles of T_0, T_0*T_mult, ... epochs (SGDR)",
        shape=Shape(restarts=True),
        torch_class="CosineAnnealingWarmRestarts",
    ),
    Family(
        "CyclicLR",
        _torch("CyclicLR"),
        {
            "max_lr": Arg(float, Derived(lambda h, a: h.lr, "the base LR (the peak)")),
            "base_lr": Arg(
                float,
                Derived(lambda h, a: 0.1 * a["max_lr"], "max_lr / 10"),
                low=lambda h: 0.01 * h.lr,
                high=lambda h: 0.5 * h.lr,
                log=True,
            ),
            "step_size_up": Arg(
                int,
                Derived(lambda h, a: max(1, h.n // 8), "steps // 8"),
                low=lambda h: h.steps_per_epoch,
                high=_half,
                at_least=1,
            ),
            "mode": Arg(str, "triangular", choices=("triangular", "triangular2", "exp_range")),
            "gamma": Arg(float, 1.0),
            "cycle_momentum": _NO_MOMENTUM_CYCLE,
        },
        per_step=True,
        summary="triangular cycles between base_lr and max_lr, stepped every optimizer step",
        shape=Shape(restarts=True),
        torch_class="CyclicLR",
    ),
    Family(
        "OneCycleLR",
        _torch("OneCycleLR"),
        {
            "max_lr": Arg(float, Derived(lambda h, a: h.lr, "the base LR (the peak)")),
            "total_steps": Arg(int, _run_length("epochs * steps per epoch"), at_least=1),
            "pct_start": Arg(float, 0.3, low=0.1, high=0.5),
            "anneal_strategy": Arg(str, "cos", choices=("cos", "linear")),
            "div_factor": Arg(float, 25.0, low=5.0, high=100.0, log=True),
            "final_div_factor": Arg(float, 1e4, low=10.0, high=1e5, log=True),
            "three_phase": Arg(bool, False),
            "cycle_momentum": _NO_MOMENTUM_CYCLE,
        },
        per_step=True,
        summary="1cycle: warm up to max_lr, anneal far below the start, stepped every optimizer step",
        # The peak is at step pct_start * total_steps - 1, between two steps unless that is whole.
        shape=Shape(warmup=lambda a, h: (math.ceil(a["pct_start"] * a["total_steps"] - 1), None)),
        torch_class="OneCycleLR",
    ),
    Family(
        "ReduceLROnPlateau",
        _plateau,
        {
            "factor": Arg(float, 0.1, low=0.1, high=0.7),
            "patience": Arg(int, 10, low=1, high=10, at_least=0),
            "threshold": Arg(float, 1e-4, at_least=0),
            "cooldown": Arg(int, 0, at_least=0),
            "min_lr": Arg(float, 0.0, at_least=0),
        },
        needs_metric=True,
        summary="multiply by factor when the validation loss stalls for patience epochs",
        torch_class="ReduceLROnPlateau",
    ),
    Family(
        "LambdaLR",
        _lambda,
        {"lr_lambda": Arg(str, "inverse_sqrt", choices=tuple(LR_LAMBDAS))},
        summary="base LR times a named function of the epoch",
    ),
    Family(
        "MultiplicativeLR",
        _multiplicative,
        {"lr_lambda": Arg(str, "decay_0.95", choices=tuple(LR_MULTIPLIERS))},
        summary="previous LR times a named function of the epoch",
    ),
    Family(
        "warmup_cosine",
        _warmup_cosine,
        {
            **_warmup(20, 0.01, "steps"),
            "T_max": Arg(
                int, Derived(lambda h, a: max(1, h.n - a["warmup_iters"]), "steps - warmup_iters"), at_least=1
            ),
            "eta_min": Arg(float, 0.0, at_least=0),
        },
        per_step=True,
        summary="SequentialLR: LinearLR warmup, then CosineAnnealingLR; stepped every optimizer step",
        shape=Shape(warmup=_ends_warmup_at_base, final=lambda a, h: a["eta_min"]),
    ),
    Family(
        "wsd",
        _wsd,
        {
            **_warmup(20, 0.01, "steps"),
            "decay_iters": Arg(
                int,
                Derived(lambda h, a: max(1, h.n // 5), "steps // 5"),
                low=lambda h: max(1, h.n // 10),
                high=_half,
                at_least=1,
            ),
            "end_factor": Arg(float, 0.0, low=0.0, high=0.1),
        },
        per_step=True,
        summary="warmup-stable-decay: SequentialLR of LinearLR, ConstantLR, LinearLR; per optimizer step",
        shape=Shape(warmup=_ends_warmup_at_base, final=lambda a, h: h.lr * a["end_factor"]),
    ),
    Family(
        "warmup_exponential",
        _warmup_exponential,
        {
            **_warmup(10, 0.1, "epochs"),
            "gamma": Arg(float, 0.95, low=0.8, high=0.999),
        },
        summary="ChainedScheduler: LinearLR warmup and ExponentialLR decay applied together",
        # The decay runs from the first step, so the warmup ends at the base LR times gamma^warmup_iters.
        shape=Shape(warmup=lambda a, h: (a["warmup_iters"], h.lr * a["gamma"] ** a["warmup_iters"])),
    ),
]

SCHEDULES: dict[str, Family] = {family.name: family for family in _FAMILIES}


def get(name: str) -> Family:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UserError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULES)}") from None
