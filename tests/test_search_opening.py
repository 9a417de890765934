"""Opening a study: workers that open it together, and the uid that tells its MLflow runs apart."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from bench import config
from bench.config import Locations
from bench.search import OpenedStudy, open_storage, open_study, opening
from bench.search.space import sample

from helpers import SMOKE


def test_workers_that_open_a_study_together_draw_different_points(tmp_path: Path) -> None:
    """Two workers open a new study before either asks (same sampler seed): the second to ask reseeds from
    its first trial's number, while a lone worker draws what it always drew."""
    cfg = config.load(SMOKE)

    def first_point(opened: OpenedStudy) -> tuple[str, float]:
        (trial,) = opened.ask(1, {})
        spec = sample(trial, cfg, 6)
        return spec.scheduler, spec.lr

    alone = first_point(open_study(cfg, Locations.resolve(cfg, output=str(tmp_path / "alone"))))
    loc = Locations.resolve(cfg, output=str(tmp_path / "shared"))
    a, b = open_study(cfg, loc), open_study(cfg, loc)
    assert first_point(a) == alone  # the first to ask keeps the study's seed
    assert first_point(b) != alone


def test_a_study_keeps_one_uid_which_another_output_dir_does_not_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uid that tags a study's MLflow runs: stored by the worker that creates the study and read by
    every worker that opens it; a study of the same name in another output dir has its own; a study stored
    before lrbench kept one (a definition, no uid) gets one when opened, without waiting for a creator."""
    cfg = config.load(SMOKE)
    loc = Locations.resolve(cfg, output=str(tmp_path / "one"))
    first = open_study(cfg, loc)
    assert first.uid == first.study.user_attrs["study_uid"]
    assert open_study(cfg, loc).uid == first.uid
    other = Locations.resolve(cfg, output=str(tmp_path / "two"))
    assert open_study(cfg, other).uid != first.uid

    older = Locations.resolve(cfg, output=str(tmp_path / "older"))
    stored = optuna.create_study(storage=open_storage(older.storage), study_name=cfg.name)
    stored.set_user_attr("definition", json.loads(json.dumps(cfg.comparable())))

    def no_wait(seconds: float) -> None:
        raise AssertionError("waited for a creator")

    monkeypatch.setattr(opening.time, "sleep", no_wait)
    uid = open_study(cfg, older).uid
    assert uid and uid != first.uid and stored.user_attrs["study_uid"] == uid
