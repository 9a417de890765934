"""Reading a study definition: YAML (safe loader, with limits: :mod:`.yamlsafe`) into :class:`StudyConfig`,
every rule checked (:mod:`.rules`), its data included.

Validation finishes before any storage, run or output file is created; every error is one line that names
its field. What needs torch (the device, every family's schedule stepped through the run) and the study's
size are checked by :func:`bench.config.runnable.check_runnable`, which the commands that train call next.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bench import schedules, usercode
from bench.config.parsing import convert, number, section
from bench.config.rules import check_name, check_sections
from bench.config.schema import (
    ConfirmSection,
    ObjectiveSection,
    OptunaSection,
    SearchSection,
    StudyConfig,
    TrainingSection,
)
from bench.config.yamlsafe import read_yaml
from bench.data import DataConfig, Sizes, check
from bench.errors import UserError
from bench.model import ModelConfig


def _training(raw: Any) -> TrainingSection:
    if isinstance(raw, dict) and isinstance(raw.get("optimizer"), str):  # one name is a list of one
        raw = {**raw, "optimizer": [raw["optimizer"]]}
    return section(TrainingSection, raw, "training")


def _task(raw: Any) -> DataConfig:
    """The task section, with its kind as the data makes it (a built-in dataset's own, else
    classification) unless given."""
    task = section(DataConfig, raw, "task")
    try:
        kind = task.task_kind
    except UserError as exc:
        raise UserError(f"task.{exc}") from None
    return dataclasses.replace(task, kind=kind.name)


def _objective(raw: Any, task: DataConfig) -> ObjectiveSection:
    """The objective section; its metric is the task's score (val_accuracy, val_rmse) unless given."""
    objective = section(ObjectiveSection, raw, "objective")
    if objective.metric:
        return objective
    return dataclasses.replace(objective, metric=f"val_{task.task_kind.score}")


def _schedulers(raw: Any) -> dict[str, dict[str, Any]]:
    """'all' (default), a list of families, or a mapping family -> {argument: narrowed range}."""
    if raw is None or raw == "all":
        return {name: {} for name in schedules.SCHEDULES}
    if isinstance(raw, list):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"schedulers must be 'all', a list of families or a mapping, got {raw!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, ranges in raw.items():
        if name not in schedules.SCHEDULES:
            raise UserError(
                f"schedulers.{name}: unknown scheduler {name!r}; "
                f"choose from: {', '.join(schedules.SCHEDULES)}"
            )
        ranges = ranges or {}
        if not isinstance(ranges, dict):
            raise UserError(f"schedulers.{name} must map arguments to ranges, got {ranges!r}")
        family = schedules.SCHEDULES[name]
        for arg, spec in ranges.items():
            _check_range(family, arg, spec, f"schedulers.{name}.{arg}")
        out[name] = dict(ranges)
    return out


def _check_range(family: schedules.Family, arg: str, spec: Any, where: str) -> None:
    if arg not in family.args:
        raise UserError(
            f"{where}: {family.name} has no argument {arg!r}; its arguments are: {', '.join(family.args)}"
        )
    declared = family.args[arg]
    if isinstance(spec, list) and declared.kind is not list:
        if not spec:
            raise UserError(f"{where}: an empty list; give [low, high], a list of choices or a value")
        values = [_arg_value(family, arg, v, where) for v in spec]
        if declared.kind in (int, float):
            if len(values) != 2:
                raise UserError(f"{where}: a numeric range is [low, high], got {spec!r}")
            if values[0] > values[1]:
                raise UserError(
                    f"{where}: low <= high must hold, but got (low={values[0]}, high={values[1]})"
                )
    else:
        _arg_value(family, arg, spec, where)


def _arg_value(family: schedules.Family, arg: str, value: Any, where: str) -> Any:
    if isinstance(value, str) and family.args[arg].kind is float:
        value = number(value)
    try:
        return schedules.coerce(family.name, arg, family.args[arg], value)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def parse(raw: Any, source: str = "<study>") -> StudyConfig:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a study definition is a YAML mapping, got {type(raw).__name__}")
    known = [f.name for f in dataclasses.fields(StudyConfig)]
    unknown = [k for k in raw if k not in known]
    if "tasks" in unknown or "protocol" in unknown:
        raise UserError("this is a suite definition (it has tasks), not a study: run it with lrbench suite")
    if unknown:
        raise UserError(f"{unknown[0]} is not a known key; a study takes: {', '.join(known)}")
    name = check_name(raw.get("name"))
    task = _task(raw.get("task"))
    cfg = StudyConfig(
        name=name,
        description=convert(raw.get("description", ""), str, "description"),
        task=task,
        model=section(ModelConfig, raw.get("model"), "model"),
        training=_training(raw.get("training")),
        schedulers=_schedulers(raw.get("schedulers")),
        objective=_objective(raw.get("objective"), task),
        optuna=section(OptunaSection, raw.get("optuna"), "optuna"),
        search=section(SearchSection, raw.get("search"), "search"),
        confirm=section(ConfirmSection, raw.get("confirm"), "confirm"),
        output=convert(raw.get("output", "results"), str, "output"),
    )
    check_sections(cfg)
    return cfg


def load(path: str | Path) -> StudyConfig:
    """Read and validate a study file, including its data (one clear line on any problem)."""
    return load_sized(path)[0]


def load_sized(path: str | Path) -> tuple[StudyConfig, Sizes]:
    """:func:`load`, and the sizes of the study's data (what its limits are computed from)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    return with_data(parse(read_yaml(path), str(path)), path.parent)


def with_data(cfg: StudyConfig, folder: Path) -> tuple[StudyConfig, Sizes]:
    """The study with its CSV path (if any) relative to ``folder``, the definition's, and its data's sizes
    (the data loaded and checked). Import paths (``task.python``, ``model.python``) are looked up in
    ``folder`` first."""
    if cfg.task.python or cfg.model.python:
        usercode.add_folder(folder)
    if cfg.task.csv and not Path(cfg.task.csv).is_absolute():
        candidate = folder / cfg.task.csv
        if candidate.is_file():
            cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, csv=str(candidate)))
    try:
        sizes = check(cfg.task)
    except UserError as exc:
        text = str(exc)  # a task function's errors name their key (task.python) already
        raise UserError(text if text.startswith("task.") else f"task: {text}") from None
    return cfg, sizes
