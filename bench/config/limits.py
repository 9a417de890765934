"""How much a study would train, and the sizes past which lrbench refuses it rather than run for ever.

The caps are far past any benchmark of lrbench's MLPs (the default study trains about 1.2 million
optimizer steps in all, 550 a run): they stop a typo (``epochs: 1000000000``, ``n_trials: 1e9`` written
out) before anything is created, with the estimate, instead of a study that never ends.
"""

from __future__ import annotations

import math

from bench.config.schema import StudyConfig
from bench.data import Sizes
from bench.errors import UserError
from bench.model import parameters

MAX_STEPS_PER_RUN = 10**6  # epochs x steps per epoch of one run (the default study's: 550)
MAX_STEPS = 10**10  # optimizer steps of every run of the study together (the default study's: 1.2e6)
MAX_PARAMETERS = 10**8  # weights of one model (400 MB as float32, before a population multiplies them)


def steps_per_epoch(cfg: StudyConfig, sizes: Sizes) -> int:
    return math.ceil(sizes.train_rows / cfg.training.batch_size)


def runs(cfg: StudyConfig, n_trials: int | None = None) -> int:
    """The runs a study trains at most: its search's trials and its confirmation's runs."""
    families = len(cfg.schedulers)
    trials = n_trials or cfg.optuna.n_trials
    search = trials * families if cfg.search.budget == "per_family" else trials
    return search + families * cfg.confirm.top_k * cfg.confirm.seeds


def check_size(cfg: StudyConfig, sizes: Sizes, n_trials: int | None = None) -> None:
    """Refuse a study past :data:`MAX_STEPS_PER_RUN`, :data:`MAX_STEPS` or :data:`MAX_PARAMETERS`, saying
    what it would be."""
    weights = parameters(sizes.features, sizes.classes, cfg.model)
    if weights > MAX_PARAMETERS:
        raise UserError(
            f"model.hidden: {list(cfg.model.hidden)} on {sizes.features} features makes {weights:.3g} "
            f"weights a model; at most {MAX_PARAMETERS:.0e}"
        )
    epochs, per_epoch = cfg.training.epochs, steps_per_epoch(cfg, sizes)
    per_run = epochs * per_epoch
    if per_run > MAX_STEPS_PER_RUN:
        raise UserError(
            f"training.epochs: a run of {epochs} epochs x {per_epoch} steps per epoch ({sizes.train_rows} "
            f"training rows, batch_size {cfg.training.batch_size}) is {per_run:.3g} optimizer steps; at "
            f"most {MAX_STEPS_PER_RUN:.0e} a run: fewer epochs or a larger batch_size"
        )
    total = runs(cfg, n_trials) * per_run
    if total > MAX_STEPS:
        raise UserError(
            f"the study would train about {total:.3g} optimizer steps ({runs(cfg, n_trials)} runs of "
            f"{epochs} epochs x {per_epoch} steps); at most {MAX_STEPS:.0e} in all: fewer trials "
            "(optuna.n_trials, --n-trials), epochs or confirm.seeds, or a larger batch_size"
        )
