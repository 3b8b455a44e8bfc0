"""The paper's claims against this companion's paired differences: a table, a CSV, figures.

Each claim of Fan et al. (MICCAI 2025) is a difference of MCC between two arms evaluated
on identical splits (``A − B``); this module puts such differences
(:class:`~fmtc.evaluate.family.Contrast`) beside the paper's numbers, as one family with
simultaneous intervals and Holm-adjusted p-values (:mod:`fmtc.evaluate.family`), and gives a
verdict in words by one stated rule, :data:`VERDICT_RULE`, decided by the interval alone.

The paper writes its numbers as "%" of MCC ("at least 14.71% MCC"); they are read here as
percentage points of MCC (MCC × 100), as everywhere in this companion. The relative change
(``100 (A − B) / B``, relative to B's MCC) is shown beside it for reading, and is undefined
(NaN, with the reason) when B's MCC is below ``1 / sqrt(n)``, about one standard error of an
MCC at chance on ``n`` subjects: against a B that cannot be told from chance the ratio is noise
(B = 0.003 would turn a 0.4 difference into +13,000%).
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmtc.evaluate.family import (
    FAMILY_BOOTSTRAP,
    FAMILY_METHOD,
    FAMILY_NOMINAL,
    Contrast,
    family_inference,
    family_permutations,
)
from fmtc.report.pages import NOT_INTERPRETED, shown_verdict

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["AUTHORS_SWITCHES", "BASELINES", "CLAIM_COLUMNS", "NOT_INTERPRETED", "PAPER_CLAIMS",
           "PP_RANGE", "VERDICTS", "VERDICT_RULE", "PaperClaim", "baseline_reading",
           "claims_table", "claims_view", "plot_claims", "plot_generalisation", "shown_verdicts",
           "verdict", "write_claims_csv"]


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

VERDICTS = ("size reached", "direction shown, size not shown", "direction shown, size excluded",
            "no effect shown, size excluded", "inconclusive", "opposite direction",
            "direction shown", "not estimable")
"""Every verdict :func:`verdict` can give (``direction shown``: a claim without a size)."""

VERDICT_RULE = (
    "Each claim is decided by the interval [L, H] of its difference A − B of pooled MCC "
    "(percentage points), simultaneous over every row of the table (all rows are covered "
    "together with probability 95%), never by the point estimate. With P the paper's number: "
    "'size reached' when L ≥ P; 'direction shown, size not shown' when 0 < L < P ≤ H; "
    "'direction shown, size excluded' when 0 < L and H < P; 'no effect shown, size excluded' "
    "when L ≤ 0 and H < P; 'inconclusive' when L ≤ 0 and H ≥ P; 'opposite direction' when "
    "H < 0. A claim without a number is judged by its sign only: 'direction shown' when L > 0, "
    "'opposite direction' when H < 0, 'inconclusive' otherwise; 'not estimable' when an arm "
    "predicts a single class in every repeat (its MCC of 0 is a convention, not an estimate) "
    "or the interval is missing.")
"""The rule of :func:`verdict`, as one paragraph for the book."""

CLAIM_COLUMNS = ("claim", "contrast", "mcc_a", "mcc_b", "difference_pp", "relative_pct",
                 "relative_note", "low_pp", "high_pp", "raw_low_pp", "raw_high_pp", "level",
                 "p_value", "p_holm", "paper_pp", "verdict", "reason")
"""Columns of :func:`claims_table`, in order (``low_pp``, ``high_pp``: simultaneous)."""

PP_RANGE = (-200.0, 200.0)
"""The range of a difference of two MCCs, in percentage points."""
CLAIM_LABEL_WIDTH = 44
"""Characters per line of a claim's name on the y-axis of :func:`plot_claims`."""
VERDICT_WIDTH = 18
"""Characters per line of a verdict at the right of :func:`plot_claims`."""

MINUS = "\N{MINUS SIGN}"


AUTHORS_SWITCHES = {
    "zero-grad-per-epoch": "gradients summed over each epoch (protocol.zero_grad: per_epoch)",
    "eval-crops-random": "one random crop per evaluation (protocol.eval_crops: random)",
    "input-scaling-none": "raw, unscaled inputs (protocol.input_scaling: none)",
    "gram-raw-window": "Gram of the raw crop as FC (connectivity.kind: gram_raw_window)",
    "token-order-random-each-call":
        "a new token order per call (brainlm.token_order: random_each_call)",
    "all-switches": "all five per-fit switches at once",
}
"""The per-fit switches of the ``official`` experiment (its arms) in words, for tables."""


def shown_verdicts(verdicts: Sequence[str], plan: Any = None) -> list[str]:
    """The verdicts as a page shows them: "not interpreted" under a non-meaningful plan.

    ``not estimable`` is kept: it says that no number exists, not what a number means.

    Parameters
    ----------
    verdicts : sequence of str
    plan : fmtc.plan.Plan, optional
        The page's plan; None or a plan with ``meaningful`` true keeps every verdict.
    """
    keep = plan is None or getattr(plan, "meaningful", True)
    return [shown_verdict(str(v), keep) for v in verdicts]


def verdict(low_pp: float, high_pp: float, paper_pp: float | None,
            reason_missing: str = "") -> tuple[str, str]:
    """The verdict of :data:`VERDICT_RULE` and its reason, in words.

    Parameters
    ----------
    low_pp, high_pp : float
        The simultaneous interval of ``A − B``, in MCC percentage points.
    paper_pp : float or None
        The paper's number (points); None or NaN for a qualitative claim.
    reason_missing : str
        Why the difference is not estimable (non-empty: the verdict is ``not estimable``).

    Returns
    -------
    (verdict, reason)
        ``verdict`` is one of :data:`VERDICTS`.
    """
    low, high = float(low_pp), float(high_pp)
    size = None if paper_pp is None or not np.isfinite(paper_pp) else float(paper_pp)
    if reason_missing:
        return "not estimable", reason_missing
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not estimable", "the interval is missing"
    span = f"[{low:+.1f}, {high:+.1f}]"
    if high < 0:
        return "opposite direction", f"the interval {span} lies below 0"
    if size is None:
        if low > 0:
            return "direction shown", f"the interval {span} lies above 0 (no size claimed)"
        return "inconclusive", f"the interval {span} holds 0 (no size claimed)"
    if size <= 0:
        raise ValueError(f"the paper's size must be positive; got {size}")
    if low >= size:
        return "size reached", f"the interval {span} lies at or above the paper's {size:+.2f}"
    if low > 0:
        if high >= size:
            return "direction shown, size not shown", (
                f"the interval {span} lies above 0 and holds the paper's {size:+.2f}")
        return "direction shown, size excluded", (
            f"the interval {span} lies above 0 and below the paper's {size:+.2f}")
    if high < size:
        return "no effect shown, size excluded", (
            f"the interval {span} holds 0 and lies below the paper's {size:+.2f}")
    return "inconclusive", f"the interval {span} holds both 0 and the paper's {size:+.2f}"


def _relative(value_a: float, value_b: float, n: int) -> tuple[float, str]:
    """``100 (a - b) / b``, or NaN with the reason when b is missing or within chance's SE."""
    if not np.isfinite(value_b) or not np.isfinite(value_a):
        return np.nan, "undefined: an arm's MCC is missing"
    if value_b <= 0:
        return np.nan, (f"undefined: b's MCC ({value_b:.3f}) is not positive, so a change "
                        "relative to it has no meaning")
    floor = 1.0 / np.sqrt(n)
    if value_b < floor:
        return np.nan, (f"undefined: b's MCC ({value_b:.3f}) is below 1/sqrt(n) = {floor:.3f} "
                        f"(about one standard error of an MCC at chance on {n} subjects), so a "
                        "change relative to it is noise")
    return 100.0 * (value_a - value_b) / value_b, "relative to b's MCC"


def claims_table(rows: Sequence[tuple], *, n_bootstrap: int = FAMILY_BOOTSTRAP,
                 n_permutations: int | None = None, seed: int = 0, level: float = 0.95,
                 method: str = FAMILY_METHOD, nominal: float = FAMILY_NOMINAL) -> pd.DataFrame:
    """The paper's claims beside this companion's paired differences, with verdicts.

    The rows form one family: their intervals are simultaneous
    (:func:`fmtc.evaluate.family.family_inference`), their permutation p-values
    Holm-adjusted, and each verdict follows :data:`VERDICT_RULE`.

    Parameters
    ----------
    rows : sequence of (claim, contrast) or (claim, contrast, label)
        ``claim``: a :class:`PaperClaim` or a key of :data:`PAPER_CLAIMS` (use
        ``dataclasses.replace`` for another name or number). ``contrast``: a
        :class:`~fmtc.evaluate.family.Contrast` (labels and both arms' probabilities, e.g.
        :meth:`fmtc.evaluate.runs.ExperimentRun.contrast`). ``label``: the row's contrast in
        words (default ``"a − b"`` from the contrast's arms).
    n_bootstrap, seed, level, method, nominal
        Of :func:`~fmtc.evaluate.family.family_inference` (the defaults are those chosen by
        the inference calibration: :data:`~fmtc.evaluate.family.FAMILY_NOMINAL`).
    n_permutations : int, optional
        Swaps per row; default :func:`~fmtc.evaluate.family.family_permutations` of the
        family's size, so that a Holm-adjusted p-value can fall below ``1 − level``.

    Returns
    -------
    DataFrame
        One row per input, columns :data:`CLAIM_COLUMNS`: the claim's name, the contrast,
        each arm's MCC, the difference in points and relative to ``mcc_b`` in %
        (``relative_pct``, NaN when ``mcc_b < 1 / sqrt(n)``, the reason in ``relative_note``), the
        simultaneous interval (``low_pp``, ``high_pp``) and the row's own raw interval, the
        permutation p-value and its Holm adjustment, the paper's number (NaN when
        qualitative), the verdict and its reason. ``attrs`` holds the family's ``method``,
        ``critical`` value, ``level``, ``n_bootstrap`` and ``size``.
    """
    claims, contrasts, labels = [], [], []
    for row in rows:
        if not isinstance(row, tuple | list) or len(row) not in (2, 3):
            raise ValueError(f"each row is (claim, contrast) or (claim, contrast, label); "
                             f"got {row!r}")
        claim, contrast = row[0], row[1]
        if isinstance(claim, str):
            if claim not in PAPER_CLAIMS:
                raise ValueError(f"unknown claim {claim!r}; known: {', '.join(PAPER_CLAIMS)}")
            claim = PAPER_CLAIMS[claim]
        if not isinstance(contrast, Contrast):
            raise TypeError(f"a claim's estimate is a Contrast (labels and both arms' "
                            f"probabilities; ExperimentRun.contrast gives one); got "
                            f"{type(contrast).__name__}")
        claims.append(claim)
        contrasts.append(contrast)
        labels.append(str(row[2]) if len(row) == 3
                      else f"{contrast.arm_a} {MINUS} {contrast.arm_b}")
    if not claims:
        raise ValueError("a claims table needs at least one row")
    if n_permutations is None:
        n_permutations = family_permutations(len(contrasts), level)
    family = family_inference(contrasts, method=method, n_bootstrap=n_bootstrap,
                              n_permutations=n_permutations, seed=seed, level=level,
                              nominal=nominal)
    out = []
    for claim, contrast, label, (_, found) in zip(claims, contrasts, labels, family.iterrows(),
                                                  strict=True):
        value_a, value_b = float(found["value_a"]), float(found["value_b"])
        relative, note = _relative(value_a, value_b, len(contrast.labels))
        paper = np.nan if claim.paper_pp is None else float(claim.paper_pp)
        low, high = 100.0 * found["low"], 100.0 * found["high"]
        word, reason = verdict(low, high, paper, found["reason"])
        out.append((claim.name, label, value_a, value_b, 100.0 * (value_a - value_b), relative,
                    note, low, high, 100.0 * found["low_raw"], 100.0 * found["high_raw"],
                    level, float(found["p_value"]), float(found["p_holm"]), paper, word,
                    reason))
    table = pd.DataFrame(out, columns=list(CLAIM_COLUMNS))
    table.attrs.update(family.attrs, size=len(table))
    return table


def claims_view(table: pd.DataFrame, plan: Any = None,
                columns: Sequence[str] | Mapping[str, str] | None = None) -> Any:
    """The claims table for reading: human headers, no index, intervals as ``[L, H]``.

    ``A − B`` and the intervals are in MCC percentage points; "interval" is simultaneous over
    the table's rows, "own interval" the row's alone; "p (Holm)" is the paired permutation
    p-value adjusted over the rows.

    Parameters
    ----------
    table : DataFrame
        :func:`claims_table`.
    plan : fmtc.plan.Plan, optional
        The page's plan: under a profile marked not meaningful the verdicts read
        "not interpreted" (:func:`shown_verdicts`).
    columns : sequence or mapping of str, optional
        The view's columns to show, in order (a narrower table), or a mapping of them to
        other headers; default every column.

    Returns
    -------
    pandas.io.formats.style.Styler
    """
    def span(low: float, high: float) -> str:
        if not (np.isfinite(low) and np.isfinite(high)):
            return "not estimable"
        return f"[{low:+.1f}, {high:+.1f}]"

    def number(value: float, form: str, missing: str = "—") -> str:
        return format(value, form) if np.isfinite(value) else missing

    def difference(row: pd.Series, column: str, form: str) -> str:
        # A not-estimable row's difference compares a conventional MCC of 0: not a number.
        if row["verdict"] == "not estimable":
            return "not estimable"
        return number(row[column], form)

    rows = [{"claim": row["claim"], "contrast": row["contrast"],
             "MCC of A": number(row["mcc_a"], ".2f"), "MCC of B": number(row["mcc_b"], ".2f"),
             "A − B (points)": difference(row, "difference_pp", "+.1f"),
             "relative (%)": difference(row, "relative_pct", "+.0f"),
             "interval": span(row["low_pp"], row["high_pp"]),
             "own interval": span(row["raw_low_pp"], row["raw_high_pp"]),
             "p (Holm)": number(row["p_holm"], ".3g", "not estimable"),
             "paper (points)": number(row["paper_pp"], "+.2f"),
             "verdict": row["verdict"]} for _, row in table.iterrows()]
    view = pd.DataFrame(rows)
    if len(view):
        view["verdict"] = shown_verdicts(view["verdict"], plan)
    if columns is not None:
        headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
        view = view[list(headers)].rename(columns=headers)
    return view.style.hide(axis="index").set_table_attributes('class="fmtc-table"')


BASELINES = ("fc-logreg", "cls-logreg", "ts-handcrafted", "covariates-logreg")
"""The simple models every claim page shows beside FMM_TC (logistic regressions)."""


def baseline_reading(run: Any, names: dict[str, str], model: str = "fmmtc",
                     seed: int = 0) -> str:
    """One sentence, chosen from the result: does a simple model beat ``model`` here?

    Compares ``model``'s pooled honest MCC with the best of :data:`BASELINES` in ``run``
    (an :class:`~fmtc.evaluate.runs.ExperimentRun` holding both), with the paired difference
    and its own 95% subject-bootstrap interval.

    Returns
    -------
    str
        Markdown; says plainly when a simple model's MCC is higher.
    """
    summary = run.summary
    mcc = summary[(summary["metric"] == "mcc") & (summary["selection"] == "honest")]
    mcc = mcc.set_index("arm")["mean"]
    present = [arm for arm in BASELINES if arm in mcc.index]
    if model not in mcc.index or not present:
        return (f"This run holds no simple baseline beside {names.get(model, model)}; "
                "nothing to compare.")
    best = max(present, key=lambda arm: mcc[arm])
    found = family_inference([run.contrast(best, model)], n_bootstrap=FAMILY_BOOTSTRAP,
                             n_permutations=0, seed=seed).iloc[0]
    span = (f"difference {found['difference']:+.2f}, 95% interval {found['low_raw']:+.2f} to "
            f"{found['high_raw']:+.2f}")
    ours, theirs = names.get(model, model), names.get(best, best)
    if mcc[best] > mcc[model]:
        return (f"**A simple model beats {ours} here:** {theirs} reaches a pooled MCC of "
                f"{mcc[best]:.2f} against {ours}'s {mcc[model]:.2f} ({span}).")
    return (f"{ours}'s pooled MCC ({mcc[model]:.2f}) is at least that of every simple baseline; "
            f"the best, {theirs}, reaches {mcc[best]:.2f} ({span}).")


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


def plot_claims(table: pd.DataFrame, plan: Any = None) -> Figure:
    """Forest plot of the claims: paired difference (points), interval, the paper's number.

    One row per claim and contrast; whiskers are the paired subject-bootstrap intervals,
    crosses the paper's numbers, the dashed line zero, the verdict is written at the right.
    Intervals, points and the x-axis stay inside :data:`PP_RANGE`, the range a difference
    of two MCCs can take; a clipped end is marked by an arrowhead. The legend is below the
    axes. The artists carry gids ``interval``, ``estimate`` and ``paper``. The figure
    follows the book's legibility rule (:mod:`fmtc.report.style`).

    Parameters
    ----------
    table : DataFrame
        :func:`claims_table`.
    plan : fmtc.plan.Plan, optional
        The page's plan: under a profile marked not meaningful the verdicts at the right read
        "not interpreted".
    """
    import matplotlib.pyplot as plt

    from fmtc.report.style import SMALL, draw_differences, legend_below, padded_limits

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
    for k, word in enumerate(shown_verdicts(table["verdict"], plan)):
        word = "\n".join(textwrap.wrap(str(word), VERDICT_WIDTH, break_on_hyphens=False))
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

    from fmtc.report.style import (
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
