from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.data import DataConfig, Task, load_task


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
def tiny_task() -> Task:
    """A small task with several steps per epoch: fast enough to train once per registry family."""
    return load_task(DataConfig(dataset="synthetic", rows=160, features=6, classes=3))
