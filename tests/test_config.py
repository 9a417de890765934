"""Study definitions: every bad one is refused in one line with nothing created; the shipped ones load."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from bench import config, schedules
from bench.cli.parser import run as main
from bench.config.suite import load_suite

from helpers import ROOT

BAD = [
    ("not: [valid", "not valid YAML"),
    ("name: x\ntrainin: {}\n", "trainin is not a known key"),
    ("name: x\ntraining: {epochs: ten}\n", "training.epochs must be an integer, got 'ten'"),
    ("name: x\ntraining: {lrr: 0.1}\n", "training.lrr is not a known key"),
    ("name: x\nschedulers: [Cosine]\n", "schedulers.Cosine: unknown scheduler 'Cosine'"),
    (
        "name: x\nschedulers: {StepLR: {gama: [0.1, 0.5]}}\n",
        "schedulers.StepLR.gama: StepLR has no argument 'gama'",
    ),
    (
        "name: x\nschedulers: {StepLR: {gamma: [0.5, 0.1]}}\n",
        "schedulers.StepLR.gamma: low <= high must hold",
    ),
    ("name: x\ntraining: {lr: {low: 0.1, high: 0.01}}\n", "training.lr: low <= high must hold"),
    ("name: x\ntraining: {lr: {low: 0.1}}\n", "training.lr.high is required"),
    ("name: x\ntraining: {lr: {low: 0.1, hi: 2}}\n", "training.lr.hi is not a known key"),
    ("name: x\ntraining: {lr: [0.1, x]}\n", "training.lr[1] must be a number, got 'x'"),
    ("name: x\ntraining: {lr: 0}\n", "training.lr must be > 0"),
    ("name: x\ntraining: {lr: -0.1}\n", "training.lr must be > 0"),
    ("name: x\ntask: {dataset: mnist}\n", "task: unknown dataset 'mnist'"),
    ("name: x\ntask: {csv: missing.csv, target: y}\n", "task: data file not found"),
    ("name: x\noptuna: {sampler: bayes}\n", "optuna.sampler must be one of tpe, random"),
    ("name: x\noptuna: {pruner: asha}\n", "optuna.pruner must be one of none, median"),
    ("name: x\nobjective: {metric: f1}\n", "objective.metric must be one of val_accuracy, val_loss"),
    ("- a list\n", "a study definition is a YAML mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_definition_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    assert main(["study", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_missing_study_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["study", str(tmp_path / "nope.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err


def test_shipped_studies_are_valid() -> None:
    suites = [ROOT / "studies" / "suite.yaml"]
    for path in sorted(set((ROOT / "studies").glob("*.yaml")) - set(suites)):
        cfg = config.load(path)
        assert cfg.name == path.stem
    for path in suites:
        assert load_suite(path).name == path.stem
    default = config.load(ROOT / "studies" / "breast_cancer.yaml")
    assert set(default.schedulers) == set(schedules.SCHEDULES)
    assert config.load(ROOT / "studies" / "digits.yaml").task.dataset == "digits"


def _schema_keys(cls: type, prefix: str = "") -> set[str]:
    """Every key a study takes, dotted (``training.lr.low``), from the schema's dataclasses."""
    keys = set()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}{f.name}"
        keys.add(key)
        hint = typing.get_type_hints(cls)[f.name]
        for option in typing.get_args(hint) or (hint,):
            if dataclasses.is_dataclass(option):
                keys |= _schema_keys(option, f"{key}.")  # type: ignore[arg-type]
    return keys


def test_the_yaml_reference_describes_every_key_of_the_schema_and_no_other() -> None:
    text = (ROOT / "docs" / "yaml-reference.md").read_text()
    described = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.MULTILINE))
    keys = _schema_keys(config.StudyConfig)
    assert "training.lr.low" in keys and "task.csv" in keys
    assert keys - described == set(), "add these keys to docs/yaml-reference.md"
    assert described - keys == set(), "these keys in docs/yaml-reference.md are not in the schema"
