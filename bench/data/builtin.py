"""Where a task's rows come from: the built-in datasets, and a CSV file of the user's; and their checks.

``breast_cancer`` (data/breast-cancer.csv, the reference task), scikit-learn's bundled ``wine``, ``digits``
and ``iris`` (classification) and ``diabetes`` (regression), and ``synthetic``: scikit-learn's
``make_classification``, or ``make_regression`` for a regression task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import UserError

# pandas and scikit-learn are imported where data is loaded (see bench.data).
if TYPE_CHECKING:
    import pandas as pd

    from bench.data import DataConfig

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"

Loader = Callable[["DataConfig", str], tuple["pd.DataFrame", "pd.Series"]]


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: its loader (given the data config and the task's kind) and the kind of task it
    is, or None where the config chooses (``synthetic``)."""

    load: Loader
    kind: str | None


def _breast_cancer(cfg: DataConfig, kind: str) -> tuple[pd.DataFrame, pd.Series]:
    return read_csv(DATA_DIR / "breast-cancer.csv", "diagnosis", ("id",), {"B": 0, "M": 1})


def _sklearn(loader: str) -> Loader:
    """One of scikit-learn's bundled datasets, by its loader's name in sklearn.datasets."""

    def load(cfg: DataConfig, kind: str) -> tuple[pd.DataFrame, pd.Series]:
        bunch = getattr(importlib.import_module("sklearn.datasets"), loader)(as_frame=True)
        return bunch.data, bunch.target

    return load


# The most values synthetic data may hold (rows x features): 0.8 GB as float64, far past any benchmark here.
MAX_SYNTHETIC_VALUES = 10**8


def _synthetic(cfg: DataConfig, kind: str) -> tuple[pd.DataFrame, pd.Series]:
    regression = kind == "regression"
    if cfg.rows < 10 or cfg.features < 2 or (cfg.classes < 2 and not regression):
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
    import pandas as pd

    if regression:  # a linear target of the informative features, with noise: an MLP can fit it
        from sklearn.datasets import make_regression

        x, y = make_regression(
            n_samples=cfg.rows,
            n_features=cfg.features,
            n_informative=informative,
            noise=10.0,
            random_state=cfg.split_seed,
        )
        return pd.DataFrame(x), pd.Series(y)
    if cfg.classes > 2**informative:  # make_classification puts each class on a corner of a hypercube
        raise UserError(
            f"synthetic data with features={cfg.features} has {informative} informative features, which "
            f"separate at most {2**informative} classes, but got classes={cfg.classes}"
        )
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


DATASETS: dict[str, Dataset] = {
    "breast_cancer": Dataset(_breast_cancer, "classification"),
    "wine": Dataset(_sklearn("load_wine"), "classification"),
    "digits": Dataset(_sklearn("load_digits"), "classification"),
    "iris": Dataset(_sklearn("load_iris"), "classification"),
    "diabetes": Dataset(_sklearn("load_diabetes"), "regression"),
    "synthetic": Dataset(_synthetic, None),
}


def read_csv(
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


def check_frame(name: str, x: pd.DataFrame, y: pd.Series, regression: bool) -> None:
    """Raise :class:`UserError` for data no task can be made of: the features numeric and finite, the
    target a class column (two classes or more) or, for regression, a number that varies."""
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
    if regression:
        _check_regression_target(name, y)
    elif y.nunique() < 2:
        raise UserError(
            f"{name}: target has a single class ({str(y.iloc[0])!r}); classification needs two or more"
        )


def _check_regression_target(name: str, y: pd.Series) -> None:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        bad = next((v for v in y if pd.isna(pd.to_numeric(v, errors="coerce"))), y.iloc[0])
        raise UserError(f"{name}: the regression target has a value that is not a number ({str(bad)!r})")
    values = y.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        raise UserError(f"{name}: the target has infinite values ({int(np.isinf(values).sum())} rows)")
    if y.nunique() < 2:
        raise UserError(
            f"{name}: the target has a single value ({float(values[0])!r}); a regression target varies"
        )
