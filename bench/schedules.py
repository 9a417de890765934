"""The registry of learning-rate schedules: one entry per family, built on ``torch.optim.lr_scheduler``.

Every entry declares, in one place, how to build it (always from torch's own scheduler classes), when
it steps (once per epoch or once per optimizer step), whether it needs the validation loss, its
arguments with their defaults, and the search space a study samples from. The curves lrbench records
are therefore exactly the ones a user gets by writing the same torch scheduler in their own loop.

Arguments whose sensible value depends on the run length (``T_max``, ``total_steps``, ``milestones``, ...)
are *derived*: their default is a function of the :class:`Horizon` (how many times the scheduler will
step, the base LR). A user value always wins. ``resolve`` returns every argument the scheduler is built
with, derived ones included, so a run's schedule can be rebuilt from its logged parameters alone.

Adding a family is adding one :class:`Family` to ``_FAMILIES`` below; the contract tests walk the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.lazy import LazyModule

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler as Scheduler  # ReduceLROnPlateau is one too


# torch's scheduler module, imported when a schedule is first built (see bench.lazy).
sched = LazyModule("torch.optim.lr_scheduler")


@dataclass(frozen=True)
class Horizon:
    """What a schedule needs to know about the run it drives.

    ``n`` is the number of times the scheduler will be stepped: epochs for per-epoch families, optimizer
    steps for per-step ones. Derived defaults and search ranges are written in terms of ``n``.
    """

    n: int
    epochs: int
    steps_per_epoch: int
    lr: float


Value = Any
Derived = Callable[[Horizon], Value]
Bound = float | int | Callable[[Horizon], float | int]


@dataclass(frozen=True)
class Arg:
    """One scheduler argument: its type, default (a value or a function of the horizon) and search range."""

    kind: type
    default: Value | Derived
    low: Bound | None = None
    high: Bound | None = None
    log: bool = False
    choices: tuple[Value, ...] | None = None
    help: str = ""

    def default_for(self, horizon: Horizon) -> Value:
        return self.default(horizon) if callable(self.default) else self.default

    @property
    def derived(self) -> bool:
        return callable(self.default)

    @property
    def searchable(self) -> bool:
        return self.choices is not None or (self.low is not None and self.high is not None)


@dataclass(frozen=True)
class Range:
    """A concrete search range for one argument, after the horizon is known."""

    kind: type
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Value, ...] | None = None


def _bound(bound: Bound, horizon: Horizon) -> float | int:
    return bound(horizon) if callable(bound) else bound


@dataclass(frozen=True)
class Family:
    """A schedule family: a torch scheduler (or a composition of them) with its contract."""

    name: str
    build_fn: Callable[[Optimizer, dict[str, Value], Horizon], Scheduler]
    args: Mapping[str, Arg] = field(default_factory=dict)
    per_step: bool = False
    needs_metric: bool = False
    summary: str = ""

    def horizon(self, epochs: int, steps_per_epoch: int, lr: float) -> Horizon:
        n = epochs * steps_per_epoch if self.per_step else epochs
        return Horizon(n=n, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr)

    def resolve(self, given: Mapping[str, Value], horizon: Horizon) -> dict[str, Value]:
        """Every argument the scheduler is built with: user values checked and coerced, the rest defaulted."""
        unknown = sorted(set(given) - set(self.args))
        if unknown:
            allowed = ", ".join(self.args) or "(none)"
            raise UserError(f"{self.name} has no argument {unknown[0]!r}; its arguments are: {allowed}")
        return {
            name: coerce(self.name, name, arg, given[name]) if name in given else arg.default_for(horizon)
            for name, arg in self.args.items()
        }

    def build(self, optimizer: Optimizer, args: Mapping[str, Value], horizon: Horizon) -> Scheduler:
        """Build the torch scheduler from resolved arguments; torch's own checks become one-line errors."""
        try:
            return self.build_fn(optimizer, dict(args), horizon)
        except (ValueError, TypeError, KeyError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
            raise UserError(f"{self.name}({shown}) rejected by torch: {exc}") from None

    def space(self, horizon: Horizon) -> dict[str, Range]:
        """The default search space of this family for a run of the given horizon."""
        out: dict[str, Range] = {}
        for name, arg in self.args.items():
            if not arg.searchable:
                continue
            if arg.choices is not None:
                out[name] = Range(arg.kind, choices=arg.choices)
                continue
            assert arg.low is not None and arg.high is not None
            low, high = _bound(arg.low, horizon), _bound(arg.high, horizon)
            out[name] = Range(arg.kind, low=low, high=max(low, high), log=arg.log)
        return out


def coerce(family: str, name: str, arg: Arg, value: Value) -> Value:
    """Check a user-given argument value against its declared kind (and choices)."""

    def fail(expected: str) -> UserError:
        return UserError(f"{family}: argument {name!r} must be {expected}, got {value!r}")

    if arg.kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        out: Value = value
    elif arg.kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise fail("an integer")
        out = int(value)
    elif arg.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise fail("a finite number")
        out = float(value)
    elif arg.kind is list:
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise fail("a list of integers such as [10, 20]")
        out = [int(v) for v in value]
    else:
        if not isinstance(value, str):
            raise fail("a string")
        out = value
    if arg.choices is not None and out not in arg.choices:
        raise fail("one of " + ", ".join(map(str, arg.choices)))
    return out


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


def _torch(cls: str) -> Callable[[Optimizer, dict[str, Value], Horizon], Scheduler]:
    """A builder that passes the resolved arguments straight to the torch scheduler class of that name."""

    def build(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
        scheduler: Scheduler = getattr(sched, cls)(optimizer, **args)
        return scheduler

    return build


def _constant(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    # The baseline: the base LR throughout. ConstantLR with factor 1 keeps it a real torch scheduler.
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _plateau(optimizer: Optimizer, args: dict[str, Value], horizon: Horizon) -> Scheduler:
    # Stepped with the validation loss, so the mode is always "min".
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


def _half(h: Horizon) -> int:
    return max(1, h.n // 2)


def _fifth(h: Horizon) -> int:
    return max(1, h.n // 5)


def _warmup(fraction: int, start_factor: float, unit: str) -> dict[str, Arg]:
    """The LinearLR warmup arguments the warmup compositions share: 1/fraction of the run by default."""
    return {
        "warmup_iters": Arg(
            int, lambda h: max(1, h.n // fraction), low=1, high=_fifth, help=f"{unit} // {fraction}"
        ),
        "warmup_start_factor": Arg(float, start_factor, low=0.01, high=0.5, log=True),
    }


_FAMILIES: list[Family] = [
    Family("constant", _constant, summary="no schedule: the base LR throughout (the baseline)"),
    Family(
        "StepLR",
        _torch("StepLR"),
        {
            "step_size": Arg(int, lambda h: max(1, h.n // 3), low=1, high=_half, help="epochs // 3"),
            "gamma": Arg(float, 0.1, low=0.05, high=0.9, help="decay factor"),
        },
        summary="multiply by gamma every step_size epochs",
    ),
    Family(
        "MultiStepLR",
        _torch("MultiStepLR"),
        {
            "milestones": Arg(
                list, lambda h: [max(1, h.n // 2), max(2, 3 * h.n // 4)], help="[1/2, 3/4 of epochs]"
            ),
            "gamma": Arg(float, 0.1, low=0.05, high=0.9),
        },
        summary="multiply by gamma at each milestone epoch",
    ),
    Family(
        "ConstantLR",
        _torch("ConstantLR"),
        {
            "factor": Arg(float, 1.0 / 3.0, low=0.05, high=1.0),
            "total_iters": Arg(int, 5, low=1, high=_half),
        },
        summary="base LR times factor for total_iters epochs, then the base LR",
    ),
    Family(
        "LinearLR",
        _torch("LinearLR"),
        {
            "start_factor": Arg(float, 1.0, low=0.05, high=1.0),
            "end_factor": Arg(float, 0.01, low=0.0, high=1.0),
            "total_iters": Arg(int, lambda h: h.n, help="epochs"),
        },
        summary="factor moves linearly from start_factor to end_factor over total_iters epochs",
    ),
    Family(
        "ExponentialLR",
        _torch("ExponentialLR"),
        {"gamma": Arg(float, 0.95, low=0.8, high=0.999)},
        summary="multiply by gamma every epoch",
    ),
    Family(
        "PolynomialLR",
        _torch("PolynomialLR"),
        {"total_iters": Arg(int, lambda h: h.n, help="epochs"), "power": Arg(float, 1.0, low=0.5, high=3.0)},
        summary="(1 - t/total_iters)^power decay to zero",
    ),
    Family(
        "CosineAnnealingLR",
        _torch("CosineAnnealingLR"),
        {
            "T_max": Arg(int, lambda h: h.n, help="epochs"),
            "eta_min": Arg(float, 0.0, low=0.0, high=lambda h: 0.1 * h.lr, help="final LR (absolute)"),
        },
        summary="half cosine from the base LR to eta_min over T_max epochs",
    ),
    Family(
        "CosineAnnealingWarmRestarts",
        _torch("CosineAnnealingWarmRestarts"),
        {
            "T_0": Arg(int, lambda h: max(1, h.n // 4), low=1, high=_half, help="epochs // 4"),
            "T_mult": Arg(int, 1, low=1, high=3),
            "eta_min": Arg(float, 0.0),
        },
        summary="cosine cycles of T_0, T_0*T_mult, ... epochs (SGDR)",
    ),
    Family(
        "CyclicLR",
        _torch("CyclicLR"),
        {
            "base_lr": Arg(
                float,
                lambda h: 0.1 * h.lr,
                low=lambda h: 0.01 * h.lr,
                high=lambda h: 0.5 * h.lr,
                log=True,
                help="base LR / 10",
            ),
            "max_lr": Arg(float, lambda h: h.lr, help="the base LR (the peak)"),
            "step_size_up": Arg(
                int,
                lambda h: max(1, h.n // 8),
                low=lambda h: h.steps_per_epoch,
                high=_half,
                help="steps // 8",
            ),
            "mode": Arg(str, "triangular", choices=("triangular", "triangular2", "exp_range")),
            "gamma": Arg(float, 1.0),
            "cycle_momentum": Arg(bool, False, help="off so that only the LR differs between families"),
        },
        per_step=True,
        summary="triangular cycles between base_lr and max_lr, stepped every optimizer step",
    ),
    Family(
        "OneCycleLR",
        _torch("OneCycleLR"),
        {
            "max_lr": Arg(float, lambda h: h.lr, help="the base LR (the peak)"),
            "total_steps": Arg(int, lambda h: h.n, help="epochs * steps per epoch"),
            "pct_start": Arg(float, 0.3, low=0.1, high=0.5),
            "anneal_strategy": Arg(str, "cos", choices=("cos", "linear")),
            "div_factor": Arg(float, 25.0, low=5.0, high=100.0, log=True),
            "final_div_factor": Arg(float, 1e4, low=10.0, high=1e5, log=True),
            "three_phase": Arg(bool, False),
            "cycle_momentum": Arg(bool, False, help="off so that only the LR differs between families"),
        },
        per_step=True,
        summary="1cycle: warm up to max_lr, anneal far below the start, stepped every optimizer step",
    ),
    Family(
        "ReduceLROnPlateau",
        _plateau,
        {
            "factor": Arg(float, 0.1, low=0.1, high=0.7),
            "patience": Arg(int, 10, low=1, high=10),
            "threshold": Arg(float, 1e-4),
            "cooldown": Arg(int, 0),
            "min_lr": Arg(float, 0.0),
        },
        needs_metric=True,
        summary="multiply by factor when the validation loss stalls for patience epochs",
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
            "T_max": Arg(int, lambda h: max(1, h.n - max(1, h.n // 20)), help="steps - warmup_iters"),
            "eta_min": Arg(float, 0.0),
        },
        per_step=True,
        summary="SequentialLR: LinearLR warmup, then CosineAnnealingLR; stepped every optimizer step",
    ),
    Family(
        "wsd",
        _wsd,
        {
            **_warmup(20, 0.01, "steps"),
            "decay_iters": Arg(
                int,
                lambda h: max(1, h.n // 5),
                low=lambda h: max(1, h.n // 10),
                high=_half,
                help="steps // 5",
            ),
            "end_factor": Arg(float, 0.0, low=0.0, high=0.1),
        },
        per_step=True,
        summary="warmup-stable-decay: SequentialLR of LinearLR, ConstantLR, LinearLR; per optimizer step",
    ),
    Family(
        "warmup_exponential",
        _warmup_exponential,
        {
            **_warmup(10, 0.1, "epochs"),
            "gamma": Arg(float, 0.95, low=0.8, high=0.999),
        },
        summary="ChainedScheduler: LinearLR warmup and ExponentialLR decay applied together",
    ),
]

SCHEDULES: dict[str, Family] = {family.name: family for family in _FAMILIES}


def get(name: str) -> Family:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UserError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULES)}") from None


def step_scheduler(scheduler: Scheduler, family: Family, val_loss: float | None = None) -> None:
    """Step the way the family says: ReduceLROnPlateau with the validation loss, the others plainly."""
    if family.needs_metric:
        assert isinstance(scheduler, sched.ReduceLROnPlateau) and val_loss is not None
        scheduler.step(val_loss)
    else:
        scheduler.step()


def preview(
    name: str,
    given: Mapping[str, Value],
    *,
    lr: float,
    epochs: int,
    steps_per_epoch: int = 1,
    val_losses: list[float] | None = None,
) -> tuple[list[float], dict[str, Value]]:
    """The LR used at each optimizer step of a run, without training, and the resolved arguments.

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
    return lrs, args
