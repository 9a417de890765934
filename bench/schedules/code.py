"""A family's scheduler as the torch code that builds it in your own training loop, with the arguments a run
used: what the report prints for each chosen configuration.

The code is text: tests/test_schedule_code.py runs it for every family and checks that its LR curve is the
family's own, so the text cannot drift from the builders in :mod:`bench.schedules.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.schedules.families import get
from bench.schedules.registry import Args, Horizon, Value

# The named functions of LambdaLR and MultiplicativeLR (bench.schedules.families), as source; ``{n}``: the
# number of times the scheduler steps.
LAMBDA_SOURCE = {
    "inverse_sqrt": "lambda step: 1.0 / math.sqrt(step + 1)",
    "inverse_time": "lambda step: 1.0 / (1.0 + 10.0 * step / {n})",
    "linear_to_zero": "lambda step: max(0.0, 1.0 - step / {n})",
}
MULTIPLIER_SOURCE = {
    "decay_0.9": "lambda step: 0.9",
    "decay_0.95": "lambda step: 0.95",
    "decay_0.99": "lambda step: 0.99",
    "inverse_sqrt": "lambda step: math.sqrt(step / (step + 1))",
}


@dataclass(frozen=True)
class Snippet:
    """``imports`` then ``build`` (one statement that assigns ``scheduler`` from ``optimizer``); ``step``:
    how the loop steps it."""

    imports: tuple[str, ...]
    build: str
    step: str

    def text(self, optimizer: str = "") -> str:
        lines = [*self.imports, "", *([optimizer] if optimizer else []), self.build, f"# {self.step}"]
        return "\n".join(lines)


def _kwargs(args: Mapping[str, Value]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _call(cls: str, args: Mapping[str, Value]) -> str:
    inner = _kwargs(args)
    return f"{cls}(optimizer{', ' + inner if inner else ''})"


def _sequential(parts: list[str], milestones: list[int]) -> str:
    inner = "".join(f"        {p},\n" for p in parts)
    return (
        f"SequentialLR(\n    optimizer,\n    schedulers=[\n{inner}    ],\n    milestones={milestones!r},\n)"
    )


def _warmup_cosine(a: Args, h: Horizon) -> str:
    warmup = {"start_factor": a["warmup_start_factor"], "total_iters": a["warmup_iters"]}
    parts = [
        _call("LinearLR", warmup),
        _call("CosineAnnealingLR", {"T_max": a["T_max"], "eta_min": a["eta_min"]}),
    ]
    return _sequential(parts, [a["warmup_iters"]])


def _wsd(a: Args, h: Horizon) -> str:
    warmup, decay = a["warmup_iters"], a["decay_iters"]
    stable = h.n - warmup - decay
    parts = [
        _call("LinearLR", {"start_factor": a["warmup_start_factor"], "total_iters": warmup}),
        _call("ConstantLR", {"factor": 1.0, "total_iters": stable}),
        _call("LinearLR", {"start_factor": 1.0, "end_factor": a["end_factor"], "total_iters": decay}),
    ]
    return _sequential(parts, [warmup, warmup + stable])


def _warmup_exponential(a: Args, h: Horizon) -> str:
    warmup = _call("LinearLR", {"start_factor": a["warmup_start_factor"], "total_iters": a["warmup_iters"]})
    decay = _call("ExponentialLR", {"gamma": a["gamma"]})
    return (
        f"ChainedScheduler(\n    [\n        {warmup},\n        {decay},\n    ],\n    optimizer=optimizer,\n)"
    )


# The families that are no single torch class argument for argument: (torch classes used, their code).
_COMPOSED: dict[str, tuple[tuple[str, ...], Callable[[Args, Horizon], str]]] = {
    "constant": (("ConstantLR",), lambda a, h: "ConstantLR(optimizer, factor=1.0, total_iters=0)"),
    "ReduceLROnPlateau": (
        ("ReduceLROnPlateau",),
        lambda a, h: _call("ReduceLROnPlateau", {"mode": "min", **a}),
    ),
    "LambdaLR": (
        ("LambdaLR",),
        lambda a, h: f"LambdaLR(optimizer, lr_lambda={LAMBDA_SOURCE[a['lr_lambda']].format(n=h.n)})",
    ),
    "MultiplicativeLR": (
        ("MultiplicativeLR",),
        lambda a, h: f"MultiplicativeLR(optimizer, lr_lambda={MULTIPLIER_SOURCE[a['lr_lambda']]})",
    ),
    "warmup_cosine": (("SequentialLR", "LinearLR", "CosineAnnealingLR"), _warmup_cosine),
    "wsd": (("SequentialLR", "LinearLR", "ConstantLR"), _wsd),
    "warmup_exponential": (("ChainedScheduler", "LinearLR", "ExponentialLR"), _warmup_exponential),
}


def scheduler_code(name: str, args: Args, horizon: Horizon) -> Snippet:
    """The family ``name`` built with ``args`` (every argument, as resolved for a run of ``horizon``)."""
    family = get(name)
    if name in _COMPOSED:
        classes, build = _COMPOSED[name]
        expr = build(args, horizon)
    elif family.torch_class is not None:
        classes, expr = (family.torch_class,), _call(family.torch_class, args)
    else:
        raise KeyError(f"no code for the family {name!r}: add it to bench.schedules.code")
    imports = [f"from torch.optim.lr_scheduler import {', '.join(sorted(set(classes)))}"]
    if "math." in expr:
        imports.insert(0, "import math")
    if family.needs_metric:
        step = "scheduler.step(val_loss) once per epoch, with that epoch's validation loss"
    elif family.per_step:
        step = "scheduler.step() after every optimizer.step()"
    else:
        step = "scheduler.step() once per epoch, after the epoch's optimizer steps"
    return Snippet(tuple(imports), f"scheduler = {expr}", step)


def optimizer_code(name: str, lr: float, momentum: float, weight_decay: float) -> str:
    """The optimizer lrbench builds for ``name`` (bench.train.optimizers), as code."""
    args = {"lr": lr}
    if name == "sgd":
        args["momentum"] = momentum
    args["weight_decay"] = weight_decay  # always: AdamW's own default is 0.01, lrbench's 0
    cls = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[name]
    return f"optimizer = torch.optim.{cls}(model.parameters(), {_kwargs(args)})"
