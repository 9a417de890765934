"""Crash injection, for the tests alone: with ``LRBENCH_CRASH_AT=N:COUNTER`` set, the study dies as a power
cut would take it, right after its N-th durable write (each Optuna journal write, each spool file and
each MLflow request the writer process carries out). ``COUNTER`` is a file the study's processes count
their writes in together; ``N = 0`` only counts, so that a test learns how many write points a study has
and then kills at each (tests/test_crash.py).

The study must lead a process group of its own (``start_new_session``): the whole group is killed, study
and writer process at once, with SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import signal

ENV = "LRBENCH_CRASH_AT"


def durable_write() -> None:
    """One durable write has just been made: count it, and die if it is the chosen one."""
    setting = os.environ.get(ENV)
    if not setting:
        return
    at_text, _, counter = setting.partition(":")
    at = int(at_text)
    with open(counter, "a+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)  # the study process and its writer count in the same file
        f.seek(0)
        count = int(f.read() or 0) + 1
        f.seek(0)
        f.truncate()
        f.write(str(count))
        f.flush()
    if count == at:
        group = os.getpgrp()
        # Only a study that leads its own group (the study process, or its writer, whose parent it is).
        if group not in (os.getpid(), os.getppid()):
            raise RuntimeError(f"{ENV} needs the study to lead a process group of its own")
        os.killpg(group, signal.SIGKILL)
