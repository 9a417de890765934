"""lrbench's cache folder on this machine: prepared data splits (:mod:`bench.data`).

``LRBENCH_CACHE`` names the folder (default ``$XDG_CACHE_HOME/lrbench`` or ``~/.cache/lrbench``);
``LRBENCH_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def cache_dir() -> Path | None:
    """The cache folder (None: off)."""
    setting = os.environ.get("LRBENCH_CACHE", "")
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrbench"
    except RuntimeError:  # no home folder to be found: no cache
        return None


def write_whole(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` into a temporary file beside ``path``, then renamed into place: processes that read the
    same file at once never see half of it. Raises OSError where the folder cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
