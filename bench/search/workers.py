"""Who runs a trial: telling a dead worker's trials from a live one's, reclaiming what a killed process left
RUNNING, and the places each trial holds in a study's total when several workers share it.

A trial's ``worker`` attribute names its process (host, pid and the process's start time, so that a
recycled pid is told apart). Optuna's heartbeats would do this job on an RDB storage, but its journal
storage (the embedded default) has none, and a dead process on this machine is known dead at once, where a
heartbeat needs a grace period.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench.search.telling import FAILURE, RUN_ID
from bench.tracking.client import now_ms
from bench.tracking.writer import Writer

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
WORKER = "worker"  # user attribute: the process that runs the trial
DIED = "worker process died (killed?)"


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


@dataclass
class Reclaimed:
    closed: int = 0  # trials a dead process left RUNNING, failed
    sent: int = 0  # finished trials sent to MLflow from the spool


def reclaim(study: optuna.Study, storage: optuna.storages.BaseStorage, writer: Writer, uid: str) -> Reclaimed:
    """Close what a killed process left behind: its RUNNING trials become FAIL (trials of live workers are
    left alone), as do the trials it stored and had not yet asked (WAITING; not counted). Then, in the
    background, the writer sends what the spool kept of the study's finished trials, and closes the
    study's (``uid``) MLflow runs to match their trials (see Tracker.close_orphans)."""
    closed = 0
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if worker_alive(trial.user_attrs.get(WORKER)) is False:
            # Another process's trial: Optuna's Trial object belongs to the process that asked it, so the
            # attribute goes through the storage's own API.
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, "failure", DIED)
            if trial.state == TrialState.WAITING:  # stored, not yet asked (see OpenedStudy.ask)
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
                continue
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            closed += 1
    read_at = now_ms()
    trials = study.get_trials(deepcopy=False)

    def runs(*states: TrialState) -> set[str]:
        return {t.user_attrs[RUN_ID] for t in trials if t.state in states and RUN_ID in t.user_attrs}

    sent = writer.replay_spool(send=runs(*COUNTED), drop=runs(TrialState.FAIL))
    states = {
        str(t.number): (t.state.name, t.user_attrs.get(RUN_ID), t.user_attrs.get(FAILURE)) for t in trials
    }
    writer.close_orphans(uid, study.study_name, states, read_at)
    return Reclaimed(closed, sent)


def counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def holds_a_place(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that counts toward the study's total: ended COMPLETE or PRUNED, or running in a worker that
    may be alive (another host's, or one just asked that has no worker yet)."""
    if t.state in COUNTED:
        return True
    return t.state == TrialState.RUNNING and worker_alive(t.user_attrs.get(WORKER)) is not False


def surplus(study: optuna.Study, asked: list[optuna.Trial], target: int) -> set[int]:
    """The numbers of the trials just asked that are past the study's total. Workers that ask at the same
    moment each find places free; a storage's one step that no two workers take at once is the ask itself,
    which numbers the trials in order. So a trial is surplus when ``target`` trials before it hold a place,
    read after the asks: which of them it is does not depend on the timing."""
    if not asked:
        return set()
    mine = {t.number for t in asked}
    held, past = 0, set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.number in mine and held >= target:
            past.add(t.number)
        elif holds_a_place(t):
            held += 1
    return past
