"""Pieces behind the claims pages: auxiliary branch losses, token-order spread, paired cross
differences, reporting effects, simulation sweeps and an encoder shared across sweeps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import TINY_PLAN, synthetic_data

from fmtc.evaluate.generalisation import cross_differences
from fmtc.evaluate.official import reported_metrics, reporting_effects
from fmtc.evaluate.paired import paired_difference
from fmtc.pipeline import encoder_spec, simulation_sweep
from fmtc.plan import PlanError, load_plan
from fmtc.predict.models import ModelConfig, TSOnly
from fmtc.predict.training import ModelInputs, train_fold
from fmtc.represent.encoder import pretraining_cohort_settings, simulated_encoder
from fmtc.represent.features import token_order_spread

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ auxiliary branch losses
def _inputs(data):
    return ModelInputs.from_arrays(data.labels, CPU, cls=data.cls, n_windows=data.n_windows,
                                   fc=data.fc)


def test_aux_weight_trains_each_branch_and_predicts_with_the_fused_head():
    data = synthetic_data(n=24, regions=8)
    inputs = _inputs(data)
    fit, empty = np.arange(24), np.zeros(0, dtype=np.int64)
    config = ModelConfig("fmmtc", cls_dim=8, n_regions=8, pool_size=None)
    plain = train_fold(config, dataclasses.replace(TINY_PLAN.train, aux_weight=0.0), inputs, fit,
                       empty, empty, seed=0, device=CPU)
    aux = train_fold(config, dataclasses.replace(TINY_PLAN.train, aux_weight=1.0), inputs, fit,
                     empty, empty, seed=0, device=CPU)
    # Both start from the same weights (the branch heads are built last); without the
    # auxiliary loss the branch heads never move, with it they are trained.
    torch.manual_seed(0)
    fresh = type(plain.model)(config).state_dict()
    plain_state, aux_state = plain.model.state_dict(), aux.model.state_dict()
    for key in ("ts_aux_head.weight", "fc_aux_head.weight"):
        assert torch.equal(plain_state[key], fresh[key])
        assert not torch.equal(aux_state[key], fresh[key])
    assert not torch.equal(aux_state["head.weight"], plain_state["head.weight"])
    # The logged training loss includes the branch losses (each >= 0, so it is larger early).
    assert aux.train_loss[0] > plain.train_loss[0]
    # Predictions come from the fused head: forward() ignores the branch heads.
    aux.model.eval()
    cls, fc = torch.as_tensor(data.cls[:4, 0], dtype=torch.float32), inputs.fc[:4]
    before = aux.model(cls=cls, fc=fc)
    with torch.no_grad():
        aux.model.ts_aux_head.weight.add_(10.0)
    assert torch.equal(before, aux.model(cls=cls, fc=fc))


def test_aux_weight_leaves_single_branch_models_as_they_were():
    data = synthetic_data(n=12, regions=8)
    config = ModelConfig("ts", cls_dim=8, n_regions=8)
    empty = np.zeros(0, dtype=np.int64)
    logs = [train_fold(config, dataclasses.replace(TINY_PLAN.train, aux_weight=weight),
                       _inputs(data), np.arange(12), empty, empty, seed=0, device=CPU)
            for weight in (0.0, 0.5)]
    assert logs[0].train_loss == logs[1].train_loss
    assert not hasattr(TSOnly(config), "branch_logits")


def test_aux_weight_must_not_be_negative():
    with pytest.raises(PlanError, match="train.aux_weight"):
        load_plan("smoke", overrides={"train": {"aux_weight": -1.0}})


# ------------------------------------------------------------------------ token-order spread
def test_token_order_spread_is_zero_when_the_order_does_not_matter_and_grows_with_noise():
    rng = np.random.default_rng(0)
    subjects = rng.standard_normal((20, 1, 1, 5))
    same = np.repeat(np.repeat(subjects, 3, axis=1), 4, axis=2)  # (N, W=3, S=4, F=5)
    n_windows = np.full(20, 3)
    flat = token_order_spread(same, n_windows)
    assert flat["shuffle_to_subject_variance"] == pytest.approx(0.0, abs=1e-12)
    assert flat["draw_correlation"] == pytest.approx(1.0)
    noisy = same + rng.standard_normal(same.shape)  # order noise as large as subjects' spread
    found = token_order_spread(noisy, n_windows)
    assert 0.5 < found["shuffle_to_subject_variance"] < 2.0
    assert found["draw_correlation"] < 0.9
    assert found["n_orders"] == 4


def test_token_order_spread_ignores_padding_windows_and_needs_two_orders():
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((10, 3, 4, 2))
    padded = draws.copy()
    padded[:, 2] = np.nan
    a = token_order_spread(padded, np.full(10, 2))
    b = token_order_spread(draws[:, :2], np.full(10, 2))
    assert a == pytest.approx(b)
    with pytest.raises(ValueError, match="at least 2 orders"):
        token_order_spread(draws[:, :, :1], np.full(10, 3))


# ------------------------------------------------------------------- paired cross differences
def _cross_predictions(rng, n=40):
    labels = rng.permutation(np.arange(n) % 2)
    good = np.clip(labels * 0.6 + 0.2 + 0.1 * rng.standard_normal(n), 0, 1)
    bad = rng.uniform(size=n)
    rows = []
    for arm, probs in (("fmmtc", good), ("fc", bad)):
        order = rng.permutation(n)  # arms listed in different subject orders
        rows += [{"arm": arm, "model": arm, "scheme": "drug", "train_on": "placebo",
                  "test_on": "duloxetine", "participant_id": f"sub-{i:02d}",
                  "probability": float(probs[i]), "label": int(labels[i])} for i in order]
    return pd.DataFrame(rows), labels, good, bad


def test_cross_differences_pair_subjects_by_id_and_match_paired_difference():
    frame, labels, good, bad = _cross_predictions(np.random.default_rng(2))
    table = cross_differences(frame, [("fmmtc", "fc")], n_bootstrap=200, n_permutations=200,
                              seed=3)
    expected = paired_difference(labels, good, bad, n_bootstrap=200, n_permutations=200, seed=3)
    (row,) = table.to_dict("records")
    assert row["difference"] == pytest.approx(expected.difference)
    assert (row["low"], row["high"]) == pytest.approx((expected.low, expected.high))
    assert row["p_value"] == pytest.approx(expected.p_value)
    assert row["low"] > 0 and row["n_test"] == 40


def test_cross_differences_refuse_unpaired_subjects_and_missing_arms():
    frame, *_ = _cross_predictions(np.random.default_rng(4))
    with pytest.raises(ValueError, match="different subjects"):
        cross_differences(frame.drop(index=0), [("fmmtc", "fc")], n_bootstrap=0,
                          n_permutations=0)
    with pytest.raises(ValueError, match="no predictions of arm 'ts'"):
        cross_differences(frame, [("fmmtc", "ts")], n_bootstrap=0, n_permutations=0)


# ----------------------------------------------------------------------- reporting effects
def _run_predictions(rng, repeats=2, folds=4, n=40):
    tables = {}
    labels = rng.permutation(np.arange(n) % 2)
    for selection, signal in (("honest", 0.3), ("paper", 0.5)):
        rows = []
        for repeat in range(repeats):
            fold_of = rng.permutation(np.arange(n) % folds)
            probs = np.clip(0.5 + signal * (labels - 0.5) + 0.25 * rng.standard_normal(n),
                            0.001, 0.999)
            logits = np.log(probs / (1 - probs)) * rng.uniform(0.5, 2.0, n)
            rows += [{"arm": "honest", "repeat": repeat, "fold": int(fold_of[i]),
                      "participant_id": f"sub-{i:02d}", "probability": probs[i],
                      "label": int(labels[i]), "logit_0": 0.0, "logit_1": logits[i]}
                     for i in range(n)]
        tables[selection] = pd.DataFrame(rows)
    return tables


def test_reporting_effects_match_the_readings_they_compare():
    tables = _run_predictions(np.random.default_rng(5))
    effects = reporting_effects(tables, "honest", n_bootstrap=100, seed=0).set_index("switch")
    pooled = reported_metrics(tables["honest"]).set_index("arm").at["honest", "mcc"]
    fold_mean = reported_metrics(tables["honest"], report="fold_mean").set_index("arm")
    paper = reported_metrics(tables["paper"]).set_index("arm").at["honest", "mcc"]
    assert effects.at["report: fold_mean", "difference"] == pytest.approx(
        fold_mean.at["honest", "mcc"] - pooled)
    assert effects.at["selection: paper", "difference"] == pytest.approx(paper - pooled)
    on_logit = reported_metrics(tables["honest"], auc="on_logit").set_index("arm")
    on_probability = reported_metrics(tables["honest"]).set_index("arm")
    assert effects.at["auc: on_logit", "difference"] == pytest.approx(
        on_logit.at["honest", "auc"] - on_probability.at["honest", "auc"])
    for _, row in effects.iterrows():
        assert row["low"] <= row["difference"] <= row["high"]


# ------------------------------------------------------------------ sweeps and the encoder
def test_the_simulated_encoder_does_not_depend_on_the_labelled_cohorts_effects():
    plan = load_plan("smoke")
    swept = plan.replace(simulation={"seed": 41, "effect_size": 3.0, "ts_effect": 0.0,
                                     "study_shift": 1.0, "responder_fraction": 0.3})
    assert (simulated_encoder(encoder_spec(swept)).key
            == simulated_encoder(encoder_spec(plan)).key)
    assert pretraining_cohort_settings(encoder_spec(swept)).seed == plan.pretrain.seed
    assert encoder_spec(swept).probe.effect_size == 1.0
    longer = plan.replace(simulation={"n_volumes": 400})  # acquisition settings do count
    assert encoder_spec(longer).probe.n_volumes == 400


def test_simulation_sweep_runs_one_cohort_per_setting(tmp_path):
    plan = TINY_PLAN.replace(
        simulation={"n_subjects": 16, "n_volumes": 200},
        outputs={k: str(tmp_path / k) for k in ("data_dir", "cohorts_dir", "features_dir",
                                               "models_dir", "fits_dir", "runs_dir",
                                               "book_dir")},
        experiments={"fc-only": {"arms": {"fc-logreg": {"model": "fc-logreg"}}}})
    sweep = simulation_sweep(plan, "fc-only", [{"seed": 1, "effect_size": 3.0},
                                               {"seed": 1, "effect_size": 0.0}])
    assert list(sweep["effect_size"]) == [3.0, 0.0]
    assert (sweep["low"] <= sweep["value"]).all() and (sweep["value"] <= sweep["high"]).all()
    assert sweep["run"].nunique() == 2
    again = simulation_sweep(plan, "fc-only", [{"seed": 1, "effect_size": 3.0}])
    assert again["value"].iloc[0] == sweep["value"].iloc[0]
    with pytest.raises(PlanError, match="unknown simulation key"):
        simulation_sweep(plan, "fc-only", [{"sed": 1}])
    with pytest.raises(PlanError, match="needs data.cohort: simulated"):
        simulation_sweep(plan.replace(data={"cohort": str(tmp_path)}), "fc-only", [{}])


def test_knowledge_control_keeps_the_ts_arms_and_switches_the_temporal_effect_off():
    from fmtc.pipeline import knowledge_control

    plan = load_plan("quick")
    control = knowledge_control(plan, 0.0)
    experiment = control.experiments["external-knowledge-control"]
    assert control.simulation.ts_effect == 0.0
    assert control.simulation.fc_effect == plan.simulation.fc_effect
    assert {arm.model for arm in experiment.arms.values()} == {"ts", "cls-logreg"}
    assert all(arm.encoder == "random-init" for name, arm in experiment.arms.items()
               if name.endswith("random-init"))
    assert [tuple(c) for c in experiment.contrasts] == [
        ("ts", "ts-random-init"), ("cls-logreg", "cls-logreg-random-init")]
