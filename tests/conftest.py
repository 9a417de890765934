from __future__ import annotations

import pytest

from bench.data import DataConfig, Task, load_task


@pytest.fixture(scope="session")
def breast_cancer() -> Task:
    return load_task(DataConfig(dataset="breast_cancer"))


@pytest.fixture(scope="session")
def tiny_task() -> Task:
    """A small task with several steps per epoch: fast enough to train once per registry family."""
    return load_task(DataConfig(dataset="synthetic", rows=160, features=6, classes=3))
