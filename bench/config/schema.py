"""The study schema: the typed sections a study definition (YAML) is read into.

```yaml
name: breast_cancer
task: {dataset: breast_cancer}            # or {csv: PATH, target: COLUMN, kind: regression, drop: [...]}
model: {hidden: [64, 32], activation: relu, dropout: 0.0}
training:
  optimizer: adam                          # or a list to search over: [adam, sgd]
  lr: {low: 1.0e-4, high: 1.0e-1}          # or a number (fixed) or a list of values
  epochs: 50
  batch_size: 32
schedulers: all                            # or a list of families, or a mapping family -> narrowed ranges
objective: {metric: val_loss}              # default: the task's score (val_accuracy, or val_rmse)
optuna: {sampler: tpe, pruner: median, n_trials: 100, seed: 0}
search: {budget: per_family}               # n_trials for each family, each sampled and pruned on its own
confirm: {top_k: 3, seeds: 10, resplit: true}   # the best configurations re-trained on paired seeds
```

Every key is described in docs/yaml-reference.md (a test checks that none is missing there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.data import DataConfig, Kind
from bench.model import ModelConfig

SAMPLERS = ("tpe", "random", "qmc", "cmaes", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
# The objectives and their directions: the validation loss, and each kind of task's score (bench.data.KINDS).
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "val_rmse": "minimize"}


@dataclass(frozen=True)
class FloatRange:
    """A float searched between low and high (log scale by default, as suits learning rates)."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class TrainingSection:
    optimizer: tuple[str, ...] = ("adam",)  # more than one: searched
    lr: float | FloatRange | tuple[float, ...] = FloatRange(1e-4, 1e-1)
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 32
    device: str = "auto"
    seed: int = 0  # trial n trains with seed + n
    engine: str = "population"  # or "reference": one trial at a time (the ground truth)
    population_size: int = 0  # trials trained at once by the population engine; 0: automatic

    def lr_ends(self) -> tuple[float, float]:
        """The lowest and the highest base LR the study trains with."""
        if isinstance(self.lr, FloatRange):
            return self.lr.low, self.lr.high
        if isinstance(self.lr, tuple):
            return min(self.lr), max(self.lr)
        return self.lr, self.lr


@dataclass(frozen=True)
class ObjectiveSection:
    # A study's is the task's score (val_accuracy, val_rmse) unless given: set as it is read (.reading).
    metric: str = ""
    direction: str = ""  # derived from the metric when empty
    reduce: str = "final"  # final: the last epoch's value (the model that is tested); best: the best epoch's


@dataclass(frozen=True)
class OptunaSection:
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 100
    timeout: float | None = None  # seconds; stops asking for new trials after it
    seed: int | None = 0
    warmup_epochs: int | None = None  # epochs before the pruner may stop a trial; None: a third of them
    # Epochs between intermediate values stored in Optuna (and pruning decisions); the last epoch always is.
    # Each report is a storage write (see `python -m bench.perf storage` for what a trial's reports cost).
    report_every: int = 1
    # TPE over the joint space (group-decomposed): several times the cost of an ask of the independent
    # TPE, Optuna's default (`python -m bench.perf storage`); worth it when arguments interact strongly.
    multivariate: bool = False
    max_failures: int = 10  # trials raising errors in one run before the run gives up


BUDGETS = ("per_family", "joint")


@dataclass(frozen=True)
class SearchSection:
    """How the search's trials are shared among the families."""

    # per_family: every family gets optuna.n_trials trials, sampled and pruned by a study of its own (its
    # sampler and pruner see its trials alone); joint: one conditional study of n_trials in all, where the
    # sampler also chooses the family (finds a good configuration fast, compares nothing fairly).
    budget: str = "per_family"


@dataclass(frozen=True)
class ConfirmSection:
    """After the search: each family's best configurations re-trained on paired seeds (see
    bench.search.confirm); the ranking with its uncertainty is computed from these runs' test scores."""

    top_k: int = 3  # configurations of each family, the best by the search objective on validation
    seeds: int = 10  # paired seeds each is trained on; 0: no confirmation
    resplit: bool = True  # seed index i also draws a new stratified split, the same for every family
    target: float | None = None  # time to target: the validation score to reach (default: constant's)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str = ""
    task: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingSection = field(default_factory=TrainingSection)
    # family -> {argument: fixed value | [low, high] | [choice, ...]}; empty mapping: the default space.
    schedulers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    optuna: OptunaSection = field(default_factory=OptunaSection)
    search: SearchSection = field(default_factory=SearchSection)
    confirm: ConfirmSection = field(default_factory=ConfirmSection)
    output: str = "results"

    @property
    def direction(self) -> str:
        return self.objective.direction or METRICS[self.objective.metric]

    @property
    def kind(self) -> Kind:
        """The task's kind: its score's name (``accuracy``, ``rmse``) and direction."""
        return self.task.task_kind

    @property
    def warmup_epochs(self) -> int:
        """Epochs before the pruner may stop a trial: the study's, or a third of the run (a schedule that
        starts slow, a warmup or OneCycle's rise, is not judged on its start)."""
        if self.optuna.warmup_epochs is not None:
            return self.optuna.warmup_epochs
        return max(1, -(-self.training.epochs // 3))

    def confirm_task(self, seed_index: int) -> DataConfig:
        """The data confirmation seed index ``seed_index`` trains on: with ``resplit``, a fresh split of its
        own (``task.split_seed + 1 + seed_index``), the same for every family."""
        if not self.confirm.resplit:
            return self.task
        return dataclasses.replace(self.task, split_seed=self.task.split_seed + 1 + seed_index)

    def comparable(self) -> dict[str, Any]:
        """The parts that must not change for results to stay comparable when a study resumes."""
        plain = dataclasses.asdict(self)
        out = {key: plain[key] for key in ("task", "model", "training", "schedulers", "objective", "search")}
        # Classification is left out: a classification study's definition is the same whether its kind is
        # written or not, so that the studies stored without it resume.
        if out["task"]["kind"] == "classification":
            out["task"] = {k: v for k, v in out["task"].items() if k != "kind"}
        # The same for a model and a task of the built-in kind: no function, no arguments (the studies stored
        # before model.python and task.python existed resume).
        for part in ("task", "model"):
            if not out[part]["python"] and not out[part]["args"]:
                out[part] = {k: v for k, v in out[part].items() if k not in ("python", "args")}
        # How trials are batched does not change what they compute (the engines' contract tests).
        out["training"] = {k: v for k, v in out["training"].items() if k not in ("engine", "population_size")}
        return out | {"direction": self.direction}

    def to_yaml(self) -> str:
        plain = _plain(dataclasses.asdict(self))
        return yaml.safe_dump(plain, sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
