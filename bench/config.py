"""Study definitions: YAML (safe loader) into a typed, validated schema.

Unknown keys are rejected and every error names its field, e.g. ``training.epochs must be an integer,
got 'ten'``. Validation finishes (data included) before any storage, run or output file is created.

```yaml
name: breast_cancer
task: {dataset: breast_cancer}            # or {csv: PATH, target: COLUMN, drop: [...], label_map: {...}}
model: {hidden: [64, 32], activation: relu, dropout: 0.0}
training:
  optimizer: adam                          # or a list to search over: [adam, sgd]
  lr: {low: 1.0e-4, high: 1.0e-1}          # or a number (fixed) or a list of values
  epochs: 50
  batch_size: 32
schedulers: all                            # or a list of families, or a mapping family -> narrowed ranges
objective: {metric: val_accuracy}          # direction follows the metric unless given
optuna: {sampler: tpe, pruner: median, n_trials: 100, seed: 0}
```
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import schedules
from bench.data import DataConfig
from bench.errors import UserError
from bench.model import ACTIVATIONS, ModelConfig

SAMPLERS = ("tpe", "random", "qmc", "cmaes", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}


@dataclass(frozen=True)
class FloatRange:
    """A float searched between low and high (log scale by default, as suits learning rates)."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class TrainingSection:
    optimizer: tuple[str, ...] = ("adam",)  # more than one: searched
    lr: float | FloatRange | tuple[float, ...] = FloatRange(1e-4, 1e-1)
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 32
    device: str = "auto"
    seed: int = 0  # trial n trains with seed + n
    engine: str = "population"  # or "reference": one trial at a time (the ground truth)
    population_size: int = 0  # trials trained at once by the population engine; 0: automatic


@dataclass(frozen=True)
class ObjectiveSection:
    metric: str = "val_accuracy"
    direction: str = ""  # derived from the metric when empty
    reduce: str = "final"  # final: the last epoch's value (the model that is tested); best: the best epoch's


@dataclass(frozen=True)
class OptunaSection:
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 100
    timeout: float | None = None  # seconds; stops asking for new trials after it
    seed: int | None = 0
    warmup_epochs: int = 5  # epochs before the pruner may stop a trial
    # Epochs between intermediate values stored in Optuna (and pruning decisions); the last epoch always is.
    # Each report is a storage write (see `python -m bench.perf storage` for what a trial's reports cost).
    report_every: int = 1
    # TPE over the joint space (group-decomposed): several times the cost of an ask of the independent
    # TPE, Optuna's default (`python -m bench.perf storage`); worth it when arguments interact strongly.
    multivariate: bool = False
    max_failures: int = 10  # trials raising errors in one run before the run gives up


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str = ""
    task: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingSection = field(default_factory=TrainingSection)
    # family -> {argument: fixed value | [low, high] | [choice, ...]}; empty mapping: the default space.
    schedulers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    optuna: OptunaSection = field(default_factory=OptunaSection)
    output: str = "results"

    @property
    def direction(self) -> str:
        return self.objective.direction or METRICS[self.objective.metric]

    def comparable(self) -> dict[str, Any]:
        """The parts that must not change for results to stay comparable when a study resumes."""
        plain = dataclasses.asdict(self)
        out = {key: plain[key] for key in ("task", "model", "training", "schedulers", "objective")}
        # How trials are batched does not change what they compute (the engines' contract tests).
        out["training"] = {k: v for k, v in out["training"].items() if k not in ("engine", "population_size")}
        return out | {"direction": self.direction}

    def to_yaml(self) -> str:
        plain = _plain(dataclasses.asdict(self))
        return yaml.safe_dump(plain, sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- generic, typed parsing of one section --------------------------------------------------------------


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    return "a list" if typing.get_origin(tp) is tuple else "a mapping"


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors: dict[Any, UserError] = {}
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except UserError as exc:
                errors[option] = exc
        # Say what is wrong with the form the user wrote: a mapping for a section, a list for a list.
        for option, error in errors.items():
            if (isinstance(value, dict) and dataclasses.is_dataclass(option)) or (
                isinstance(value, list) and typing.get_origin(option) is tuple
            ):
                raise error
        raise next(iter(errors.values()))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = _number(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, list):
            return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    elif origin in (Mapping, dict) or tp is Mapping:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _section(tp, value, where)
    else:  # pragma: no cover - a schema type this parser does not know
        raise TypeError(f"unsupported schema type {tp!r} at {where}")
    raise UserError(f"{where} must be {_describe(tp)}, got {value!r}")


def _section(cls: Any, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise UserError(f"{where}.{unknown[0]} is not a known key; {where} takes: {', '.join(known)}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    ]
    if required:
        raise UserError(f"{where}.{required[0]} is required")
    return cls(**{k: _convert(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


# --- the study schema -----------------------------------------------------------------------------------


def _training(raw: Any) -> TrainingSection:
    if isinstance(raw, dict) and isinstance(raw.get("optimizer"), str):  # one name is a list of one
        raw = {**raw, "optimizer": [raw["optimizer"]]}
    return _section(TrainingSection, raw, "training")


def _check_training(t: TrainingSection) -> None:
    from bench.engine import OPTIMIZERS

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
        value = _number(value)
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
    task = _section(DataConfig, raw.get("task"), "task")
    model = _section(ModelConfig, raw.get("model"), "model")
    if model.activation not in ACTIVATIONS:
        raise UserError(
            f"model.activation: unknown activation {model.activation!r}; "
            f"choose from: {', '.join(ACTIVATIONS)}"
        )
    training = _training(raw.get("training"))
    _check_training(training)
    objective = _section(ObjectiveSection, raw.get("objective"), "objective")
    if objective.metric not in METRICS:
        raise UserError(f"objective.metric must be one of {', '.join(METRICS)}, got {objective.metric!r}")
    if objective.direction not in ("", "maximize", "minimize"):
        raise UserError(f"objective.direction must be maximize or minimize, got {objective.direction!r}")
    if objective.reduce not in ("final", "best"):
        raise UserError(f"objective.reduce must be final or best, got {objective.reduce!r}")
    optuna_section = _section(OptunaSection, raw.get("optuna"), "optuna")
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
    return StudyConfig(
        name=raw["name"].strip(),
        description=str(raw.get("description", "")),
        task=task,
        model=model,
        training=training,
        schedulers=_schedulers(raw.get("schedulers")),
        objective=objective,
        optuna=optuna_section,
        output=_convert(raw.get("output", "results"), str, "output"),
    )


def load(path: str | Path) -> StudyConfig:
    """Read and validate a study file, including its data (one clear line on any problem)."""
    from bench.data import check

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


def shown(uri: str) -> str:
    """A storage URL or tracking URI as lrbench prints it: a password in it is masked."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


@dataclass(frozen=True)
class Locations:
    """Where a study's results live. Everything defaults to one results root."""

    root: Path
    storage: str
    tracking_uri: str

    @classmethod
    def resolve(
        cls,
        cfg: StudyConfig,
        output: str | None = None,
        storage: str | None = None,
        tracking_uri: str | None = None,
    ) -> Locations:
        root = Path(output or cfg.output).resolve()
        return cls(
            root=root,
            storage=storage or str(root / "optuna.journal"),
            tracking_uri=tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        )

    def results_dir(self, cfg: StudyConfig) -> Path:
        return self.root / cfg.name
