"""A round: the trials one worker trains together, as one population (or, with the reference engine, one
after the other).

Trials are asked at the start and, where the population refills, whenever members end; each is sampled,
its schedule built, its MLflow run created in the writer (the ids come back while it trains), then trained
and told. A trial is told, and its MLflow writes handed over, as soon as its result is final and the writer
has created its run (the id goes on the trial first): a pruned member's writes then overlap the others'
training rather than queue behind the whole population. Training never waits for the writer.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import TrialState

from bench.config import StudyConfig
from bench.data import Task
from bench.search.opening import OpenedStudy
from bench.search.space import TrialSpec, train_config
from bench.search.telling import RUN_ID, SURPLUS, fail, finish, message, reporter
from bench.search.workers import WORKER, surplus
from bench.tracking.writer import Writer
from bench.train import EpochMetrics, TrialResult
from bench.train import train as train_reference

# The population engine imports torch (2 s here): reading a stored study back (lrbench export) imports
# this package without training, so the engine is imported where trials start.
if TYPE_CHECKING:
    from bench.train.population import Joiner, ProxySchedule

Told = Callable[[optuna.trial.FrozenTrial], None]
More = Callable[[int], int]  # how many trials to start in the places of members that ended, given how many


class Source(Protocol):
    """Where a round's trials come from: the search's studies, or the confirmation's cells."""

    stage: str  # the MLflow runs' stage tag
    # Each epoch's objective reported to Optuna (and pruning asked); else the run's validation curve is
    # stored with its result, in one write.
    reports: bool

    def ask(self, k: int) -> list[optuna.Trial]:
        """At most k new trials to train (those asked past a total are told as surplus, not returned)."""
        ...

    def draw(self, trial: optuna.Trial) -> TrialSpec:
        """What a trial just asked trains (an exception: this trial's own problem)."""
        ...


def _never_prune(metrics: EpochMetrics) -> bool:
    return False


def _key(trial: optuna.Trial) -> tuple[str, int]:
    """A trial's identity in a round: several studies (the families') number their trials from 0."""
    return trial.study.study_name, trial.number


def ask_places(opened: OpenedStudy, k: int, target: int, me: str) -> list[optuna.Trial]:
    """k trials of the study, but those past its ``target`` (another worker asked its last trials at the
    same moment: see bench.search.workers.surplus), which are told FAIL at once, never trained."""
    asked = opened.ask(k, {WORKER: me})
    past = surplus(opened.study, asked, target)
    out = []
    for trial in asked:
        if trial.user_attrs.get(WORKER) != me:  # a trial another worker stored (see OpenedStudy.ask)
            trial.set_user_attr(WORKER, me)
        if trial.number in past:
            trial.set_user_attr(SURPLUS, f"the study had its {target} trials when this one was asked")
            opened.study.tell(trial, state=TrialState.FAIL)  # reports leave it out
            continue
        out.append(trial)
    return out


@dataclass
class _Runs:
    """The MLflow runs of trials started together, created by the writer while they train."""

    future: Future[list[str]]
    trials: list[optuna.Trial]
    named: int = 0  # the first trials that have their run's id stored

    def ids(self, wait: bool) -> list[str] | None:
        """The runs' ids, stored on their trials the first time they are read; None if not yet made and
        ``wait`` is False. Interrupted while it stores them (a second Ctrl-C), the next read stores the
        rest: every trial has its run's id before it is told."""
        if not wait and not self.future.done():
            return None
        ids = self.future.result()
        while self.named < len(ids):
            self.trials[self.named].set_user_attr(RUN_ID, ids[self.named])
            self.named += 1
        return ids


@dataclass
class _Started:
    """A trial this round trains."""

    trial: optuna.Trial
    spec: TrialSpec
    schedule: ProxySchedule  # built once, trained with
    report: Callable[[EpochMetrics], bool]
    runs: _Runs | None = None  # its run's batch, once asked for
    place: int = 0  # its place in that batch
    outcome: TrialResult | BaseException | None = None  # final

    def run_id(self, wait: bool) -> str | None:
        ids = self.runs.ids(wait) if self.runs is not None else None
        return None if ids is None else ids[self.place]


@dataclass
class Round:
    cfg: StudyConfig
    source: Source
    writer: Writer
    steps_per_epoch: int
    on_told: Told
    asked: list[optuna.Trial] = field(default_factory=list)
    started: list[_Started] = field(default_factory=list)
    ready: list[_Started] = field(default_factory=list)  # final, waiting for their runs to be told
    told: set[tuple[str, int]] = field(default_factory=set)  # the trials' keys (_key)

    def run(self, task: Task, k: int, more: More | None) -> None:
        """Start k trials, train them, tell them. ``more(free)``: how many trials to start in the places of
        members that ended (the population engine, one optimizer); None: none join."""
        try:
            self._start(k)
            for s, outcome in zip(self.started, self._train(task, more), strict=True):
                if s.outcome is None and _key(s.trial) not in self.told:  # failures
                    s.outcome = outcome
                    self.ready.append(s)
            self._tell_ready(wait=True)
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):
                self._tell_ready(wait=True)  # the results that were final before the interrupt
            for trial in self._untold():
                mine = next((s for s in self.started if s.trial is trial), None)
                run_id = mine.run_id(wait=True) if mine is not None else None
                fail(trial.study, self.writer, trial, run_id, "interrupted by the user", "KILLED")
            raise
        except BaseException as exc:
            self._fail_untold(f"the study stopped: {message(exc)}")
            raise

    def _start(self, k: int) -> list[_Started]:
        """Ask k trials and start them (a trial whose arguments fail fails alone, at once)."""
        from bench.train.population import proxy_schedule

        new: list[_Started] = []
        for trial in self.source.ask(k):
            self.asked.append(trial)
            try:
                spec = self.source.draw(trial)
                # Built here, so that bad arguments fail this trial alone, not the population.
                schedule = proxy_schedule(train_config(self.cfg, spec), self.steps_per_epoch)
            except Exception as exc:  # this trial's own problem: it fails alone
                self._told(trial, fail(trial.study, self.writer, trial, None, message(exc), "FAIL"))
                continue
            report = reporter(self.cfg, trial) if self.source.reports else _never_prune
            new.append(_Started(trial, spec, schedule, report))
        self.started += new
        if new:
            # The trials' MLflow runs are created in the writer process while they train (a run is tagged
            # with its trial's study and number: the families' studies each number from 0).
            future = self.writer.start_trials(
                [(s.trial.study.study_name, s.trial.number, s.spec.scheduler) for s in new], self.source.stage
            )
            runs = _Runs(future, [s.trial for s in new])
            for place, s in enumerate(new):
                s.runs, s.place = runs, place
        return new

    def _conclude(self, s: _Started, result: TrialResult) -> None:
        s.outcome = result
        self.ready.append(s)
        self._tell_ready(wait=False)

    def _tell_ready(self, wait: bool) -> None:
        """Tell the trials whose outcome is final and whose run the writer has created (waiting for the
        writer, if ``wait``), in the order they ended."""
        waiting = []
        for s in self.ready:
            run_id = s.run_id(wait)
            if run_id is None:
                waiting.append(s)
                continue
            assert s.outcome is not None
            study = s.trial.study
            if isinstance(s.outcome, BaseException):
                self._told(s.trial, fail(study, self.writer, s.trial, run_id, message(s.outcome), "FAIL"))
            else:
                curve = not self.source.reports
                told = finish(self.cfg, study, self.writer, s.trial, s.spec, run_id, s.outcome, curve)
                self._told(s.trial, told)
        self.ready = waiting

    def _told(self, trial: optuna.Trial, frozen: optuna.trial.FrozenTrial) -> None:
        self.told.add(_key(trial))
        self.on_told(frozen)

    def _untold(self) -> list[optuna.Trial]:
        return [trial for trial in self.asked if _key(trial) not in self.told]

    def _epoch(self, s: _Started, metrics: EpochMetrics) -> bool:
        """A trial's epoch ended: report it (True: prune it). Finished trials' writes go to the writer now if
        it has no runs to create."""
        self.writer.pump()
        return s.report(metrics)

    def _refill(self, free: int, more: More) -> list[_Started]:
        """Start at most ``free`` trials in the places of ended ones, ``more(free)`` of them. Every trial
        that has ended is told first (waiting, if it must, for the writer to create their runs): what the
        sampler knows at each ask, and so the study, does not depend on the writer's speed."""
        self._tell_ready(wait=True)
        n = more(free)
        return self._start(n) if n > 0 else []

    def _train(self, task: Task, more: More | None) -> list[TrialResult | Exception]:
        """Train the started trials; an exception is returned in the place of the trial it belongs to. Each
        trial whose training ended with a result is concluded (told) as it ends. The population engine
        trains on the schedules built when the trials started and, given ``more``, takes new trials in the
        places of members that ended; the reference trainer builds its own optimizer and scheduler."""
        if not self.started:
            return []
        started = list(self.started)
        cfgs = [train_config(self.cfg, s.spec) for s in started]
        if self.cfg.training.engine != "population":
            out: list[TrialResult | Exception] = []
            for s, c in zip(started, cfgs, strict=True):
                try:
                    result = train_reference(task, c, on_epoch=functools.partial(self._epoch, s))
                except Exception as exc:  # one trial's error never loses the others
                    out.append(exc)
                    continue
                out.append(result)
                self._conclude(s, result)
            return out
        from bench.train.population import Joiner, Population, train_population

        own: list[Exception] = []  # the study's own bookkeeping failed: that stops the study

        def epoch(i: int, metrics: EpochMetrics) -> bool:
            return self._epoch(self.started[i], metrics)

        def done(i: int, result: TrialResult) -> None:
            try:
                self._conclude(self.started[i], result)
            except Exception as exc:
                own.append(exc)
                raise

        def refill(free: int) -> list[Joiner]:
            assert more is not None
            try:
                new = self._refill(free, more)
            except Exception as exc:
                own.append(exc)
                raise
            first = len(self.started) - len(new)
            return [Joiner(first + j, train_config(self.cfg, s.spec), s.schedule) for j, s in enumerate(new)]

        schedules = [s.schedule for s in started]
        try:
            if more is None:  # one population per group of trials that can share one
                return list(train_population(task, cfgs, on_epoch=epoch, built=schedules, on_done=done))
            return list(Population(task, cfgs, schedules).train(epoch, done, refill))
        except Exception as exc:  # an error that is no single trial's: the round fails, the study goes on
            if own:
                raise
            return [exc for _ in self.started]

    def _fail_untold(self, why: str) -> None:
        """The study stops on an error (its own, the storage's or the MLflow writer's): the trials it had
        asked and not told are failed, none left RUNNING, first in Optuna and then, where the writer had
        created their runs and still answers, in MLflow. What fails here too (a storage or writer that is
        down) is left to the next run of the study, which closes what a dead process left behind."""
        runs: dict[tuple[str, int], str] = {}
        for s in self.started:
            with contextlib.suppress(BaseException):  # a run that was not (or could not be) created
                if s.runs is not None and s.runs.future.done() and s.runs.future.exception() is None:
                    runs[_key(s.trial)] = s.runs.future.result()[s.place]
        untold = self._untold()
        for trial in untold:
            with contextlib.suppress(Exception):
                fail(trial.study, self.writer, trial, None, why, "FAIL")
        with contextlib.suppress(Exception):
            for trial in untold:
                if _key(trial) in runs:
                    self.writer.close_run(runs[_key(trial)], "FAIL", why)
