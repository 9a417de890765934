"""report.html: opened in headless Chromium with the network cut (no console error, no request), what it
shows, the same page again from `lrbench report`, and what the study's parent MLflow run carries."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from browser import chromium, visit

from bench.cli.parser import run as main

from helpers import mlflow_runs, write_study

FAMILIES = ["constant", "StepLR", "OneCycleLR"]
GENERATED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def _browser_or_skip() -> None:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    if chromium() is None:
        pytest.skip("no Chromium here: the CI installs Debian's chromium (.ci/run); apt-get install chromium")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three families (constant among them), three trials each, each family's best on three seeds: the
    study file and its output folder, with the report the study wrote kept as ``written.html``."""
    folder = tmp_path_factory.mktemp("report")
    path = write_study(
        folder,
        name="rep",
        training__epochs=4,
        schedulers={f: {} for f in FAMILIES},
        optuna={"sampler": "random", "pruner": "none", "n_trials": 3, "seed": 0},
        search={"budget": "per_family"},
        confirm={"top_k": 1, "seeds": 3},
    )
    out = folder / "out"
    assert main(["study", str(path), "--output", str(out)]) == 0
    shutil.copy(out / "rep" / "report.html", folder / "written.html")
    return path, out


@pytest.mark.slow
def test_the_report_opens_offline_with_every_part(study: tuple[Path, Path], tmp_path: Path) -> None:
    _browser_or_skip()
    _, out = study
    shot = tmp_path / "report.png"
    seen = visit(
        out / "rep" / "report.html",
        shot,
        count=("#fig-forest .main-svg", ".small-multiple .main-svg", "#fig-seeds .main-svg", "pre.code"),
        text=("#ranking tbody tr td.family", ".small-multiple .gtitle"),
    )
    assert seen.errors == [] and seen.requests == []
    ranked = [t.strip() for t in seen.texts["#ranking tbody tr td.family"]]
    assert sorted(ranked) == sorted(FAMILIES)
    assert seen.counts["#fig-forest .main-svg"] >= 1 and seen.counts["#fig-seeds .main-svg"] >= 1
    # One panel per family, each drawn by plotly (an SVG) and titled with its family, in rank order.
    families = pd.read_csv(out / "rep" / "families.csv")
    assert seen.texts[".small-multiple .gtitle"] == list(families["family"])
    assert seen.counts[".small-multiple .main-svg"] >= len(FAMILIES)
    assert seen.counts["pre.code"] == len(FAMILIES)
    assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_the_browser_check_sees_a_request_and_a_console_error(tmp_path: Path) -> None:
    """The check above can fail: a page that asks the network for an image and logs an error is caught."""
    _browser_or_skip()
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="https://example.org/x.png"><script>console.error("boom")</script></body></html>'
    )
    seen = visit(page, None)
    assert seen.requests == ["https://example.org/x.png"] and "boom" in seen.errors


@pytest.mark.slow
def test_lrbench_report_rewrites_the_same_page(
    study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = study
    written = (path.parent / "written.html").read_text()
    (out / "rep" / "report.html").unlink()
    assert main(["report", str(path), "--output", str(out)]) == 0
    assert f"wrote {out / 'rep' / 'report.html'}" in capsys.readouterr().out
    again = (out / "rep" / "report.html").read_text()
    assert len(GENERATED.findall(written)) == 2
    assert GENERATED.sub("T", again) == GENERATED.sub("T", written)


@pytest.mark.slow
def test_the_parent_run_carries_the_ranking_and_no_param_is_named_as_a_metric(
    study: tuple[Path, Path],
) -> None:
    from mlflow import MlflowClient

    _, out = study
    runs = mlflow_runs(out, "rep")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "families.csv", "confirm.csv", "study.yaml"} <= artifacts
    families = pd.read_csv(out / "rep" / "families.csv")
    for _, f in families.iterrows():
        assert parent.data.metrics[f"{f['family']}/rank"] == f["rank"]
        assert parent.data.metrics[f"{f['family']}/test_accuracy_mean"] == pytest.approx(f["mean"])
    trials = [r for r in runs if r.data.tags.get("lrbench.stage") in ("search", "confirm")]
    ranked = {r.data.tags["scheduler"]: r for r in runs if r.data.tags.get("lrbench.role") == "family"}
    assert len(trials) == 3 * 3 + 3 * 3 and len(runs) == len(trials) + len(ranked) + 1
    for run in [*trials, *ranked.values()]:
        assert run.data.params and run.data.metrics
        assert not set(run.data.params) & set(run.data.metrics), run.info.run_name
    # A run per ranked family, FINISHED, with its rank, mean and chosen configuration, under the parent.
    assert sorted(ranked) == sorted(FAMILIES)
    for _, f in families.iterrows():
        run = ranked[f["family"]]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.metrics["rank"] == f["rank"]
        assert run.data.metrics["test_accuracy_mean"] == pytest.approx(f["mean"])
        assert float(run.data.params["base_lr"]) == pytest.approx(f["base_lr"])
    # Published again (lrbench report), the family runs are replaced, not added to.
    path, _ = study
    assert main(["report", str(path), "--output", str(out)]) == 0
    again = [r for r in mlflow_runs(out, "rep") if r.data.tags.get("lrbench.role") == "family"]
    assert len(again) == len(FAMILIES) and not {r.info.run_id for r in again} & {
        r.info.run_id for r in ranked.values()
    }


@pytest.mark.slow
def test_the_reports_train_command_retrains_the_chosen_configuration(
    study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The `lrbench train` command of "reproduce it" gives what the confirmation's first seed gave (the
    reference loop against the population engine: to the engines' tolerance)."""
    import html
    import json
    import shlex

    _, out = study
    page = (out / "rep" / "report.html").read_text()
    commands = [html.unescape(c) for c in re.findall(r'<pre class="command">([^<]*)</pre>', page)]
    assert len(commands) == len(FAMILIES)
    confirm = pd.read_csv(out / "rep" / "confirm.csv")
    first = confirm[confirm["chosen"] & (confirm["seed_index"] == 0)].set_index("family")
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ["lrbench", "train"]
        family = words[words.index("--scheduler") + 1]
        capsys.readouterr()
        assert main([*words[1:], "--json", "--device", "cpu"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["test_loss"] == pytest.approx(first.loc[family, "test_loss"], rel=1e-3), command
        assert got["test_accuracy"] == pytest.approx(first.loc[family, "test_accuracy"], abs=0.01), command
