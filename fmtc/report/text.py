"""How the book writes what it shows: display names, numbers, intervals and verdicts.

A missing number or a degenerate interval reads "not estimable"
(:data:`fmtc.report.pages.NOT_ESTIMABLE`), never ``nan`` or ``[0, 0]``; a model or an arm
reads by its display name, never its internal id (:func:`arm_label`); a paired difference's
verdict reads as :func:`claim_verdict` decides, and "not interpreted" on a profile that is
not meaningful (:func:`claims_verdicts`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fmtc.report.pages import NOT_ESTIMABLE, shown_verdict

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
