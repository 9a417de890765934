"""Tasks: a dataset split into train / validation / test, scaled on train only, as tensors on the device.

Built-in datasets: ``breast_cancer`` (data/breast-cancer.csv, the reference task), scikit-learn's bundled
``wine``, ``digits`` and ``iris``, and ``synthetic`` (``make_classification``). Any CSV works too: a path,
a target column, an optional label mapping and columns to drop. Bad data is a :class:`UserError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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


def _synthetic(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    if cfg.rows < 10 or cfg.features < 2 or cfg.classes < 2:
        raise UserError(
            f"synthetic data needs rows >= 10, features >= 2 and classes >= 2, "
            f"but got (rows={cfg.rows}, features={cfg.features}, classes={cfg.classes})"
        )
    import pandas as pd
    from sklearn.datasets import make_classification

    informative = max(2, min(cfg.features, cfg.features // 2))
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
    if y.isna().any():
        raise UserError(f"{name}: target has missing values ({int(y.isna().sum())} rows)")
    if y.nunique() < 2:
        raise UserError(
            f"{name}: target has a single class ({y.iloc[0]!r}); classification needs two or more"
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


def load_task(cfg: DataConfig, device: torch.device | str = "cpu") -> Task:
    """Split (stratified, from ``split_seed``), scale on train only, and move to the device once."""
    import torch
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_frame(cfg)
    classes, codes = np.unique(y.to_numpy(), return_inverse=True)
    _split_sizes_ok(cfg.name, len(x), len(classes), cfg)
    features = x.to_numpy(dtype=np.float64)
    idx = np.arange(len(features))
    rest, test = train_test_split(idx, test_size=cfg.test_size, random_state=cfg.split_seed, stratify=codes)
    train, val = train_test_split(
        rest, test_size=cfg.val_size / (1 - cfg.test_size), random_state=cfg.split_seed, stratify=codes[rest]
    )
    scaler = StandardScaler().fit(features[train])

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.as_tensor(scaler.transform(features[rows]), dtype=torch.float32, device=device)
        ys = torch.as_tensor(codes[rows], dtype=torch.int64, device=device)
        return xs, ys

    return Task(cfg.name, *tensors(train), *tensors(val), *tensors(test), classes=[str(c) for c in classes])
