"""The population engine: many trials trained at once as one batched model (see :mod:`.engine`)."""

from bench.train.population.engine import Batching, Joiner, Population, train_population
from bench.train.population.members import ProxySchedule, group_key, proxy_schedule
from bench.train.population.sizing import auto_population_size, fallback_line, why_not_batched

__all__ = [
    "Batching",
    "Joiner",
    "Population",
    "ProxySchedule",
    "auto_population_size",
    "fallback_line",
    "group_key",
    "proxy_schedule",
    "train_population",
    "why_not_batched",
]
