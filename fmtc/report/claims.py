"""The paper's claims against this companion's paired differences: a table, a CSV, figures.

Each claim of Fan et al. (MICCAI 2025) is a difference of MCC between two arms evaluated
on identical splits (``A − B``); this module puts the estimate of such a difference
(:class:`~fmtc.evaluate.paired.PairedDifference`, or a row of an experiment's
``contrasts`` table) beside the paper's number and gives a verdict in words by one
stated rule, :data:`VERDICT_RULE`.

The paper writes its numbers as "%" of MCC ("at least 14.71% MCC"); they are read here as
percentage points of MCC (MCC × 100), as everywhere in this companion. The relative change
(``100 (A − B) / B``, relative to B's MCC) is shown beside it for reading, and is undefined
(NaN, with the reason) when B's MCC is not positive.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmtc.evaluate.paired import PairedDifference

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["CLAIM_COLUMNS", "PAPER_CLAIMS", "PP_RANGE", "VERDICTS", "VERDICT_RULE", "PaperClaim",
           "claims_table", "plot_claims", "plot_generalisation", "verdict",
           "write_claims_csv"]


@dataclass(frozen=True)
class PaperClaim:
    """One claim of the paper: arm ``a`` beats arm ``b`` in MCC, by at least ``paper_pp``.

    Attributes
    ----------
    name : str
        Short name (a row of the table).
    statement : str
        What the paper says, in words.
    contrast : (str, str)
        The arms ``(a, b)`` of this companion's experiments that test it (``a − b``).
    paper_pp : float or None
        The paper's number in MCC percentage points; None when the paper gives none
        (a qualitative claim: only its direction is judged).
    """

    name: str
    statement: str
    contrast: tuple[str, str]
    paper_pp: float | None = None


PAPER_CLAIMS: dict[str, PaperClaim] = {
    "external-knowledge": PaperClaim(
        "external knowledge",
        "the foundation model's external knowledge adds at least 14.71% MCC (FMM_TC against "
        "the model without BrainLM)", ("fmmtc", "fc"), 14.71),
    "multimodal-fusion": PaperClaim(
        "multimodal fusion",
        "fusing time series and connectivity (TS+FC) adds at least 2.80% MCC over the better "
        "single modality", ("fmmtc", "ts"), 2.80),
    "drug-generalisation": PaperClaim(
        "drug generalisation",
        "FMM_TC's advantage generalises to another drug's patients (qualitative: no number)",
        ("fmmtc", "fc")),
    "dataset-generalisation": PaperClaim(
        "dataset generalisation",
        "FMM_TC adapts across datasets better than unimodal models (qualitative: no number)",
        ("fmmtc", "fc")),
}
"""The paper's claims, keyed by a short id; the arms are those of ``main-comparison``."""

VERDICTS = ("supported", "direction supported, size not", "inconclusive", "not supported",
            "not estimable")
"""Every verdict :func:`verdict` can give."""

VERDICT_RULE = (
    "With d the paired difference A − B of pooled MCC (percentage points), [L, H] its 95% "
    "paired subject-bootstrap interval and P the paper's number: a claim is 'supported' when "
    "L > 0 (the interval excludes 0 in the claimed direction) and d ≥ P (or the paper gives "
    "no number); 'direction supported, size not' when L > 0 but d < P; 'not supported' when "
    "H < 0 (the interval excludes 0 in the opposite direction) or, with 0 inside the "
    "interval, H < P (the interval rules out the paper's size); 'inconclusive' when the "
    "interval holds 0 and reaches P (or the paper gives no number); 'not estimable' when d, "
    "L or H is missing.")
"""The rule of :func:`verdict`, as one sentence for the book."""

CLAIM_COLUMNS = ("claim", "contrast", "mcc_a", "mcc_b", "difference_pp", "relative_pct",
                 "relative_note", "low_pp", "high_pp", "level", "p_value", "paper_pp", "verdict",
                 "reason")
"""Columns of :func:`claims_table`, in order."""

PP_RANGE = (-200.0, 200.0)
"""The range of a difference of two MCCs, in percentage points."""
CLAIM_LABEL_WIDTH = 44
"""Characters per line of a claim's name on the y-axis of :func:`plot_claims`."""

MINUS = "\N{MINUS SIGN}"

SIZE_TOLERANCE = 1e-9
"""Points: an estimate this close to the paper's number counts as reaching it (float noise)."""


def verdict(difference_pp: float, low_pp: float, high_pp: float,
            paper_pp: float | None) -> tuple[str, str]:
    """The verdict of :data:`VERDICT_RULE` and its reason, in words.

    Parameters
    ----------
    difference_pp, low_pp, high_pp : float
        Estimate ``A − B`` and its interval, in MCC percentage points.
    paper_pp : float or None
        The paper's number (points); None or NaN for a qualitative claim.

    Returns
    -------
    (verdict, reason)
        ``verdict`` is one of :data:`VERDICTS`.
    """
    d, low, high = float(difference_pp), float(low_pp), float(high_pp)
    size = None if paper_pp is None or not np.isfinite(paper_pp) else float(paper_pp)
    if not (np.isfinite(d) and np.isfinite(low) and np.isfinite(high)):
        return "not estimable", "the estimate or its interval is missing"
    if low > 0:
        if size is None:
            return "supported", "the interval excludes 0 in the claimed direction (no size claimed)"
        if d >= size - SIZE_TOLERANCE:
            return "supported", (f"the interval excludes 0 and the estimate {d:+.2f} reaches the "
                                 f"paper's {size:+.2f}")
        return "direction supported, size not", (
            f"the interval excludes 0 but the estimate {d:+.2f} is below the paper's {size:+.2f}")
    if high < 0:
        return "not supported", "the interval excludes 0 in the opposite direction"
    if size is not None and high < size - SIZE_TOLERANCE:
        return "not supported", (f"the interval holds 0 and its upper bound {high:+.2f} is "
                                 f"below the paper's {size:+.2f}")
    if size is None:
        return "inconclusive", "the interval holds 0"
    return "inconclusive", f"the interval holds both 0 and the paper's {size:+.2f}"


def _estimate(estimate: PairedDifference | pd.Series | dict) -> dict[str, Any]:
    if isinstance(estimate, PairedDifference):
        values = estimate.to_dict()
        values["level"] = estimate.level
    elif isinstance(estimate, pd.Series | dict):
        values = dict(estimate)
    else:
        raise TypeError(f"an estimate is a PairedDifference or a row of a contrasts table; got "
                        f"{type(estimate).__name__}")
    missing = [k for k in ("value_a", "value_b", "difference", "low", "high", "p_value")
               if k not in values]
    if missing:
        raise ValueError(f"the estimate lacks {missing} (expected a contrasts-table row)")
    metric = str(values.get("metric", "mcc")).lower()
    if metric != "mcc":
        raise ValueError(f"the paper's claims are about MCC; this estimate is of {metric!r}")
    return values


def _relative(value_a: float, value_b: float) -> tuple[float, str]:
    if not np.isfinite(value_b) or not np.isfinite(value_a):
        return np.nan, "undefined: an arm's MCC is missing"
    if value_b <= 0:
        return np.nan, (f"undefined: b's MCC ({value_b:.3f}) is not positive, so a change "
                        "relative to it has no meaning")
    return 100.0 * (value_a - value_b) / value_b, "relative to b's MCC"


def claims_table(rows: Sequence[tuple]) -> pd.DataFrame:
    """The paper's claims beside this companion's paired differences, with verdicts.

    Parameters
    ----------
    rows : sequence of (claim, estimate) or (claim, estimate, contrast)
        ``claim``: a :class:`PaperClaim` or a key of :data:`PAPER_CLAIMS` (use
        ``dataclasses.replace`` for another number or contrast). ``estimate``: the
        difference of MCC ``A − B``, a :class:`~fmtc.evaluate.paired.PairedDifference` or
        a row (Series or dict) of an experiment's ``contrasts`` table
        (:attr:`fmtc.pipeline.ExperimentRun.contrasts`; its level is taken as 0.95 unless
        it has a ``level``). ``contrast``: the label of the row; default ``"a − b"`` from
        the row's ``arm_a, arm_b``, else from the claim's contrast.

    Returns
    -------
    DataFrame
        One row per input, columns :data:`CLAIM_COLUMNS`: the claim's name, the contrast,
        each arm's MCC (``mcc_a``, ``mcc_b``), the difference in points and relative to
        ``mcc_b`` in % (``relative_pct``, NaN when ``mcc_b <= 0`` with the reason in
        ``relative_note``), the paired subject-bootstrap interval in points and its level,
        the paired permutation p-value, the paper's number (NaN when qualitative), the
        verdict and its reason (:data:`VERDICT_RULE`).
    """
    out = []
    for row in rows:
        if not isinstance(row, tuple | list) or len(row) not in (2, 3):
            raise ValueError(f"each row is (claim, estimate) or (claim, estimate, contrast); "
                             f"got {row!r}")
        claim, estimate = row[0], row[1]
        if isinstance(claim, str):
            if claim not in PAPER_CLAIMS:
                raise ValueError(f"unknown claim {claim!r}; known: {', '.join(PAPER_CLAIMS)}")
            claim = PAPER_CLAIMS[claim]
        values = _estimate(estimate)
        if len(row) == 3:
            contrast = str(row[2])
        elif "arm_a" in values and "arm_b" in values:
            contrast = f"{values['arm_a']} {MINUS} {values['arm_b']}"
        else:
            contrast = f"{claim.contrast[0]} {MINUS} {claim.contrast[1]}"
        value_a, value_b = float(values["value_a"]), float(values["value_b"])
        difference = 100.0 * float(values["difference"])
        low, high = 100.0 * float(values["low"]), 100.0 * float(values["high"])
        relative, note = _relative(value_a, value_b)
        paper = np.nan if claim.paper_pp is None else float(claim.paper_pp)
        word, reason = verdict(difference, low, high, paper)
        out.append((claim.name, contrast, value_a, value_b, difference, relative, note, low,
                    high, float(values.get("level", 0.95)), float(values["p_value"]), paper,
                    word, reason))
    return pd.DataFrame(out, columns=list(CLAIM_COLUMNS))


def write_claims_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as UTF-8 CSV atomically (a temporary file, then ``os.replace``)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            table.to_csv(stream, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def plot_claims(table: pd.DataFrame) -> Figure:
    """Forest plot of the claims: paired difference (points), interval, the paper's number.

    One row per claim and contrast; whiskers are the paired subject-bootstrap intervals,
    crosses the paper's numbers, the dashed line zero, the verdict is written at the right.
    Intervals, points and the x-axis stay inside :data:`PP_RANGE`, the range a difference
    of two MCCs can take; a clipped end is marked by an arrowhead. The legend is below the
    axes. The artists carry gids ``interval``, ``estimate`` and ``paper``. The figure
    follows the book's legibility rule (:mod:`fmtc.report.figures`).

    Parameters
    ----------
    table : DataFrame
        :func:`claims_table`.
    """
    import matplotlib.pyplot as plt

    from fmtc.report.figures import SMALL, draw_differences, legend_below, padded_limits

    n = len(table)
    y = np.arange(n)
    # Long claim names (a cross-cohort row names both cohorts) are wrapped, so that the tick
    # labels do not squeeze the axes; each row gets the height of its lines.
    def wrap(text: object) -> list[str]:
        return textwrap.wrap(str(text), CLAIM_LABEL_WIDTH, break_on_hyphens=False)

    ticks = ["\n".join([*wrap(claim), *wrap(contrast)])
             for claim, contrast in zip(table["claim"], table["contrast"], strict=True)]
    height = 1.6 + sum(0.25 + 0.2 * (tick.count("\n") + 1) for tick in ticks)
    fig, ax = plt.subplots(figsize=(9, max(height, 2.5)), layout="constrained")
    handles, labels, shown = draw_differences(
        ax, table["difference_pp"], table["low_pp"], table["high_pp"], table["paper_pp"],
        PP_RANGE, "this companion, A − B (95% paired subject-bootstrap interval)",
        markersize=7)
    ax.axvline(0.0, color="grey", lw=0.9, ls="--")
    ax.set_yticks(y, ticks)
    ax.set_ylim(max(n, 1) - 0.5, -0.5)
    for k, word in enumerate(table["verdict"]):
        ax.annotate(word, (1.0, y[k]), xycoords=("axes fraction", "data"), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=SMALL, color="#333333")
    ax.set_xlim(padded_limits([*shown, [0.0]], PP_RANGE, minimum=10.0))
    ax.set_xlabel("difference of pooled MCC, A − B (percentage points)")
    ax.set_ylabel("claim and contrast")
    legend_below(fig, handles, labels, ncol=2)
    return fig


GENERALISATION_COLUMNS = ("model", "scheme", "setting", "mcc", "low", "high")
"""Columns :func:`plot_generalisation` reads."""


def plot_generalisation(frame: pd.DataFrame) -> Figure:
    """MCC within a cohort and across (drug or dataset): one panel per scheme, models as rows.

    Parameters
    ----------
    frame : DataFrame
        Tidy, one row per (scheme, model, setting), columns
        :data:`GENERALISATION_COLUMNS`:

        ``scheme``  what is generalised over, e.g. ``"drug: placebo→duloxetine"``;
        ``model``   the arm, e.g. ``"FMM_TC"``;
        ``setting`` e.g. ``"within"`` (cross-validated in one cohort) or
                    ``"cross"`` (trained on one drug or dataset, tested on the other);
        ``mcc``     pooled MCC;
        ``low``, ``high``  its interval (NaN: no whisker).

        Panels follow the schemes' order of appearance (two columns, titles wrapped), rows
        the models', one colour per setting (a dot, and its interval as a horizontal
        whisker). Dots, whiskers and the x-axis stay inside [−1, 1], the range of an MCC; a
        clipped end is marked by an arrowhead; the legend is below the panels. Dots carry the
        gid ``estimate`` and the setting as label, whiskers the gid ``interval``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from fmtc.report.figures import (
        MAX_WIDTH_IN,
        clipped_handle,
        draw_intervals,
        legend_below,
        padded_limits,
    )

    missing = [c for c in GENERALISATION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks columns {missing}; expected {GENERALISATION_COLUMNS}")
    schemes = list(dict.fromkeys(frame["scheme"]))
    models = list(dict.fromkeys(frame["model"]))
    settings = list(dict.fromkeys(frame["setting"]))
    ncols = 1 if len(schemes) <= 1 else 2
    nrows = max(1, -(-len(schemes) // ncols))
    panel_height = 0.9 + 0.3 * len(models) * (1 + 0.25 * (len(settings) - 1))
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH_IN, 0.8 + nrows * panel_height),
                             sharex=True, sharey=True, layout="constrained", squeeze=False)
    step = 0.7 / max(len(settings), 1)
    rows = np.arange(len(models), dtype=float)
    clipped, values = False, [[0.0]]
    for ax, scheme in zip(axes.flat, schemes, strict=False):
        for k, setting in enumerate(settings):
            part = frame[(frame["scheme"] == scheme) & (frame["setting"] == setting)]
            part = part.drop_duplicates("model").set_index("model").reindex(models)
            y = rows + (k - (len(settings) - 1) / 2) * step
            ends_clipped, shown = draw_intervals(ax, y, part["mcc"], part["low"], part["high"],
                                                 (-1.0, 1.0), f"C{k}", label=str(setting))
            clipped |= ends_clipped
            values += shown
        ax.axvline(0.0, color="grey", lw=0.9, ls="--")
        ax.set_title("\n".join(textwrap.wrap(str(scheme), 42, break_on_hyphens=False)))
    for ax in list(axes.flat)[len(schemes):]:
        ax.set_visible(False)
    first = axes.flat[0]
    first.set_yticks(rows, models)
    first.set_ylim(len(models) - 0.5, -0.5)
    first.set_xlim(padded_limits(values, (-1.0, 1.0)))
    for ax in axes.flat:
        ax.label_outer()
    for ax in axes[-1, :]:
        ax.set_xlabel("pooled MCC (95% interval)")
    if len(schemes) % ncols and nrows > 1:  # the panel above the empty slot shows the x-axis
        above = axes[-2, -1]
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel("pooled MCC (95% interval)")
    handles = [Line2D([], [], color=f"C{k}", lw=2, marker="o", markersize=6)
               for k in range(len(settings))]
    labels = list(map(str, settings))
    if clipped:
        handle, label = clipped_handle((-1.0, 1.0))
        handles.append(handle)
        labels.append(label)
    legend_below(fig, handles, labels, ncol=len(labels), title="setting")
    return fig
