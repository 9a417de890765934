"""Reading a study definition: YAML (safe loader) into :class:`StudyConfig`, every rule checked.

Validation finishes (data included) before any storage, run or output file is created; every error is one
line that names its field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from bench import schedules
from bench.config.parsing import convert, number, section
from bench.config.schema import (
    BUDGETS,
    METRICS,
    PRUNERS,
    SAMPLERS,
    ConfirmSection,
    FloatRange,
    ObjectiveSection,
    OptunaSection,
    SearchSection,
    StudyConfig,
    TrainingSection,
)
from bench.data import DataConfig, check
from bench.errors import UserError
from bench.model import ACTIVATIONS, ModelConfig
from bench.train.optimizers import OPTIMIZERS


def _training(raw: Any) -> TrainingSection:
    if isinstance(raw, dict) and isinstance(raw.get("optimizer"), str):  # one name is a list of one
        raw = {**raw, "optimizer": [raw["optimizer"]]}
    return section(TrainingSection, raw, "training")


def _check_training(t: TrainingSection) -> None:
    for opt in t.optimizer:
        if opt not in OPTIMIZERS:
            raise UserError(
                f"training.optimizer: unknown optimizer {opt!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
    if not t.optimizer:
        raise UserError("training.optimizer must name at least one optimizer")
    lrs = (
        [t.lr.low, t.lr.high]
        if isinstance(t.lr, FloatRange)
        else list(t.lr)
        if isinstance(t.lr, tuple)
        else [t.lr]
    )
    if not lrs or any(v <= 0 for v in lrs):
        raise UserError(
            f"training.lr must be > 0, but got {t.lr if not isinstance(t.lr, FloatRange) else lrs}"
        )
    if isinstance(t.lr, FloatRange) and t.lr.low > t.lr.high:
        raise UserError(f"training.lr: low <= high must hold, but got (low={t.lr.low}, high={t.lr.high})")
    for name in ("epochs", "batch_size"):
        if getattr(t, name) < 1:
            raise UserError(f"training.{name} must be at least 1, got {getattr(t, name)}")
    if t.engine not in ("population", "reference"):
        raise UserError(f"training.engine must be population or reference, got {t.engine!r}")
    if t.population_size < 0:
        raise UserError(f"training.population_size must be >= 0 (0: automatic), got {t.population_size}")


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
    if unknown:
        raise UserError(f"{unknown[0]} is not a known key; a study takes: {', '.join(known)}")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise UserError(
            "name must be a non-empty string (it names the study, its storage and its experiment)"
        )
    task = section(DataConfig, raw.get("task"), "task")
    model = section(ModelConfig, raw.get("model"), "model")
    if model.activation not in ACTIVATIONS:
        raise UserError(
            f"model.activation: unknown activation {model.activation!r}; "
            f"choose from: {', '.join(ACTIVATIONS)}"
        )
    training = _training(raw.get("training"))
    _check_training(training)
    objective = section(ObjectiveSection, raw.get("objective"), "objective")
    if objective.metric not in METRICS:
        raise UserError(f"objective.metric must be one of {', '.join(METRICS)}, got {objective.metric!r}")
    if objective.direction not in ("", "maximize", "minimize"):
        raise UserError(f"objective.direction must be maximize or minimize, got {objective.direction!r}")
    if objective.reduce not in ("final", "best"):
        raise UserError(f"objective.reduce must be final or best, got {objective.reduce!r}")
    optuna_section = section(OptunaSection, raw.get("optuna"), "optuna")
    if optuna_section.sampler not in SAMPLERS:
        raise UserError(
            f"optuna.sampler must be one of {', '.join(SAMPLERS)}, got {optuna_section.sampler!r}"
        )
    if optuna_section.pruner not in PRUNERS:
        raise UserError(f"optuna.pruner must be one of {', '.join(PRUNERS)}, got {optuna_section.pruner!r}")
    if optuna_section.report_every < 1:
        raise UserError(f"optuna.report_every must be at least 1, got {optuna_section.report_every}")
    if optuna_section.n_trials < 1:
        raise UserError(f"optuna.n_trials must be at least 1, got {optuna_section.n_trials}")
    if optuna_section.sampler == "grid" and isinstance(training.lr, FloatRange):
        raise UserError("training.lr: the grid sampler needs a fixed lr or a list of values, not a range")
    search = section(SearchSection, raw.get("search"), "search")
    if search.budget not in BUDGETS:
        raise UserError(f"search.budget must be one of {', '.join(BUDGETS)}, got {search.budget!r}")
    confirm = section(ConfirmSection, raw.get("confirm"), "confirm")
    if confirm.top_k < 1:
        raise UserError(f"confirm.top_k must be at least 1, got {confirm.top_k}")
    if confirm.seeds < 0 or confirm.seeds == 1:
        raise UserError(
            "confirm.seeds must be 0 (no confirmation) or at least 2 (a spread to measure), "
            f"got {confirm.seeds}"
        )
    return StudyConfig(
        name=raw["name"].strip(),
        description=str(raw.get("description", "")),
        task=task,
        model=model,
        training=training,
        schedulers=_schedulers(raw.get("schedulers")),
        objective=objective,
        optuna=optuna_section,
        search=search,
        confirm=confirm,
        output=convert(raw.get("output", "results"), str, "output"),
    )


def load(path: str | Path) -> StudyConfig:
    """Read and validate a study file, including its data (one clear line on any problem)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    cfg = parse(raw, str(path))
    if cfg.task.csv and not Path(cfg.task.csv).is_absolute():
        # A CSV path in a study file is relative to the study file.
        candidate = path.parent / cfg.task.csv
        if candidate.is_file():
            cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, csv=str(candidate)))
    try:
        check(cfg.task)
    except UserError as exc:
        raise UserError(f"task: {exc}") from None
    return cfg
