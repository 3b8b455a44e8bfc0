"""The claims table: columns, relative change, every verdict branch, CSV, figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fmtc.evaluate.family import Contrast
from fmtc.report.claims import (
    CLAIM_COLUMNS,
    NOT_INTERPRETED,
    PAPER_CLAIMS,
    PP_RANGE,
    VERDICT_RULE,
    VERDICTS,
    claims_table,
    claims_view,
    plot_claims,
    plot_generalisation,
    verdict,
    write_claims_csv,
)


def made_contrast(a: float, b: float, n: int = 60, seed: int = 0,
                  arms: tuple[str, str] = ("fmmtc", "fc"), subjects: tuple | None = None
                  ) -> Contrast:
    """Two arms whose pooled MCC are near ``a`` and ``b`` on ``n`` balanced subjects."""
    rng = np.random.default_rng(seed)
    labels = np.tile([0, 1], n // 2)

    def arm(mcc: float) -> np.ndarray:
        right = rng.random(n) < (1 + mcc) / 2  # accuracy (1 + MCC) / 2 on balanced labels
        predicted = np.where(right, labels, 1 - labels)
        return np.where(predicted == 1, 0.8, 0.2)[None]

    return Contrast(labels, arm(a), arm(b), subjects or tuple(range(n)), *arms)


def table_of(rows: list[tuple]) -> pd.DataFrame:
    """A claims table with the given intervals (points), as the plots read it."""
    out = []
    for name, contrast, d, low, high, paper in rows:
        word, reason = verdict(low, high, paper)
        out.append({"claim": name, "contrast": contrast, "mcc_a": np.nan, "mcc_b": np.nan,
                    "difference_pp": d, "relative_pct": np.nan,
                    "relative_note": "undefined: an arm's MCC is missing",
                    "low_pp": low, "high_pp": high, "raw_low_pp": low, "raw_high_pp": high,
                    "level": 0.95, "p_value": 0.01, "p_holm": 0.02,
                    "paper_pp": np.nan if paper is None else paper, "verdict": word,
                    "reason": reason})
    return pd.DataFrame(out, columns=list(CLAIM_COLUMNS))


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
    assert "simultaneous" in VERDICT_RULE and "never by the point estimate" in VERDICT_RULE
    assert all(f"'{word}'" in VERDICT_RULE for word in VERDICTS)


def test_claims_table_is_one_family_with_simultaneous_intervals_and_holm_p_values():
    rows = [("external-knowledge", made_contrast(0.8, 0.1, seed=1)),
            (PAPER_CLAIMS["multimodal-fusion"], made_contrast(0.5, 0.4, seed=2,
                                                              arms=("fmmtc", "ts"))),
            ("drug-generalisation",
             made_contrast(0.3, 0.3, seed=3, subjects=tuple(range(100, 160))),
             "fmmtc − fc (other drug)")]
    table = claims_table(rows, n_bootstrap=500, n_permutations=300, seed=1)
    assert list(table.columns) == list(CLAIM_COLUMNS)
    assert list(table["claim"]) == ["external knowledge", "multimodal fusion",
                                    "drug generalisation"]
    assert list(table["contrast"]) == ["fmmtc − fc", "fmmtc − ts", "fmmtc − fc (other drug)"]
    assert table.attrs["size"] == 3 and table.attrs["method"] == "max-t"
    # Simultaneous intervals hold the raw ones; Holm never lowers a p-value.
    assert (table["low_pp"] <= table["raw_low_pp"] + 1e-9).all()
    assert (table["high_pp"] >= table["raw_high_pp"] - 1e-9).all()
    assert (table["p_holm"] >= table["p_value"]).all()
    for _, row in table.iterrows():  # the verdict is the rule applied to the interval
        assert verdict(row["low_pp"], row["high_pp"], row["paper_pp"])[0] == row["verdict"]
    first = table.iloc[0]
    assert first["difference_pp"] == pytest.approx(100 * (first["mcc_a"] - first["mcc_b"]))
    assert first["verdict"] in ("size reached", "direction shown, size not shown")
    assert table.iloc[2]["verdict"] == "inconclusive"  # no size: sign only
    # A single row alone gets its (narrower) own interval: the family widens it.
    alone = claims_table(rows[:1], n_bootstrap=500, n_permutations=300, seed=1)
    assert alone["high_pp"].iloc[0] - alone["low_pp"].iloc[0] < first["high_pp"] - first["low_pp"]


def test_the_point_estimate_alone_never_reaches_the_papers_size():
    # The estimate is far above 14.71 but the interval's lower bound is not: the verdict
    # does not follow the point (the winner's curse of the old rule).
    contrast = made_contrast(0.35, 0.05, n=40, seed=7)
    table = claims_table([("external-knowledge", contrast)], n_bootstrap=500,
                         n_permutations=200)
    row = table.iloc[0]
    assert row["difference_pp"] > 14.71 and row["low_pp"] < 14.71
    assert row["verdict"] != "size reached"


def test_relative_change_is_relative_to_b_and_undefined_when_b_is_not_positive():
    table = claims_table([("multimodal-fusion", made_contrast(0.6, 0.3, seed=4)),
                          ("multimodal-fusion", made_contrast(0.3, -0.3, seed=5))],
                         n_bootstrap=100, n_permutations=50)
    a, b = table["mcc_a"].iloc[0], table["mcc_b"].iloc[0]
    assert table["relative_pct"].iloc[0] == pytest.approx(100 * (a - b) / b)
    assert table["relative_note"].iloc[0] == "relative to b's MCC"
    assert np.isnan(table["relative_pct"].iloc[1])
    assert "is not positive" in table["relative_note"].iloc[1]


def test_relative_change_is_undefined_when_b_cannot_be_told_from_chance():
    # B's MCC just above 0: a ratio to it reads as hundreds or thousands of percent (the claims
    # page once showed +13,088% for B = 0.003). Below 1/sqrt(n) it is undefined, with the
    # reason; above it, it is computed. (Seed 1 draws B = 0.06 on 100 subjects.)
    n = 100
    rows = [("multimodal-fusion", made_contrast(0.4, 0.0, n=n, seed=1)),
            ("multimodal-fusion", made_contrast(0.6, 0.3, n=n, seed=4))]
    table = claims_table(rows, n_bootstrap=50, n_permutations=20)
    near, clear = table.iloc[0], table.iloc[1]
    assert 0 < near["mcc_b"] < 1 / np.sqrt(n)
    assert np.isnan(near["relative_pct"]) and "below 1/sqrt(n)" in near["relative_note"]
    assert clear["mcc_b"] >= 1 / np.sqrt(n)
    assert clear["relative_pct"] == pytest.approx(
        100 * (clear["mcc_a"] - clear["mcc_b"]) / clear["mcc_b"])


@pytest.mark.parametrize(("low", "high", "paper", "expected", "because"), [
    (15.0, 35.0, 14.71, "size reached", "at or above the paper"),
    (14.71, 30.0, 14.71, "size reached", "at or above"),  # L = P exactly
    (1.0, 15.0, 14.71, "direction shown, size not shown", "holds the paper"),
    (1.0, 14.71, 14.71, "direction shown, size not shown", "holds the paper"),  # H = P
    (1.0, 12.0, 14.71, "direction shown, size excluded", "below the paper"),
    (-5.0, 10.0, 14.71, "no effect shown, size excluded", "holds 0 and lies below"),
    (0.0, 10.0, 14.71, "no effect shown, size excluded", "holds 0"),  # L = 0 is not above 0
    (-5.0, 0.0, 2.80, "no effect shown, size excluded", "holds 0"),  # H = 0: not opposite
    (-5.0, 20.0, 14.71, "inconclusive", "both 0 and the paper"),
    (-15.0, -1.0, 14.71, "opposite direction", "below 0"),
    (1.0, 9.0, None, "direction shown", "no size claimed"),
    (-15.0, -1.0, None, "opposite direction", "below 0"),
    (-5.0, 20.0, None, "inconclusive", "holds 0"),
    (np.nan, np.nan, 14.71, "not estimable", "missing"),
])
def test_every_verdict_branch(low, high, paper, expected, because):
    word, reason = verdict(low, high, paper)
    assert word == expected and because in reason, reason
    assert word in VERDICTS


def test_a_row_whose_arm_predicts_one_class_is_not_estimable():
    good = made_contrast(0.4, 0.2, seed=8)
    flat = Contrast(good.labels, np.full((1, 60), 0.2), np.full((1, 60), 0.3), good.subjects)
    table = claims_table([("external-knowledge", good), ("drug-generalisation", flat)],
                         n_bootstrap=100, n_permutations=50)
    assert table["verdict"].iloc[1] == "not estimable"
    assert "single class" in table["reason"].iloc[1]
    assert verdict(1.0, 2.0, None, "an arm is flat") == ("not estimable", "an arm is flat")


def test_claims_view_shows_not_interpreted_verdicts_and_the_columns_asked_for():
    from types import SimpleNamespace

    table = claims_table([("external-knowledge", made_contrast(0.6, 0.1, seed=1)),
                          ("multimodal-fusion", made_contrast(0.3, 0.3, seed=2))], seed=0)
    single = claims_table([("external-knowledge", Contrast(
        np.tile([0, 1], 10), np.full((1, 20), 0.8), np.tile([0.2, 0.8], 10)[None],
        tuple(range(20)), "fmmtc", "fc"))], seed=0)
    shown = claims_view(table).data
    assert list(shown["verdict"]) == list(table["verdict"])  # no plan: every verdict as is
    quiet = claims_view(pd.concat([table, single], ignore_index=True),
                        SimpleNamespace(meaningful=False, profile="tiny"),
                        {"contrast": "what", "verdict": "verdict"}).data
    assert list(quiet.columns) == ["what", "verdict"]
    assert list(quiet["verdict"]) == [NOT_INTERPRETED, NOT_INTERPRETED, "not estimable"]
    whole = claims_view(single).data.iloc[0]
    assert whole["A − B (points)"] == "not estimable" and whole["p (Holm)"] == "not estimable"
    ax = plot_claims(table, SimpleNamespace(meaningful=False)).axes[0]
    assert {t.get_text() for t in ax.texts} == {NOT_INTERPRETED}


def test_claims_table_refuses_unknown_claims_and_bad_rows():
    row = made_contrast(0.3, 0.2)
    with pytest.raises(ValueError, match="unknown claim 'speed'"):
        claims_table([("speed", row)])
    with pytest.raises(ValueError, match=r"\(claim, contrast\)"):
        claims_table([("external-knowledge",)])
    with pytest.raises(TypeError, match="Contrast"):
        claims_table([("external-knowledge", 0.12)])
    with pytest.raises(ValueError, match="at least one row"):
        claims_table([])
    with pytest.raises(ValueError, match="must be positive"):
        verdict(1.0, 2.0, -3.0)


def example_table() -> pd.DataFrame:
    return table_of([
        ("external knowledge", "fmmtc − fc", 20.0, 5.0, 35.0, 14.71),
        ("multimodal fusion", "fmmtc − ts", 50.0, -30.0, 250.0, 2.80),
        ("drug generalisation", "fmmtc − fc", -80.0, -260.0, -20.0, None),
        ("dataset generalisation", "fmmtc − fc", 0.0, np.nan, np.nan, None),
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
    table = table_of([("external knowledge", "fmmtc − fc", 250.0, -300.0, 300.0, 14.71)])
    ax = plot_claims(table).axes[0]
    (estimate,) = [line for line in ax.lines if line.get_gid() == "estimate"]
    assert estimate.get_xdata()[0] == 200.0


def test_claims_plot_wraps_long_claim_names_and_keeps_the_axes_wide():
    long = "simulated-4e328026b6→simulated-61bbb7dff4: FMM_TC − FC-only"
    table = table_of([("external knowledge", "fmmtc − fc", 20.0, 5.0, 35.0, 14.71),
                      ("dataset generalisation", long, 0.0, -20.0, 20.0, None)])
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
