"""The embedded tracking store (SQLite beside a study's results): made fast to write, and opened by one
worker at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bench import _compat
from bench.uris import sqlite_path


def local_artifact_root(tracking_uri: str) -> str | None:
    """For a local SQLite store, artifacts go beside the database (not into the working directory)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        return (Path(db).parent / "mlartifacts").resolve().as_uri()
    return None  # a tracking server decides (it proxies artifacts by default)


@contextlib.contextmanager
def one_at_a_time(tracking_uri: str) -> Iterator[None]:
    """Workers on this machine open a local SQLite store one at a time (a lock on its folder, nothing left
    behind): two that start together on a new store would both create MLflow's tables, and one fails. A
    tracking server creates its tables once."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    folder = Path(db).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def prepare(tracking_uri: str) -> None:
    """Before MLflow opens a local SQLite store: its connections are tuned (:mod:`bench._compat`). Other
    stores are left as they are."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        _compat.tune_sqlite(db)


def release() -> None:
    """Close this process's connections to the tuned stores, folding their write-ahead logs back in."""
    _compat.release_sqlite()
