"""``report.html``: one self-contained page that answers the study's question (Jinja2 lays it out, plotly
draws; plotly.js is embedded once, so the page opens with no network).

:func:`write_report` runs where the curves are read: in the study's MLflow writer process, or in
``lrbench report`` / ``lrbench export``. It gets everything else as plain data (:class:`ReportInput`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.cache import write_whole
from bench.report import charts
from bench.report.answer import p_text
from bench.tracking.names import Curves

if TYPE_CHECKING:
    import plotly.graph_objects as go

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Reproduction:
    family: str
    code: str  # Python: the optimizer and the scheduler, and how the loop steps it
    command: str  # lrbench train ..., seed index 0 of the confirmation (or the search's trial)
    caveat: str = ""  # what of the study the command cannot say


@dataclass(frozen=True)
class ReportInput:
    """What the page shows, read from the stores (bench.cli.study builds it). ``panel_runs``: family ->
    the MLflow run ids its small multiple draws (the chosen configuration's confirmation runs, or its best
    search trial); their curves come in ``Curves`` under the labels ``family#i``."""

    name: str
    settings: str
    objective: str  # val_loss / val_accuracy / val_rmse
    test: str  # test_loss / test_accuracy / test_rmse
    better: str  # of both: "higher is better" or "lower is better"
    sign: float  # 1: higher is better
    lr_key: str
    val_key: str
    steps_per_epoch: int
    answer: str
    board: pd.DataFrame  # leaderboard.csv
    search: pd.DataFrame  # schedulers.csv
    families: pd.DataFrame | None  # families.csv (None: no confirmation)
    confirm: pd.DataFrame | None
    pairwise: pd.DataFrame | None
    budget: pd.DataFrame
    order: Sequence[str]  # families, best first
    untried: Sequence[str]  # the study's families without a trial (a joint search never chose them)
    panel_runs: Mapping[str, Sequence[str]]
    panel_vals: Mapping[str, Sequence[Sequence[tuple[int, float]]]]  # family -> by seed, stored ones
    importance: Mapping[str, Mapping[str, float]]
    reproduce: Mapping[str, Reproduction]
    versions: Mapping[str, str]
    seeds: Sequence[int]
    definition: str  # the resolved study definition (YAML)
    generated: str  # when the page was written (the only thing a rewrite changes)


def prepare() -> None:
    """What writing a report imports (plotly, Jinja2), paid while the study's writer waits for work."""
    import jinja2  # noqa: F401
    import plotly.graph_objects
    import plotly.io  # noqa: F401
    from plotly.subplots import make_subplots  # noqa: F401


def panel_labels(data: ReportInput) -> dict[str, str]:
    """label -> run id, the curves to read for the small multiples."""
    return {f"{family}#{i}": run for family, runs in data.panel_runs.items() for i, run in enumerate(runs)}


def panel_keys(data: ReportInput) -> tuple[str, ...]:
    """The metrics to read of those runs: the LR, and the validation curve unless every panel has it
    stored."""
    stored = all(family in data.panel_vals for family in data.panel_runs)
    return (data.lr_key,) if stored else (data.lr_key, data.val_key)


def figure_html(fig: go.Figure, div_id: str) -> str:
    import plotly.io as pio

    # A fixed div id: the page is the same each time it is written from the same stores.
    return str(
        pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"fig-{div_id}",
            config={"displaylogo": False},
        )
    )


def _ranges(data: ReportInput, curves: Curves) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shared axes for every panel: the LR range (log) and the validation objective's."""
    lrs = [v for c in curves.values() for _, v in c.get(data.lr_key, []) if v > 0 and math.isfinite(v)]
    read = [c.get(data.val_key, []) for c in curves.values()]
    stored = [curve for by_seed in data.panel_vals.values() for curve in by_seed]
    vals = [v for curve in [*read, *stored] for _, v in curve if math.isfinite(v)]
    # A schedule that ends at zero would stretch the log axis down to 1e-10 and squeeze every other curve:
    # the axis spans four decades below the highest LR at most.
    lr = (max(min(lrs), max(lrs) * 1e-4) / 1.3, max(lrs) * 1.3) if lrs else (1e-5, 1.0)
    if not vals:
        return lr, (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if data.sign < 0:  # a loss: its tail matters, a diverged epoch would flatten every panel
        hi = min(hi, float(pd.Series(vals).quantile(0.98)) * 1.1)
    pad = (hi - lo) * 0.05 or 0.05
    return lr, (lo - pad, hi + pad)


def _panels(data: ReportInput, curves: Curves, colours: Mapping[str, str]) -> list[tuple[str, str]]:
    """One small multiple per family with curves in MLflow (with several workers, the runs another worker
    has just finished may not have theirs yet: ``lrbench report`` draws them later)."""
    ranges = _ranges(data, curves)
    out = []
    for k, family in enumerate(f for f in data.order if f in data.panel_runs):
        labels = [f"{family}#{i}" for i in range(len(data.panel_runs[family]))]
        lrs = [curves[label][data.lr_key] for label in labels if label in curves]
        vals = data.panel_vals.get(family) or [
            curves[label].get(data.val_key, []) for label in labels if label in curves
        ]
        if not any(lrs):
            continue
        fig = charts.panel(family, lrs, vals, data.steps_per_epoch, ranges, colours[family], data.objective)
        out.append((family, figure_html(fig, f"panel-{k}")))
    return out


def _per_family(data: ReportInput, colours: Mapping[str, str]) -> list[dict[str, str]]:
    out = []
    for k, family in enumerate(data.order):
        trials = data.board[data.board["scheduler"] == family]
        item = {"family": family, "importance": "", "history": ""}
        if data.importance.get(family):
            item["importance"] = figure_html(
                charts.importance(family, data.importance[family], colours[family]), f"imp-{k}"
            )
        if not trials.empty:
            fig = charts.history(family, trials, data.objective, data.sign, colours[family])
            item["history"] = figure_html(fig, f"hist-{k}")
        out.append(item)
    return out


def _ranking_rows(families: pd.DataFrame) -> list[dict[str, object]]:
    rows = []
    for _, r in families.iterrows():
        confirmed = r["status"] == "confirmed"
        rows.append(
            {
                "rank": int(r["rank"]) if confirmed else "–",
                "tied": bool(r["tied_for_best"]) if confirmed else False,
                "family": r["family"],
                "mean": f"{r['mean']:.4f}" if confirmed else r["status"],
                "ci": f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if confirmed else "",
                "diff": "" if pd.isna(r["p_vs_best"]) else f"{r['diff_vs_best']:+.4f}",
                "p": "" if pd.isna(r["p_vs_best"]) else p_text(r["p_vs_best"]),
                "p_constant": "" if pd.isna(r["p_vs_constant"]) else p_text(r["p_vs_constant"]),
            }
        )
    return rows


def render(curves: Curves, data: ReportInput) -> str:
    import jinja2
    from plotly.offline import get_plotlyjs

    order = list(data.order)
    colours = charts.palette(order)
    figures = dict.fromkeys(("forest", "seeds", "ttt", "budget"), "")
    if data.families is not None and data.confirm is not None and data.pairwise is not None:
        ranked = data.families[data.families["status"] == "confirmed"]
        if not ranked.empty:
            figures["forest"] = figure_html(charts.forest(ranked, data.pairwise, data.test), "forest")
            figures["seeds"] = figure_html(
                charts.seeds(data.confirm, list(ranked["family"]), data.test, colours), "seeds"
            )
            if ranked["epochs_to_target"].notna().any():
                figures["ttt"] = figure_html(charts.time_to_target(ranked, colours), "time-to-target")
    if not data.budget.empty:
        figures["budget"] = figure_html(charts.budget(data.budget, order, data.objective, colours), "budget")
    panels = _panels(data, curves, colours)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(
        d=data,
        plotly_js=get_plotlyjs(),
        figures=figures,
        ranking=_ranking_rows(data.families) if data.families is not None else [],
        panels=panels,
        no_curves=[f for f in data.panel_runs if f not in {family for family, _ in panels}],
        no_runs=[f for f in order if f not in data.panel_runs],
        per_family=_per_family(data, colours),
        colours=colours,
        search_table=data.search.to_html(
            index=False, float_format=lambda v: f"{v:.4g}", na_rep="", table_id="search-table", border=0
        ),
    )


def write_report(curves: Curves, data: ReportInput, path: Path) -> None:
    """The page, written whole: to a temporary file beside it, then renamed over it."""
    html = render(curves, data)
    write_whole(path, lambda f: f.write(html.encode("utf-8")))
