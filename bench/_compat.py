"""Every reach into a library's private names or behaviour, in one place.

Each piece says what it relies on and what it earns: lrbench keeps one only where it saves at least 10 %
of the default study's end-to-end time (``make study`` on a fresh output folder), measured side by side
(alternating runs of the code with and without it, medians, this project's 2-core CPU machine). Each has
a test in ``tests/test_compat.py`` that fails loudly when an upgrade changes what it relies on; where one
stops working, the public way is the fallback named here.

Measured and dropped (under 10 %, so the public API is used): building torch optimizers without
importing ``torch._dynamo`` (a patched ``__dynamo_disable`` attribute; 7 % of the default study), and
importing MLflow's SQLAlchemy store module ahead of the first request in the writer process (6 %).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")

# --- torch: the derivative kernels of the population's written-out backward pass --------------------------
#
# Relies on ATen's backward operators (``torch.ops.aten.threshold_backward``, ``gelu_backward``,
# ``tanh_backward``, ``silu_backward``, ``nll_loss_forward`` / ``nll_loss_backward`` and
# ``_log_softmax_backward_data``): the very kernels autograd runs for these layers, so that the gradients are
# autograd's bit for bit (the test compares them). Earns: autograd's graph and engine cost more than the
# arithmetic of a small population; the default study took a median 5.96 s with the written-out pass against
# 6.62 s with autograd (6 alternating pairs; ratio 0.89). Public fallback: ``loss.sum().backward()`` over
# the stacked parameters (bench.train.population.stack), at that cost.

Backward = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]

# Each activation's derivative from the gradient at its output g, its input z and its output a.
ACTIVATION_BACKWARD: dict[str, Backward] = {
    "relu": lambda g, z, a: torch.ops.aten.threshold_backward(g, a, 0),
    "gelu": lambda g, z, a: torch.ops.aten.gelu_backward(g, z),
    "tanh": lambda g, z, a: torch.ops.aten.tanh_backward(g, a),
    "silu": lambda g, z, a: torch.ops.aten.silu_backward(g, z),
}


def cross_entropy_backward(
    logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each row of ``logits`` (N, C) with its label, and the gradient of the sum of the
    rows' losses times ``weight`` (N,) with respect to the logits: what ``F.cross_entropy(...,
    reduction="none")`` and its backward compute."""
    log_p = torch.log_softmax(logits, 1)
    row_loss, total_weight = torch.ops.aten.nll_loss_forward(log_p, y, None, 0, -100)
    g = torch.ops.aten.nll_loss_backward(weight, log_p, y, None, 0, -100, total_weight)
    return row_loss, torch.ops.aten._log_softmax_backward_data(g, log_p, 1, log_p.dtype)


# --- MLflow on SQLite: the tracking store's connections in WAL mode ----------------------------------------
#
# Relies on MLflow's database store opening its SQLite database through SQLAlchemy engines with the
# standard library's sqlite3 driver (mlflow.store.tracking.sqlalchemy_store), and committing a trial's
# params, metrics and tags separately. A listener on every SQLAlchemy engine's connections puts the
# tracking database (and no other) in WAL mode with ``synchronous=NORMAL``: a commit then appends to the
# write-ahead log without waiting for the disk. A killed process loses nothing committed; a machine crash
# can lose the last commits. Earns: the default study took a median 6.84 s against 8.16 s with SQLite's
# defaults (6 alternating pairs; ratio 0.86). Public fallback: SQLite's defaults (nothing to do).

_TUNED: set[str] = set()  # the SQLite tracking databases whose connections get _on_connect's settings
_OPEN: set[Any] = set()  # the pool entries of those connections, for release_sqlite


def tune_sqlite(db: str) -> None:
    """Connections to the SQLite database file ``db`` are opened in WAL mode, ``synchronous=NORMAL``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)
    _TUNED.add(os.path.realpath(db))


def _on_connect(dbapi_connection: Any, pool_entry: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    files = dbapi_connection.execute("PRAGMA database_list").fetchall()
    main_file = next((row[2] for row in files if row[1] == "main"), "")
    if main_file and os.path.realpath(main_file) in _TUNED:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        _OPEN.add(pool_entry)


def release_sqlite() -> None:
    """Close this process's connections to the tuned databases (none may be in use): the last one to close
    writes the write-ahead log into the database file and removes it, so that a finished study leaves one
    self-contained ``mlflow.db``. SQLAlchemy's pool reconnects if the store is used again."""
    while _OPEN:
        _OPEN.pop().close()  # sqlalchemy's ConnectionPoolEntry.close: the DBAPI connection only


# --- MLflow on SQLite: a new store copied from an empty one ------------------------------------------------
#
# Relies on MLflow's SqlAlchemyStore (mlflow.store.tracking.sqlalchemy_store) creating a store's tables
# when it opens a new database, and on its schema: the template is such a store with its Default
# experiment (row 0 of ``experiments``) deleted, which MLflow adds again, with the copy's own artifact
# folder, when it opens the copy. MLflow otherwise creates a store's tables by running its schema
# migrations one by one (1.1 s here on every new store, before the study's first run can be created).
# Earns: the default study on a new output folder took a median 7.27 s against 8.33 s with MLflow making
# the tables (6 alternating pairs; ratio 0.87). Public fallback: let MLflow create the tables.


def copy_empty_store(db: Path, cache: Path) -> None:
    """Make the new SQLite store ``db`` a copy of the empty store this MLflow version made once in
    ``cache`` (made now if missing). Where a file cannot be written, nothing is done: MLflow creates the
    tables itself."""
    import mlflow

    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.is_file():
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                made = Path(tmp) / "empty.db"
                store = SqlAlchemyStore(f"sqlite:///{made}", str(Path(tmp) / "artifacts"))
                store.engine.dispose()
                with contextlib.closing(sqlite3.connect(made)) as con, con:
                    con.execute("DELETE FROM experiments WHERE experiment_id = 0")
                os.replace(made, template)  # whole or not at all, for other processes
        copy = db.with_name(f".{db.name}.{os.getpid()}.tmp")  # made as MLflow would make the file
        try:
            shutil.copyfile(template, copy)
            os.replace(copy, db)
        finally:
            copy.unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return
