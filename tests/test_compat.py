"""What bench._compat relies on in MLflow and SQLAlchemy: a test fails loudly when an upgrade changes it."""

from __future__ import annotations

from pathlib import Path

from bench import _compat
from bench.tracking.client import Tracker


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
