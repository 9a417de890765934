"""The LR sensitivity sweep and the LR range test (torch only): a study's model trained at many constant
LRs on a few seeds (:mod:`.sweep`), the classic single run with a rising LR beside it (:mod:`.rangetest`),
and the ``training.lr`` range they suggest, as pure functions of the curves (:mod:`.suggest`)."""

from bench.sweep.rangetest import RangeTestCurve, range_test
from bench.sweep.suggest import LrRange, NoRange, smooth, suggest_range
from bench.sweep.sweep import Member, SweepResult, SweepSettings, member_configs, run_sweep

__all__ = [
    "LrRange",
    "Member",
    "NoRange",
    "RangeTestCurve",
    "SweepResult",
    "SweepSettings",
    "member_configs",
    "range_test",
    "run_sweep",
    "smooth",
    "suggest_range",
]
