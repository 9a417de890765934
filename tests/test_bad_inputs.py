"""Every bad input is refused up front: exit status 2, exactly one line on stderr, no traceback, and nothing
created (the folder the command runs in, hidden files included, is the same after as before: no output
folder, no mlflow.db, no optuna.journal, no spool).

Each case runs the command line in this process (``bench.cli.parser.run``, in the case's own folder), where
an exception that escapes is a failed test; the cases marked ``cli`` (every entry point and every option
among them) also run as the real command, ``python -m bench``, in processes of their own, several at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.cli.parser import run as main
from bench.tracking.local_server import free_port

from helpers import SMOKE, study_text

SECRET = "S3cr3tPw"


def _csv(rows: list[str]) -> str:
    return "\n".join(["a,b,y", *rows]) + "\n"


GOOD_ROWS = [f"{i},{i % 7},{i % 2}" for i in range(40)]
CSV_STUDY = study_text(task={"csv": "data.csv", "target": "y"})


def _bomb() -> str:
    """Nine nested aliases of nine: 387 million strings once expanded, in a description."""
    lines = ["name: bomb", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join([*lines, "description: *a8"]) + "\n"


@dataclass(frozen=True)
class Bad:
    """One bad input. ``argv`` after ``lrbench``: ``{dir}`` is the case's folder, ``{study}`` its study file
    (``study``'s text or bytes), ``{port}`` a free port; ``files`` are written there first. ``expect`` is
    part of the one line. ``cli``: run as the real command too; ``as_user``: only there, without root's
    power to write where permissions say no (a process cannot drop it and get it back)."""

    id: str
    argv: tuple[str, ...]
    expect: str
    study: str | bytes | None = None
    files: tuple[tuple[str, str | bytes], ...] = ()
    cli: bool = False
    as_user: bool = False


def study(id: str, expect: str, text: str | bytes, cli: bool = False) -> Bad:
    return Bad(id, ("study", "{study}", "--output", "{dir}/out"), expect, text, cli=cli)


def changed(id: str, expect: str, cli: bool = False, **changes: Any) -> Bad:
    return study(id, expect, study_text(**changes), cli)


def csv(id: str, expect: str, text: str | bytes, cli: bool = False) -> Bad:
    argv = ("study", "{study}", "--output", "{dir}/out")
    return Bad(id, argv, expect, CSV_STUDY, files=(("data.csv", text),), cli=cli)


RAISES = "def build(shape, outputs, channels=3):\n    raise ValueError('channels must be even')\n"
WRONG_IN = "import torch\ndef build(shape, outputs):\n    return torch.nn.Linear(7, outputs)\n"
FIVE = "import torch\ndef build(shape, outputs):\n    return torch.nn.Linear(shape[0], 5)\n"
_ROWS = "import torch\ndef part(n):\n    return torch.randn(n, 4), torch.arange(n) % 2\n"
NAN_TASK = _ROWS + (
    "def load():\n    train = part(40)\n    train[0][3, 1] = float('nan')\n"
    "    return {'train': train, 'val': part(10), 'test': part(10)}\n"
)
TASK_RAISES = "def load():\n    raise OSError('no such archive')\n"
DETACHED = (
    "import torch\nclass M(torch.nn.Module):\n    def __init__(self, n, o):\n        super().__init__()\n"
    "        self.l = torch.nn.Linear(n, o)\n    def forward(self, x):\n        return self.l(x).detach()\n"
    "def build(shape, outputs):\n    return M(shape[0], outputs)\n"
)
# A task function whose training rows grow with split_seed: the confirmation's splits differ in size.
GROWING = _ROWS + (
    "def load(split_seed=0):\n"
    "    return {'train': part(40 + split_seed - 2), 'val': part(10), 'test': part(10)}\n"
)


def user(id: str, expect: str, module: str, code: str, cli: bool = False) -> Bad:
    """A study whose model is ``module:build``, the module's ``code`` beside the study."""
    argv = ("study", "{study}", "--output", "{dir}/out")
    text = study_text(model={"python": f"{module}:build"})
    return Bad(id, argv, expect, text, files=((f"{module}.py", code),), cli=cli)


def user_task(id: str, expect: str, module: str, code: str, cli: bool = False) -> Bad:
    """A study whose task is ``module:load``, the module's ``code`` beside the study."""
    argv = ("study", "{study}", "--output", "{dir}/out")
    text = study_text(task={"python": f"{module}:load"})
    return Bad(id, argv, expect, text, files=((f"{module}.py", code),), cli=cli)


def scheduler(id: str, expect: str, family: str, args: dict[str, Any], cli: bool = False) -> Bad:
    return changed(id, expect, cli, schedulers={family: args})


SMOKE_TEXT = SMOKE.read_text()
JOURNAL = (("out/optuna.journal", ""),)  # a study's storage without its MLflow store

CASES = [
    # --- the study file -----------------------------------------------------------------------------------
    study("yaml-not-utf8", "not UTF-8 text (byte 0xe9 at offset 9)", b"name: caf\xe9\n", True),
    study("yaml-duplicate-key", "the key 'name' is given twice (first at line 1", "name: a\nname: b\n", True),
    study(
        "yaml-duplicate-nested-key",
        "the key 'epochs' is given twice",
        SMOKE_TEXT.replace("  epochs: 4\n", "  epochs: 4\n  epochs: 40\n"),
    ),
    study("yaml-alias-bomb-in-a-string", "aliases expand to more than 10,000 values", _bomb(), True),
    study("yaml-alias-into-itself", "an alias that contains itself", "name: x\ndescription: &a [*a]\n"),
    study("yaml-over-1-mib", "a study file is at most 1,048,576 bytes", SMOKE_TEXT + "#" * (1 << 20), True),
    study("yaml-nested-too-deeply", "nested too deeply", "name: x\ndescription: " + "[" * 5000 + "]" * 5000),
    study("yaml-python-tag", "not valid YAML", "name: !!python/object/apply:os.system ['true']\n"),
    study("yaml-syntax", "not valid YAML (line 2, column 1): expected ',' or ']'", "name: [x\n"),
    study("yaml-a-list", "a study definition is a YAML mapping", "- a\n"),
    Bad("study-file-missing", ("study", "{dir}/nope.yaml"), "study file not found"),
    Bad("study-file-a-folder", ("study", "{dir}"), "study file not found", cli=True),
    # --- the name: a slug, never a path -------------------------------------------------------------------
    changed("name-escapes-the-output", "name must be 1 to 100 letters", True, name="../../escaped"),
    changed("name-absolute", "got '/tmp/escaped'", name="/tmp/escaped"),
    changed("name-hidden", "starting with a letter or digit", name=".hidden"),
    changed("name-a-store-file", "name 'mlflow.db' is the name of a file lrbench keeps", name="mlflow.db"),
    changed("name-empty", "name must be a non-empty string", name=""),
    # --- task ---------------------------------------------------------------------------------------------
    changed(
        "test-size-1.5",
        "test_size + val_size < 1 must hold, but got (test_size=1.5",
        True,
        task__test_size=1.5,
    ),
    changed("val-size-0", "but got (test_size=0.2, val_size=0.0)", task__val_size=0.0),
    changed("test-and-val-size-1", "test_size + val_size < 1", task__test_size=0.5, task__val_size=0.5),
    changed("split-seed-negative", "task.split_seed must be a whole number from 0", task__split_seed=-1),
    changed("dataset-unknown", "unknown dataset 'mnist'", task__dataset="mnist"),
    changed(
        "synthetic-classes-past-features",
        "separate at most 4 classes, but got classes=9",
        task={"dataset": "synthetic", "features": 2, "classes": 9},
    ),
    changed("synthetic-rows-1e12", "values; at most 1e+08", task={"dataset": "synthetic", "rows": 10**12}),
    changed("label-map-not-a-number", "task.label_map.M: a class number", task__label_map={"M": [1]}),
    # --- CSV data -----------------------------------------------------------------------------------------
    csv("csv-inf", "feature column 'b' has infinite values (1 rows)", _csv([*GOOD_ROWS, "1,inf,0"]), True),
    csv("csv-a-class-of-one-row", "class '2' has 1 row(s)", _csv([*GOOD_ROWS, "1,2,2"])),
    csv("csv-not-utf8", "cannot read", _csv(GOOD_ROWS).encode() + b"1,2,\xff\xfe\n"),
    csv("csv-missing-value", "feature column 'b' has missing values", _csv([*GOOD_ROWS, "1,,0"])),
    csv("csv-text-feature", "feature column 'b' is not numeric", _csv([*GOOD_ROWS, "1,x,0"])),
    csv("csv-header-only", "no rows", "a,b,y\n"),
    csv("csv-one-class", "target has a single class", _csv([f"{i},{i},0" for i in range(30)])),
    csv("csv-no-target-column", "column 'y' not found", "a,b\n1,2\n"),
    # A model and a task of the user's, by import path: each module has a name of its own (this process
    # imports each once).
    changed("user-path-form", "an import path is package.module:function", model={"python": "models.build"}),
    changed(
        "user-no-module", "cannot import 'no_such_models'", True, model={"python": "no_such_models:build"}
    ),
    user("user-no-function", "module 'm_nofn' has no 'build'", "m_nofn", "def other(shape, n):\n    pass\n"),
    user("user-raises", "m_raises:build raised ValueError: channels must be even", "m_raises", RAISES, True),
    user(
        "user-shape-mismatch",
        "fails on the task's rows (a batch of shape [2, 30])",
        "m_shape",
        WRONG_IN,
        True,
    ),
    user(
        "user-outputs", "gives [2, 5] for a batch of shape [2, 30], but the task needs [2, 1]", "m_out", FIVE
    ),
    user(
        "user-not-a-module",
        "m_int:build returned a int, not a torch.nn.Module",
        "m_int",
        "def build(s, n):\n    return 3\n",
    ),
    user_task(
        "user-task-nan", "the train x holds 1 non-finite value(s) (NaN or inf)", "t_nan", NAN_TASK, True
    ),
    user_task("user-task-raises", "t_raises:load raised OSError: no such archive", "t_raises", TASK_RAISES),
    user(
        "user-cannot-train",
        "m_detached:build cannot be trained: a training step on a batch of shape [2, 30]",
        "m_detached",
        DETACHED,
    ),
    changed(
        "user-task-csv-key",
        "task.target: a task function gives its rows split and ready",
        task={"python": "t_any:load", "target": "y"},
    ),
    changed(
        "user-model-mlp-key",
        "model.hidden: hidden, activation and dropout shape the built-in MLP",
        model={"python": "m_any:build", "hidden": [8]},
    ),
    Bad(
        "user-resplit-sizes",
        ("study", "{study}", "--output", "{dir}/out"),
        "with confirm.resplit, split_seed 3 gives rows of shape [4], 2 output(s) and 41 training rows",
        study_text(task={"python": "t_grow:load"}, confirm={"seeds": 2}),
        files=(("t_grow.py", GROWING),),
    ),
    user_task(
        "user-task-form",
        "t_form:load returned a int; it returns a mapping",
        "t_form",
        "def load():\n    return 3\n",
    ),
    changed("csv-missing", "data file not found", task={"csv": "nowhere.csv", "target": "y"}),
    # --- model --------------------------------------------------------------------------------------------
    changed("hidden-0", "model.hidden: every size must be at least 1, but got [0]", True, model__hidden=[0]),
    changed("hidden-negative", "model.hidden", model__hidden=[-3, 5]),
    changed(
        "dropout-1.5", "model.dropout: 0 <= dropout < 1 must hold, but got (dropout=1.5)", model__dropout=1.5
    ),
    changed("dropout-negative", "model.dropout", model__dropout=-0.1),
    changed("activation-unknown", "model.activation: unknown activation 'swish'", model__activation="swish"),
    changed("hidden-1e10-weights", "weights a model; at most 1e+08", model__hidden=[100000, 100000]),
    # --- training -----------------------------------------------------------------------------------------
    changed(
        "weight-decay-negative",
        "training.weight_decay must be >= 0, got -1.0",
        True,
        training__weight_decay=-1,
    ),
    changed(
        "momentum-negative",
        "training.momentum: 0 <= momentum < 1 must hold, but got -2.0",
        training__momentum=-2,
    ),
    changed("momentum-1.5", "training.momentum", training__momentum=1.5),
    changed("device-tpu9", "training.device: unknown device 'tpu9'", True, training__device="tpu9"),
    changed("device-cuda-77", "training.device: device 'cuda:77' asked for", training__device="cuda:77"),
    changed("epochs-0", "training.epochs must be at least 1, got 0", training__epochs=0),
    changed("epochs-1e12-as-text", "training.epochs must be an integer, got '1e12'", training__epochs="1e12"),
    changed("epochs-1e12", "is 6e+12 optimizer steps; at most 1e+06 a run", True, training__epochs=10**12),
    changed("batch-size-0", "training.batch_size must be at least 1", training__batch_size=0),
    changed("lr-inf", "training.lr must be a number, got inf", training__lr=float("inf")),
    changed("lr-nan", "training.lr must be a number", training__lr=float("nan")),
    changed("lr-negative", "training.lr must be > 0", training__lr=-0.1),
    changed("optimizer-unknown", "unknown optimizer 'lion'", training__optimizer="lion"),
    changed("training-seed-negative", "training.seed must be a whole number from 0", training__seed=-1),
    changed("engine-unknown", "training.engine must be population or reference", training__engine="turbo"),
    # --- optuna, confirm, objective -----------------------------------------------------------------------
    changed("timeout-negative", "optuna.timeout must be > 0 seconds", True, optuna__timeout=-5),
    changed("max-failures-0", "optuna.max_failures must be at least 1, got 0", optuna__max_failures=0),
    changed(
        "optuna-seed-negative", "optuna.seed must be a whole number from 0 to 4294967295", optuna__seed=-1
    ),
    changed("n-trials-0", "optuna.n_trials must be at least 1", optuna__n_trials=0),
    changed(
        "n-trials-1e9", "optimizer steps (1000000000 runs of 4 epochs x 6 steps)", optuna__n_trials=10**9
    ),
    changed("warmup-epochs-negative", "optuna.warmup_epochs must be >= 0", optuna__warmup_epochs=-1),
    changed("sampler-unknown", "optuna.sampler must be one of", optuna__sampler="bayes"),
    changed("report-every-0", "optuna.report_every must be at least 1", optuna__report_every=0),
    changed("confirm-seeds-1", "confirm.seeds must be 0", confirm__seeds=1),
    changed("confirm-top-k-0", "confirm.top_k must be at least 1", confirm__top_k=0),
    changed("metric-unknown", "objective.metric must be one of", objective__metric="f1"),
    changed("unknown-key", "trainin is not a known key", trainin={}),
    # --- schedulers: the registry's rules, torch's, and the schedule stepped at the ends of its ranges -----
    scheduler(
        "StepLR-step-size-0",
        "StepLR: argument 'step_size' must be at least 1, got 0",
        "StepLR",
        {"step_size": 0},
    ),
    scheduler(
        "StepLR-gamma-negative", "gives the LR -0.001 at epoch 1 of 4", "StepLR", {"gamma": -1.0}, True
    ),
    scheduler(
        "OneCycleLR-total-steps-1", "rejected by torch at step 2 of 24", "OneCycleLR", {"total_steps": 1}
    ),
    scheduler(
        "MultiStepLR-unsorted",
        "'milestones' must be in increasing order",
        "MultiStepLR",
        {"milestones": [3, 1]},
    ),
    scheduler(
        "CosineAnnealingLR-T-max-negative",
        "'T_max' must be at least 1, got -5",
        "CosineAnnealingLR",
        {"T_max": -5},
    ),
    scheduler(
        "warmup-iters-negative",
        "'warmup_iters' must be at least 1, got -3",
        "warmup_cosine",
        {"warmup_iters": -3},
    ),
    scheduler(
        "eta-min-range-below-0", "'eta_min' must be at least 0", "CosineAnnealingLR", {"eta_min": [-0.1, 0.0]}
    ),
    scheduler("CyclicLR-base-lr-negative", "gives the LR -1 at step 0", "CyclicLR", {"base_lr": -1.0}),
    scheduler(
        "ExponentialLR-range-overflows-at-its-high-end",
        "each searched range at its high end",
        "ExponentialLR",
        {"gamma": [0.5, 1e300]},
    ),
    scheduler(
        "wsd-range-longer-than-the-run", "warmup_iters + decay_iters <= 24", "wsd", {"warmup_iters": [1, 30]}
    ),
    scheduler(
        "ReduceLROnPlateau-factor-1.5",
        "rejected by torch: Factor should be < 1.0",
        "ReduceLROnPlateau",
        {"factor": 1.5},
    ),
    scheduler("argument-unknown", "StepLR has no argument 'gama'", "StepLR", {"gama": 0.5}),
    changed("scheduler-unknown", "unknown scheduler 'Cosine'", schedulers=["Cosine"]),
    # --- study: the command line --------------------------------------------------------------------------
    Bad(
        "output-a-file",
        ("study", "{study}", "--output", "{dir}/taken"),
        "is a file, not a folder",
        study_text(),
        (("taken", "x"),),
        cli=True,
    ),
    Bad(
        "output-under-a-file",
        ("study", "{study}", "--output", "{dir}/taken/out"),
        "taken is a file",
        study_text(),
        (("taken", "x"),),
    ),
    Bad(
        "output-read-only",
        ("study", "{study}", "--output", "{dir}/ro/out"),
        "cannot write in",
        study_text(),
        cli=True,
        as_user=True,
    ),
    Bad(
        "results-folder-a-file",
        ("study", "{study}", "--output", "{dir}/out"),
        "is a file, not a folder; lrbench keeps",
        study_text(),
        (("out/smoke", "x"),),
    ),
    Bad(
        "storage-in-a-missing-folder",
        ("study", "{study}", "--output", "{dir}/out", "--storage", "{dir}/no/optuna.journal"),
        "does not exist; create it first",
        study_text(),
        cli=True,
    ),
    Bad(
        "storage-sqlite-in-a-missing-folder",
        ("study", "{study}", "--output", "{dir}/out", "--storage", "sqlite:///{dir}/no/o.db"),
        "cannot connect (unable to open database file): its folder",
        study_text(),
    ),
    Bad(
        "storage-a-folder",
        ("study", "{study}", "--output", "{dir}/out", "--storage", "{dir}"),
        "is a folder; give the journal file's path",
        study_text(),
    ),
    Bad(
        "storage-unknown-scheme",
        ("study", "{study}", "--output", "{dir}/out", "--storage", "bogus://x"),
        "not a storage lrbench can use",
        study_text(),
    ),
    Bad(
        "storage-sqlite-not-a-database",
        ("study", "{study}", "--output", "{dir}/out", "--storage", "sqlite:///{dir}/text.db"),
        "is not a SQLite database",
        study_text(),
        (("text.db", "not a database\n"),),
    ),
    Bad(
        "tracking-uri-bogus",
        ("study", "{study}", "--output", "{dir}/out", "--tracking-uri", "bogus://x"),
        "tracking URI bogus://x: not one lrbench can use",
        study_text(),
        cli=True,
    ),
    Bad(
        "tracking-uri-a-folder",
        ("study", "{study}", "--output", "{dir}/out", "--tracking-uri", "{dir}/mlruns"),
        "not one lrbench can use",
        study_text(),
    ),
    Bad(
        "tracking-server-down",
        ("study", "{study}", "--output", "{dir}/out", "--tracking-uri", "http://127.0.0.1:{port}"),
        "does not answer",
        study_text(),
    ),
    Bad(
        "option-n-trials-0",
        ("study", "{study}", "--output", "{dir}/out", "--n-trials", "0"),
        "--n-trials must be at least 1",
        study_text(),
        cli=True,
    ),
    Bad(
        "option-n-trials-1e9",
        ("study", "{study}", "--output", "{dir}/out", "--n-trials", "1000000000"),
        "at most 1e+10 in all",
        study_text(),
    ),
    Bad(
        "n-trials-not-a-number",
        ("study", "{study}", "--n-trials", "ten"),
        "invalid int value: 'ten'",
        study_text(),
    ),
    Bad(
        "study-default-output-a-file",
        ("study", "{study}"),
        "output {dir}/results is a file",
        study_text(),
        (("results", "x"),),
    ),
    # --- export and ui read a study: its stores must be there, and are never made ---------------------------
    Bad(
        "export-nothing-stored",
        ("export", "{study}", "--output", "{dir}/out"),
        "no study storage at",
        study_text(),
        cli=True,
    ),
    Bad(
        "export-no-mlflow-store",
        ("export", "{study}", "--output", "{dir}/out"),
        "no tracking store at {dir}/out/mlflow.db",
        study_text(),
        JOURNAL,
        cli=True,
    ),
    Bad("export-bad-study", ("export", "{study}"), "model.dropout", study_text(model__dropout=2.0)),
    Bad(
        "export-tracking-uri-bogus",
        ("export", "{study}", "--output", "{dir}/out", "--tracking-uri", "bogus://x"),
        "not one lrbench can use",
        study_text(),
        JOURNAL,
    ),
    Bad(
        "export-output-a-file",
        ("export", "{study}", "--output", "{dir}/taken"),
        "is a file, not a folder",
        study_text(),
        (("taken", "x"),),
    ),
    Bad(
        "ui-port-negative",
        ("ui", "--study", "{study}", "--port", "-1"),
        "a port is a whole number from 1 to 65535, got '-1'",
        study_text(),
        cli=True,
    ),
    Bad("ui-port-70000", ("ui", "--study", "{study}", "--port", "70000"), "got '70000'", study_text()),
    Bad(
        "ui-nothing-stored",
        ("ui", "--study", "{study}", "--output", "{dir}/out"),
        "no tracking store at {dir}/out/mlflow.db",
        study_text(),
        cli=True,
    ),
    Bad("ui-tracking-uri-bogus", ("ui", "--tracking-uri", "bogus://x"), "not one lrbench can use", cli=True),
    Bad(
        "ui-sqlite-store-missing",
        ("ui", "--tracking-uri", "sqlite:///{dir}/mlflow.db"),
        "no tracking store at {dir}/mlflow.db",
    ),
    Bad("ui-nothing-given", ("ui",), "give --study STUDY.yaml or --tracking-uri URI"),
    Bad(
        "ui-workers-0",
        ("ui", "--study", "{study}", "--workers", "0"),
        "--workers must be at least 1",
        study_text(),
    ),
    # --- train and schedule ---------------------------------------------------------------------------------
    Bad(
        "train-label-map-bad-json",
        ("train", "--csv", "{dir}/data.csv", "--target", "y", "--label-map", "{{M: 1"),
        "--label-map is not valid JSON",
        files=(("data.csv", _csv(GOOD_ROWS)),),
        cli=True,
    ),
    Bad(
        "train-label-map-a-list",
        ("train", "--dataset", "iris", "--label-map", "[1, 2]"),
        "--label-map must map target values",
    ),
    Bad(
        "train-set-step-size-0",
        ("train", "--dataset", "iris", "--scheduler", "StepLR", "--set", "step_size=0"),
        "'step_size' must be at least 1, got 0",
        cli=True,
    ),
    Bad(
        "train-set-gamma-negative",
        ("train", "--dataset", "iris", "--scheduler", "StepLR", "--set", "gamma=-1", "--epochs", "60"),
        "gives the LR -0.001 at epoch 20 of 60",
    ),
    Bad(
        "train-hidden-0",
        ("train", "--dataset", "iris", "--hidden", "0"),
        "hidden: every size must be at least 1",
        cli=True,
    ),
    Bad(
        "train-dropout-1.5",
        ("train", "--dataset", "iris", "--dropout", "1.5"),
        "0 <= dropout < 1 must hold",
        cli=True,
    ),
    Bad(
        "train-weight-decay-negative",
        ("train", "--dataset", "iris", "--weight-decay", "-1"),
        "weight_decay >= 0 must hold",
        cli=True,
    ),
    Bad(
        "train-device-tpu9",
        ("train", "--dataset", "iris", "--device", "tpu9"),
        "unknown device 'tpu9'",
        cli=True,
    ),
    Bad(
        "train-csv-inf",
        ("train", "--csv", "{dir}/data.csv", "--target", "y"),
        "infinite values",
        files=(("data.csv", _csv([*GOOD_ROWS, "inf,1,0"])),),
    ),
    Bad(
        "schedule-set-step-size-0",
        ("schedule", "StepLR", "--set", "step_size=0"),
        "'step_size' must be at least 1, got 0",
        cli=True,
    ),
    Bad(
        "schedule-gamma-negative",
        ("schedule", "StepLR", "--set", "gamma=-1"),
        "gives the LR -0.1 at epoch 10 of 30",
    ),
    Bad(
        "schedule-total-steps-1",
        ("schedule", "OneCycleLR", "--set", "total_steps=1"),
        "rejected by torch at step 2 of 30",
    ),
    Bad(
        "schedule-milestones-unsorted",
        ("schedule", "MultiStepLR", "--set", "milestones=[3,1]"),
        "increasing order",
    ),
    Bad("schedule-set-not-a-pair", ("schedule", "StepLR", "--set", "gamma"), "--set expects ARG=VALUE"),
]


def _listing(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones too), with its kind."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        out += [f"{(base / d).relative_to(folder)}/" for d in dirnames]
        out += [str((base / f).relative_to(folder)) for f in filenames]
    return sorted(out)


def _prepare(case: Bad, folder: Path) -> list[str]:
    """The case's files in ``folder``; its argv with the placeholders filled in."""
    for name, content in case.files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.study is not None:
        text = case.study
        (folder / "study.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    port = str(free_port())
    return [a.format(dir=folder, study=folder / "study.yaml", port=port) for a in case.argv]


def _expected(case: Bad, folder: Path) -> str:
    return case.expect.format(dir=folder)


def _assert_refused(
    case: Bad, folder: Path, before: list[str], code: int, out: str, err: str, after: list[str]
) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("lrbench") and _expected(case, folder) in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert after == before, "created: " + ", ".join(sorted(set(after) - set(before)))


@pytest.mark.parametrize("case", [c for c in CASES if not c.as_user], ids=lambda c: c.id)
def test_bad_input_is_refused_in_one_line_and_creates_nothing(
    case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _prepare(case, tmp_path)
    before = _listing(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative default (results/, mlruns/) would be made here
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    _assert_refused(case, tmp_path, before, code, out, err, _listing(tmp_path))


# --- the same through the real command --------------------------------------------------------------------


def _without_root_powers() -> list[str] | None:
    """A command prefix that runs a command without the power to write where permissions say no: as root
    (which has it), root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv`` drops them from the
    bounding set, so the command never gets them); as any other user, nothing. None: not to be had."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return None if setpriv is None else [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


@contextlib.contextmanager
def _case_folder(case: Bad) -> Iterator[Path]:
    """A folder of the case's own (with a read-only folder ``ro`` in it, for ``as_user``)."""
    folder = Path(tempfile.mkdtemp(prefix=f"lrbench-bad-{case.id}-"))
    try:
        if case.as_user:
            (folder / "ro").mkdir()
            (folder / "ro").chmod(0o555)  # whatever the umask
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(folder, ignore_errors=True)


Run = tuple[Path, list[str], list[str], subprocess.CompletedProcess[str]]


def _run_command(case: Bad) -> Run | None:
    """The case as the real command, in a folder of its own: the folder, its listing before and after, and
    the finished process (None: it cannot run here)."""
    prefix = _without_root_powers() if case.as_user else []
    if prefix is None:
        return None
    with _case_folder(case) as folder:
        argv = _prepare(case, folder)
        before = _listing(folder)
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "bench", *argv],
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=300,
        )
        return folder, before, _listing(folder), proc


CLI_CASES = [c for c in CASES if c.cli]


@pytest.fixture(scope="module")
def commands() -> dict[str, Run | None]:
    """Every ``cli`` case run as the real command, four at a time (each is a second or two of start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([c.id for c in CLI_CASES], pool.map(_run_command, CLI_CASES), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_bad_input_through_the_command(case: Bad, commands: dict[str, Run | None]) -> None:
    ran = commands[case.id]
    if ran is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed to drop root's powers")
    folder, before, after, proc = ran
    _assert_refused(case, folder, before, proc.returncode, proc.stdout, proc.stderr, after)


def test_there_are_sixty_cases_and_every_entry_point_goes_through_the_command() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    flags = {"--output", "--storage", "--tracking-uri", "--port", "--set", "--label-map", "--n-trials"}
    seen = {arg for case in CLI_CASES for arg in case.argv}
    assert {"study", "export", "ui", "train", "schedule"} | flags <= seen, flags - seen


# --- secrets ------------------------------------------------------------------------------------------------

PASSWORD_URLS = [
    f"postgresql://u@127.0.0.1:{{port}}/db?password={SECRET}",
    f"postgresql://u:{SECRET}@127.0.0.1:{{port}}/db",
    f"postgresql://u@127.0.0.1:{{port}}/db?sslmode=disable&password={SECRET}",
    f"postgresql://u@127.0.0.1:{{port}}/db?sslpassword={SECRET}&password={SECRET}",
]


def _secret_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as folder:
        filled = [a.format(port=free_port(), dir=folder, study=SMOKE) for a in argv]
        return subprocess.run(
            [sys.executable, "-m", "bench", *filled], capture_output=True, text=True, cwd=folder, timeout=300
        )


@pytest.mark.slow
def test_a_password_in_a_url_is_never_printed() -> None:
    """Whatever it fails with (here: nothing listens on the port), no command prints the password, in any of
    the forms a URL carries one."""
    runs = []
    for url in PASSWORD_URLS:
        runs += [
            ["study", "{study}", "--output", "{dir}/out", "--storage", url],
            ["study", "{study}", "--output", "{dir}/out", "--tracking-uri", url],
            ["export", "{study}", "--output", "{dir}/out", "--storage", url],
            ["ui", "--tracking-uri", url],
        ]
    runs.append(
        [
            "study",
            "{study}",
            "--output",
            "{dir}/out",
            "--tracking-uri",
            f"http://u:{SECRET}@127.0.0.1:{{port}}",
        ]
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(_secret_run, runs))
    for argv, proc in zip(runs, done, strict=True):
        printed = proc.stdout + proc.stderr
        assert proc.returncode == 2 and "***" in proc.stderr, (argv, printed)
        assert SECRET not in printed and "Traceback" not in printed, (argv, printed)


@pytest.mark.parametrize(
    ("url", "masked", "secret"),
    [
        ("postgresql://u:pw1@h/db", "postgresql://u:***@h/db", "pw1"),
        ("postgresql://u@h/db?password=pw1", "postgresql://u@h/db?password=***", "pw1"),
        (
            "postgresql://h/db?sslmode=require&password=pw1&user=u",
            "postgresql://h/db?sslmode=require&password=***&user=u",
            "pw1",
        ),
        ("postgresql://u@h/db?sslpassword=pw1", "postgresql://u@h/db?sslpassword=***", "pw1"),
        ("mysql+pymysql://u@h/db?passwd=pw1", "mysql+pymysql://u@h/db?passwd=***", "pw1"),
        ("http://u:pw1@h:5000/?token=pw1", "http://u:***@h:5000/?token=***", "pw1"),
        ("postgresql://u:p%40w1@h/db", "postgresql://u:***@h/db", "p@w1"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db", None),
        ("results/optuna.journal", "results/optuna.journal", None),
    ],
)
def test_every_form_of_a_password_in_a_url_is_masked(url: str, masked: str, secret: str | None) -> None:
    from bench.uris import scrub, shown

    assert shown(url) == masked
    # A driver's message that quotes the URL or the password (percent-decoded too) is masked as well.
    message = f"cannot parse {url!r}: {secret}"
    assert scrub(message, url) == message if secret is None else secret not in scrub(message, url)


def test_the_ui_server_gets_its_store_by_the_environment_never_its_command_line() -> None:
    from bench.tracking.local_server import LocalServer

    uri = f"postgresql://u:{SECRET}@127.0.0.1:5432/db?sslpassword={SECRET}"
    server = LocalServer(uri, 5999, workers=1)
    assert not any(SECRET in arg for arg in server.argv), server.argv
    assert server.env == {"MLFLOW_BACKEND_STORE_URI": uri}


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: its parent, and its command line as ``ps`` shows it to any user."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out[int(entry.name)] = (parent, line)
    return out


def _descendants(pid: int, processes: dict[int, tuple[int, str]]) -> set[int]:
    found: set[int] = set()
    grown = {pid}
    while grown:
        grown = {p for p, (parent, _) in processes.items() if parent in grown} - found
        found |= grown
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the processes from /proc")
def test_ps_never_shows_the_password_while_lrbench_ui_runs(postgres_database: str, tmp_path: Path) -> None:
    """`lrbench ui` over a PostgreSQL store given with a password: no process it starts (mlflow server, its
    workers and job runners), nor any other, has the password on its command line while the UI serves.
    lrbench's own command line is the user's to keep it off (PGPASSWORD: docs/scaling-out.md). The suite's
    PostgreSQL trusts local connections, so any password will do."""
    url = postgres_database.replace("postgresql://lrbench@", f"postgresql://lrbench:{SECRET}@", 1)
    assert SECRET in url
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench", "ui", "--tracking-uri", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,  # where MLflow's server keeps what it keeps by default
    )
    try:
        assert ui.stdout is not None
        printed = []
        for line in iter(ui.stdout.readline, ""):
            printed.append(line)
            if line.startswith("MLflow UI on"):
                break
        assert printed and printed[-1].startswith(f"MLflow UI on http://127.0.0.1:{port}"), "".join(printed)
        processes = _processes()
        started = _descendants(ui.pid, processes)
        assert any("mlflow" in processes[p][1] and " server " in processes[p][1] for p in started), started
        shown = {p: line for p, (_, line) in processes.items() if SECRET in line and p != ui.pid}
        assert not shown, shown
        assert SECRET not in "".join(printed)
    finally:
        ui.terminate()
        ui.wait(timeout=60)


def test_the_study_name_cannot_put_results_outside_the_output() -> None:
    from bench import config
    from bench.errors import UserError

    for name in ("../../escaped", "a/b", "..", "/abs", "x\\y", "spool", "optuna.journal.lock"):
        with pytest.raises(UserError, match="name"):
            config.parse({"name": name})
    assert config.parse({"name": "breast_cancer-2.v1"}).name == "breast_cancer-2.v1"
