"""Running a study: this worker's loop of rounds until the study has its trials, with the MLflow writer,
the progress shown, and what a killed process left behind reclaimed first."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from bench.config import Locations, StudyConfig
from bench.errors import UserError
from bench.search.confirm import cells_left, confirming_elsewhere, run_confirmation, search_is_settled
from bench.search.opening import creator_alive, open_study
from bench.search.progress import Progress
from bench.search.round import Round
from bench.search.storage import flush_journals
from bench.search.studies import Search, open_search
from bench.search.telling import PARENT_RUN
from bench.search.workers import COUNTED, counted, reclaim, worker_id
from bench.tracking.writer import Writer

if TYPE_CHECKING:
    from bench.data import Task

PARENT_WAIT = 30.0  # seconds a worker that joins a new study waits for the parent run its creator makes


@dataclass
class Outcome:
    ran: int  # search trials this process finished
    interrupted: bool = False
    confirmed: int = 0  # confirmation runs this process finished
    # The study has ended in this process: its search reached its trials and every confirmation cell has
    # an ended run (False where another worker still searches or confirms, the timeout stopped the search,
    # or a cell's run failed: the next run of the study trains it).
    complete: bool = False


def run_study(
    cfg: StudyConfig,
    loc: Locations | None = None,
    n_trials: int | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    writer: Writer | None = None,
    on_loaded: Callable[[], None] | None = None,
) -> Outcome:
    """Run (or resume) a study until COMPLETE + PRUNED trials reach ``n_trials`` (the study's own by
    default), or its timeout. ``loc``: where its results go (the study's ``output`` by default).

    ``writer``: the study's MLflow writer, where the caller started it (it is left open for the caller);
    one made here is closed.
    ``on_loaded`` is called once the study has loaded what it works with, before its first trial (the
    command resumes the garbage collector there)."""
    loc = loc or Locations.resolve(cfg)
    target = n_trials or cfg.optuna.n_trials
    own = writer is None
    writer = writer or Writer(loc.tracking_uri, cfg.name, loc.spool(cfg))
    import torch

    from bench.data import load_task
    from bench.train import resolve_device

    threads = torch.get_num_threads()
    try:
        device = resolve_device(cfg.training.device)
        if device.type == "cpu":
            _leave_a_core_to_the_writer()
        task = load_task(cfg.task, device)
        cfg = engine_for(cfg, task)
        search = open_search(cfg, loc, target, math.ceil(len(task.y_train) / cfg.training.batch_size))
        if on_loaded is not None:
            on_loaded()
        return _Worker(cfg, loc, search, writer, task, on_trial).run()
    finally:
        torch.set_num_threads(threads)  # a caller in the same process gets its threads back
        try:
            flush_journals()  # reports still held (a study stopped by an error): the CLI exits by os._exit
        finally:
            if own:
                writer.close()


def _leave_a_core_to_the_writer() -> None:
    """Training on the CPU takes one core fewer than there are: the MLflow writer process works beside it
    all study long, and torch's threads wait on each other when one of them shares a core (measured on 2
    cores: a population of 13 trains in 0.6 s on one thread or on two, but in 3.3 s on two threads while
    another process keeps a core busy)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - 1)))


def engine_for(cfg: StudyConfig, task: Task) -> StudyConfig:
    """The study as it trains: a model that torch.func cannot batch falls back from the population engine
    to the reference engine (one trial at a time), said in one line. The results are the same either way
    (the engines' contract tests); only the time differs."""
    if cfg.training.engine != "population":
        return cfg
    from bench.train.population import fallback_line

    line = fallback_line(task, cfg.model)
    if line is None:
        return cfg
    print(line, file=sys.stderr)
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, engine="reference"))


def population_size(cfg: StudyConfig, task: Task, target: int) -> int:
    """Trials trained at once: a population's places. The reference engine trains one at a time. The
    population engine takes the study's setting, or else what fits the device, but no more than an eighth
    of the study, so that most trials are sampled knowing the results of many others (a refilled
    population asks a trial whenever a place frees; the first places are filled before any result)."""
    if cfg.training.engine != "population":
        return 1
    if cfg.training.population_size:
        return cfg.training.population_size
    from bench.train.population import auto_population_size

    fits = auto_population_size(task, cfg.model, cfg.training.batch_size)
    return max(1, min(fits, math.ceil(target / 8)))


class _Worker:
    """This process's part of a study: rounds of trials until the study has its total."""

    def __init__(
        self,
        cfg: StudyConfig,
        loc: Locations,
        search: Search,
        writer: Writer,
        task: Task,
        on_trial: Callable[[optuna.trial.FrozenTrial], None] | None,
    ):
        self.cfg, self.loc, self.search, self.writer = cfg, loc, search, writer
        self.opened, self.study = search.main, search.main.study  # the study's own attributes
        self.task, self.on_trial = task, on_trial
        self.total = search.target * len(search.parts)
        self.steps_per_epoch = search.steps_per_epoch
        self.better = min if self.study.direction == optuna.study.StudyDirection.MINIMIZE else max
        self.outcome = Outcome(ran=0)
        self.failures = 0
        self.best: float | None = None
        self.deadline = time.monotonic() + cfg.optuna.timeout if cfg.optuna.timeout else math.inf
        self.parent: Future[str] | None = None
        self.progress: Progress | None = None

    def run(self) -> Outcome:
        cfg, search = self.cfg, self.search
        reclaimed = [reclaim(p.study, p.storage, self.writer, p.uid) for p in search.parts.values()]
        sent = sum(r.sent for r in reclaimed)
        if sent:
            print(f"sent {sent} trial(s) to MLflow that an earlier run kept in its spool", file=sys.stderr)
        closed = sum(r.closed for r in reclaimed)
        if closed:
            print(f"closed {closed} trial(s) left RUNNING by a process that died", file=sys.stderr)
        self.parent = self._open_parent()
        self.writer.log_parent_artifacts(text={"study.yaml": cfg.to_yaml()})
        batch = population_size(cfg, self.task, self.total)
        done = sum(counted(p.study) for p in search.parts.values())
        self.progress = Progress(self.total, done, cfg.name)
        # The population refills (new trials take the places of members that end) where all trials can
        # share one population: one optimizer (architecture, batch size and epochs are the study's own).
        refills = cfg.training.engine == "population" and len(cfg.training.optimizer) == 1
        me = search.me = worker_id()
        try:
            while time.monotonic() < self.deadline:
                k = self._wanted(batch)
                if k <= 0:
                    break
                self.best = self._best_value()
                rnd = Round(cfg, search, self.writer, self.steps_per_epoch, self._show)
                rnd.run(self.task, k, self._more if refills else None)
                self._store_parent(wait=False)
                if self.failures >= cfg.optuna.max_failures:
                    raise UserError(
                        f"{self.failures} trials failed in this run (see their `failure`); stopping"
                    )
            self.progress.close()
            self._confirm(me)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        except BaseException:
            self._close("FAILED")
            raise
        self._close("KILLED" if self.outcome.interrupted else "FINISHED")
        return self.outcome

    def _confirm(self, me: str) -> None:
        """The confirmation stage, once the search has ended in every worker (the last to end runs it)."""
        trials = self.search.trials()
        if not self.cfg.confirm.seeds:
            self.outcome.complete = search_is_settled(trials) and time.monotonic() < self.deadline
            return
        if not search_is_settled(trials):
            print(
                "the search is still running in another worker: the last worker to end it confirms",
                file=sys.stderr,
            )
            return
        if time.monotonic() >= self.deadline:
            print("the search stopped at its timeout: no confirmation in this run", file=sys.stderr)
            return
        opened = dataclasses.replace(open_study(self.cfg, self.loc, stage="confirm"), uid=self.opened.uid)
        if confirming_elsewhere(opened.study):
            print("another worker is confirming: it trains the confirmation runs", file=sys.stderr)
            return
        self.outcome.confirmed = run_confirmation(
            self.cfg, trials, opened, self.writer, self.task.device, self.steps_per_epoch, me
        )
        self.outcome.complete = cells_left(self.cfg, trials, opened.study) == 0

    def _open_parent(self) -> Future[str]:
        """The writer opens the parent run while the first trials are sampled and trained. A worker that did
        not create the study and finds no parent stored on it takes the one another worker made: while no
        trial has ended and the study's creator lives, the creator may be making it now (workers that start
        together), so it waits."""
        attrs = self.study.user_attrs
        find = None
        if not self.opened.created and attrs.get(PARENT_RUN) is None:
            ended = any(t.state.is_finished() for t in self.search.trials())
            find = 0.0 if ended or not creator_alive(self.study) else PARENT_WAIT
        params = {"n_trials": self.total, "dataset": self.cfg.task.name, "budget": self.cfg.search.budget}
        return self.writer.open_parent(self.cfg.name, attrs.get(PARENT_RUN), params, self.opened.uid, find)

    def _store_parent(self, wait: bool) -> None:
        """Keep the parent run's id on the study, so that every later run of it reopens the same parent."""
        assert self.parent is not None
        if not wait and not self.parent.done():
            return
        run_id = self.parent.result()
        if self.study.user_attrs.get(PARENT_RUN) != run_id:
            self.study.set_user_attr(PARENT_RUN, run_id)

    def _close(self, status: str) -> None:
        assert self.progress is not None
        self.progress.close()
        self._store_parent(wait=True)
        self.writer.close_parent(status)

    def _show(self, frozen: optuna.trial.FrozenTrial) -> None:
        """Each trial as it is told: progress."""
        assert self.progress is not None
        self.outcome.ran += 1
        self.failures += frozen.state == TrialState.FAIL
        if frozen.state == TrialState.COMPLETE and frozen.value is not None:
            self.best = frozen.value if self.best is None else self.better(self.best, frozen.value)
        self.progress.update(self._line(frozen), self.best, frozen.state in COUNTED)
        if self.on_trial is not None:
            self.on_trial(frozen)

    def _line(self, t: optuna.trial.FrozenTrial) -> str:
        metric = self.cfg.objective.metric
        value = f"{metric}={t.value:.4f}" if t.value is not None else t.user_attrs.get("failure", "")
        return f"trial {t.number} {t.params.get('scheduler', '?')}: {t.state.name} {value}"

    def _wanted(self, free: int) -> int:
        """Trials to start now, at most ``free``: what the study still needs, counting every live worker's
        running trials (this one's too: those whose results are final count until they are told)."""
        if time.monotonic() >= self.deadline or self.failures >= self.cfg.optuna.max_failures:
            return 0
        return min(free, sum(self.search.needs().values()))

    def _more(self, free: int) -> int:
        self._store_parent(wait=False)
        self.best = self._best_value()  # this worker's and every other's so far
        return self._wanted(free)

    def _best_value(self) -> float | None:
        values = [
            t.value
            for p in self.search.parts.values()
            for t in p.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None
        ]
        return self.better(values) if values else None
