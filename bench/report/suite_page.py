"""``suite.html``: the suite's page (Jinja2 lays it out, plotly draws; plotly.js embedded, no network):
the aggregate ranking with its CIs, the performance profiles, a task x family heatmap of each task's own
ranks (its tie groups), and a link to each task's report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.analysis.suite import SuiteTables
from bench.cache import write_whole
from bench.config.suite import SuiteConfig
from bench.data import better
from bench.report import charts
from bench.report.page import TEMPLATES, figure_html
from bench.report.ranking import BASELINE
from bench.tracking.names import test_metric

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from bench.report.suite import TaskResult

PROFILE_TITLES = {"score": "on the test metric (error rate, loss or RMSE)", "time": "on epochs to target"}


def aggregate(families: pd.DataFrame) -> go.Figure:
    """Per family, best first: IQM of normalised scores, mean rank and P(improvement over constant), each
    with its 95 % stratified-bootstrap CI."""
    from plotly.subplots import make_subplots

    names = list(families["family"])
    colours = [charts.TIED if i == 0 else "#555" for i in range(len(names))]
    titles = ["IQM of normalised score", "mean rank over tasks", f"P(improvement over {BASELINE})"]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.03, subplot_titles=titles)
    for col, (v, lo, hi, what) in enumerate(
        (
            ("iqm", "iqm_ci_low", "iqm_ci_high", "IQM"),
            ("mean_rank", "rank_ci_low", "rank_ci_high", "mean rank"),
            ("p_improvement", "p_ci_low", "p_ci_high", "P(improvement)"),
        ),
        start=1,
    ):
        charts.interval(fig, col, families[v], families[lo], families[hi], names, colours, what)
    fig.add_vline(x=0, line={"color": "#888", "dash": "dot"}, row=1, col=1)
    fig.add_vline(x=1, line={"color": "#888", "dash": "dot"}, row=1, col=1)
    fig.add_vline(x=0.5, line={"color": "#888", "dash": "dot"}, row=1, col=3)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=names)
    return charts.layout(fig, 120 + 26 * len(names))


def profiles(curves: pd.DataFrame, order: Sequence[str], colours: Mapping[str, str]) -> go.Figure:
    """The fraction of tasks on which each family is within a factor tau of the best (profiles.csv)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    kinds = [k for k in PROFILE_TITLES if (curves["kind"] == k).any()]
    fig = make_subplots(
        rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=[PROFILE_TITLES[k] for k in kinds]
    )
    for col, kind in enumerate(kinds, start=1):
        for family in order:
            one = curves[(curves["kind"] == kind) & (curves["family"] == family)]
            fig.add_trace(
                go.Scatter(
                    x=one["tau"],
                    y=one["fraction"],
                    mode="lines",
                    line={"color": colours[family], "shape": "hv", "width": 2},
                    name=family,
                    legendgroup=family,
                    showlegend=col == 1,
                    hovertemplate=f"{family}: %{{y:.0%}} of tasks within τ = %{{x:.2f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="τ (ratio to the best family)", row=1, col=col)
    fig.update_yaxes(title_text="fraction of tasks", range=[0, 1.05], row=1, col=1)
    return charts.layout(fig, 380)


def heatmap(results: Sequence[TaskResult], order: Sequence[str]) -> go.Figure:
    """Task x family: each task's own rank of the family (1 + the families significantly better on that
    task), ``=`` where tied for best; equal numbers in a row are a tie group."""
    import plotly.graph_objects as go

    rows = [r for r in results if r.families is not None and r.scores is not None]
    z, text = [], []
    for r in rows:
        assert r.families is not None
        ranked = r.families[r.families["status"] == "confirmed"].set_index("family")
        z.append([float(ranked.at[f, "rank"]) if f in ranked.index else None for f in order])
        text.append(
            [
                f"{int(ranked.at[f, 'rank'])}{'=' if bool(ranked.at[f, 'tied_for_best']) else ''}"
                if f in ranked.index
                else "–"
                for f in order
            ]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(order),
            y=[r.task.name for r in rows],
            text=text,
            texttemplate="%{text}",
            colorscale=[[0, charts.TIED], [0.5, "#f7f7f7"], [1, charts.NOT_TIED]],
            colorbar={"title": {"text": "rank"}},
            hovertemplate="%{y} · %{x}: rank %{text}<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_yaxes(autorange="reversed")
    return charts.layout(fig, 120 + 40 * len(rows))


def _task_rows(results: Sequence[TaskResult], root: Path) -> list[dict[str, str]]:
    out = []
    for r in results:
        study = r.task.study
        best = ""
        if r.families is not None and r.scores is not None:
            tied = r.families[
                (r.families["status"] == "confirmed") & r.families["tied_for_best"].astype(bool)
            ]
            best = ", ".join(tied["family"])
        report = r.folder / "report.html"
        out.append(
            {
                "name": r.task.name,
                "data": study.task.name,
                "rows": str(r.task.sizes.train_rows),
                "metric": f"{test_metric(study.objective.metric)} ({better(study.direction)})",
                "best": best or r.why,
                "link": report.relative_to(root).as_posix() if report.is_file() else "",
            }
        )
    return out


def render(
    suite: SuiteConfig, root: Path, results: Sequence[TaskResult], tables: SuiteTables | None, answer: str
) -> str:
    import jinja2
    from plotly.offline import get_plotlyjs

    figures = dict.fromkeys(("aggregate", "profiles", "heatmap"), "")
    order: list[str] = []
    if tables is not None:
        order = list(tables.families["family"])
        colours = charts.palette(order)
        figures["aggregate"] = figure_html(aggregate(tables.families), "aggregate")
        figures["profiles"] = figure_html(profiles(tables.profiles, order, colours), "profiles")
        figures["heatmap"] = figure_html(heatmap(results, order), "heatmap")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    table = (
        ""
        if tables is None
        else tables.families.to_html(
            index=False, float_format=lambda v: f"{v:.3f}", na_rep="", table_id="suite-table", border=0
        )
    )
    return env.get_template("suite.html.j2").render(
        suite=suite,
        plotly_js=get_plotlyjs(),
        figures=figures,
        table=table,
        tasks=_task_rows(results, root),
        missing=any(r.pending for r in results),
        baseline=BASELINE,
        answer=answer,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def write_page(
    suite: SuiteConfig,
    root: Path,
    results: Sequence[TaskResult],
    tables: SuiteTables | None,
    answer: str,
    path: Path,
) -> None:
    """The page, written whole (a temporary file renamed over it)."""
    text = render(suite, root, results, tables, answer)
    write_whole(path, lambda f: f.write(text.encode("utf-8")))
