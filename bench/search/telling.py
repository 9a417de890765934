"""A trial's end: what is told to Optuna, stored on the trial, and handed to the MLflow writer.

The names of the trial's user attributes are DESIGN.md's: ``mlflow_run_id``, ``failure`` where set, and
lrbench's ``result`` (one attribute for the whole result: one storage write, not one per value, which is a
round trip each on an RDB storage).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.config import StudyConfig
from bench.search.space import TrialSpec
from bench.tracking.writer import Writer
from bench.train import EpochMetrics, TrialResult

RUN_ID = "mlflow_run_id"  # trial user attribute: the trial's MLflow run
FAILURE = "failure"  # trial user attribute: why it failed, diverged or stopped
RESULT = "result"  # trial user attribute: the trial's results (bench.report reads them)
SURPLUS = "surplus"  # trial user attribute: asked past the study's total (see bench.search.workers.surplus)
PARENT_RUN = "mlflow_parent_run_id"  # study user attribute: the study's MLflow parent run


def run_params(cfg: StudyConfig, spec: TrialSpec, result: TrialResult | None) -> dict[str, Any]:
    """DESIGN.md's params: the family, every argument it was built with (derived ones too) named
    ``<family>.<arg>`` as leaderboard.csv's columns are, the rest. The base LR is ``base_lr``: ``lr`` is the
    metric of the LR curve, and a param of the same name would stand beside it in MLflow's compare view.

    What a run needs to be trained again from its record alone (``lrbench replay``) is there too: the
    optimizer's momentum and weight decay, the split's seed (a confirmation run's is its own), the engine
    (a study resumed with another one keeps the same definition otherwise), the steps per epoch the
    schedule spans, and the device and torch version it was trained with (a replay elsewhere may differ in
    the last bits, and says why)."""
    t = cfg.training
    params: dict[str, Any] = {
        "scheduler": spec.scheduler,
        "optimizer": spec.optimizer,
        "base_lr": spec.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "seed": spec.seed,
        "dataset": cfg.task.name,
        "split_seed": cfg.task.split_seed if spec.split_seed is None else spec.split_seed,
        "engine": t.engine,
    }
    if result is not None:
        params.update(
            steps_per_epoch=result.steps_per_epoch,
            device=result.device,
            torch_version=_torch_version(),
            # CPU kernels split their sums by thread: a replay with another count differs in the last bits.
            torch_threads=_torch_threads(),
        )
    args = result.scheduler_args if result is not None else spec.scheduler_args
    params.update({f"{spec.scheduler}.{k}": v for k, v in args.items()})
    return params


@functools.cache
def _torch_version() -> str:
    import torch  # imported already: the trial was trained

    return str(torch.__version__)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _curve(cfg: StudyConfig, result: TrialResult) -> list[float]:
    """The objective's validation curve: the loss, or the task's score (accuracy, RMSE)."""
    return result.val_loss if cfg.objective.metric == "val_loss" else result.val_score


def objective(cfg: StudyConfig, result: TrialResult) -> float:
    """The trial's value: its objective's last epoch, or its best in the study's direction."""
    values = _curve(cfg, result)
    if cfg.objective.reduce == "final":
        return values[-1]
    return max(values) if cfg.direction == "maximize" else min(values)


def reporter(cfg: StudyConfig, trial: optuna.Trial) -> Callable[[EpochMetrics], bool]:
    """Per-epoch hook: report the objective's metric to Optuna and ask its pruner (which compares it in
    the study's direction)."""
    use_loss = cfg.objective.metric == "val_loss"
    prunes = cfg.optuna.pruner != "none"
    every, last = cfg.optuna.report_every, cfg.training.epochs - 1

    def report(m: EpochMetrics) -> bool:
        if (m.epoch + 1) % every and m.epoch != last:
            return False  # intermediate values are stored (and pruning decided) every `every` epochs
        trial.report(m.val_loss if use_loss else m.val_score, m.epoch)
        return prunes and trial.should_prune()

    return report


def finish(
    cfg: StudyConfig,
    study: optuna.Study,
    writer: Writer,
    trial: optuna.Trial,
    spec: TrialSpec,
    run_id: str,
    result: TrialResult,
    curve: bool = False,
) -> optuna.trial.FrozenTrial:
    """A trained trial: COMPLETE with its objective, or PRUNED (stopped, or diverged with its reason).
    ``curve``: its objective's validation curve is stored with its result (``val_curve``). The score's
    values are stored under its name (``test_accuracy``, ``best_val_rmse``, ...), as the CSVs name them."""
    score = result.score
    summary: dict[str, Any] = {
        "optimizer": spec.optimizer,  # also when fixed (then it is no Optuna parameter)
        "lr": spec.lr,
        "seed": spec.seed,
        "scheduler_args": json.dumps(result.scheduler_args),
        f"test_{score}": result.test_score,
        "test_loss": result.test_loss,
        "epochs_run": result.epochs_run,
        "seconds": round(result.seconds, 4),
        f"best_val_{score}": result.best_val_score,
        f"final_val_{score}": result.val_score[-1] if result.val_score else math.nan,
        "best_val_loss": result.best_val_loss,
        "final_val_loss": result.val_loss[-1] if result.val_loss else math.nan,
    }
    if curve:
        summary["val_curve"] = [v if math.isfinite(v) else None for v in _curve(cfg, result)]
    failure = None
    if result.diverged:
        # Never the best, and the study goes on: a diverged trial is pruned with its reason stored.
        failure = f"diverged: non-finite loss at step {result.diverged_step}"
        trial.set_user_attr(FAILURE, failure)
        state, value = TrialState.PRUNED, None
    elif result.stopped_early:
        state, value = TrialState.PRUNED, None
    else:
        state, value = TrialState.COMPLETE, objective(cfg, result)
    trial.set_user_attr(
        RESULT, {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}
    )
    writer.finish_trial(run_id, state.name, run_params(cfg, spec, result), result, failure)
    return study.tell(trial, value, state=state)


def fail(
    study: optuna.Study, writer: Writer, trial: optuna.Trial, run_id: str | None, why: str, mlflow_state: str
) -> optuna.trial.FrozenTrial:
    """A trial that did not end with a result: FAIL with its reason, its run closed (and waited for)."""
    trial.set_user_attr(FAILURE, why)
    frozen = study.tell(trial, state=TrialState.FAIL)
    if run_id is not None:
        writer.close_run(run_id, mlflow_state, why).result()
    return frozen


def message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
