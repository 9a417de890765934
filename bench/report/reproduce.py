"""The report's "reproduce it" section: for each family's chosen configuration the torch code that uses it in
your own loop and the ``lrbench train`` command that re-trains it; the library versions; the study's
settings in one line."""

from __future__ import annotations

import ast
import json
import shlex
from collections.abc import Mapping
from importlib import metadata

import pandas as pd

from bench.config import StudyConfig
from bench.data import DATASETS, DataConfig
from bench.report.page import Reproduction
from bench.schedules import get
from bench.schedules.code import optimizer_code, scheduler_code
from bench.tracking.names import test_metric

LIBRARIES = ("lrbench", "torch", "optuna", "mlflow", "numpy", "pandas", "scipy", "scikit-learn", "plotly")


def versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def settings(cfg: StudyConfig, train_rows: int) -> str:
    """The study in one line: task, model, budget per family, seeds, metric."""
    t, m, o, c = cfg.training, cfg.model, cfg.optuna, cfg.confirm
    model = m.python or f"MLP hidden {'-'.join(str(h) for h in m.hidden)} {m.activation}"
    opt = "/".join(t.optimizer)
    budget = (
        f"{o.n_trials} trials per family"
        if cfg.search.budget == "per_family"
        else f"{o.n_trials} trials in all"
    )
    confirm = (
        f"top {c.top_k} per family re-trained on {c.seeds} paired seeds" if c.seeds else "no confirmation"
    )
    test = test_metric(cfg.objective.metric)
    return (
        f"task {cfg.task.name} ({train_rows} training rows) · {model} · {opt}, "
        f"batch {t.batch_size}, {t.epochs} epochs · {budget} ({o.sampler}, pruner {o.pruner}) · {confirm} · "
        f"chosen on {cfg.objective.metric}, ranked on {test}"
    )


def reproductions(
    cfg: StudyConfig, chosen: pd.DataFrame, steps_per_epoch: int, run_ids: Mapping[str, str]
) -> dict[str, Reproduction]:
    """``chosen``: a row per family with ``family``, ``optimizer``, ``base_lr``, ``scheduler_args`` (JSON,
    every argument as resolved), ``seed`` and ``split_seed``; ``run_ids``: a run of each family's choice,
    the one a study of the user's own model or data is re-trained from (``lrbench replay``)."""
    out = {}
    for _, row in chosen.iterrows():
        family = str(row["family"])
        if not isinstance(row["scheduler_args"], str) or pd.isna(row["base_lr"]):
            continue
        args = json.loads(row["scheduler_args"])
        lr = float(row["base_lr"])
        horizon = get(family).horizon(cfg.training.epochs, steps_per_epoch, lr)
        snippet = scheduler_code(family, args, horizon)
        optimizer = optimizer_code(
            str(row["optimizer"]), lr, cfg.training.momentum, cfg.training.weight_decay
        )
        code = "\n".join(["import torch", snippet.text(optimizer)])
        if cfg.task.python or cfg.model.python:
            # lrbench train has no option for a function of the user's: the run's record has all of it.
            run = run_ids.get(family)
            command = f"lrbench replay {run} --study STUDY.yaml" if run else ""
            caveat = "The model or the data is a function of yours: replay re-trains the run from its record."
            out[family] = Reproduction(family, code, command, caveat)
            continue
        out[family] = Reproduction(family, code, _command(cfg, family, args, row), _caveat(cfg))
    return out


def _command(cfg: StudyConfig, family: str, args: Mapping[str, object], row: pd.Series) -> str:
    t, task, m = cfg.training, cfg.task, cfg.model
    words = ["lrbench", "train"]
    if task.csv:
        words += ["--csv", task.csv, "--target", str(task.target)]
        for column in task.drop:
            words += ["--drop", column]
        if task.label_map:
            words += ["--label-map", json.dumps(dict(task.label_map))]
    else:
        words += ["--dataset", str(task.dataset)]
    own = None if task.csv else DATASETS[str(task.dataset)].kind  # a built-in dataset's, where it has one
    if task.task_kind.name != (own or "classification"):
        words += ["--kind", task.task_kind.name]
    words += ["--scheduler", family]
    for name, value in args.items():
        words += ["--set", f"{name}={_value(value)}"]
    words += ["--optimizer", str(row["optimizer"]), "--lr", repr(float(row["base_lr"]))]
    if row["optimizer"] == "sgd":
        words += ["--momentum", repr(t.momentum)]
    if t.weight_decay:
        words += ["--weight-decay", repr(t.weight_decay)]
    words += ["--epochs", str(t.epochs), "--batch-size", str(t.batch_size), "--hidden", *map(str, m.hidden)]
    if m.activation != "relu":
        words += ["--activation", m.activation]
    if m.dropout:
        words += ["--dropout", repr(m.dropout)]
    words += ["--seed", str(int(row["seed"])), "--split-seed", str(int(row["split_seed"]))]
    return " ".join(shlex.quote(w) for w in words)


def _value(value: object) -> str:
    """An argument as ``--set`` reads it back (bench.cli.commands.parse_value): a string plainly where it
    reads back as itself, anything else as a literal."""
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, str) and value.lower() not in ("true", "false"):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return repr(value)


def _caveat(cfg: StudyConfig) -> str:
    """The study's data settings that ``lrbench train`` has no option for, where they are not its
    defaults."""
    default, task = DataConfig(), cfg.task
    keys = ["test_size", "val_size"] + (
        ["rows", "features", "classes"] if task.dataset == "synthetic" else []
    )
    differ = [f"task.{k}: {getattr(task, k)}" for k in keys if getattr(task, k) != getattr(default, k)]
    if not differ:
        return ""
    return f"The command trains on lrbench train's defaults where this study differs: {', '.join(differ)}."
