"""The search space: which sampler and pruner, and how one trial's schedule, base LR and optimizer are
drawn.

The space is conditional: the family first, then the base LR and the optimizer, then that family's own
arguments, namespaced ``<family>.<arg>`` so that families never share a parameter.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from bench import schedules
from bench.config import FloatRange, StudyConfig
from bench.config.searched import family_space
from bench.train import TrainConfig

# A study prints its own progress: Optuna's INFO lines (a study created, each trial told) would double it.
optuna.logging.set_verbosity(optuna.logging.WARNING)
# Samplers that cannot handle conditional spaces (CMA-ES, QMC) fall back to independent sampling for the
# family arguments and say so on every trial; that is expected here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message=".*fall back to.*", category=UserWarning)
warnings.filterwarnings("ignore", message=".*independent sampler.*", category=UserWarning)


def make_sampler(cfg: StudyConfig, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, its seed offset by the number of the first trial this worker asks (see
    :func:`bench.search.opening.open_study`): a resumed study does not draw the same points again, workers
    that share a study do not draw each other's, and a study run by one worker is reproducible."""
    o = cfg.optuna
    seed = None if o.seed is None else o.seed + resumed_at
    if o.sampler == "tpe":
        multivariate = o.multivariate
        # TPE's first trials are random (10 by default): with a small budget per family, fewer, so that it
        # models the family's results for the larger part of its budget.
        startup = min(10, max(2, o.n_trials // 3))
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=multivariate,
            group=multivariate,
            constant_liar=True,
            n_startup_trials=startup,
        )
    if o.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if o.sampler == "qmc":
        # The QMC sequence is indexed by trial number, so the same seed continues it on resume.
        return optuna.samplers.QMCSampler(seed=o.seed, warn_independent_sampling=False)
    if o.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    # Grid: every family (at its default or fixed arguments) times every listed LR and optimizer.
    space: dict[str, list[Any]] = {
        "scheduler": list(cfg.schedulers),
        "optimizer": list(cfg.training.optimizer),
    }
    lr = cfg.training.lr
    space["lr"] = list(lr) if isinstance(lr, tuple) else [lr]
    return _AskTellGrid(space, seed=o.seed)


class _AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its stop at the end of the grid: ``Study.stop`` works only inside
    ``Study.optimize`` and raises in an ask-and-tell loop; the study loop asks ``is_exhausted`` itself."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    o = cfg.optuna
    if o.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=cfg.warmup_epochs)
    if o.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, cfg.warmup_epochs))
    if o.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, cfg.warmup_epochs), max_resource=cfg.training.epochs
        )
    return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class TrialSpec:
    """What one trial trains: the sampled (or fixed) choices, before run-length arguments are derived."""

    number: int
    scheduler: str
    scheduler_args: dict[str, Any]
    optimizer: str
    lr: float
    seed: int
    split_seed: int | None = None  # the split trained on, where not the study's task's (a confirmation's)


def suggest(trial: optuna.Trial, name: str, rng: schedules.Range) -> Any:
    """One argument from its registry search range."""
    if rng.choices is not None:
        return trial.suggest_categorical(name, list(rng.choices))
    assert rng.low is not None and rng.high is not None
    if rng.kind is int:
        return trial.suggest_int(name, int(rng.low), int(rng.high), log=rng.log)
    return trial.suggest_float(name, float(rng.low), float(rng.high), log=rng.log)


def sample(trial: optuna.Trial, cfg: StudyConfig, steps_per_epoch: int) -> TrialSpec:
    """Family first, then the base LR, the optimizer, and the family's own (namespaced) arguments."""
    t = cfg.training
    family_name = trial.suggest_categorical("scheduler", list(cfg.schedulers))
    if isinstance(t.lr, FloatRange):
        lr = trial.suggest_float("lr", t.lr.low, t.lr.high, log=t.lr.log)
    elif isinstance(t.lr, tuple):
        lr = trial.suggest_categorical("lr", list(t.lr))
    else:
        lr = t.lr
    optimizer = (
        trial.suggest_categorical("optimizer", list(t.optimizer)) if len(t.optimizer) > 1 else t.optimizer[0]
    )
    family = schedules.SCHEDULES[family_name]
    horizon = family.horizon(t.epochs, steps_per_epoch, lr)
    space, given = family_space(cfg, family_name, horizon)
    for arg, rng in space.items():
        given[arg] = suggest(trial, f"{family_name}.{arg}", rng)
    return TrialSpec(trial.number, family_name, given, optimizer, lr, t.seed + trial.number)


def train_config(cfg: StudyConfig, spec: TrialSpec) -> TrainConfig:
    t = cfg.training
    return TrainConfig(
        scheduler=spec.scheduler,
        scheduler_args=spec.scheduler_args,
        optimizer=spec.optimizer,
        lr=spec.lr,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        epochs=t.epochs,
        batch_size=t.batch_size,
        seed=spec.seed,
        model=cfg.model,
    )
