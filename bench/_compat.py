"""Every reach into a library's private names or behaviour, in one place.

Each piece says what it relies on and what it earns: lrbench keeps one only where it saves at least 10 %
of the default study's end-to-end time (``make study`` on a fresh output folder), measured side by side
(alternating runs of the code with and without it, medians, this project's 2-core CPU machine). Each has
a test in ``tests/test_compat.py`` that fails loudly when an upgrade changes what it relies on; where one
stops working, the public way is the fallback named here.

Measured and dropped (under 10 %, so the public API is used; docs/performance.md): the population's
backward pass written out with ATen's derivative kernels (``torch.ops.aten.*_backward``) instead of
autograd; new SQLite tracking stores copied from an empty one that MLflow's ``SqlAlchemyStore`` made
(instead of MLflow running its schema migrations on each); building torch optimizers without importing
``torch._dynamo`` (a patched ``__dynamo_disable`` attribute); importing MLflow's SQLAlchemy store module
ahead of the first request in the writer.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

# --- MLflow on SQLite: the tracking store's connections in WAL mode ----------------------------------------
#
# Relies on MLflow's database store opening its SQLite database through SQLAlchemy engines with the
# standard library's sqlite3 driver (mlflow.store.tracking.sqlalchemy_store), and committing a trial's
# params, metrics and tags separately. A listener on every SQLAlchemy engine's connections puts the
# tracking database (and no other) in WAL mode with ``synchronous=NORMAL``: a commit then appends to the
# write-ahead log without waiting for the disk. A killed process loses nothing committed; a machine crash
# can lose the last commits. Earns: the default study took a median 9.96 s against 11.36 s with SQLite's
# defaults (``python -m perf compare``, 10 alternating pairs at 609eb41; per-pair ratio 0.866). Public
# fallback: SQLite's defaults (nothing to do).

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
