"""Start-up tuning of the ``lrbench study`` command: the garbage collector paused while it imports.

Importing torch, optuna, pandas and scikit-learn creates some 270,000 objects that live as long as the
process, and the collector's full passes over them while they were imported cost 0.3 to 0.5 s here, for
nothing. The command pauses the collector first thing (:func:`pause`) and hands :func:`end` to the study,
which calls it once it has loaded what it works with, before its trials: the collector resumes, with what
start-up loaded frozen out of its reach. The few cycles that start-up left unreachable (under a thousand
objects here) are frozen with them, never freed: less than the 0.2 s a collection to find them would cost.
"""

from __future__ import annotations

import gc

_PAUSED = False


def pause() -> None:
    global _PAUSED
    if gc.isenabled():
        gc.disable()
        _PAUSED = True


def end() -> None:
    """Resume the collector with start-up's objects frozen; a no-op where :func:`pause` did not pause it."""
    global _PAUSED
    if _PAUSED:
        gc.freeze()
        gc.enable()
        _PAUSED = False


def resume() -> None:
    """Resume the collector without freezing (a command that stopped before its trials)."""
    global _PAUSED
    if _PAUSED:
        gc.enable()
        _PAUSED = False
