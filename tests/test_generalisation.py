"""Studies, covariates and generalisation: the simulator's site shift, covariates-logreg,
drug / study / cross-cohort splits and the study-predictability confounds check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmtc.cohort.folder import load_cohort
from fmtc.cohort.participants import covariate_design
from fmtc.errors import InvalidDataError
from fmtc.evaluate.generalisation import (
    combine_cohorts,
    cross_cohort,
    drug_jobs,
    generalise,
    study_jobs,
    study_predictability,
)
from fmtc.evaluate.protocol import cross_validate
from fmtc.plan import EvaluationPlan, PlanError, SimulationPlan, load_plan
from fmtc.predict.data import ExperimentData
from fmtc.simulate.generator import simulate_cohort

# sha256 of a small cohort's series, sidecars and version-3 participants columns, computed
# with the code before the study shift existed (commit 2108b47, PYTHONPATH=/work/main).
V3_DIGESTS = {
    (6, 60, 1): "5091f6256d1d2ec09450f5d810758e7df4203f7b32d39fd85cb0b784317e9d6d",
    "unlabelled": "8c75fac1ac5b4951e01a093e79d4a402c773f365da1a7790963ba7b2cdfd0b12",
}
V3_COLUMNS = ("participant_id", "type", "study", "gender", "Age", "Drug", "Response")
EVAL = EvaluationPlan(folds=3, repeats=1, bootstrap=200)
pytestmark = pytest.mark.filterwarnings(r"ignore:.*volumes \(< 200\)")


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("sub-*/func/*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    table = pd.read_csv(Path(folder) / "participants.tsv", sep="\t")
    for column in V3_COLUMNS:
        if column in table:
            digest.update(column.encode())
            digest.update("|".join(map(str, table[column])).encode())
    return digest.hexdigest()


def _plan(tmp_path: Path, **simulation):
    return load_plan("smoke", overrides={
        "outputs": {"data_dir": str(tmp_path / "data"), "cohorts_dir": str(tmp_path / "cohorts"),
                    "runs_dir": str(tmp_path / "runs"), "fits_dir": str(tmp_path / "fits")},
        "simulation": simulation, "evaluation": {"folds": 3, "repeats": 1, "bootstrap": 200},
        "execution": {"n_jobs": 1}, "device": "cpu"})


def _data(cohort, models, plan):
    from fmtc.pipeline import gather_datasets, resolve_arms
    from fmtc.plan import ArmPlan

    arms, requests = resolve_arms(plan, {m: ArmPlan(model=m) for m in models}, None)
    return arms, gather_datasets(cohort, requests)


# --------------------------------------------------------------------------- simulator


def test_study_shift_off_is_bit_identical_to_generator_v3(tmp_path, sim_atlas):
    settings = SimulationPlan(n_subjects=6, n_volumes=60, seed=1)
    assert settings.study_shift == 0 and settings.n_studies == 2
    out = simulate_cohort(tmp_path / "c", settings, sim_atlas)
    assert _digest(out) == V3_DIGESTS[(6, 60, 1)]
    unlabelled = simulate_cohort(tmp_path / "u", SimulationPlan(n_subjects=4, n_volumes=40,
                                                                seed=2), sim_atlas,
                                 unlabelled=True)
    assert _digest(unlabelled) == V3_DIGESTS["unlabelled"]
    table = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(table.columns) == [*V3_COLUMNS, "mean_fd"]  # only mean_fd is new
    assert table["study"].tolist() == [1, 2, 1, 2, 1, 2] and (table["mean_fd"] > 0).all()
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["studies"]["study_shift"] == 0
    assert {s["global_share"] for s in truth["studies"]["studies"].values()} == {0.1}


def _mean_offdiagonal_and_lag1(series: np.ndarray) -> tuple[float, float]:
    z = (series - series.mean(0)) / series.std(0)
    corr = z.T @ z / len(z)
    off = corr[~np.eye(len(corr), dtype=bool)].mean()
    lag1 = np.mean(z[1:] * z[:-1])
    return float(off), float(lag1)


def test_study_shift_changes_noise_global_signal_motion_and_prevalence(tmp_path, sim_atlas):
    settings = SimulationPlan(n_subjects=24, n_volumes=60, seed=4, effect_size=0.0,
                              study_shift=1.0)
    cohort = load_cohort(simulate_cohort(tmp_path / "s", settings, sim_atlas))
    profile = cohort.ground_truth["studies"]["studies"]
    assert profile["1"]["extra_noise_sd"] == 0 and profile["2"]["extra_noise_sd"] == 0.5
    assert profile["1"]["global_share"] == pytest.approx(0.1)
    assert profile["2"]["global_share"] == pytest.approx(0.3)
    assert (profile["1"]["responder_fraction"], profile["2"]["responder_fraction"]) == (0.25, 0.75)
    table = cohort.participants
    by_study = table.groupby("study")
    assert by_study["Response"].sum().tolist() == [3, 9]  # 12 subjects each, 25% vs 75%
    assert by_study["mean_fd"].median()[2] > by_study["mean_fd"].median()[1]
    measures = pd.DataFrame([_mean_offdiagonal_and_lag1(cohort.timeseries[s])
                             for s in cohort.subject_ids], columns=["off", "lag1"],
                            index=table.index)
    means = measures.groupby(table["study"]).mean()
    assert means.loc[2, "off"] > means.loc[1, "off"] + 0.05  # stronger global signal


def test_study_noise_and_global_signal_enter_a_subject_as_set(sim_atlas):
    from fmtc.simulate.generator import _Population, plant_truth

    settings = SimulationPlan(n_volumes=400, seed=2)
    population = _Population(sim_atlas.regions.reset_index(drop=True),
                             plant_truth(sim_atlas, 2), settings)

    def signal(**site):  # the same subject (same stream), in units of the unit-variance signal
        series, _ = population.subject(np.random.default_rng(11), True, True, **site)
        return (series / population.baseline - 1.0) / 0.02

    base = signal()
    noisy = signal(extra_noise=(np.random.default_rng(12), 0.5))
    assert np.std(noisy - base) == pytest.approx(0.5, rel=0.01)
    assert np.array_equal(signal(global_share=0.1), base)

    def global_share(x):
        return float(np.var(x.mean(axis=1)) / np.var(x, axis=0).mean())

    assert global_share(signal(global_share=0.3)) > global_share(base) + 0.1


def test_simulation_plan_checks_new_keys():
    with pytest.raises(PlanError, match="simulation.study_shift"):
        load_plan("smoke", overrides={"simulation": {"study_shift": -1}})
    with pytest.raises(PlanError, match="simulation.n_studies"):
        load_plan("smoke", overrides={"simulation": {"n_studies": 40}})


# --------------------------------------------------------------------------- splits


def test_drug_split_never_tests_on_the_training_arm():
    rng = np.random.default_rng(0)
    drug = np.array(["duloxetine", "placebo"] * 15)
    labels = rng.permutation(np.r_[np.ones(15, int), np.zeros(15, int)])
    jobs = drug_jobs(drug, labels, EVAL, seed=0)
    cross = [j for j in jobs if j.kind == "cross"]
    assert {(j.train_on, j.test_on) for j in cross} == {("duloxetine", "placebo"),
                                                         ("placebo", "duloxetine")}
    for job in cross:
        (split,) = job.splits
        assert set(drug[split.train]) == {job.train_on} and set(drug[split.test]) == {job.test_on}
    within = [j for j in jobs if j.kind == "within"]
    assert {j.train_on for j in within} == {"duloxetine", "placebo"}
    for job in within:
        members = np.flatnonzero(drug == job.train_on)
        tested = np.concatenate([s.test for s in job.splits])
        assert sorted(tested) == sorted(members)  # within-arm CV stays inside the arm
        assert all(set(drug[s.train]) == {job.train_on} for s in job.splits)


def test_leave_one_study_out_tests_each_study_once():
    study = np.tile([1, 2, 3], 12)
    labels = np.tile([0, 1], 18)
    cross = [j for j in study_jobs(study, labels, EVAL, seed=0) if j.kind == "cross"]
    assert sorted(j.test_on for j in cross) == ["1", "2", "3"]
    tested = np.concatenate([j.splits[0].test for j in cross])
    assert sorted(tested) == list(range(len(study)))  # every subject tested exactly once
    for job in cross:
        split = job.splits[0]
        assert not set(study[split.train]) & set(study[split.test])


def test_cross_cohort_refuses_mismatched_feature_shapes():
    a = ExperimentData(["s1", "s2"], np.array([0, 1]), fc=np.zeros((2, 10, 10)))
    b = ExperimentData(["t1", "t2"], np.array([0, 1]), fc=np.zeros((2, 12, 12)))
    with pytest.raises(ValueError, match=r"'fc' features have per-subject shape \(10, 10\) in "
                                         r"cohort 'A' but \(12, 12\) in cohort 'B'"):
        combine_cohorts(a, b)
    c = ExperimentData(["t1", "t2"], np.array([0, 1]))
    with pytest.raises(ValueError, match="present in cohort 'A' only"):
        combine_cohorts(a, c)


# --------------------------------------------------------------------------- covariates


def test_covariates_logreg_finds_a_planted_covariate_label_link(tmp_path, sim_atlas):
    plan = _plan(tmp_path)
    results = {}
    for effect in (0.0, 2.5):
        settings = SimulationPlan(n_subjects=40, n_volumes=20, seed=6, covariate_effect=effect)
        cohort = load_cohort(simulate_cohort(tmp_path / f"c{effect}", settings, sim_atlas))
        arms, datasets = _data(cohort, ["covariates-logreg"], plan)
        (data,) = datasets.values()
        assert data.covariate_names == ["study=1", "study=2", "drug=duloxetine", "drug=placebo",
                                        "age", "sex=female", "sex=male", "mean_fd"]
        result = cross_validate(datasets, arms, EvaluationPlan(folds=5, repeats=1), seed=0)
        pooled = result.metrics.query("fold == 'pooled' and metric == 'mcc'")["value"]
        results[effect] = pooled.mean()
    assert results[2.5] > 0.5
    assert results[0.0] < 0.3  # one-sided: a below-chance CV MCC is a small-sample artefact


def test_covariates_error_names_the_cohort(tmp_path):
    from tests.tiny_cohorts import load_quietly, write_tiny_cohort

    cohort = load_quietly(write_tiny_cohort(tmp_path / "tiny", [40] * 6))
    with pytest.raises(InvalidDataError, match=r"cohort .*tiny: participants.tsv has no "
                                               "covariate column"):
        _data(cohort, ["covariates-logreg"], _plan(tmp_path))
    values, names = covariate_design(pd.DataFrame({"Age": [30, None, 50],
                                                   "gender": ["f", "m", None]}))
    assert names == ["age", "sex=f", "sex=m", "sex=n/a"]
    assert values[1, 0] == 40  # the median fills a missing age


# --------------------------------------------------------------------------- confounds


def test_study_predictability_high_with_a_planted_shift_and_chance_without(tmp_path, sim_atlas):
    from fmtc.preprocess.transforms import fc_pearson, upper_triangle

    found = {}
    for shift in (0.0, 1.5):
        settings = SimulationPlan(n_subjects=30, n_volumes=60, seed=8, study_shift=shift)
        cohort = load_cohort(simulate_cohort(tmp_path / f"s{shift}", settings, sim_atlas))
        fc = upper_triangle(np.stack([fc_pearson(cohort.timeseries[s])
                                      for s in cohort.subject_ids]))
        found[shift] = study_predictability(fc, cohort.participants["study"], seed=0)
    assert found[1.5]["balanced_accuracy"] > 0.85 and found[1.5]["mcc"] > 0.7
    assert abs(found[0.0]["balanced_accuracy"] - 0.5) < 0.25
    assert found[0.0]["chance"] == 0.5 and found[0.0]["n_features"] == fc.shape[1]


def test_study_predictability_on_synthetic_features():
    rng = np.random.default_rng(1)
    study = np.repeat([1, 2, 3], 15)
    null = study_predictability(rng.standard_normal((45, 20)), study, seed=0)
    shifted = rng.standard_normal((45, 20)) + 2.0 * (study[:, None] == np.arange(1, 4)).repeat(
        7, axis=1)[:, :20]
    assert study_predictability(shifted, study, seed=0)["balanced_accuracy"] > 0.9
    assert null["balanced_accuracy"] < 0.6 and null["n_studies"] == 3


# --------------------------------------------------------------------------- end to end


def test_generalise_and_cross_cohort_tables(tmp_path, sim_atlas):
    plan = _plan(tmp_path)
    cohorts = [load_cohort(simulate_cohort(tmp_path / f"k{seed}", SimulationPlan(
        n_subjects=32, n_volumes=20, seed=seed, covariate_effect=2.0), sim_atlas))
        for seed in (1, 2)]
    arms, datasets = _data(cohorts[0], ["covariates-logreg"], plan)
    _, other = _data(cohorts[1], ["covariates-logreg"], plan)
    participants = cohorts[0].participants
    table = generalise(datasets, arms, {"drug": participants["Drug"],
                                        "study": participants["study"]}, EVAL, seed=0)
    cross = table[table["kind"] == "cross"]
    assert len(cross) == 4 and len(table[table["kind"] == "within"]) == 4
    assert set(cross["test_on"]) == {"duloxetine", "placebo", "1", "2"}
    assert (cross["n_test"] == 16).all()
    assert np.allclose(cross["drop_mcc"], cross["within_mcc"] - cross["mcc"])
    assert (cross["mcc_low"] <= cross["mcc"]).all() and (cross["mcc"] <= cross["mcc_high"]).all()
    assert (cross["auc"] > 0.7).all()  # the planted motion-label link transfers

    result = cross_cohort(datasets, other, arms, EVAL, seed=0, names=("k1", "k2"))
    row = result[result["kind"] == "cross"].iloc[0]
    assert (row["train_on"], row["test_on"], row["n_train"], row["n_test"]) == ("k1", "k2",
                                                                                32, 32)
    assert np.isfinite(row["within_mcc"]) and row["auc"] > 0.7


def test_cross_cohort_torch_model_uses_the_last_epoch(tmp_path, one_thread):
    from fmtc.evaluate.protocol import Arm
    from fmtc.plan import TrainPlan
    from fmtc.predict.data import cohort_connectivity
    from fmtc.predict.registry import ModelContext
    from tests.tiny_cohorts import load_quietly, write_tiny_cohort

    data = []
    for seed in (0, 1):
        cohort = load_quietly(write_tiny_cohort(tmp_path / f"t{seed}", [40] * 12, seed=seed))
        data.append(ExperimentData(cohort.subject_ids, cohort.labels,
                                   fc=cohort_connectivity(cohort, "pearson")))
    arm = Arm("fc", "fc", TrainPlan(epochs=2, batch_size=4), ModelContext(pool_size=None))
    table = cross_cohort(data[0], data[1], [arm], EVAL, seed=0, within=False)
    assert len(table) == 1 and table["n_test"].iloc[0] == 12
    assert np.isfinite(table["mcc"].iloc[0])
    assert table["epoch"].iloc[0] == 1  # the last of 2 epochs (0-based): no test-set choice


def test_run_generalisation_writes_a_run_and_reads_it_back(tmp_path):
    from fmtc.pipeline import run_generalisation

    plan = _plan(tmp_path, n_subjects=32, n_volumes=60, seed=3, study_shift=1.0).replace(
        evaluation={"folds": 2}, logistic={"c_grid": [0.1], "inner_folds": 2})
    run = run_generalisation(plan, ["covariates-logreg", "fc-logreg"],
                             ["drug", "study", "cross-cohort"],
                             test_simulation={"seed": 5})
    assert set(run.table["scheme"]) == {"drug", "study", "cross-cohort"}
    assert len(run.table) == 2 * (4 + 4 + 2)  # per arm: drug, study (2 cross + 2 within), A->B
    assert set(run.table["arm"]) == {"covariates-logreg", "fc-logreg"}
    assert (run.run_dir / "generalisation.csv").is_file()
    assert run.confounds["features"].tolist() == ["fc"]
    assert run.confounds["balanced_accuracy"].iloc[0] > 0.8  # the planted site shows in FC
    provenance = json.loads((run.run_dir / "provenance.json").read_text())
    assert provenance["test_cohort"]["simulation_changes"] == {"seed": 5}
    again = run_generalisation(plan, ["covariates-logreg", "fc-logreg"],
                               ["drug", "study", "cross-cohort"], test_simulation={"seed": 5})
    assert again.reused and again.key == run.key
    pd.testing.assert_frame_equal(again.table, run.table, check_dtype=False, atol=1e-5)
    with pytest.raises(PlanError, match="needs a test cohort"):
        run_generalisation(plan, ["fc-logreg"], ["cross-cohort"])


def test_cli_generalise_refuses_cross_cohort_without_a_test_cohort():
    from fmtc.cli import build_parser
    from fmtc.errors import UsageError

    args = build_parser().parse_args(["generalise", "--profile", "smoke", "--model",
                                      "covariates-logreg", "--scheme", "cross-cohort"])
    with pytest.raises(UsageError, match="needs --test-cohort DIR"):
        args.handler(args)


def test_population_seed_keeps_the_planted_truth_and_draws_new_subjects(tmp_path, sim_atlas):
    base = SimulationPlan(n_subjects=6, n_volumes=40, seed=1)
    same_population = SimulationPlan(n_subjects=6, n_volumes=40, seed=9, population_seed=1)
    explicit = SimulationPlan(n_subjects=6, n_volumes=40, seed=1, population_seed=1)
    a = load_cohort(simulate_cohort(tmp_path / "a", base, sim_atlas))
    b = load_cohort(simulate_cohort(tmp_path / "b", same_population, sim_atlas))
    c = load_cohort(simulate_cohort(tmp_path / "c", explicit, sim_atlas))
    for key in ("fc_networks", "fc_regions", "ts_network", "trait_networks"):
        assert a.ground_truth[key] == b.ground_truth[key]
    first = a.subject_ids[0]
    assert not np.allclose(a.timeseries[first], b.timeseries[first])  # other subjects
    # population_seed equal to seed is the default population: the same cohort.
    assert all(np.array_equal(a.timeseries[p], c.timeseries[p]) for p in a.subject_ids)
    with pytest.raises(PlanError, match="same subjects"):
        from fmtc.pipeline import run_generalisation

        run_generalisation(_plan(tmp_path, n_subjects=8, n_volumes=40), ["fc-logreg"],
                           ["cross-cohort"],
                           test_simulation={"study_shift": 1.0})
