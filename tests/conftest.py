from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.data import DataConfig, Task, load_task
from bench.tracking.local_server import running

from helpers import SMOKE, write_study


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's own prepared-split cache, never the user's (the processes tests start inherit it)."""
    folder = tmp_path_factory.mktemp("lrbench-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("LRBENCH_CACHE", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def breast_cancer() -> Task:
    return load_task(DataConfig(dataset="breast_cancer"))


@pytest.fixture(scope="session")
def diabetes() -> Task:
    """The regression task: scikit-learn's diabetes data (442 rows, 10 features), scored by RMSE."""
    return load_task(DataConfig(dataset="diabetes"))


@pytest.fixture(scope="session")
def tiny_task() -> Task:
    """A small task with several steps per epoch: fast enough to train once per registry family."""
    return load_task(DataConfig(dataset="synthetic", rows=160, features=6, classes=3))


# --- a PostgreSQL server of the suite's own -----------------------------------------------------------------


def _postgres_programs() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH), or None."""
    import glob
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(Path(f).parent.name))
    return Path(folders[-1]) if folders and (Path(folders[-1]) / "initdb").exists() else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (a free port), stopped and deleted after the session:
    yields its URL without a database name (see ``postgres_database``). As root, the server runs as the
    ``postgres`` user (PostgreSQL refuses root). Skipped, saying why, where PostgreSQL is not installed
    (``.ci/run`` installs it)."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    programs = _postgres_programs()
    if programs is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed here")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="lrbench-postgres-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except LookupError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    run = dict(check=True, capture_output=True, text=True)
    initdb = [*as_user, programs / "initdb", "-D", data, "-U", "lrbench", "--auth=trust", "--no-sync"]
    subprocess.run(initdb, **run)
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F"  # loopback only; no fsync: a throwaway server
    pg_ctl = [*as_user, programs / "pg_ctl", "-D", data, "-l", folder / "log", "-w"]
    subprocess.run([*pg_ctl, "-o", options, "start"], **run)
    try:
        yield f"postgresql://lrbench@127.0.0.1:{port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres: str) -> str:
    """A new, empty database on the suite's PostgreSQL server: its URL."""
    import uuid

    import psycopg

    name = f"t{uuid.uuid4().hex}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres}/{name}"


# --- a real MLflow tracking server, and a smoke study --------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 for the session (its URL)."""
    with running(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke study run to its end, once per test module: its output folder."""
    from bench.cli.parser import run

    out_dir = tmp_path_factory.mktemp("smoke")
    assert run(["study", str(SMOKE), "--output", str(out_dir)]) == 0
    return out_dir


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A study in seconds with both stages: two families (StepLR; CyclicLR, whose arguments are partly
    derived and include one named ``base_lr``), each an Optuna study of its own with two trials of two
    epochs, then each family's best on two seeds. Run to its end once per session: its study file and
    output folder, for tests that only read them."""
    from bench.cli.parser import run

    folder = tmp_path_factory.mktemp("tiny")
    study = write_study(
        folder,
        name="tiny",
        training__epochs=2,
        schedulers={"StepLR": {}, "CyclicLR": {}},
        optuna={"sampler": "random", "pruner": "none", "n_trials": 2, "seed": 0},
        search={"budget": "per_family"},
        confirm={"top_k": 1, "seeds": 2, "resplit": True},
    )
    out = folder / "out"
    assert run(["study", str(study), "--output", str(out)]) == 0
    return study, out
