"""Figures and result tables of the book: the cohort, per-fold and pooled results, contrasts.

Every function returns a matplotlib ``Figure`` (or a table) and draws nothing else; the
notebooks show them. Every figure follows the book's legibility rule and marks a simulated
cohort SIMULATED (:mod:`fmtc.report.style`); numbers, names and verdicts are written as
:mod:`fmtc.report.text` writes them. The notebooks reach those through this module too
(``from fmtc.report import figures as plots``), which re-exports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmtc.cohort.folder import Cohort
from fmtc.preprocess.transforms import functional_connectivity, robust_scale
from fmtc.report.pages import NOT_ESTIMABLE, shown_verdict
from fmtc.report.style import (
    BOOK_STYLE,
    CHANCE,
    COLUMN_PX,
    MAX_WIDTH_IN,
    METRIC_RANGES,
    MIN_TEXT_PX,
    SMALL,
    clip_arrows,
    clipped_handle,
    difference_range_pp,
    draw_differences,
    draw_intervals,
    drawn_texts,
    legend_below,
    mark_simulated,
    metric_range,
    padded_limits,
    smallest_text_px,
    text_sizes_px,
    unclip,
    use_book_style,
)
from fmtc.report.text import (
    ARM_VARIANTS,
    METRIC_NAMES,
    READOUT_NAMES,
    SAME_PREDICTIONS,
    _finite,  # noqa: F401 - the multimodal page calls plots._finite
    arm_label,
    claim_verdict,
    claims_brief,
    claims_verdicts,
    difference_interval_text,
    difference_text,
    estimable,
    estimate_text,
    interval_text,
    number_text,
    verdict_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [  # this module's figures and tables, and what the notebooks reach through it
    "label_table", "plot_example_timeseries", "mean_connectivity_by_group",
    "plot_connectivity_by_group", "plot_fold_metrics", "summary_table", "summary_view",
    "plot_summary_intervals", "plot_contrasts", "trait_table", "plot_trait",
    "plot_probe_report", "plot_pretraining_loss", "plot_sweep", "COLUMN_PX", "MIN_TEXT_PX",
    "MAX_WIDTH_IN", "SMALL", "BOOK_STYLE", "METRIC_RANGES", "CHANCE", "use_book_style",
    "drawn_texts", "text_sizes_px", "smallest_text_px", "metric_range", "difference_range_pp",
    "padded_limits", "legend_below", "unclip", "clip_arrows", "clipped_handle",
    "draw_intervals", "draw_differences", "mark_simulated", "ARM_VARIANTS", "READOUT_NAMES",
    "METRIC_NAMES", "arm_label", "estimate_text", "estimable", "interval_text", "number_text",
    "SAME_PREDICTIONS", "claim_verdict", "difference_text", "difference_interval_text",
    "verdict_text", "claims_verdicts", "claims_brief", "NOT_ESTIMABLE", "shown_verdict",
]


def _mark_simulated(fig: Figure, cohort: Cohort) -> None:
    mark_simulated(fig, cohort.is_simulated)


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
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, layout="constrained")
    for position in picks:
        label = f"{regions.loc[position, 'name']} ({regions.loc[position, 'network']})"
        axes[0].plot(time, series[:, position], lw=0.8, label=label)
        axes[1].plot(time, scaled[:, position], lw=0.8)
    axes[0].set_ylabel("BOLD (a.u.)")
    axes[0].set_title(f"{participant_id}: one region per network", loc="left")
    axes[1].set_ylabel("(x − median) / IQR")
    axes[1].set_xlabel("time (s)")
    legend_below(fig, ncol=3)
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

    Two rows: the two groups (one colour scale), then their difference beside a key. Lines
    mark network boundaries (regions are numbered network by network in SIM424 and A424
    alike); for a simulated cohort the planted edges are outlined.
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
    fig, axes = plt.subplot_mosaic([["positive", "negative"], ["difference", "key"]],
                                   figsize=(8.5, 7.6), layout="constrained")
    unit = "Fisher z" if kind == "pearson" else kind
    for key in ("positive", "negative", "difference"):
        ax = axes[key]
        bound = diff_limit if key == "difference" else limit
        sns.heatmap(means[key], ax=ax, cmap="RdBu_r", vmin=-bound, vmax=bound, square=True,
                    xticklabels=False, yticklabels=False,
                    cbar_kws={"shrink": 0.8, "label": unit})
        for b in boundaries:
            ax.axhline(b, color="k", lw=0.3)
            ax.axvline(b, color="k", lw=0.3)
        ax.set_title(titles[key], loc="left")
    notes = [f"{len(cohort.regions)} regions, ordered by network;",
             "black lines: network boundaries.", "",
             f"Colour: mean {unit} of each group", "(one scale for both groups);",
             "the difference has its own scale."]
    if cohort.ground_truth and cohort.ground_truth.get("fc_edges"):
        position = {int(i): p for p, i in enumerate(cohort.regions["index"])}
        edges = np.array([[position[a], position[b]] for a, b in cohort.ground_truth["fc_edges"]])
        rows, cols = edges[:, 0], edges[:, 1]
        for r0, r1, c0, c1 in ((rows.min(), rows.max(), cols.min(), cols.max()),
                               (cols.min(), cols.max(), rows.min(), rows.max())):
            axes["difference"].add_patch(plt.Rectangle((c0, r0), c1 - c0 + 1, r1 - r0 + 1,
                                                       fill=False, ec="#2ca02c", lw=1.2))
        notes += ["", "Green boxes (difference):", "the planted FC edges", "(ground truth)."]
    axes["key"].axis("off")
    axes["key"].text(0.0, 1.0, "\n".join(notes), va="top", ha="left", fontsize=10,
                     transform=axes["key"].transAxes, linespacing=1.4)
    fig.suptitle(f"Mean functional connectivity by group ({len(cohort.subject_ids)} subjects)")
    _mark_simulated(fig, cohort)
    return fig


def _reference(ax: Axes, metric: str, vertical: bool = True) -> None:
    """A dashed line at the chance value of ``metric`` (0 for a metric without one)."""
    value = CHANCE.get(str(metric).lower(), 0.0)
    lo, hi = metric_range(metric)
    if lo <= value <= hi:
        (ax.axvline if vertical else ax.axhline)(value, color="grey", lw=0.8, ls="--")


def plot_fold_metrics(metrics: pd.DataFrame, metric: str = "mcc",
                      names: dict[str, str] | None = None) -> Figure:
    """Dot plot of one metric per fold (dots) and pooled per repeat (diamonds), by model.

    The x-axis stays inside the metric's range (:func:`metric_range`); the legend is to
    the right of the axes.

    Parameters
    ----------
    metrics : DataFrame
        Long-form ``metrics.csv``: ``arm, model, selection, repeat, fold, metric, value``.
    metric : str
        Which metric to show.
    names : dict, optional
        Display names of the arms (default: :func:`arm_label`; arms already shown by their
        display names stay as they are).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    key = _arm_column(metrics)
    rows = metrics[metrics["metric"] == metric].copy()
    rows[key] = rows[key].map(lambda arm: arm_label(arm, names))
    folds = rows[rows["fold"].astype(str) != "pooled"]
    pooled = rows[rows["fold"].astype(str) == "pooled"]
    fig, ax = plt.subplots(figsize=(8, 1.3 + 0.55 * rows[key].nunique()), layout="constrained")
    several = rows["selection"].nunique() > 1  # seaborn cannot dodge a single hue level
    drawn = len(ax.collections)
    sns.stripplot(data=folds, x="value", y=key, hue="selection", dodge=several, alpha=0.45,
                  size=4, ax=ax, jitter=False)
    # seaborn's jitter draws from numpy's global generator (another figure at every run):
    # the same spread, from a seeded generator, so that a re-executed page draws the same.
    spread = 0.2 / (rows["selection"].nunique() if several else 1)
    rng = np.random.default_rng(0)
    for points in ax.collections[drawn:]:
        xy = np.array(points.get_offsets(), dtype=float)
        if len(xy) > 1:
            xy[:, 1] += rng.uniform(-spread, spread, len(xy))
            points.set_offsets(xy)
    sns.pointplot(data=pooled, x="value", y=key, hue="selection", dodge=0.4 if several
                  else False, ax=ax, markers="D", linestyles="none", errorbar=("ci", 95),
                  seed=0, legend=False)
    unclip(list(ax.collections), list(ax.lines))
    _reference(ax, metric)
    ax.set_xlim(padded_limits(rows["value"], metric_range(metric)))
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric.upper())} (dots: folds; diamonds: pooled "
                  "per repeat, 95% CI)")
    ax.set_ylabel("")
    if ax.get_legend() is not None:  # seaborn's, over the data: to the right of the axes
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                        fontsize=SMALL, title="selection", title_fontsize=SMALL)
    return fig


def summary_table(summary: pd.DataFrame, metrics: tuple[str, ...] = ("mcc", "auc", "bacc"),
                  names: dict[str, str] | None = None) -> pd.DataFrame:
    """The tidy summary as a readable table: ``mean [low, high]`` per metric, p-values.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv`` of a run (:func:`fmtc.evaluate.protocol.summarise`).
    metrics : tuple of str
        Metrics to show, in order.
    names : dict, optional
        Display names of the models.

    Returns
    -------
    DataFrame
        One row per model and selection; intervals are the subject bootstrap's.
    """
    key = _arm_column(summary)
    rows = []
    for (model, selection), part in summary.groupby([key, "selection"], sort=False):
        part = part.set_index("metric")
        row = {"model": arm_label(model, names), "selection": selection}
        for metric in metrics:
            row[metric.upper()] = estimate_text(part.at[metric, "mean"],
                                                part.at[metric, "bootstrap_low"],
                                                part.at[metric, "bootstrap_high"], metric=metric)
        for metric in ("mcc", "auc"):
            row[f"p({metric.upper()})"] = number_text(part.at[metric, "p_value"], ".3g")
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "selection"])


def summary_view(summary: pd.DataFrame, metrics: tuple[str, ...] = ("mcc", "auc"),
                 names: dict[str, str] | None = None, p_values: tuple[str, ...] = ("mcc",),
                 selection: bool | None = None) -> Any:
    """:func:`summary_table` as the book shows it: few columns, human headers, no index.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv`` of a run.
    metrics : tuple of str
        Metrics shown, each as ``mean [95% interval]``.
    names : dict, optional
        Display names of the arms (default: :func:`arm_label`).
    p_values : tuple of str
        Metrics (of ``mcc``, ``auc``) whose permutation p-value is shown.
    selection : bool, optional
        Show the epoch selection column (default: when the summary holds several).

    Returns
    -------
    pandas.io.formats.style.Styler
        :func:`fmtc.report.pages.table` of the summary.
    """
    from fmtc.report.pages import table

    frame = summary_table(summary, metrics, names).reset_index()
    if selection is None:
        selection = frame["selection"].nunique() > 1
    columns = {"model": "Model", **({"selection": "Epoch selection"} if selection else {})}
    columns.update({m.upper(): f"{METRIC_NAMES.get(m, m.upper())} [95% interval]"
                    for m in metrics})
    columns.update({f"p({m.upper()})": f"p ({METRIC_NAMES.get(m, m.upper())})"
                    for m in p_values})
    return table(frame, columns)




def plot_summary_intervals(summary: pd.DataFrame, metric: str = "mcc",
                           names: dict[str, str] | None = None, *,
                           show_repeats: bool = False) -> Figure:
    """Forest plot: mean pooled metric per model with its subject-bootstrap 95% interval.

    The bootstrap interval (``bootstrap_low, bootstrap_high``) is the interval drawn; with
    ``show_repeats`` the t-interval over repeats (``repeat_low, repeat_high``) is added as a
    thin dotted line. With few repeats that interval is very wide (2 repeats: t = 12.7), so
    it is off by default. Every interval, and the x-axis, stays inside the metric's range
    (:func:`metric_range`: MCC [−1, 1], AUC and the rates [0, 1]); an end clipped there
    gets an arrowhead. The legend is below the axes. The artists carry gids
    ``bootstrap``, ``repeat`` and ``mean``.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv`` of a run.
    metric : str
        Which metric.
    names : dict, optional
        Display names of the models.
    show_repeats : bool
        Also draw the interval over repeats.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    key = _arm_column(summary)
    bounds = metric_range(metric)
    rows = summary[summary["metric"] == metric].reset_index(drop=True)
    selections = list(dict.fromkeys(rows["selection"]))
    models = list(dict.fromkeys(rows[key]))
    colours = {"honest": "#1f77b4", "paper": "#d62728"}
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.55 * max(len(models), 1)), layout="constrained")
    step = min(0.3, 0.8 / max(len(selections), 1))
    drawn: list[np.ndarray] = []
    handles, labels = [], []
    clipped = clipped_repeats = False
    for k, selection in enumerate(selections):
        offset = (k - (len(selections) - 1) / 2) * step
        part = rows[rows["selection"] == selection].set_index(key).reindex(models)
        y = np.arange(len(models)) + offset
        colour = colours.get(selection, f"C{k}")
        mean = np.clip(part["mean"].to_numpy(dtype=float), *bounds)
        raw_low, raw_high = (part[c].to_numpy(dtype=float)
                             for c in ("bootstrap_low", "bootstrap_high"))
        low, high = np.clip(raw_low, *bounds), np.clip(raw_high, *bounds)
        shown = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[shown], low[shown], high[shown], color=colour, lw=2.5, gid="bootstrap")
        clipped |= clip_arrows(ax, y, raw_low, raw_high, bounds, colour)
        drawn += [low, high, mean]
        if show_repeats:
            raw_low, raw_high = (part[c].to_numpy(dtype=float)
                                 for c in ("repeat_low", "repeat_high"))
            low, high = np.clip(raw_low, *bounds), np.clip(raw_high, *bounds)
            shown = np.isfinite(low) & np.isfinite(high)
            clipped_repeats |= bool(np.any((raw_low < bounds[0]) | (raw_high > bounds[1])))
            ax.hlines(y[shown] + step / 4, low[shown], high[shown], color=colour, lw=1.0,
                      alpha=0.6, linestyles=":", gid="repeat")
            drawn += [low, high]
        unclip(ax.plot(mean, y, "o", color=colour, markersize=6, gid="mean"))
        handles.append(Line2D([], [], color=colour, lw=2.5, marker="o", markersize=6))
        labels.append(f"{selection} selection")
    if clipped:
        handle, label = clipped_handle(bounds)
        handles.append(handle)
        labels.append(label)
    if show_repeats:
        handles.append(Line2D([], [], color="#555555", lw=1.0, ls=":"))
        labels.append("95% t-interval over repeats"
                      + (f" (clipped to [{bounds[0]:g}, {bounds[1]:g}])" if clipped_repeats
                         else ""))
    ax.set_yticks(np.arange(len(models)), [arm_label(m, names) for m in models])
    ax.set_ylim(len(models) - 0.5, -0.5)
    _reference(ax, metric)
    chance = CHANCE.get(str(metric).lower())
    ax.set_xlim(padded_limits([*drawn, [] if chance is None else [chance]], bounds))
    ax.set_xlabel(f"pooled out-of-fold {METRIC_NAMES.get(metric, metric.upper())}: mean over "
                  "repeats (dot) and 95% subject-bootstrap interval (line)")
    legend_below(fig, handles, labels, ncol=min(len(handles), 2))
    return fig


def _arm_column(frame: pd.DataFrame) -> str:
    return "arm" if "arm" in frame else "model"


def plot_contrasts(contrasts: pd.DataFrame, names: dict[str, str] | None = None,
                   paper: dict[tuple[str, str], float] | None = None) -> Figure:
    """Forest plot of paired differences (percentage points) with their bootstrap intervals.

    Intervals, points and the x-axis stay inside the range of a difference of two values of
    the metric (:func:`difference_range_pp`: [−200, 200] points for MCC); a clipped end gets
    an arrowhead. The legend is below the axes. The artists carry gids ``interval``,
    ``estimate`` and ``paper``.

    Parameters
    ----------
    contrasts : DataFrame
        ``contrasts.csv`` of a run (:func:`fmtc.evaluate.paired.paired_differences`).
    names : dict, optional
        Display names of the arms.
    paper : dict, optional
        ``(arm_a, arm_b) -> difference`` the paper reports (points), drawn as crosses.
    """
    import matplotlib.pyplot as plt

    paper = paper or {}
    metric = str(contrasts["metric"].iloc[0]) if len(contrasts) else "mcc"
    bounds = difference_range_pp(metric)
    pairs = list(zip(contrasts["arm_a"], contrasts["arm_b"], strict=True))
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.55 * max(len(contrasts), 1)),
                           layout="constrained")
    reported = [np.nan if paper.get(pair) is None else paper[pair] for pair in pairs]
    handles, labels, shown = draw_differences(
        ax, contrasts["difference_pp"], contrasts["low_pp"], contrasts["high_pp"], reported,
        bounds, "this run (95% paired subject-bootstrap interval)")
    ax.set_yticks(np.arange(len(pairs)), [f"{arm_label(a, names)} − {arm_label(b, names)}"
                                          for a, b in pairs])
    ax.set_ylim(len(contrasts) - 0.5, -0.5)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlim(padded_limits([*shown, [0.0]], bounds, minimum=10.0))
    ax.set_xlabel(f"paired difference of pooled {METRIC_NAMES.get(metric, metric.upper())} "
                  "(percentage points)")
    legend_below(fig, handles, labels, ncol=2)
    return fig


def trait_table(cohort: Cohort) -> pd.DataFrame:
    """Per subject of a simulated cohort: traits, label, and what FC and lag-1 see of trait 1.

    Returns
    -------
    DataFrame
        ``participant_id``, ``trait-1`` ... , the label, ``lag1`` (mean lag-1 autocorrelation
        of the first trait network's regions) and ``fc_within`` (their mean Pearson
        correlation with each other).
    """
    from fmtc.preprocess.transforms import lag_autocorrelation

    truth = cohort.ground_truth or {}
    if "subject_traits" not in truth:
        raise ValueError(f"{cohort.root} records no latent traits (only simulated cohorts of "
                         "generator version 3 or later do); simulate it again with fmtc simulate")
    members = cohort.regions["index"].isin(truth["ts_regions"]).to_numpy()
    rows = []
    for pid in cohort.subject_ids:
        series = cohort.timeseries[pid]
        within = np.corrcoef(series[:, members].T)
        rows.append({
            "participant_id": pid,
            **{f"trait-{k + 1}": v for k, v in enumerate(truth["subject_traits"][pid])},
            "lag1": float(lag_autocorrelation(series)[members].mean()),
            "fc_within": float(within[np.triu_indices_from(within, 1)].mean()),
        })
    table = pd.DataFrame(rows)
    if cohort.label_column is not None:
        table[cohort.label_column] = cohort.labels
    return table




def plot_trait(cohort: Cohort) -> Figure:
    """What the first latent trait does: a slow and a fast subject, and what lag-1 and FC see."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    table = trait_table(cohort)
    truth = cohort.ground_truth
    members = cohort.regions["index"].isin(truth["ts_regions"]).to_numpy()
    fig, axes = plt.subplot_mosaic([["series", "series"], ["lag1", "fc_within"]],
                                   figsize=(9, 6.6), layout="constrained")
    order = table.sort_values("trait-1")
    for row, colour, name in ((order.iloc[0], "#1f77b4", "lowest"),
                              (order.iloc[-1], "#d62728", "highest")):
        pid = row["participant_id"]
        series = robust_scale(cohort.timeseries[pid])[:, members].mean(1)
        t = np.arange(min(len(series), 120)) * cohort.repetition_time[pid]
        axes["series"].plot(t, series[:len(t)], color=colour, lw=1.2,
                            label=f"{pid} ({name} trait, z = {row['trait-1']:+.1f})")
    axes["series"].set(xlabel="time (s)", ylabel="trait network, mean (scaled)")
    axes["series"].set_title(f"{truth['ts_network']}: the trait sets its timescale", loc="left")
    handles, labels = axes["series"].get_legend_handles_labels()
    if cohort.label_column:
        colours = np.where(table[cohort.label_column] == 1, "#d62728", "#1f77b4")
        for value, colour in ((1, "#d62728"), (0, "#1f77b4")):
            handles.append(Line2D([], [], ls="none", marker="o", color=colour, markersize=5))
            labels.append(f"subject with {cohort.label_column} = {value}")
    else:
        colours = "#555555"
    for column, label in (("lag1", "lag-1 autocorrelation"),
                          ("fc_within", "mean within-network FC")):
        ax = axes[column]
        ax.scatter(table["trait-1"], table[column], s=14, c=colours)
        r = np.corrcoef(table["trait-1"], table[column])[0, 1]
        ax.set(xlabel="trait 1 (z)", ylabel=label)
        ax.set_title(f"{label}: r = {r:.2f}", loc="left")
    legend_below(fig, handles, labels, ncol=2)
    _mark_simulated(fig, cohort)
    return fig


def plot_probe_report(report: dict, targets: tuple[str, ...] = ("label", "trait-1")) -> Figure:
    """Linear-probe MCC against pretraining steps, one panel per target, a line per read-out.

    At most two panels a row; the y-axis stays inside MCC's range [−1, 1].
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = report["points"]
    steps = [p["step"] for p in points]
    readouts = list(points[0]["mcc"])
    columns = min(2, len(targets))
    rows = -(-len(targets) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 0.6 + 2.9 * rows),
                             sharey=True, squeeze=False, layout="constrained")
    values = []
    for ax, target in zip(axes.flat, targets, strict=False):
        for readout in readouts:
            line = [p["mcc"][readout].get(target, np.nan) for p in points]
            values.append(line)
            unclip(ax.plot(steps, line, marker="o", label=READOUT_NAMES.get(readout, readout)))
        ax.axhline(0, color="#888888", lw=0.8)
        ax.set_title("probe of the label" if target == "label"
                     else f"probe of {str(target).replace('-', ' ')}", loc="left")
    for ax in axes[-1]:
        ax.set_xlabel("pretraining step (0: random init)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("pooled MCC (linear probe)")
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    axes[0, 0].set_ylim(padded_limits([values, [0.0]], metric_range("mcc")))
    legend_below(fig, ncol=len(readouts), title="read-out")
    mark_simulated(fig, True)
    return fig


def plot_pretraining_loss(log: dict) -> Figure:
    """Training loss per epoch, with the held-out loss of the trained and random-init models."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in log["epochs"]]
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ax.plot(epochs, [e["train_loss"] for e in log["epochs"]], label="training (masked patches)")
    held = log["held_out"]["loss"]
    for name, style in (("trained", "-"), ("random_init", "--"), ("zero_prediction", ":")):
        ax.axhline(held[name], ls=style, color="#444444" if name != "trained" else "#2ca02c",
                   label=f"held-out, {name.replace('_', ' ')}: {held[name]:.3f}")
    ax.set(xlabel="epoch", ylabel="masked-patch MSE")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_below(fig, ncol=2)
    return fig


def plot_sweep(sweep: pd.DataFrame, by: str, names: dict[str, str] | None = None,
               arms: list[str] | None = None) -> Figure:
    """Pooled MCC per arm across the cohorts of a simulation sweep, one panel per ``by`` value.

    Panels are laid out two a row; bars, intervals and the x-axis stay inside [−1, 1].

    Parameters
    ----------
    sweep : DataFrame
        :func:`fmtc.pipeline.simulation_sweep` output (``arm``, ``value``, ``low``, ``high``
        and the swept simulation keys).
    by : str
        A swept key: one panel per value (e.g. ``effect_size``); the other cohorts of a panel
        (e.g. seeds) are its dots, with their 95% subject-bootstrap intervals, and the mean
        over them is the bar.
    names : dict, optional
        Display names of the arms.
    arms : list of str, optional
        Arms to show, in order (default: all).
    """
    import matplotlib.pyplot as plt

    arms = arms or list(dict.fromkeys(sweep["arm"]))
    values = list(dict.fromkeys(sweep[by]))
    columns = min(2, max(len(values), 1))
    rows = -(-len(values) // columns)
    fig, axes = plt.subplots(rows, columns,
                             figsize=(4.2 * columns + 0.4, 0.9 + rows * (0.6 + 0.5 * len(arms))),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, value in zip(axes.flat, values, strict=False):
        part = sweep[sweep[by] == value]
        for i, arm in enumerate(arms):
            rows_ = part[part["arm"] == arm]
            n = len(rows_)
            jitter = np.linspace(-0.2, 0.2, n) if n > 1 else np.zeros(n)
            ax.barh(i, np.clip(rows_["value"].mean(), -1, 1), color="#c6dbef", height=0.7)
            ax.hlines(i + jitter, rows_["low"].clip(-1, 1), rows_["high"].clip(-1, 1),
                      color="#6b6b6b", lw=0.8, gid="interval")
            unclip(ax.plot(rows_["value"].clip(-1, 1), i + jitter, "o", color="#1f77b4", ms=4))
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlim(-1.0, 1.0)
        ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
        shown = f"{value:g}" if isinstance(value, int | float | np.number) else value
        ax.set_title(f"{str(by).replace('_', ' ')} = {shown}", fontsize=10, loc="left")
    axes[0, 0].set_yticks(np.arange(len(arms)), [arm_label(a, names) for a in arms])
    axes[0, 0].set_ylim(len(arms) - 0.5, -0.5)
    for ax in axes.flat[len(values):]:
        ax.set_visible(False)
    fig.supxlabel("pooled MCC (bar: mean over cohorts; dots: each cohort, 95% interval)")
    return fig
