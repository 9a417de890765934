"""``lrbench ui``: a tracking server's address, the MLflow UI started over a study's store and stopped with
everything it started."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.cli.parser import run as main
from bench.tracking import local_server
from bench.tracking.client import Tracker, experiment_id
from bench.tracking.local_server import LocalServer, free_port, port_in_use

from helpers import SMOKE, eventually


@pytest.mark.slow
def test_ui_on_a_tracking_server_gives_its_address_and_starts_nothing(
    mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lrbench study ... --tracking-uri http://...` ends with `lrbench ui --study ... --tracking-uri ...`:
    the server serves the UI itself, so ui prints the address of the study's runs there. A server that is
    down is one line."""

    exp = Tracker(mlflow_server, "smoke").experiment_id  # the smoke study's experiment, made if need be
    assert main(["ui", "--study", str(SMOKE), "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    first, *views = out.strip().splitlines()
    assert first.endswith(f"{mlflow_server}/#/experiments/{exp}?workflowType=machine_learning"), out
    # Then the ranking (a run per family) and the search's trials, each a page of its own, flat and sorted.
    names = [v.split(":")[0].strip() for v in views]
    assert names == ["the ranking, a run per family", "the search's trials"]
    runs = f"{mlflow_server}/#/experiments/{exp}/runs?workflowType=machine_learning&searchFilter="
    assert all(runs in view for view in views), views
    assert main(["ui", "--tracking-uri", mlflow_server]) == 0  # no study: the list of experiments
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{mlflow_server}/#/experiments?workflowType=machine_learning"), out
    assert main(["ui", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "does not answer" in capsys.readouterr().err


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[LocalServer]:
    """`lrbench ui`'s MLflow server answering at once, without starting anything: the servers it made."""
    made: list[LocalServer] = []
    monkeypatch.setattr(LocalServer, "start", lambda self: made.append(self))
    monkeypatch.setattr(LocalServer, "wait_until_answering", lambda self, timeout=None: True)
    monkeypatch.setattr(LocalServer, "wait", lambda self: 0)
    monkeypatch.setattr(local_server, "port_in_use", lambda port: False)
    return made


def test_ui_with_no_arguments_opens_the_default_study_from_the_current_folder(
    tiny_study: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_server: list[LocalServer],
) -> None:
    """`lrbench ui` alone is `make study`'s study: studies/breast_cancer.yaml in the current folder, its
    store under results/ there, opened on its runs. Without that file: one line, exit 2."""
    here = tmp_path.resolve()
    monkeypatch.chdir(here)
    assert main(["ui"]) == 2
    assert capsys.readouterr().err == (
        "lrbench: error: no --study given, and the default study studies/breast_cancer.yaml is not in "
        f"{here}: give --study STUDY.yaml or --tracking-uri URI\n"
    )
    study, out = tiny_study
    (here / "studies").mkdir()
    shutil.copy(study, here / "studies" / "breast_cancer.yaml")
    (here / "results").mkdir()
    shutil.copy(out / "mlflow.db", here / "results" / "mlflow.db")
    store = f"sqlite:///{here / 'results' / 'mlflow.db'}"
    exp = experiment_id(store, "tiny")
    assert exp is not None
    assert main(["ui"]) == 0
    assert [(s.env, s.port) for s in no_server] == [({"MLFLOW_BACKEND_STORE_URI": store}, 5000)]
    printed = capsys.readouterr().out
    assert f"MLflow UI on http://127.0.0.1:5000/#/experiments/{exp}?workflowType=machine_learning " in printed


def test_ui_without_a_study_opens_the_list_of_experiments_for_training_runs(
    tiny_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str], no_server: list[LocalServer]
) -> None:
    _, out = tiny_study
    assert main(["ui", "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--port", "5123"]) == 0
    assert len(no_server) == 1
    printed = capsys.readouterr().out
    assert "MLflow UI on http://127.0.0.1:5123/#/experiments?workflowType=machine_learning " in printed


@pytest.mark.slow
def test_ui_prints_the_address_of_the_study_runs_once_the_server_answers(
    smoke_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address is printed when the server answers on it, not while it starts (10 s and more here). A
    one-request HTTP server stands in for MLflow's."""
    import subprocess as sp

    port = free_port()
    one_request = (
        "import http.server as h, sys; "
        "h.HTTPServer(('127.0.0.1', int(sys.argv[1])), h.BaseHTTPRequestHandler).handle_request()"
    )
    started: list[list[str]] = []
    envs: list[dict[str, str]] = []
    real_popen = sp.Popen

    def popen(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[1:2] != ["server"]:  # not the UI's (MLflow runs git, say)
            return real_popen(cmd, **kwargs)
        started.append(cmd)
        envs.append(kwargs["env"])
        time.sleep(1)  # still starting: the command waits for it
        return real_popen([sys.executable, "-c", one_request, str(port)], **kwargs)

    monkeypatch.setattr(sp, "Popen", popen)
    args = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(port)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/#/experiments/1?workflowType=machine_learning" in out
    cmd = started[0]
    # The store by the environment (a password in it would show in `ps`), not the command line.
    assert cmd[1] == "server" and "--backend-store-uri" not in cmd
    assert envs[0]["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{smoke_run / 'mlflow.db'}"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"


@pytest.mark.slow
def test_ui_says_when_the_server_stops_before_answering_or_the_port_is_taken(
    smoke_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess as sp

    real_popen = sp.Popen

    def popen(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[1:2] != ["server"]:
            return real_popen(cmd, **kwargs)
        return real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kwargs)  # as MLflow's failing

    monkeypatch.setattr(sp, "Popen", popen)
    args = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(free_port())]
    assert main(args) == 3  # the server's own status; its error is its own stderr
    assert "http://" not in capsys.readouterr().out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args[-1] = str(taken.getsockname()[1])
        assert main(args) == 2
    assert f"port {args[-1]} is in use on 127.0.0.1; choose another with --port" in capsys.readouterr().err


@pytest.mark.slow
def test_ui_serves_the_study_and_stops_with_everything_it_started(smoke_run: Path) -> None:
    """The real MLflow server: the address answers once printed, and a SIGTERM to lrbench alone (not to
    its process group, as a terminal's Ctrl-C would) stops the server and its uvicorn workers too."""
    port = free_port()
    command = ["ui", "--study", str(SMOKE), "--output", str(smoke_run), "--port", str(port)]
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert ui.stdout is not None
        lines = iter(ui.stdout.readline, "")  # the server's own stdout comes through too
        line = next((line for line in lines if line.startswith("MLflow UI on")), "")
        assert line.startswith(f"MLflow UI on http://127.0.0.1:{port}/#/experiments/1"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
        ui.terminate()
        assert ui.wait(timeout=30) == 0
        eventually(lambda: not port_in_use(port), 10, f"nothing listening on port {port}")
    finally:
        if ui.poll() is None:  # a failed check: stopped the same way, so that no server outlives the test
            ui.terminate()
            ui.wait(timeout=30)
