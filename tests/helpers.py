"""What the tests share besides fixtures: running lrbench, writing a study, reading the stores back, and
waiting for something with a deadline (the one place the tests poll)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bench import config
from bench.config import Locations
from bench.search import load_trials
from bench.stored import StoredTrial

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "studies" / "smoke.yaml"
LRBENCH = [sys.executable, "-m", "bench"]
T = TypeVar("T")


def lrbench(*argv: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``lrbench ARGV`` in a process of its own, to its end."""
    return subprocess.run([*LRBENCH, *map(str, argv)], capture_output=True, text=True, cwd=ROOT, **kwargs)


def study_text(**changes: Any) -> str:
    """The smoke study's YAML with changes: ``training__epochs=3`` sets training.epochs, ``name="x"`` the
    name."""
    raw = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            raw.setdefault(section, {})[sub] = value
        else:
            raw[section] = value
    return yaml.safe_dump(raw, sort_keys=False)


def write_study(tmp_path: Path, **changes: Any) -> Path:
    """The smoke study with changes (see study_text), written to ``tmp_path/study.yaml``."""
    path = tmp_path / "study.yaml"
    path.write_text(study_text(**changes))
    return path


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll ``check`` until it gives something (not None, not False), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got is not None and got is not False:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"not seen in {timeout:.0f} s: {what}")
        time.sleep(every)


def records(
    study: Path, out: Path, storage: str | None = None, tracking: str | None = None
) -> list[StoredTrial]:
    cfg = config.load(study)
    return load_trials(cfg, Locations.resolve(cfg, str(out), storage, tracking)).trials


def mlflow_runs(out: Path, experiment: str = "smoke") -> list[Any]:
    """Every run of the study's experiment in the embedded store under ``out``."""
    from mlflow import MlflowClient

    if not (out / "mlflow.db").exists():
        return []
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def rest(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request to a tracking server's REST API."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.load(resp))


def two_workers(argv: list[str]) -> None:
    """Two processes of ``argv`` at once, both ending well."""
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=pipe, stderr=pipe, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
