from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.cli.commands import parse_value
from bench.cli.parser import run as main
from bench.tracking.local_server import free_port

from helpers import ROOT, SMOKE, write_study


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_csv_matches_the_seed_000_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "schedule",
        "StepLR",
        "--set",
        "step_size=10",
        "--set",
        "gamma=0.9",
        "--lr",
        "0.1",
        "--epochs",
        "31",
        "--format",
        "csv",
    )
    lines = out.splitlines()
    assert code == 0 and lines[0] == "step,epoch,lr" and len(lines) == 32
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(31)) == [int(r[1]) for r in rows]
    lrs = [float(r[2]) for r in rows]
    assert lrs[:10] == [0.1] * 10
    assert [round(v, 5) for v in lrs[10:20]] == [0.09] * 10
    assert [round(v, 5) for v in lrs[20:30]] == [0.081] * 10
    assert round(lrs[30], 5) == 0.0729


def test_schedule_per_step_rows_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    code, out, _ = run(
        capsys,
        "schedule",
        "OneCycleLR",
        "--epochs",
        "4",
        "--steps-per-epoch",
        "5",
        "--format",
        "csv",
        "--plot",
        str(png),
    )
    rows = out.splitlines()[1:]
    assert code == 0 and len(rows) == 20 and rows[7].startswith("7,1,")
    assert png.stat().st_size > 1000


def test_schedules_lists_every_family(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.schedules import SCHEDULES

    code, out, _ = run(capsys, "schedules")
    assert code == 0
    for name in SCHEDULES:
        assert f"\n{name}  [" in "\n" + out
    assert "step_size" in out and "derived: epochs // 3" in out


def test_train_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "train",
        "--dataset",
        "breast_cancer",
        "--scheduler",
        "StepLR",
        "--set",
        "step_size=20",
        "--set",
        "gamma=0.5",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--json",
    )
    record = json.loads(out)
    assert code == 0
    for key in ("test_accuracy", "test_loss", "val_accuracy", "epochs_run", "diverged"):
        assert key in record
    assert record["epochs_run"] == 3 and record["diverged"] is False


def test_train_divergence_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "train", "--dataset", "breast_cancer", "--optimizer", "sgd", "--lr", "1e4", "--json"
    )
    record = json.loads(out)
    assert code == 0 and record["diverged"] is True and isinstance(record["diverged_step"], int)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["schedule", "Nope"], "unknown scheduler 'Nope'; choose one of:"),
        (["schedule", "StepLR", "--set", "gama=0.5"], "StepLR has no argument 'gama'"),
        (["schedule", "StepLR", "--set", "gamma"], "--set expects ARG=VALUE"),
        (["schedule", "StepLR", "--epochs", "0"], "--epochs must be at least 1"),
        (["schedule", "StepLR", "--lr", "-1"], "--lr must be a positive number"),
        (["train", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["train", "--csv", "/nonexistent.csv", "--target", "y"], "data file not found: /nonexistent.csv"),
        (["train", "--csv", "x.csv"], "--csv needs --target COLUMN"),
        (["train", "--dataset", "iris", "--optimizer", "lion"], "unknown optimizer 'lion'"),
        (["train", "--dataset", "iris", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code, _, err = run(capsys, *argv)
    except SystemExit as exc:  # argparse's own errors
        code, err = int(exc.code or 0), capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_console_script_and_module_entry_point() -> None:
    for cmd in ([str(Path(sys.executable).with_name("lrbench"))], [sys.executable, "-m", "bench"]):
        out = subprocess.run([*cmd, "schedule", "Nope"], capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.startswith("lrbench: error: unknown scheduler")


@pytest.mark.slow
def test_output_piped_into_a_reader_that_stops_ends_quietly() -> None:
    """`lrbench schedule ... | head` stops quietly when head has read its lines: no broken-pipe traceback."""
    lrbench = str(Path(sys.executable).with_name("lrbench"))
    argv = [lrbench, "schedule", "StepLR", "--epochs", "500", "--steps-per-epoch", "20", "--format", "csv"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(13) == b"step,epoch,lr"
    proc.stdout.close()  # what head does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_help_and_the_registry_do_not_import_torch() -> None:
    """`lrbench --help` and `lrbench schedules` answer at once: torch (seconds to import) is imported where
    a schedule is built or a model trained."""
    code = """
import contextlib, io, sys
from bench.cli.parser import run as main
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["schedules"]) == 0
    with contextlib.suppress(SystemExit):
        main(["--help"])
print("torch" in sys.modules, "OneCycleLR" in out.getvalue(), "usage: lrbench" in out.getvalue())
main(["schedule", "StepLR", "--epochs", "3"])
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "False True True" and lines[-1] == "True"


def test_parse_value() -> None:
    assert parse_value("10") == 10 and parse_value("1e-3") == 0.001 and parse_value("[10, 20]") == [10, 20]
    assert parse_value("true") is True and parse_value("cos") == "cos"


@pytest.mark.parametrize(
    ("flag", "uri", "message"),
    [
        # psycopg2 is not installed here; were it installed, nothing listens on the port
        (
            "--storage",
            "postgresql+psycopg2://user:secret@127.0.0.1:{port}/db",
            "storage postgresql+psycopg2://user:***@",
        ),
        (
            "--storage",
            "sqlite:///{tmp}/no/such/folder/optuna.db",
            "cannot connect (unable to open database file)",
        ),
        ("--tracking-uri", "http://user:secret@127.0.0.1:{port}", "does not answer"),
        (
            "--tracking-uri",
            "postgresql://user:secret@127.0.0.1:{port}/mlflow",
            "tracking store postgresql://user:***@",
        ),
    ],
)
def test_stores_given_on_the_command_line_are_checked_before_anything_is_created(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    uri: str,
    message: str,
) -> None:
    """A storage without its driver, a database that cannot be opened, a tracking server that is down: one
    line, exit status 2, before the study's writer is started (MLflow's client would retry a server that is
    down for minutes), nothing created, and no password printed."""
    from bench.cli import study

    def no_writer(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the study's writer was started before the stores were checked")

    monkeypatch.setattr(study, "Writer", no_writer)
    out = tmp_path / "results"
    given = uri.format(port=free_port(), tmp=tmp_path)
    assert main(["study", str(SMOKE), "--output", str(out), flag, given]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_tracking_server_that_stops_answering_during_an_export_is_one_line(
    smoke_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracking server that answered lrbench's first check and then stops answering (here nothing
    listens on its port past the check) ends an export in one line, not in MLflow's traceback."""
    from bench.cli import study

    monkeypatch.setattr(study, "check_given", lambda *a, **k: None)  # as if the server had answered it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["export", str(SMOKE), "--output", str(smoke_run), "--tracking-uri", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lrbench: error: the tracking server {url} stopped answering ([Errno 111] Connection refused); "
        "run the same command again once it answers"
    ], err


@pytest.mark.slow
def test_the_command_pauses_the_garbage_collector_for_start_up_alone(tmp_path: Path) -> None:
    """`lrbench study` runs start-up (the imports) without the collector, and its trials with it, what
    start-up loaded frozen; a study that stops before its trials gives it back too. Run in a child: the
    command's path, and a freeze that should not reach the test process."""
    study = write_study(tmp_path, optuna__n_trials=1, training__epochs=2)
    code = f"""
import gc, json
import bench.search.run
from bench.cli.entry import _main
seen = []
run = bench.search.run._Worker.run
def spy(*args, **kwargs):
    seen.append([gc.isenabled(), gc.get_freeze_count() > 0])
    return run(*args, **kwargs)
bench.search.run._Worker.run = spy
ok = _main(["study", {str(study)!r}, "--output", {str(tmp_path / "out")!r}], command=True)
after_ok = gc.isenabled()
bad = _main(["study", {str(tmp_path / "missing.yaml")!r}], command=True)
print(json.dumps([seen, ok, after_ok, bad, gc.isenabled()]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    seen, ok, after_ok, bad, after_bad = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == [[True, True]] and ok == 0 and after_ok
    assert bad == 2 and after_bad


def test_schedule_linear_lr_prints_torchs_own_curve(capsys: pytest.CaptureFixture[str]) -> None:
    """Under torch's name, torch's defaults: a LinearLR given a start factor warms up to the base LR."""
    import torch

    argv = ["schedule", "LinearLR", "--set", "start_factor=0.1", "--set", "total_iters=9"]
    code, out, _ = run(capsys, *argv, "--lr", "0.3", "--epochs", "15", "--format", "csv")
    printed = [float(line.split(",")[2]) for line in out.splitlines()[1:]]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=9)
    expected = []
    for _ in range(15):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert code == 0 and printed == pytest.approx(expected, rel=1e-9)
    assert printed[0] == pytest.approx(0.03) and printed[9:] == pytest.approx([0.3] * 6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_is_a_ctrl_c_within_the_block_and_restored_after(sig: signal.Signals) -> None:
    from bench.cli.signals import exit_status, stop_as_ctrl_c

    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt), stop_as_ctrl_c() as got:
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the signal arrives first
    assert got == [sig] and exit_status(got) == 128 + sig
    assert signal.getsignal(sig) is before
    assert exit_status([]) == 130


def test_a_stop_signal_after_the_first_is_noted_and_ignored() -> None:
    """The stop the first signal asked for is under way: a second (a scheduler's SIGTERM again, a terminal's
    SIGHUP) must not cut short the telling of finished trials."""
    from bench.cli.signals import exit_status, stop_as_ctrl_c

    with stop_as_ctrl_c() as got:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.1)  # delivered here, and nothing raised
    assert got == [signal.SIGTERM, signal.SIGHUP] and exit_status(got) == 128 + signal.SIGTERM


def test_a_study_stopped_by_its_timeout_before_any_trial_ends_and_writes_its_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study = write_study(tmp_path, optuna__timeout=0.001)
    code, out, err = run(capsys, "study", str(study), "--output", str(tmp_path / "out"))
    assert code == 0, err
    assert "Traceback" not in err and "no trials yet" in out.lower()
    for name in ("leaderboard.csv", "schedulers.csv", "report.html"):
        assert (tmp_path / "out" / "smoke" / name).is_file(), name
    for name in ("leaderboard.csv", "schedulers.csv"):  # no trial ended: the header alone
        assert len((tmp_path / "out" / "smoke" / name).read_text().splitlines()) == 1, name
