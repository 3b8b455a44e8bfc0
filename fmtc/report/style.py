"""The book's figure style, its legibility rule, and the drawing pieces its figures share.

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
Simulated cohorts get a "SIMULATED" mark on every figure (:func:`mark_simulated`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

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
