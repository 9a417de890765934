"""``lrbench lr-sweep``: the suggestion on fixed synthetic curves, the range test's smoothing and stopping
rule against hand computations, and the command end to end on the reference task (its figure, CSVs,
suggestion and ``--write`` copy), bad input refused with one line and nothing created."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import config
from bench.cli import parser as cli_parser
from bench.config import FloatRange
from bench.data import Task
from bench.sweep import NoRange, SweepSettings, member_configs, range_test, run_sweep, smooth, suggest_range
from bench.sweep import suggest as sg

from helpers import ROOT

STUDY = ROOT / "studies" / "breast_cancer.yaml"

# The base LR of each family's best configuration in the default study, the configurations it confirmed on
# paired seeds: `make study` (lrbench study studies/breast_cancer.yaml), column base_lr of
# results/breast_cancer/families.csv; every family but ConstantLR tied for best.
BEST_BASE_LRS = {
    "wsd": 0.0004317,
    "OneCycleLR": 0.0006535,
    "CyclicLR": 0.0006535,
    "PolynomialLR": 0.0008256,
    "warmup_exponential": 0.002288,
    "StepLR": 0.0005768,
    "MultiStepLR": 0.0004694,
    "MultiplicativeLR": 0.001204,
    "constant": 0.0004881,
    "ExponentialLR": 0.001121,
    "warmup_cosine": 0.0008909,
    "ReduceLROnPlateau": 0.0008909,
    "CosineAnnealingLR": 0.0005026,
    "LambdaLR": 0.001121,
    "LinearLR": 0.001127,
    "CosineAnnealingWarmRestarts": 0.001211,
    "ConstantLR": 0.001213,
}


# --- the suggestion on synthetic curves ----------------------------------------------------------------

GRID = [float(v) for v in np.geomspace(1e-5, 1.0, 101)]  # 20 points a decade


def valley(lr: float) -> float:
    """1 - 0.9 exp(-(log10 lr + 2)^2): 1.0 at tiny LRs, lowest (0.1) at 1e-2, back towards 1 above."""
    return 1 - 0.9 * math.exp(-((math.log10(lr) + 2) ** 2))


def test_a_valley_gives_the_levels_computed_by_hand() -> None:
    r = suggest_range(GRID, [valley(lr) for lr in GRID], [False] * len(GRID))
    start, depth = valley(1e-5), valley(1e-5) - 0.1
    # Low: 1 - 0.9 e^(-u^2) = start - 0.1 depth, u = log10 lr + 2, so u = -sqrt(ln(0.9 / (0.9 - 0.1 depth
    # - (1 - start)))); high: 1 - 0.9 e^(-u^2) = 0.1 + 0.1 depth, so u = sqrt(ln(0.9 / (0.9 - 0.1 depth))).
    u_low = -math.sqrt(math.log(0.9 / (1 - start + sg.FALL_SHARE * depth)))
    u_high = math.sqrt(math.log(0.9 / (0.9 - sg.RISE_SHARE * depth)))
    assert math.log10(r.low) == pytest.approx(u_low - 2, abs=0.01)
    assert math.log10(r.high) == pytest.approx(u_high - 2, abs=0.01)
    assert r.best_lr == pytest.approx(1e-2) and r.min_loss == pytest.approx(0.1)
    assert r.high_reason == "rise" and r.contains(1e-2) and not r.contains(1e-4)


def test_the_range_does_not_depend_on_the_loss_scale_or_offset() -> None:
    losses = [valley(lr) for lr in GRID]
    plain = suggest_range(GRID, losses, [False] * len(GRID))
    scaled = suggest_range(GRID, [5 + 30 * v for v in losses], [False] * len(GRID))
    assert scaled.low == pytest.approx(plain.low) and scaled.high == pytest.approx(plain.high)


def test_the_range_ends_before_the_first_lr_where_a_member_diverged() -> None:
    """The loss still falls where training diverges: the range ends at the last LR that trained."""
    first_bad = GRID.index(next(lr for lr in GRID if lr > 0.05))
    losses = [1 / (1 + 1000 * lr) if i < first_bad else math.nan for i, lr in enumerate(GRID)]
    diverged = [i >= first_bad for i in range(len(GRID))]
    r = suggest_range(GRID, losses, diverged)
    assert r.high == GRID[first_bad - 1] and r.high_reason == "diverged"
    assert r.best_lr == GRID[first_bad - 1] and r.low < r.high


def test_a_curve_still_falling_at_the_largest_lr_ends_there() -> None:
    r = suggest_range(GRID, [1 / (1 + 1000 * lr) for lr in GRID], [False] * len(GRID))
    assert r.high == GRID[-1] and r.high_reason == "end"


def test_noise_on_the_plateau_far_from_the_minimum_does_not_move_the_low_end() -> None:
    """The low end is where the valley around the minimum begins: a dip on the flat part far below it
    (one noisy LR) is not where the loss starts to fall."""
    losses = [valley(lr) for lr in GRID]
    noisy = list(losses)
    noisy[3] = 0.5  # at 1.4e-5, far below the level of the low end
    assert (
        suggest_range(GRID, noisy, [False] * len(GRID)).low
        == suggest_range(GRID, losses, [False] * len(GRID)).low
    )


def test_a_flat_curve_is_no_range_and_says_what_to_change() -> None:
    flat = [0.69 + 0.001 * math.sin(i) for i in range(len(GRID))]
    with pytest.raises(NoRange, match=r"hardly falls.*--epochs"):
        suggest_range(GRID, flat, [False] * len(GRID))


def test_a_curve_lowest_at_the_smallest_lr_asks_for_lower_lrs() -> None:
    with pytest.raises(NoRange, match=r"lowest at the smallest LR.*--low"):
        suggest_range(GRID, [0.1 + lr for lr in GRID], [False] * len(GRID))
    with pytest.raises(NoRange, match=r"diverged.*--low"):
        suggest_range(GRID, [math.nan] * len(GRID), [True] * len(GRID))


# --- the range test ------------------------------------------------------------------------------------


def test_the_smoothed_loss_is_the_bias_corrected_average_computed_by_hand() -> None:
    # beta 0.98: a1 = 0.02 * 1 = 0.02, corrected 0.02 / 0.02 = 1;
    # a2 = 0.98 * 0.02 + 0.02 * 2 = 0.0596, corrected 0.0596 / (1 - 0.98^2) = 0.0596 / 0.0396;
    # a3 = 0.98 * 0.0596 + 0.02 * 3 = 0.118408, corrected 0.118408 / (1 - 0.98^3) = 0.118408 / 0.058808.
    assert sg.SMOOTH_BETA == 0.98
    assert smooth([1.0, 2.0, 3.0]) == pytest.approx([1.0, 0.0596 / 0.0396, 0.118408 / 0.058808], rel=1e-12)
    assert smooth([0.7] * 50) == pytest.approx([0.7] * 50, rel=1e-12)  # no pull towards 0 at the start


def test_the_stopping_rule_and_the_steepest_descent() -> None:
    assert sg.DIVERGE_FACTOR == 4.0
    assert not sg.exploded(0.4, 0.1) and sg.exploded(0.41, 0.1) and sg.exploded(math.inf, 0.1)
    lrs = [float(v) for v in np.geomspace(1e-4, 1, 81)]
    falling = [1 / (1 + math.exp(4 * (math.log10(lr) + 2))) for lr in lrs]  # steepest at 1e-2
    assert sg.steepest_lr(lrs, falling) == pytest.approx(1e-2)
    assert sg.steepest_lr(lrs[:15], falling[:15]) is None  # nothing left between the skipped steps


def test_a_range_test_starts_where_the_sweep_starts_and_rises_as_exponential_lr(breast_cancer: Task) -> None:
    study = config.load(STUDY)
    first = member_configs(study, SweepSettings(lrs=3, seeds=1))[0]
    assert (first.lr, first.seed, first.scheduler, first.optimizer) == (1e-5, 0, "constant", "adam")
    gentle = range_test(breast_cancer, first, 1e-3, 50)
    assert gentle.stop_lr is None and len(gentle.lrs) == 50
    assert gentle.lrs[0] == 1e-5 and gentle.lrs[-1] == pytest.approx(1e-3)
    assert np.allclose(np.diff(np.log(gentle.lrs)), math.log(100) / 49)
    assert list(gentle.smoothed) == pytest.approx(smooth(gentle.losses), rel=1e-12)
    assert range_test(breast_cancer, first, 1e-3, 50) == gentle  # the seed fixes init and batches

    steep = range_test(breast_cancer, dataclasses.replace(first, lr=1e-3), 1e4, 200)
    assert steep.stop_lr is not None and len(steep.lrs) < 200, "Adam at LR 1e4 trains for 200 steps?"
    if steep.stop_reason.startswith("smoothed"):
        assert steep.smoothed[-1] > 4 * min(steep.smoothed)
    assert all(s <= 4 * min(steep.smoothed[: i + 1]) for i, s in enumerate(steep.smoothed[:-1]))


# --- the command -----------------------------------------------------------------------------------------


def lrbench(*argv: object) -> tuple[int, str, str]:
    """``lrbench ARGV`` in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_parser.run([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """The command with its defaults on the reference task, writing a copy: its folder, its JSON, stderr."""
    folder = tmp_path_factory.mktemp("lr-sweep")
    code, out, err = lrbench(
        "lr-sweep", STUDY, "--output", folder / "out", "--write", folder / "copy.yaml", "--json"
    )
    assert code == 0, err
    return folder, json.loads(out), err


def test_the_sweep_suggests_a_range_holding_the_best_configurations_lrs(
    swept: tuple[Path, dict[str, Any], str],
) -> None:
    _, answer, err = swept
    assert "lr-sweep: 72 members (24 LRs x 3 seeds), 5 epochs each" in err
    suggestion = answer["suggestion"]
    low, high = suggestion["low"], suggestion["high"]
    # Read off the sweep's own LRs: inside the swept range, around the lowest loss, below where it turns up.
    assert answer["lrs"][0] < low < suggestion["best_lr"] < high < answer["lrs"][-1]
    assert suggestion["min_loss"] < suggestion["start_loss"]
    outside = {family: lr for family, lr in BEST_BASE_LRS.items() if not low <= lr <= high}
    assert not outside, f"suggested {low:.3g} to {high:.3g}; outside it: {outside}"
    # The range test ran on every seed and found where its loss falls fastest inside the swept LRs.
    test = answer["range_test"]
    assert 1e-5 < test["steepest_lr"] < 1.0 and test["steps"] == 200


def test_the_figure_and_the_csvs_hold_the_sweep(swept: tuple[Path, dict[str, Any], str]) -> None:
    folder, answer, _ = swept
    files = {k: Path(v) for k, v in answer["files"].items()}
    assert (
        files["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files["figure"].stat().st_size > 20_000
    )
    rows = list(csv.DictReader(files["sweep_csv"].open()))
    assert len(rows) == 72 and set(rows[0]) == {
        "lr",
        "seed",
        "diverged",
        "epochs_run",
        "train_loss",
        "val_loss",
        "val_accuracy",
    }
    # The suggestion comes from these rows: its best LR is where their seed mean is lowest.
    means: dict[float, list[float]] = {}
    for row in rows:
        means.setdefault(float(row["lr"]), []).append(float(row["val_loss"]))
    finite = {lr: sum(v) / len(v) for lr, v in means.items() if all(math.isfinite(x) for x in v)}
    assert min(finite, key=finite.__getitem__) == pytest.approx(answer["suggestion"]["best_lr"], rel=1e-6)
    curve = list(csv.DictReader(files["range_test_csv"].open()))
    assert {r["seed"] for r in curve} == {"0", "1", "2"} and set(curve[0]) == {
        "seed",
        "step",
        "lr",
        "loss",
        "smoothed_loss",
    }
    assert float(curve[0]["lr"]) == pytest.approx(1e-5)
    assert not list(folder.glob("out/.*.tmp")), "a temporary file left behind"


def test_write_makes_a_copy_with_the_suggested_range(swept: tuple[Path, dict[str, Any], str]) -> None:
    folder, answer, _ = swept
    copy = config.load(folder / "copy.yaml")
    original = config.load(STUDY)
    low, high = answer["suggestion"]["low"], answer["suggestion"]["high"]
    assert copy.training.lr == FloatRange(float(f"{low:.3g}"), float(f"{high:.3g}"))
    assert dataclasses.replace(copy, training=original.training) == original
    assert answer["files"]["copy"] == str(folder / "copy.yaml")


def test_the_terminal_answer(tmp_path: Path) -> None:
    """A small sweep on a short range: the answer names the range, the study's and the files."""
    code, out, err = lrbench(
        "lr-sweep",
        STUDY,
        "--output",
        tmp_path,
        "--lrs",
        "8",
        "--seeds",
        "1",
        "--epochs",
        "3",
        "--steps",
        "40",
    )
    assert code == 0, err
    assert "suggested training.lr: {low: " in out and "the study's training.lr: 0.0001 to 0.03" in out
    assert "range test (1 run(s) of 40 steps): steepest descent at" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("wrote ")] == [
        str(tmp_path / n) for n in ("lr-sweep.png", "sweep.csv", "range-test.csv")
    ]


def test_the_files_go_to_the_studys_folder_by_default(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.read_text() + f"output: {tmp_path / 'results'}\n")
    code, _, err = lrbench("lr-sweep", study, "--lrs", "4", "--seeds", "1", "--epochs", "1", "--steps", "20")
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "results" / "breast_cancer" / "lr-sweep").iterdir())
    assert files == ["lr-sweep.png", "range-test.csv", "sweep.csv"]


def test_no_range_to_write_is_one_line_and_no_copy(tmp_path: Path) -> None:
    """LRs too small to train anything: the files say why, and no copy is written."""
    code, _, err = lrbench(
        "lr-sweep",
        STUDY,
        "--output",
        tmp_path / "out",
        "--low",
        "1e-8",
        "--high",
        "1e-7",
        "--lrs",
        "3",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--steps",
        "20",
        "--write",
        tmp_path / "copy.yaml",
    )
    assert (
        code == 2
        and err.count("\n") == 3
        and err.splitlines()[-1].startswith("lrbench: error: no training.lr")
    )
    assert not (tmp_path / "copy.yaml").exists() and (tmp_path / "out" / "lr-sweep.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.yaml"], "study file not found: missing.yaml"),
        ([STUDY, "--write", STUDY], "is the study file itself"),
        ([STUDY, "--low", "0.1", "--high", "0.01"], "--low must be below --high"),
        ([STUDY, "--device", "tpu"], "--device: unknown device 'tpu'"),
        ([STUDY, "--lrs", "2"], "argument --lrs: a whole number of at least 3"),
        (
            [STUDY, "--write", ROOT / "no-such-folder" / "c.yaml"],
            "no-such-folder is not a folder that exists",
        ),
        (
            [ROOT / "examples" / "digits_cnn" / "study.yaml", "--write", ROOT / "c.yaml"],
            "the study's cnn:load_digits is looked up beside the study file; write the copy in",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, argv: list[object], message: str
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = lrbench("lr-sweep", *argv, "--output", out_dir)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and not out_dir.exists()


def test_a_bad_study_creates_nothing(tmp_path: Path) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(STUDY.read_text().replace("epochs: 50", "epochs: 0") + f"output: {tmp_path / 'res'}\n")
    code, _, err = lrbench("lr-sweep", study, "--write", tmp_path / "copy.yaml")
    assert code == 2 and len(err.splitlines()) == 1 and "epochs" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_a_study_on_the_reference_engine_sweeps_one_member_at_a_time_alike(breast_cancer: Task) -> None:
    """engine: reference trains each member with bench.train.train: the same results as the population."""
    study = config.load(STUDY)
    reference = dataclasses.replace(study, training=dataclasses.replace(study.training, engine="reference"))
    small = SweepSettings(low=1e-3, high=1e-1, lrs=3, seeds=2, epochs=2, steps=20)
    by_population, by_reference = run_sweep(study, small), run_sweep(reference, small)
    assert [m.lr for m in by_reference.members] == [m.lr for m in by_population.members]
    assert [m.val_loss for m in by_reference.members] == pytest.approx(
        [m.val_loss for m in by_population.members], rel=1e-4
    )


def test_an_output_folder_under_a_file_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = lrbench("lr-sweep", STUDY, "--output", tmp_path / "file" / "out")
    assert code == 2 and err.splitlines() == [
        f"lrbench: error: cannot write to {tmp_path}/file/out: {tmp_path}/file is a file, not a folder"
    ]
