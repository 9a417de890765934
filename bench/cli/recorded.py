"""A trial as its MLflow run recorded it, for ``lrbench replay`` and ``lrbench snippet``: which store to
read (the one a study's commands use), and the run's params turned back into what trained it.

A run's params hold the schedule with every argument it was built with (derived ones too), the optimizer,
base LR, seed, split and engine (:func:`bench.search.telling.run_params`); the rest of the study (its
model and data) is the parent run's ``study.yaml``. Runs recorded before a param existed take the study's
value instead, and say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench import schedules, usercode
from bench.cli.commands import parse_value
from bench.cli.stores import check_tracking
from bench.config import Locations, StudyConfig, load, parse
from bench.config.reading import with_data
from bench.config.yamlsafe import read_yaml
from bench.data import DataConfig
from bench.errors import UserError
from bench.tracking.record import STUDY_FILE, RunRecord, read_run
from bench.train import TrainConfig

DEFAULT_STUDY = Path("studies", "breast_cancer.yaml")  # as `lrbench ui`'s: from the current folder
T = TypeVar("T")
REQUIRED = ("scheduler", "optimizer", "base_lr", "seed")  # params every lrbench trial run has had


def add_store_options(p: argparse.ArgumentParser) -> None:
    """The options that say which tracking store holds the run, as ``lrbench ui`` takes them."""
    p.add_argument(
        "--study",
        metavar="STUDY.yaml",
        help=f"read this study's store (default, without --tracking-uri: {DEFAULT_STUDY})",
    )
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: the study's store)")
    p.add_argument("--output", metavar="DIR", help="the study's results root (default: the study's)")


def tracking_uri(args: argparse.Namespace) -> str:
    """The store the run is read from: ``--tracking-uri``, or the study's own (``--study``, else the
    default study), checked to be there without creating it."""
    uri = args.tracking_uri
    if not uri:
        study = Path(args.study) if args.study else DEFAULT_STUDY
        if not args.study and not study.is_file():
            raise UserError(
                f"no --study given, and the default study {DEFAULT_STUDY} is not in {Path.cwd()}: "
                "give --study STUDY.yaml or --tracking-uri URI"
            )
        uri = Locations.resolve(load(study), args.output).tracking_uri
    check_tracking(uri, given=bool(args.tracking_uri))
    return uri


@dataclass(frozen=True)
class RecordedTrial:
    """What a trial run trained: its study, its settings and data, the engine and the run's length."""

    record: RunRecord
    study: StudyConfig
    train: TrainConfig
    data: DataConfig
    engine: str  # population or reference
    steps_per_epoch: int
    # The params the run lacks (recorded before they were), each with the value taken instead.
    assumed: dict[str, object] = field(default_factory=dict)

    @property
    def family(self) -> schedules.Family:
        return schedules.get(self.train.scheduler)

    @property
    def horizon(self) -> schedules.Horizon:
        t = self.train
        return self.family.horizon(t.epochs, self.steps_per_epoch, t.lr)

    def describe(self) -> str:
        """The run in a line: its name, stage and state, and what it trained."""
        r, t = self.record, self.train
        return (
            f"run {r.run_id} ({r.tags.get('mlflow.runName', r.stage)}, {r.stage}, {r.state or r.status}): "
            f"{t.scheduler} {t.optimizer} base_lr={t.lr!r} seed={t.seed} on {self.data.name} "
            f"(split seed {self.data.split_seed}), {self.engine} engine"
        )


def read_trial(uri: str, run_id: str) -> RecordedTrial:
    """The trial run ``run_id`` read back: its study from the parent's ``study.yaml``, its settings from
    its params."""
    record = read_run(uri, run_id)
    if record.status == "RUNNING":
        raise UserError(f"run {run_id} is still RUNNING: its trial has not ended; give a finished one")
    if not record.study_yaml:
        raise UserError(
            f"run {run_id}: its study's run has no {STUDY_FILE} (the study's definition), so the model and "
            "data it trained on are unknown"
        )
    cfg = _study(record)
    _resolvable(cfg, run_id)
    params = record.params
    assumed: dict[str, object] = {}
    missing = [k for k in REQUIRED if k not in params]
    if missing:
        raise UserError(
            f"run {run_id}: a trial run's params include {', '.join(REQUIRED)}; it lacks {missing[0]}"
        )

    def value(name: str, convert: Callable[[str], T]) -> T:
        try:
            return convert(params[name])
        except ValueError:
            raise UserError(f"run {run_id}: param {name}={params[name]!r} is not a valid value") from None

    def param(name: str, convert: Callable[[str], T], fallback: Callable[[], T]) -> T:
        """The run's param, or (a run recorded before lrbench recorded it) the fallback, noted."""
        if name in params:
            return value(name, convert)
        assumed[name] = taken = fallback()
        return taken

    family = params["scheduler"]
    if family not in schedules.SCHEDULES:
        raise UserError(f"run {run_id}: unknown schedule family {family!r} (from a newer lrbench?)")
    prefix = f"{family}."
    args = {k.removeprefix(prefix): parse_value(v) for k, v in params.items() if k.startswith(prefix)}
    t = cfg.training
    train = TrainConfig(
        scheduler=family,
        scheduler_args=args,
        optimizer=params["optimizer"],
        lr=value("base_lr", float),
        momentum=param("momentum", float, lambda: t.momentum),
        weight_decay=param("weight_decay", float, lambda: t.weight_decay),
        epochs=param("epochs", int, lambda: t.epochs),
        batch_size=param("batch_size", int, lambda: t.batch_size),
        seed=value("seed", int),
        model=cfg.model,
    )
    train.check()
    # A confirmation run's seed index gives its split (bench.search.confirm): seed = training.seed + index.
    own_split = cfg.confirm_task(train.seed - t.seed) if record.stage == "confirm" else cfg.task
    data = dataclasses.replace(cfg.task, split_seed=param("split_seed", int, lambda: own_split.split_seed))
    engine = param("engine", str, lambda: t.engine)
    if engine not in ("population", "reference"):
        raise UserError(f"run {run_id}: unknown engine {engine!r}; lrbench has population and reference")

    def sized() -> int:
        sizes = with_data(dataclasses.replace(cfg, task=data), Path.cwd())[1]
        return math.ceil(sizes.train_rows / train.batch_size)

    steps_per_epoch = param("steps_per_epoch", int, sized)
    # Every argument given: resolving them again builds the schedule the run was built with (derived
    # arguments are computed only where one is missing).
    built = schedules.get(family)
    resolved = built.resolve(args, built.horizon(train.epochs, steps_per_epoch, train.lr))
    train = dataclasses.replace(train, scheduler_args=resolved)
    return RecordedTrial(record, cfg, train, data, engine, steps_per_epoch, assumed)


def _resolvable(cfg: StudyConfig, run_id: str) -> None:
    """The study's functions (``task.python``, ``model.python``) can be imported here: they are looked up
    beside the study file, which the run's record does not hold."""
    for where, path in (("task.python", cfg.task.python), ("model.python", cfg.model.python)):
        if path:
            try:
                usercode.resolve(path, where)
            except UserError as exc:
                raise UserError(
                    f"{exc}; run {run_id}'s study has it beside its study file: give --study STUDY.yaml"
                ) from None


def _study(record: RunRecord) -> StudyConfig:
    """The study definition the run's parent logged, read with a study file's limits and checks."""
    with tempfile.TemporaryDirectory(prefix="lrbench-study-") as folder:
        path = Path(folder, STUDY_FILE)
        path.write_text(record.study_yaml, encoding="utf-8")
        try:
            cfg = parse(read_yaml(path), f"{STUDY_FILE} of run {record.tags.get('mlflow.parentRunId')}")
        except UserError as exc:
            raise UserError(f"run {record.run_id}: its study's definition cannot be read: {exc}") from None
    return cfg
