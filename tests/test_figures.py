"""The book's figures: legible in the book's column, intervals inside each metric's range.

Every public plot function of :mod:`fmtc.report.figures`, :mod:`fmtc.report.claims`,
:mod:`fmtc.report.clinical` and :mod:`fmtc.report.interpretation` is drawn from small
synthetic inputs shaped like the notebooks' (Agg backend, book style) and must keep every
rendered text at least :data:`MIN_PX` pixels tall in a 772-pixel column
(:func:`fmtc.report.figures.smallest_text_px`). The interval plots must keep every drawn
interval, and their axis limits, inside the range of their metric (or of a difference of
two of them), even when the input's intervals run past it.
"""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from tiny_cohorts import load_quietly, write_tiny_cohort  # noqa: E402

from fmtc.evaluate.clinical import decision_curve, enrichment_curve, reliability_table  # noqa: E402
from fmtc.report import clinical, figures, interpretation  # noqa: E402
from fmtc.report.claims import (  # noqa: E402
    PP_RANGE,
    plot_claims,
    plot_generalisation,
    verdict,
)

MIN_PX = 9.0
"""Smallest rendered text height (pixels) a reader of the book's 772-pixel column can read."""

COLUMN_PX = 772

ARMS = ("fmmtc", "fc", "ts", "fc-logreg")
NAMES = {"fmmtc": "FMM_TC", "fc": "FC-only", "ts": "TS-only", "fc-logreg": "FC logistic"}


@pytest.fixture(autouse=True)
def book_style():
    """Draw under the style the notebooks set (:func:`figures.use_book_style`), then close."""
    with matplotlib.rc_context():
        figures.use_book_style()
        yield
    plt.close("all")


# --- synthetic inputs, shaped as the notebooks pass them ------------------------------------


def simulated_tiny_cohort(root):
    """8 subjects x 12 regions (two networks), with a simulated cohort's ground truth."""
    cohort = load_quietly(write_tiny_cohort(root, [90] * 8, regions=12))
    rng = np.random.default_rng(0)
    truth = {"effect_size": 1.0, "fc_edges": [[1, 3], [1, 5], [3, 5]],
             "ts_regions": [2, 4, 6], "ts_network": "B", "trait_networks": ["B", "A"],
             "fc_networks": ["A"],
             "subject_traits": {pid: rng.standard_normal(2).tolist()
                                for pid in cohort.subject_ids}}
    return dataclasses.replace(cohort, ground_truth=truth)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulated_tiny_cohort(tmp_path_factory.mktemp("figures") / "tiny")


@pytest.fixture(scope="module")
def cases(cohort):
    return figure_cases(cohort)


def metrics_frame() -> pd.DataFrame:
    """``metrics.csv``: per arm, selection, repeat and fold (and pooled), every metric."""
    rng = np.random.default_rng(1)
    rows = []
    for arm in ARMS:
        for selection in ("honest", "paper"):
            for repeat in range(2):
                for fold in [*range(5), "pooled"]:
                    for metric in ("mcc", "auc"):
                        value = rng.uniform(-1, 1) if metric == "mcc" else rng.uniform(0, 1)
                        rows.append({"arm": arm, "model": arm, "selection": selection,
                                     "repeat": repeat, "fold": fold, "metric": metric,
                                     "value": value})
    frame = pd.DataFrame(rows)
    frame.loc[0, "value"] = 1.0  # a perfect fold, at the edge of the range
    return frame


def summary_frame() -> pd.DataFrame:
    """``summary.csv`` with 2 repeats: repeat t-intervals far outside each metric's range."""
    rows = []
    for k, arm in enumerate(ARMS):
        for selection in ("honest", "paper"):
            for metric, mean in (("mcc", 0.1 + 0.15 * k), ("auc", 0.55 + 0.1 * k),
                                 ("bacc", 0.5 + 0.1 * k)):
                rows.append({"arm": arm, "model": arm, "selection": selection,
                             "metric": metric, "mean": mean,
                             "repeat_low": mean - 2.5, "repeat_high": mean + 2.5,
                             "bootstrap_low": mean - 0.3, "bootstrap_high": mean + 0.3,
                             "p_value": 0.01 if metric in ("mcc", "auc") else np.nan})
    frame = pd.DataFrame(rows)
    frame.loc[0, ["bootstrap_low", "bootstrap_high"]] = (-1.3, 1.2)  # past the range too
    return frame


def contrasts_frame() -> pd.DataFrame:
    """``contrasts.csv``: paired MCC differences in points, two past [-200, 200]."""
    rows = [("fmmtc", "fc", 20.0, -5.0, 45.0), ("fmmtc", "ts", 60.0, -30.0, 250.0),
            ("fmmtc", "fc-logreg", -150.0, -260.0, -20.0)]
    return pd.DataFrame([{"arm_a": a, "arm_b": b, "selection": "honest", "metric": "mcc",
                          "difference_pp": d, "low_pp": lo, "high_pp": hi, "p_value": 0.05}
                         for a, b, d, lo, hi in rows])


def claims_frame() -> pd.DataFrame:
    rows = []
    for claim, contrast, d, low, high, paper in (
            ("external knowledge", "fmmtc − fc", 20.0, 5.0, 35.0, 14.71),
            ("multimodal fusion", "fmmtc − ts", 50.0, -30.0, 250.0, 2.80),
            ("drug generalisation", "drug A→B: FMM_TC − FC-only", -80.0, -260.0, -20.0, None),
            ("dataset generalisation", "fmmtc − fc", 0.0, np.nan, np.nan, None)):
        word, reason = verdict(low, high, paper)
        rows.append({"claim": claim, "contrast": contrast, "difference_pp": d, "low_pp": low,
                     "high_pp": high, "paper_pp": np.nan if paper is None else paper,
                     "verdict": word, "reason": reason})
    return pd.DataFrame(rows)


def generalisation_frame() -> pd.DataFrame:
    """As notebook 07 builds it: one group per (scheme direction, model), within and cross."""
    rows = []
    for scheme in ("drug: A→B", "drug: B→A", "study: 1→2", "study: 2→1"):
        for model in ("FMM_TC", "FC-only", "TS-only"):
            rows.append({"model": model, "scheme": scheme, "setting": "cross", "mcc": 0.2,
                         "low": -1.4, "high": 1.3})
            rows.append({"model": model, "scheme": scheme, "setting": "within", "mcc": 0.4,
                         "low": np.nan, "high": np.nan})
    return pd.DataFrame(rows)


def sweep_frame() -> pd.DataFrame:
    """:func:`fmtc.pipeline.simulation_sweep`: 3 effect sizes x 2 seeds x 3 arms."""
    rng = np.random.default_rng(2)
    rows = []
    for effect in (0.5, 1.0, 2.0):
        for seed in (0, 1):
            for arm in ("fmmtc", "fc", "fc-logreg"):
                value = rng.uniform(-0.2, 0.8)
                rows.append({"arm": arm, "effect_size": effect, "seed": seed, "value": value,
                             "low": value - 0.9, "high": value + 0.9})
    return pd.DataFrame(rows)


def probe_report() -> dict:
    readouts = ("cls", "mean")
    points = [{"step": step, "mcc": {r: {t: 0.1 * k + 0.05 * j for j, t in enumerate(
        ("label", "trait-1", "trait-2", "trait-3"))} for k, r in enumerate(readouts)}}
        for step in (0, 50, 100, 200)]
    return {"points": points}


def pretraining_log() -> dict:
    return {"epochs": [{"epoch": e, "train_loss": 1.0 / (e + 1), "seconds": 1.0}
                       for e in range(10)],
            "held_out": {"loss": {"trained": 0.21, "random_init": 0.55,
                                  "zero_prediction": 0.62}}}


def clinical_report() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    probabilities = {arm: np.clip(0.5 + (labels - 0.5) * s + rng.normal(0, 0.25, 60), 0.01,
                                  0.99) for arm, s in (("fmmtc", 0.4), ("fc", 0.2))}
    reliability = pd.concat([reliability_table(labels, p).assign(arm=arm, recalibration=method)
                             for arm, p in probabilities.items()
                             for method in ("none", "platt", "isotonic")], ignore_index=True)
    enrichment = pd.concat([enrichment_curve(labels, p, n_bootstrap=50).assign(arm=arm)
                            for arm, p in probabilities.items()], ignore_index=True)
    decision = decision_curve(labels, probabilities, n_bootstrap=50)
    return {"reliability": reliability, "enrichment": enrichment, "decision": decision}


def interpretation_tables(cohort) -> dict[str, pd.DataFrame]:
    """``subjects``, ``regions``, ``networks`` and ``edges`` of an interpretation."""
    rng = np.random.default_rng(4)
    n = 40
    subjects = pd.DataFrame({"arm": "fmmtc", "participant_id": [f"sub-{i:02d}" for i in range(n)],
                             "ts_share": rng.uniform(0, 1, n), "label": rng.integers(0, 2, n),
                             "correct": rng.integers(0, 2, n).astype(bool),
                             "study": rng.choice(["1", "2"], n),
                             "drug": rng.choice(["sertraline", "placebo"], n)})
    table = cohort.regions.reset_index(drop=True)
    regions = pd.concat([table[["index", "name", "network", "x", "y", "z"]].assign(
        arm="fmmtc", modality=modality, score=rng.uniform(0, 1, len(table)),
        planted=table["index"].isin([1, 3, 5])) for modality in ("fc", "ts")],
        ignore_index=True)
    regions["rank"] = regions.groupby("modality")["score"].rank(ascending=False,
                                                                method="first").astype(int)
    networks = pd.DataFrame([{"arm": "fmmtc", "modality": modality, "network": name,
                              "mean": mean, "low": mean - 0.3, "high": mean + 0.3, "n_folds": 5}
                             for modality in ("fc", "ts")
                             for name, mean in (("A", 0.2), ("B", 0.05), ("Visual", 0.4))])
    pairs = [(a, b) for a in range(1, 13) for b in range(a + 1, 13)][:20]
    edges = pd.DataFrame({"arm": "fmmtc", "region_a": [a for a, _ in pairs],
                          "region_b": [b for _, b in pairs],
                          "mean_attribution": rng.normal(0, 1, len(pairs)),
                          "planted": [k < 3 for k in range(len(pairs))]})
    return {"subjects": subjects, "regions": regions, "networks": networks, "edges": edges}


def figure_cases(cohort) -> dict:
    """Name -> a function drawing one figure, as the notebooks call each plot function."""
    tables = interpretation_tables(cohort)
    report = clinical_report()
    reliance = pd.concat([tables["subjects"].assign(cohort=f"{name}\n(MCC {mcc:.2f})")
                          for name, mcc in (("label in FC only", 0.41), ("label in both", 0.52),
                                            ("label in TS only", 0.12))], ignore_index=True)
    truth = cohort.ground_truth
    return {
        "example_timeseries": lambda: figures.plot_example_timeseries(cohort),
        "connectivity_by_group": lambda: figures.plot_connectivity_by_group(cohort),
        "fold_metrics": lambda: figures.plot_fold_metrics(
            metrics_frame().replace({"arm": NAMES}), metric="mcc"),
        "summary_intervals": lambda: figures.plot_summary_intervals(summary_frame(), "mcc",
                                                                    names=NAMES),
        "summary_intervals_auc": lambda: figures.plot_summary_intervals(summary_frame(), "auc",
                                                                        names=NAMES),
        "contrasts": lambda: figures.plot_contrasts(
            contrasts_frame(), names=NAMES, paper={("fmmtc", "fc"): 14.71,
                                                   ("fmmtc", "ts"): 2.80}),
        "trait": lambda: figures.plot_trait(cohort),
        "probe_report": lambda: figures.plot_probe_report(
            probe_report(), targets=("label", "trait-1", "trait-2", "trait-3")),
        "pretraining_loss": lambda: figures.plot_pretraining_loss(pretraining_log()),
        "sweep": lambda: figures.plot_sweep(sweep_frame(), "effect_size", names=NAMES,
                                            arms=["fmmtc", "fc", "fc-logreg"]),
        "claims": lambda: plot_claims(claims_frame()),
        "generalisation": lambda: plot_generalisation(generalisation_frame()),
        "reliability": lambda: clinical.plot_reliability(report["reliability"], NAMES,
                                                         simulated=True),
        "decision_curve": lambda: clinical.plot_decision_curve(report["decision"], NAMES,
                                                               simulated=True),
        "enrichment": lambda: clinical.plot_enrichment(report["enrichment"], NAMES,
                                                       simulated=True),
        "modality_share": lambda: interpretation.plot_modality_share(
            tables["subjects"], "fmmtc", simulated=True),
        "modality_share_cohorts": lambda: interpretation.plot_modality_share(
            reliance, "fmmtc", by=("cohort",), simulated=True),
        "region_markers": lambda: interpretation.plot_region_markers(
            tables["regions"], "fmmtc", "fc", simulated=True),
        "top_edges": lambda: interpretation.plot_top_edges(tables["edges"], tables["regions"],
                                                           "fmmtc", simulated=True),
        "networks": lambda: interpretation.plot_networks(tables["networks"], "fmmtc", truth,
                                                         simulated=True),
    }


# --- helpers ---------------------------------------------------------------------------------


def data_values(ax, axis: str) -> np.ndarray:
    """Every finite ``axis`` ("x" or "y") data coordinate drawn in ``ax``: lines, whiskers,
    bands, bars and markers (artists not in data coordinates, e.g. ``axvline``, are skipped)."""
    k = 0 if axis == "x" else 1
    values = []
    for line in ax.lines:
        if line.get_transform() == ax.transData:
            values.append(np.asarray(line.get_xydata(), dtype=float)[:, k])
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            values += [np.asarray(s, dtype=float)[:, k] for s in collection.get_segments()]
        elif isinstance(collection, PolyCollection):
            values += [np.asarray(p.vertices, dtype=float)[:, k] for p in collection.get_paths()]
        elif collection.get_offset_transform() == ax.transData:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size:
                values.append(offsets[:, k])
    for patch in ax.patches:
        if isinstance(patch, Rectangle) and patch.get_transform() == ax.transData:
            start = patch.get_x() if axis == "x" else patch.get_y()
            size = patch.get_width() if axis == "x" else patch.get_height()
            values.append(np.array([start, start + size]))
    flat = np.concatenate(values + [np.zeros(0)])
    return flat[np.isfinite(flat)]


def assert_inside(ax, axis: str, low: float, high: float) -> None:
    """Every drawn value and the axis limits of ``ax`` lie in ``[low, high]``."""
    values = data_values(ax, axis)
    assert values.size
    assert values.min() >= low - 1e-9 and values.max() <= high + 1e-9, (values.min(),
                                                                         values.max())
    limits = ax.get_xlim() if axis == "x" else ax.get_ylim()
    assert low - 1e-9 <= min(limits) and max(limits) <= high + 1e-9, limits


def by_gid(ax, gid: str) -> list:
    return [a for a in [*ax.collections, *ax.lines] if a.get_gid() == gid]


def overlaps(a, b) -> bool:
    """Two display boxes share more than a pixel each way."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > 1) and (min(a.y1, b.y1) - max(a.y0, b.y0) > 1)


# --- the rule and its measure ----------------------------------------------------------------


def test_use_book_style_sets_a_crisp_dpi_readable_fonts_and_no_figure_warning():
    applied = figures.use_book_style()
    rc = matplotlib.rcParams
    assert rc["figure.dpi"] == rc["savefig.dpi"] == 150 == applied["figure.dpi"]
    assert rc["figure.max_open_warning"] == 0
    for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                "ytick.labelsize", "legend.fontsize", "legend.title_fontsize",
                "figure.titlesize", "figure.labelsize"):
        assert float(rc[key]) >= 8, key


def test_smallest_text_px_follows_the_column_formula():
    fig = plt.figure(figsize=(10, 3), dpi=100)
    fig.text(0.5, 0.5, "eight points", fontsize=8)
    fig.text(0.2, 0.2, "hidden", fontsize=2, visible=False)
    hidden = fig.add_axes((0.1, 0.1, 0.3, 0.3))
    hidden.set_title("in a hidden axes", fontsize=2)
    hidden.set_visible(False)
    # 10 in at 100 dpi is 1000 px, shrunk to 772: 8 pt -> 8 * 100 / 72 * 0.772 px.
    assert figures.smallest_text_px(fig) == pytest.approx(8 * 100 / 72 * 0.772)
    # At 150 dpi the image is wider and shrunk more: the same height in the column.
    assert figures.smallest_text_px(fig, dpi=150) == pytest.approx(8 * 100 / 72 * 0.772)
    narrow = plt.figure(figsize=(4, 3), dpi=150)  # 600 px: not shrunk
    narrow.text(0.1, 0.5, "small", fontsize=8)
    narrow.text(0.1, 0.2, "big", fontsize=12)
    assert figures.smallest_text_px(narrow) == pytest.approx(8 * 150 / 72)
    assert [round(p, 6) for p, _ in figures.text_sizes_px(narrow)] == [
        round(8 * 150 / 72, 6), round(12 * 150 / 72, 6)]
    # A legend beyond the figure widens what bbox_inches="tight" saves, and shrinks it.
    wide = plt.figure(figsize=(5, 3), dpi=150)
    ax = wide.add_subplot()
    ax.plot([0, 1], label="a long legend label " * 4)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    assert figures.smallest_text_px(wide) < 8 * 150 / 72 * 772 / (5 * 150) + 1e-9
    assert figures.smallest_text_px(plt.figure()) == float("inf")


def test_metric_and_difference_ranges():
    assert figures.metric_range("mcc") == (-1.0, 1.0)
    assert figures.metric_range("AUC") == figures.metric_range("bacc") == (0.0, 1.0)
    assert figures.difference_range_pp("mcc") == PP_RANGE == (-200.0, 200.0)
    assert figures.difference_range_pp("auc") == (-100.0, 100.0)
    assert figures.metric_range("loss") == (-np.inf, np.inf)
    assert figures.padded_limits([np.array([-3.0, 0.2]), [0.5]], (-1.0, 1.0))[0] == -1.0
    low, high = figures.padded_limits(np.array([0.2, 0.4]), (-1.0, 1.0))
    assert -1.0 < low < 0.2 and 0.4 < high < 1.0


CASES = ("example_timeseries", "connectivity_by_group", "fold_metrics", "summary_intervals",
         "summary_intervals_auc", "contrasts", "trait", "probe_report", "pretraining_loss",
         "sweep", "claims", "generalisation", "reliability", "decision_curve", "enrichment",
         "modality_share", "modality_share_cohorts", "region_markers", "top_edges", "networks")


def test_the_cases_cover_every_public_plot_function(cases):
    assert set(cases) == set(CASES)
    public = {f"{module.__name__}.{name}" for module in (figures, clinical, interpretation)
              for name in dir(module) if name.startswith("plot_")}
    public |= {"fmtc.report.claims.plot_claims", "fmtc.report.claims.plot_generalisation"}
    drawn = {"fmtc.report.figures.plot_" + n for n in (
        "example_timeseries", "connectivity_by_group", "fold_metrics", "summary_intervals",
        "contrasts", "trait", "probe_report", "pretraining_loss", "sweep")}
    drawn |= {"fmtc.report.claims.plot_claims", "fmtc.report.claims.plot_generalisation"}
    drawn |= {f"fmtc.report.clinical.plot_{n}" for n in ("reliability", "decision_curve",
                                                          "enrichment")}
    drawn |= {f"fmtc.report.interpretation.plot_{n}" for n in (
        "modality_share", "region_markers", "top_edges", "networks")}
    assert public == drawn


@pytest.mark.parametrize("name", CASES)
def test_every_figure_is_legible_in_the_book_column_and_keeps_its_marks_clear(name, cases):
    fig = cases[name]()
    assert fig.get_figwidth() <= figures.MAX_WIDTH_IN + 1e-9
    smallest = figures.smallest_text_px(fig)
    assert smallest >= MIN_PX, (name, figures.text_sizes_px(fig)[:3])
    # No text under 8 points in at most 9 inches: legible at any dpi from 81 up, e.g.
    # matplotlib's default 100 (a notebook that skips use_book_style).
    texts = figures.drawn_texts(fig)
    assert min(t.get_fontsize() for t in texts) >= 8, name
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    legends = [*fig.legends, *(ax.get_legend() for ax in axes if ax.get_legend())]
    for legend in legends:  # outside the data
        box = legend.get_window_extent(renderer)
        for ax in axes:
            assert not overlaps(box, ax.get_window_extent(renderer)), (name, legend)
    marks = [t for t in fig.texts if t.get_gid() == "simulated"]
    if name not in ("fold_metrics", "summary_intervals", "summary_intervals_auc", "contrasts",
                    "pretraining_loss", "sweep", "claims", "generalisation"):
        assert len(marks) == 1, name  # every simulated figure carries the mark
    for mark in marks:  # and it covers nothing
        box = mark.get_window_extent(renderer)
        others = [t.get_window_extent(renderer) for t in texts if t is not mark]
        others += [legend.get_window_extent(renderer) for legend in legends]
        others += [ax.get_window_extent(renderer) for ax in axes]
        assert not any(overlaps(box, other) for other in others), name


# --- intervals inside the range of their metric ----------------------------------------------


@pytest.mark.parametrize("show_repeats", [False, True])
def test_summary_intervals_draw_the_bootstrap_interval_inside_the_mcc_range(show_repeats):
    summary = summary_frame()
    fig = figures.plot_summary_intervals(summary, "mcc", names=NAMES, show_repeats=show_repeats)
    (ax,) = fig.axes
    assert_inside(ax, "x", -1.0, 1.0)
    bootstrap = [s for c in by_gid(ax, "bootstrap") for s in c.get_segments()]
    assert len(bootstrap) == 2 * len(ARMS)
    rows = summary[summary["metric"] == "mcc"]
    expected = np.clip(rows[["bootstrap_low", "bootstrap_high"]].to_numpy(), -1, 1)
    drawn = np.array(sorted(tuple(s[:, 0]) for s in bootstrap))
    np.testing.assert_allclose(drawn, np.array(sorted(map(tuple, expected))))
    repeats = [s for c in by_gid(ax, "repeat") for s in c.get_segments()]
    assert len(repeats) == (2 * len(ARMS) if show_repeats else 0)
    for segment in repeats:  # t-intervals of +-2.5 around the mean: clipped to [-1, 1]
        assert segment[:, 0].tolist() == [-1.0, 1.0]
    means = np.concatenate([line.get_xdata() for line in by_gid(ax, "mean")])
    np.testing.assert_allclose(np.sort(means), np.sort(rows["mean"].to_numpy()))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "honest selection" in labels and any("clipped" in label for label in labels)
    assert any("repeats" in label for label in labels) == show_repeats
    assert "bootstrap" in ax.get_xlabel()


def test_summary_intervals_of_auc_stay_in_zero_one_with_the_chance_line_at_half():
    fig = figures.plot_summary_intervals(summary_frame(), "auc", show_repeats=True)
    (ax,) = fig.axes
    assert_inside(ax, "x", 0.0, 1.0)
    chance = [line for line in ax.lines if line.get_transform() != ax.transData]
    assert [line.get_xdata()[0] for line in chance] == [0.5]


def test_contrasts_stay_in_the_range_of_a_difference_of_two_mccs():
    fig = figures.plot_contrasts(contrasts_frame(), names=NAMES,
                                 paper={("fmmtc", "fc"): 14.71, ("fmmtc", "ts"): 250.0})
    (ax,) = fig.axes
    assert_inside(ax, "x", -200.0, 200.0)
    (intervals,) = by_gid(ax, "interval")
    assert [s[:, 0].tolist() for s in intervals.get_segments()] == [
        [-5.0, 45.0], [-30.0, 200.0], [-200.0, -20.0]]
    (paper,) = by_gid(ax, "paper")
    np.testing.assert_allclose(paper.get_xdata(), [14.71, 200.0, np.nan])
    auc = contrasts_frame().assign(metric="auc")
    assert_inside(figures.plot_contrasts(auc).axes[0], "x", -100.0, 100.0)


def test_claims_and_generalisation_stay_in_range():
    ax = plot_claims(claims_frame()).axes[0]
    assert_inside(ax, "x", *PP_RANGE)
    for ax in plot_generalisation(generalisation_frame()).axes:
        if ax.get_visible():
            assert_inside(ax, "x", -1.0, 1.0)


def test_the_other_interval_plots_stay_in_range(cases):
    assert_inside(cases["fold_metrics"]().axes[0], "x", -1.0, 1.0)
    for ax in cases["sweep"]().axes:
        if ax.get_visible():
            assert_inside(ax, "x", -1.0, 1.0)
    for ax in cases["reliability"]().axes:
        assert_inside(ax, "y", 0.0, 1.0)
    assert_inside(cases["enrichment"]().axes[0], "y", 0.0, 1.0)
    for ax in cases["networks"]().axes:  # a score is a magnitude: intervals start at 0
        assert data_values(ax, "x").min() >= 0 and ax.get_xlim()[0] >= 0


def test_fold_metrics_figure_is_the_same_every_time_with_its_dots_jittered(cases):
    def offsets(fig) -> list[np.ndarray]:
        return [np.asarray(c.get_offsets(), dtype=float) for c in fig.axes[0].collections
                if len(c.get_offsets()) > 1]

    first, second = offsets(cases["fold_metrics"]()), offsets(cases["fold_metrics"]())
    assert first and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    rows = [xy[:, 1] for xy in first]
    assert all(np.ptp(y) > 0 for y in rows)  # jittered off the row's centre line
    assert all(np.ptp(y) <= 0.4 for y in rows)  # within the row's band


def test_figures_and_tables_show_display_names_not_internal_ids():
    assert figures.arm_label("fmmtc") == "FMM_TC"
    assert figures.arm_label("fmmtc-random-init") == "FMM_TC (random-init encoder)"
    assert figures.arm_label("ts", {"ts": "TS"}) == "TS"
    assert figures.arm_label("something-else") == "something-else"
    contrasts = contrasts_frame().assign(arm_a="fmmtc", arm_b="fmmtc-random-init")
    labels = [t.get_text() for t in figures.plot_contrasts(contrasts).axes[0].get_yticklabels()]
    assert labels and all(label == "FMM_TC − FMM_TC (random-init encoder)" for label in labels)
    summary = summary_frame()
    shown = figures.summary_table(summary).reset_index()
    assert set(shown["model"]) <= set(NAMES.values())


def test_degenerate_numbers_read_not_estimable():
    assert figures.estimate_text(0.31, 0.1, 0.5) == "0.31 [0.10, 0.50]"
    assert figures.estimate_text(np.nan, 0.1, 0.5) == figures.NOT_ESTIMABLE
    assert figures.estimate_text(0.0, 0.0, 0.0, metric="mcc").startswith(figures.NOT_ESTIMABLE)
    assert "not estimable" in figures.estimate_text(0.5, 0.5, 0.5, metric="bacc")
    assert figures.estimate_text(-0.001, -0.1, 0.1) == "0.00 [-0.10, 0.10]"
    assert figures.interval_text(0.0, 0.0) == figures.NOT_ESTIMABLE
    assert figures.number_text(np.nan) == figures.NOT_ESTIMABLE
    row = pd.Series({"difference_pp": 0.0, "low_pp": 0.0, "high_pp": 0.0,
                     "verdict": "inconclusive"})
    assert figures.claim_verdict(row) == figures.SAME_PREDICTIONS
    assert figures.claim_verdict(pd.Series({**row, "verdict": "not estimable"})) == "not estimable"
    assert figures.claim_verdict(pd.Series({**row, "low_pp": np.nan})) == figures.NOT_ESTIMABLE
    assert figures.difference_text(pd.Series({**row, "low_pp": np.nan})) == figures.NOT_ESTIMABLE
    shown = figures.claims_verdicts(pd.DataFrame([{**row, "low_pp": -5.0, "high_pp": 5.0},
                                                  {**row, "low_pp": np.nan}]), meaningful=False)
    assert list(shown["verdict"]) == ["not interpreted", "not estimable"]
