"""``lrbench snippet RUN_ID|FAMILY``: the PyTorch code that builds a schedule in your own training loop.

For a trial run: its optimizer, base LR and scheduler with every argument it was built with, over the run
it was built for (epochs, batches an epoch). For a family: its default arguments (or ``--set`` ones) over
the run given. Either way the code is :mod:`bench.schedules.code`'s (tests/test_schedule_code.py runs it
for every family), set in a loop skeleton that steps the scheduler where lrbench does: after every
optimizer step, once an epoch, or once an epoch with the validation loss (ReduceLROnPlateau).
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from bench import schedules
from bench.cli.commands import PREVIEW_RUN, parse_sets
from bench.cli.recorded import read_trial, tracking_uri
from bench.errors import UserError
from bench.schedules.code import optimizer_code, scheduler_code
from bench.schedules.registry import Args

# --lr, --epochs, --steps-per-epoch, --optimizer, --momentum, --weight-decay, --set: a family's run.
FAMILY_OPTIONS = ("lr", "epochs", "steps_per_epoch", "optimizer", "momentum", "weight_decay", "set")
FAMILY_DEFAULTS: dict[str, Any] = {
    **PREVIEW_RUN,  # lrbench schedule's run
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 0.0,
}


def snippet(
    family_name: str,
    args: Args,
    horizon: schedules.Horizon,
    optimizer: str,
    momentum: float,
    weight_decay: float,
    header: list[str],
) -> str:
    """The code: ``header`` (comment lines), the imports, the optimizer and scheduler built, and the loop
    that steps them. Runs as written given ``model``, ``train_loader`` (``horizon.steps_per_epoch``
    batches), ``loss_fn`` and, for a family that needs it, ``evaluate(model)`` (the validation loss)."""
    family = schedules.get(family_name)
    code = scheduler_code(family_name, args, horizon)
    needs = "`model`, `train_loader` (its batches), `loss_fn`" + (
        " and `evaluate(model)` (the validation loss)" if family.needs_metric else ""
    )
    lines = [f"# {line}" for line in textwrap.wrap(" ".join(header), 100)]
    lines += ["import torch", *code.imports, ""]
    lines += [f"# Yours: {needs}."]
    lines += [optimizer_code(optimizer, horizon.lr, momentum, weight_decay), code.build, ""]
    batches = f"{horizon.steps_per_epoch} batch{'es' if horizon.steps_per_epoch != 1 else ''} an epoch"
    lines += [
        f"for epoch in range({horizon.epochs}):",
        f"    for x, y in train_loader:  # {batches}: the schedule spans {horizon.epochs} epochs of them",
        "        optimizer.zero_grad()",
        "        loss = loss_fn(model(x), y)",
        "        loss.backward()",
        "        optimizer.step()",
    ]
    call, _, when = code.step.partition(") ")  # "scheduler.step() after every optimizer.step()"
    if family.per_step:
        lines.append(f"        {call})  # {when}")
    elif family.needs_metric:
        lines += ["    val_loss = evaluate(model)", f"    {call})  # {when}"]
    else:
        lines.append(f"    {call})  # {when}")
    return "\n".join(lines) + "\n"


def cmd_snippet(args: argparse.Namespace) -> int:
    if args.target in schedules.SCHEDULES:
        print(_family_snippet(args), end="")
        return 0
    given = [
        f"--{name.replace('_', '-')}" for name in FAMILY_OPTIONS if getattr(args, name, None) is not None
    ]
    if given:
        raise UserError(
            f"{given[0]} is for a family's snippet; {args.target!r} is no family "
            f"({', '.join(schedules.SCHEDULES)}), so it is taken for a run id, whose snippet is its own run's"
        )
    trial = read_trial(tracking_uri(args), args.target)
    t, rec = trial.train, trial.record
    h = trial.horizon
    name = rec.tags.get("mlflow.runName", "")
    header = [
        f"lrbench run {rec.run_id} ({name}, study {rec.tags.get('study', '?')}): {t.scheduler} on "
        f"{trial.data.name},",
        f"{h.epochs} epochs of {h.steps_per_epoch} batches (batch size {t.batch_size}), seed {t.seed}.",
    ]
    print(snippet(t.scheduler, t.scheduler_args, h, t.optimizer, t.momentum, t.weight_decay, header), end="")
    return 0


def _family_snippet(args: argparse.Namespace) -> str:
    """A family's snippet: its arguments (defaults, or --set) resolved for the run the options give."""

    def option(name: str) -> Any:
        value = getattr(args, name, None)
        return FAMILY_DEFAULTS[name] if value is None else value

    name, optimizer = args.target, str(option("optimizer"))
    lr, epochs, spe = float(option("lr")), int(option("epochs")), int(option("steps_per_epoch"))
    momentum, weight_decay = float(option("momentum")), float(option("weight_decay"))
    if optimizer not in ("sgd", "adam", "adamw"):
        raise UserError(f"--optimizer must be sgd, adam or adamw, got {optimizer!r}")
    if not 0 <= momentum < 1:
        raise UserError(f"--momentum must be at least 0 and below 1, got {momentum}")
    if not weight_decay >= 0:
        raise UserError(f"--weight-decay must be at least 0, got {weight_decay}")
    given = parse_sets(args.set)
    # The study's rule: a schedule torch refuses, or that gives a negative or non-finite LR, is one line.
    schedules.check(name, given, lr=lr, epochs=epochs, steps_per_epoch=spe)
    family = schedules.get(name)
    horizon = family.horizon(epochs, spe, lr)
    resolved = family.resolve(given, horizon)
    shown = ", ".join(f"{k}={v!r}" for k, v in resolved.items()) or "no arguments"
    header = [
        f"lrbench: {name} ({'given' if given else 'default'} arguments, derived ones for this run): {shown};",
        f"{epochs} epochs of {spe} batches, base LR {lr!r}.",
    ]
    return snippet(name, resolved, horizon, optimizer, momentum, weight_decay, header)
