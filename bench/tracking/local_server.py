"""``mlflow server`` on this machine (127.0.0.1 only), over a tracking store: what ``lrbench ui`` serves,
and what the tests and ``make perf-server`` run studies against.

The server (MLflow's command, uvicorn and its workers) runs in a process group of its own, which is
stopped as a whole: a signal to MLflow's command alone would leave uvicorn serving.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class LocalServer:
    """One ``mlflow server`` process group. ``workers``: uvicorn's (MLflow's default where None);
    ``artifacts``: the folder it keeps artifacts in (MLflow's default where None)."""

    def __init__(
        self,
        store_uri: str,
        port: int | None = None,
        workers: int | None = None,
        artifacts: Path | None = None,
        quiet: bool = False,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow = (
            shutil.which("mlflow", path=str(Path(sys.executable).parent))
            or shutil.which("mlflow")
            or "mlflow"
        )
        self.argv = [mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port)]
        # The store goes by the environment, never the command line, where `ps` shows it (a password in it)
        # to every user of the machine: `mlflow server` reads it from there, and hands it to its workers and
        # job runners the same way.
        self.env = {"MLFLOW_BACKEND_STORE_URI": store_uri}
        if workers is not None:
            self.argv += ["--workers", str(workers)]
        if artifacts is not None:
            self.argv += ["--artifacts-destination", str(artifacts)]
        self.quiet = quiet
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = subprocess.DEVNULL if self.quiet else None
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(self.argv, stdout=out, stderr=out, start_new_session=True, env=env)

    def wait_until_answering(self, timeout: float | None = None) -> bool:
        """Wait until the server answers HTTP (MLflow's server takes 10 to 20 s to start here); False if it
        exits first (its own error, such as a port in use, is on stderr) or ``timeout`` passes."""
        assert self.process is not None
        deadline = time.monotonic() + timeout if timeout is not None else None
        while self.process.poll() is None and (deadline is None or time.monotonic() < deadline):
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).close()
                return True
            except urllib.error.HTTPError:  # an answer all the same
                return True
            except OSError:  # not listening yet
                time.sleep(0.25)
        return False

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        """Stop the whole group with ``sig`` (uvicorn shuts down on SIGTERM as on SIGINT), killing it if
        it has not stopped after ``grace`` seconds."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def running(
    home: Path, port: int | None = None, stop: int = signal.SIGTERM, settle: float = 0.0
) -> Iterator[str]:
    """A server with a SQLite store and its artifacts in ``home`` (MLflow's default uvicorn workers), for
    the tests and benchmarks: yields its URL once it answers and ``settle`` seconds more (its background
    job workers start for some seconds after it answers), and is stopped by the signal ``stop`` to its whole
    process group (killed if it has not stopped in 30 s)."""
    server = LocalServer(f"sqlite:///{home / 'mlflow.db'}", port, artifacts=home / "artifacts", quiet=True)
    server.start()
    try:
        if not server.wait_until_answering(timeout=120):
            raise RuntimeError("mlflow server did not start in 120 s")
        time.sleep(settle)
        yield server.url
    finally:
        server.stop(stop, grace=30)
