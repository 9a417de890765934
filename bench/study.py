"""Studies: the only module that imports optuna.

A study asks Optuna for trials (ask-and-tell), samples a schedule family and then that family's
arguments (namespaced ``<family>.<arg>`` so families never share a parameter), trains each trial with the
engine, reports every epoch's validation metric for pruning, and records everything in MLflow through
:mod:`bench.tracking`. Storage is persistent: running the same study again resumes it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import random
import socket
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from bench import schedules
from bench.config import FloatRange, Locations, StudyConfig, shown
from bench.entry import end_startup
from bench.errors import UserError

# torch and the engines are imported by the functions that train: reading a stored study (lrbench export,
# lrbench ui) does not import torch.
if TYPE_CHECKING:
    from bench.data import Task
    from bench.engine import EpochMetrics, TrainConfig, TrialResult
    from bench.population import ProxySchedule

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Samplers that cannot handle conditional spaces (CMA-ES, QMC) fall back to independent sampling for the
# family arguments and say so on every trial; that is expected here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message=".*fall back to.*", category=UserWarning)
warnings.filterwarnings("ignore", message=".*independent sampler.*", category=UserWarning)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
PARENT_WAIT = 30.0  # seconds a worker that joins a new study waits for the parent run its creator makes
SURPLUS = "surplus"  # user attribute of a trial asked past the study's total (see _surplus)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A URL (sqlite:///, postgresql://, ...) goes to Optuna's RDB storage; a plain path is a journal file.

    The journal file is the embedded default: measured here it costs about a tenth of SQLite per trial
    with per-epoch reports (`python -m bench.perf storage`), and it is safe for several processes on one
    machine."""
    if "://" in url:
        return _rdb_storage(url)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFile(str(path)))


def _rdb_storage(url: str, attempts: int = 8) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. Workers that start together on an empty database each create its tables, and
    a database may refuse one of two creations of the same table at once (PostgreSQL answers a duplicate
    key in its catalogue, not "already exists"; Optuna writes its version row and Alembic's stamp the same
    way, looking first and then writing): a worker whose creation failed tries again, a little later each
    time, and then finds the tables made.
    A failure that is no race fails every attempt and is raised (the command's check of the database has
    already said whether it can be reached)."""
    import sqlalchemy.exc

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            time.sleep(0.05 * attempt * (1 + random.random()))  # apart, so that the next tries do not meet
    return optuna.storages.RDBStorage(url)  # the last attempt: its failure is raised


@atexit.register
def _flush_journals() -> None:
    for journal in list(_JOURNALS):
        journal.flush()


class JournalFile(BaseJournalBackend):
    """Optuna's journal file, with one change to how intermediate values (a trial's per-epoch report, the
    most frequent write of a study) are written: they are held in memory and written with the process's
    next other write (a tell, an attribute, a new trial), in the order they came, or with the first report
    that comes once the oldest has waited ``FLUSH_AFTER`` seconds, and without an fsync. Every other write
    is Optuna's own, fsync included, and it makes what was written before it durable too.

    Optuna reads the file back after each write and before each read of a trial; here a stat answers when
    the file has not grown since the last read. A report and its pruning check (13 running trials, 60
    finished) cost 0.42-0.64 ms when each report was written at once (a lock, an append, a read back),
    0.19-0.25 ms so; the default study took 9.2 s against 10.2 s (medians of six alternating runs, the same
    trials). Nothing this process decides changes: a trial keeps its own reported values (its pruning check
    reads them there), and the pruners compare with finished trials (median), whose reports are written
    before their end, or with rung values kept as trial attributes (successive halving, hyperband), which
    are written at once. A killed process loses the reports it held (the last second's, or the last epoch's
    when an epoch takes longer) of its running trials, which are failed and re-run like any trial of a dead
    worker. Same file, same format, same lock: other processes read and write it with Optuna's own backend,
    and see a running trial's reports up to a second late (an epoch, when epochs take longer)."""

    FLUSH_AFTER = 1.0

    def __init__(self, path: str):
        self._path = path
        self._lock = JournalFileSymlinkLock(path)  # Optuna's default lock for the file
        self._file = JournalFileBackend(path, lock_obj=self._lock)
        self._held: list[dict[str, Any]] = []
        self._held_since = 0.0
        self._mutex = threading.Lock()
        self._read_to: tuple[int, int] | None = None  # (logs read, file size) when the last read ended
        _JOURNALS.add(self)  # flushed at exit

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        # Nothing to read when the file has the size it had when the last read ended there (it only grows).
        size = os.stat(self._path).st_size
        if self._read_to == (log_number_from, size):
            return ()
        return self._read(log_number_from, size)

    def _read(self, log_number_from: int, size: int) -> Iterator[dict[str, Any]]:
        n = log_number_from
        for log in self._file.read_logs(log_number_from):
            n += 1
            yield log
        self._read_to = (n, size)  # the file had `size` bytes before these n were read: same size, none new

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._mutex:
            if all("intermediate_value" in log for log in logs):
                if not self._held:
                    self._held_since = time.monotonic()
                self._held += logs
                if time.monotonic() - self._held_since >= self.FLUSH_AFTER:
                    self._write_held()
                return
            self._file.append_logs(self._held + logs)
            self._held = []  # once written: a write that fails keeps them for the next

    def flush(self) -> None:
        """Write the intermediate values held in memory now."""
        with self._mutex:
            self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in self._held)
        self._lock.acquire()
        try:
            with open(self._path, "ab") as f:
                f.write(text.encode("utf-8"))
        finally:
            self._lock.release()
        self._held = []


_JOURNALS: weakref.WeakSet[JournalFile] = weakref.WeakSet()  # this process's open journals


# --- who runs a trial (to tell a dead process's trials from a live one's) ---------------------------------


def _proc_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def worker_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def worker_alive(worker: str | None) -> bool | None:
    """True / False for a worker on this host, None when it cannot be told (another host, old record)."""
    if not worker:
        return None
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start in ("?", _proc_start(pid))  # a recycled pid is a different process


# --- samplers, pruners, search space -------------------------------------------------------------------


def _sampler(cfg: StudyConfig, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, its seed offset by the number of the first trial this worker asks (see
    open_study): a resumed study does not draw the same points again, workers that share a study do not draw
    each other's, and a study run by one worker is reproducible."""
    o = cfg.optuna
    seed = None if o.seed is None else o.seed + resumed_at
    if o.sampler == "tpe":
        multivariate = o.multivariate
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=multivariate, group=multivariate, constant_liar=True
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
    return optuna.samplers.GridSampler(space, seed=o.seed)


def _pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    o = cfg.optuna
    if o.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=o.warmup_epochs)
    if o.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, o.warmup_epochs))
    if o.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, o.warmup_epochs), max_resource=cfg.training.epochs
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
    given: dict[str, Any] = {}
    if cfg.optuna.sampler != "grid":
        space = family.space(horizon)
        for arg, spec in cfg.schedulers[family_name].items():
            if isinstance(spec, list) and family.args[arg].kind is not list:
                declared = family.args[arg]
                if declared.kind in (int, float):
                    space[arg] = schedules.Range(declared.kind, low=spec[0], high=spec[1], log=declared.log)
                else:
                    space[arg] = schedules.Range(declared.kind, choices=tuple(spec))
            else:
                space.pop(arg, None)
                given[arg] = spec
        for arg, rng in space.items():
            given[arg] = suggest(trial, f"{family_name}.{arg}", rng)
    else:
        given = {arg: spec for arg, spec in cfg.schedulers[family_name].items() if not isinstance(spec, list)}
    return TrialSpec(trial.number, family_name, given, optimizer, lr, t.seed + trial.number)


def train_config(cfg: StudyConfig, spec: TrialSpec) -> TrainConfig:
    from bench.engine import TrainConfig

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


def mlflow_params(cfg: StudyConfig, spec: TrialSpec, result: TrialResult | None) -> dict[str, Any]:
    """DESIGN.md's params: the family, every argument it was built with (derived ones too), the rest."""
    params: dict[str, Any] = {
        "scheduler": spec.scheduler,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "epochs": cfg.training.epochs,
        "batch_size": cfg.training.batch_size,
        "seed": spec.seed,
        "dataset": cfg.task.name,
    }
    args = result.scheduler_args if result is not None else spec.scheduler_args
    params.update({f"scheduler.{k}": v for k, v in args.items()})
    return params


# --- the study run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ran: int  # trials this process finished
    interrupted: bool = False


def _definition_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _definition_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


_SEEDED_AT: weakref.WeakKeyDictionary[optuna.Study, int] = weakref.WeakKeyDictionary()


def open_study(cfg: StudyConfig, loc: Locations) -> optuna.Study:
    """Create the study or load it, refusing to resume one whose comparable definition changed."""
    return _open_study(cfg, loc)[0]


def _open_study(cfg: StudyConfig, loc: Locations) -> tuple[optuna.Study, bool]:
    """:func:`open_study`, and whether this call created the study."""
    storage = open_storage(loc.storage)
    settings: dict[str, Any] = dict(
        storage=storage,
        study_name=cfg.name,
        direction=cfg.direction,
        sampler=_sampler(cfg),
        pruner=_pruner(cfg),
    )
    created = True
    try:
        study = optuna.create_study(**settings)
        # Tells this study's MLflow runs from those of another study of the same name (another storage) on
        # the same tracking store. Stored by the one worker that created the study (a storage creates a
        # study once), first thing, so that workers starting together all tag their runs with it.
        study.set_user_attr("study_uid", uuid.uuid4().hex)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.create_study(**settings, load_if_exists=True)
        created = False
    # The number the first trial this worker asks will have, unless another worker asks first (then its
    # first batch reseeds the sampler: _ask).
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = _sampler(cfg, resumed_at=existing)
    _SEEDED_AT[study] = existing
    definition = _canonical(cfg.comparable())
    attrs = _study_attrs(study)
    stored = attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
    elif stored != definition:
        changes = _definition_changes(stored, definition)
        raise UserError(
            f"study {cfg.name!r} in {shown(loc.storage)} was run with another definition "
            f"({'; '.join(changes[:3])}); "
            f"to run the new definition, give it a new name (the YAML's name: key) or another --output DIR"
        )
    return study, created


def _study_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes once its creator has stored its uid. A worker that loads a study just
    created waits for it (briefly: the creator stores it right after creating the study, before the
    definition); a study that has a definition but no uid was created before lrbench kept one, and gets one
    now (as does a study whose creator died in between)."""
    deadline = time.monotonic() + 5
    attrs = study.user_attrs
    while not {"study_uid", "definition"} & attrs.keys() and time.monotonic() < deadline:
        time.sleep(0.05)
        attrs = study.user_attrs
    if "study_uid" not in attrs:
        study.set_user_attr("study_uid", uuid.uuid4().hex)
        attrs = study.user_attrs
    return attrs


def reclaim(study: optuna.Study, tracker: Any, uid: str) -> int:
    """Close what a killed process left behind: its RUNNING trials become FAIL (trials of live workers are
    left alone), and the writer then closes the study's (``uid``) MLflow runs still RUNNING to match (in
    the background)."""
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(trial.user_attrs.get("worker")) is False:
            # Optuna has no public call to set an attribute on another process's trial; its storage does.
            study._storage.set_trial_user_attr(trial._trial_id, "failure", "worker process died (killed?)")
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            closed += 1
    trials = {
        str(t.number): (t.state.name, t.user_attrs.get("mlflow_run_id"), t.user_attrs.get("failure"))
        for t in study.get_trials(deepcopy=False)
    }
    tracker.submit("close_orphans", uid, trials)
    return closed


def _counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def _holds_a_place(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that counts toward the study's total: ended COMPLETE or PRUNED, or running in a worker that
    may be alive (another host's, or one just asked that has no worker yet)."""
    if t.state in COUNTED:
        return True
    return t.state == TrialState.RUNNING and worker_alive(t.user_attrs.get("worker")) is not False


def _surplus(study: optuna.Study, asked: list[optuna.Trial], target: int) -> set[int]:
    """The numbers of the trials just asked that are past the study's total. Workers that ask at the same
    moment each find places free; a storage's one step that no two workers take at once is the ask itself,
    which numbers the trials in order. So a trial is surplus when ``target`` trials before it hold a place,
    read after the asks: which of them it is does not depend on the timing."""
    if not asked:
        return set()
    mine = {t.number for t in asked}
    held, surplus = 0, set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.number in mine and held >= target:
            surplus.add(t.number)
        elif _holds_a_place(t):
            held += 1
    return surplus


def _objective(cfg: StudyConfig, result: TrialResult) -> float:
    values = result.val_accuracy if cfg.objective.metric == "val_accuracy" else result.val_loss
    if cfg.objective.reduce == "final":
        return values[-1]
    return max(values) if cfg.direction == "maximize" else min(values)


class _Progress:
    """A tqdm bar on a terminal; one line per trial otherwise (logs, CI)."""

    def __init__(self, total: int, done: int, name: str):
        self.total, self.done, self.started = total, done, time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, desc=name, unit="trial", file=sys.stderr, dynamic_ncols=True
            )

    def update(self, line: str, best: float | None, counted: bool) -> None:
        """One finished trial; only COMPLETE and PRUNED ones count towards the total."""
        self.done += counted
        if self.bar is not None:
            self.bar.set_postfix_str(f"best {best:.4f}" if best is not None else "", refresh=False)
            self.bar.update(int(counted))
            if not counted:
                self.bar.write(line, file=sys.stderr)
            return
        elapsed = time.perf_counter() - self.started
        print(
            f"[{self.done}/{self.total}] {line}  best {'-' if best is None else f'{best:.4f}'}  "
            f"{elapsed:.0f}s",
            file=sys.stderr,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_study(
    cfg: StudyConfig,
    loc: Locations,
    n_trials: int | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    tracker: Any = None,
) -> Outcome:
    """Run (or resume) a study until COMPLETE + PRUNED trials reach n_trials, or the timeout. A tracker
    passed in (see :func:`bench.tracking.start_tracker`) is left open for the caller; one made here is
    closed."""
    target = n_trials or cfg.optuna.n_trials
    own = tracker is None
    if own:
        from bench.tracking import start_tracker

        tracker = start_tracker(cfg, loc)
    import torch

    from bench.data import load_task
    from bench.engine import resolve_device

    threads = torch.get_num_threads()
    try:
        device = resolve_device(cfg.training.device)
        if device.type == "cpu":
            _leave_a_core_to_the_writer()
        task: Task = load_task(cfg.task, device)
        steps_per_epoch = math.ceil(len(task.y_train) / cfg.training.batch_size)
        study, created = _open_study(cfg, loc)
        end_startup()
        return _run(cfg, loc, study, created, tracker, task, steps_per_epoch, target, on_trial)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process gets its threads back
        try:
            _flush_journals()  # reports still held (a study stopped by an error): the CLI exits by os._exit
        finally:
            if own:
                tracker.close()


def _leave_a_core_to_the_writer() -> None:
    """Training on the CPU takes one core fewer than there are: the MLflow writer process works beside it
    all study long, and torch's threads wait on each other when one of them shares a core (measured on 2
    cores: a population of 13 trains in 0.6 s on one thread or on two, but in 3.3 s on two threads while
    another process keeps a core busy)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - 1)))


def _run(
    cfg: StudyConfig,
    loc: Locations,
    study: optuna.Study,
    created: bool,
    tracker: Any,
    task: Task,
    steps_per_epoch: int,
    target: int,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None,
) -> Outcome:
    replayed = tracker.replay_spool()
    if replayed:
        print(f"sent {replayed} trial(s) to MLflow that an earlier run kept in its spool", file=sys.stderr)
    attrs = study.user_attrs
    reclaimed = reclaim(study, tracker, attrs["study_uid"])
    if reclaimed:
        print(f"closed {reclaimed} trial(s) left RUNNING by a process that died", file=sys.stderr)
    # The writer opens the parent run while the first trials are sampled and trained. A worker that did not
    # create the study and finds no parent stored on it takes the one another worker made: while no trial
    # has ended, the study's creator may be making it now (workers that start together), so it waits.
    find = None
    if not created and attrs.get("mlflow_parent_run_id") is None:
        ended = any(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        find = 0.0 if ended else PARENT_WAIT
    parent = tracker.open_parent(
        cfg.name,
        attrs.get("mlflow_parent_run_id"),
        {"n_trials": target, "dataset": cfg.task.name},
        attrs["study_uid"],
        find,
    )
    tracker.submit("log_parent_artifacts", [], {"study.yaml": cfg.to_yaml()})

    me = worker_id()
    better = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    batch = population_size(cfg, task, target)
    progress = _Progress(target, _counted(study), cfg.name)
    outcome = Outcome(ran=0)
    failures = 0
    best = None

    def show(frozen: optuna.trial.FrozenTrial) -> None:  # each trial as it is told: progress
        nonlocal best, failures
        outcome.ran += 1
        failures += frozen.state == TrialState.FAIL
        if frozen.state == TrialState.COMPLETE and frozen.value is not None:
            best = frozen.value if best is None else better(best, frozen.value)
        progress.update(_trial_line(frozen, cfg), best, frozen.state in COUNTED)
        if on_trial is not None:
            on_trial(frozen)

    deadline = time.monotonic() + cfg.optuna.timeout if cfg.optuna.timeout else math.inf
    # The population refills (new trials take the places of members that end) where all trials can share
    # one population: one optimizer (architecture, batch size and epochs are the study's own).
    refills = cfg.training.engine == "population" and len(cfg.training.optimizer) == 1

    def wanted(free: int) -> int:
        """Trials to start now, at most ``free``: what the study still needs, counting every live worker's
        running trials (this one's too: those whose results are final count until they are told)."""
        if time.monotonic() >= deadline or failures >= cfg.optuna.max_failures:
            return 0
        # One read: a trial told between two reads (running, then ended) would count in neither.
        need = target - sum(map(_holds_a_place, study.get_trials(deepcopy=False)))
        sampler = study.sampler
        if need <= 0 or (isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)):
            return 0
        return min(free, need)

    def more(free: int) -> int:
        nonlocal best
        if parent.done():
            _store_parent(study, parent)
        best = _best_value(study)  # this worker's and every other's so far
        return wanted(free)

    try:
        while time.monotonic() < deadline:
            k = wanted(batch)
            if k <= 0:
                break
            best = _best_value(study)
            rnd = _Round(cfg, study, tracker, steps_per_epoch, target, me, show)
            rnd.run(task, k, more if refills else None)
            if parent.done():
                _store_parent(study, parent)
            if failures >= cfg.optuna.max_failures:
                raise UserError(f"{failures} trials failed in this run (see their `failure`); stopping")
    except KeyboardInterrupt:
        outcome.interrupted = True
    except BaseException:
        progress.close()
        _store_parent(study, parent)
        tracker.close_parent("FAILED")
        raise
    progress.close()
    _store_parent(study, parent)
    tracker.close_parent("KILLED" if outcome.interrupted else "FINISHED")
    return outcome


def _store_parent(study: optuna.Study, parent: Any) -> None:
    """Keep the parent run's id on the study, so that every later run of it reopens the same parent."""
    run_id = parent.result()
    if study.user_attrs.get("mlflow_parent_run_id") != run_id:
        study.set_user_attr("mlflow_parent_run_id", run_id)


def population_size(cfg: StudyConfig, task: Task, target: int) -> int:
    """Trials trained at once: a population's places. The reference engine trains one at a time. The
    population engine takes the study's setting, or else what fits the device, but no more than an eighth
    of the study, so that most trials are sampled knowing the results of many others (a refilled
    population asks a trial whenever a place frees; the first places are filled before any result)."""
    if cfg.training.engine != "population":
        return 1
    if cfg.training.population_size:
        return cfg.training.population_size
    from bench.population import auto_population_size

    fits = auto_population_size(task, cfg.model, cfg.training.batch_size)
    return max(1, min(fits, math.ceil(target / 8)))


def _best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:
        return None


def _trial_line(t: optuna.trial.FrozenTrial, cfg: StudyConfig) -> str:
    value = (
        f"{cfg.objective.metric}={t.value:.4f}" if t.value is not None else t.user_attrs.get("failure", "")
    )
    return f"trial {t.number} {t.params.get('scheduler', '?')}: {t.state.name} {value}"


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _reporter(cfg: StudyConfig, trial: optuna.Trial) -> Callable[[EpochMetrics], bool]:
    """Per-epoch hook: report the objective's metric to Optuna and ask its pruner."""
    use_accuracy = cfg.objective.metric == "val_accuracy"
    prunes = cfg.optuna.pruner != "none"
    every, last = cfg.optuna.report_every, cfg.training.epochs - 1

    def report(m: EpochMetrics) -> bool:
        if (m.epoch + 1) % every and m.epoch != last:
            return False  # intermediate values are stored (and pruning decided) every `every` epochs
        trial.report(m.val_accuracy if use_accuracy else m.val_loss, m.epoch)
        return prunes and trial.should_prune()

    return report


def _ask(cfg: StudyConfig, study: optuna.Study, k: int) -> list[optuna.Trial]:
    """k new trials. In this worker's first batch, if another worker asked trials since this one opened the
    study (perhaps with a sampler of the same seed), this worker's seed follows its own first trial's number
    instead: its points are drawn after the asks (by TPE's default, independent sampling; multivariate
    samplers drew this batch's at the asks, with the seed of the open)."""
    asked = [study.ask() for _ in range(k)]
    seeded_at = _SEEDED_AT.pop(study, None)
    if seeded_at is not None and asked and asked[0].number != seeded_at:
        study.sampler = _sampler(cfg, resumed_at=asked[0].number)
    return asked


class _Round:
    """The trials this worker trains together: one population (or, with the reference engine, one trial).

    Trials are asked at the start and, where the population refills, whenever members end; each is sampled,
    its schedule built, its MLflow run created in the writer (the ids come back while it trains), then
    trained and told. A trial is told, and its MLflow writes submitted, as soon as its result is final and
    the writer has created its run (the id goes on the trial first): a pruned member's writes then overlap
    the others' training rather than queue behind the whole population. Training never waits for the
    writer."""

    def __init__(
        self,
        cfg: StudyConfig,
        study: optuna.Study,
        tracker: Any,
        steps_per_epoch: int,
        target: int,
        me: str,
        on_told: Callable[[optuna.trial.FrozenTrial], None],
    ):
        self.cfg, self.study, self.tracker = cfg, study, tracker
        self.steps_per_epoch, self.target, self.me, self.on_told = steps_per_epoch, target, me, on_told
        self.asked: list[optuna.Trial] = []
        self.started: list[tuple[optuna.Trial, TrialSpec]] = []
        self.built: list[ProxySchedule] = []  # each started trial's schedule, built once and trained with
        self.hooks: list[Callable[[EpochMetrics], bool]] = []
        self.runs: list[tuple[Any, int]] = []  # each started trial's run-id future and its place in it
        self.named: set[int] = set()  # futures whose run ids are on their trials
        self.told: set[int] = set()  # trial numbers
        self.ready: list[tuple[int, TrialResult | BaseException]] = []  # results waiting for their run ids

    def start(self, k: int) -> list[int]:
        """Ask k trials and start them: their indices in ``started`` (a trial whose arguments fail fails
        alone, at once)."""
        from bench.population import proxy_schedule

        new: list[int] = []
        asked = _ask(self.cfg, self.study, k)
        surplus = _surplus(self.study, asked, self.target)
        for trial in asked:
            trial.set_user_attr("worker", self.me)
            if trial.number in surplus:  # another worker asked the study's last trials at the same moment
                why = f"the study had its {self.target} trials when this one was asked"
                trial.set_user_attr(SURPLUS, why)
                self.study.tell(trial, state=TrialState.FAIL)  # never trained; reports leave it out
                continue
            self.asked.append(trial)
            try:
                spec = sample(trial, self.cfg, self.steps_per_epoch)
                # Built here, so that bad arguments fail this trial alone, not the population.
                schedule = proxy_schedule(train_config(self.cfg, spec), self.steps_per_epoch)
            except Exception as exc:  # this trial's own problem: it fails alone
                self._told(_fail(self.study, self.tracker, trial, None, _message(exc), "FAIL"))
                continue
            new.append(len(self.started))
            self.started.append((trial, spec))
            self.built.append(schedule)
            self.hooks.append(_reporter(self.cfg, trial))
        if new:
            # The trials' MLflow runs are created in the writer process while they train.
            future = self.tracker.start_trials(
                self.cfg.name, [(self.started[i][0].number, self.started[i][1].scheduler) for i in new]
            )
            self.runs += [(future, place) for place in range(len(new))]
        return new

    def conclude(self, i: int, result: TrialResult | BaseException) -> None:
        self.ready.append((i, result))
        self.tell_ready(wait=False)

    def tell_ready(self, wait: bool) -> None:
        waiting = []
        for i, outcome in self.ready:
            run_id = self._run_id(i, wait)
            if run_id is None:
                waiting.append((i, outcome))
                continue
            trial, spec = self.started[i]
            if isinstance(outcome, BaseException):
                self._told(_fail(self.study, self.tracker, trial, run_id, _message(outcome), "FAIL"))
            else:
                self._told(_finish(self.cfg, self.study, self.tracker, trial, spec, run_id, outcome))
        self.ready = waiting

    def _run_id(self, i: int, wait: bool) -> str | None:
        future, place = self.runs[i]
        if not wait and not future.done():
            return None
        ids = future.result()
        if id(future) not in self.named:
            self.named.add(id(future))
            for (trial, _), (f, j) in zip(self.started, self.runs, strict=True):
                if f is future:
                    trial.set_user_attr("mlflow_run_id", ids[j])
        return str(ids[place])

    def _told(self, frozen: optuna.trial.FrozenTrial) -> None:
        self.told.add(frozen.number)
        self.on_told(frozen)

    def epoch(self, i: int, metrics: EpochMetrics) -> bool:
        """Trial i's epoch ended: report it (True: prune it). Finished trials' writes go to the writer now if
        it has no runs to create."""
        self.tracker.pump()
        return self.hooks[i](metrics)

    def refill(self, free: int, more: Callable[[int], int]) -> list[int]:
        """Start at most ``free`` trials in the places of ended ones, ``more(free)`` of them. Every trial
        that has ended is told first (waiting, if it must, for the writer to create their runs): what the
        sampler knows at each ask, and so the study, does not depend on the writer's speed."""
        self.tell_ready(wait=True)
        n = more(free)
        return self.start(n) if n > 0 else []

    def run(self, task: Task, k: int, more: Callable[[int], int] | None) -> None:
        """Start k trials, train them, tell them. ``more(free)``: how many trials to start in the places of
        members that ended (the population engine, one optimizer); None: none join."""
        try:
            self.start(k)
            results = _train(self.cfg, task, self, more)
            waiting = {i for i, _ in self.ready}
            self.ready += [
                (i, result)
                for i, result in enumerate(results)
                if self.started[i][0].number not in self.told and i not in waiting  # failures
            ]
            self.tell_ready(wait=True)
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):
                self.tell_ready(wait=True)  # the results that were final before the interrupt
            for trial in self.asked:
                if trial.number not in self.told:
                    i = next((j for j, (t, _) in enumerate(self.started) if t is trial), None)
                    run_id = self._run_id(i, wait=True) if i is not None else None
                    _fail(self.study, self.tracker, trial, run_id, "interrupted by the user", "KILLED")
            raise
        except BaseException as exc:
            self._fail_untold(f"the study stopped: {_message(exc)}")
            raise

    def _fail_untold(self, why: str) -> None:
        """The study stops on an error (its own, the storage's or the MLflow writer's): the trials it had
        asked and not told are failed, none left RUNNING, first in Optuna and then, where the writer had
        created their runs and still answers, in MLflow. What fails here too (a storage or writer that is
        down) is left to the next run of the study, which closes what a dead process left behind."""
        runs: dict[int, str] = {}
        # Not strict: a round stopped while its runs were being asked for has started trials without runs.
        for (trial, _), (future, place) in zip(self.started, self.runs, strict=False):
            with contextlib.suppress(BaseException):  # a run that was not (or could not be) created
                if future.done() and future.exception() is None:
                    runs[trial.number] = str(future.result()[place])
        untold = [trial for trial in self.asked if trial.number not in self.told]
        for trial in untold:
            with contextlib.suppress(Exception):
                _fail(self.study, self.tracker, trial, None, why, "FAIL")
        with contextlib.suppress(Exception):
            for trial in untold:
                if trial.number in runs:
                    self.tracker.submit("close_run", runs[trial.number], "FAIL", why)


def _train(
    cfg: StudyConfig, task: Task, rnd: _Round, more: Callable[[int], int] | None
) -> list[TrialResult | Exception]:
    """Train the round's started trials; an exception is returned in the place of the trial it belongs to.
    Each trial whose training ended with a result is concluded (told) as it ends. The population engine
    trains on the schedules built when the trials started and, given ``more``, takes new trials in the
    places of members that ended; the reference trainer builds its own optimizer and scheduler."""
    if not rnd.started:
        return []
    from bench.engine import train
    from bench.population import Joiner, Population, train_population

    cfgs = [train_config(cfg, spec) for _, spec in rnd.started]
    if cfg.training.engine == "population":
        own: list[Exception] = []  # the study's own bookkeeping failed: that stops the study

        def done(i: int, result: TrialResult) -> None:
            try:
                rnd.conclude(i, result)
            except Exception as exc:
                own.append(exc)
                raise

        def refill(free: int) -> list[Joiner]:
            assert more is not None
            try:
                new = rnd.refill(free, more)
            except Exception as exc:
                own.append(exc)
                raise
            return [(i, train_config(cfg, rnd.started[i][1]), rnd.built[i]) for i in new]

        try:
            if more is None:  # one population per group of trials that can share one
                return list(train_population(task, cfgs, on_epoch=rnd.epoch, built=rnd.built, on_done=done))
            return list(Population(task, cfgs, rnd.built).train(rnd.epoch, done, refill))
        except Exception as exc:  # an error that is no single trial's: the round fails, the study goes on
            if own:
                raise
            return [exc for _ in rnd.started]
    out: list[TrialResult | Exception] = []
    for i, c in enumerate(cfgs):
        try:
            result = train(task, c, on_epoch=functools.partial(rnd.epoch, i))
        except Exception as exc:  # one trial's error never loses the others
            out.append(exc)
            continue
        out.append(result)
        rnd.conclude(i, result)
    return out


def _finish(
    cfg: StudyConfig,
    study: optuna.Study,
    tracker: Any,
    trial: optuna.Trial,
    spec: TrialSpec,
    run_id: str,
    result: TrialResult,
) -> optuna.trial.FrozenTrial:
    # One user attribute for the whole result: one storage write, not one per value (a round trip each on
    # an RDB storage).
    summary: dict[str, Any] = {
        "optimizer": spec.optimizer,  # also when fixed (then it is no Optuna parameter)
        "lr": spec.lr,
        "seed": spec.seed,
        "scheduler_args": json.dumps(result.scheduler_args),
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "epochs_run": result.epochs_run,
        "seconds": round(result.seconds, 4),
        "best_val_accuracy": result.best_val_accuracy,
        "final_val_accuracy": result.val_accuracy[-1] if result.val_accuracy else math.nan,
        "best_val_loss": result.best_val_loss,
        "final_val_loss": result.val_loss[-1] if result.val_loss else math.nan,
    }
    failure = None
    if result.diverged:
        # Never the best, and the study goes on: a diverged trial is pruned with its reason stored.
        failure = f"diverged: non-finite loss at step {result.diverged_step}"
        trial.set_user_attr("failure", failure)
        state, value = TrialState.PRUNED, None
    elif result.stopped_early:
        state, value = TrialState.PRUNED, None
    else:
        state, value = TrialState.COMPLETE, _objective(cfg, result)
    trial.set_user_attr(
        "result", {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}
    )
    tracker.finish_trial(run_id, state.name, mlflow_params(cfg, spec, result), result, failure)
    return study.tell(trial, value, state=state)


def _fail(
    study: optuna.Study, tracker: Any, trial: optuna.Trial, run_id: str | None, why: str, mlflow_state: str
) -> optuna.trial.FrozenTrial:
    trial.set_user_attr("failure", why)
    frozen = study.tell(trial, state=TrialState.FAIL)
    if run_id is not None:
        tracker.close_run(run_id, mlflow_state, why)
    return frozen


# --- reading a study back (for reports; no training) ---------------------------------------------------


@dataclass
class StoredStudy:
    records: list[dict[str, Any]]  # every trial as a plain record
    direction: str
    parent_run_id: str | None


def load_trials(cfg: StudyConfig, loc: Locations) -> StoredStudy:
    """Every trial of a stored study as plain records (what reports read)."""
    if "://" not in loc.storage and not Path(loc.storage).is_file():
        raise UserError(f"no study storage at {loc.storage}; run `lrbench study` first")
    storage = open_storage(loc.storage)
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        raise UserError(
            f"no study named {cfg.name!r} in {shown(loc.storage)}; run `lrbench study` first"
        ) from None
    records = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": dict(t.params),
            "user_attrs": dict(t.user_attrs),
        }
        for t in study.get_trials(deepcopy=False)
        if SURPLUS not in t.user_attrs
    ]
    return StoredStudy(records, study.direction.name.lower(), study.user_attrs.get("mlflow_parent_run_id"))
