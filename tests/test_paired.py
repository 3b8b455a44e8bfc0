"""Paired differences between two arms: bootstrap interval, swap test and tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fmtc.evaluate.metrics import binary_metrics
from fmtc.evaluate.paired import (
    PER_REPEAT_COLUMNS,
    SUMMARY_COLUMNS,
    paired_difference,
    paired_differences,
    per_repeat_differences,
)


def _random_case(seed: int, n: int = 40, repeats: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = np.tile([0, 1], n // 2)
    rng.shuffle(labels)
    return labels, rng.random((repeats, n)), rng.random((repeats, n))


def _reference(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, metric: str,
               n_bootstrap: int, n_permutations: int, seed: int, level: float
               ) -> tuple[np.ndarray, float, float, float]:
    """Slow loop with binary_metrics over the documented random streams."""

    def mean_metric(lab: np.ndarray, probs: np.ndarray) -> float:
        values = np.array([binary_metrics(lab, p)[metric] for p in probs])
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else np.nan

    def diff(lab: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> float:
        return mean_metric(lab, pa) - mean_metric(lab, pb)

    n = len(labels)
    per_repeat = np.array([binary_metrics(labels, a)[metric] - binary_metrics(labels, b)[metric]
                           for a, b in zip(probs_a, probs_b, strict=True)])
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    index = boot_rng.integers(0, n, size=(n_bootstrap, n))
    draws = np.array([diff(labels[i], probs_a[:, i], probs_b[:, i]) for i in index])
    draws = draws[np.isfinite(draws)]
    low, high = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    observed = diff(labels, probs_a, probs_b)
    swap = perm_rng.random((n_permutations, n)) < 0.5
    null = np.array([diff(labels, np.where(s, probs_b, probs_a), np.where(s, probs_a, probs_b))
                     for s in swap])
    p_value = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + n_permutations)
    return per_repeat, float(low), float(high), float(p_value)


def test_identical_arms_give_exact_zero():
    labels, probs, _ = _random_case(0)
    result = paired_difference(labels, probs, probs.copy(), n_bootstrap=200, n_permutations=100)
    assert result.difference == 0.0
    assert np.all(result.per_repeat == 0.0)
    assert result.low == 0.0 and result.high == 0.0
    assert result.p_value == 1.0


def test_perfect_arm_beats_random_arm():
    labels, _, random_probs = _random_case(1)
    perfect = np.tile(labels.astype(float), (3, 1))
    result = paired_difference(labels, perfect, random_probs, n_bootstrap=300,
                               n_permutations=200, seed=3)
    assert result.value_a == 1.0
    assert result.difference > 0.5
    assert 0 < result.low <= result.difference <= result.high
    assert result.p_value < 0.05
    assert result.p_value >= 1 / 201


@pytest.mark.parametrize("metric", ["mcc", "auc", "bacc"])
def test_swapping_arms_mirrors_everything(metric):
    labels, probs_a, probs_b = _random_case(2, n=30)
    probs_a = np.clip(probs_a + 0.15 * (labels - 0.5), 0, 1)  # A somewhat informative
    ab = paired_difference(labels, probs_a, probs_b, metric=metric, n_bootstrap=300,
                           n_permutations=100, seed=5)
    ba = paired_difference(labels, probs_b, probs_a, metric=metric, n_bootstrap=300,
                           n_permutations=100, seed=5)
    assert ab.difference == -ba.difference
    assert np.array_equal(ab.per_repeat, -ba.per_repeat)
    assert ab.low == -ba.high and ab.high == -ba.low
    assert ab.low < ab.high
    assert ab.p_value == ba.p_value


def test_seed_reproducible_and_seed_dependent():
    labels, probs_a, probs_b = _random_case(4)
    kwargs = {"n_bootstrap": 200, "n_permutations": 100}
    first = paired_difference(labels, probs_a, probs_b, seed=11, **kwargs)
    again = paired_difference(labels, probs_a, probs_b, seed=11, chunk=33, **kwargs)
    other = paired_difference(labels, probs_a, probs_b, seed=12, **kwargs)
    assert first.to_dict() == again.to_dict()
    assert (first.low, first.high) != (other.low, other.high)
    assert first.difference == other.difference


@pytest.mark.parametrize("metric", ["mcc", "auc"])
def test_matches_slow_reference_loop(metric):
    # n = 10 with 3 positives: some AUC resamples have one class and must be dropped.
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0])
    rng = np.random.default_rng(7)
    probs_a, probs_b = rng.random((2, 2, len(labels)))
    result = paired_difference(labels, probs_a, probs_b, metric=metric, n_bootstrap=30,
                               n_permutations=20, seed=9, level=0.9, chunk=7)
    per_repeat, low, high, p_value = _reference(labels, probs_a, probs_b, metric, 30, 20, 9, 0.9)
    np.testing.assert_allclose(result.per_repeat, per_repeat, atol=1e-12)
    assert result.difference == pytest.approx(per_repeat.mean(), abs=1e-12)
    assert (result.low, result.high) == pytest.approx((low, high), abs=1e-12)
    assert result.p_value == pytest.approx(p_value, abs=1e-12)


def test_null_pvalues_are_uniform_and_reject_at_their_level():
    # 300 null cases (exchangeable arms): the share of p <= 0.05 is binomial(300, ~0.05), so
    # outside 6-27 (a 0.999 range) the test is not valid; a one-sided or unpaired test, or a
    # p-value without the +1, leaves it. The whole distribution is checked against uniform.
    from scipy.stats import kstest

    pvalues = []
    for seed in range(300):
        labels, probs_a, probs_b = _random_case(100 + seed, n=30, repeats=2)
        pvalues.append(paired_difference(labels, probs_a, probs_b, n_bootstrap=0,
                                         n_permutations=99, seed=seed).p_value)
    pvalues = np.array(pvalues)
    assert 6 <= np.sum(pvalues <= 0.05) <= 27, np.sum(pvalues <= 0.05)
    # MCC ties make the null p-values discrete and slightly conservative, never anti-.
    assert np.mean(pvalues) > 0.45
    assert kstest(pvalues, "uniform").pvalue > 0.001 or np.mean(pvalues <= 0.2) <= 0.2


def test_one_dimensional_input_zero_draws_and_dict():
    labels, probs_a, probs_b = _random_case(5)
    result = paired_difference(labels, probs_a[0], probs_b[0], metric="acc", n_bootstrap=0,
                               n_permutations=0)
    assert result.per_repeat.shape == (1,)
    assert np.isnan(result.low) and np.isnan(result.high) and np.isnan(result.p_value)
    assert result.difference_pp == pytest.approx(100 * result.difference)
    out = result.to_dict()
    assert out["per_repeat"] == [result.difference]
    assert isinstance(out["difference"], float)
    json.dumps(out)


def test_input_validation():
    labels, probs_a, probs_b = _random_case(6, n=10)
    with pytest.raises(ValueError, match=r"\(3, 10\) and \(2, 10\)"):
        paired_difference(labels, probs_a, probs_b[:2])
    with pytest.raises(ValueError, match="repeats, n"):
        paired_difference(labels[:9], probs_a, probs_b)
    with pytest.raises(ValueError, match="0/1"):
        paired_difference(labels * 2, probs_a, probs_b)
    with pytest.raises(ValueError, match="probs_b"):
        paired_difference(labels, probs_a, probs_b + 1)
    with pytest.raises(ValueError, match="unknown metric"):
        paired_difference(labels, probs_a, probs_b, metric="r2")
    with pytest.raises(ValueError, match="level"):
        paired_difference(labels, probs_a, probs_b, level=95)


def _long_table(seed: int = 8, n: int = 24, repeats: int = 2) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    subjects = [f"sub-{i:02d}" for i in range(n)]
    labels = np.tile([0, 1], n // 2)
    rows = []
    for arm, signal in (("base", 0.0), ("fmt", 0.3), ("other", 0.1)):
        for repeat in range(repeats):
            folds = rng.permutation(n) % 3
            probs = np.clip(rng.random(n) + signal * (labels - 0.5), 0, 1)
            rows += [(arm, repeat, int(f), s, float(p), int(y))
                     for s, f, p, y in zip(subjects, folds, probs, labels, strict=True)]
    table = pd.DataFrame(rows, columns=["arm", "repeat", "fold", "participant_id",
                                        "probability", "label"])
    return table.sample(frac=1, random_state=0).reset_index(drop=True), subjects


def test_paired_differences_table_matches_arrays():
    table, subjects = _long_table()
    kwargs = {"n_bootstrap": 100, "n_permutations": 50, "seed": 2}
    both = paired_differences(table, [("fmt", "base"), ("other", "base")], subjects, **kwargs)
    alone = paired_differences(table, [("other", "base")], subjects, **kwargs)
    assert list(both.columns) == list(SUMMARY_COLUMNS)
    assert both.iloc[1].to_dict() == alone.iloc[0].to_dict()
    part = table.set_index("participant_id")
    arrays = {}
    for arm in ("fmt", "base"):
        rows = part[part["arm"] == arm]
        arrays[arm] = np.stack([rows[rows["repeat"] == r]["probability"].reindex(subjects)
                                for r in (0, 1)])
    labels = part[part["arm"] == "base"].groupby(level=0)["label"].first().reindex(subjects)
    direct = paired_difference(labels.to_numpy(), arrays["fmt"], arrays["base"], **kwargs)
    row = both.iloc[0]
    assert (row["n_repeats"], row["n_subjects"]) == (2, 24)
    assert row["difference"] == direct.difference and row["p_value"] == direct.p_value
    assert (row["low_pp"], row["high_pp"]) == (direct.low_pp, direct.high_pp)

    renamed = table.rename(columns={"arm": "model"})
    per_repeat = per_repeat_differences(renamed, [("fmt", "base")], subjects, arm_column="model")
    assert list(per_repeat.columns) == list(PER_REPEAT_COLUMNS)
    assert per_repeat["repeat"].tolist() == [0, 1]
    np.testing.assert_array_equal(per_repeat["difference"], direct.per_repeat)
    assert per_repeat["value_a"].mean() == pytest.approx(direct.value_a)


def test_paired_differences_table_errors():
    table, subjects = _long_table()
    with pytest.raises(ValueError, match="'missing'"):
        paired_differences(table, [("fmt", "missing")], subjects, n_bootstrap=0)
    dropped = table.drop(table[(table["arm"] == "fmt") & (table["repeat"] == 1)].index[:1])
    with pytest.raises(ValueError, match="'fmt' lacks predictions .* repeats \\[1\\]"):
        paired_differences(dropped, [("fmt", "base")], subjects, n_bootstrap=0)
    extra = table[~((table["arm"] == "fmt") & (table["repeat"] == 1))]
    with pytest.raises(ValueError, match="different repeats"):
        per_repeat_differences(extra, [("fmt", "base")], subjects)
    relabelled = table.copy()
    relabelled.loc[relabelled["arm"] == "base", "label"] = 1 - relabelled["label"]
    with pytest.raises(ValueError, match="different labels"):
        paired_differences(relabelled, [("fmt", "base")], subjects, n_bootstrap=0)
    with pytest.raises(ValueError, match="not in subject_ids"):
        paired_differences(table, [("fmt", "base")], subjects[1:], n_bootstrap=0)
