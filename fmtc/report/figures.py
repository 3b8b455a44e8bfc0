"""Figures of the book: cohort description, connectivity by group, per-fold results.

Every function returns a matplotlib ``Figure`` and draws nothing else; the
notebooks show them. Simulated cohorts get a "SIMULATED" mark on every figure.

Legibility rule (every figure of :mod:`fmtc.report`): the book's content column is
:data:`COLUMN_PX` (772) pixels wide at a 1400-pixel viewport and a wider image is shrunk to
fit it, so a text of ``f`` points in a figure ``W`` inches wide shown at ``dpi`` is
``f * dpi / 72 * min(1, 772 / (W * dpi))`` pixels tall. Figures are at most
:data:`MAX_WIDTH_IN` inches wide (more rows rather than a wide row) and no text is under 8
points, so every text is at least :data:`MIN_TEXT_PX` (9) pixels tall at any dpi from 81 up;
:func:`use_book_style` sets a crisp dpi (150) and the font sizes, and
:func:`smallest_text_px` measures a figure. Intervals are clipped to the range of their
metric (:func:`metric_range`) or of a difference of two values of it
(:func:`difference_range_pp`), and so are the axis limits; legends sit outside the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmtc.cohort.folder import Cohort
from fmtc.preprocess.transforms import functional_connectivity, robust_scale
from fmtc.report.pages import NOT_ESTIMABLE, shown_verdict

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

COLUMN_PX = 772
"""Width (pixels) of the book's content column at a 1400-pixel viewport."""

MIN_TEXT_PX = 9.0
"""Smallest rendered height (pixels) of any text of a figure in the book's column."""

MAX_WIDTH_IN = 9.0
"""Widest figure (inches): 8-point text still renders 9.5 pixels tall in the column."""

SMALL = 9
"""Points: legends, annotations and notes drawn by this package (nothing is under 8)."""

BOOK_STYLE: dict[str, Any] = {
    "figure.dpi": 150,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "figure.figsize": (7.0, 4.2),
    "figure.max_open_warning": 0,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "figure.labelsize": 10,
}
"""The rcParams :func:`use_book_style` sets."""

METRIC_RANGES: dict[str, tuple[float, float]] = {
    "mcc": (-1.0, 1.0), "auc": (0.0, 1.0), "acc": (0.0, 1.0), "accuracy": (0.0, 1.0),
    "bacc": (0.0, 1.0), "balanced_accuracy": (0.0, 1.0), "f1": (0.0, 1.0),
    "sensitivity": (0.0, 1.0), "specificity": (0.0, 1.0), "precision": (0.0, 1.0),
    "recall": (0.0, 1.0), "ppv": (0.0, 1.0), "npv": (0.0, 1.0), "brier": (0.0, 1.0),
}
"""The values each metric of :mod:`fmtc.evaluate.metrics` (and a few others) can take."""

CHANCE = {"mcc": 0.0, "auc": 0.5, "bacc": 0.5, "balanced_accuracy": 0.5}
"""A classifier without skill, for the metrics where that does not depend on prevalence."""


ARM_VARIANTS: dict[str, str] = {
    "-random-init": "random-init encoder",
    "-shuffle-mean": "mean over token orders",
    "-random-each-call": "new token order each call",
}
"""Suffix of an experiment's arm name -> what it changes, as :func:`arm_label` shows it."""

READOUT_NAMES: dict[str, str] = {"cls": "CLS vector", "mean": "mean of all tokens",
                                 "network-mean": "token means per network"}
"""Display names of BrainLM's read-outs (``brainlm.readout``)."""

METRIC_NAMES: dict[str, str] = {"mcc": "MCC", "auc": "AUC", "bacc": "balanced accuracy",
                                "balanced_accuracy": "balanced accuracy", "acc": "accuracy"}
"""Display names of metrics (tables and axis labels)."""


def arm_label(arm: Any, names: dict[str, str] | None = None) -> str:
    """The display name of a model or an experiment's arm (no internal id in a figure).

    ``names`` (e.g. :func:`fmtc.predict.registry.display_names`, or an experiment's own
    labels) is looked up first; else the registry's display names; an arm named
    ``<model><suffix>`` with a suffix of :data:`ARM_VARIANTS` reads
    ``"<model's display name> (<variant>)"``: ``fmmtc-random-init`` ->
    ``"FMM_TC (random-init encoder)"``. Anything else is returned as it is.
    """
    from fmtc.predict.registry import display_names

    arm = str(arm)
    known = {**display_names(), **(names or {})}
    if arm in known:
        return known[arm]
    for suffix, variant in ARM_VARIANTS.items():
        if arm.endswith(suffix) and arm[:-len(suffix)] in known:
            return f"{known[arm[:-len(suffix)]]} ({variant})"
    return arm


def _finite(*values: Any) -> bool:
    try:
        return all(np.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def _format(value: Any, form: str) -> str:
    """``format(value, form)`` without a negative zero (``-0.00`` reads ``0.00``)."""
    text = format(float(value), form)
    if text.startswith("-") and float(text) == 0.0:
        text = ("+" if form.startswith("+") else "") + text[1:]
    return text


def estimate_text(value: Any, low: Any = np.nan, high: Any = np.nan, form: str = ".2f",
                  metric: str | None = None, sep: str = ", ", brackets: str = "[]") -> str:
    """``value [low, high]`` as a table shows it, or "not estimable" where it is not one.

    A missing value reads "not estimable"; a missing or zero-width interval (every resample
    gave the same value: e.g. a model that predicts a single class, whose MCC of 0 is a
    convention) is not shown as an interval. With ``metric="mcc"``, an MCC of exactly 0 with
    a zero-width interval reads "not estimable (one class predicted)".

    Parameters
    ----------
    value, low, high : float
    form : str
        Format of each number (``".2f"``; ``"+.1f"`` for differences).
    metric : str, optional
    sep, brackets : str
        Between the ends, and around them (``""``: no brackets).
    """
    if not _finite(value):
        return NOT_ESTIMABLE
    text = _format(value, form)
    if not _finite(low, high):
        return f"{text} (interval {NOT_ESTIMABLE})"
    if float(high) <= float(low):
        if metric is not None and str(metric).lower() == "mcc" and float(value) == 0.0:
            return f"{NOT_ESTIMABLE} (one class predicted)"
        return f"{text} (interval {NOT_ESTIMABLE})"
    left, right = (brackets[0], brackets[1]) if len(brackets) == 2 else ("", "")
    return f"{text} {left}{_format(low, form)}{sep}{_format(high, form)}{right}"


def estimable(low: Any, high: Any) -> bool:
    """Whether ``[low, high]`` is an interval: both ends finite and ``high > low``."""
    return _finite(low, high) and float(high) > float(low)


def interval_text(low: Any, high: Any, form: str = "+.1f", sep: str = " to ") -> str:
    """``"low to high"``, or "not estimable" for a missing or zero-width interval."""
    if not estimable(low, high):
        return NOT_ESTIMABLE
    return f"{_format(low, form)}{sep}{_format(high, form)}"


def number_text(value: Any, form: str = ".2f") -> str:
    """``value`` formatted, or "not estimable" when missing."""
    return _format(value, form) if _finite(value) else NOT_ESTIMABLE


def use_book_style() -> dict[str, Any]:
    """Set matplotlib's rcParams for the book's notebooks (:data:`BOOK_STYLE`); return them.

    Figures are then shown (inline backend) and saved at 150 dpi with a tight bounding box,
    fonts are 9 to 12 points, and many open figures raise no warning. Call it in every
    notebook's setup cell, before the first figure.
    """
    import matplotlib

    matplotlib.rcParams.update(BOOK_STYLE)
    return dict(BOOK_STYLE)


def _draw_recording_texts(fig: Figure) -> tuple[list[tuple[float, str, Any]], float]:
    """Draw ``fig``; return each drawn non-empty text (points, string, artist) and the width
    (inches) of the image ``bbox_inches="tight"`` would save (at least the figure's)."""
    from matplotlib.backends.backend_agg import RendererAgg

    class _Recorder(RendererAgg):
        def __init__(self, width: int, height: int, dots: float) -> None:
            super().__init__(width, height, dots)
            self.texts: list[tuple[float, str, Any]] = []

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            if s and str(s).strip():
                self.texts.append((float(prop.get_size_in_points()), str(s), mtext))

        def draw_tex(self, gc, x, y, s, prop, angle, *, mtext=None):
            self.draw_text(gc, x, y, s, prop, angle, mtext=mtext)

        # Only texts matter: paint nothing else (heatmaps and glass brains draw fast).
        def draw_path(self, *args, **kwargs):
            pass

        def draw_markers(self, *args, **kwargs):
            pass

        def draw_path_collection(self, *args, **kwargs):
            pass

        def draw_quad_mesh(self, *args, **kwargs):
            pass

        def draw_image(self, *args, **kwargs):
            pass

        def draw_gouraud_triangles(self, *args, **kwargs):
            pass

    recorder = _Recorder(max(int(fig.bbox.width), 1), max(int(fig.bbox.height), 1), fig.dpi)
    fig.draw(recorder)  # runs the layout engine first, as showing the figure does
    return recorder.texts, max(fig.get_figwidth(), fig.get_tightbbox(recorder).width)


def drawn_texts(fig: Figure) -> list:
    """The text artists ``fig`` actually draws (non-empty, visible, in visible axes)."""
    texts, _ = _draw_recording_texts(fig)
    return list(dict.fromkeys(t for _, _, t in texts if t is not None))


def text_sizes_px(fig: Figure, column_px: int = COLUMN_PX,
                  dpi: float | None = None) -> list[tuple[float, str]]:
    """Rendered height (pixels) of every text ``fig`` draws, shown in a ``column_px`` column.

    Draws the figure and records each non-empty text that is actually drawn (titles, axis
    labels, tick labels, legend texts and titles, annotations, colorbar labels,
    ``fig.texts``; hidden axes and texts are skipped). A text of ``f`` points in an image
    ``W`` inches wide shown at ``dpi`` is ``f * dpi / 72 * min(1, column_px / (W * dpi))``
    pixels tall; ``W`` is the wider of the figure and its tight bounding box (what
    ``bbox_inches="tight"`` saves: something outside the figure widens the image).

    Parameters
    ----------
    fig : Figure
    column_px : int
        Width of the column the image is shown in (shrunk to fit when wider).
    dpi : float, optional
        Dots per inch of the shown image; default the figure's (the inline backend shows a
        figure at its own dpi).

    Returns
    -------
    list of (pixels, text)
        Smallest first.
    """
    texts, width = _draw_recording_texts(fig)
    dots = float(dpi or fig.dpi)
    scale = dots / 72.0 * min(1.0, column_px / (width * dots))
    return sorted((points * scale, text) for points, text, _ in texts)


def smallest_text_px(fig: Figure, column_px: int = COLUMN_PX, dpi: float | None = None) -> float:
    """Height (pixels) of the smallest text of ``fig`` shown in a ``column_px`` column.

    What is measured: :func:`text_sizes_px`; ``inf`` when the figure draws no text. The
    book's rule: ``smallest_text_px(fig) >= MIN_TEXT_PX``.
    """
    sizes = text_sizes_px(fig, column_px, dpi)
    return sizes[0][0] if sizes else float("inf")


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take; ``(-inf, inf)`` for a metric not in :data:`METRIC_RANGES`."""
    return METRIC_RANGES.get(str(metric).lower(), (-np.inf, np.inf))


def difference_range_pp(metric: str) -> tuple[float, float]:
    """The range of a difference of two values of ``metric``, in percentage points.

    ``(-200, 200)`` for MCC, ``(-100, 100)`` for AUC and the other rates.
    """
    low, high = metric_range(metric)
    return 100.0 * (low - high), 100.0 * (high - low)


def padded_limits(values: Any, bounds: tuple[float, float] = (-np.inf, np.inf),
                  pad: float = 0.06, minimum: float = 0.2) -> tuple[float, float]:
    """Axis limits around the finite ``values`` (an array, or a list of arrays), padded,
    never outside ``bounds``.

    The padding is ``pad`` of the span (taken at least ``minimum`` wide). The plot
    functions draw their markers unclipped, so a point at a limit that is a bound shows whole.
    """
    lo, hi = bounds
    parts = values if isinstance(values, list | tuple) else [values]
    flat = np.concatenate([np.asarray(v, dtype=float).ravel() for v in parts] + [np.zeros(0)])
    flat = np.clip(flat[np.isfinite(flat)], lo, hi)
    if not flat.size:
        return (lo if np.isfinite(lo) else -1.0, hi if np.isfinite(hi) else 1.0)
    span = max(float(flat.max() - flat.min()), minimum)
    return max(lo, float(flat.min()) - pad * span), min(hi, float(flat.max()) + pad * span)


def legend_below(fig: Figure, handles: list | None = None, labels: list | None = None,
                 ncol: int | None = None, **kwargs: Any) -> Legend | None:
    """One legend for the figure, below all its axes (outside the data).

    ``handles`` and ``labels`` default to those of every axes (each label once). The figure
    must use the constrained layout, which makes room for the legend. Returns the legend,
    or None when there is nothing to show.
    """
    if handles is None:
        handles, labels = [], []
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
    if not handles:
        return None
    options = {"fontsize": SMALL, "title_fontsize": SMALL, "frameon": False, **kwargs}
    return fig.legend(handles, labels, loc="outside lower center",
                      ncol=ncol or min(len(handles), 3), **options)


def unclip(*artists: Any) -> list:
    """Draw ``artists`` unclipped: markers at an axis limit that is a metric's bound show whole.

    They are left out of the layout (an unclipped artist would otherwise count in its axes'
    extent). Returns them, flattened.
    """
    flat = []
    for artist in artists:
        if isinstance(artist, list | tuple):
            flat += unclip(*artist)
        elif artist is not None:
            artist.set_clip_on(False)
            artist.set_in_layout(False)
            flat.append(artist)
    return flat


def clip_arrows(ax: Axes, y: np.ndarray, raw_low: np.ndarray, raw_high: np.ndarray,
                bounds: tuple[float, float], colour: str) -> bool:
    """An arrowhead at each end of a horizontal interval that ``bounds`` clipped.

    Returns whether any end was clipped.
    """
    lo, hi = bounds
    clipped = False
    for k in range(len(y)):
        if not (np.isfinite(raw_low[k]) and np.isfinite(raw_high[k])):
            continue  # no interval drawn
        for raw, end, marker in ((raw_low[k], lo, "<"), (raw_high[k], hi, ">")):
            if raw < lo or raw > hi:
                unclip(ax.plot([end], [y[k]], marker=marker, color=colour, markersize=7))
                clipped = True
                if marker == "<":  # keep the tick labels clear of the arrowhead
                    ax.tick_params(axis="y", pad=7)
    return clipped


def clipped_handle(bounds: tuple[float, float], unit: str = "") -> tuple[Any, str]:
    """A legend entry (handle, label) saying what the arrowheads of :func:`clip_arrows` mean."""
    from matplotlib.lines import Line2D

    return (Line2D([], [], ls="none", marker=">", color="#555555", markersize=7),
            f"interval clipped at [{bounds[0]:g}, {bounds[1]:g}]{unit}, the possible range")


def draw_intervals(ax: Axes, y: np.ndarray, point: Any, low: Any, high: Any,
                   bounds: tuple[float, float], colour: str, lw: float = 2.0,
                   markersize: float = 6.0, label: str | None = None
                   ) -> tuple[bool, list[np.ndarray]]:
    """Horizontal intervals with their estimates at heights ``y``, clipped to ``bounds``.

    The intervals (gid ``interval``; none where an end is NaN), an arrowhead at each end that
    ``bounds`` clipped (:func:`clip_arrows`) and the estimates as dots (gid ``estimate``,
    ``label``), drawn unclipped so that a dot on a bound shows whole.

    Returns
    -------
    clipped : bool
        Whether any end was clipped.
    shown : list of ndarray
        The clipped lows, highs and estimates, for :func:`padded_limits`.
    """
    raw_low, raw_high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    low, high = np.clip(raw_low, *bounds), np.clip(raw_high, *bounds)
    point = np.clip(np.asarray(point, dtype=float), *bounds)
    drawn = np.isfinite(low) & np.isfinite(high)
    ax.hlines(y[drawn], low[drawn], high[drawn], color=colour, lw=lw, gid="interval")
    clipped = clip_arrows(ax, y, raw_low, raw_high, bounds, colour)
    unclip(ax.plot(point, y, "o", ls="none", color=colour, markersize=markersize,
                   gid="estimate", label=label))
    return clipped, [low, high, point]

def draw_differences(ax: Axes, difference: np.ndarray, low: np.ndarray, high: np.ndarray,
                     paper: np.ndarray, bounds: tuple[float, float], estimate_label: str,
                     markersize: float = 6.0) -> tuple[list, list[str], list[np.ndarray]]:
    """Rows of paired differences: interval, estimate and the paper's number, clipped to ``bounds``.

    Row ``k`` is drawn at ``y = k``: the interval ``[low, high]`` (gid ``interval``), an
    arrowhead at each end that ``bounds`` clipped (:func:`clip_arrows`), the estimate
    (gid ``estimate``) and, where finite, the paper's number as a cross (gid ``paper``).

    Returns
    -------
    handles, labels : list
        Legend entries for what was drawn (the clipped-end entry only when an end was).
    shown : list of ndarray
        The clipped values, for :func:`padded_limits`.
    """
    from matplotlib.lines import Line2D

    y = np.arange(len(difference))
    clipped, shown = draw_intervals(ax, y, difference, low, high, bounds, "#1f77b4", lw=2.5,
                                    markersize=markersize)
    paper = np.clip(np.asarray(paper, dtype=float), *bounds)
    handles = [Line2D([], [], color="#1f77b4", lw=2.5, marker="o", markersize=markersize)]
    labels = [estimate_label]
    if np.isfinite(paper).any():
        handles += unclip(ax.plot(paper, y, "x", color="#d62728", markersize=markersize + 3,
                                  mew=2, gid="paper"))
        labels.append("paper (at least)")
    if clipped:
        handle, label = clipped_handle(bounds, " points")
        handles.append(handle)
        labels.append(label)
    return handles, labels, [*shown, paper]


def mark_simulated(fig: Figure, simulated: bool) -> None:
    """Write SIMULATED in a corner of ``fig`` when ``simulated`` (10-point bold, gid ``simulated``).

    Call it last. In a constrained-layout figure the mark is at the top right: in the row
    of the figure's title (``suptitle``) if it has one, else in a strip kept free above the
    axes. Elsewhere (e.g. nilearn's glass brains, drawn above a free strip) it is at the
    bottom right.
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if not simulated:
        return
    style = {"ha": "right", "fontsize": 10, "color": "#b30000", "fontweight": "bold",
             "alpha": 0.8, "gid": "simulated"}
    engine = fig.get_layout_engine()
    if not isinstance(engine, ConstrainedLayoutEngine):
        fig.text(0.995, 0.005, "SIMULATED", va="bottom", **style)
        return
    fig.text(0.995, 0.995, "SIMULATED", va="top", **style)
    if not fig.get_suptitle():
        left, bottom, width, height = engine.get()["rect"]
        strip = 10 * 1.5 / 72 / fig.get_figheight()  # the mark's line, in figure fraction
        engine.set(rect=(left, bottom, width, min(height, 1 - bottom - strip)))


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


SAME_PREDICTIONS = "no difference (both arms predict the same class for every subject)"
"""The verdict of a paired difference whose interval has zero width but is not degenerate."""


def claim_verdict(row: Any) -> str:
    """The verdict of a paired difference (a claims-table or ``contrasts.csv`` row) as shown.

    "not estimable" when the row says so (an arm predicts a single class in every
    repeat) or its interval (``low_pp``, ``high_pp``) is missing; :data:`SAME_PREDICTIONS`
    when the interval has zero width (every resample gives the same difference: the arms
    predict the same classes); else the row's ``verdict`` (``""`` when it has none).
    """
    verdict = str(row.get("verdict", "") or "")
    low, high = row["low_pp"], row["high_pp"]
    if verdict == NOT_ESTIMABLE or not _finite(low, high):
        return NOT_ESTIMABLE
    if float(high) <= float(low):
        return SAME_PREDICTIONS
    return verdict


def difference_text(row: Any, unit: str = " points") -> str:
    """A paired difference (``difference_pp``) as text, or "not estimable"."""
    if claim_verdict(row) == NOT_ESTIMABLE or not _finite(row["difference_pp"]):
        return NOT_ESTIMABLE
    return _format(row["difference_pp"], "+.1f") + unit


def difference_interval_text(row: Any) -> str:
    """The interval of a paired difference as text (:func:`claim_verdict`'s cases)."""
    if claim_verdict(row) == SAME_PREDICTIONS:
        return "zero width (same predicted classes)"
    return interval_text(row["low_pp"], row["high_pp"])


def verdict_text(row: Any, plan: Any) -> str:
    """A paired difference's verdict for the prose: :func:`claim_verdict` passed through
    :func:`fmtc.report.pages.interpreted` ("not estimable" is kept as it is)."""
    from fmtc.report.pages import interpreted

    verdict = claim_verdict(row)
    return verdict if verdict == NOT_ESTIMABLE else interpreted(plan, verdict)


def claims_verdicts(table: pd.DataFrame, meaningful: bool = True) -> pd.DataFrame:
    """``table`` with each verdict as the book shows it (:func:`claim_verdict`; "not
    interpreted" on a profile that is not ``meaningful``, except "not estimable", which says
    that no number exists), e.g. for :func:`fmtc.report.claims.plot_claims`."""
    return table.assign(verdict=[_shown_verdict(row, meaningful) for _, row in table.iterrows()])


def _shown_verdict(row: Any, meaningful: bool) -> str:
    return shown_verdict(claim_verdict(row), meaningful)


def claims_brief(table: pd.DataFrame, meaningful: bool = True) -> Any:
    """A claims table (:func:`fmtc.report.claims.claims_table`) in five columns, for the book.

    Claim, difference A − B (MCC points), its simultaneous 95% interval, the Holm-adjusted
    paired p-value and the verdict; a missing number reads "not estimable", and every other
    verdict reads "not interpreted" when ``meaningful`` is false (a profile whose numbers
    only show that the page runs: :func:`fmtc.report.pages.interpreted`). Each arm's MCC,
    the row's own interval and the paper's number are in the table itself.

    Returns
    -------
    pandas.io.formats.style.Styler
    """
    from fmtc.report.pages import table as book_table

    rows = []
    for _, row in table.iterrows():
        rows.append({
            "claim": row["claim"],
            "difference": difference_text(row, unit=""),
            "interval": difference_interval_text(row),
            "p": number_text(row["p_holm"], ".3g"),
            "verdict": _shown_verdict(row, meaningful),
        })
    return book_table(pd.DataFrame(rows, columns=["claim", "difference", "interval", "p",
                                                  "verdict"]),
                      {"claim": "Claim", "difference": "A − B (MCC points)",
                       "interval": "95% interval (simultaneous)", "p": "p (Holm)",
                       "verdict": "Verdict"})


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
