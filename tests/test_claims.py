"""The claims table: columns, relative change, every verdict branch, CSV, figures."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fmtc.evaluate.paired import paired_difference
from fmtc.report.claims import (
    CLAIM_COLUMNS,
    PAPER_CLAIMS,
    PP_RANGE,
    VERDICT_RULE,
    VERDICTS,
    claims_table,
    plot_claims,
    plot_generalisation,
    verdict,
    write_claims_csv,
)


def contrast_row(a: float, b: float, low: float, high: float, p: float = 0.01,
                 arms: tuple[str, str] = ("fmmtc", "fc")) -> pd.Series:
    """A row of a run's contrasts table (fractions of MCC, as ``paired_differences`` writes)."""
    return pd.Series({"arm_a": arms[0], "arm_b": arms[1], "selection": "honest", "metric": "mcc",
                      "value_a": a, "value_b": b, "difference": a - b,
                      "difference_pp": 100 * (a - b), "low": low, "high": high,
                      "low_pp": 100 * low, "high_pp": 100 * high, "p_value": p,
                      "n_repeats": 2, "n_subjects": 40})


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_paper_claims_hold_the_papers_numbers_and_two_qualitative_rows():
    assert PAPER_CLAIMS["external-knowledge"].paper_pp == 14.71
    assert PAPER_CLAIMS["multimodal-fusion"].paper_pp == 2.80
    assert PAPER_CLAIMS["external-knowledge"].contrast == ("fmmtc", "fc")
    assert PAPER_CLAIMS["multimodal-fusion"].contrast == ("fmmtc", "ts")
    qualitative = [c for c in PAPER_CLAIMS.values() if c.paper_pp is None]
    assert {c.name for c in qualitative} == {"drug generalisation", "dataset generalisation"}
    assert "L > 0" in VERDICT_RULE and "H < P" in VERDICT_RULE
    assert all(f"'{word}'" in VERDICT_RULE for word in VERDICTS)


def test_claims_table_from_a_paired_difference_and_a_contrasts_row():
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    good = np.clip(0.2 + 0.6 * labels + rng.normal(0, 0.15, (2, 40)), 0, 1)
    noise = rng.random((2, 40))
    result = paired_difference(labels, good, noise, n_bootstrap=300, n_permutations=200, seed=1)
    row = contrast_row(0.30, 0.20, 0.02, 0.18, p=0.04, arms=("fmmtc", "ts"))
    table = claims_table([("external-knowledge", result),
                          (PAPER_CLAIMS["multimodal-fusion"], row),
                          ("drug-generalisation", row.to_dict(), "fmmtc − fc (other drug)")])
    assert list(table.columns) == list(CLAIM_COLUMNS)
    assert list(table["claim"]) == ["external knowledge", "multimodal fusion",
                                    "drug generalisation"]
    assert list(table["contrast"]) == ["fmmtc − fc", "fmmtc − ts", "fmmtc − fc (other drug)"]
    first = table.iloc[0]
    assert first["mcc_a"] == result.value_a and first["mcc_b"] == result.value_b
    assert first["difference_pp"] == pytest.approx(result.difference_pp)
    assert (first["low_pp"], first["high_pp"]) == pytest.approx((result.low_pp, result.high_pp))
    assert first["p_value"] == result.p_value and first["level"] == 0.95
    assert first["paper_pp"] == 14.71
    second = table.iloc[1]
    assert second["difference_pp"] == pytest.approx(10.0)
    assert (second["low_pp"], second["high_pp"]) == pytest.approx((2.0, 18.0))
    assert second["p_value"] == 0.04 and second["paper_pp"] == 2.80
    assert second["verdict"] == "supported"  # 0 < 2 and 10 >= 2.80
    assert np.isnan(table.iloc[2]["paper_pp"]) and table.iloc[2]["verdict"] == "supported"
    # The paper's number of a claim can be changed for a sensitivity reading.
    stricter = dataclasses.replace(PAPER_CLAIMS["multimodal-fusion"], paper_pp=12.0)
    assert claims_table([(stricter, row)])["verdict"].iloc[0] == "direction supported, size not"


def test_relative_change_is_relative_to_b_and_undefined_when_b_is_not_positive():
    table = claims_table([("multimodal-fusion", contrast_row(0.30, 0.20, 0.0, 0.2)),
                          ("multimodal-fusion", contrast_row(0.30, 0.0, 0.1, 0.5)),
                          ("multimodal-fusion", contrast_row(0.10, -0.05, 0.1, 0.2)),
                          ("multimodal-fusion", contrast_row(0.10, np.nan, 0.1, 0.2))])
    assert table["relative_pct"].iloc[0] == pytest.approx(50.0)  # 10 points on 20: +50 %
    assert table["relative_note"].iloc[0] == "relative to b's MCC"
    assert table["relative_pct"].iloc[1:].isna().all()
    assert "0.000) is not positive" in table["relative_note"].iloc[1]
    assert "-0.050) is not positive" in table["relative_note"].iloc[2]
    assert "missing" in table["relative_note"].iloc[3]


@pytest.mark.parametrize(("d", "low", "high", "paper", "expected", "because"), [
    (20.0, 5.0, 35.0, 14.71, "supported", "reaches"),
    (14.71, 0.1, 30.0, 14.71, "supported", "reaches"),  # at the paper's number exactly
    (5.0, 1.0, 9.0, None, "supported", "no size claimed"),
    (8.0, 1.0, 15.0, 14.71, "direction supported, size not", "below the paper"),
    (8.0, 1.0, 12.0, 14.71, "direction supported, size not", "below the paper"),
    (-8.0, -15.0, -1.0, 14.71, "not supported", "opposite direction"),
    (-8.0, -15.0, -1.0, None, "not supported", "opposite direction"),
    (2.0, -5.0, 10.0, 14.71, "not supported", "upper bound +10.00 is below"),
    (2.0, 0.0, 10.0, 14.71, "not supported", "upper bound"),  # L = 0 does not exclude 0
    (2.0, -5.0, 20.0, 14.71, "inconclusive", "both 0 and the paper"),
    (2.0, -5.0, 20.0, None, "inconclusive", "holds 0"),
    (2.0, -5.0, 0.0, 2.80, "not supported", "upper bound"),  # H = 0: not the opposite side
    (2.0, np.nan, np.nan, 14.71, "not estimable", "missing"),
    (np.nan, -1.0, 1.0, None, "not estimable", "missing"),
])
def test_every_verdict_branch(d, low, high, paper, expected, because):
    word, reason = verdict(d, low, high, paper)
    assert word == expected and because in reason, reason
    # The same through the table, from fractions of MCC.
    claim = dataclasses.replace(PAPER_CLAIMS["external-knowledge"], paper_pp=paper)
    row = contrast_row(0.5 + d / 100, 0.5, low / 100, high / 100)
    table = claims_table([(claim, row)])
    assert table["verdict"].iloc[0] == expected


def test_claims_table_refuses_other_metrics_unknown_claims_and_bad_rows():
    row = contrast_row(0.3, 0.2, 0.0, 0.2)
    with pytest.raises(ValueError, match="about MCC.*'auc'"):
        claims_table([("external-knowledge", row.replace("mcc", "auc"))])
    with pytest.raises(ValueError, match="unknown claim 'speed'"):
        claims_table([("speed", row)])
    with pytest.raises(ValueError, match="lacks"):
        claims_table([("external-knowledge", row.drop("low"))])
    with pytest.raises(ValueError, match=r"\(claim, estimate\)"):
        claims_table([("external-knowledge",)])
    with pytest.raises(TypeError, match="PairedDifference"):
        claims_table([("external-knowledge", 0.12)])


def example_table() -> pd.DataFrame:
    return claims_table([
        ("external-knowledge", contrast_row(0.40, 0.20, 0.05, 0.35)),
        ("multimodal-fusion", contrast_row(0.40, -0.10, -0.3, 2.5, arms=("fmmtc", "ts"))),
        ("drug-generalisation", contrast_row(0.10, 0.90, -2.6, -0.2)),
        ("dataset-generalisation", contrast_row(0.10, 0.10, np.nan, np.nan)),
    ])


def test_write_claims_csv_round_trips_and_replaces_atomically(tmp_path):
    table = example_table()
    path = tmp_path / "claims.csv"
    path.write_text("an older table")
    assert write_claims_csv(table, path) == path
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.csv"]  # no temporary left
    with pytest.raises(OSError):
        write_claims_csv(table, tmp_path / "absent" / "claims.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.csv"]


def test_claims_plot_keeps_intervals_and_points_in_the_range_of_a_difference():
    table = example_table()
    fig = plot_claims(table)
    (ax,) = fig.axes
    lo, hi = PP_RANGE
    by_gid = {a.get_gid(): a for a in [*ax.collections, *ax.lines] if a.get_gid()}
    segments = by_gid["interval"].get_segments()
    assert len(segments) == 3  # the row without an interval draws none
    for segment in segments:
        assert np.all((segment[:, 0] >= lo) & (segment[:, 0] <= hi)), segment
    # Row 2 (-30, +250) and row 3 (-260, -20) are clipped at the range's ends.
    assert segments[1][:, 0].tolist() == [-30.0, 200.0]
    assert segments[2][:, 0].tolist() == [-200.0, -20.0]
    points = np.asarray(by_gid["estimate"].get_xdata(), dtype=float)
    assert np.all((points >= lo) & (points <= hi))
    np.testing.assert_allclose(points, [20.0, 50.0, -80.0, 0.0])
    paper = np.asarray(by_gid["paper"].get_xdata(), dtype=float)
    np.testing.assert_allclose(paper, [14.71, 2.80, np.nan, np.nan])
    assert ax.get_xlabel() and "percentage points" in ax.get_xlabel() and ax.get_ylabel()
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == "external knowledge\nfmmtc − fc"
    lowest, highest = ax.get_xlim()
    assert lowest <= -200 and highest >= 200 and highest - lowest <= 420


def test_claims_plot_clips_a_point_outside_the_range():
    table = claims_table([("external-knowledge", contrast_row(1.0, -1.5, -3.0, 3.0))])
    ax = plot_claims(table).axes[0]
    (estimate,) = [line for line in ax.lines if line.get_gid() == "estimate"]
    assert estimate.get_xdata()[0] == 200.0


def test_claims_plot_wraps_long_claim_names_and_keeps_the_axes_wide():
    long = "simulated-4e328026b6→simulated-61bbb7dff4: FMM_TC − FC-only"
    table = claims_table([("external-knowledge", contrast_row(0.40, 0.20, 0.05, 0.35)),
                          ("dataset-generalisation", contrast_row(0.1, 0.1, -0.2, 0.2), long)])
    fig = plot_claims(table)
    fig.canvas.draw()
    (ax,) = fig.axes
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert all(len(line) <= 44 for tick in ticks for line in tick.split("\n")), ticks
    assert ticks[1].count("\n") >= 2 and "FC-only" in ticks[1]  # wrapped, hyphens kept whole
    assert ax.get_position().width >= 0.4  # the labels do not squeeze the data


def generalisation_frame() -> pd.DataFrame:
    rows = []
    for scheme in ("drug", "dataset"):
        for model in ("fmmtc", "fc"):
            for setting, mcc in (("within-cohort", 0.35), ("cross", 0.15)):
                rows.append({"scheme": scheme, "model": model, "setting": setting, "mcc": mcc,
                             "low": mcc - 0.3, "high": mcc + 0.3})
    frame = pd.DataFrame(rows)
    frame.loc[0, ["low", "high"]] = (-1.4, 1.3)  # outside the range of an MCC: clipped
    frame.loc[1, ["low", "high"]] = np.nan  # no interval: no whisker
    return frame


def test_generalisation_plot_has_a_panel_per_scheme_and_keeps_whiskers_in_the_mcc_range():
    frame = generalisation_frame()
    fig = plot_generalisation(frame)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["drug", "dataset"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["fmmtc", "fc"]
    for ax in panels:  # rows shared: the models' names are written once, on the left
        assert list(ax.get_yticks()) == [0, 1]
        dots = [line for line in ax.lines if line.get_gid() == "estimate"]
        assert [d.get_label() for d in dots] == ["within-cohort", "cross"]
        for dot, expected in zip(dots, (0.35, 0.15), strict=True):
            assert np.asarray(dot.get_xdata(), dtype=float) == pytest.approx([expected] * 2)
        for whiskers in [c for c in ax.collections if c.get_gid() == "interval"]:
            for segment in whiskers.get_segments():
                assert np.all((segment[:, 0] >= -1) & (segment[:, 0] <= 1)), segment
        assert "MCC" in ax.get_xlabel()
    drug = [c for c in panels[0].collections if c.get_gid() == "interval"]
    assert sorted(len(c.get_segments()) for c in drug) == [1, 2]  # the NaN row draws none
    clipped = [seg for c in drug for seg in c.get_segments() if seg[0, 0] == -1.0]
    assert [seg[:, 0].tolist() for seg in clipped] == [[-1.0, 1.0]]
    with pytest.raises(ValueError, match="lacks columns.*'setting'"):
        plot_generalisation(frame.drop(columns="setting"))


def test_generalisation_plot_wraps_long_scheme_names_and_hides_the_empty_panel():
    frame = generalisation_frame()
    long = "cross-cohort: simulated-4e328026b6→simulated-61bbb7dff4"
    frame = pd.concat([frame, frame[frame["scheme"] == "drug"].assign(scheme=long)])
    fig = plot_generalisation(frame)
    assert len(fig.axes) == 4 and not fig.axes[3].get_visible()
    title = fig.axes[2].get_title()
    assert "\n" in title and all(len(line) <= 42 for line in title.split("\n"))
