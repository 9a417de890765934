"""The report's charts, as plotly figures: each family keeps one colour in all of them.

Plotly draws, hovers and toggles (a legend entry shows or hides a family); this module only says what goes
where. Figures take the ranking's data frames (bench.report.ranking) and the curves read from MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from bench.report.ranking import BASELINE

if TYPE_CHECKING:
    import plotly.graph_objects as go

TIED, NOT_TIED = "#1b7837", "#b2182b"


def palette(families: Sequence[str]) -> dict[str, str]:
    """A distinct colour per family, in rank order: plotly's Alphabet (26 colours chosen to be told apart,
    Green-Armytage's), then Dark24, without those too pale to see on white (relative luminance over 0.7)."""
    import plotly.express as px
    from plotly.colors import hex_to_rgb

    def luminance(colour: str) -> float:
        r, g, b = hex_to_rgb(colour)
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    both = px.colors.qualitative.Alphabet + px.colors.qualitative.Dark24
    colours = [c for c in both if luminance(c) <= 0.7]
    return {f: colours[i % len(colours)] for i, f in enumerate(families)}


def layout(fig: go.Figure, height: int, **kwargs: object) -> go.Figure:
    # A light look set by hand: a named template (plotly_white) costs 25 ms a figure here, and a report
    # has dozens of figures.
    fig.update_layout(
        template="none",
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={"family": "system-ui, sans-serif", "size": 12, "color": "#333"},
        height=height,
        margin={"l": 60, "r": 10, "t": 40, "b": 40},
        **kwargs,
    )
    fig.update_xaxes(gridcolor="#eee", linecolor="#ccc", zeroline=False, automargin=True)
    fig.update_yaxes(gridcolor="#eee", linecolor="#ccc", zeroline=False, automargin=True)
    return fig


def interval(
    fig: go.Figure,
    col: int,
    x: Sequence[float],
    lo: Sequence[float],
    hi: Sequence[float],
    ys: Sequence[str],
    colours: Sequence[str],
    hover: str,
) -> None:
    import plotly.graph_objects as go

    fig.add_trace(
        go.Scatter(
            x=list(x),
            y=list(ys),
            mode="markers",
            marker={"color": list(colours), "size": 9},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [h - m for h, m in zip(hi, x, strict=True)],
                "arrayminus": [m - lo_ for m, lo_ in zip(x, lo, strict=True)],
                "thickness": 1.5,
            },
            customdata=list(zip(lo, hi, strict=True)),
            hovertemplate=f"%{{y}}: {hover} %{{x:.4f}} [%{{customdata[0]:.4f}}, %{{customdata[1]:.4f}}]"
            "<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=col,
    )


def vs_baseline(pairwise: pd.DataFrame, family: str) -> tuple[float, float, float] | None:
    """``family`` minus the baseline: the paired mean difference and its CI (pairwise.csv holds a - b)."""
    for a, b, sign in ((family, BASELINE, 1.0), (BASELINE, family, -1.0)):
        row = pairwise[(pairwise["family_a"] == a) & (pairwise["family_b"] == b)]
        if not row.empty:
            r = row.iloc[0]
            lo, hi = sorted((sign * r["ci_low"], sign * r["ci_high"]))
            return sign * float(r["diff"]), float(lo), float(hi)
    return None


def forest(ranked: pd.DataFrame, pairwise: pd.DataFrame, test: str) -> go.Figure:
    """Per family (rank order, best at the top): the test metric's mean and 95 % CI over the seeds, its
    paired difference to the best, and to ``constant``; green: tied for best."""
    from plotly.subplots import make_subplots

    names = [
        f"{r}{'=' if t else ''} {f}"
        for r, t, f in zip(ranked["rank"], ranked["tied_for_best"], ranked["family"], strict=True)
    ]
    colours = [TIED if t else NOT_TIED for t in ranked["tied_for_best"]]
    base = [
        (n, c, v)
        for n, c, f in zip(names, colours, ranked["family"], strict=True)
        if (v := vs_baseline(pairwise, f)) is not None
    ]
    titles = [f"{test} (mean, 95 % CI)", "difference to the best"] + (
        [f"difference to {BASELINE}"] if base else []
    )
    fig = make_subplots(
        rows=1,
        cols=len(titles),
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=titles,
    )
    interval(fig, 1, ranked["mean"], ranked["ci_low"], ranked["ci_high"], names, colours, test)
    interval(
        fig,
        2,
        ranked["diff_vs_best"],
        ranked["diff_ci_low"],
        ranked["diff_ci_high"],
        names,
        colours,
        "vs best",
    )
    if base:
        interval(
            fig,
            3,
            [v[0] for _, _, v in base],
            [v[1] for _, _, v in base],
            [v[2] for _, _, v in base],
            [n for n, _, _ in base],
            [c for _, c, _ in base],
            f"vs {BASELINE}",
        )
    for col in range(2, len(titles) + 1):
        fig.add_vline(x=0, line={"color": "#888", "dash": "dot"}, row=1, col=col)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=names)
    return layout(fig, 120 + 26 * len(names))


def seeds(confirm: pd.DataFrame, order: Sequence[str], test: str, colours: Mapping[str, str]) -> go.Figure:
    """The chosen configuration's test metric on every confirmation seed, per family (a box with its
    points)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    chosen = confirm[confirm["chosen"]]
    for family in order:
        runs = chosen[chosen["family"] == family]
        fig.add_trace(
            go.Box(
                y=pd.to_numeric(runs[test], errors="coerce"),
                x=[family] * len(runs),
                name=family,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": colours[family], "size": 5},
                customdata=runs["seed"],
                hovertemplate=f"{family}, seed %{{customdata}}: {test} %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_xaxes(categoryorder="array", categoryarray=list(order), tickangle=-35)
    return layout(fig, 420, yaxis_title=test)  # its legend shows or hides a family


def budget(
    frame: pd.DataFrame, order: Sequence[str], objective: str, colours: Mapping[str, str]
) -> go.Figure:
    """The expected best validation objective after n trials of each family's search (click a family in
    the legend to hide it)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for family in order:
        mine = frame[frame["family"] == family]
        if mine.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=mine["n"],
                y=mine["expected_best"],
                name=family,
                mode="lines+markers",
                line={"color": colours[family]},
                marker={"size": 4},
            )
        )
    return layout(
        fig, 420, xaxis_title="trials of the family's search", yaxis_title=f"expected best {objective}"
    )


def time_to_target(ranked: pd.DataFrame, colours: Mapping[str, str]) -> go.Figure:
    """Median epochs until the validation objective first reaches the target, and on how many seeds it
    did."""
    import plotly.graph_objects as go

    reached = pd.to_numeric(ranked["reached_target"], errors="coerce").fillna(0.0)
    epochs = pd.to_numeric(ranked["epochs_to_target"], errors="coerce")
    fig = go.Figure(
        go.Bar(
            x=epochs.fillna(0.0),
            y=ranked["family"],
            orientation="h",
            marker={"color": [colours[f] for f in ranked["family"]]},
            text=[
                f"{e:.0f} epochs, {r:.0%} of seeds"
                if not math.isnan(e)
                else "not reached on half of the seeds"
                for e, r in zip(epochs, reached, strict=True)
            ],
            textposition="outside",
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return layout(fig, 120 + 24 * len(ranked), xaxis_title="median epochs to the target")


def panel(
    family: str,
    lrs: Sequence[Sequence[tuple[int, float]]],
    vals: Sequence[Sequence[tuple[int, float]]],
    steps_per_epoch: int,
    ranges: tuple[tuple[float, float], tuple[float, float]],
    colour: str,
    objective: str,
) -> go.Figure:
    """One family's small multiple: the LR over optimizer steps (one line per seed; they coincide unless
    the schedule follows the loss) above the validation objective with its band (min to max over the
    seeds) and mean, on the same step axis (epoch ``e`` ends at step ``(e + 1) * steps_per_epoch``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.55])
    seen: set[tuple[tuple[int, float], ...]] = set()
    for points in lrs:
        key = tuple(points)
        if not points or key in seen:
            continue
        seen.add(key)
        steps, lr = zip(*points, strict=True)
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=lr,
                mode="lines",
                line={"color": colour, "width": 1.5},
                name="LR",
                hovertemplate="step %{x}: LR %{y:.4g}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=1,
        )
    by_epoch = pd.DataFrame([dict(v) for v in vals if v]).T.sort_index()
    if not by_epoch.empty:
        x = [(int(e) + 1) * steps_per_epoch for e in by_epoch.index]
        lo, hi, mean = by_epoch.min(axis=1), by_epoch.max(axis=1), by_epoch.mean(axis=1)
        band = {"mode": "lines", "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False}
        fig.add_traces(
            [
                go.Scatter(x=x, y=hi, **band),
                go.Scatter(x=x, y=lo, fill="tonexty", fillcolor=_alpha(colour, 0.25), **band),
                go.Scatter(
                    x=x,
                    y=mean,
                    mode="lines",
                    line={"color": colour, "width": 1.8},
                    customdata=list(by_epoch.index),
                    hovertemplate=f"epoch %{{customdata}}: mean {objective} %{{y:.4f}}<extra></extra>",
                    showlegend=False,
                ),
            ],
            rows=2,
            cols=1,
        )
    fig.update_yaxes(
        type="log", range=[math.log10(ranges[0][0]), math.log10(ranges[0][1])], title_text="LR", row=1, col=1
    )
    fig.update_yaxes(range=list(ranges[1]), title_text=objective, row=2, col=1)
    fig.update_xaxes(title_text="optimizer step", row=2, col=1)
    return layout(fig, 330, title={"text": family, "font": {"size": 14, "color": colour}})


def _alpha(colour: str, alpha: float) -> str:
    from plotly.colors import hex_to_rgb

    r, g, b = hex_to_rgb(colour)
    return f"rgba({r},{g},{b},{alpha})"


def importance(family: str, values: Mapping[str, float], colour: str) -> go.Figure:
    """fANOVA importance of the family's searched hyperparameters (over its own trials)."""
    import plotly.graph_objects as go

    items = sorted(values.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=["base_lr" if k == "lr" else k.removeprefix(f"{family}.") for k, _ in items],
            orientation="h",
            marker={"color": colour},
            hovertemplate="%{y}: %{x:.2f}<extra></extra>",
        )
    )
    return layout(
        fig,
        90 + 28 * len(items),
        title={"text": "what mattered (fANOVA importance)", "font": {"size": 12}},
        xaxis={"range": [0, 1]},
    )


def history(family: str, trials: pd.DataFrame, objective: str, sign: float, colour: str) -> go.Figure:
    """The family's search: each trial's objective (a pruned one: the best value it reported before it
    stopped, leaderboard.csv's best_reported) and the best so far."""
    import plotly.graph_objects as go

    trials = trials.sort_values("number")
    fig = go.Figure()
    for state, symbol in (("COMPLETE", "circle"), ("PRUNED", "x")):
        mine = trials[trials["state"] == state]
        value = mine["value"] if state == "COMPLETE" else mine["best_reported"]
        fig.add_trace(
            go.Scatter(
                x=mine["number"],
                y=value,
                mode="markers",
                name=state.lower(),
                marker={
                    "color": colour,
                    "symbol": symbol,
                    "size": 7,
                    "opacity": 1.0 if state == "COMPLETE" else 0.5,
                },
                hovertemplate=f"trial %{{x}} ({state.lower()}): {objective} %{{y:.4f}}<extra></extra>",
            )
        )
    done = trials[trials["state"] == "COMPLETE"]
    if not done.empty:
        best = (sign * done["value"]).cummax() * sign
        fig.add_trace(
            go.Scatter(
                x=done["number"],
                y=best,
                mode="lines",
                name="best so far",
                line={"color": "#555", "shape": "hv"},
            )
        )
    return layout(
        fig,
        260,
        title={"text": "search history", "font": {"size": 12}},
        xaxis_title="trial",
        yaxis_title=objective,
        legend={"orientation": "h", "y": -0.3},
    )
