"""Stop signals: what a scheduler, ``docker stop`` or systemd (SIGTERM) and a closed terminal (SIGHUP) send
stops a command as the first Ctrl-C does, so that nothing it started is left RUNNING."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

STOPS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_as_ctrl_c() -> Iterator[list[int]]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread; the list yielded
    gets the signals received (empty: none, or a Ctrl-C). Once one has, the next are noted and ignored:
    the stop they asked for is under way (a scheduler that sends SIGTERM again, or a terminal's SIGHUP after
    it, would otherwise cut short the telling of finished trials), and SIGKILL is the way to stop at once."""
    got: list[int] = []

    def interrupt(sig: int, frame: FrameType | None) -> None:
        got.append(sig)
        if len(got) == 1:
            raise KeyboardInterrupt

    old = {sig: signal.signal(sig, interrupt) for sig in STOPS}
    try:
        yield got
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def exit_status(got: list[int]) -> int:
    """The shell's convention: 128 + the signal that stopped the command (Ctrl-C's SIGINT: 130)."""
    return 128 + (got[0] if got else signal.SIGINT)


def interrupted(what: str, got: list[int]) -> int:
    """Says on stderr that ``what`` was interrupted (by which signal) and how to resume; the exit status."""
    by = f" by {signal.Signals(got[0]).name}" if got else ""
    print(f"lrbench: {what} interrupted{by}; run the same command again to resume", file=sys.stderr)
    return exit_status(got)
