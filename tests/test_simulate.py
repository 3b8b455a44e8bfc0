"""The simulated cohort: byte-identical, valid, planted effects measurable and complementary."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fmtc.cohort.folder import load_cohort
from fmtc.evaluate.metrics import binary_metrics
from fmtc.evaluate.splits import stratified_splits
from fmtc.plan import SimulationPlan
from fmtc.predict.baselines import logistic_baseline
from fmtc.preprocess.transforms import fc_pearson, lag_autocorrelation, upper_triangle
from fmtc.simulate.generator import simulate_cohort
from fmtc.storage import sha256_tree


def _simulate_cli(out: Path, plan_file: Path, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "fmtc", "simulate", "--out", str(out),
                    "--plan", str(plan_file), "--n-subjects", "6", "--n-volumes", "60",
                    "--seed", "1", *extra], check=True, capture_output=True)


def test_same_arguments_give_byte_identical_valid_folders(tmp_path):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(f"profiles: {{quick: {{outputs: {{data_dir: {tmp_path / 'data'}}}}}}}\n")
    _simulate_cli(tmp_path / "a", plan_file)
    _simulate_cli(tmp_path / "b", plan_file)
    assert sha256_tree(tmp_path / "a") == sha256_tree(tmp_path / "b")
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            assert str(tmp_path) not in path.read_text(errors="ignore")
    check = subprocess.run([sys.executable, "-m", "fmtc", "cohort", "validate",
                            str(tmp_path / "a")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    _simulate_cli(tmp_path / "c", plan_file, "--effect-size", "2")
    assert sha256_tree(tmp_path / "a") != sha256_tree(tmp_path / "c")


def test_without_effect_subjects_do_not_depend_on_cohort_size(tmp_path, sim_atlas):
    # Each subject has its own random stream; only the label draw depends on N.
    settings = SimulationPlan(n_subjects=4, n_volumes=50, effect_size=0.0)
    small = simulate_cohort(tmp_path / "s", settings, sim_atlas)
    large = simulate_cohort(tmp_path / "l", replace(settings, n_subjects=6), sim_atlas)
    name = "sub-001/func/sub-001_task-rest_atlas-SIM424_timeseries.tsv"
    assert (small / name).read_bytes() == (large / name).read_bytes()


def test_unlabelled_cohort_has_other_subjects_and_no_label(tmp_path, sim_atlas):
    settings = SimulationPlan(n_subjects=4, n_volumes=50)
    out = simulate_cohort(tmp_path / "u", settings, sim_atlas, unlabelled=True)
    cohort = load_cohort(out, require_label=False)
    assert cohort.subject_ids[0] == "sub-P001" and cohort.ground_truth is None
    with pytest.raises(ValueError, match="without a label"):
        _ = cohort.labels


def test_ground_truth_names_planted_regions_in_three_networks(small_cohort):
    cohort = load_cohort(small_cohort)
    truth = cohort.ground_truth
    network = dict(zip(cohort.regions["index"], cohort.regions["network"], strict=True))
    fc_a, fc_b = truth["fc_networks"]
    assert {network[a] for a, _ in truth["fc_edges"]} == {fc_a}
    assert {network[b] for _, b in truth["fc_edges"]} == {fc_b}
    assert {network[r] for r in truth["ts_regions"]} == {truth["ts_network"]}
    assert len({fc_a, fc_b, truth["ts_network"]}) == 3


def _cross_validated_mcc(features: np.ndarray, labels: np.ndarray, repeats: int = 2) -> float:
    scores = []
    for repeat in range(repeats):
        probabilities = np.zeros(len(labels))
        for split in stratified_splits(labels, folds=5, repeats=1, seed=100 + repeat):
            model = logistic_baseline([1e-3, 1e-2, 0.1, 1.0], inner_folds=3, seed=0)
            model.fit(features[split.train], labels[split.train])
            probabilities[split.test] = model.predict_proba(features[split.test])[:, 1]
        scores.append(binary_metrics(labels, probabilities)["mcc"])
    return float(np.mean(scores))


def _both_baselines(tmp_path: Path, sim_atlas, **effects: float) -> tuple[float, float]:
    settings = replace(SimulationPlan(), n_subjects=100, effect_size=3.0, seed=11, **effects)
    cohort = load_cohort(simulate_cohort(tmp_path / "c", settings, sim_atlas))
    series = [cohort.timeseries[s] for s in cohort.subject_ids]
    fc = np.stack([upper_triangle(fc_pearson(x)) for x in series])
    autocorrelation = np.stack([lag_autocorrelation(x) for x in series])
    return (_cross_validated_mcc(fc, cohort.labels),
            _cross_validated_mcc(autocorrelation, cohort.labels))


@pytest.mark.slow
def test_temporal_effect_is_invisible_to_connectivity(tmp_path, sim_atlas):
    fc_mcc, autocorrelation_mcc = _both_baselines(tmp_path, sim_atlas, fc_effect=0.0)
    assert fc_mcc <= 0.1
    assert autocorrelation_mcc >= 0.5


@pytest.mark.slow
def test_connectivity_effect_is_invisible_to_temporal_structure(tmp_path, sim_atlas):
    fc_mcc, autocorrelation_mcc = _both_baselines(tmp_path, sim_atlas, ts_effect=0.0)
    assert fc_mcc >= 0.5
    assert autocorrelation_mcc <= 0.15


def test_scattered_traits_span_the_networks_and_carry_the_label(sim_atlas):
    from fmtc.interpret.aggregate import lag1_region_scores, recall_at_k
    from fmtc.simulate.generator import LABEL_COLUMN, plant_truth, simulated_subjects

    networks = plant_truth(sim_atlas, 4)
    scattered = plant_truth(sim_atlas, 4, "scattered")
    assert "trait_layout" not in networks  # the network layout's truth is as it always was
    assert scattered["fc_regions"] == networks["fc_regions"]
    regions = sim_atlas.regions.set_index("index")
    sizes = [len(regions[regions["network"] == n]) for n in networks["trait_networks"]]
    assert [len(m) for m in scattered["trait_regions"]] == sizes
    flat = [i for members in scattered["trait_regions"] for i in members]
    assert len(set(flat)) == len(flat) and not set(flat) & set(scattered["fc_regions"])
    # Across networks: no network holds more than half of the label's trait regions.
    assert regions.loc[scattered["ts_regions"], "network"].value_counts().iloc[0] <= (
        len(scattered["ts_regions"]) / 2)
    assert plant_truth(sim_atlas, 5, "scattered")["ts_regions"] != scattered["ts_regions"]
    assert scattered["ts_network"] is None
    with pytest.raises(ValueError, match="trait layout"):
        plant_truth(sim_atlas, 4, "striped")

    # The effect is planted where the truth says: each region's lag-1 autocorrelation finds
    # the scattered regions, and the network layout's regions are no longer special.
    settings = replace(SimulationPlan(), n_subjects=40, seed=4, effect_size=3.0,
                       trait_layout="scattered")
    participants, series = simulated_subjects(settings, sim_atlas)
    lag1 = np.stack([lag_autocorrelation(x) for _, x in series])
    scores = lag1_region_scores(lag1, participants[LABEL_COLUMN].to_numpy())
    index = sim_atlas.regions["index"].to_numpy()
    assert recall_at_k(scores, np.isin(index, scattered["ts_regions"])) >= 0.8
    assert recall_at_k(scores, np.isin(index, networks["ts_regions"])) <= 0.35


def test_the_trait_layout_is_validated_and_left_out_of_identity_by_default():
    from fmtc.plan import PlanError, load_plan

    assert "trait_layout" not in SimulationPlan().identity()
    assert replace(SimulationPlan(), trait_layout="scattered").identity()["trait_layout"] == (
        "scattered")
    with pytest.raises(PlanError, match="trait_layout"):
        load_plan("smoke").replace(simulation={"trait_layout": "striped"})
