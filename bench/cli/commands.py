"""The commands that need no study: the schedule registry, a schedule's curve, one trial trained."""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from bench import schedules
from bench.errors import UserError
from bench.model import ModelConfig

# The run ``lrbench schedule`` previews, and ``lrbench snippet FAMILY`` writes code for, unless told.
PREVIEW_RUN: dict[str, float | int] = {"lr": 0.1, "epochs": 30, "steps_per_epoch": 1}


def parse_value(text: str) -> Any:
    """A --set value: a Python/JSON literal (10, 0.5, 1e-3, [10, 20], "cos") or else the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set expects ARG=VALUE, got {item!r}")
        out[name.strip()] = parse_value(value)
    return out


def _label_map(text: str) -> dict[str, int]:
    """--label-map: a JSON object from target values to class numbers."""
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--label-map is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in mapping.values()
    ):
        raise UserError(
            f'--label-map must map target values to class numbers, e.g. {{"M": 1, "B": 0}}, got {text!r}'
        )
    return mapping


# --- commands -----------------------------------------------------------------------------------------


def cmd_schedules(args: argparse.Namespace) -> int:
    for family in schedules.SCHEDULES.values():
        when = "per step" if family.per_step else "per epoch"
        extra = ", needs val loss" if family.needs_metric else ""
        print(f"{family.name}  [{when}{extra}]  {family.summary}")
        for name, arg in family.args.items():
            d = arg.default
            default = f"derived: {d.help}" if isinstance(d, schedules.Derived) else repr(d)
            choices = f"  one of: {', '.join(map(str, arg.choices))}" if arg.choices else ""
            search = f"  (a study: {arg.in_search!r})" if arg.fixed_in_search else ""
            print(f"    {name:<20} {arg.kind.__name__:<6} default {default}{choices}{search}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    given = parse_sets(args.set)
    # The study's rule: a schedule torch refuses, or that gives a negative or non-finite LR, is one line.
    schedules.check(args.name, given, lr=args.lr, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch)
    lrs, resolved = schedules.preview(
        args.name, given, lr=args.lr, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch
    )
    rows = [(step, step // args.steps_per_epoch, lr) for step, lr in enumerate(lrs)]
    if args.format == "csv":
        print("step,epoch,lr")
        for step, epoch, lr in rows:
            print(f"{step},{epoch},{lr:.10g}")
    else:
        shown = ", ".join(f"{k}={v!r}" for k, v in resolved.items()) or "no arguments"
        print(f"{args.name}({shown})  lr={args.lr}  epochs={args.epochs}  steps/epoch={args.steps_per_epoch}")
        print(f"{'step':>6} {'epoch':>6} {'lr':>14}")
        for step, epoch, lr in rows:
            print(f"{step:>6} {epoch:>6} {lr:>14.8g}")
    if args.plot:
        from bench.report.figures import plot_lr_curves

        plot_lr_curves({args.name: lrs}, args.plot, title=f"{args.name} preview")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.data import DataConfig, load_task
    from bench.train import TrainConfig, resolve_device, train

    if args.csv and not args.target:
        raise UserError("--csv needs --target COLUMN")
    data_cfg = DataConfig(
        dataset=None if args.csv else args.dataset,
        csv=args.csv,
        target=args.target,
        drop=tuple(args.drop or ()),
        kind=args.kind or "",
        label_map=_label_map(args.label_map) if args.label_map else None,
        split_seed=args.split_seed,
    )
    cfg = TrainConfig(
        scheduler=args.scheduler,
        scheduler_args=parse_sets(args.set),
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        weight_decay=args.weight_decay,
        model=ModelConfig(hidden=tuple(args.hidden), activation=args.activation, dropout=args.dropout),
    )
    cfg.check()
    kind = data_cfg.task_kind
    task = load_task(data_cfg, resolve_device(args.device))
    steps = math.ceil(len(task.y_train) / cfg.batch_size)
    schedules.check(cfg.scheduler, cfg.scheduler_args, lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps)
    result = train(task, cfg)
    summary = result.summary()
    if args.json:
        print(
            json.dumps(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
            )
        )
        return 0
    status = f"diverged at step {result.diverged_step}" if result.diverged else "ok"
    head = f"{task.name}: {cfg.scheduler} {cfg.optimizer} lr={cfg.lr} seed={cfg.seed} on {result.device}"
    print(f"{head}: {status}")
    print(
        f"  epochs {result.epochs_run}/{cfg.epochs}, {result.steps_per_epoch} steps/epoch, "
        f"{result.seconds:.2f} s; "
        f"final val {kind.label} {summary[f'val_{kind.score}']:.4f}, best {result.best_val_score:.4f} "
        f"({kind.better})"
    )
    print(f"  test {kind.label} {result.test_score:.4f}, test loss {result.test_loss:.4f}")
    return 0
