"""Where a study's results live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.config.schema import StudyConfig


@dataclass(frozen=True)
class Locations:
    """Where a study's results live. Everything defaults to one results root."""

    root: Path
    storage: str
    tracking_uri: str
    # The study's own folder, where it is not <root>/<name>: a suite's task (<root>/<task>, named
    # <suite>.<task> in the shared stores).
    folder: Path | None = None

    @classmethod
    def resolve(
        cls,
        cfg: StudyConfig,
        output: str | None = None,
        storage: str | None = None,
        tracking_uri: str | None = None,
    ) -> Locations:
        root = Path(output or cfg.output).resolve()
        return cls(
            root=root,
            storage=storage or str(root / "optuna.journal"),
            tracking_uri=tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        )

    def results_dir(self, cfg: StudyConfig) -> Path:
        return self.folder or self.root / cfg.name

    def spool(self, cfg: StudyConfig) -> Path:
        """Where the study's writes that MLflow does not have yet are kept (bench.tracking.spool)."""
        return self.root / "spool" / cfg.name
