"""What bench._compat relies on in torch and MLflow: each test fails loudly when an upgrade changes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from bench import _compat
from bench.data import Task
from bench.model import ACTIVATIONS, ModelConfig, mean_loss
from bench.tracking.client import Tracker
from bench.train import TrainConfig
from bench.train.population import Population


def _autograd_step(pop: Population, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The population's training step by autograd: the members' losses and their gradients in the flat
    buffer's layout, from leaf copies of their parameters, the model's own activation module, F.dropout
    and the reference trainer's loss."""
    model = pop.model
    pairs = zip(model.weights, model.biases, strict=True)
    params = [t.detach().clone().requires_grad_() for pair in pairs for t in pair]
    h = x
    layers = list(zip(params[0::2], params[1::2], strict=True))
    for j, (w, b) in enumerate(layers):
        h = torch.mul(h, w.mT).sum(-1, keepdim=True) + b if w.shape[-1] == 1 else torch.baddbmm(b, h, w)
        if j < len(layers) - 1:
            h = model.activation(h)
            if model.dropout > 0:
                h = F.dropout(h, model.dropout)
    loss = mean_loss(h, y)
    loss.backward(torch.ones(len(loss)))
    return loss.detach(), torch.cat([p.grad.reshape(len(loss), -1) for p in params], 1)


def _check_gradients(task: Task, model: ModelConfig) -> None:
    pop = Population(task, [TrainConfig(model=model, seed=i) for i in range(3)])
    batch = 20  # neither a power of two nor a divisor of the rows: the mean's 1/B is rounded
    x = torch.stack([task.x_train[i * batch : (i + 1) * batch] for i in range(3)])
    y = torch.stack([task.y_train[i * batch : (i + 1) * batch] for i in range(3)])
    if pop.model.binary:
        y = y.to(torch.float32)
    torch.manual_seed(7)  # the same dropout masks for both
    loss = pop.model.gradients(x, y)
    torch.manual_seed(7)
    want_loss, want_grad = _autograd_step(pop, x, y)
    assert torch.equal(loss, want_loss)
    assert torch.equal(pop.model.grad, want_grad), float((pop.model.grad - want_grad).abs().max())
    assert want_grad.abs().sum() > 0


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("task_name", ["breast_cancer", "tiny_task"])  # one logit; three classes
def test_the_written_out_backward_pass_gives_autograds_gradients(
    request: pytest.FixtureRequest, task_name: str, act: str, dropout: float
) -> None:
    _check_gradients(
        request.getfixturevalue(task_name), ModelConfig(hidden=(12, 8), activation=act, dropout=dropout)
    )


@pytest.mark.parametrize("task_name", ["breast_cancer", "tiny_task"])
def test_the_written_out_backward_pass_of_a_model_without_hidden_layers(
    request: pytest.FixtureRequest, task_name: str
) -> None:
    _check_gradients(request.getfixturevalue(task_name), ModelConfig(hidden=()))


def test_every_activation_has_its_derivative() -> None:
    assert set(_compat.ACTIVATION_BACKWARD) == set(ACTIVATIONS)


def test_a_local_store_is_written_in_wal_mode_and_closed_into_one_file(tmp_path: Path) -> None:
    """The tracking database takes commits in WAL mode without waiting for the disk; other SQLite databases
    in the process keep their settings; close() leaves one self-contained file, and the store reopens."""
    import sqlite3

    import sqlalchemy

    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "wal")
    tracker.open_parent("wal", None, {"n_trials": 1}, "uid")
    assert _compat._OPEN
    for entry in _compat._OPEN:
        assert entry.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert Path(f"{db}-wal").exists()
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    other.dispose()

    tracker.close()
    assert not Path(f"{db}-wal").exists() and not _compat._OPEN
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as frozen:  # the file alone, no log read
        assert frozen.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert tracker.start_trial("wal", 0, "StepLR")  # the pool reconnects
    tracker.close()
    assert tracker.client.get_run(tracker.parent_id).data.params == {"n_trials": "1"}
    tracker.close()


def _schema(db: Path) -> list[tuple[str, str, list[str]]]:
    """Every table's and index's definition, its lines in order (MLflow's migrations write a table's
    constraints in an order that changes from process to process)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [
        (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, sql in rows
    ]


def test_a_new_local_store_is_a_copy_of_a_template_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first new store on a machine makes the template (MLflow's own tables, without its Default
    experiment); later ones are copies of it, and are the store MLflow makes: the same tables, indexes and
    experiments, and MLflow writes runs to them."""
    import mlflow

    monkeypatch.setenv("LRBENCH_CACHE", str(tmp_path / "cache"))
    first = Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", "study")
    first.close()
    template = tmp_path / "cache" / f"mlflow-{mlflow.__version__}-empty.db"
    assert template.is_file()
    copies: list[Path] = []
    real = _compat.copy_empty_store
    monkeypatch.setattr(_compat, "copy_empty_store", lambda db, cache: copies.append(db) or real(db, cache))
    copied = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}", "study")
    copied.open_parent("study", None, {}, "uid")
    run_id = copied.start_trial("study", 0, "StepLR")
    copied.close()
    assert copies == [tmp_path / "b" / "mlflow.db"]
    monkeypatch.setenv("LRBENCH_CACHE", "off")
    made = Tracker(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}", "study")  # by MLflow, as without a cache
    made.close()
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "c" / "mlflow.db")
    from mlflow import MlflowClient

    def experiments(folder: str) -> list[tuple[str, str]]:
        client = MlflowClient(f"sqlite:///{tmp_path / folder / 'mlflow.db'}")
        return sorted((e.experiment_id, e.name) for e in client.search_experiments())

    assert experiments("b") == experiments("c") == [("0", "Default"), ("1", "study")]
    assert MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}").get_run(run_id).info.run_name
    assert not list((tmp_path / "b").glob(".mlflow.db.*"))  # the copy was renamed into place
