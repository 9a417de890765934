"""What a schedule family is: its arguments, how they default and are searched, and what its curves do.

The entries themselves are in :mod:`bench.schedules.families`; this module is the contract they follow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import UserError

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler as Scheduler  # ReduceLROnPlateau is one too


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


Value = Any  # an argument's value: a number, a string, a flag or a list of integers
Args = Mapping[str, Value]
Bound = float | int | Callable[[Horizon], float | int]


@dataclass(frozen=True)
class Derived:
    """A default that the run decides: computed from the horizon and from the arguments resolved before it
    (given, drawn or defaulted), never from another argument's default."""

    fn: Callable[[Horizon, Args], Value]
    help: str  # how it is computed, as ``lrbench schedules`` shows it


_UNSET: Any = object()


@dataclass(frozen=True)
class Arg:
    """One scheduler argument: its type, its default (torch's, where the argument is torch's and torch has
    one) and the range a study searches it in.

    ``in_search``: the value a study uses where it does not search the argument, when lrbench prefers
    another than the default for a fair comparison (such as keeping momentum fixed).
    ``at_least``: the smallest value that makes a schedule (each value, for a list), where torch accepts
    smaller ones and gives a curve that is no schedule (a cosine over -5 steps, a warmup of -3)."""

    kind: type
    default: Value | Derived
    low: Bound | None = None
    high: Bound | None = None
    log: bool = False
    choices: tuple[Value, ...] | None = None
    help: str = ""
    in_search: Value = _UNSET
    at_least: float | None = None

    @property
    def derived(self) -> bool:
        return isinstance(self.default, Derived)

    @property
    def searchable(self) -> bool:
        return self.choices is not None or (self.low is not None and self.high is not None)

    @property
    def fixed_in_search(self) -> bool:
        return self.in_search is not _UNSET


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
class Shape:
    """What every curve of a family does, whatever its arguments; the property tests check it over
    hundreds of draws from the family's search space.

    - ``restarts``: the LR may rise again after it decayed (cycles, warm restarts); otherwise, from the end
      of the warmup on (or from the first step), it never rises.
    - ``warmup``: the step at which the family's ramp ends, and the LR there (None: not fixed exactly).
    - ``final``: the LR once the run's last step is taken, where the schedule is built to span the run.
    """

    restarts: bool = False
    warmup: Callable[[Args, Horizon], tuple[int, float | None]] | None = None
    final: Callable[[Args, Horizon], float] | None = None


Builder = Callable[["Optimizer", dict[str, Value], Horizon], "Scheduler"]


@dataclass(frozen=True)
class Family:
    """A schedule family: a torch scheduler (or a composition of them) with its contract.

    ``torch_class``: the torch scheduler class the family is, argument for argument (None for compositions
    and for families whose arguments name functions); the tests check that its defaults are torch's."""

    name: str
    build_fn: Builder
    args: Mapping[str, Arg] = field(default_factory=dict)
    per_step: bool = False
    needs_metric: bool = False
    summary: str = ""
    shape: Shape = field(default_factory=Shape)
    torch_class: str | None = None

    def horizon(self, epochs: int, steps_per_epoch: int, lr: float) -> Horizon:
        n = epochs * steps_per_epoch if self.per_step else epochs
        return Horizon(n=n, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr)

    def resolve(self, given: Args, horizon: Horizon) -> dict[str, Value]:
        """Every argument the scheduler is built with: given values checked and coerced, the others
        defaulted; derived defaults last, from the values resolved before them. In declaration order."""
        unknown = sorted(set(given) - set(self.args))
        if unknown:
            allowed = ", ".join(self.args) or "(none)"
            raise UserError(f"{self.name} has no argument {unknown[0]!r}; its arguments are: {allowed}")
        out: dict[str, Value] = {}
        for name, arg in self.args.items():
            if name in given:
                out[name] = coerce(self.name, name, arg, given[name])
            elif not isinstance(arg.default, Derived):
                out[name] = arg.default
        for name, arg in self.args.items():
            if name not in out and isinstance(arg.default, Derived):
                out[name] = arg.default.fn(horizon, out)
        return {name: out[name] for name in self.args}

    def build(self, optimizer: Optimizer, args: Args, horizon: Horizon) -> Scheduler:
        """Build the torch scheduler from resolved arguments; torch's own checks become one-line errors."""
        try:
            return self.build_fn(optimizer, dict(args), horizon)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
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

    def search_fixed(self) -> dict[str, Value]:
        """The values a study gives the arguments it does not search, where lrbench prefers them to the
        defaults (see :attr:`Arg.in_search`)."""
        return {name: arg.in_search for name, arg in self.args.items() if arg.fixed_in_search}


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
        if any(b <= a for a, b in itertools.pairwise(out)):
            raise fail("in increasing order, each value once")
    else:
        if not isinstance(value, str):
            raise fail("a string")
        out = value
    if arg.choices is not None and out not in arg.choices:
        raise fail("one of " + ", ".join(map(str, arg.choices)))
    if arg.at_least is not None and any(v < arg.at_least for v in (out if isinstance(out, list) else [out])):
        raise fail(f"at least {arg.at_least:g}" + (" (each value)" if isinstance(out, list) else ""))
    return out
