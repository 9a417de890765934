"""Taking the winner home: ``lrbench replay`` trains a recorded trial again and gets its recorded curves,
``lrbench snippet`` prints torch code that gives its recorded LR curve in a plain loop, and the params a
trial run records are enough for both."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from bench import schedules
from bench.cli import parser as cli
from bench.cli import replay as replay_module
from bench.cli.recorded import read_trial
from bench.cli.replay import retrain
from bench.data import load_task
from bench.tracking.curves import compact_curve, expand_curve

from helpers import mlflow_runs, write_study

FAMILIES = {"StepLR": {}, "warmup_cosine": {}, "ReduceLROnPlateau": {"patience": 1}, "OneCycleLR": {}}


@pytest.fixture
def lrbench() -> Callable[..., int]:
    """``lrbench ARGV`` in this process (bench.cli.parser.run: one line and exit 2 on a user error)."""
    return lambda *argv: cli.run([str(a) for a in argv])


def _study(folder: Path, engine: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    """A small study of the four families run to its end with ``engine``: its tracking URI and its runs
    by name."""
    study = write_study(
        folder,
        name=f"home_{engine}",
        training={
            "optimizer": "adam",
            "lr": {"low": 1e-3, "high": 3e-2},
            "epochs": 3,
            "batch_size": 64,
            "engine": engine,
            **({"population_size": 2} if engine == "population" else {}),
        },
        schedulers=FAMILIES,
        optuna={"sampler": "random", "pruner": "none", "n_trials": 2, "seed": 0},
        search={"budget": "per_family"},
        **changes,
    )
    out = folder / "out"
    assert cli.run(["study", str(study), "--output", str(out)]) == 0
    runs = {r.info.run_name: r for r in mlflow_runs(out, f"home_{engine}") if "lrbench.stage" in r.data.tags}
    return f"sqlite:///{out / 'mlflow.db'}", runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    return _study(tmp_path_factory.mktemp("home-reference"), "reference")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """The default engine, populations of two, and a confirmation on two fresh splits."""
    return _study(
        tmp_path_factory.mktemp("home-population"),
        "population",
        confirm={"top_k": 1, "seeds": 2, "resplit": True},
    )


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _replayed_val_loss(uri: str, run_id: str) -> list[float]:
    trial = read_trial(uri, run_id)
    return retrain(trial, load_task(trial.data, "cpu"), None).result.val_loss


# --- what a trial run records ---------------------------------------------------------------------------


def test_a_trial_run_records_what_trains_it_again(population: tuple[str, dict[str, Any]]) -> None:
    """Besides DESIGN.md's params: momentum, weight decay, the split (a confirmation run's own), the
    engine, the steps per epoch, the device and torch version."""
    _, runs = population
    confirm = sorted(name for name in runs if name.startswith("confirm-"))
    assert len(confirm) == 2 * len(FAMILIES)
    for name, run in runs.items():
        p = run.data.params
        assert (
            p["engine"] == "population" and p["device"] == "cpu" and p["torch_version"] == torch.__version__
        )
        assert float(p["momentum"]) == 0.9 and float(p["weight_decay"]) == 0.0
        assert int(p["steps_per_epoch"]) == 6  # 341 training rows, batches of 64
        if run.data.tags["lrbench.stage"] == "search":
            assert p["split_seed"] == "2", name  # the task's
    # Confirmation seed index i trains on split task.split_seed + 1 + i, seed training.seed + i.
    assert {(runs[n].data.params["seed"], runs[n].data.params["split_seed"]) for n in confirm} == {
        ("0", "3"),
        ("1", "4"),
    }


# --- replay ---------------------------------------------------------------------------------------------


def test_replay_of_a_reference_trial_gives_its_recorded_val_loss_exactly(
    reference: tuple[str, dict[str, Any]], lrbench: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, runs = reference
    run = runs["trial-0001 StepLR"]
    recorded = [v for _, v in _history(uri, run.info.run_id, "val/loss")]
    assert len(recorded) == 3
    assert _replayed_val_loss(uri, run.info.run_id) == recorded
    assert lrbench("replay", run.info.run_id, "--tracking-uri", uri) == 0
    out = capsys.readouterr().out
    assert "val/loss reproduced exactly (3 epochs)" in out
    for key in ("lr", "train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy"):
        assert f"  {key:<14} identical" in out, key


def test_replay_of_every_search_trial_is_exact_on_the_cpu(
    reference: tuple[str, dict[str, Any]],
    population: tuple[str, dict[str, Any]],
    lrbench: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both engines, every family (OneCycleLR with Adam too), every curve of a reference trial; a
    population trial's val/loss (its other curves may differ in the last bits: see bench.cli.replay)."""
    for engine, (uri, runs) in (("reference", reference), ("population", population)):
        for name, run in sorted(runs.items()):
            if not name.startswith("trial-"):
                continue
            assert lrbench("replay", run.info.run_id, "--tracking-uri", uri, "--json") == 0, (engine, name)
            answer = json.loads(capsys.readouterr().out)
            assert answer["val_loss_identical"] and answer["engine"] == engine, (engine, name)
            if engine == "reference":
                assert all(c["identical"] for c in answer["curves"]), (name, answer["curves"])


def test_replay_of_a_population_trial_and_a_confirmation_run_is_exact(
    population: tuple[str, dict[str, Any]],
) -> None:
    """A population trial with a schedule of its own (no cycled momentum), and a confirmation run, which
    trains on its own split: replayed val/loss equal to the recorded, value for value."""
    uri, runs = population
    for name in ("trial-0000 StepLR", "trial-0001 warmup_cosine", "confirm-0006 StepLR"):
        run_id = runs[name].info.run_id
        recorded = [v for _, v in _history(uri, run_id, "val/loss")]
        assert len(recorded) == 3
        assert _replayed_val_loss(uri, run_id) == recorded, name


def test_a_replay_that_differs_says_by_how_much_and_why(
    population: tuple[str, dict[str, Any]],
    lrbench: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record made elsewhere (here: a record that says CUDA, its second val/loss one ulp off): exit 1,
    each curve's difference, and one line with how much val/loss differs and what may explain it."""
    uri, runs = population
    run_id = runs["trial-0000 StepLR"].info.run_id
    real = read_trial(uri, run_id)
    curves = dict(real.record.curves)
    curves["val/loss"] = [(s, math.nextafter(v, 1.0) if s == 1 else v) for s, v in curves["val/loss"]]
    record = dataclasses.replace(
        real.record, curves=curves, params={**real.record.params, "device": "cuda:0"}
    )
    monkeypatch.setattr(
        replay_module, "read_trial", lambda uri, run_id: dataclasses.replace(real, record=record)
    )
    assert lrbench("replay", run_id, "--tracking-uri", uri) == 1
    captured = capsys.readouterr()
    assert "  val/loss       differs by up to" in captured.out and "at epoch 1" in captured.out
    assert "  lr             identical (18 steps)" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("lrbench: replay: val/loss differs from the record by up to "), last
    assert "recorded on cuda:0, replayed on cpu" in last


# --- snippet --------------------------------------------------------------------------------------------


@pytest.fixture
def step_lrs() -> Iterator[list[float]]:
    """The LR of every optimizer step taken meanwhile (torch's global optimizer hook)."""
    lrs: list[float] = []
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: lrs.append(optimizer.param_groups[0]["lr"])
    )
    yield lrs
    hook.remove()


def _run_snippet(code: str, steps_per_epoch: int, val_losses: list[float]) -> None:
    """The printed code run as written, in a plain loop: a model, ``steps_per_epoch`` batches an epoch, a
    loss, and the recorded validation losses for ``evaluate``."""
    model = torch.nn.Linear(2, 1)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    losses = iter(val_losses)
    scope: dict[str, Any] = {
        "model": model,
        "train_loader": [batch] * steps_per_epoch,
        "loss_fn": torch.nn.functional.mse_loss,
        "evaluate": lambda m: next(losses),
    }
    exec(compile(code, "<snippet>", "exec"), scope)


@pytest.mark.parametrize(
    ("engine", "name"),
    [
        ("population", "trial-0001 warmup_cosine"),  # per optimizer step
        ("reference", "trial-0000 OneCycleLR"),  # per step, momentum cycled
        ("population", "trial-0000 StepLR"),  # per epoch
        ("reference", "trial-0001 ReduceLROnPlateau"),  # per epoch, on the validation loss
        ("population", "confirm-0001 ReduceLROnPlateau"),
    ],
)
def test_a_runs_snippet_in_a_plain_loop_gives_its_recorded_lr_curve(
    engine: str,
    name: str,
    request: pytest.FixtureRequest,
    lrbench: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    step_lrs: list[float],
) -> None:
    uri, runs = request.getfixturevalue(engine)
    run = runs[name]
    # Where this test is the study fixture's first user, the study ran just now: its output and its
    # optimizer steps are not the snippet's.
    capsys.readouterr()
    step_lrs.clear()
    assert lrbench("snippet", run.info.run_id, "--tracking-uri", uri) == 0
    code = capsys.readouterr().out
    assert "optimizer = torch.optim.Adam(model.parameters(), lr=" in code
    val_losses = [v for _, v in _history(uri, run.info.run_id, "val/loss")]
    _run_snippet(code, int(run.data.params["steps_per_epoch"]), val_losses)
    recorded = _history(uri, run.info.run_id, "lr")
    assert len(step_lrs) == 3 * 6
    assert compact_curve(step_lrs) == recorded  # the very points recorded: every step's LR, exactly
    assert expand_curve(recorded) == pytest.approx(step_lrs, rel=1e-12, abs=0)


def test_a_familys_snippet_builds_it_with_its_defaults_for_the_run_given(
    lrbench: Callable[..., int], capsys: pytest.CaptureFixture[str], step_lrs: list[float]
) -> None:
    argv = ["snippet", "CosineAnnealingLR", "--epochs", "4", "--steps-per-epoch", "5", "--lr", "0.05"]
    assert lrbench(*argv, "--optimizer", "adamw") == 0
    code = capsys.readouterr().out
    assert "torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)" in code
    assert "CosineAnnealingLR(optimizer, T_max=4, eta_min=0.0)" in code  # derived: the run's epochs
    assert "\n    scheduler.step()  # once per epoch" in code
    expected = schedules.curve("CosineAnnealingLR", {}, lr=0.05, epochs=4, steps_per_epoch=5).lrs
    step_lrs.clear()  # the curve's own steps
    _run_snippet(code, 5, [])
    assert step_lrs == expected

    assert lrbench("snippet", "StepLR", "--set", "step_size=3") == 0  # lrbench schedule's defaults
    code = capsys.readouterr().out
    assert "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)" in code
    assert "StepLR(optimizer, step_size=3, gamma=0.1)" in code and "range(30)" in code


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["replay", "snippet"])
def test_a_run_that_is_not_there_or_no_trial_is_one_line_and_exit_2(
    command: str,
    reference: tuple[str, dict[str, Any]],
    lrbench: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    uri, runs = reference
    parent = next(iter(runs.values())).data.tags["mlflow.parentRunId"]
    missing = tmp_path / "nowhere" / "mlflow.db"
    for argv, says in (
        ([command, "0" * 32, "--tracking-uri", uri], "no run '00000000000000000000000000000000'"),
        ([command, parent, "--tracking-uri", uri], "is no trial run of an lrbench study"),
        ([command, "0" * 32, "--tracking-uri", f"sqlite:///{missing}"], "no tracking store at"),
        ([command, "abc", "--tracking-uri", "http://127.0.0.1:9"], "does not answer"),
    ):
        assert lrbench(*argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("lrbench: error: ") and says in captured.err, captured.err
    assert not missing.parent.exists()  # nothing made where the store was not


def test_family_options_are_refused_with_a_run_id(
    lrbench: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert lrbench("snippet", "0" * 32, "--lr", "0.1", "--tracking-uri", "sqlite:////nowhere/mlflow.db") == 2
    assert "--lr is for a family's snippet" in capsys.readouterr().err
