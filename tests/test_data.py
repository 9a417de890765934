from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.data import DATA_DIR, DATASETS, DataConfig, load_task
from bench.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_csv_is_rebuilt_exactly_from_scikit_learn() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "data" / "make_breast_cancer.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_breast_cancer_csv_has_the_article_layout() -> None:
    frame = pd.read_csv(DATA_DIR / "breast-cancer.csv")
    assert frame.shape == (569, 32)
    assert list(frame.columns[:4]) == ["id", "diagnosis", "radius_mean", "texture_mean"]
    assert frame.columns[-1] == "fractal_dimension_worst"
    assert frame["diagnosis"].value_counts().to_dict() == {"B": 357, "M": 212}
    # First row as printed in the article.
    assert frame.loc[0, ["radius_mean", "texture_mean", "perimeter_mean", "area_mean"]].tolist() == [
        17.99,
        10.38,
        122.8,
        1001.0,
    ]


@pytest.mark.parametrize("name", sorted(n for n, d in DATASETS.items() if d.kind != "regression"))
def test_builtin_tasks_split_stratified_and_scaled_on_train_only(name: str) -> None:
    task = load_task(DataConfig(dataset=name, rows=300))
    n = len(task.y_train) + len(task.y_val) + len(task.y_test)
    assert abs(len(task.y_test) / n - 0.2) < 0.02 and abs(len(task.y_val) / n - 0.2) < 0.02
    # Scaler fitted on train: train columns are standardised exactly, validation ones only roughly.
    assert torch.allclose(task.x_train.mean(0), torch.zeros(task.n_features), atol=1e-5)
    assert not torch.allclose(task.x_val.mean(0), torch.zeros(task.n_features), atol=1e-5)
    # Stratified: every class in every split, in about the same proportion.
    for ys in (task.y_train, task.y_val, task.y_test):
        shares = torch.bincount(ys, minlength=task.n_classes) / len(ys)
        overall = torch.bincount(task.y_train, minlength=task.n_classes) / len(task.y_train)
        assert (shares > 0).all() and torch.allclose(shares, overall, atol=0.06)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64


def test_split_is_fixed_by_split_seed() -> None:
    a, b = load_task(DataConfig(split_seed=2)), load_task(DataConfig(split_seed=2))
    c = load_task(DataConfig(split_seed=3))
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)


def test_multiclass_and_synthetic_shapes() -> None:
    digits = load_task(DataConfig(dataset="digits"))
    assert digits.n_classes == 10 and digits.n_features == 64
    synth = load_task(DataConfig(dataset="synthetic", rows=500, features=12, classes=4))
    assert synth.n_classes == 4 and synth.n_features == 12


def test_user_csv_with_label_map_and_drop(tmp_path: Path) -> None:
    src = pd.read_csv(DATA_DIR / "breast-cancer.csv")
    path = tmp_path / "mine.csv"
    src.to_csv(path, index=False)
    task = load_task(DataConfig(csv=str(path), target="diagnosis", drop=("id",), label_map={"M": 1, "B": 0}))
    assert task.n_features == 30 and task.n_classes == 2 and task.name == "mine"


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        (None, "y", "data file not found"),
        ("a,b\n1,2\n3,4\n", "y", "column 'y' not found; columns are: a, b"),
        ("a,y\nx,0\nz,1\n" * 10, "y", "feature column 'a' is not numeric"),
        ("a,y\n1,0\n,1\n" + "2,0\n3,1\n" * 10, "y", "feature column 'a' has missing values (1 rows)"),
        ("a,y\n" + "1,0\n2,0\n" * 10, "y", "target has a single class"),
        ("a,y\n1,0\n2,1\n3,0\n4,1\n", "y", "rows are too few for a stratified split"),
    ],
)
def test_bad_csv_is_a_one_line_user_error(
    tmp_path: Path, text: str | None, target: str, message: str
) -> None:
    path = str(tmp_path / "missing.csv") if text is None else _csv(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_task(DataConfig(csv=path, target=target))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_dataset() -> None:
    with pytest.raises(UserError, match="unknown dataset 'mnist'; choose one of: breast_cancer"):
        load_task(DataConfig(dataset="mnist"))


# --- the prepared-split cache ----------------------------------------------------------------------------


def _same_task(a: object, b: object) -> bool:
    parts = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    return all(torch.equal(getattr(a, p), getattr(b, p)) for p in parts) and a.classes == b.classes  # type: ignore[attr-defined]


def test_a_prepared_split_is_cached_and_read_back_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import data

    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path))
    cfg = DataConfig(dataset="breast_cancer", split_seed=5)
    fresh = load_task(cfg)
    assert len(list(tmp_path.glob("split-breast_cancer-*.npz"))) == 1

    def no_preparing(cfg: DataConfig) -> None:
        raise AssertionError("prepared again instead of read from the cache")

    monkeypatch.setattr(data, "_prepare", no_preparing)
    assert _same_task(load_task(cfg), fresh)
    monkeypatch.setattr(data, "load_frame", no_preparing)
    data.check(cfg)  # a study definition's data check is answered by the cache too


def test_the_cache_follows_the_data_and_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path / "cache"))
    csv = tmp_path / "d.csv"
    frame = pd.read_csv(DATA_DIR / "breast-cancer.csv").drop(columns=["id"])
    frame.to_csv(csv, index=False)
    cfg = DataConfig(dataset=None, csv=str(csv), target="diagnosis", label_map={"B": 0, "M": 1})
    before = load_task(cfg)
    frame.loc[:, "radius_mean"] = frame["radius_mean"] ** 2  # (a scale alone would standardise away)
    frame.to_csv(csv, index=False)
    after = load_task(cfg)
    assert not torch.equal(before.x_train, after.x_train)  # the new bytes, not the cached split
    other = load_task(
        DataConfig(dataset=None, csv=str(csv), target="diagnosis", label_map={"B": 0, "M": 1}, split_seed=3)
    )
    assert not torch.equal(after.y_train, other.y_train)
    assert len(list((tmp_path / "cache").glob("split-*.npz"))) == 3


def test_an_unreadable_cache_file_is_prepared_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path))
    cfg = DataConfig(dataset="iris")
    fresh = load_task(cfg)
    (stored,) = tmp_path.glob("split-*.npz")
    stored.write_bytes(b"not a zip file")
    assert _same_task(load_task(cfg), fresh)
    assert stored.read_bytes()[:2] == b"PK"  # written again, whole


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRBENCH_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    load_task(DataConfig(dataset="iris"))
    assert not any(tmp_path.rglob("*"))


def test_a_cached_task_loads_without_pandas_or_scikit_learn(data_cache: Path) -> None:
    """What the cache is for: a study process that finds its split cached imports neither (about a second
    here), neither for checking its definition nor for loading its data."""
    load_task(DataConfig(dataset="breast_cancer"))  # cached in the suite's cache, if it was not already
    code = (
        "import sys; from bench import config; from bench.data import load_task; "
        f"cfg = config.load({str(ROOT / 'studies' / 'breast_cancer.yaml')!r}); load_task(cfg.task); "
        "print(sorted({'pandas', 'sklearn'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
