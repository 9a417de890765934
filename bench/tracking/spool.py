"""The spool: a finished trial's MLflow writes, kept in a file until MLflow has them.

A study writes each finished trial's record here before its writer process sends it, and the writer
removes the file once MLflow has it: a study killed before its writer caught up loses nothing, and the
next run of the study sends what it finds (``results/spool/<study>/``).

One file per trial, ``<run id>.json``: one JSON object, version 1::

    {"version": 1, "run_id": "...", "state": "COMPLETE", "params": {"scheduler": "StepLR", ...},
     "points": [["lr", 0.001, 0], ["val/loss", 0.31, 0], ...], "failure": null, "timestamp": 1764750000000}

``points`` are (metric key, value, step); ``timestamp`` (ms) is the one every point is logged with, fixed
when the record is made: replaying a record MLflow already had adds nothing (MLflow drops exact
duplicates). A value that is not finite is written as JSON's ``NaN`` / ``Infinity`` (Python's reading).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bench.cache import write_whole
from bench.errors import UserError
from bench.faults import durable_write
from bench.tracking.curves import Point

VERSION = 1


@dataclass(frozen=True)
class TrialRecord:
    """Everything MLflow gets of a finished trial: its params, curves, state and failure."""

    run_id: str
    state: str  # COMPLETE, PRUNED, FAIL
    params: Mapping[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    failure: str | None = None
    timestamp: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "run_id": self.run_id,
                "state": self.state,
                "params": dict(self.params),
                "points": [list(p) for p in self.points],
                "failure": self.failure,
                "timestamp": self.timestamp,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TrialRecord:
        raw = json.loads(text)
        if raw.get("version") != VERSION:
            raise ValueError(f"spool record version {raw.get('version')!r}; this lrbench reads {VERSION}")
        return cls(
            run_id=str(raw["run_id"]),
            state=str(raw["state"]),
            params=dict(raw["params"]),
            points=[(str(k), float(v), int(s)) for k, v, s in raw["points"]],
            failure=raw["failure"],
            timestamp=int(raw["timestamp"]),
        )


class Spool:
    """A study's spool folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.json"

    def keep(self, record: TrialRecord) -> Path:
        """Write the record whole (a reader never sees half a file); its file."""
        path = self.path(record.run_id)
        text = record.to_json().encode()

        def write(f: BinaryIO) -> None:
            f.write(text)

        write_whole(path, write)
        durable_write()
        return path

    def kept(self) -> list[Path]:
        """The records kept: not yet in MLflow (or not known to be)."""
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def read_all(self) -> list[tuple[Path, TrialRecord]]:
        """Every record kept, read; a file that is no record this lrbench reads is a :class:`UserError`
        (it is left where it is: nothing of it is lost)."""
        legacy = sorted(self.folder.glob("*.pkl")) if self.folder.is_dir() else []
        if legacy:
            raise UserError(
                f"{len(legacy)} trial(s) in {self.folder} were kept by an earlier lrbench (pickled records, "
                f"such as {legacy[0].name}): send them with that version's `lrbench study`, or remove them "
                "to go on without them"
            )
        out = []
        for path in self.kept():
            try:
                out.append((path, self.read(path)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UserError(
                    f"{path} is no spool record this lrbench reads ({exc}); move it away to go on without it"
                ) from None
        return out

    @staticmethod
    def read(path: Path) -> TrialRecord:
        return TrialRecord.from_json(path.read_text())
