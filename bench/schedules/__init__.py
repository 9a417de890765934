"""The registry of learning-rate schedules: one entry per family, built on ``torch.optim.lr_scheduler``.

Every entry declares, in one place, how to build it (always from torch's own scheduler classes), when
it steps (once per epoch or once per optimizer step), whether it needs the validation loss, its
arguments with their defaults (torch's, where the argument is torch's), the search space a study samples
from, and the shape its curves must have. The curves lrbench records are therefore exactly the ones a user
gets by writing the same torch scheduler in their own loop.

Arguments whose sensible value depends on the run length (``T_max``, ``total_steps``, ``milestones``, ...)
are *derived*: a function of the :class:`Horizon` (how many times the scheduler will step, the base LR)
and of the arguments given or drawn. A user value always wins. ``Family.resolve`` returns every argument
the scheduler is built with, derived ones included, so a run's schedule can be rebuilt from its logged
parameters alone.
"""

from bench.schedules.families import BASELINE, LR_LAMBDAS, LR_MULTIPLIERS, SCHEDULES, get
from bench.schedules.preview import Curve, check, curve, preview, step_scheduler, verify
from bench.schedules.registry import Arg, Derived, Family, Horizon, Range, Shape, coerce

__all__ = [
    "BASELINE",
    "LR_LAMBDAS",
    "LR_MULTIPLIERS",
    "SCHEDULES",
    "Arg",
    "Curve",
    "Derived",
    "Family",
    "Horizon",
    "Range",
    "Shape",
    "check",
    "coerce",
    "curve",
    "get",
    "preview",
    "step_scheduler",
    "verify",
]
