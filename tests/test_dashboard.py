"""optuna-dashboard (docs/mlflow.md) over lrbench's journal, through its WSGI app: every
study of a run is listed with all its trials, it reads while lrbench holds the journal's lock, and it writes
nothing there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna_dashboard

from bench.search.storage import DyingLock

from helpers import records

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _get(app: App, path: str) -> tuple[str, Any]:
    """One GET request to the app: its status line and its JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
    return status[0], json.loads(body)


def test_the_dashboard_lists_every_study_with_all_its_trials(tiny_study: tuple[Path, Path]) -> None:
    study, out = tiny_study
    journal = out / "optuna.journal"
    before = (journal.read_bytes(), sorted(out.iterdir()))
    lock = DyingLock(str(journal))  # lrbench's own, as a study writing to the journal holds it
    assert lock.acquire()
    try:
        app = optuna_dashboard.wsgi(str(journal))  # the file as its command line takes it
        status, listed = _get(app, "/api/studies")
        assert status == "200 OK"
        ids = {s["study_name"]: s["study_id"] for s in listed["study_summaries"]}
        details = {name: _get(app, f"/api/studies/{ids[name]}") for name in ids}
    finally:
        lock.release()
    assert {name: status for name, (status, _) in details.items()} == dict.fromkeys(ids, "200 OK")
    trials = {name: detail["trials"] for name, (_, detail) in details.items()}
    # The study's own holds its attributes; each family's, its two trials; the confirmation, two families
    # on two seeds.
    assert {name: len(t) for name, t in trials.items()} == {
        "tiny": 0,
        "tiny/StepLR": 2,
        "tiny/CyclicLR": 2,
        "tiny.confirm": 4,
    }
    stored = records(study, out)
    for family in ("StepLR", "CyclicLR"):
        shown = trials[f"tiny/{family}"]
        assert {t["state"] for t in shown} == {"Complete"}
        runs = {a["value"] for t in shown for a in t["user_attrs"] if a["key"] == "mlflow_run_id"}
        assert runs == {r.user_attrs["mlflow_run_id"] for r in stored if r.params["scheduler"] == family}
        args = {p["name"] for t in shown for p in t["params"]} - {"scheduler", "lr", "optimizer"}
        assert args and all(arg.startswith(f"{family}.") for arg in args), args
    assert (journal.read_bytes(), sorted(out.iterdir())) == before
