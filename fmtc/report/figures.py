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


def mark_simulated(fig: Figure, simulated: bool) -> None:
    """Write SIMULATED in the bottom-right corner of ``fig`` when ``simulated``."""
    if simulated:
        fig.text(0.995, 0.005, "SIMULATED", ha="right", va="bottom", fontsize=9,
                 color="#b30000", fontweight="bold", alpha=0.8)


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
        Long-form ``metrics.csv``: ``arm, model, selection, repeat, fold, metric, value``.
    metric : str
        Which metric to show.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    key = _arm_column(metrics)
    rows = metrics[metrics["metric"] == metric]
    folds = rows[rows["fold"].astype(str) != "pooled"]
    pooled = rows[rows["fold"].astype(str) == "pooled"]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * rows[key].nunique()),
                           constrained_layout=True)
    several = rows["selection"].nunique() > 1  # seaborn cannot dodge a single hue level
    sns.stripplot(data=folds, x="value", y=key, hue="selection", dodge=several, alpha=0.45,
                  size=4, ax=ax, jitter=0.2)
    sns.pointplot(data=pooled, x="value", y=key, hue="selection", dodge=0.4 if several
                  else False, ax=ax, markers="D", linestyles="none", errorbar=("ci", 95),
                  legend=False)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"{metric.upper()} (dots: folds; diamonds: pooled per repeat, 95% CI)")
    ax.set_ylabel("")
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
    names = names or {}
    key = _arm_column(summary)
    rows = []
    for (model, selection), part in summary.groupby([key, "selection"], sort=False):
        part = part.set_index("metric")
        row = {"model": names.get(model, model), "selection": selection}
        for metric in metrics:
            row[metric.upper()] = (f"{part.at[metric, 'mean']:.2f} "
                                   f"[{part.at[metric, 'bootstrap_low']:.2f}, "
                                   f"{part.at[metric, 'bootstrap_high']:.2f}]")
        for metric in ("mcc", "auc"):
            value = part.at[metric, "p_value"]
            row[f"p({metric.upper()})"] = f"{value:.3g}" if np.isfinite(value) else "n/a"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "selection"])


def plot_summary_intervals(summary: pd.DataFrame, metric: str = "mcc",
                           names: dict[str, str] | None = None) -> Figure:
    """Forest plot: mean pooled metric per model with its bootstrap and repeat intervals.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv`` of a run.
    metric : str
        Which metric.
    names : dict, optional
        Display names of the models.
    """
    import matplotlib.pyplot as plt

    names = names or {}
    key = _arm_column(summary)
    rows = summary[summary["metric"] == metric].reset_index(drop=True)
    selections = list(dict.fromkeys(rows["selection"]))
    models = list(dict.fromkeys(rows[key]))
    colours = {"honest": "#1f77b4", "paper": "#d62728"}
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.6 * len(models)), constrained_layout=True)
    for k, selection in enumerate(selections):
        offset = (k - (len(selections) - 1) / 2) * 0.25
        part = rows[rows["selection"] == selection].set_index(key).reindex(models)
        y = np.arange(len(models)) + offset
        colour = colours.get(selection, f"C{k}")
        ax.hlines(y, part["bootstrap_low"], part["bootstrap_high"], color=colour, lw=1.5,
                  alpha=0.5)
        ax.hlines(y, part["repeat_low"], part["repeat_high"], color=colour, lw=4)
        ax.plot(part["mean"], y, "o", color=colour, label=f"{selection} selection")
    ax.set_yticks(np.arange(len(models)), [names.get(m, m) for m in models])
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"pooled out-of-fold {metric.upper()}: mean over repeats "
                  "(thick: repeat 95% CI; thin: subject-bootstrap 95% interval)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def _arm_column(frame: pd.DataFrame) -> str:
    return "arm" if "arm" in frame else "model"


def plot_contrasts(contrasts: pd.DataFrame, names: dict[str, str] | None = None,
                   paper: dict[tuple[str, str], float] | None = None) -> Figure:
    """Forest plot of paired differences (percentage points) with their bootstrap intervals.

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

    names, paper = names or {}, paper or {}
    labels = [f"{names.get(a, a)} − {names.get(b, b)}"
              for a, b in zip(contrasts["arm_a"], contrasts["arm_b"], strict=True)]
    y = np.arange(len(contrasts))
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.6 * len(contrasts)), constrained_layout=True)
    ax.hlines(y, contrasts["low_pp"], contrasts["high_pp"], color="#1f77b4", lw=2.5)
    ax.plot(contrasts["difference_pp"], y, "o", color="#1f77b4",
            label="this run (95% paired subject-bootstrap interval)")
    reported = [paper.get((a, b)) for a, b in zip(contrasts["arm_a"], contrasts["arm_b"],
                                                   strict=True)]
    if any(v is not None for v in reported):
        ax.plot([np.nan if v is None else v for v in reported], y, "x", color="#d62728",
                markersize=9, label="paper (at least)")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    metric = str(contrasts["metric"].iloc[0]).upper() if len(contrasts) else "MCC"
    ax.set_xlabel(f"paired difference of pooled {metric} (percentage points)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(contrasts) < 3 else -0.2),
              fontsize=8, frameon=False, ncol=2)
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

    table = trait_table(cohort)
    truth = cohort.ground_truth
    members = cohort.regions["index"].isin(truth["ts_regions"]).to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [2, 1, 1]})
    order = table.sort_values("trait-1")
    for row, colour, name in ((order.iloc[0], "#1f77b4", "lowest"),
                              (order.iloc[-1], "#d62728", "highest")):
        pid = row["participant_id"]
        series = robust_scale(cohort.timeseries[pid])[:, members].mean(1)
        t = np.arange(min(len(series), 120)) * cohort.repetition_time[pid]
        axes[0].plot(t, series[:len(t)], color=colour, lw=1.2,
                     label=f"{pid} ({name} trait, z = {row['trait-1']:+.1f})")
    axes[0].set(xlabel="time (s)", ylabel="mean of the trait network (scaled)",
                title=f"{truth['ts_network']}: the trait sets its timescale")
    axes[0].legend(fontsize=8, loc="upper right")
    colours = (np.where(table[cohort.label_column] == 1, "#d62728", "#1f77b4")
               if cohort.label_column else "#555555")
    for ax, column, label in ((axes[1], "lag1", "lag-1 autocorrelation"),
                              (axes[2], "fc_within", "mean within-network FC")):
        ax.scatter(table["trait-1"], table[column], s=14, c=colours)
        r = np.corrcoef(table["trait-1"], table[column])[0, 1]
        ax.set(xlabel="trait 1 (z)", ylabel=label, title=f"{label}: r = {r:.2f}")
    fig.tight_layout()
    _mark_simulated(fig, cohort)
    return fig


def plot_probe_report(report: dict, targets: tuple[str, ...] = ("label", "trait-1")) -> Figure:
    """Linear-probe MCC against pretraining steps, one panel per target, a line per read-out."""
    import matplotlib.pyplot as plt

    points = report["points"]
    steps = [p["step"] for p in points]
    readouts = list(points[0]["mcc"])
    columns = min(2, len(targets))
    rows = -(-len(targets) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.3 * rows), sharey=True,
                             squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=False):
        for readout in readouts:
            ax.plot(steps, [p["mcc"][readout].get(target, np.nan) for p in points], marker="o",
                    label=readout)
        ax.axhline(0, color="#888888", lw=0.8)
        ax.set(title=f"probe of {target}")
    for ax in axes[-1]:
        ax.set_xlabel("pretraining step (0: random initialisation)")
    for ax in axes[:, 0]:
        ax.set_ylabel("pooled MCC (linear probe)")
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    axes.flat[0].legend(title="read-out", fontsize=8)
    fig.tight_layout()
    fig.text(0.995, 0.005, "SIMULATED", ha="right", va="bottom", fontsize=9, color="#b30000",
             fontweight="bold", alpha=0.8)
    return fig


def plot_pretraining_loss(log: dict) -> Figure:
    """Training loss per epoch, with the held-out loss of the trained and random-init models."""
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in log["epochs"]]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(epochs, [e["train_loss"] for e in log["epochs"]], label="training (masked patches)")
    held = log["held_out"]["loss"]
    for name, style in (("trained", "-"), ("random_init", "--"), ("zero_prediction", ":")):
        ax.axhline(held[name], ls=style, color="#444444" if name != "trained" else "#2ca02c",
                   label=f"held-out, {name.replace('_', ' ')}: {held[name]:.3f}")
    ax.set(xlabel="epoch", ylabel="masked-patch MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep(sweep: pd.DataFrame, by: str, names: dict[str, str] | None = None,
               arms: list[str] | None = None) -> Figure:
    """Pooled MCC per arm across the cohorts of a simulation sweep, one panel per ``by`` value.

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

    names = names or {}
    arms = arms or list(dict.fromkeys(sweep["arm"]))
    values = list(dict.fromkeys(sweep[by]))
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 0.9 + 0.55 * len(arms)),
                             sharex=True, squeeze=False, constrained_layout=True)
    for ax, value in zip(axes[0], values, strict=True):
        part = sweep[sweep[by] == value]
        for i, arm in enumerate(arms):
            rows = part[part["arm"] == arm]
            n = len(rows)
            jitter = np.linspace(-0.2, 0.2, n) if n > 1 else np.zeros(n)
            ax.barh(i, rows["value"].mean(), color="#c6dbef", height=0.7)
            ax.hlines(i + jitter, rows["low"].clip(-1, 1), rows["high"].clip(-1, 1),
                      color="#6b6b6b", lw=0.8)
            ax.plot(rows["value"], i + jitter, "o", color="#1f77b4", ms=4)
        ax.set_yticks(np.arange(len(arms)), [names.get(a, a) for a in arms])
        ax.invert_yaxis()
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlim(-1.0, 1.0)
        ax.set_title(f"{by} = {value}", fontsize=10)
        ax.set_xlabel("pooled MCC (bar: mean over cohorts; dots: each cohort, 95% interval)")
    return fig


def simulated_notice(cohort: Cohort, encoder: str | None = None) -> str:
    """The SIMULATED banner of a results page (Markdown), or "" for a real cohort."""
    if not cohort.is_simulated:
        return ""
    truth = cohort.ground_truth
    text = ("> **SIMULATED DATA.** These subjects were generated by `fmtc simulate` (effect size "
            f"{truth['effect_size']:g}); they are not patients.")
    if encoder == "simulated-pretrained":
        text += (" The BrainLM encoder is a small BrainLM pretrained by `fmtc pretrain` on "
                 "simulated, unlabelled recordings, **not** the official `old_13M` weights.")
    return text
