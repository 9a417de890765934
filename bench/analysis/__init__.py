"""Statistics over finished runs: summaries with CIs, paired tests, ties, tuning budgets, time to target,
and a suite's aggregates across tasks."""

from bench.analysis.profiles import TAUS, cost_ratios, performance_profile, profile_area, profiles_long
from bench.analysis.suite import METRICS, SuiteTables, TaskScores, suite_tables

__all__ = [
    "METRICS",
    "TAUS",
    "SuiteTables",
    "TaskScores",
    "cost_ratios",
    "performance_profile",
    "profile_area",
    "profiles_long",
    "suite_tables",
]
