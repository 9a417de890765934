"""``lrbench lr-sweep STUDY.yaml``: a study's model trained at many constant LRs on a few seeds, and the LR
range test beside it (:mod:`bench.sweep`); the ``training.lr`` range they suggest, the figure
(:mod:`bench.report.sweep_figure`), the CSVs, and, asked, a copy of the study with that range.

Everything is checked (the study, the options, the copy's path) before anything is trained or written;
each file is written whole.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.cache import write_whole
from bench.config import Locations, StudyConfig, check_runnable, load_sized, parse
from bench.config.reading import with_data
from bench.config.yamlsafe import read_yaml
from bench.errors import UserError

if TYPE_CHECKING:
    from bench.sweep import SweepResult

FIGURE, SWEEP_CSV, RANGE_CSV = "lr-sweep.png", "sweep.csv", "range-test.csv"


def _at_least(least: int) -> Callable[[str], int]:
    def parse_int(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"a whole number of at least {least}, got {text!r}")
        return value

    return parse_int


def _lr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"a positive number, got {text!r}")
    return value


HELP = "train a study's model at many constant LRs (and the LR range test): suggest its training.lr"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``lr-sweep`` subcommand's arguments."""
    from bench.sweep import SweepSettings
    from bench.sweep.suggest import MIN_STEPS

    d = SweepSettings()
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--low", type=_lr, default=d.low, help=f"the smallest LR (default {d.low:g})")
    p.add_argument("--high", type=_lr, default=d.high, help=f"the largest LR (default {d.high:g})")
    p.add_argument("--lrs", type=_at_least(3), default=d.lrs, help=f"LRs, log-spaced (default {d.lrs})")
    p.add_argument(
        "--seeds",
        type=_at_least(1),
        default=d.seeds,
        help=f"seeds per LR, and range tests (default {d.seeds})",
    )
    p.add_argument(
        "--epochs", type=_at_least(1), default=d.epochs, help=f"epochs a member (default {d.epochs})"
    )
    p.add_argument(
        "--steps",
        type=_at_least(MIN_STEPS),
        default=d.steps,
        help=f"the range test's steps (default {d.steps})",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the study's training.device)")
    p.add_argument("--output", metavar="DIR", help="where the files go (default: <output>/<name>/lr-sweep)")
    p.add_argument(
        "--write", metavar="COPY.yaml", help="write a copy of the study with the suggested training.lr"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _copy_target(args: argparse.Namespace, cfg: StudyConfig) -> Path | None:
    """The copy's path, refused where it is the study file itself, where its folder is not one, and, for a
    study of the user's functions (looked up beside the study file), outside the study's folder."""
    if not args.write:
        return None
    copy, study = Path(args.write), Path(args.study)
    if not copy.resolve().parent.is_dir():
        raise UserError(f"--write {args.write}: its folder {copy.parent} is not a folder that exists")
    functions = [p for p in (cfg.task.python, cfg.model.python) if p]
    if functions and copy.resolve().parent != study.resolve().parent:
        raise UserError(
            f"--write {args.write}: the study's {functions[0]} is looked up beside the study file; "
            f"write the copy in {study.parent} too"
        )
    if copy.resolve() == study.resolve() or (copy.exists() and os.path.samefile(copy, study)):
        raise UserError(
            f"--write {args.write} is the study file itself; name a copy (the study is not changed)"
        )
    if copy.is_dir():
        raise UserError(f"--write {args.write} is a folder; name the copy's file")
    return copy


def cmd_lr_sweep(args: argparse.Namespace) -> int:
    from bench.sweep import SweepSettings

    cfg, sizes = load_sized(args.study)
    settings = SweepSettings(args.low, args.high, args.lrs, args.seeds, args.epochs, args.steps)
    if not args.low < args.high:
        raise UserError(f"--low must be below --high, got --low {args.low:g} and --high {args.high:g}")
    settings.check()
    if args.device is not None:  # trains there, whatever the study's training.device says
        from bench.train import resolve_device

        try:
            resolve_device(args.device)
        except UserError as exc:
            raise UserError(f"--device: {exc}") from None
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, device=args.device))
    check_runnable(cfg, sizes)
    copy = _copy_target(args, cfg)
    raw = read_yaml(Path(args.study)) if copy is not None else None
    folder = Path(args.output) if args.output else Locations.resolve(cfg).results_dir(cfg) / "lr-sweep"
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write to {folder}: {existing} is a file, not a folder")

    from bench.sweep import run_sweep

    if len(cfg.training.optimizer) > 1:
        print(
            f"lr-sweep: the study searches {', '.join(cfg.training.optimizer)}: the sweep trains "
            f"{cfg.training.optimizer[0]}",
            file=sys.stderr,
        )
    result = run_sweep(cfg, settings, progress=lambda line: print(f"lr-sweep: {line}", file=sys.stderr))
    try:
        files = _write_results(cfg, result, folder)
        if copy is not None:
            assert raw is not None
            files["copy"] = _write_copy(cfg, result, raw, copy, folder / FIGURE)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or folder}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(_json(cfg, result, files)))
    else:
        print(_answer(cfg, result, files))
    return 0


def _write_results(cfg: StudyConfig, result: SweepResult, folder: Path) -> dict[str, str]:
    from bench.report.sweep_figure import RangeCurve, SweepFigure, draw_sweep

    s = result.settings
    groups = result.by_lr()
    figure = SweepFigure(
        title=f"{cfg.name}: LR sensitivity ({result.optimizer}, constant LR) and the LR range test",
        lrs=result.lrs,
        val_loss=[[m.val_loss for m in g] for g in groups],
        val_score=[[m.val_score for m in g] for g in groups],
        score_label="accuracy" if result.score == "accuracy" else "RMSE",
        sweep_label=(
            f"sweep: {len(result.lrs)} constant LRs x {len(result.seeds)} seeds, {s.epochs} epochs each "
            "(mean, band from the smallest to the largest seed's value)"
        ),
        range_tests=[RangeCurve(c.seed, c.lrs, c.losses, c.smoothed, c.stop_lr) for c in result.range_tests],
        suggested=(result.suggestion.low, result.suggestion.high) if result.suggestion else None,
        study_lr=cfg.training.lr_ends(),
        steepest_lr=result.range_steepest_lr,
    )
    paths = {"figure": folder / FIGURE, "sweep_csv": folder / SWEEP_CSV, "range_test_csv": folder / RANGE_CSV}
    score = f"val_{result.score}"
    sweep_rows = [
        [m.lr, m.seed, int(m.diverged), m.epochs_run, m.train_loss, m.val_loss, m.val_score]
        for m in result.members
    ]
    _write_csv(
        paths["sweep_csv"],
        ["lr", "seed", "diverged", "epochs_run", "train_loss", "val_loss", score],
        sweep_rows,
    )
    range_rows = [
        [c.seed, step, lr, loss, smoothed]
        for c in result.range_tests
        for step, (lr, loss, smoothed) in enumerate(zip(c.lrs, c.losses, c.smoothed, strict=True))
    ]
    _write_csv(paths["range_test_csv"], ["seed", "step", "lr", "loss", "smoothed_loss"], range_rows)
    draw_sweep(figure, paths["figure"])
    return {k: str(v) for k, v in paths.items()}


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[f"{v:.8g}" if isinstance(v, float) else v for v in row] for row in rows])
    write_whole(path, lambda f: f.write(text.getvalue().encode()))


def _rounded(value: float) -> float:
    return float(f"{value:.3g}")


def _write_copy(cfg: StudyConfig, result: SweepResult, raw: Any, copy: Path, figure: Path) -> str:
    """The study's YAML with ``training.lr`` the suggested range (three significant digits), checked as a
    study before it is written. YAML's comments are not kept."""
    if result.suggestion is None:
        raise UserError(f"no training.lr to write to {copy}: {result.no_suggestion} (see {figure})")
    low, high = _rounded(result.suggestion.low), _rounded(result.suggestion.high)
    training = dict(raw.get("training") or {})
    training["lr"] = {"low": low, "high": high}
    raw = {**raw, "training": training}
    if (
        cfg.task.csv
        and isinstance(raw.get("task"), dict)
        and not Path(raw["task"].get("csv", "")).is_absolute()
    ):
        # The study's CSV, named from the copy's folder.
        raw["task"] = {
            **raw["task"],
            "csv": os.path.relpath(Path(cfg.task.csv).resolve(), copy.resolve().parent),
        }
    with_data(parse(raw, str(copy)), copy.resolve().parent)
    text = yaml.safe_dump(raw, sort_keys=False)
    write_whole(copy, lambda f: f.write(text.encode()))
    return str(copy)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _comparison(current: tuple[float, float], low: float, high: float) -> str:
    c_low, c_high = current
    if low <= c_low and c_high <= high:
        return "inside the suggested range"
    if c_low <= low and high <= c_high:
        return "wider than the suggested range"
    if c_high < low or c_low > high:
        return "outside the suggested range"
    return "overlapping the suggested range"


def _answer(cfg: StudyConfig, result: SweepResult, files: dict[str, str]) -> str:
    s = result.settings
    lines = [
        f"lr-sweep {cfg.name}: {result.optimizer}, {len(result.lrs)} constant LRs from {s.low:g} to "
        f"{s.high:g} x {len(result.seeds)} seeds, {s.epochs} epochs each "
        f"({result.seconds:.1f} s on {result.device})"
    ]
    c_low, c_high = cfg.training.lr_ends()
    current = f"{c_low:.3g} to {c_high:.3g}" if c_low != c_high else f"{c_low:.3g}"
    g = result.suggestion
    if g is None:
        lines.append(f"  no suggested range: {result.no_suggestion}")
        lines.append(f"  the study's training.lr: {current}")
    else:
        end = {"rise": "the loss turns up", "diverged": "the next LR diverged", "end": "the largest LR swept"}
        lines.append(f"  suggested training.lr: {{low: {g.low:.3g}, high: {g.high:.3g}}}")
        lines.append(
            f"    val loss {g.start_loss:.4g} at the smallest LR, lowest {g.min_loss:.4g} at "
            f"{g.best_lr:.3g}; the range ends where {end[g.high_reason]}"
        )
        lines.append(f"  the study's training.lr: {current}, {_comparison((c_low, c_high), g.low, g.high)}")
    stop = result.range_stop_lr
    lines.append(
        f"  range test ({len(result.range_tests)} run(s) of {s.steps} steps): steepest descent at "
        f"{_fmt(result.range_steepest_lr)}, lowest smoothed loss at {_fmt(result.range_lowest_lr)} "
        "(medians over seeds); "
        + (f"stopped (loss exploded) at {stop:.3g}" if stop is not None else "never exploded")
    )
    lines += [f"wrote {path}" for path in files.values()]
    return "\n".join(lines)


def _json(cfg: StudyConfig, result: SweepResult, files: dict[str, str]) -> dict[str, Any]:
    g = result.suggestion
    c_low, c_high = cfg.training.lr_ends()
    return {
        "study": cfg.name,
        "optimizer": result.optimizer,
        "lrs": list(result.lrs),
        "seeds": list(result.seeds),
        "epochs": result.settings.epochs,
        "suggestion": None
        if g is None
        else {
            "low": g.low,
            "high": g.high,
            "best_lr": g.best_lr,
            "start_loss": g.start_loss,
            "min_loss": g.min_loss,
            "high_reason": g.high_reason,
        },
        "no_suggestion": result.no_suggestion or None,
        "study_lr": {"low": c_low, "high": c_high},
        "range_test": {
            "steps": result.settings.steps,
            "steepest_lr": result.range_steepest_lr,
            "lowest_lr": result.range_lowest_lr,
            "stop_lr": result.range_stop_lr,
            "seeds": [
                {"seed": c.seed, "steepest_lr": c.steepest_lr, "lowest_lr": c.lowest_lr, "stop_lr": c.stop_lr}
                for c in result.range_tests
            ],
        },
        "files": files,
        "seconds": result.seconds,
        "device": result.device,
    }
