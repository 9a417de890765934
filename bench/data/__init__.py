"""Tasks: a dataset split into train / validation / test, scaled on train only, as tensors on the device.

A task is a classification (cross-entropy, or BCE for two classes; scored by accuracy) or a regression
(MSE on the target standardised on the training rows; scored by RMSE in the target's own units). Where the
rows come from is :mod:`.builtin`: a built-in dataset, or a CSV (a path, a target column, an optional
label mapping, columns to drop, and the task's kind). Bad data is a :class:`UserError`.

A prepared split (the arrays a Task is made of) is cached on disk, keyed by everything it is made from:
the data config, the data file's bytes (or the scikit-learn version for its bundled and synthetic data),
and this package's source. A later load of the same data skips pandas and scikit-learn (about a second to
import here). The folder is :func:`bench.cache.cache_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from bench.cache import cache_dir, write_whole
from bench.data.builtin import DATA_DIR, DATASETS, MAX_SYNTHETIC_VALUES, Dataset, check_frame, read_csv
from bench.errors import UserError

# torch, pandas and scikit-learn (about 4 s together to import here) are imported where data is loaded: a
# study reads its definition, and starts its MLflow writer on it, before it pays for them, and commands
# that only read a study's definition and storage (export, ui) never do.
if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "DATASETS",
    "DATA_DIR",
    "KINDS",
    "MAX_SYNTHETIC_VALUES",
    "SCORES",
    "DataConfig",
    "Dataset",
    "Kind",
    "Sizes",
    "Task",
    "better",
    "check",
    "load_frame",
    "load_task",
]


def better(direction: str) -> str:
    """How a score of this direction (``maximize``, ``minimize``) reads: "higher is better"."""
    return "higher is better" if direction == "maximize" else "lower is better"


@dataclass(frozen=True)
class Kind:
    """What a task's kind decides beyond its loss: its score's name and which way the score is better."""

    name: str
    score: str  # in metric and column names: val_<score>, test_<score>, best_val_<score>, val/<score>
    direction: str  # maximize or minimize
    label: str  # the score's name for people

    @property
    def better(self) -> str:
        return better(self.direction)


KINDS = {
    "classification": Kind("classification", "accuracy", "maximize", "accuracy"),
    "regression": Kind("regression", "rmse", "minimize", "RMSE"),
}
SCORES = {kind.score: kind for kind in KINDS.values()}


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split. The split is fixed by ``split_seed`` so that every
    trial of a study sees the same rows; the trial's own seed drives initialisation and batch order."""

    dataset: str | None = "breast_cancer"
    csv: str | None = None
    target: str | None = None
    kind: str = ""  # classification or regression; "": a built-in dataset's own, else classification
    drop: tuple[str, ...] = ()
    label_map: Mapping[str, int] | None = None
    test_size: float = 0.2
    val_size: float = 0.2
    split_seed: int = 2
    # For dataset == "synthetic" only.
    rows: int = 2000
    features: int = 20
    classes: int = 2
    # A task of the user's: the function (package.module:function) that returns its rows, and its arguments
    # (bench.data.user).
    python: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.python:
            return self.python.rpartition(":")[2]
        return Path(self.csv).stem if self.csv else str(self.dataset)

    @property
    def task_kind(self) -> Kind:
        """The kind given, else the built-in dataset's own (a CSV's, and ``synthetic``'s: classification).
        A kind that is neither, or that a built-in dataset is not, is a :class:`UserError`."""
        if self.kind and self.kind not in KINDS:
            raise UserError(f"kind must be {' or '.join(KINDS)}, got {self.kind!r}")
        builtin = None if self.csv or self.python else DATASETS.get(str(self.dataset))
        fixed = builtin.kind if builtin is not None else None
        if fixed and self.kind and self.kind != fixed:
            raise UserError(f"kind: {self.dataset} is a {fixed} dataset, but got kind={self.kind!r}")
        return KINDS[self.kind or fixed or "classification"]


@dataclass
class Task:
    """Tensors already on the device: features float32; targets int64 (class index), or float32 for a
    regression task (standardised on the training rows: ``target_mean`` and ``target_std`` give back the
    original units; None for classification)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    kind: str = "classification"
    target_mean: float | None = None
    target_std: float | None = None

    @property
    def n_features(self) -> int:
        """Values in a row: its features, or all the values of an image (its :attr:`input_shape`)."""
        return int(self.x_train[0].numel())

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one row: ``(features,)``, or a user's task's own, such as ``(1, 8, 8)``."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        """The classes to tell apart; a regression task counts one, its model's one output (as
        :class:`Sizes` does)."""
        return 1 if self.regression else len(self.classes)

    @property
    def regression(self) -> bool:
        return self.kind == "regression"

    @property
    def score(self) -> str:
        """The name of the task's score: ``accuracy`` or ``rmse``."""
        return KINDS[self.kind].score

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def _split_sizes_ok(name: str, n: int, outputs: int, cfg: DataConfig, stratified: bool) -> None:
    if not (0 < cfg.test_size < 1 and 0 < cfg.val_size < 1 and cfg.test_size + cfg.val_size < 1):
        raise UserError(
            f"{name}: 0 < test_size, 0 < val_size and test_size + val_size < 1 must hold, "
            f"but got (test_size={cfg.test_size}, val_size={cfg.val_size})"
        )
    smallest = min(cfg.test_size, cfg.val_size, 1 - cfg.test_size - cfg.val_size)
    if int(n * smallest) < outputs:
        over = f" over {outputs} classes" if stratified else ""
        raise UserError(
            f"{name}: {n} rows are too few for a{' stratified' if stratified else ''} split with "
            f"test_size={cfg.test_size} and val_size={cfg.val_size}{over}"
        )


def load_frame(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    """The raw features and target of a data config, checked."""
    kind = cfg.task_kind
    if cfg.label_map is not None and kind.name == "regression":
        raise UserError("label_map maps classes: a regression target is used as it is; leave label_map out")
    if cfg.csv:
        if not cfg.target:
            raise UserError("a CSV dataset needs a target column (--target / data.target)")
        x, y = read_csv(Path(cfg.csv), cfg.target, tuple(cfg.drop), cfg.label_map)
    else:
        if cfg.dataset not in DATASETS:
            raise UserError(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASETS)}")
        x, y = DATASETS[cfg.dataset].load(cfg, kind.name)
    check_frame(cfg.name, x, y, regression=kind.name == "regression")
    return x, y


class Sizes(NamedTuple):
    """What the limits of a study are computed from: its training rows, features and classes (a regression
    task counts one: its model's one output)."""

    train_rows: int
    features: int
    classes: int


def check(cfg: DataConfig) -> Sizes:
    """Raise :class:`UserError` if the data cannot be loaded and split as configured; else its sizes. The
    split is prepared here (and cached, for load_task to read) unless a cached split of the same data is
    found (its key holds the data's bytes): then only its sizes are read."""
    path = _cache_path(cfg)
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return Sizes(*map(int, stored["sizes"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable: prepared again below
    arrays = _prepare(cfg)
    _store(cfg, arrays)
    return Sizes(*map(int, arrays["sizes"]))


def load_task(cfg: DataConfig, device: torch.device | str = "cpu") -> Task:
    """Split (stratified for classification, from ``split_seed``), scale on train only, and move to the
    device once."""
    import torch

    kind = cfg.task_kind
    arrays = _cached(cfg)
    if arrays is None:
        arrays = _prepare(cfg)
        _store(cfg, arrays)
    target = torch.float32 if kind.name == "regression" else torch.int64

    def tensors(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.as_tensor(arrays[f"x_{part}"], dtype=torch.float32, device=device).contiguous()
        ys = torch.as_tensor(arrays[f"y_{part}"], dtype=target, device=device)
        return xs, ys

    classes = [str(c) for c in arrays["classes"]]
    task = Task(cfg.name, *tensors("train"), *tensors("val"), *tensors("test"), classes, kind.name)
    if "target_scale" in arrays:
        task.target_mean, task.target_std = map(float, arrays["target_scale"])
    return task


def _prepare(cfg: DataConfig) -> dict[str, np.ndarray]:
    """The split and scaled arrays of a Task, from the data: features float32; labels int64, or a
    regression target float32, standardised on the training rows (its mean and std in ``target_scale``).
    A task of the user's function: its rows as they come (:mod:`.user`)."""
    if cfg.python:
        from bench.data import user

        return user.prepare(cfg)
    from sklearn.preprocessing import StandardScaler

    x, y = load_frame(cfg)
    regression = cfg.task_kind.name == "regression"
    if regression:
        classes, target = np.array([], dtype=str), y.to_numpy(dtype=np.float64)
    else:
        classes, target = np.unique(y.to_numpy(), return_inverse=True)
    outputs = 1 if regression else len(classes)
    _split_sizes_ok(cfg.name, len(x), outputs, cfg, stratified=not regression)
    features = x.to_numpy(dtype=np.float64)
    train, val, test = _split(cfg, len(features), None if regression else (target, classes))
    scaler = StandardScaler().fit(features[train])
    arrays = {
        "classes": np.array([str(c) for c in classes]),
        "sizes": np.array([len(train), features.shape[1], outputs], dtype=np.int64),
    }
    if regression:
        mean, std = float(target[train].mean()), float(target[train].std())
        if not std > 0:
            raise UserError(
                f"{cfg.name}: the target has a single value on the {len(train)} training rows; "
                "a regression target varies"
            )
        target = (target - mean) / std
        arrays["target_scale"] = np.array([mean, std])
    for part, rows in (("train", train), ("val", val), ("test", test)):
        arrays[f"x_{part}"] = scaler.transform(features[rows]).astype(np.float32)
        arrays[f"y_{part}"] = target[rows].astype(np.float32 if regression else np.int64)
    return arrays


def _split(
    cfg: DataConfig, n: int, labels: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test row indices from ``split_seed``: stratified by ``labels`` (the class
    codes and the classes) where given, a plain random split where not (regression)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    codes = labels[0] if labels is not None else None
    try:
        rest, test = train_test_split(
            idx, test_size=cfg.test_size, random_state=cfg.split_seed, stratify=codes
        )
        train, val = train_test_split(
            rest,
            test_size=cfg.val_size / (1 - cfg.test_size),
            random_state=cfg.split_seed,
            stratify=None if codes is None else codes[rest],
        )
    except ValueError as exc:  # a class with too few rows to appear in all three parts
        if labels is None:
            raise
        classes = labels[1]
        counts = np.bincount(labels[0])
        why = "" if counts.min() < 3 else f" ({str(exc).splitlines()[0]})"
        raise UserError(
            f"{cfg.name}: cannot split {n} rows stratified with test_size={cfg.test_size} and "
            f"val_size={cfg.val_size}: class {str(classes[counts.argmin()])!r} has {counts.min()} row(s), "
            f"too few to appear in the training, validation and test rows{why}"
        ) from None
    return train, val, test


# --- the prepared-split cache ------------------------------------------------------------------------


def _cache_path(cfg: DataConfig) -> Path | None:
    """The cache file of a data config: its name is a hash of everything the arrays are made from."""
    folder = cache_dir()
    if folder is None or cfg.python:  # a function's rows: read from it, not kept
        return None
    key = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        key.update(module.read_bytes())
    # The kind as resolved: a built-in dataset's split is the same whether its kind is given or not.
    settled = dataclasses.replace(cfg, kind=cfg.task_kind.name)
    key.update(json.dumps(dataclasses.asdict(settled), sort_keys=True, default=str).encode())
    source = (
        Path(cfg.csv)
        if cfg.csv
        else DATA_DIR / "breast-cancer.csv"
        if cfg.dataset == "breast_cancer"
        else None
    )
    if source is not None:
        try:
            key.update(source.read_bytes())
        except OSError:
            return None  # not cached: loading it says what is wrong
    else:
        key.update(importlib.metadata.version("scikit-learn").encode())
    return folder / f"split-{cfg.name}-{key.hexdigest()[:32]}.npz"


def _cached(cfg: DataConfig) -> dict[str, np.ndarray] | None:
    path = _cache_path(cfg)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # unreadable: prepared again, and stored again


def _store(cfg: DataConfig, arrays: dict[str, np.ndarray]) -> None:
    """Written whole or not at all, so that processes that load the same data at once never read half a
    file; a cache that cannot be written is skipped."""
    path = _cache_path(cfg)
    if path is None:
        return
    with contextlib.suppress(OSError):
        write_whole(path, lambda f: np.savez(f, allow_pickle=False, **arrays))
