"""The terminal's answer: the confirmed ranking (mean and 95 % CI of the test metric, ties marked) and a
short answer in words."""

from __future__ import annotations

import pandas as pd

from bench.report.ranking import BASELINE, Metric


def _names(names: list[str], most: int = 4) -> str:
    """A few names in words; many, counted (the table marks them)."""
    if len(names) > most:
        return f"{len(names)} other families (= in the table)"
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def p_text(p: float) -> str:
    """A p-value shown to two decimals, or as a bound below 0.01."""
    return "< 0.001" if p < 0.001 else "< 0.01" if p < 0.01 else f"{p:.2f}"


def _p(p: float) -> str:
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def ranking_table(families: pd.DataFrame, metric: Metric) -> str:
    ranked = families[families["status"] == "confirmed"]
    if ranked.empty:
        return "no confirmed ranking"
    lines = [
        f"Ranking on {int(ranked['seeds'].max())} paired seeds ({metric.test}, mean [95 % CI], "
        f"{metric.better}; = tied for best: not significantly worse than the best)"
    ]
    for _, r in ranked.iterrows():
        mark = "=" if r["tied_for_best"] else " "
        p = (
            ""
            if pd.isna(r["p_vs_best"])
            else f"  vs best {r['diff_vs_best']:+.4f} (Wilcoxon {_p(r['p_vs_best'])})"
        )
        ci = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
        lines.append(f"{int(r['rank']):>3}{mark} {r['family']:<27} {r['mean']:.4f} {ci}{p}")
    for _, r in families[families["status"] != "confirmed"].iterrows():
        value = (
            ""
            if pd.isna(r.get("best_search_value"))
            else f" (best search value {r['best_search_value']:.4f})"
        )
        lines.append(f"  -  {r['family']:<27} {r['status']}{value}")
    return "\n".join(lines)


def answer(families: pd.DataFrame, metric: Metric) -> str:
    """E.g. "Best: OneCycleLR, test loss 0.061 [0.057, 0.066]; tied with StepLR and wsd; all three beat
    constant (p < 0.01)"."""
    ranked = families[families["status"] == "confirmed"]
    if ranked.empty:
        return "No answer: no family has a confirmed configuration."
    ranked = ranked.assign(tied_for_best=ranked["tied_for_best"].astype(bool))
    best = ranked.iloc[0]
    text = (
        f"Best: {best['family']}, {metric.label} {best['mean']:.4f} "
        f"[{best['ci_low']:.4f}, {best['ci_high']:.4f}]"
    )
    tied = [str(f) for f in ranked[ranked["tied_for_best"]]["family"] if f != best["family"]]
    if tied:
        text += f"; tied with {_names(tied)}"
    top = ranked[ranked["tied_for_best"]]
    if BASELINE in set(ranked["family"]) and BASELINE not in set(top["family"]):
        ps = top["p_vs_constant"].dropna()
        base = float(ranked[ranked["family"] == BASELINE]["mean"].iloc[0])
        better = metric.sign * (top["mean"] - base) > 0
        n = len(top)
        group = "it" if n == 1 else "both" if n == 2 else f"all {n}"
        if len(ps) == n and (ps < 0.05).all() and better.all():
            text += f"; {group} beat {BASELINE} ({_p(float(ps.max()))} each, Wilcoxon, uncorrected)"
    elif BASELINE in set(top["family"]):
        text += f"; {BASELINE} (no schedule) is among them: no schedule is shown to help"
    worse = [str(f) for f in ranked[~ranked["tied_for_best"]]["family"]]
    if worse and len(worse) <= 4:
        text += f"; significantly worse: {_names(worse)}"
    return text + "."
