"""Tasks: a dataset split into train / validation / test, scaled on train only, as tensors on the device.

Built-in datasets: ``breast_cancer`` (data/breast-cancer.csv, the reference task), scikit-learn's bundled
``wine``, ``digits`` and ``iris``, and ``synthetic`` (``make_classification``). Any CSV works too: a path,
a target column, an optional label mapping and columns to drop. Bad data is a :class:`UserError`.

A prepared split (the arrays a Task is made of) is cached on disk, keyed by everything it is made from:
the data config, the data file's bytes (or the scikit-learn version for its bundled and synthetic data),
and this module's source. A later load of the same data skips pandas and scikit-learn (about a second to
import here). The folder is :func:`bench.cache.cache_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bench.cache import cache_dir, write_whole
from bench.errors import UserError

# torch, pandas and scikit-learn (about 4 s together to import here) are imported where data is loaded: a
# study reads its definition, and starts its MLflow writer on it, before it pays for them, and commands
# that only read a study's definition and storage (export, ui) never do.
if TYPE_CHECKING:
    import pandas as pd
    import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split. The split is fixed by ``split_seed`` so that every
    trial of a study sees the same rows; the trial's own seed drives initialisation and batch order."""

    dataset: str | None = "breast_cancer"
    csv: str | None = None
    target: str | None = None
    drop: tuple[str, ...] = ()
    label_map: Mapping[str, int] | None = None
    test_size: float = 0.2
    val_size: float = 0.2
    split_seed: int = 2
    # For dataset == "synthetic" only.
    rows: int = 2000
    features: int = 20
    classes: int = 2

    @property
    def name(self) -> str:
        return Path(self.csv).stem if self.csv else str(self.dataset)


@dataclass
class Task:
    """Tensors already on the device: features float32, labels int64 (class index)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def _breast_cancer(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    path = DATA_DIR / "breast-cancer.csv"
    return _read_csv(path, "diagnosis", ("id",), {"B": 0, "M": 1})


def _sklearn(loader: str) -> Callable[[DataConfig], tuple[pd.DataFrame, pd.Series]]:
    """One of scikit-learn's bundled datasets, by its loader's name in sklearn.datasets."""

    def load(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
        bunch = getattr(importlib.import_module("sklearn.datasets"), loader)(as_frame=True)
        return bunch.data, bunch.target

    return load


# The most values synthetic data may hold (rows x features): 0.8 GB as float64, far past any benchmark here.
MAX_SYNTHETIC_VALUES = 10**8


def _synthetic(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    if cfg.rows < 10 or cfg.features < 2 or cfg.classes < 2:
        raise UserError(
            f"synthetic data needs rows >= 10, features >= 2 and classes >= 2, "
            f"but got (rows={cfg.rows}, features={cfg.features}, classes={cfg.classes})"
        )
    if cfg.rows * cfg.features > MAX_SYNTHETIC_VALUES:
        raise UserError(
            f"synthetic data of rows={cfg.rows} x features={cfg.features} is {cfg.rows * cfg.features:.3g} "
            f"values; at most {MAX_SYNTHETIC_VALUES:.0e} are made"
        )
    informative = max(2, min(cfg.features, cfg.features // 2))
    if cfg.classes > 2**informative:  # make_classification puts each class on a corner of a hypercube
        raise UserError(
            f"synthetic data with features={cfg.features} has {informative} informative features, which "
            f"separate at most {2**informative} classes, but got classes={cfg.classes}"
        )
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=cfg.rows,
        n_features=cfg.features,
        n_informative=informative,
        n_redundant=0,
        n_classes=cfg.classes,
        n_clusters_per_class=1 if cfg.classes * 2 > 2**informative else 2,
        random_state=cfg.split_seed,
    )
    return pd.DataFrame(x), pd.Series(y)


DATASETS: dict[str, Callable[[DataConfig], tuple[pd.DataFrame, pd.Series]]] = {
    "breast_cancer": _breast_cancer,
    "wine": _sklearn("load_wine"),
    "digits": _sklearn("load_digits"),
    "iris": _sklearn("load_iris"),
    "synthetic": _synthetic,
}


def _read_csv(
    path: Path, target: str, drop: tuple[str, ...], label_map: Mapping[str, int] | None
) -> tuple[pd.DataFrame, pd.Series]:
    import pandas as pd

    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} as CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in (target, *drop) if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path.name}: column {missing[0]!r} not found; columns are: {', '.join(map(str, frame.columns))}"
        )
    y = frame[target]
    if label_map is not None:
        unmapped = sorted(set(y.dropna().astype(str)) - set(map(str, label_map)))
        if unmapped:
            raise UserError(
                f"{path.name}: target value {unmapped[0]!r} is not in the label mapping {dict(label_map)}"
            )
        y = y.astype(str).map({str(k): v for k, v in label_map.items()})
    return frame.drop(columns=[target, *drop]), y


def _check(name: str, x: pd.DataFrame, y: pd.Series) -> None:
    import pandas as pd

    if len(x) == 0:
        raise UserError(f"{name}: no rows")
    non_numeric = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]
    if non_numeric:
        raise UserError(
            f"{name}: feature column {non_numeric[0]!r} is not numeric; drop it or encode it first"
        )
    if x.shape[1] == 0:
        raise UserError(f"{name}: no feature columns left")
    if x.isna().any().any():
        col = x.columns[x.isna().any()][0]
        raise UserError(
            f"{name}: feature column {col!r} has missing values ({int(x[col].isna().sum())} rows)"
        )
    infinite = np.isinf(x.to_numpy(dtype=np.float64))
    if infinite.any():
        col = x.columns[infinite.any(axis=0)][0]
        raise UserError(
            f"{name}: feature column {col!r} has infinite values ({int(np.isinf(x[col]).sum())} rows)"
        )
    if y.isna().any():
        raise UserError(f"{name}: target has missing values ({int(y.isna().sum())} rows)")
    if y.nunique() < 2:
        raise UserError(
            f"{name}: target has a single class ({str(y.iloc[0])!r}); classification needs two or more"
        )


def _split_sizes_ok(name: str, n: int, n_classes: int, cfg: DataConfig) -> None:
    if not (0 < cfg.test_size < 1 and 0 < cfg.val_size < 1 and cfg.test_size + cfg.val_size < 1):
        raise UserError(
            f"{name}: 0 < test_size, 0 < val_size and test_size + val_size < 1 must hold, "
            f"but got (test_size={cfg.test_size}, val_size={cfg.val_size})"
        )
    smallest = min(cfg.test_size, cfg.val_size, 1 - cfg.test_size - cfg.val_size)
    if int(n * smallest) < n_classes:
        raise UserError(
            f"{name}: {n} rows are too few for a stratified split with test_size={cfg.test_size} and "
            f"val_size={cfg.val_size} over {n_classes} classes"
        )


def load_frame(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    """The raw features and target of a data config, checked."""
    if cfg.csv:
        if not cfg.target:
            raise UserError("a CSV dataset needs a target column (--target / data.target)")
        x, y = _read_csv(Path(cfg.csv), cfg.target, tuple(cfg.drop), cfg.label_map)
    else:
        if cfg.dataset not in DATASETS:
            raise UserError(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASETS)}")
        x, y = DATASETS[cfg.dataset](cfg)
    _check(cfg.name, x, y)
    return x, y


class Sizes(NamedTuple):
    """What the limits of a study are computed from: its training rows, features and classes."""

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
    """Split (stratified, from ``split_seed``), scale on train only, and move to the device once."""
    import torch

    arrays = _cached(cfg)
    if arrays is None:
        arrays = _prepare(cfg)
        _store(cfg, arrays)

    def tensors(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.as_tensor(arrays[f"x_{part}"], dtype=torch.float32, device=device)
        ys = torch.as_tensor(arrays[f"y_{part}"], dtype=torch.int64, device=device)
        return xs, ys

    classes = [str(c) for c in arrays["classes"]]
    return Task(cfg.name, *tensors("train"), *tensors("val"), *tensors("test"), classes=classes)


def _prepare(cfg: DataConfig) -> dict[str, np.ndarray]:
    """The split and scaled arrays of a Task, from the data: features float32, labels int64."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_frame(cfg)
    classes, codes = np.unique(y.to_numpy(), return_inverse=True)
    _split_sizes_ok(cfg.name, len(x), len(classes), cfg)
    features = x.to_numpy(dtype=np.float64)
    idx = np.arange(len(features))
    try:
        rest, test = train_test_split(
            idx, test_size=cfg.test_size, random_state=cfg.split_seed, stratify=codes
        )
        train, val = train_test_split(
            rest,
            test_size=cfg.val_size / (1 - cfg.test_size),
            random_state=cfg.split_seed,
            stratify=codes[rest],
        )
    except ValueError as exc:  # a class with too few rows to appear in all three parts
        counts = np.bincount(codes)
        why = "" if counts.min() < 3 else f" ({str(exc).splitlines()[0]})"
        raise UserError(
            f"{cfg.name}: cannot split {len(idx)} rows stratified with test_size={cfg.test_size} and "
            f"val_size={cfg.val_size}: class {str(classes[counts.argmin()])!r} has {counts.min()} row(s), "
            f"too few to appear in the training, validation and test rows{why}"
        ) from None
    scaler = StandardScaler().fit(features[train])
    arrays = {
        "classes": np.array([str(c) for c in classes]),
        "sizes": np.array([len(train), features.shape[1], len(classes)], dtype=np.int64),
    }
    for part, rows in (("train", train), ("val", val), ("test", test)):
        arrays[f"x_{part}"] = scaler.transform(features[rows]).astype(np.float32)
        arrays[f"y_{part}"] = codes[rows].astype(np.int64)
    return arrays


# --- the prepared-split cache ------------------------------------------------------------------------


def _cache_path(cfg: DataConfig) -> Path | None:
    """The cache file of a data config: its name is a hash of everything the arrays are made from."""
    folder = cache_dir()
    if folder is None:
        return None
    key = hashlib.sha256(Path(__file__).read_bytes())
    key.update(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode())
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
