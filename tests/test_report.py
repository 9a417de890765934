"""Leaderboards and the report, written at the end of a study and again by export from the stores."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import schedules
from bench.cli.parser import run as main
from bench.report import leaderboard
from bench.stored import StoredTrial

from helpers import SMOKE

LEADERBOARD_COLUMNS = {
    "number",
    "state",
    "scheduler",
    "optimizer",
    "base_lr",
    "seed",
    "value",
    "best_val_accuracy",
    "final_val_accuracy",
    "test_accuracy",
    "test_loss",
    "epochs_run",
    "seconds",
    "mlflow_run_id",
    "failure",
}


SCHEDULER_COLUMNS = {
    "scheduler",
    "trials",
    "complete",
    "pruned",
    "failed",
    "best_val_accuracy",
    "best_trial",
    "test_accuracy",
    "median_val_accuracy",
    "rank",
}


@pytest.mark.slow
def test_leaderboards_load_and_export_reproduces_them(smoke_run: Path) -> None:
    board = pd.read_csv(smoke_run / "smoke" / "leaderboard.csv")
    table = pd.read_csv(smoke_run / "smoke" / "schedulers.csv")
    assert set(board.columns) >= LEADERBOARD_COLUMNS and set(table.columns) >= SCHEDULER_COLUMNS
    assert len(board) == 6 and board["number"].is_unique
    sampled = {c for c in board.columns if "." in c}
    assert sampled and all(c.split(".")[0] in schedules.SCHEDULES for c in sampled)
    assert board["mlflow_run_id"].str.len().eq(32).all()
    assert table["trials"].sum() == len(board) and table["rank"].min() == 1
    best = table.iloc[0]
    assert best["best_val_accuracy"] == board[board["scheduler"] == best["scheduler"]]["value"].max()
    # export rebuilds both from storage, without training
    before = {
        name: (smoke_run / "smoke" / name).read_bytes() for name in ("leaderboard.csv", "schedulers.csv")
    }
    for name in before:
        (smoke_run / "smoke" / name).unlink()
    assert main(["export", str(SMOKE), "--output", str(smoke_run)]) == 0
    for name, content in before.items():
        assert (smoke_run / "smoke" / name).read_bytes() == content


@pytest.mark.slow
def test_the_report_leaves_out_panels_whose_curves_are_not_written_yet(
    smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several workers, one may write the report while a trial another worker told still has no
    curves in MLflow: the report is written without that family's panel, and says so (here: MLflow answers
    no points for one family's best trial's run)."""
    import shutil

    from bench.tracking.client import Tracker

    out = tmp_path / "out"
    shutil.copytree(smoke_run, out)
    board = pd.read_csv(out / "smoke" / "schedulers.csv")
    leader = pd.read_csv(out / "smoke" / "leaderboard.csv")
    family, number = board["scheduler"].iloc[0], int(board["best_trial"].iloc[0])
    run_id = leader.loc[leader["number"] == number, "mlflow_run_id"].iloc[0]
    history = Tracker.history

    def not_yet(self: Tracker, run: str, key: str) -> list[tuple[int, float]]:
        return [] if run == run_id else history(self, run, key)

    monkeypatch.setattr(Tracker, "history", not_yet)
    (out / "smoke" / "report.html").unlink()
    assert main(["report", str(SMOKE), "--output", str(out)]) == 0
    page = (out / "smoke" / "report.html").read_text()
    panels = re.findall(r'class="card small-multiple" data-family="([^"]+)"', page)
    assert family not in panels and sorted(panels) == sorted(set(board["scheduler"]) - {family})
    note = re.search(r'<p class="note" id="no-curves">([^<]*)', page)
    assert note is not None and family in note.group(1)


@pytest.mark.slow
def test_export_reads_the_stored_study_without_torch(smoke_run: Path) -> None:
    """Exporting, like reading a study's definition, does not import torch (2 s and more here)."""
    board = smoke_run / "smoke" / "leaderboard.csv"
    content = board.read_bytes()
    board.unlink()
    code = f"""
import contextlib, io, sys
from bench.cli.parser import run as main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["export", {str(SMOKE)!r}, "--output", {str(smoke_run)!r}]) == 0
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert board.read_bytes() == content


@pytest.mark.slow
def test_integer_arguments_stay_integers_in_the_leaderboard(smoke_run: Path) -> None:
    as_text = pd.read_csv(smoke_run / "smoke" / "leaderboard.csv", dtype=str)
    int_cols = [c for c in as_text.columns if c.endswith(("warmup_iters", "step_size"))]
    assert int_cols
    for col in int_cols:
        written = as_text[col].dropna()
        assert len(written) and written.str.fullmatch(r"\d+").all(), (col, list(written))


def test_epochs_stay_integers_beside_a_trial_that_failed_before_it_ran(tmp_path: Path) -> None:
    result = {"epochs_run": 50, "test_accuracy": 0.96, "lr": 0.01}
    params = {"scheduler": "StepLR"}
    records = [
        StoredTrial(0, "COMPLETE", 0.05, params, {"result": result}),
        StoredTrial(1, "FAIL", None, params, {}),
    ]
    board, table = leaderboard.export(records, "minimize", "val_loss", tmp_path)
    assert pd.read_csv(tmp_path / "leaderboard.csv", dtype=str)["epochs_run"].tolist()[0] == "50"
    printed = leaderboard.terminal_table(board, table, "val_loss").splitlines()
    assert printed[2].split()[-1] == "50", printed


def test_a_family_whose_trials_were_all_pruned_shows_so_with_the_best_it_reported(tmp_path: Path) -> None:
    result = {"epochs_run": 50, "test_accuracy": 0.96}
    records = [
        StoredTrial(0, "COMPLETE", 0.05, {"scheduler": "StepLR"}, {"result": result}, {0: 0.3, 49: 0.05}),
        StoredTrial(0, "PRUNED", None, {"scheduler": "wsd"}, {"result": result}, {0: 0.4, 9: 0.2}),
        StoredTrial(1, "PRUNED", None, {"scheduler": "wsd"}, {"result": result}, {0: 0.5, 9: 0.3}),
    ]
    board, table = leaderboard.export(records, "minimize", "val_loss", tmp_path)
    wsd = table.set_index("scheduler").loc["wsd"]
    assert wsd["status"] == "all pruned" and wsd["best_val_loss"] == 0.2 and pd.isna(wsd["rank"])
    assert table.set_index("scheduler").loc["StepLR", "rank"] == 1
    printed = leaderboard.terminal_table(board, table, "val_loss")
    assert "all pruned" in printed and "<NA>" not in printed


def test_the_answer_names_the_best_its_ties_and_what_beats_constant() -> None:
    from bench.report import answer, ranking

    def row(family: str, rank: int, mean: float, p_constant: float | None) -> dict[str, object]:
        return {
            "family": family,
            "status": "confirmed",
            "rank": rank,
            "tied_for_best": rank == 1,
            "seeds": 10,
            "mean": mean,
            "ci_low": mean - 0.004,
            "ci_high": mean + 0.004,
            "diff_vs_best": mean - 0.061,
            "p_vs_best": None if family == "OneCycleLR" else 0.2,
            "p_vs_constant": p_constant,
        }

    confirmed = pd.DataFrame(
        [
            row("OneCycleLR", 1, 0.061, 0.002),
            row("StepLR", 1, 0.062, 0.004),
            row("wsd", 1, 0.063, 0.006),
            row("constant", 4, 0.090, None),
        ]
    )
    # As families.csv is built: the ranked rows, then those of unranked families (none here).
    families = pd.concat([confirmed, pd.DataFrame(columns=["family", "status"])], ignore_index=True)
    metric = ranking.Metric("val_loss", "minimize")
    said = answer.answer(families, metric)
    assert said == (
        "Best: OneCycleLR, test loss 0.0610 [0.0570, 0.0650]; tied with StepLR and wsd; "
        "all 3 beat constant (p < 0.01 each, Wilcoxon, uncorrected); significantly worse: constant."
    )
    table = answer.ranking_table(families, metric).splitlines()
    assert table[1].split()[:2] == ["1=", "OneCycleLR"] and table[4].split()[:2] == ["4", "constant"]


def _confirm_run(number: int, family: str, seed: int, test_loss: float | None) -> StoredTrial:
    state = "COMPLETE" if test_loss is not None else "PRUNED"  # a diverged run is pruned with no score
    result = {"seed": seed, "test_loss": test_loss, "val_curve": [0.3, 0.2], "epochs_run": 2}
    attrs = {"cell": {"family": family, "config": 0, "seed_index": seed}, "result": result}
    return StoredTrial(number, state, 0.2 if test_loss is not None else None, {}, attrs)


def test_a_ranking_of_a_confirmation_not_finished_or_diverged_names_why_and_does_not_fail() -> None:
    from bench.report import ranking

    metric = ranking.Metric("val_loss", "minimize")
    result = {"optimizer": "adam", "lr": 0.01, "scheduler_args": "{}"}
    search = [StoredTrial(0, "COMPLETE", 0.1, {"scheduler": f}, {"result": result}) for f in ("A", "B")]
    # Nothing finished every seed yet (a confirmation interrupted, or another worker still at it).
    partial = [_confirm_run(0, "A", 0, 0.1), _confirm_run(1, "B", 0, 0.2)]
    r = ranking.rank(search, partial, metric, seeds=2, top_k=1, target=None)
    assert r.families.set_index("family")["status"].to_dict() == {
        "A": "confirmation incomplete",
        "B": "confirmation incomplete",
    }
    assert r.pairwise.empty
    # A finished; B's run on seed 1 diverged.
    runs = [*partial, _confirm_run(2, "A", 1, 0.12), _confirm_run(3, "B", 1, None)]
    r = ranking.rank(search, runs, metric, seeds=2, top_k=1, target=None)
    fam = r.families.set_index("family")
    assert fam.loc["A", "status"] == "confirmed" and fam.loc["A", "rank"] == 1
    assert fam.loc["B", "status"] == "diverged in confirmation"


@pytest.mark.parametrize("value", ["cos", "linear", "true", True, False, 0.5, 1e-05, 3, [10, 20], "[1]"])
def test_the_reports_train_command_gives_each_argument_back_as_it_was(value: object) -> None:
    import shlex

    from bench.cli.commands import parse_value
    from bench.report.reproduce import _value

    word = shlex.split(shlex.quote(f"x={_value(value)}"))[0]
    assert parse_value(word.partition("=")[2]) == value


def test_the_report_says_what_the_train_command_cannot() -> None:
    import dataclasses

    from bench import config
    from bench.report.reproduce import _caveat

    cfg = config.load(SMOKE)
    assert _caveat(cfg) == ""
    odd = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, test_size=0.3))
    assert "task.test_size: 0.3" in _caveat(odd)
