"""What a study will train, checked before anything is created: its size (:mod:`.limits`), its device,
and every family's schedule, built and stepped through the run at the ends of what the study searches.

A search draws each argument from its range: a schedule that torch refuses, or that gives a negative or
non-finite LR, at the low or the high ends of the ranges would fail trials (or, for a negative LR, train
and be ranked) long after the study's stores were created. This needs torch (a second to import), which
``lrbench export`` and ``ui`` never import: the commands that train call it after :func:`load`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench import schedules
from bench.config.limits import MAX_PARAMETERS, check_size, steps_per_epoch
from bench.config.schema import StudyConfig
from bench.config.searched import family_space
from bench.data import Sizes, Task
from bench.errors import UserError
from bench.train.device import resolve_device


def check_runnable(cfg: StudyConfig, sizes: Sizes, n_trials: int | None = None) -> None:
    check_size(cfg, sizes, n_trials)
    try:
        resolve_device(cfg.training.device)
    except UserError as exc:
        raise UserError(f"training.device: {exc}") from None
    if cfg.model.python or cfg.task.python:
        check_model(cfg)
    per_epoch = steps_per_epoch(cfg, sizes)
    for name in cfg.schedulers:
        family = schedules.SCHEDULES[name]
        for end, horizon, given in _extremes(cfg, name, per_epoch):
            try:
                schedules.verify(family, family.resolve(given, horizon), horizon)
            except UserError as exc:
                raise UserError(f"schedulers.{name}: {exc} ({end})") from None


def check_model(cfg: StudyConfig) -> None:
    """The study's model built and run on two of its training rows (on the CPU), in evaluation and in one
    training step: a function that raises, a module that fails on the task's rows, gives outputs of
    another shape than the task needs or cannot be trained, is a :class:`UserError` now, not a failed
    trial later. With ``confirm.resplit``, a task function's rows for the first confirmation seed must
    match the search's in shape, classes and training rows (the schedules span as many steps)."""
    import torch

    from bench.data import load_task
    from bench.model import build, mean_loss, output_size

    task = load_task(cfg.task)
    where = f"model.python: {cfg.model.python}" if cfg.model.python else "model"
    module = build(task.input_shape, task.n_classes, cfg.model)
    weights = sum(p.numel() for p in module.parameters())
    if weights > MAX_PARAMETERS:
        raise UserError(f"{where}: the module has {weights:.3g} weights; at most {MAX_PARAMETERS:.0e}")
    x, y = task.x_train[:2], task.y_train[:2]
    batch = f"a batch of shape {list(x.shape)}"
    try:
        with torch.no_grad():
            out = module.eval()(x)
    except Exception as exc:
        raise UserError(f"{where} fails on the task's rows ({batch}): {_one_line(exc)}") from None
    want = [len(x), output_size(task.n_classes)]
    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != want:
        outputs = "one output" if want[1] == 1 else f"{want[1]} outputs"
        raise UserError(
            f"{where} gives {got} for {batch}, but the task needs {want} "
            f"({outputs} per row: {task.kind}, {max(task.n_classes, 1)} class(es))"
        )
    try:
        mean_loss(module.train()(x), y, task.regression).backward()
    except Exception as exc:
        raise UserError(
            f"{where} cannot be trained: a training step on {batch} raised {_one_line(exc)}"
        ) from None
    if cfg.task.python and cfg.confirm.seeds and cfg.confirm.resplit:
        _same_rows(task, load_task(cfg.confirm_task(0)), cfg.confirm_task(0).split_seed)


def _same_rows(task: Task, other: Task, split_seed: int) -> None:
    mine = (task.input_shape, task.n_classes, len(task.y_train))
    theirs = (other.input_shape, other.n_classes, len(other.y_train))
    if mine != theirs:
        raise UserError(
            f"task.python: with confirm.resplit, split_seed {split_seed} gives rows of shape "
            f"{list(theirs[0])}, {theirs[1]} output(s) and {theirs[2]} training rows, where the search's "
            f"split gives {list(mine[0])}, {mine[1]} and {mine[2]}: give every split the same sizes, or set "
            "confirm.resplit: false"
        )


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


# A search draws an integer's ends, but never a float's exactly: a float is taken this share inside its end
# (of the range, or of the end itself where that is less), where a OneCycleLR of 10 steps with pct_start 0.1
# exactly has a first phase of no length at all.
INSIDE = 1e-3


def _end(rng: schedules.Range, high: int) -> float | int:
    assert rng.low is not None and rng.high is not None
    low, top = rng.low, rng.high
    end = top if high else low
    if rng.kind is int or low == top:
        return end
    if rng.log and low > 0:
        ratio = min((top / low) ** INSIDE, 1 + INSIDE)
        return top / ratio if high else low * ratio
    step = INSIDE * (min(top - low, abs(end)) if end else top - low)
    return top - step if high else low + step


def _extremes(cfg: StudyConfig, name: str, per_epoch: int) -> Iterator[tuple[str, schedules.Horizon, Any]]:
    """The family's arguments at the low ends of every searched range (with the lowest base LR), then at
    the high ends (with the highest), each choice of a categorical argument taken in turn; as the search
    draws them (bench.config.searched.family_space)."""
    family = schedules.SCHEDULES[name]
    lows_highs = cfg.training.lr_ends()
    first, _ = family_space(cfg, name, family.horizon(cfg.training.epochs, per_epoch, lows_highs[0]))
    variants = max([2, *(len(rng.choices) for rng in first.values() if rng.choices is not None)])
    for j in range(variants):
        high = j % 2
        horizon = family.horizon(cfg.training.epochs, per_epoch, lows_highs[high])
        space, given = family_space(cfg, name, horizon)
        where = f"with lr={horizon.lr:g}"
        for arg, rng in space.items():
            if rng.choices is not None:
                given[arg] = rng.choices[j % len(rng.choices)]
            else:
                given[arg] = _end(rng, high)
                where = f"with lr={horizon.lr:g} and each searched range at its {('low', 'high')[high]} end"
        yield where, horizon, given
