"""A task of the user's own: a function, named as an import path (``task.python``), that returns the training,
validation and test rows, as tensors or arrays or torch Datasets.

The split and any scaling are the function's: lrbench takes the rows as they come (it scales only data it
loads itself), and checks them: the three parts present, rows of one shape, targets that fit the task's
kind, every value finite. A function that takes ``split_seed`` is given the task's (a confirmation seed's
own where ``confirm.resplit`` draws new splits); one that does not gives the same rows every time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import usercode
from bench.errors import UserError

if TYPE_CHECKING:
    from bench.data import DataConfig

PARTS = ("train", "val", "test")
WHERE = "task.python"
FORM = "a mapping {train: (x, y), val: (x, y), test: (x, y)}, a list of three (x, y) pairs, or torch Datasets"


def prepare(cfg: DataConfig) -> dict[str, np.ndarray]:
    """The arrays of a Task (as :func:`bench.data._prepare` makes them) from the user's function. A process
    calls the function once per data config (checking a study and training it read the same rows)."""
    key = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    if key not in _PREPARED:
        if len(_PREPARED) >= 4:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = _prepared(cfg)
    return {name: array.copy() for name, array in _PREPARED[key].items()}


_PREPARED: dict[str, dict[str, np.ndarray]] = {}


def _prepared(cfg: DataConfig) -> dict[str, np.ndarray]:
    assert cfg.python
    fn = usercode.resolve(cfg.python, WHERE)
    kwargs = dict(cfg.args)
    if usercode.takes(fn, "split_seed") and "split_seed" not in kwargs:
        kwargs["split_seed"] = cfg.split_seed
    returned = usercode.call(fn, cfg.python, WHERE, **kwargs)
    parts = _parts(returned, cfg.python)
    regression = cfg.task_kind.name == "regression"
    arrays: dict[str, np.ndarray] = {}
    for name, (x, y) in zip(PARTS, parts, strict=True):
        arrays[f"x_{name}"], arrays[f"y_{name}"] = _rows(name, x, y, regression)
    shapes = {arrays[f"x_{p}"].shape[1:] for p in PARTS}
    if len(shapes) != 1:
        shown = ", ".join(f"{p} {list(arrays[f'x_{p}'].shape[1:])}" for p in PARTS)
        raise UserError(f"{WHERE}: the rows of the three parts differ in shape: {shown}")
    features = int(np.prod(arrays["x_train"].shape[1:]))
    if regression:
        arrays["classes"] = np.array([], dtype=str)
        # The target is the function's, in its own units: RMSE is reported in them (a scale of 1).
        arrays["target_scale"] = np.array([0.0, 1.0])
        outputs = 1
    else:
        labels = np.concatenate([arrays[f"y_{p}"] for p in PARTS])
        outputs = int(labels.max()) + 1
        if outputs < 2:
            raise UserError(f"{WHERE}: the targets hold one class (0); a classification task has two or more")
        arrays["classes"] = np.array([str(c) for c in range(outputs)])
    arrays["sizes"] = np.array([len(arrays["y_train"]), features, outputs], dtype=np.int64)
    return arrays


def _parts(returned: Any, path: str) -> list[tuple[Any, Any]]:
    """The (x, y) of train, validation and test, in that order."""
    if isinstance(returned, Mapping):
        missing = [p for p in PARTS if p not in returned]
        if missing:
            raise UserError(
                f"{WHERE}: {path} returned a mapping without {', '.join(missing)}; it returns {FORM}"
            )
        items = [returned[p] for p in PARTS]
    elif isinstance(returned, Sequence) and not isinstance(returned, str) and len(returned) == 3:
        items = list(returned)
    else:
        raise UserError(f"{WHERE}: {path} returned a {type(returned).__name__}; it returns {FORM}")
    return [_pair(name, item, path) for name, item in zip(PARTS, items, strict=True)]


def _pair(name: str, item: Any, path: str) -> tuple[Any, Any]:
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        return item[0], item[1]
    import torch

    if isinstance(item, torch.utils.data.Dataset):
        try:
            rows = [item[i] for i in range(len(item))]  # type: ignore[arg-type]
            xs, ys = zip(*rows, strict=True)
            return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(np.asarray(ys))
        except Exception as exc:
            raise UserError(f"{WHERE}: the {name} Dataset does not give (x, y) rows: {exc}") from None
    raise UserError(
        f"{WHERE}: {path} gave a {type(item).__name__} for {name}; each part is (x, y) or a Dataset"
    )


def _array(value: Any, what: str) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):  # on any device
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise UserError(f"{WHERE}: {what} is no array of numbers ({exc})") from None


def _rows(name: str, x: Any, y: Any, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """One part's features float32 and targets (int64 classes, or float32), checked."""
    xs, ys = _array(x, f"the {name} x"), _array(y, f"the {name} y")
    if ys.ndim == 2 and ys.shape[1] == 1:
        ys = ys[:, 0]
    if xs.ndim < 2 or ys.ndim != 1 or len(xs) != len(ys) or len(xs) == 0:
        raise UserError(
            f"{WHERE}: the {name} part has x of shape {list(xs.shape)} and y of shape {list(ys.shape)}: "
            "x is (rows, ...) and y (rows,), with the same number of rows, at least one"
        )
    if not (np.issubdtype(xs.dtype, np.number) or xs.dtype == bool):
        raise UserError(f"{WHERE}: the {name} x holds {xs.dtype} values, not numbers")
    xs = xs.astype(np.float32)
    bad = int((~np.isfinite(xs)).sum())
    if bad:
        raise UserError(
            f"{WHERE}: the {name} x holds {bad} non-finite value(s) (NaN or inf); "
            "lrbench does not clean a task it does not load"
        )
    if not np.issubdtype(ys.dtype, np.number):
        raise UserError(f"{WHERE}: the {name} y holds {ys.dtype} values, not numbers")
    if regression:
        ys = ys.astype(np.float32)
        if not np.isfinite(ys).all():
            raise UserError(f"{WHERE}: the {name} y holds non-finite value(s) (NaN or inf)")
        return xs, ys
    if not np.isfinite(ys).all() or (ys != np.round(ys)).any() or (ys < 0).any():
        raise UserError(
            f"{WHERE}: the {name} y holds values that are no class index 0, 1, ...; "
            "for a target of real numbers set task.kind: regression"
        )
    return xs, ys.astype(np.int64)
