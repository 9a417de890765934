"""The rules of a study's sections that need no data and no torch: each error is one line naming its field,
the rule and the value (``training.weight_decay must be >= 0, got -1.0``)."""

from __future__ import annotations

import re

from bench import model, usercode
from bench.config.schema import BUDGETS, METRICS, PRUNERS, SAMPLERS, FloatRange, StudyConfig, TrainingSection
from bench.data import KINDS, DataConfig
from bench.errors import UserError
from bench.train.device import DEVICE_FORM
from bench.train.optimizers import OPTIMIZERS

# A study's name names a folder under the output, its Optuna studies and its MLflow experiment: a slug,
# so that nothing is ever written outside the output (no "/", no "..", no leading dot).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# What the output folder holds beside the study folders (bench.config.locations), and Optuna's lock file.
RESERVED = re.compile(r"spool|(optuna\.journal|mlflow\.db)($|[.-].*)")
MAX_SEED = 2**32 - 1  # NumPy's and scikit-learn's seeds are 32-bit


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(
            "name must be a non-empty string (it names the study, its storage and its experiment)"
        )
    name = name.strip()
    if not NAME.fullmatch(name):
        raise UserError(
            f"name must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(it names the study's folder under the output), got {name!r}"
        )
    if RESERVED.fullmatch(name):
        raise UserError(
            f"name {name!r} is the name of a file lrbench keeps in the output folder; choose another"
        )
    return name


def _seed(where: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_SEED:
        raise UserError(f"{where} must be a whole number from 0 to {MAX_SEED}, got {value}")


# What a CSV or lrbench's own split is made with: a task function's rows come split and ready.
_CSV_AND_SPLIT_KEYS = ("target", "drop", "label_map", "test_size", "val_size")


def check_task(task: DataConfig) -> None:
    t, v = task.test_size, task.val_size
    if not (t > 0 and v > 0 and t + v < 1):
        raise UserError(
            "task: 0 < test_size, 0 < val_size and test_size + val_size < 1 must hold, "
            f"but got (test_size={t}, val_size={v})"
        )
    _seed("task.split_seed", task.split_seed)
    if task.python:
        usercode.check_path(task.python, "task.python")
        if task.csv:
            raise UserError("task: python and csv each name the task's rows; give one of them")
        default = DataConfig()
        ignored = [k for k in _CSV_AND_SPLIT_KEYS if getattr(task, k) != getattr(default, k)]
        if ignored:
            raise UserError(
                f"task.{ignored[0]}: a task function gives its rows split and ready as they are; "
                f"leave {', '.join(_CSV_AND_SPLIT_KEYS)} out with task.python"
            )
    elif task.args:
        raise UserError("task.args: arguments go to a task function; name it with task.python")
    for key, value in (task.label_map or {}).items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"task.label_map.{key}: a class number (an integer), got {value!r}")


def check_training(t: TrainingSection) -> None:
    for opt in t.optimizer:
        if opt not in OPTIMIZERS:
            raise UserError(
                f"training.optimizer: unknown optimizer {opt!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
    if not t.optimizer:
        raise UserError("training.optimizer must name at least one optimizer")
    lrs = (
        [t.lr.low, t.lr.high]
        if isinstance(t.lr, FloatRange)
        else list(t.lr)
        if isinstance(t.lr, tuple)
        else [t.lr]
    )
    if not lrs or any(v <= 0 for v in lrs):
        raise UserError(
            f"training.lr must be > 0, but got {t.lr if not isinstance(t.lr, FloatRange) else lrs}"
        )
    if isinstance(t.lr, FloatRange) and t.lr.low > t.lr.high:
        raise UserError(f"training.lr: low <= high must hold, but got (low={t.lr.low}, high={t.lr.high})")
    if not 0 <= t.momentum < 1:
        raise UserError(f"training.momentum: 0 <= momentum < 1 must hold, but got {t.momentum}")
    if t.weight_decay < 0:
        raise UserError(f"training.weight_decay must be >= 0, got {t.weight_decay}")
    for name in ("epochs", "batch_size"):
        if getattr(t, name) < 1:
            raise UserError(f"training.{name} must be at least 1, got {getattr(t, name)}")
    if not DEVICE_FORM.fullmatch(t.device):
        raise UserError(f"training.device: unknown device {t.device!r}; use auto, cpu, cuda, cuda:N or mps")
    _seed("training.seed", t.seed)
    if t.engine not in ("population", "reference"):
        raise UserError(f"training.engine must be population or reference, got {t.engine!r}")
    if t.population_size < 0:
        raise UserError(f"training.population_size must be >= 0 (0: automatic), got {t.population_size}")


def check_sections(cfg: StudyConfig) -> None:
    """Every section's rules, in the order the sections are written."""
    check_task(cfg.task)
    model.check(cfg.model, "model.")
    check_training(cfg.training)
    objective = cfg.objective
    if objective.metric not in METRICS:
        raise UserError(f"objective.metric must be one of {', '.join(METRICS)}, got {objective.metric!r}")
    kind = cfg.kind
    scores = {f"val_{k.score}": k for k in KINDS.values()}
    if objective.metric in scores and scores[objective.metric] != kind:
        raise UserError(
            f"objective.metric: {objective.metric} scores a {scores[objective.metric].name} task, but "
            f"task {cfg.task.name} is a {kind.name} task; use val_{kind.score} or val_loss"
        )
    if objective.direction not in ("", "maximize", "minimize"):
        raise UserError(f"objective.direction must be maximize or minimize, got {objective.direction!r}")
    if objective.direction and objective.direction != METRICS[objective.metric]:
        raise UserError(
            f"objective.direction: {'higher' if METRICS[objective.metric] == 'maximize' else 'lower'} "
            f"{objective.metric} is better, so {objective.direction} would search for the worst; "
            "leave direction out"
        )
    if objective.reduce not in ("final", "best"):
        raise UserError(f"objective.reduce must be final or best, got {objective.reduce!r}")
    o = cfg.optuna
    if o.sampler not in SAMPLERS:
        raise UserError(f"optuna.sampler must be one of {', '.join(SAMPLERS)}, got {o.sampler!r}")
    if o.pruner not in PRUNERS:
        raise UserError(f"optuna.pruner must be one of {', '.join(PRUNERS)}, got {o.pruner!r}")
    for name in ("n_trials", "report_every", "max_failures"):
        if getattr(o, name) < 1:
            raise UserError(f"optuna.{name} must be at least 1, got {getattr(o, name)}")
    if o.timeout is not None and o.timeout <= 0:
        raise UserError(f"optuna.timeout must be > 0 seconds (or left out), got {o.timeout}")
    _seed("optuna.seed", o.seed)
    if o.warmup_epochs is not None and o.warmup_epochs < 0:
        raise UserError(f"optuna.warmup_epochs must be >= 0, got {o.warmup_epochs}")
    if o.sampler == "grid" and isinstance(cfg.training.lr, FloatRange):
        raise UserError("training.lr: the grid sampler needs a fixed lr or a list of values, not a range")
    if cfg.search.budget not in BUDGETS:
        raise UserError(f"search.budget must be one of {', '.join(BUDGETS)}, got {cfg.search.budget!r}")
    c = cfg.confirm
    if c.top_k < 1:
        raise UserError(f"confirm.top_k must be at least 1, got {c.top_k}")
    if c.seeds < 0 or c.seeds == 1:
        raise UserError(
            f"confirm.seeds must be 0 (no confirmation) or at least 2 (a spread to measure), got {c.seeds}"
        )
