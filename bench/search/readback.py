"""Reading a stored study back as plain records (what the reports read; no training, no torch)."""

from __future__ import annotations

from pathlib import Path

import optuna

from bench.config import Locations, StudyConfig
from bench.errors import UserError
from bench.search.importance import by_family
from bench.search.opening import study_names
from bench.search.storage import open_storage
from bench.search.telling import PARENT_RUN, SURPLUS
from bench.stored import StoredStudy, StoredTrial
from bench.uris import shown


def load_trials(cfg: StudyConfig, loc: Locations, importance: bool = False) -> StoredStudy:
    """Every trial of a stored study (but those asked past its total), as plain records; with
    ``importance``, which hyperparameters mattered in each family (bench.search.importance)."""
    if "://" not in loc.storage and not Path(loc.storage).is_file():
        raise UserError(f"no study storage at {loc.storage}; run `lrbench study` first")
    storage = open_storage(loc.storage)
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        raise UserError(
            f"no study named {cfg.name!r} in {shown(loc.storage)}; run `lrbench study` first"
        ) from None
    try:
        part = optuna.load_study(study_name=f"{cfg.name}.confirm", storage=storage)
        confirm = _records(_kept(part))
    except KeyError:  # no confirmation (yet)
        confirm = []
    trials, frozen = [], []
    for name in study_names(cfg):
        try:
            part = study if name == cfg.name else optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # a family's study not created yet (the worker stopped before it)
            continue
        kept = _kept(part)
        trials += _records(kept)
        frozen += kept
    direction = study.direction.name.lower()
    found = by_family(frozen, study.direction) if importance else {}
    return StoredStudy(trials, direction, study.user_attrs.get(PARENT_RUN), confirm, found)


def _kept(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if SURPLUS not in t.user_attrs]


def _records(trials: list[optuna.trial.FrozenTrial]) -> list[StoredTrial]:
    return [
        StoredTrial(
            t.number, t.state.name, t.value, dict(t.params), dict(t.user_attrs), dict(t.intermediate_values)
        )
        for t in trials
    ]
