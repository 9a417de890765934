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
import os
import sys
from collections.abc import Sequence

from bench.cli import startup


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rc = _main(args, command=argv is None)
    if argv is None:
        _exit_now(rc)
    return rc


def _main(args: list[str], command: bool = False) -> int:
    from bench.cli.parser import run

    if args[:1] not in (["study"], ["suite"]) or {"-h", "--help"} & set(args):
        return run(args)
    from bench.tracking import writer

    if command:
        startup.pause()  # until the study calls startup.end
    writer.prestart()
    try:
        return run(args)
    finally:
        writer.discard_prestarted()  # a study that stopped before it took the writer up
        startup.resume()  # it stopped before its trials


def _exit_now(rc: int) -> None:
    """End the process with ``rc`` once what it printed is out."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`lrbench ... | head`) or stream
            stream.flush()
    os._exit(rc)
