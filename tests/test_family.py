"""Simultaneous inference over a family of paired differences: bounds, Holm, joint resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmtc.evaluate.family import (
    METHODS,
    Contrast,
    contrast_from_predictions,
    family_inference,
    holm,
    simultaneous_bounds,
)
from fmtc.evaluate.metrics import binary_metrics_batch


def null_contrast(rng: np.random.Generator, n: int = 60, repeats: int = 2,
                  subjects: tuple | None = None) -> Contrast:
    """Two exchangeable arms: both predict the label equally well (truth 0)."""
    labels = rng.permutation(np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)])
    signal = 0.5 + 0.25 * (2 * labels - 1)
    probs = [np.clip(signal + rng.normal(0, 0.3, (repeats, n)), 0, 1) for _ in range(2)]
    return Contrast(labels, probs[0], probs[1], subjects or tuple(range(n)))


def test_holm_matches_the_step_down_by_hand():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    assert holm([0.9, 0.8]).max() <= 1.0


def test_weighted_bootstrap_mcc_equals_the_mcc_of_the_resampled_subjects():
    rng = np.random.default_rng(3)
    contrast = null_contrast(rng, n=40, repeats=1)
    table, draws = family_inference([contrast], n_bootstrap=50, n_permutations=0, seed=5,
                                    return_draws=True)
    # Rebuild the first draws' subjects from the same stream and score them the slow way.
    from fmtc.evaluate.family import _stream

    counts = _stream(5, contrast.subjects, 1).multinomial(40, np.full(40, 1 / 40), size=50)
    index = np.repeat(np.arange(40)[None], 50, 0)
    expanded = [np.repeat(index[b], counts[b]) for b in range(50)]
    labels = np.stack([contrast.labels[e] for e in expanded])
    mcc_a = binary_metrics_batch(labels, np.stack([contrast.probs_a[0, e] for e in expanded]))
    mcc_b = binary_metrics_batch(labels, np.stack([contrast.probs_b[0, e] for e in expanded]))
    np.testing.assert_allclose(draws[:, 0], mcc_a["mcc"] - mcc_b["mcc"], atol=1e-12)
    point = binary_metrics_batch(contrast.labels[None], contrast.probs_a)["mcc"][0]
    assert table["value_a"].iloc[0] == pytest.approx(point)


def test_rows_on_the_same_subjects_are_resampled_together_and_others_apart():
    rng = np.random.default_rng(0)
    first, other = null_contrast(rng), null_contrast(rng, subjects=tuple(range(100, 160)))
    _, alone = family_inference([first], n_bootstrap=200, n_permutations=0, return_draws=True)
    _, together = family_inference([first, first, other], n_bootstrap=200, n_permutations=0,
                                   return_draws=True)
    np.testing.assert_array_equal(alone[:, 0], together[:, 0])  # independent of the family
    np.testing.assert_array_equal(together[:, 0], together[:, 1])  # same subjects, same draws
    assert abs(np.corrcoef(together[:, 0], together[:, 2])[0, 1]) < 0.3


def test_max_t_widens_with_the_family_and_mirrors_when_the_arms_swap():
    rng = np.random.default_rng(1)
    rows = [null_contrast(rng, subjects=tuple(range(k * 100, k * 100 + 60))) for k in range(8)]
    one = family_inference(rows[:1], n_bootstrap=1000, n_permutations=0)
    eight = family_inference(rows, n_bootstrap=1000, n_permutations=0)
    assert eight["high"].iloc[0] - eight["low"].iloc[0] > 1.2 * (one["high"] - one["low"]).iloc[0]
    assert eight.attrs["critical"] > 2.4 > one.attrs["critical"]  # ~2.7 for 8 independent rows
    np.testing.assert_allclose(eight[["low_raw", "high_raw"]].iloc[0],
                               one[["low_raw", "high_raw"]].iloc[0])
    swapped = [Contrast(c.labels, c.probs_b, c.probs_a, c.subjects) for c in rows]
    mirrored = family_inference(swapped, n_bootstrap=1000, n_permutations=0)
    np.testing.assert_allclose(mirrored["low"], -eight["high"], atol=1e-12)
    np.testing.assert_allclose(mirrored["high"], -eight["low"], atol=1e-12)


def test_simultaneous_methods_control_the_family_wise_error_where_raw_intervals_do_not():
    # Ten null rows on different subjects, 150 families: the raw 95% intervals exclude 0 in
    # some row of a family far more often than 5%; max-t stays near it. (With 400 resamples
    # the tail quantiles of rectangle and Bonferroni rest on one or two draws per row: they
    # err more often, one reason the claims use max-t.)
    rng = np.random.default_rng(2024)
    errors = {method: 0 for method in METHODS}
    replicates = 150
    for _ in range(replicates):
        rows = [null_contrast(rng, repeats=1, subjects=tuple(range(k * 100, k * 100 + 60)))
                for k in range(10)]
        _, draws = family_inference(rows, method="percentile", n_bootstrap=400,
                                    n_permutations=0, seed=int(rng.integers(1 << 30)),
                                    return_draws=True)
        estimates = np.array([family_inference([r], n_bootstrap=2, n_permutations=0)
                              ["difference"].iloc[0] for r in rows])
        for method in METHODS:
            low, high, _ = simultaneous_bounds(draws, estimates, 0.95, method)
            errors[method] += bool(np.any((low > 0) | (high < 0)))
    rates = {method: count / replicates for method, count in errors.items()}
    assert rates["percentile"] >= 0.3, rates
    assert rates["max-t"] <= 0.10, rates
    assert max(rates["rectangle"], rates["bonferroni"]) < rates["percentile"], rates


def test_a_row_whose_arm_predicts_one_class_is_not_estimable_and_stays_out_of_the_maximum():
    rng = np.random.default_rng(4)
    good = null_contrast(rng)
    flat = Contrast(good.labels, np.full((2, 60), 0.7), good.probs_b, good.subjects)
    table = family_inference([good, flat], n_bootstrap=300, n_permutations=100)
    assert list(table["estimable"]) == [True, False]
    assert "single class" in table["reason"].iloc[1]
    assert np.isnan(table[["difference", "low", "high", "p_value"]].iloc[1]).all()
    alone = family_inference([good], n_bootstrap=300, n_permutations=100)
    assert table.attrs["critical"] == pytest.approx(alone.attrs["critical"])


def test_the_permutation_p_value_finds_a_real_difference_and_holm_adjusts_it():
    rng = np.random.default_rng(5)
    labels = np.tile([0, 1], 40)
    strong = np.clip(0.5 + 0.4 * (2 * labels - 1) + rng.normal(0, 0.1, (1, 80)), 0, 1)
    coin = rng.random((1, 80))
    rows = [Contrast(labels, strong, coin, tuple(range(80))), null_contrast(rng)]
    table = family_inference(rows, n_bootstrap=500, n_permutations=999)
    assert table["p_value"].iloc[0] == pytest.approx(1 / 1000)
    assert table["p_holm"].iloc[0] == pytest.approx(2 / 1000)
    assert table["low"].iloc[0] > 0.5


def test_contrasts_are_checked_and_built_from_a_predictions_table():
    with pytest.raises(ValueError, match="labels must be 0/1"):
        Contrast(np.array([0, 2]), np.ones((1, 2)) / 2, np.ones((1, 2)) / 2, ("a", "b"))
    with pytest.raises(ValueError, match="probabilities"):
        Contrast(np.array([0, 1]), np.array([[0.2, 1.5]]), np.ones((1, 2)) / 2, ("a", "b"))
    with pytest.raises(ValueError, match="subject ids"):
        Contrast(np.array([0, 1]), np.ones((1, 2)) / 2, np.ones((1, 2)) / 2, ("a",))
    predictions = pd.DataFrame({
        "arm": ["x"] * 4 + ["y"] * 4, "repeat": [0, 0, 1, 1] * 2,
        "participant_id": ["s1", "s2"] * 4, "probability": [0.9, 0.1, 0.8, 0.2, 0.4, 0.6, 0.3,
                                                            0.7],
        "label": [1, 0] * 4})
    contrast = contrast_from_predictions(predictions, "x", "y", ["s2", "s1"])
    np.testing.assert_array_equal(contrast.labels, [0, 1])
    np.testing.assert_allclose(contrast.probs_a, [[0.1, 0.9], [0.2, 0.8]])
    with pytest.raises(ValueError, match="at least one"):
        family_inference([])


def _encoder_contrast(rng, encoder_sd: float, n: int = 80, pretrained: int = 3,
                      random_init: int = 5, gain: float = 0.0, units: bool = True):
    """Encoders whose accuracy varies between draws (``encoder_sd``), pretrained ones better
    by ``gain``: each encoder predicts a subject correctly with its own probability."""
    labels = np.tile([0, 1], n // 2)

    def arm(count, shift):
        rows = []
        for _ in range(count):
            accuracy = np.clip(0.65 + shift + encoder_sd * rng.standard_normal(), 0.05, 0.95)
            for _ in range(2):  # two repeats per encoder
                right = rng.random(n) < accuracy
                rows.append(np.where(right, labels, 1 - labels) * 0.8 + 0.1)
        return np.stack(rows)

    probs_a, probs_b = arm(pretrained, gain), arm(random_init, 0.0)
    units_a = np.repeat(np.arange(pretrained), 2) if units else None
    units_b = np.repeat(np.arange(random_init), 2) if units else None
    if not units:  # the same rows, read as repeats of one model
        rows = min(len(probs_a), len(probs_b))
        probs_a, probs_b = probs_a[:rows], probs_b[:rows]
    return Contrast(labels, probs_a, probs_b, tuple(range(n)), "pretrained", "random",
                    units_a, units_b)


def test_encoder_level_intervals_cover_the_encoder_spread_that_subject_resampling_misses():
    # The truth of "pretrained − random-init" is a difference of expected MCC over encoder
    # draws (here 0: the same accuracy distribution). With encoders that vary a lot, intervals
    # that resample subjects only treat the draws at hand as the truth and miss it often.
    misses = {"units": 0, "subjects": 0}
    for replicate in range(60):
        rng = np.random.default_rng([11, replicate])
        with_units = _encoder_contrast(rng, encoder_sd=0.12)
        rows_only = Contrast(with_units.labels, with_units.probs_a[:6], with_units.probs_b[:6],
                             with_units.subjects, "pretrained", "random")
        for name, contrast in (("units", with_units), ("subjects", rows_only)):
            row = family_inference([contrast], n_bootstrap=400, n_permutations=0,
                                   method="percentile", seed=replicate).iloc[0]
            misses[name] += not (row["low"] <= 0.0 <= row["high"])
    assert misses["units"] / 60 <= 0.15
    assert misses["subjects"] / 60 >= 0.3


def test_encoder_level_values_average_encoders_and_the_p_value_permutes_them():
    rng = np.random.default_rng(5)
    contrast = _encoder_contrast(rng, encoder_sd=0.0, gain=0.3)
    row = family_inference([contrast], n_bootstrap=200, n_permutations=100, seed=1).iloc[0]
    rows = contrast.probs_a
    by_encoder = [binary_metrics_batch(np.tile(contrast.labels, (2, 1)), rows[2 * e:2 * e + 2]
                                       )["mcc"].mean() for e in range(3)]
    assert row["value_a"] == pytest.approx(np.mean(by_encoder), abs=1e-9)
    # Every pretrained encoder beats every random one: the most extreme of C(8, 3) = 56 splits
    # (two-sided: it and its mirror image are both as extreme only when sizes match).
    assert row["p_value"] == pytest.approx(1 / 56, abs=1e-9)
    assert row["low"] > 0
    with pytest.raises(ValueError, match="units of both arms"):
        Contrast(contrast.labels, contrast.probs_a, contrast.probs_b, contrast.subjects,
                 units_a=contrast.units_a)
