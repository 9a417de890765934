"""A model and data of the user's own, end to end: the worked example (examples/digits_cnn) as a study on the
population engine, and a module torch.func cannot batch, which falls back to the reference engine with one
line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT, lrbench, mlflow_runs

EXAMPLE = ROOT / "examples" / "digits_cnn"


def _example(tmp_path: Path, **model: Any) -> Path:
    """The example study, cut down to a few trials of two families (its code copied beside it)."""
    shutil.copy(EXAMPLE / "cnn.py", tmp_path / "cnn.py")
    raw = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    raw["model"].update(model)
    raw["training"].update(epochs=3)
    raw.update(schedulers=["constant", "OneCycleLR"], optuna={"n_trials": 3})
    raw.update(confirm={"top_k": 1, "seeds": 2})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _engines(out: Path) -> set[str]:
    runs = [r for r in mlflow_runs(out, "digits_cnn") if r.data.tags.get("lrbench.stage")]
    assert runs
    assert all(r.info.status == "FINISHED" for r in runs)
    return {r.data.params["engine"] for r in runs}


def test_the_example_study_runs_on_the_population_engine(tmp_path: Path) -> None:
    study = _example(tmp_path)
    done = lrbench("study", study, "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "engine: reference" not in done.stderr
    assert "Best:" in done.stdout
    out = tmp_path / "out" / "digits_cnn"
    assert (out / "leaderboard.csv").is_file() and (out / "report.html").is_file()
    assert _engines(tmp_path / "out") == {"population"}
    # The report's "reproduce it": lrbench train has no option for the user's functions; replay has them.
    page = (out / "report.html").read_text()
    assert "lrbench replay " in page and "--dataset" not in page
    assert "task load_digits (1077 training rows) · cnn:build · adam" in page


def test_a_module_with_batch_norm_falls_back_to_the_reference_engine_in_one_line(tmp_path: Path) -> None:
    study = _example(tmp_path, python="cnn:build_with_batch_norm", args={"channels": 4})
    done = lrbench("study", study, "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if "engine: reference" in line]
    assert said == [
        "model cnn:build_with_batch_norm: BatchNorm2d '1' updates its running statistics in training mode, "
        "which torch.func.vmap cannot batch; training one trial at a time (engine: reference)"
    ]
    assert _engines(tmp_path / "out") == {"reference"}
    # A run of the user's module replays exactly (the reference engine) given the study, whose folder holds
    # the module; without it, one line says so.
    run = next(
        r.info.run_id
        for r in mlflow_runs(tmp_path / "out", "digits_cnn")
        if r.data.tags.get("lrbench.stage") == "search" and r.data.tags.get("state") == "COMPLETE"
    )
    replayed = lrbench("replay", run, "--study", study, "--output", tmp_path / "out")
    assert replayed.returncode == 0, replayed.stderr
    assert "val/loss reproduced exactly" in replayed.stdout
    lost = lrbench("replay", run, "--tracking-uri", f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1
    assert "cannot import 'cnn'" in lost.stderr and "give --study STUDY.yaml" in lost.stderr


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_a_task_function_gives_its_rows_as_they_are(tmp_path: Path, kind: str) -> None:
    """The task's rows are the function's (not scaled by lrbench), on the built-in MLP; a regression's RMSE
    is in the function's units."""
    from bench import usercode
    from bench.data import DataConfig, load_task

    (tmp_path / "rows_fn.py").write_text(
        "import torch\n"
        "def load(split_seed=0, n=30):\n"
        "    g = torch.Generator().manual_seed(split_seed)\n"
        "    x = torch.randn(n, 3, generator=g) * 5 + 2\n"
        f"    y = x[:, 0] if {kind == 'regression'} else (x[:, 0] > 2).long()\n"
        "    return [(x[:20], y[:20]), (x[20:25], y[20:25]), (x[25:], y[25:])]\n"
    )
    usercode.add_folder(tmp_path)
    task = load_task(DataConfig(python="rows_fn:load", kind=kind, split_seed=4))
    assert task.input_shape == (3,) and len(task.y_train) == 20
    assert float(task.x_train.mean()) == pytest.approx(2, abs=1.5)  # not standardised
    if kind == "regression":
        assert task.target_std == 1.0 and task.y_train.dtype.is_floating_point
    else:
        assert task.classes == ["0", "1"]


def test_a_definition_stored_before_model_and_task_functions_resumes() -> None:
    """A study stored before ``python`` and ``args`` existed has no such keys in its definition: a study of
    the built-in kind leaves them out of what must match, one of the user's functions has them."""
    import dataclasses

    from bench import config
    from bench.model import ModelConfig

    from helpers import SMOKE

    cfg = config.load(SMOKE)
    plain = cfg.comparable()
    assert not {"python", "args"} & (set(plain["task"]) | set(plain["model"]))
    mine = dataclasses.replace(cfg, model=ModelConfig(python="m:build", args={"width": 8}))
    assert mine.comparable()["model"]["python"] == "m:build" and mine.comparable()["model"]["args"] == {
        "width": 8
    }
