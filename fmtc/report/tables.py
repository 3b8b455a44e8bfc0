"""Plain-text tables of a run for the terminal (the book uses :mod:`fmtc.report.figures`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _name(row_arm: str, row_model: str) -> str:
    from fmtc.predict.registry import display_names

    return display_names().get(row_model, row_model) if row_arm == row_model else row_arm


def format_table(summary: pd.DataFrame, metrics: Sequence[str] = ("mcc", "auc", "bacc", "acc",
                                                                   "f1")) -> str:
    """A compact text table of ``summary``: mean [bootstrap interval] per metric, p-values."""
    lines = []
    arm = "arm" if "arm" in summary else "model"
    for (name, model, selection), part in summary.groupby([arm, "model", "selection"],
                                                          sort=False):
        part = part.set_index("metric")
        cells = [f"{m.upper()} {part.at[m, 'mean']:.3f} "
                 f"[{part.at[m, 'bootstrap_low']:.2f}, {part.at[m, 'bootstrap_high']:.2f}]"
                 for m in metrics]
        p = "  p(MCC) " + _format_p(part.at["mcc", "p_value"]) + "  p(AUC) " + _format_p(
            part.at["auc", "p_value"])
        lines.append(f"{_name(name, model):<13} {selection:<7} " + "  ".join(cells) + p)
    return "\n".join(lines)


def format_contrasts(contrasts: pd.DataFrame) -> str:
    """One line per paired contrast: difference in points, interval and p-value."""
    lines = []
    for row in contrasts.itertuples():
        lines.append(f"{row.arm_a} - {row.arm_b}: {row.metric.upper()} {row.difference_pp:+.1f} "
                     f"points [{row.low_pp:+.1f}, {row.high_pp:+.1f}]  p {_format_p(row.p_value)}")
    return "\n".join(lines)


def _format_p(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"
