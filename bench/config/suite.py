"""Suite definitions: several tasks answered under one protocol, each task a study of its own.

```yaml
name: suite
description: Which schedule is a good default across problems?
protocol:           # what every task shares: the families, the budget, the confirmation, the metric
  schedulers: [constant, StepLR, OneCycleLR]
  optuna: {n_trials: 8}
  confirm: {top_k: 1, seeds: 5}
defaults:           # what each task trains with unless it says otherwise
  model: {hidden: [64, 32]}
  training: {epochs: 30, batch_size: 32}
tasks:
  breast_cancer: {task: {dataset: breast_cancer}}
  diabetes: {task: {dataset: diabetes}, training: {epochs: 60}}
```

A task's ``model`` and ``training`` are the defaults with the task's own keys over them. Each task becomes a
:class:`StudyConfig` named ``<suite>.<task>`` (its Optuna studies and MLflow experiment, so that suites and
studies can share one server) whose results go to ``<output>/<suite>/<task>/``. Everything is read and
checked, the data of every task included, before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config.locations import Locations
from bench.config.parsing import convert
from bench.config.reading import parse, with_data
from bench.config.rules import check_name
from bench.config.schema import StudyConfig
from bench.config.yamlsafe import read_yaml
from bench.data import Sizes
from bench.errors import UserError
from bench.schedules import BASELINE

PROTOCOL = ("schedulers", "objective", "optuna", "search", "confirm")
PER_TASK = ("task", "model", "training", "description")
TOP = ("name", "description", "protocol", "defaults", "tasks", "output")
RESERVED = frozenset({"spool", "mlartifacts"})  # folders of the stores in the suite's folder
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class SuiteTask:
    name: str  # the task's name in the suite: its folder
    study: StudyConfig  # named <suite>.<task>
    sizes: Sizes

    def locations(self, root: Path, storage: str | None, tracking_uri: str | None) -> Locations:
        loc = Locations.resolve(self.study, str(root), storage, tracking_uri)
        return Locations(loc.root, loc.storage, loc.tracking_uri, folder=root / self.name)


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    description: str
    tasks: tuple[SuiteTask, ...]
    output: str = "results"

    def root(self, output: str | None = None) -> Path:
        """The suite's folder: its shared stores, a folder per task, and the suite's own files."""
        return Path(output or self.output).resolve() / self.name


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping, got {raw!r}")
    return raw


def _merged(defaults: Mapping[str, Any], own: Mapping[str, Any], key: str, where: str) -> Any:
    base, mine = defaults.get(key), own.get(key)
    if isinstance(base, dict) and isinstance(mine, dict):
        return {**base, **mine}
    if mine is None:
        return base
    if base is not None and not isinstance(mine, dict):
        raise UserError(f"{where}.{key} must be a mapping, got {mine!r}")
    return mine


def _task(
    name: str, raw: Any, suite: str, protocol: dict[str, Any], defaults: dict[str, Any], base: Path
) -> SuiteTask:
    where = f"tasks.{name}"
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        raise UserError(
            f"tasks: a task's name is 1 to 64 letters, digits, '_' or '-', starting with a letter or digit "
            f"(it names the task's folder), got {name!r}"
        )
    own = _mapping(raw, where)
    shared = [k for k in own if k in PROTOCOL]
    if shared:
        raise UserError(
            f"{where}.{shared[0]}: the protocol ({', '.join(PROTOCOL)}) is the suite's, the same for every "
            "task; set it under protocol"
        )
    unknown = [k for k in own if k not in PER_TASK]
    if unknown:
        raise UserError(f"{where}.{unknown[0]} is not a known key; a task takes: {', '.join(PER_TASK)}")
    if "task" not in own:
        raise UserError(f"{where}.task is required: the task's data (e.g. {{dataset: wine}})")
    study: dict[str, Any] = {"name": f"{suite}.{name}", **protocol}
    study["description"] = own.get("description", "")
    study["task"] = own["task"]
    for key in ("model", "training"):
        merged = _merged(defaults, own, key, where)
        if merged is not None:
            study[key] = merged
    try:
        cfg = parse(study, where)
        cfg, sizes = with_data(cfg, base)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return SuiteTask(name, cfg, sizes)


def _check_protocol(study: StudyConfig, protocol: dict[str, Any]) -> None:
    """What a suite's aggregates need of its protocol, beyond what a study needs."""
    if BASELINE not in study.schedulers:
        raise UserError(
            f"protocol.schedulers must include {BASELINE}: each task's scores are normalised to it and "
            "P(improvement) is over it"
        )
    if study.confirm.seeds < 2:
        raise UserError("protocol.confirm.seeds: a suite ranks each task's confirmed runs, at least 2 seeds")
    if "target" in _mapping(protocol.get("confirm"), "protocol.confirm"):
        raise UserError(
            "protocol.confirm.target: a target is in one task's units (an accuracy, a loss, an RMSE); "
            f"a suite takes each task's own, {BASELINE}'s median best validation score"
        )


def parse_suite(raw: Any, base: Path, source: str = "<suite>") -> SuiteConfig:
    """A suite definition, every task checked as a study (and its data loaded); ``base``: the folder that
    a task's CSV path is relative to."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a suite definition is a YAML mapping, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in TOP]
    if "tasks" not in raw and "task" in raw:
        raise UserError(
            "this is a study definition (it has one task), not a suite: run it with lrbench study"
        )
    if unknown:
        hint = " (it belongs under protocol)" if unknown[0] in PROTOCOL else ""
        hint = hint or (" (it belongs under defaults or a task)" if unknown[0] in PER_TASK else "")
        raise UserError(f"{unknown[0]} is not a known key{hint}; a suite takes: {', '.join(TOP)}")
    name = check_name(raw.get("name"))
    protocol = _mapping(raw.get("protocol"), "protocol")
    wrong = [k for k in protocol if k not in PROTOCOL]
    if wrong:
        raise UserError(f"protocol.{wrong[0]} is not a known key; protocol takes: {', '.join(PROTOCOL)}")
    defaults = _mapping(raw.get("defaults"), "defaults")
    wrong = [k for k in defaults if k not in ("model", "training")]
    if wrong:
        raise UserError(f"defaults.{wrong[0]} is not a known key; defaults takes: model, training")
    tasks = _mapping(raw.get("tasks"), "tasks")
    if not tasks:
        raise UserError("tasks: a suite needs at least one task")
    reserved = sorted(RESERVED & set(tasks))
    if reserved:
        raise UserError(
            f"tasks.{reserved[0]}: the name is the suite folder's own ({', '.join(sorted(RESERVED))})"
        )
    items = iter(tasks.items())
    first = _task(*next(items), name, protocol, defaults, base)
    _check_protocol(first.study, protocol)  # before the other tasks' data is loaded
    built = (first, *(_task(n, t, name, protocol, defaults, base) for n, t in items))
    return SuiteConfig(
        name=name,
        description=convert(raw.get("description", ""), str, "description"),
        tasks=built,
        output=convert(raw.get("output", "results"), str, "output"),
    )


def load_suite(path: str | Path) -> SuiteConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    return parse_suite(read_yaml(path), path.parent, str(path))
