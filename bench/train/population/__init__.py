"""The population engine: many trials trained at once as one batched model (see :mod:`.engine`)."""

from bench.train.population.engine import Joiner, Population, auto_population_size, train_population
from bench.train.population.members import ProxySchedule, group_key, proxy_schedule

__all__ = [
    "Joiner",
    "Population",
    "ProxySchedule",
    "auto_population_size",
    "group_key",
    "proxy_schedule",
    "train_population",
]
