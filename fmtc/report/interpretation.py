"""Figures of an interpretation (``fmtc interpret``): modality reliance, regions, edges, networks.

Every ``plot_*`` function returns a matplotlib ``Figure`` drawn from the tables of
:mod:`fmtc.interpret.results`; :func:`write_figures` saves all of them as PNG and SVG.
Figures of a simulated cohort carry a SIMULATED mark; planted regions and edges are
outlined when the cohort has a ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmtc.report.style import MAX_WIDTH_IN, SMALL, legend_below, mark_simulated

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

MODALITY_NAMES = {"fc": "FC (connectivity)", "ts": "TS (BrainLM, time series)"}
GROUPINGS = {"study": "study", "drug": "drug arm", "correct": "prediction",
             "label": "label"}


def _shown(arm: str) -> str:
    """An arm's display name in a title (``fmmtc`` -> ``FMM_TC``), else the arm itself."""
    from fmtc.predict.registry import display_names

    return display_names().get(arm, arm)




def plot_modality_share(subjects: pd.DataFrame, arm: str | None = None,
                        by: tuple[str, ...] = ("study", "drug", "correct"),
                        cohort_column: str | None = None, simulated: bool = False) -> Figure:
    """Violins of each subject's TS share of |IG| (fused representation), by group.

    Panels side by side (at most 9 inches in all, each as wide as its groups need); the
    legend of ``cohort_column``, if any, is below them.

    Parameters
    ----------
    subjects : DataFrame
        ``subjects.csv`` of one or more interpretations (``ts_share`` column).
    arm : str, optional
        Arm to show (default: the first with a TS share).
    by : tuple of str
        Groupings, one panel each (columns of ``subjects``; absent ones are skipped).
    cohort_column : str, optional
        A column naming the cohort of each row (several interpretations side by side):
        violins are then split by it, one colour per cohort.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = subjects.dropna(subset=["ts_share"])
    if frame.empty:
        raise ValueError("no subject has a TS share: the interpretation has no FMM_TC arm")
    arm = arm or str(frame["arm"].iloc[0])
    frame = frame.loc[frame["arm"] == arm].copy()
    frame["correct"] = np.where(frame["correct"].astype(bool), "correct", "wrong")
    frame["label"] = np.where(frame["label"] == 1, "responder", "non-responder")
    panels = [b for b in by if b in frame.columns and frame[b].notna().any()]
    for column in panels:
        frame[column] = frame[column].astype(str)
    widths = [max(2.4, 1.25 * frame[column].nunique()) for column in panels]
    width = min(MAX_WIDTH_IN, 0.9 + sum(widths))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.2), sharey=True, squeeze=False,
                             width_ratios=widths, layout="constrained")
    for ax, column in zip(axes[0], panels, strict=True):
        order = sorted(frame[column].unique())
        sns.violinplot(data=frame, x=column, y="ts_share", order=order, hue=cohort_column,
                       cut=0, inner="point", density_norm="width", ax=ax,
                       color=None if cohort_column else "#8fb3d9", linewidth=1)
        ax.axhline(0.5, color="#666666", lw=0.8, ls=":")
        ax.set(xlabel=GROUPINGS.get(column, column), ylim=(0, 1), ylabel="")
        counts = frame.groupby(column).size()
        ax.set_xticks(range(len(order)), [f"{o}\n(n={counts.get(o, 0)})" for o in order])
        if ax.get_legend() is not None:  # seaborn's, one per panel: one below them all
            ax.get_legend().remove()
    axes[0][0].set_ylabel("TS share of |IG| (fused representation)")
    legend_below(fig, title=cohort_column)
    title = f"Modality reliance of {_shown(arm)}: TS share per test subject (0.5: equal)"
    fig.suptitle(title if width >= 6 else title.replace(": ", ":\n", 1), fontsize=11)
    mark_simulated(fig, simulated)
    return fig


def _brain_note(fig: Figure, text: str) -> None:
    """A note in the strip below a glass brain, at the left (SIMULATED is at the right)."""
    fig.text(0.01, 0.01, text, fontsize=SMALL, va="bottom")


BRAIN_AXES = (0.0, 0.09, 1.0, 0.91)
"""Where a glass brain is drawn (figure fraction): a strip below is left for the notes."""


def plot_region_markers(regions: pd.DataFrame, arm: str, modality: str, top: int = 20,
                        simulated: bool = False) -> Figure:
    """Glass brain of the ``top`` regions by IG score (nilearn ``plot_markers``).

    Marker colour and size follow the score; planted regions (simulated cohorts) are drawn
    with a black edge.
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    table = regions.loc[(regions["arm"] == arm) & (regions["modality"] == modality)]
    table = table.nsmallest(top, "rank")
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 3.5))
    size = 40 + 160 * table["score"] / table["score"].max()
    edges = (np.where(table["planted"], "black", "none") if "planted" in table
             else "none")
    plotting.plot_markers(table["score"].to_numpy(), table[["x", "y", "z"]].to_numpy(),
                          node_size=size.to_numpy(), node_cmap="viridis", figure=fig,
                          axes=BRAIN_AXES, display_mode="ortho", colorbar=True,
                          node_kwargs={"edgecolors": edges, "linewidths": 1.2},
                          title=f"{_shown(arm)}: top {len(table)} regions, "
                                f"{MODALITY_NAMES.get(modality, modality)}")
    if "planted" in table:
        _brain_note(fig, f"black edge: planted ({int(table['planted'].sum())} of "
                    f"{len(table)})")
    mark_simulated(fig, simulated)
    return fig


def plot_top_edges(edges: pd.DataFrame, regions: pd.DataFrame, arm: str, top: int = 30,
                   simulated: bool = False) -> Figure:
    """Glass brain of the ``top`` edges of ``edges.csv`` (nilearn ``plot_connectome``).

    Edge colour: the class-aligned mean attribution (red: the edge supports each subject's
    own label; blue: it pushes subjects towards the other label).
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    table = edges.loc[edges["arm"] == arm]
    table = table.loc[table["mean_attribution"].abs().nlargest(top).index]
    nodes = sorted(set(table["region_a"]) | set(table["region_b"]))
    where = {n: k for k, n in enumerate(nodes)}
    coords = (regions.drop_duplicates("index").set_index("index").loc[nodes, ["x", "y", "z"]]
              .to_numpy())
    matrix = np.zeros((len(nodes), len(nodes)))
    for a, b, value in zip(table["region_a"], table["region_b"], table["mean_attribution"],
                           strict=True):
        matrix[where[a], where[b]] = matrix[where[b], where[a]] = value
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 3.5))
    limit = float(np.abs(matrix).max()) or 1.0
    plotting.plot_connectome(matrix, coords, node_size=12, node_color="#444444",
                             edge_cmap="RdBu_r", edge_vmin=-limit, edge_vmax=limit,
                             colorbar=True, figure=fig, axes=BRAIN_AXES, display_mode="ortho",
                             title=f"{_shown(arm)}: top {len(table)} FC edges "
                                   "(class-aligned mean IG)")
    note = "red: the edge supports the subject's own label; blue: the other label"
    if "planted" in table:
        note += f". Planted edges among them: {int(table['planted'].sum())} of {len(table)}"
    _brain_note(fig, note)
    mark_simulated(fig, simulated)
    return fig


def plot_networks(networks: pd.DataFrame, arm: str, planted: dict[str, Any] | None = None,
                  simulated: bool = False) -> Figure:
    """Mean region score per atlas network, with its t-interval across folds, per modality.

    One panel per modality, one above the other. Scores are magnitudes, so each interval
    and the x-axis start at 0 at the lowest. Planted networks (simulated cohorts) are red.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    table = networks.loc[networks["arm"] == arm]
    modalities = [m for m in ("fc", "ts") if m in set(table["modality"])]
    counts = [max(int((table["modality"] == m).sum()), 1) for m in modalities]
    fig, axes = plt.subplots(len(modalities), 1, squeeze=False, height_ratios=counts,
                             figsize=(8, 1.2 + sum(0.9 + 0.28 * n for n in counts)),
                             layout="constrained")
    planted = planted or {}
    marked = {"fc": set(planted.get("fc_networks") or []),
              "ts": {planted["ts_network"]} if planted.get("ts_network") else set()}
    for ax, modality in zip(axes[:, 0], modalities, strict=True):
        part = table.loc[table["modality"] == modality].sort_values("mean")
        colours = ["#d62728" if n in marked[modality] else "#4c72b0" for n in part["network"]]
        mean = part["mean"].clip(lower=0)
        error = np.vstack([mean - part["low"].clip(lower=0), part["high"].clip(lower=0) - mean])
        ax.barh(part["network"], mean, xerr=np.nan_to_num(error), color=colours,
                ecolor="#333333", capsize=3)
        ax.set_xlim(left=0)
        score = "|class-aligned mean IG|" if modality == "fc" else "mean |IG|"
        ax.set_xlabel(f"mean region score, {score} (95% interval over folds)")
        ax.set_title(MODALITY_NAMES[modality], loc="left")
    if any(marked.values()):
        legend_below(fig, [Patch(color="#d62728"), Patch(color="#4c72b0")],
                     ["planted network", "other network"], ncol=2)
    fig.suptitle(f"{_shown(arm)}: attribution by atlas network", fontsize=11)
    mark_simulated(fig, simulated)
    return fig


def _save(fig: Figure, folder: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    from fmtc.storage import atomic_path

    paths = []
    for suffix in ("png", "svg"):
        path = folder / f"{name}.{suffix}"
        with atomic_path(path) as staging:
            fig.savefig(staging, format=suffix, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def write_figures(folder: str | Path, summary: dict[str, Any], cohort: Any) -> list[Path]:
    """Draw every figure of an interpretation into ``folder`` (PNG and SVG); return the paths."""
    import matplotlib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    simulated = bool(summary.get("simulated"))
    truth = cohort.ground_truth or {}
    written: list[Path] = []
    with matplotlib.rc_context({"svg.hashsalt": "fmtc"}):  # reproducible SVG ids
        subjects = summary.get("subjects")
        if subjects is not None and "ts_share" in subjects and subjects["ts_share"].notna().any():
            for arm in subjects.dropna(subset=["ts_share"])["arm"].unique():
                written += _save(plot_modality_share(subjects, arm, simulated=simulated),
                                 folder, f"modality_share_{arm}")
        regions = summary.get("regions")
        if regions is not None:
            for (arm, modality), _ in regions.groupby(["arm", "modality"], sort=False):
                written += _save(plot_region_markers(regions, arm, modality,
                                                     simulated=simulated),
                                 folder, f"{modality}_regions_{arm}")
            for arm in summary["networks"]["arm"].unique():
                written += _save(plot_networks(summary["networks"], arm, truth or None,
                                               simulated=simulated), folder, f"networks_{arm}")
        edges = summary.get("edges")
        if edges is not None and regions is not None:
            for arm in edges["arm"].unique():
                written += _save(plot_top_edges(edges, regions, arm, simulated=simulated),
                                 folder, f"fc_edges_{arm}")
    return written
