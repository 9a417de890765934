"""The embedded journal file (Optuna's JournalFileBackend format: one JSON record a line), checked for
damage without Optuna, so that a command can refuse a damaged journal before it creates anything."""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import UserError


def whole_records(data: bytes) -> int:
    """The length of ``data``'s whole records: up to its last newline (Optuna ends each record with one)."""
    return data.rfind(b"\n") + 1


def check_records(path: Path, data: bytes | None = None) -> None:
    """Every whole record of the journal is JSON; else a UserError names the line. A last record cut short
    is not checked here: it is repaired where the journal is opened to write (bench.search.storage)."""
    if data is None:
        if not path.is_file():
            return
        data = path.read_bytes()
    for number, line in enumerate(data[: whole_records(data)].splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError as exc:
            raise UserError(
                f"{path}, line {number}: no journal record ({exc}); the file is left as it is: restore it "
                "from a copy, or move it away to start the study anew"
            ) from None
