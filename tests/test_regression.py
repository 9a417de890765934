"""Regression tasks end to end: the data (a float target, standardised on train, split unstratified), the
loss and score (MSE, RMSE in the target's units), the engines, and a study whose direction, names and
ranking all follow the task: lower RMSE is better everywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from torch.nn import functional as F

from bench import config
from bench.cli.parser import run as main
from bench.cli.ui import views
from bench.config import METRICS, Locations
from bench.data import KINDS, DataConfig, Task, check, load_task
from bench.errors import UserError
from bench.model import loss_and_score, mean_loss
from bench.search.space import make_pruner
from bench.search.storage import open_storage
from bench.search.telling import objective, reporter
from bench.tracking import names
from bench.train import EpochMetrics, TrainConfig, TrialResult, train

from helpers import lrbench, mlflow_runs

# --- data ---------------------------------------------------------------------------------------------


def test_diabetes_is_a_regression_with_a_float_target_standardised_on_train_and_an_unstratified_split(
    diabetes: Task,
) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    assert diabetes.kind == "regression" and diabetes.score == "rmse" and diabetes.n_features == 10
    assert diabetes.y_train.dtype == torch.float32 and diabetes.classes == []
    assert diabetes.n_classes == 1  # one output, as Sizes counts it
    # A plain random split from split_seed (stratify=None), as scikit-learn makes it.
    raw = load_diabetes().target
    rest, test = train_test_split(np.arange(len(raw)), test_size=0.2, random_state=2)
    train_rows, _ = train_test_split(rest, test_size=0.2 / 0.8, random_state=2)
    assert diabetes.target_mean == pytest.approx(raw[train_rows].mean())
    assert diabetes.target_std == pytest.approx(raw[train_rows].std())
    back = diabetes.y_test.double() * diabetes.target_std + diabetes.target_mean
    assert np.allclose(back.numpy(), raw[test], atol=1e-3)
    # Standardised on the training rows only: exactly there, only roughly on the others.
    assert float(diabetes.y_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(diabetes.y_train.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(diabetes.y_test.mean())) > 1e-3
    assert tuple(check(DataConfig(dataset="diabetes"))) == (len(diabetes.y_train), 10, 1)


def test_synthetic_and_csv_regression(tmp_path: Path) -> None:
    synth = load_task(DataConfig(dataset="synthetic", kind="regression", rows=200, features=6))
    assert synth.regression and synth.y_train.dtype == torch.float32 and synth.n_features == 6
    frame = pd.DataFrame({"a": np.arange(60.0), "b": np.arange(60.0) % 7, "y": np.arange(60) % 5})
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    as_classes = load_task(DataConfig(dataset=None, csv=str(path), target="y"))
    as_values = load_task(DataConfig(dataset=None, csv=str(path), target="y", kind="regression"))
    assert as_classes.kind == "classification" and as_classes.y_train.dtype == torch.int64
    assert as_values.regression and as_values.y_train.dtype == torch.float32
    assert as_classes.n_classes == 5 and as_values.n_classes == 1


def test_the_kind_is_part_of_the_cache_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": np.arange(50.0), "y": np.arange(50) % 4}).to_csv(path, index=False)
    for kind in ("", "classification", "regression"):
        load_task(DataConfig(dataset=None, csv=str(path), target="y", kind=kind))
    # "" and classification are the same arrays (one file); regression has its own.
    assert len(list((tmp_path / "cache").glob("split-*.npz"))) == 2
    cached = load_task(DataConfig(dataset=None, csv=str(path), target="y", kind="regression"))
    assert cached.regression and cached.target_std is not None and cached.target_std > 0


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        (
            "a,y\n" + "1,x\n2,0.5\n" * 10,
            {"kind": "regression"},
            "target has a value that is not a number ('x')",
        ),
        ("a,y\n" + "1,3\n2,3\n" * 10, {"kind": "regression"}, "the target has a single value (3.0)"),
        ("a,y\n" + "1,0\n2,1\n" * 10, {"kind": "ordinal"}, "kind must be classification or regression"),
        (
            "a,y\n" + "1,0\n2,1\n" * 10,
            {"kind": "regression", "label_map": {"0": 0}},
            "label_map maps classes",
        ),
    ],
)
def test_bad_regression_data_is_one_line(tmp_path: Path, text: str, changes: dict, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_task(DataConfig(dataset=None, csv=str(path), target="y", **changes))
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="diabetes is a regression dataset"):
        load_task(DataConfig(dataset="diabetes", kind="classification"))


# --- loss and score -----------------------------------------------------------------------------------


def test_mse_and_rmse_against_a_hand_computation() -> None:
    out = torch.tensor([[1.0], [2.0], [4.0]])
    y = torch.tensor([1.0, 1.0, 1.0])
    assert float(mean_loss(out, y, regression=True)) == pytest.approx(10 / 3)  # (0 + 1 + 9) / 3
    assert float(mean_loss(out, y, regression=True)) == pytest.approx(float(F.mse_loss(out.squeeze(1), y)))
    loss, rmse = loss_and_score(out, y, target_std=2.0)
    assert float(loss) == pytest.approx(10 / 3) and float(rmse) == pytest.approx(2.0 * math.sqrt(10 / 3))
    # A population's (K, B, 1): one loss and one RMSE per member.
    stacked = torch.stack([out, out + 1])
    losses, rmses = loss_and_score(stacked, y.expand(2, 3), target_std=1.0)
    assert losses.tolist() == pytest.approx([10 / 3, 7.0]) and rmses.tolist() == pytest.approx(
        [math.sqrt(10 / 3), math.sqrt(7.0)]
    )
    # Not the binary loss on the same single output: MSE differs from BCE here.
    assert float(mean_loss(out, y)) != pytest.approx(10 / 3)


def test_training_reports_rmse_in_the_targets_units(diabetes: Task) -> None:
    result = train(diabetes, TrainConfig(optimizer="adam", lr=1e-2, epochs=8, seed=1), keep_model=True)
    assert result.score == "rmse" and not result.diverged
    assert result.best_val_score == min(result.val_score) < max(result.val_score)
    assert result.model is not None
    with torch.no_grad():
        predicted = result.model(diabetes.x_test).squeeze(1).double() * diabetes.target_std
    truth = diabetes.y_test.double() * diabetes.target_std
    by_hand = float(((predicted - truth) ** 2).mean().sqrt())
    assert result.test_score == pytest.approx(by_hand, rel=1e-5)
    assert diabetes.target_std is not None
    assert result.test_score == pytest.approx(math.sqrt(result.test_loss) * diabetes.target_std, rel=1e-6)
    assert result.test_score < diabetes.target_std  # better than predicting the training mean
    summary = result.summary()
    assert {"test_rmse", "val_rmse", "best_val_rmse"} <= set(summary) and summary["score"] == "rmse"
    assert not any("accuracy" in key for key in summary)


def test_lrbench_train_prints_rmse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "diabetes", "--epochs", "3", "--lr", "0.01", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "RMSE" in out and "lower is better" in out and "acc" not in out
    assert main(["train", "--dataset", "diabetes", "--epochs", "2", "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["test_rmse"] > 0 and "test_accuracy" not in data


# --- names and direction ------------------------------------------------------------------------------


def _cfg(**changes: object) -> config.StudyConfig:
    raw: dict[str, object] = {"name": "r", "task": {"dataset": "diabetes"}, "schedulers": ["constant"]}
    raw.update(changes)
    return config.parse(raw)


def test_a_regression_study_minimises_rmse_by_default_and_names_follow() -> None:
    cfg = _cfg()
    assert cfg.objective.metric == "val_rmse" and cfg.direction == "minimize" and cfg.kind.score == "rmse"
    assert names.test_metric("val_rmse") == "test_rmse" and names.val_metric_key("val_rmse") == "val/rmse"
    assert {"val_loss": "minimize"} | {f"val_{k.score}": k.direction for k in KINDS.values()} == METRICS
    assert "kind" in cfg.comparable()["task"]
    # A classification study's stored definition has no kind (as it was before tasks had one).
    smoke = config.parse({"name": "c"})
    assert smoke.objective.metric == "val_accuracy" and "kind" not in smoke.comparable()["task"]
    # lrbench ui's views: lowest RMSE first.
    for _, view in views("1", cfg):
        assert "orderByAsc=true" in view
    assert "test_rmse_mean" in views("1", cfg)[0][1]


def test_the_reports_train_command_says_the_kind_where_the_data_does_not() -> None:
    from bench.report.reproduce import reproductions

    chosen = pd.DataFrame(
        [{"family": "constant", "optimizer": "adam", "base_lr": 0.01, "scheduler_args": "{}", "seed": 0}]
    ).assign(split_seed=2)
    csv = _cfg(task={"csv": "d.csv", "target": "y", "kind": "regression"})
    assert "--kind regression" in reproductions(csv, chosen, 5, {})["constant"].command
    assert "--kind" not in reproductions(_cfg(), chosen, 5, {})["constant"].command  # diabetes is one


def test_the_objective_is_best_in_the_tasks_direction() -> None:
    cfg = _cfg(objective={"reduce": "best"})
    result = TrialResult("constant", {}, "rmse", val_score=[60.0, 52.0, 55.0], val_loss=[0.6, 0.5, 0.55])
    assert objective(cfg, result) == 52.0 and result.best_val_score == 52.0
    assert objective(_cfg(), result) == 55.0  # final


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"objective": {"metric": "val_accuracy"}},
            "objective.metric: val_accuracy scores a classification task",
        ),
        (
            {"task": {"dataset": "breast_cancer"}, "objective": {"metric": "val_rmse"}},
            "objective.metric: val_rmse",
        ),
        ({"task": {"dataset": "diabetes", "kind": "classification"}}, "task.kind: diabetes is a regression"),
    ],
)
def test_an_objective_of_the_other_kind_is_one_line_and_exit_2(
    tmp_path: Path, changes: dict, field: str
) -> None:
    raw = {"name": "mismatch", "schedulers": ["constant"], "task": {"dataset": "diabetes"}, **changes}
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(raw))
    done = lrbench("study", study, "--output", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and field in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_pruner_stops_the_trial_with_the_high_rmse() -> None:
    """With the study's direction and pruner, the median pruner compares RMSEs as lower-is-better: a
    trial far above the others' RMSE is pruned, one below is not (a maximising study would do the
    opposite)."""
    cfg = _cfg(optuna={"pruner": "median", "warmup_epochs": 0}, training={"epochs": 4})
    study = optuna.create_study(direction=cfg.direction, pruner=make_pruner(cfg))
    for rmse in (55.0, 56.0, 57.0, 58.0, 59.0):  # the median pruner's five startup trials
        trial = study.ask()
        report = reporter(cfg, trial)
        assert not any(report(EpochMetrics(e, 0.5, 0.5, rmse)) for e in range(4))
        study.tell(trial, rmse)
    bad, good = study.ask(), study.ask()
    assert reporter(cfg, bad)(EpochMetrics(1, 2.0, 2.0, 150.0))
    assert not reporter(cfg, good)(EpochMetrics(1, 0.3, 0.3, 40.0))


# --- a regression study end to end (slow: the study's process and its MLflow writer) ---------------------


@pytest.fixture(scope="module")
def regression_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three families on diabetes, two trials each, confirmed on three seeds. ExponentialLR halving the LR
    every epoch barely trains: the worst (highest) RMSE."""
    tmp = tmp_path_factory.mktemp("regression")
    raw = {
        "name": "reg",
        "task": {"dataset": "diabetes"},
        "model": {"hidden": [16]},
        "training": {
            "optimizer": "adam",
            "lr": {"low": 1.0e-2, "high": 3.0e-2},
            "epochs": 6,
            "batch_size": 64,
        },
        "schedulers": {"constant": {}, "CosineAnnealingLR": {}, "ExponentialLR": {"gamma": 0.2}},
        "optuna": {"sampler": "random", "pruner": "none", "n_trials": 2, "seed": 0},
        "confirm": {"top_k": 1, "seeds": 3},
    }
    study = tmp / "reg.yaml"
    study.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = lrbench("study", study, "--output", tmp / "out")
    assert done.returncode == 0, done.stderr
    (tmp / "stdout.txt").write_text(done.stdout)
    return study, tmp / "out"


@pytest.mark.slow
def test_a_regression_study_ranks_the_lowest_rmse_first(regression_study: tuple[Path, Path]) -> None:
    study, out = regression_study
    board = pd.read_csv(out / "reg" / "leaderboard.csv")
    table = pd.read_csv(out / "reg" / "schedulers.csv")
    confirm = pd.read_csv(out / "reg" / "confirm.csv")
    for frame in (board, confirm):
        assert {"test_rmse", "best_val_rmse", "final_val_rmse"} <= set(frame.columns)
    assert "test_rmse" in table.columns and "best_val_rmse" in table.columns
    for frame in (board, table, confirm):
        assert not [c for c in frame.columns if "accuracy" in c]
    # The search's best trial is its lowest validation RMSE; a value is the final epoch's RMSE.
    complete = board[board["state"] == "COMPLETE"]
    assert complete["value"].iloc[0] == complete["value"].min()
    assert np.allclose(complete["value"], complete["final_val_rmse"])
    assert (complete["best_val_rmse"] <= complete["final_val_rmse"] + 1e-12).all()
    # families.csv ranks the mean test RMSE: rank 1 is the lowest, the crippled schedule the highest.
    families = pd.read_csv(out / "reg" / "families.csv").set_index("family")
    assert (families["status"] == "confirmed").all() and (families["seeds"] == 3).all()
    means = confirm[confirm["chosen"]].groupby("family")["test_rmse"].mean()
    assert np.allclose(families.loc[means.index, "mean"], means)
    assert families["mean"].idxmin() == families["rank"].idxmin() and families["rank"].min() == 1
    assert families.loc["ExponentialLR", "mean"] == families["mean"].max()
    # The Optuna studies minimise.
    cfg = config.load(study)
    storage = open_storage(Locations.resolve(cfg, str(out), None, None).storage)
    for family in cfg.schedulers:
        assert optuna.load_study(study_name=f"reg/{family}", storage=storage).direction.name == "MINIMIZE"


@pytest.mark.slow
def test_a_regression_studys_runs_report_and_answer_say_rmse(regression_study: tuple[Path, Path]) -> None:
    _, out = regression_study
    runs = mlflow_runs(out, experiment="reg")
    trials = [r for r in runs if r.data.tags.get("lrbench.stage") in ("search", "confirm")]
    assert len(trials) == 3 * 2 + 3 * 3
    for run in trials:
        assert {"val/rmse", "test/rmse", "val/loss", "test/loss"} <= set(run.data.metrics), run.data.metrics
    assert not [k for r in runs for k in r.data.metrics if "accuracy" in k]
    assert not set(runs[0].data.params) & {k for r in runs for k in r.data.metrics}
    html = (out / "reg" / "report.html").read_text()
    assert "test_rmse mean (lower is better)" in html and "test RMSE" in html and "test_accuracy" not in html
    stdout = (out.parent / "stdout.txt").read_text()
    assert "(test_rmse, mean [95 % CI], lower is better;" in stdout and "Best: " in stdout
    best = pd.read_csv(out / "reg" / "families.csv").iloc[0]
    assert f"Best: {best['family']}, test RMSE {best['mean']:.4f}" in stdout
