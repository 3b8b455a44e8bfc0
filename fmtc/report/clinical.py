"""Figures of "Would it help a trial?": reliability, decision curves, enrichment.

Each function draws from a table of :func:`fmtc.evaluate.clinical.utility_report` and returns
a matplotlib ``Figure``; ``simulated=True`` adds the SIMULATED mark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fmtc.report.style import legend_below, mark_simulated, unclip

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")




def _name(arm: str, names: dict[str, str] | None) -> str:
    return (names or {}).get(arm, arm)


def plot_reliability(reliability: pd.DataFrame, names: dict[str, str] | None = None,
                     simulated: bool = False) -> Figure:
    """Observed response rate against mean predicted probability, per model and recalibration.

    One panel per recalibration (a dot per bin of predictions), side by side in 9 inches;
    intervals and axes stay in [0, 1]; the legend is below the panels.
    """
    import matplotlib.pyplot as plt

    methods = [m for m in ("none", "platt", "isotonic") if m in set(reliability["recalibration"])]
    fig, axes = plt.subplots(1, len(methods), figsize=(min(9.0, 0.8 + 2.9 * len(methods)), 4.0),
                             sharey=True, squeeze=False, layout="constrained")
    titles = {"none": "as predicted", "platt": "Platt, cross-fitted",
              "isotonic": "isotonic, cross-fitted"}
    for ax, method in zip(axes[0], methods, strict=True):
        part = reliability[reliability["recalibration"] == method]
        for colour, (arm, rows) in zip(PALETTE, part.groupby("arm", sort=False), strict=False):
            observed = rows["observed"].clip(0, 1)
            error = np.vstack([observed - rows["low"].clip(0, 1),
                               rows["high"].clip(0, 1) - observed])
            bars = ax.errorbar(rows["mean_predicted"].clip(0, 1), observed, yerr=error,
                               marker="o", capsize=3, color=colour, label=_name(arm, names),
                               lw=1.2)
            unclip(bars.lines)
        ax.plot([0, 1], [0, 1], color="#888888", ls=":", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xticks=[0, 0.25, 0.5, 0.75, 1],
               xlabel="mean predicted probability")
        ax.set_title(titles[method], loc="left")
    axes[0][0].set_ylabel("observed response rate\n(95% exact interval)")
    legend_below(fig)
    mark_simulated(fig, simulated)
    return fig


def plot_decision_curve(curve: pd.DataFrame, names: dict[str, str] | None = None,
                        simulated: bool = False) -> Figure:
    """Net benefit against threshold: each model with its bootstrap band, enrol all / none."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    everyone = curve[curve["strategy"] == "enrol all"]
    ax.plot(everyone["threshold"], everyone["net_benefit"], color="#555555", lw=1.5,
            label="enrol all")
    ax.axhline(0, color="#000000", lw=1, label="enrol none")
    models = [s for s in curve["strategy"].unique() if s not in ("enrol all", "enrol none")]
    for colour, model in zip(PALETTE, models, strict=False):
        rows = curve[curve["strategy"] == model]
        ax.plot(rows["threshold"], rows["net_benefit"], color=colour, lw=1.8,
                label=_name(model, names))
        ax.fill_between(rows["threshold"], rows["low"], rows["high"], color=colour, alpha=0.15)
        better = rows[rows["better"]]
        if len(better):
            ax.plot(better["threshold"], better["net_benefit"], "o", color=colour, ms=3)
    top = max(curve["high"].max(), 0.05)
    ax.set(xlabel="threshold probability (enrol if p >= t)", ylabel="net benefit",
           ylim=(-0.05, top * 1.1), xlim=(curve["threshold"].min(), curve["threshold"].max()))
    ax.set_title("Decision curves", loc="left")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(color="#555555", alpha=0.25),
                Line2D([], [], ls="none", marker="o", ms=3, color="#555555")]
    labels += ["band: 95% bootstrap", "dot: gain over the better default excludes 0"]
    legend_below(fig, handles, labels, ncol=3)
    mark_simulated(fig, simulated)
    return fig


def plot_enrichment(enrichment: pd.DataFrame, names: dict[str, str] | None = None,
                    simulated: bool = False) -> Figure:
    """Response rate among the enrolled against the fraction of screened patients enrolled.

    Rates, their bands and the y-axis stay in [0, 1]; the legend is below the axes.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    overall = None
    for colour, (arm, rows) in zip(PALETTE, enrichment.groupby("arm", sort=False),
                                   strict=False):
        rows = rows.sort_values("fraction")
        unclip(ax.plot(rows["fraction"], rows["response_rate"].clip(0, 1), marker="o",
                       color=colour, label=_name(arm, names)))
        ax.fill_between(rows["fraction"], rows["low"].clip(0, 1), rows["high"].clip(0, 1),
                        color=colour, alpha=0.15)
        overall = float(rows.loc[rows["fraction"] == rows["fraction"].max(),
                                 "response_rate"].iloc[0])
    if overall is not None:
        ax.axhline(overall, color="#555555", ls=":", lw=1, label="enrol all")
    ax.set(xlabel="fraction of screened patients enrolled (highest predicted first)",
           ylabel="response rate among the enrolled", ylim=(0, 1))
    ax.invert_xaxis()
    ax.set_title("Enrichment (band: 95% subject bootstrap)", loc="left")
    legend_below(fig)
    mark_simulated(fig, simulated)
    return fig
