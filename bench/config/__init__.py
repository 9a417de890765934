"""Study definitions: the schema (:mod:`.schema`), reading and checking a YAML file (:mod:`.reading`,
:mod:`.rules`, :mod:`.yamlsafe`), what a study will train checked before it does (:mod:`.runnable`,
:mod:`.limits`), and where a study's results go (:mod:`.locations`)."""

from bench.config.locations import Locations
from bench.config.reading import load, load_sized, parse
from bench.config.runnable import check_runnable
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
    "check_runnable",
    "load",
    "load_sized",
    "parse",
]
