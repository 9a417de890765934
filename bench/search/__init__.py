"""The search: the only package that imports optuna.

A study asks Optuna for trials (ask-and-tell), samples a schedule family and then that family's arguments
(:mod:`.space`), trains them together (:mod:`.round`), reports every epoch's validation metric for pruning,
tells each trial as it ends (:mod:`.telling`) and hands its results to the MLflow writer. Storage is
persistent (:mod:`.storage`): running the same study again resumes it, and several workers can share it
(:mod:`.workers`). :func:`load_trials` reads a stored study back for the reports.
"""

from bench.search.opening import OpenedStudy, open_study
from bench.search.readback import load_trials
from bench.search.run import Outcome, run_study
from bench.search.storage import open_storage

__all__ = ["OpenedStudy", "Outcome", "load_trials", "open_storage", "open_study", "run_study"]
