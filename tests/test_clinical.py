"""Clinical utility: calibration against scikit-learn/SciPy, decision curves, enrichment, trials."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from fmtc.evaluate.clinical import (
    brier_score,
    calibration_intercept_slope,
    cross_fitted_recalibration,
    decision_curve,
    enrichment_curve,
    enrol_all,
    interaction_test,
    logit,
    net_benefit,
    reliability_table,
    subject_probabilities,
    trial_sizes,
    two_arm_sample_size,
)


def _example(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    # True risk is flatter and shifted: slope 0.6, intercept offset +0.3.
    risk = 1 / (1 + np.exp(-(0.3 + 0.6 * logit(p))))
    y = (rng.random(n) < risk).astype(int)
    return y, p


# --------------------------------------------------------------------------- calibration


def test_calibration_slope_and_intercept_match_scikit_learn_and_scipy():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss

    y, p = _example()
    intercept, slope = calibration_intercept_slope(y, p)
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(
        logit(p)[:, None], y)
    assert slope == pytest.approx(fit.coef_[0, 0], rel=1e-5)

    def negative_log_likelihood(a):
        eta = a[0] + logit(p)
        return -np.sum(y * eta - np.logaddexp(0, eta))

    assert intercept == pytest.approx(optimize.minimize(negative_log_likelihood, [0.0]).x[0],
                                      abs=1e-5)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    assert 0.4 < slope < 0.8 and intercept > 0  # the planted miscalibration is found


def test_calibration_matches_statsmodels_glm_when_installed():
    sm = pytest.importorskip("statsmodels.api", reason="statsmodels is an optional check")
    y, p = _example(seed=1)
    intercept, slope = calibration_intercept_slope(y, p)
    s = logit(p)
    slope_fit = sm.GLM(y, sm.add_constant(s), family=sm.families.Binomial()).fit()
    offset_fit = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=s).fit()
    assert slope == pytest.approx(slope_fit.params[1], rel=1e-6)
    assert intercept == pytest.approx(offset_fit.params[0], abs=1e-6)


def test_a_calibrated_model_has_intercept_zero_and_slope_one():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    intercept, slope = calibration_intercept_slope(y, p)
    assert abs(intercept) < 0.05 and abs(slope - 1) < 0.05


def test_reliability_bins_hold_every_subject_with_exact_binomial_intervals():
    y, p = _example(n=103)
    table = reliability_table(y, p, n_bins=5)
    assert table["n"].sum() == 103 and len(table) == 5
    assert (table["mean_predicted"].diff().dropna() > 0).all()
    row = table.iloc[0]
    exact = stats.binomtest(int(round(row["observed"] * row["n"])), int(row["n"])).proportion_ci(
        method="exact")
    assert row["low"] == pytest.approx(exact.low) and row["high"] == pytest.approx(exact.high)


def _predictions(y, p, folds=5, repeats=2, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(repeats):
        fold_of = rng.permutation(np.arange(len(y)) % folds)
        for i in range(len(y)):
            rows.append({"arm": "m", "model": "m", "repeat": r, "fold": int(fold_of[i]),
                         "participant_id": f"s{i:03d}",
                         "probability": float(np.clip(p[i] + 0.01 * r, 0, 1)),
                         "label": int(y[i])})
    return pd.DataFrame(rows)


def test_recalibration_of_a_fold_never_reads_that_folds_labels():
    y, p = _example(n=200)
    predictions = _predictions(y, p)
    for method in ("platt", "isotonic"):
        before = cross_fitted_recalibration(predictions, "m", method)
        changed = predictions.copy()
        fold0 = (changed["repeat"] == 0) & (changed["fold"] == 0)
        changed.loc[fold0, "label"] = 1 - changed.loc[fold0, "label"]  # its own labels flipped
        after = cross_fitted_recalibration(changed, "m", method)
        np.testing.assert_array_equal(before.loc[fold0, "probability"],
                                      after.loc[fold0, "probability"])
        assert not np.array_equal(before.loc[~fold0, "probability"],
                                  after.loc[~fold0, "probability"])
    platt = cross_fitted_recalibration(predictions, "m", "platt")
    pooled = subject_probabilities(platt, "m")
    _, slope = calibration_intercept_slope(pooled["label"], pooled["probability"])
    assert abs(slope - 1) < abs(calibration_intercept_slope(y, p)[1] - 1)  # closer to 1
    with pytest.raises(ValueError, match="unknown recalibration"):
        cross_fitted_recalibration(predictions, "m", "beta")


def test_subject_probabilities_average_the_repeats():
    y, p = _example(n=10)
    frame = subject_probabilities(_predictions(y, p), "m")
    assert len(frame) == 10
    np.testing.assert_allclose(frame["probability"], np.clip(p, 0, 1) + 0.005, atol=1e-9)
    with pytest.raises(ValueError, match="no predictions for arm 'x'"):
        subject_probabilities(_predictions(y, p), "x")


# --------------------------------------------------------------------------- decisions


def test_net_benefit_follows_its_definition():
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.6, 0.1, 0.8])
    # t = 0.5: enrol 0, 2, 4 -> TP 2, FP 1: (2 - 1 * 1) / 5
    assert net_benefit(y, p, np.array([0.5]))[0] == pytest.approx(0.2)
    assert enrol_all(y, np.array([0.5]))[0] == pytest.approx(0.6 - 0.4)
    np.testing.assert_allclose(net_benefit(y, np.ones(5), np.array([0.2, 0.5])),
                               enrol_all(y, np.array([0.2, 0.5])))


def test_sample_size_matches_the_textbook_two_proportion_formula():
    assert two_arm_sample_size(0.5, 0.3) == 93  # 80% power, two-sided 5%
    assert two_arm_sample_size(0.3, 0.5) == 93
    assert two_arm_sample_size(0.5, 0.5) == float("inf")
    assert two_arm_sample_size(0.1 + 0.2, 0.3) == float("inf")  # equal up to rounding
    assert two_arm_sample_size(0.6, 0.3, power=0.9) > two_arm_sample_size(0.6, 0.3)
    with pytest.raises(ValueError, match="response rates"):
        two_arm_sample_size(1.2, 0.3)


def test_trial_sizes_enrol_the_top_fraction_and_count_the_screened():
    frame = pd.DataFrame({"label": [1, 1, 1, 0, 1, 0, 0, 0],
                          "probability": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
                          "drug": ["duloxetine", "placebo"] * 4})
    table = trial_sizes(frame, fractions=(1.0, 0.5)).set_index("fraction")
    assert table.at[1.0, "response_drug"] == 0.75 and table.at[1.0, "response_placebo"] == 0.25
    assert table.at[0.5, "response_drug"] == 1.0 and table.at[0.5, "response_placebo"] == 0.5
    assert table.at[0.5, "screened_per_enrolled"] == 2.0
    assert table.at[0.5, "n_screened"] == 2 * table.at[0.5, "n_per_arm"] / 0.5
    # Assumed population rates, scaled by each arm's enrichment in the cohort.
    assumed = trial_sizes(frame, fractions=(1.0, 0.5),
                          base_rates={"duloxetine": 0.45, "placebo": 0.30}).set_index("fraction")
    assert assumed.at[1.0, "response_drug"] == pytest.approx(0.45)
    assert assumed.at[0.5, "response_drug"] == pytest.approx(min(0.45 * 1.0 / 0.75, 1))
    assert assumed.at[0.5, "response_placebo"] == pytest.approx(0.30 * 0.5 / 0.25)
    assert assumed.at[1.0, "n_per_arm"] == two_arm_sample_size(0.45, 0.30)


def test_interaction_test_tells_a_predictive_marker_from_a_prognostic_one():
    rng = np.random.default_rng(0)
    n = 2000
    s = rng.standard_normal(n)
    drug = rng.random(n) < 0.5
    prognostic = (rng.random(n) < 1 / (1 + np.exp(-1.5 * s))).astype(int)
    predictive = (rng.random(n) < 1 / (1 + np.exp(-1.5 * s * drug))).astype(int)
    p = 1 / (1 + np.exp(-s))
    assert interaction_test(prognostic, p, drug)["p_value"] > 0.01
    found = interaction_test(predictive, p, drug)
    assert found["p_value"] < 1e-6 and found["interaction"] > 1.0
    from sklearn.linear_model import LogisticRegression

    centred = s - s.mean()
    design = np.column_stack([drug, centred, drug * centred])
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(design, predictive)
    assert found["interaction"] == pytest.approx(fit.coef_[0, 2], rel=1e-4)


# --------------------------------------------------------------------------- acceptance


@pytest.fixture(scope="module")
def null_and_planted(sim_atlas, tmp_path_factory):
    """Out-of-fold FC-logistic predictions on a null and on a strong simulated cohort."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.pipeline import evaluate
    from fmtc.plan import SimulationPlan, load_plan
    from fmtc.simulate.generator import simulate_cohort

    folder = tmp_path_factory.mktemp("clinical")
    plan = load_plan("smoke").replace(
        device="cpu", execution={"n_jobs": 1},
        outputs={"runs_dir": str(folder / "runs"), "fits_dir": str(folder / "fits")},
        evaluation={"repeats": 1, "permutations": 10, "bootstrap": 20})
    out = {}
    for name, effect in (("null", 0.0), ("planted", 3.0)):
        settings = replace(SimulationPlan(), n_subjects=60, n_volumes=120, effect_size=effect)
        root = simulate_cohort(folder / name, settings, sim_atlas)
        run = evaluate(plan, ["fc-logreg"], cohort=load_cohort(root), out=folder / f"run-{name}")
        out[name] = subject_probabilities(run.tables["predictions"], "fc-logreg")
    return out


def test_without_a_label_signal_neither_decision_curves_nor_enrichment_show_a_gain(
        null_and_planted):
    frame = null_and_planted["null"]
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
    curve = decision_curve(y, {"fc": p}, n_bootstrap=300, seed=0)
    model = curve[curve["strategy"] == "fc"]
    assert not model["better"].any(), model.loc[model["better"], "threshold"].tolist()
    enrichment = enrichment_curve(y, p, n_bootstrap=300, seed=0).set_index("fraction")
    assert (enrichment["enrichment_low"] <= 1).all()
    assert enrichment.at[0.5, "enrichment_low"] <= 1 <= enrichment.at[0.5, "enrichment_high"]


def test_with_a_strong_planted_effect_both_show_a_gain(null_and_planted):
    frame = null_and_planted["planted"]
    y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
    curve = decision_curve(y, {"fc": p}, n_bootstrap=300, seed=0)
    model = curve[curve["strategy"] == "fc"].set_index("threshold")
    better = model.index[model["better"].astype(bool)]
    assert model.at[0.5, "better"] and better.max() - better.min() >= 0.10  # the verdict rule
    enrichment = enrichment_curve(y, p, n_bootstrap=300, seed=0).set_index("fraction")
    assert enrichment.at[0.5, "enrichment_low"] > 1


# --------------------------------------------------------------------------- simulator


def test_drug_specificity_zero_leaves_the_cohort_byte_identical(sim_atlas, tmp_path):
    from fmtc.lifecycle import Store
    from fmtc.plan import SimulationPlan
    from fmtc.simulate.embedded import SimulatedCohort
    from fmtc.simulate.generator import simulate_cohort

    def key(settings):
        return SimulatedCohort(settings, Store.under(tmp_path)).key

    base = replace(SimulationPlan(), n_subjects=8, n_volumes=40)
    assert key(base) == key(replace(base, drug_specificity=0.0))
    assert key(base) != key(replace(base, drug_specificity=0.5))
    assert "drug_specificity" not in base.identity()
    a = simulate_cohort(tmp_path / "a", base, sim_atlas)
    b = simulate_cohort(tmp_path / "b", replace(base, drug_specificity=0.0), sim_atlas)
    for path in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_drug_specificity_redraws_the_brain_state_of_placebo_subjects_only(sim_atlas, tmp_path):
    import json

    from fmtc.plan import PlanError, SimulationPlan, load_plan
    from fmtc.simulate.generator import simulate_cohort

    settings = replace(SimulationPlan(), n_subjects=40, n_volumes=40, drug_specificity=1.0)
    root = simulate_cohort(tmp_path / "c", settings, sim_atlas)
    truth = json.loads((root / "ground_truth.json").read_text())
    participants = pd.read_csv(root / "participants.tsv", sep="\t").set_index("participant_id")
    state = pd.Series(truth["brain_state"])
    on_drug = participants["Drug"] == "duloxetine"
    assert (state[on_drug.index[on_drug]] == participants.loc[on_drug, "Response"]).all()
    placebo = ~on_drug
    assert (state[placebo.index[placebo]] != participants.loc[placebo, "Response"]).any()
    assert truth["drug_specificity"] == 1.0
    with pytest.raises(PlanError, match="drug_specificity"):
        load_plan("smoke").replace(simulation={"drug_specificity": 1.5})


def test_a_cohort_subset_keeps_order_and_gets_its_own_content_hash(small_cohort):
    from fmtc.cohort.folder import load_cohort

    cohort = load_cohort(small_cohort)
    ids = cohort.subject_ids
    part = cohort.subset([ids[5], ids[1], ids[3]], "drug=placebo")
    assert part.subject_ids == [ids[1], ids[3], ids[5]]
    assert set(part.timeseries) == set(part.subject_ids)
    assert part.content_hash != cohort.content_hash
    assert part.content_hash != cohort.subset([ids[1], ids[3]], "drug=placebo").content_hash
    assert part.content_hash != cohort.subset([ids[1], ids[3], ids[5]], "study=1").content_hash
    with pytest.raises(ValueError, match="no participant"):
        cohort.subset(["sub-999"], "x")


def _inner_runs(predictions, y, p, seed=1):
    """Inner out-of-fold predictions per outer fold: its training subjects, 3 inner folds."""
    rng = np.random.default_rng(seed)
    inner = {}
    for (r, k), _ in predictions.groupby(["repeat", "fold"]):
        train = predictions[(predictions["repeat"] == r) & (predictions["fold"] != k)]
        inner[(int(r), int(k))] = train.assign(
            fold=rng.permutation(np.arange(len(train)) % 3), repeat=0,
            probability=np.clip(train["probability"] + rng.normal(0, 0.02, len(train)), 0, 1))
    return inner


def test_nested_recalibration_reads_nothing_the_target_folds_models_touched():
    from fmtc.evaluate.clinical import nested_recalibration

    y, p = _example(n=200)
    predictions = _predictions(y, p)
    inner = _inner_runs(predictions, y, p)
    fold0 = (predictions["repeat"] == 0) & (predictions["fold"] == 0)
    for method in ("platt", "isotonic"):
        before = nested_recalibration(predictions, inner, "m", method)
        # Other folds' outer predictions come from models trained on fold 0: changing them
        # leaves fold 0's recalibration alone here; the cross-fitted map reads them.
        changed = predictions.copy()
        changed.loc[~fold0, "probability"] = 1 - changed.loc[~fold0, "probability"]
        after = nested_recalibration(changed, inner, "m", method)
        np.testing.assert_array_equal(before.loc[fold0, "probability"],
                                      after.loc[fold0, "probability"])
        crossed = (cross_fitted_recalibration(predictions, "m", method),
                   cross_fitted_recalibration(changed, "m", method))
        assert not np.array_equal(crossed[0].loc[fold0, "probability"],
                                  crossed[1].loc[fold0, "probability"])
    pooled = subject_probabilities(nested_recalibration(predictions, inner, "m", "platt"), "m")
    _, slope = calibration_intercept_slope(pooled["label"], pooled["probability"])
    assert abs(slope - 1) < abs(calibration_intercept_slope(y, p)[1] - 1)
    leaky = dict(inner)
    leaky[(0, 0)] = predictions[predictions["repeat"] == 0]  # holds fold 0's own subjects
    with pytest.raises(ValueError, match="training subjects only"):
        nested_recalibration(predictions, leaky, "m")
    with pytest.raises(ValueError, match="one inner run per outer fold"):
        nested_recalibration(predictions, {}, "m")
