"""Figures of the book: cohort description, connectivity by group, per-fold results.

Every function returns a matplotlib ``Figure`` and draws nothing else; the
notebooks show them. Simulated cohorts get a "SIMULATED" mark on every figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fmtc.cohort.folder import Cohort
from fmtc.preprocess.transforms import functional_connectivity, robust_scale

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def _mark_simulated(fig: Figure, cohort: Cohort) -> None:
    if cohort.is_simulated:
        fig.text(0.995, 0.005, "SIMULATED", ha="right", va="bottom", fontsize=9,
                 color="#b30000", fontweight="bold", alpha=0.8)


def label_table(cohort: Cohort, by: str = "Drug") -> pd.DataFrame:
    """Counts of each label value by a covariate (e.g. drug arm), with totals.

    Parameters
    ----------
    cohort : Cohort
    by : str
        Covariate column of ``participants.tsv``; ignored when absent.

    Returns
    -------
    DataFrame
        Rows: covariate values and ``total``; columns: label names and ``total``.
    """
    table = cohort.participants
    names = {0: f"non-{cohort.label_column.lower()} (0)", 1: f"{cohort.label_column.lower()} (1)"}
    labels = table[cohort.label_column].map(names)
    groups = table[by] if by in table.columns else pd.Series("all", index=table.index, name=by)
    counts = pd.crosstab(groups, labels, margins=True, margins_name="total")
    counts.columns.name = cohort.label_column
    return counts


def plot_example_timeseries(cohort: Cohort, participant_id: str | None = None,
                            n_regions: int = 6) -> Figure:
    """Raw and robust-scaled series of a few regions (one per network) of one subject."""
    import matplotlib.pyplot as plt

    participant_id = participant_id or cohort.subject_ids[0]
    series = cohort.timeseries[participant_id]
    regions = cohort.regions
    picks = regions.groupby("network", sort=True).head(1).index[:n_regions].to_numpy()
    tr = cohort.repetition_time[participant_id]
    time = np.arange(len(series)) * tr
    scaled = robust_scale(series)
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, constrained_layout=True)
    for position in picks:
        label = f"{regions.loc[position, 'name']} ({regions.loc[position, 'network']})"
        axes[0].plot(time, series[:, position], lw=0.8, label=label)
        axes[1].plot(time, scaled[:, position], lw=0.8)
    axes[0].set_ylabel("BOLD (a.u.)")
    axes[0].set_title(f"{participant_id}: one region per network", loc="left")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[1].set_ylabel("(x − median) / IQR")
    axes[1].set_xlabel("time (s)")
    _mark_simulated(fig, cohort)
    return fig


def mean_connectivity_by_group(cohort: Cohort, kind: str = "pearson") -> dict[str, np.ndarray]:
    """Mean FC matrix of each label group and their difference (positive − negative)."""
    matrices = np.stack([functional_connectivity(cohort.timeseries[s], kind)
                         for s in cohort.subject_ids])
    labels = cohort.labels
    positive, negative = matrices[labels == 1].mean(axis=0), matrices[labels == 0].mean(axis=0)
    return {"positive": positive, "negative": negative, "difference": positive - negative}


def plot_connectivity_by_group(cohort: Cohort, kind: str = "pearson") -> Figure:
    """Seaborn heatmaps of the mean FC of each group and their difference, network-ordered.

    Lines mark network boundaries (regions are numbered network by network in
    SIM424 and A424 alike); for a simulated cohort the planted edges are outlined.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    means = mean_connectivity_by_group(cohort, kind)
    label = cohort.label_column
    titles = {"positive": f"{label} = 1", "negative": f"{label} = 0",
              "difference": "difference (1 − 0)"}
    networks = cohort.regions["network"].to_numpy()
    boundaries = np.flatnonzero(networks[1:] != networks[:-1]) + 1
    limit = float(np.percentile(np.abs(means["negative"]), 99))
    diff_limit = float(np.percentile(np.abs(means["difference"]), 99.9))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
    for ax, key in zip(axes, ("positive", "negative", "difference"), strict=True):
        bound = diff_limit if key == "difference" else limit
        sns.heatmap(means[key], ax=ax, cmap="RdBu_r", vmin=-bound, vmax=bound, square=True,
                    xticklabels=False, yticklabels=False,
                    cbar_kws={"shrink": 0.7, "label": "Fisher z" if kind == "pearson" else kind})
        for b in boundaries:
            ax.axhline(b, color="k", lw=0.3)
            ax.axvline(b, color="k", lw=0.3)
        ax.set_title(titles[key], loc="left")
    if cohort.ground_truth and cohort.ground_truth.get("fc_edges"):
        position = {int(i): p for p, i in enumerate(cohort.regions["index"])}
        edges = np.array([[position[a], position[b]] for a, b in cohort.ground_truth["fc_edges"]])
        rows, cols = edges[:, 0], edges[:, 1]
        for r0, r1, c0, c1 in ((rows.min(), rows.max(), cols.min(), cols.max()),
                               (cols.min(), cols.max(), rows.min(), rows.max())):
            axes[2].add_patch(plt.Rectangle((c0, r0), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                            ec="#2ca02c", lw=1.2))
        axes[2].set_xlabel("green: planted FC edges (ground truth)")
    fig.suptitle(f"Mean functional connectivity by group ({len(cohort.subject_ids)} subjects)")
    _mark_simulated(fig, cohort)
    return fig


def plot_fold_metrics(metrics: pd.DataFrame, metric: str = "mcc") -> Figure:
    """Dot plot of one metric per fold (dots) and pooled per repeat (diamonds), by model.

    Parameters
    ----------
    metrics : DataFrame
        Long-form ``metrics.csv``: ``model, selection, repeat, fold, metric, value``.
    metric : str
        Which metric to show.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = metrics[metrics["metric"] == metric]
    folds = rows[rows["fold"].astype(str) != "pooled"]
    pooled = rows[rows["fold"].astype(str) == "pooled"]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * rows["model"].nunique()),
                           constrained_layout=True)
    sns.stripplot(data=folds, x="value", y="model", hue="selection", dodge=True, alpha=0.45,
                  size=4, ax=ax, jitter=0.2)
    sns.pointplot(data=pooled, x="value", y="model", hue="selection", dodge=0.4, ax=ax,
                  markers="D", linestyles="none", errorbar=("ci", 95), legend=False)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"{metric.upper()} (dots: folds; diamonds: pooled per repeat, 95% CI)")
    ax.set_ylabel("")
    return fig
