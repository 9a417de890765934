"""Study definitions: the schema (:mod:`.schema`), reading and checking a YAML file (:mod:`.load`), and
where a study's results go (:mod:`.locations`)."""

from bench.config.locations import Locations
from bench.config.reading import load, parse
from bench.config.schema import (
    METRICS,
    PRUNERS,
    SAMPLERS,
    ConfirmSection,
    FloatRange,
    ObjectiveSection,
    OptunaSection,
    SearchSection,
    StudyConfig,
    TrainingSection,
)

__all__ = [
    "METRICS",
    "PRUNERS",
    "SAMPLERS",
    "ConfirmSection",
    "FloatRange",
    "Locations",
    "ObjectiveSection",
    "OptunaSection",
    "SearchSection",
    "StudyConfig",
    "TrainingSection",
    "load",
    "parse",
]
