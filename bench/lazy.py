"""A module imported when one of its attributes is first read.

torch takes 2 to 2.5 s to import here. The command line's help, ``lrbench schedules``, reading a study's
definition (the schedule registry, the optimizers' names) and the commands that only read a stored study
(``lrbench export``, ``lrbench ui``) never need it, so the modules they import read torch through one of
these."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # later reads find it here without importlib
        return value
