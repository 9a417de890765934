"""The ``lrbench`` command's entry point: light on purpose.

It imports nothing heavy before it has started, for ``lrbench study``, the study's MLflow writer process:
that process's own start-up (importing mlflow) then runs beside this one's (importing torch) rather than
after it. The writer is spawned, and a spawned process re-runs the command's script: that costs nothing
when the script imports only this module.

Run as the command (no ``argv`` given), a command that returns ends the process at once, without the
interpreter's teardown: by then everything it wrote is closed (the MLflow writer flushed and stopped,
every storage write done), and tearing down the thousands of modules torch loads costs about a second
here. Called from Python with ``argv``, :func:`main` returns like any function.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rc = _main(args, command=argv is None)
    if argv is None:
        _exit_now(rc)
    return rc


_STARTING = False  # the garbage collector is paused while the `lrbench study` command starts


def _main(args: list[str], command: bool = False) -> int:
    global _STARTING
    if args[:1] == ["study"] and not {"-h", "--help"} & set(args):
        from bench import tracking

        if command and gc.isenabled():
            gc.disable()  # until end_startup
            _STARTING = True
        tracking.prestart_writer()
        try:
            return _cli(args)
        finally:
            tracking.discard_prestarted_writer()  # a study that stopped before it took the writer up
            if _STARTING:  # it stopped before its trials
                gc.enable()
                _STARTING = False
    return _cli(args)


def end_startup() -> None:
    """Called by a study once it has loaded what it works with, before its trials: the garbage collector
    resumes, with what start-up loaded frozen out of its reach. Importing torch, optuna, pandas and
    scikit-learn creates some 270,000 objects that live as long as the process, and the collector's full
    passes over them while they were imported cost 0.3 to 0.5 s here, for nothing. The few cycles that
    start-up left unreachable (under a thousand objects here) are frozen with them, never freed: less than
    the 0.2 s a collection to find them would cost. A no-op where the collector was not paused (anything
    but the command, such as a study run from Python)."""
    global _STARTING
    if _STARTING:
        gc.freeze()
        gc.enable()
        _STARTING = False


def _cli(args: list[str]) -> int:
    from bench.cli import main as cli_main

    return cli_main(args)


def _exit_now(rc: int) -> None:
    """End the process with ``rc`` once what it printed is out."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`lrbench ... | head`) or stream
            stream.flush()
    os._exit(rc)
