"""``lrbench replay RUN_ID``: train a finished trial again from its MLflow record alone and hold every
curve it recorded against the new one.

The trial is re-trained with the engine that trained it: the reference loop is exact and deterministic on
the CPU; a population member's last bits depend on its place among the members (see :func:`retrain`). A
pruned trial is stopped at the epoch it was stopped at; a diverged one is expected to diverge at the same
step. The answer: ``val/loss`` identical (exit 0), or by how much it differs and what may explain it
(exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.cli.recorded import RecordedTrial, read_trial, tracking_uri
from bench.data import Task
from bench.tracking.curves import compact_curve, expand_curve
from bench.tracking.names import LR, TEST_LOSS, TRAIN_LOSS, VAL_LOSS, score_key
from bench.train import EpochMetrics, TrialResult


@dataclass(frozen=True)
class Compared:
    """One curve, recorded against replayed: ``largest`` the largest absolute difference (at ``at``, a step
    or an epoch), ``relative`` the largest relative one; both 0 where the curves are identical."""

    key: str
    recorded: int  # points
    replayed: int
    identical: bool
    largest: float = 0.0
    relative: float = 0.0
    at: int | None = None

    def line(self) -> str:
        unit = "step" if self.key == LR else "value" if self.key.startswith("test/") else "epoch"
        if self.identical:
            count = f"{self.recorded} {unit}{'s' if self.recorded != 1 else ''}" if self.recorded else "none"
            return f"  {self.key:<14} identical ({count})"
        if self.recorded != self.replayed:
            return f"  {self.key:<14} recorded {self.recorded} {unit}(s), replayed {self.replayed}"
        where = f" at {unit} {self.at}" if unit != "value" else ""
        return f"  {self.key:<14} differs by up to {self.largest:.3g} (relative {self.relative:.3g}){where}"


def compare(key: str, recorded: Sequence[float], replayed: Sequence[float]) -> Compared:
    """Two curves, value for value (NaN equals NaN: a curve that was not finite there either)."""
    same = len(recorded) == len(replayed) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(recorded, replayed, strict=True)
    )
    if same:
        return Compared(key, len(recorded), len(replayed), True)
    largest, relative, at = 0.0, 0.0, None
    for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
        diff = abs(a - b) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
        if diff > largest or (at is None and diff > 0):
            largest, at = diff, i
        scale = max(abs(a), abs(b))
        relative = max(relative, diff / scale if scale else 0.0)
    return Compared(key, len(recorded), len(replayed), False, largest, relative, at)


def compare_lr(points: Sequence[tuple[int, float]], lrs: Sequence[float]) -> Compared:
    """The ``lr`` curve is recorded compactly (bench.tracking.curves): identical where the replayed LRs
    compact to the very points recorded; else compared step by step, the record expanded."""
    if compact_curve(lrs) == sorted(points):
        return Compared(LR, len(lrs), len(lrs), True)
    return compare(LR, expand_curve(points), lrs)


def curves(trial: RecordedTrial, result: TrialResult) -> list[Compared]:
    """Every curve the run recorded, against the replay's."""
    rec, score = trial.record, result.score
    out = [compare_lr(rec.curves.get(LR, []), result.lrs)]
    for key, values in (
        (TRAIN_LOSS, result.train_loss),
        (VAL_LOSS, result.val_loss),
        (score_key("val", score), result.val_score),
    ):
        out.append(compare(key, rec.values(key), values))
    for key, value in ((TEST_LOSS, result.test_loss), (score_key("test", score), result.test_score)):
        if key in rec.curves or not math.isnan(value):
            out.append(compare(key, rec.values(key), [] if math.isnan(value) else [value]))
    return out


@dataclass
class Replayed:
    """The replay's result, and for the population engine, the trial's place in the population that gave
    it (where it matters)."""

    result: TrialResult
    place: str = ""


def retrain(trial: RecordedTrial, task: Task, stop_after: int | None) -> Replayed:
    """Train the trial again with its engine, stopping after ``stop_after`` epochs (a pruned trial).

    The population engine computes a member's values in the last bits by one of two paths: torch's
    vectorised element-wise kernels (the loss and its gradient, say) leave a tensor's last few values to a
    scalar loop, so a member whose values fall there (the last row, at some sizes) gets other bits than
    one whose values do not. Which it was depends on how many trials trained with it and its row, which a
    run does not record. So the trial is trained in a population of two, itself and a twin copy (one
    population, two places), then alone where neither matches the record, and the place that agrees with
    the record best is taken (its val/loss first)."""
    from bench.train import train

    cfg = trial.train
    shown = _Shown(cfg.epochs if stop_after is None else stop_after)

    def stop(metrics: EpochMetrics, member: int = 0) -> bool:
        if member == 0:
            shown.epoch(metrics.epoch)
        return stop_after is not None and metrics.epoch + 1 >= stop_after

    try:
        if trial.engine == "reference":
            return Replayed(train(task, cfg, on_epoch=stop))
        from bench.train.population import train_population

        recorded = trial.record.values(VAL_LOSS)
        first, second = train_population(task, [cfg, cfg], on_epoch=lambda i, m: stop(m, i))
        places = [(first, "first of 2 members"), (second, "second of 2 members")]
        if all(r.val_loss != recorded for r, _ in places):
            places.append((train_population(task, [cfg], on_epoch=lambda i, m: stop(m, i))[0], "alone"))
        # The place that gives the recorded val/loss, and of those the most other curves (max() keeps the
        # first of equals).
        result, place = max(places, key=lambda rp: _agreement(trial, rp[0]))
        return Replayed(result, place)
    finally:
        shown.close()


def _agreement(trial: RecordedTrial, result: TrialResult) -> tuple[bool, int]:
    """How well a replay agrees with the record: its val/loss identical, then how many curves are."""
    compared = curves(trial, result)
    return next(c.identical for c in compared if c.key == VAL_LOSS), sum(c.identical for c in compared)


class _Shown:
    """The replay's progress on stderr: an epoch counter on a terminal, nothing in a log."""

    def __init__(self, epochs: int):
        self.epochs, self.tty = epochs, sys.stderr.isatty()

    def epoch(self, epoch: int) -> None:
        if self.tty:
            print(f"\r  epoch {epoch + 1}/{self.epochs}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def reasons(trial: RecordedTrial, result: TrialResult) -> list[str]:
    """What may make a replay differ from its record."""
    import torch

    params, out = trial.record.params, []
    device = params.get("device")
    if device is not None and device != result.device:
        out.append(f"recorded on {device}, replayed on {result.device}")
    threads = params.get("torch_threads")
    if device == "cpu" and threads is not None and int(threads) > torch.get_num_threads():
        out.append(
            f"recorded with {threads} CPU threads, replayed with {torch.get_num_threads()} (this machine's)"
        )
    version = params.get("torch_version")
    if version is not None and version != torch.__version__:
        out.append(f"recorded with torch {version}, replayed with torch {torch.__version__}")
    if trial.engine == "population":
        out.append(
            "the population engine's last bits depend on the trial's place among those trained with it "
            "(how many, its row), which the run does not record: tried first and second of 2, and alone"
        )
    if trial.assumed:
        out.append("taken from the study where the run did not record them: " + _settings(trial.assumed))
    if not out and device is None:
        out.append("the run did not record its device or torch version (recorded before lrbench did)")
    return out or ["same device, torch version and engine: a nondeterministic operation on this device?"]


def _settings(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def cmd_replay(args: argparse.Namespace) -> int:
    from bench.data import load_task
    from bench.train import resolve_device

    trial = read_trial(tracking_uri(args), args.run_id)
    rec = trial.record
    failure = rec.tags.get("failure", "")
    # A pruned trial stops where it was stopped: after the epochs its curves have.
    pruned = rec.state == "PRUNED" and not failure.startswith("diverged")
    stop_after = len(rec.values(VAL_LOSS)) if pruned else None
    device = resolve_device(args.device)
    print(f"replaying run {rec.run_id} on {device} ({trial.engine} engine) ...", file=sys.stderr, flush=True)
    task = load_task(trial.data, device)
    threads = rec.params.get("torch_threads")
    if threads is not None and device.type == "cpu":
        import torch

        torch.set_num_threads(int(threads))  # the run's: CPU kernels split their sums by thread
    replayed = retrain(trial, task, stop_after)
    result = replayed.result
    compared = curves(trial, result)
    val = next(c for c in compared if c.key == VAL_LOSS)
    divergence, diverged_alike = _divergence(failure, result)
    reproduced = val.identical and diverged_alike
    why = [] if reproduced else reasons(trial, result)
    if args.json:
        print(json.dumps(_json(trial, replayed, compared, divergence, reproduced, why)))
    else:
        print(trial.describe())
        if trial.assumed:
            print(f"  not recorded by the run, taken from its study: {_settings(trial.assumed)}")
        if replayed.place:
            print(f"  replayed on {result.device} as the {replayed.place} of a population")
        for c in compared:
            print(c.line())
        if divergence:
            print(f"  {divergence}")
        if reproduced:
            tail = f" and its divergence at step {result.diverged_step}" if divergence else ""
            print(f"val/loss reproduced exactly ({_count(val)}){tail}")
    if reproduced:
        return 0
    what = f"val/loss {_how(val)}" if not val.identical else divergence
    print(f"lrbench: replay: {what}: {'; '.join(why)}", file=sys.stderr)
    return 1


def _count(c: Compared) -> str:
    return f"{c.recorded} epoch{'s' if c.recorded != 1 else ''}" if c.recorded else "none recorded"


def _how(c: Compared) -> str:
    if c.recorded != c.replayed:
        return f"has {c.replayed} epoch(s), the record {c.recorded}"
    return f"differs from the record by up to {c.largest:.3g} (relative {c.relative:.3g})"


def _divergence(failure: str, result: TrialResult) -> tuple[str, bool]:
    """What the record and the replay say of a divergence, where either diverged, and whether they agree."""
    recorded = failure if failure.startswith("diverged") else ""
    replayed = f"diverged: non-finite loss at step {result.diverged_step}" if result.diverged else ""
    if not recorded and not replayed:
        return "", True
    if recorded == replayed:
        return f"{recorded}, as recorded", True
    return f"recorded {recorded or 'no divergence'}; replayed {replayed or 'no divergence'}", False


def _json(
    trial: RecordedTrial,
    replayed: Replayed,
    compared: list[Compared],
    divergence: str,
    reproduced: bool,
    why: list[str],
) -> dict[str, Any]:
    val = next(c for c in compared if c.key == VAL_LOSS)
    return {
        "reproduced": reproduced,
        "run_id": trial.record.run_id,
        "engine": trial.engine,
        "device": replayed.result.device,
        "place": replayed.place or None,
        "val_loss_identical": val.identical,
        "curves": [asdict(c) for c in compared],
        "divergence": divergence or None,
        "assumed": {k: str(v) for k, v in trial.assumed.items()},
        "reasons": why,
    }
