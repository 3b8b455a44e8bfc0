"""The inference calibration: cheap arms, the family's shape, the truth, the method choice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmtc.evaluate import calibration as cal
from fmtc.evaluate.calibration import (
    ROWS,
    CalibrationSettings,
    FeaturePool,
    choose_method,
    family_contrasts,
    kernel_logistic,
    population_truth,
    summarise,
)


def linear_pool(n: int = 200, seed: int = 0, signal: float = 1.0) -> FeaturePool:
    """A pool whose 'fc' features carry the label weakly and 'ts' strongly (no simulator)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    drug = rng.permutation((np.arange(n) // 2) % 2)
    study = np.arange(n) % 2
    fc = rng.standard_normal((n, 300)) + 0.3 * signal * (2 * labels[:, None] - 1) * (
        np.arange(300) < 10)
    ts = rng.standard_normal((n, 40)) + 1.0 * signal * (2 * labels[:, None] - 1) * (
        np.arange(40) < 5)
    kernels = {"fc": cal._kernel(fc.astype(np.float32)), "ts": cal._kernel(ts.astype(np.float32))}
    kernels["fused"] = (kernels["fc"] + kernels["ts"]) / 2
    return FeaturePool(labels, drug, study, kernels)


def test_kernel_logistic_equals_scikit_learns_logistic_regression_on_the_features():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 500))
    y = (x[:, 0] + 0.5 * rng.standard_normal(60) > 0).astype(int)
    kernel = x @ x.T
    train, test = np.arange(40), np.arange(40, 60)
    ours = kernel_logistic(kernel, train, test, y[train], c=0.05)
    reference = LogisticRegression(C=0.05, tol=1e-10, max_iter=10_000).fit(x[train], y[train])
    np.testing.assert_allclose(ours, reference.predict_proba(x[test])[:, 1], atol=1e-5)


def test_the_family_has_the_claims_tables_shape_and_permuting_breaks_the_labels():
    pool = linear_pool()
    settings = CalibrationSettings(n_subjects=40, folds=4, repeats=2, bootstrap=(50,))
    contrasts = family_contrasts(pool, settings, seed=3)
    assert len(contrasts) == len(ROWS) == 11
    cv = [c for c, row in zip(contrasts, ROWS, strict=True) if row[3] == "cv"]
    assert len({c.subjects for c in cv}) == 1 and cv[0].probs_a.shape == (2, 40)
    cross = contrasts[-1]
    assert not set(cross.subjects) & set(cv[0].subjects)  # a fresh cohort
    drug = contrasts[6]
    assert set(drug.subjects) < set(cv[0].subjects) and len(drug.subjects) == 20
    # The cohort is stratified by label and drug, its labels are the pool's; a permuted
    # replicate's labels are the pool's labels of its subjects, shuffled.
    ids = np.array(cv[0].subjects)
    assert np.bincount(2 * pool.labels[ids] + pool.drug[ids]).tolist() == [10, 10, 10, 10]
    np.testing.assert_array_equal(cv[0].labels, pool.labels[ids])
    permuted = family_contrasts(pool, settings, seed=3, permute=True)[0]
    own = pool.labels[np.array(permuted.subjects)]
    assert not np.array_equal(permuted.labels, own)
    np.testing.assert_array_equal(np.sort(permuted.labels), np.sort(own))


def test_the_truth_is_zero_for_exchangeable_arms_and_finds_the_stronger_modality():
    pool = linear_pool(n=400)
    settings = CalibrationSettings(n_subjects=40, folds=4, truth_draws=20)
    truth = population_truth(pool, settings, seed=0)
    exchangeable = truth[truth["row"].str.contains("exchangeable")]
    assert (exchangeable["truth"] == 0).all() and (exchangeable["mc_se"] == 0).all()
    ts_minus_fc = truth.set_index("row").loc["TS − FC (CV)"]
    assert ts_minus_fc["truth"] > 0.3 and 0 < ts_minus_fc["mc_se"] < 0.05
    assert truth["n_train"].tolist() == [30] * 6 + [20] * 4 + [40]
    # Without a signal every truth is 0 within its Monte Carlo error.
    null = population_truth(linear_pool(n=400, signal=0.0), settings, seed=0)
    assert np.all(np.abs(null["truth"]) <= 4 * null["mc_se"] + 0.02), null


def replicate(low: list[float], high: list[float], estimable: bool = True) -> dict:
    k = len(low)
    return {"bounds": {("max-t", 100, 0.95): (np.array(low), np.array(high))},
            "estimable": np.full(k, estimable)}


def test_summarise_counts_joint_coverage_and_family_wise_error():
    truth = pd.DataFrame({"row": ["a", "b"], "truth": [0.5, 0.0]})
    settings = CalibrationSettings(bootstrap=(100,), nominal=(0.95,))
    covering = replicate([0.4, -0.1], [0.6, 0.1])
    missing_one = replicate([0.55, -0.1], [0.6, 0.1])
    summary = summarise([covering, covering, missing_one, covering],
                        [replicate([-0.1, -0.1], [0.1, 0.1]), replicate([0.05, -0.1], [0.2, 0.1])],
                        truth, settings)
    row = summary.iloc[0]
    assert row["coverage"] == 0.75 and row["replicates"] == 4
    assert row["fwe"] == 0.5 and row["null_replicates"] == 2
    assert row["coverage_low"] < 0.75 < row["coverage_high"]
    assert row["width"] == pytest.approx((0.15 * 3 + 0.125) / 4 + 0.0, abs=0.05)


def summary_of(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["method", "bootstrap", "nominal", "coverage",
                                       "coverage_low", "coverage_high", "fwe", "fwe_low",
                                       "width"])


def test_choose_method_takes_the_narrowest_method_that_covers_and_controls_the_error():
    summary = summary_of([
        ("max-t", 500, 0.95, 0.90, 0.87, 0.93, 0.06, 0.04, 0.7),       # under-covers
        ("max-t", 2000, 0.98, 0.955, 0.93, 0.97, 0.04, 0.02, 0.8),
        ("max-t", 2000, 0.99, 0.97, 0.95, 0.98, 0.03, 0.01, 0.9),      # wider
        ("rectangle", 2000, 0.99, 0.96, 0.94, 0.97, 0.07, 0.05, 0.75),  # error too high
        ("percentile", 2000, 0.99, 0.96, 0.94, 0.97, 0.02, 0.01, 0.6),  # never chosen
    ])
    assert choose_method(summary)[:3] == ("max-t", 2000, 0.98)
    high_error = summary_of([("max-t", 500, 0.99, 0.96, 0.94, 0.97, 0.08, 0.06, 0.7),
                             ("bonferroni", 500, 0.99, 0.955, 0.93, 0.97, 0.06, 0.04, 0.7)])
    method, _, _, reason = choose_method(high_error)
    assert method == "bonferroni" and "lowest" in reason
    short = summary_of([("max-t", 500, 0.99, 0.90, 0.87, 0.93, 0.02, 0.01, 0.7),
                        ("bonferroni", 500, 0.99, 0.85, 0.8, 0.9, 0.01, 0.0, 0.6)])
    method, _, _, reason = choose_method(short)
    assert method == "max-t" and "closest" in reason


def test_choose_method_with_several_pools_judges_each_setting_by_its_worst_pool():
    # Pool 1 alone would accept 98% (error 3.8%); pool 2 shows 6.5% at 98%. Pooling the
    # replicates would average the two (5.1%, borderline); the worst pool rejects 98%.
    rows = [(1, "max-t", 2000, 0.98, 0.96, 0.94, 0.97, 0.038, 0.02, 0.80),
            (1, "max-t", 2000, 0.99, 0.97, 0.95, 0.98, 0.020, 0.01, 0.86),
            (2, "max-t", 2000, 0.98, 0.95, 0.93, 0.97, 0.065, 0.04, 0.81),
            (2, "max-t", 2000, 0.99, 0.962, 0.94, 0.98, 0.0425, 0.03, 0.87)]
    summary = pd.DataFrame(rows, columns=["pool", "method", "bootstrap", "nominal", "coverage",
                                          "coverage_low", "coverage_high", "fwe", "fwe_low",
                                          "width"])
    assert choose_method(summary[summary["pool"] == 1])[:3] == ("max-t", 2000, 0.98)
    method, count, nominal, reason = choose_method(summary)
    assert (method, count, nominal) == ("max-t", 2000, 0.99)
    assert "every calibration pool" in reason
    # a coverage short of the level on one pool rejects a setting too
    short = summary.assign(coverage=np.where(summary["pool"] == 2, 0.94, summary["coverage"]))
    assert "closest" in choose_method(short)[3]


def test_the_plans_calibration_is_refused_when_the_pool_is_too_small(tmp_path: Path):
    from fmtc.plan import PlanError, load_plan
    from fmtc.resolve import calibration_settings

    plan = load_plan("tiny")
    settings, pools, fresh = calibration_settings(plan)
    assert {p.n_subjects for p in pools} == {fresh.n_subjects} == {plan.pages.calibration_pool}
    assert (*(p.seed for p in pools), fresh.seed) == tuple(plan.pages.calibration_seeds)
    assert len(pools) >= 2  # the method must hold on more than one population
    assert settings.n_subjects == plan.simulation.n_subjects
    # the claims table's swaps: enough that a Holm-adjusted p of 11 rows can pass
    from fmtc.evaluate.calibration import ROWS
    assert len(ROWS) / (settings.permutations + 1) < 1 - settings.level
    small = plan.replace(pages={"calibration_pool": 3 * plan.simulation.n_subjects})
    with pytest.raises(PlanError, match="pages.calibration_pool"):
        calibration_settings(small)
    with pytest.raises(PlanError, match="calibration_seeds"):
        plan.replace(pages={"calibration_seeds": [4, 4]})
    with pytest.raises(PlanError, match="calibration_seeds"):
        plan.replace(pages={"calibration_seeds": [4, 5, 4]})
    assert dataclasses.asdict(settings)["bootstrap"] == (plan.evaluation.bootstrap, 2000)
