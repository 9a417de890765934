"""``lrbench ui``: a tracking server's address, the MLflow UI started over a study's store and stopped with
everything it started."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.cli.parser import run as main
from bench.tracking.client import Tracker
from bench.tracking.local_server import free_port, port_in_use

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
    assert out.strip().endswith(f"{mlflow_server}/#/experiments/{exp}?workflowType=machine_learning"), out
    assert main(["ui", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "does not answer" in capsys.readouterr().err


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
