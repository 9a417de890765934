"""Opening a study: create it or load it (several workers may do both at once), refusing to resume one
whose definition changed in a way that breaks comparison."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.config import Locations, StudyConfig
from bench.errors import UserError
from bench.search.space import make_pruner, make_sampler
from bench.search.storage import open_storage
from bench.search.workers import worker_alive, worker_id
from bench.uris import shown

UID = "study_uid"  # study user attribute: tells a study's MLflow runs from another's of the same name
DEFINITION = "definition"  # study user attribute: the comparable part of the study's definition
CREATOR = "creator"  # study user attribute: the worker that created it (bench.search.workers.worker_id)


@dataclass
class OpenedStudy:
    """A study as this worker opened it."""

    cfg: StudyConfig
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    created: bool  # this worker created it
    uid: str
    # The number this worker's sampler was seeded for (its first trial's, unless another worker asks
    # first): checked at its first ask. None: nothing to check (a stage that samples nothing).
    seeded_at: int | None

    def ask(self, k: int, claims: dict[str, Any]) -> list[optuna.Trial]:
        """k new trials, each carrying the user attributes ``claims`` (its worker) from its first write.

        A trial is first stored WAITING with the claims (Optuna's queue of trials), then asked, which takes
        a waiting trial: a process killed between the two leaves a waiting trial, which holds no place and
        the next ask takes, never a running one that names no worker (no one could tell it dead). Another
        worker's ask may take this one's waiting trial: each then claims the trial it got (ask_places).

        In this worker's first batch, if another worker asked trials since this one opened the study
        (perhaps with a sampler of the same seed), this worker's seed follows its own first trial's number
        instead: its points are drawn after the asks (by TPE's default, independent sampling; multivariate
        samplers drew this batch's at the asks, with the seed of the open)."""
        # Optuna's queue through its storage API: Study.enqueue_trial would mark the trials' parameters as
        # given (GridSampler then assigns them no point of its grid).
        waiting = optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=claims)
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        for _ in range(k):
            self.storage.create_new_trial(study_id, template_trial=waiting)
        asked = [self.study.ask() for _ in range(k)]
        if self.seeded_at is not None and asked and asked[0].number != self.seeded_at:
            self.study.sampler = make_sampler(self.cfg, resumed_at=asked[0].number)
        self.seeded_at = None
        return asked


def family_study(cfg: StudyConfig, family: str) -> str:
    """The name of a family's own study (``search.budget: per_family``)."""
    return f"{cfg.name}/{family}"


def study_names(cfg: StudyConfig) -> list[str]:
    """The names of the studies that hold the search's trials."""
    if cfg.search.budget == "joint":
        return [cfg.name]
    return [family_study(cfg, f) for f in cfg.schedulers]


def open_study(
    cfg: StudyConfig,
    loc: Locations,
    stage: str = "search",
    name: str | None = None,
    storage: optuna.storages.BaseStorage | None = None,
) -> OpenedStudy:
    """Create the study or load it, refusing to resume one whose comparable definition changed.

    ``stage="confirm"``: the study of the confirmation runs (see bench.search.confirm), in the same storage
    under the search's name with ``.confirm`` added; it samples nothing and prunes nothing, and its
    definition includes the confirmation settings. ``name``: another study of the search (a family's own);
    ``storage``: one already open."""
    storage = storage or open_storage(loc.storage)
    name = name or (cfg.name if stage == "search" else f"{cfg.name}.{stage}")
    definition = json.loads(json.dumps(cfg.comparable(), default=str))
    settings: dict[str, Any] = dict(storage=storage, study_name=name, direction=cfg.direction)
    if stage == "search":
        settings.update(sampler=make_sampler(cfg), pruner=make_pruner(cfg))
    else:
        settings.update(sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
        definition["confirm"] = {k: v for k, v in dataclasses.asdict(cfg.confirm).items() if k != "target"}
    created = True
    try:
        study = optuna.create_study(**settings)
        # Who is making the study's attributes: a worker that loads it waits for them only while the
        # creator lives (one killed here leaves them to whoever comes next).
        study.set_user_attr(CREATOR, worker_id())
        # Tells this study's MLflow runs from those of another study of the same name (another storage) on
        # the same tracking store. Stored by the one worker that created the study (a storage creates a
        # study once), first thing, so that workers starting together all tag their runs with it.
        study.set_user_attr(UID, uuid.uuid4().hex)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.create_study(**settings, load_if_exists=True)
        created = False
    # The number the first trial this worker asks will have, unless another worker asks first (then its
    # first batch reseeds the sampler: OpenedStudy.ask).
    existing = len(study.get_trials(deepcopy=False))
    if existing and stage == "search":
        study.sampler = make_sampler(cfg, resumed_at=existing)
    attrs = _attrs(study)
    stored = attrs.get(DEFINITION)
    if stored is None:
        study.set_user_attr(DEFINITION, definition)
    elif stored != definition:
        changes = _changes(stored, definition)
        raise UserError(
            f"study {name!r} in {shown(loc.storage)} was run with another definition "
            f"({'; '.join(changes[:3])}); "
            f"to run the new definition, give it a new name (the YAML's name: key) or another --output DIR"
        )
    return OpenedStudy(cfg, study, storage, created, attrs[UID], existing if stage == "search" else None)


def _changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def creator_alive(study: optuna.Study) -> bool:
    """The worker that created the study may still be making its attributes: it lives, or it cannot be
    told (another host's). A study without its creator stored had it killed right after the creation
    (or was created before lrbench stored it)."""
    creator = study.user_attrs.get(CREATOR)
    return creator is not None and worker_alive(creator) is not False


def _attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes once its creator has stored its uid. A worker that loads a study just
    created waits for it while the creator lives (briefly: the creator stores it right after creating the
    study, before the definition); a study that has a definition but no uid was created before lrbench kept
    one, and gets one now (as does a study whose creator died in between)."""
    deadline = time.monotonic() + 5
    attrs = study.user_attrs
    while not {UID, DEFINITION} & attrs.keys() and time.monotonic() < deadline:
        if CREATOR in attrs and not creator_alive(study):
            break
        time.sleep(0.05)
        attrs = study.user_attrs
    if UID not in attrs:
        study.set_user_attr(UID, uuid.uuid4().hex)
        attrs = study.user_attrs
    return attrs
