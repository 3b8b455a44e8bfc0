"""The architecture: model registry, arms and paired experiments, run identity, execution."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import TINY_PLAN, run_experiment, synthetic_data
from torch import nn

from fmtc.cli import main
from fmtc.cohort.folder import load_cohort
from fmtc.evaluate.runs import load_run
from fmtc.execution import Executor
from fmtc.pipeline import evaluate, resolve_arms
from fmtc.pipeline import run_experiment as run_named_experiment
from fmtc.plan import ArmPlan, PlanError, load_plan
from fmtc.predict.registry import ModelSpec, UnknownModelError, register, unregister

CPU = torch.device("cpu")
TABLES = ("metrics.csv", "predictions.csv", "summary.csv", "trajectories.csv")


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- toy models
# Each toy model below is "one new file plus one registry line": a class, then register().


class ToyNet(nn.Module):
    """A torch model: a linear head on the CLS features."""

    def __init__(self, config):
        super().__init__()
        self.head = nn.Linear(config.cls_dim, 2)

    def forward(self, cls, fc=None):
        return self.head(torch.nan_to_num(cls))


@dataclass(frozen=True)
class CentroidParams:
    """Hyper-parameters of the toy baseline (plan key ``model_params.toy-centroid``)."""

    temperature: float = 1.0


class NearestCentroid:
    """A non-torch baseline: distance to the two class means of the FC upper triangle."""

    def __init__(self, params: CentroidParams, context=None):
        self.params = params

    @staticmethod
    def _x(data):
        rows, cols = np.triu_indices(data.fc.shape[1], 1)
        return data.fc[:, rows, cols]

    def fit(self, data, train, *, seed):
        x, y = self._x(data)[train], np.asarray(data.labels)[train]
        self.means_ = np.stack([x[y == 0].mean(0), x[y == 1].mean(0)])
        return self

    def predict_proba(self, data, subjects):
        distance = np.linalg.norm(self._x(data)[subjects][:, None] - self.means_[None], axis=2)
        logits = -distance / self.params.temperature
        return 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))


class Oracle:
    """Reads the labels it is scored on: a model whose paired difference must be large."""

    def __init__(self, params=None, context=None):
        pass

    def fit(self, data, train, *, seed):
        return self

    def predict_proba(self, data, subjects):
        return np.asarray(data.labels, dtype=float)[subjects] * 0.8 + 0.1


@pytest.fixture()
def toy_models():
    specs = [
        register(ModelSpec("toy-net", "Toy net", ("cls",), module=ToyNet)),
        register(ModelSpec("toy-centroid", "Toy centroid", ("fc",), factory=NearestCentroid,
                           params=CentroidParams)),
        register(ModelSpec("oracle", "Oracle", ("fc",), factory=Oracle, params=CentroidParams)),
    ]
    yield specs
    for spec in specs:
        unregister(spec.name)


def test_a_new_torch_model_and_a_new_baseline_run_like_the_built_in_ones(toy_models, tmp_path):
    data = synthetic_data(n=30, effect=2.0, seed=4)
    plan = TINY_PLAN.replace(model_params={"toy-centroid": {"temperature": 0.5}})
    result = run_experiment(data, plan, ["toy-net", "toy-centroid", "ts"], ["honest", "paper"],
                            fits=tmp_path, keep_weights=["toy-net"])
    pooled = result.metrics[(result.metrics["fold"] == "pooled")
                            & (result.metrics["metric"] == "auc")].set_index(
                                ["arm", "selection"])["value"]
    assert pooled[("toy-centroid", "honest")] > 0.8  # a real baseline on a planted FC effect
    probs = result.predictions["honest"].set_index("arm")["probability"]
    assert np.isfinite(probs["toy-net"]).all() and len(probs["toy-net"]) == 30
    # The torch toy has epochs: a trajectory, selections and saved weights per fold.
    assert set(result.trajectories["arm"]) == {"toy-net", "ts"}
    assert sorted(p.parent.name for p in tmp_path.glob("fit-toy-net-*/weights.pt")) == sorted(
        f"fit-toy-net-{f['key']}" for f in result.models["toy-net"]["fits"])
    assert len(result.models["toy-net"]["fits"]) == 3
    # The baseline has none: the same predictions under both selections.
    honest, paper = (result.predictions[s] for s in ("honest", "paper"))
    np.testing.assert_array_equal(honest.loc[honest["arm"] == "toy-centroid", "probability"],
                                  paper.loc[paper["arm"] == "toy-centroid", "probability"])
    assert result.models["toy-centroid"]["params"] == {"temperature": 0.5}


def test_models_registered_by_the_caller_run_on_worker_processes(toy_models):
    data = synthetic_data(n=24, effect=2.0, seed=7)
    plan = TINY_PLAN.replace(train={"epochs": 2})
    tables = [run_experiment(data, plan, ["toy-net", "toy-centroid"], executor=executor)
              for executor in (Executor(n_jobs=1), Executor(n_jobs=2))]
    for name in ("metrics", "trajectories"):
        pd.testing.assert_frame_equal(getattr(tables[0], name), getattr(tables[1], name))
    pd.testing.assert_frame_equal(tables[0].predictions["honest"],
                                  tables[1].predictions["honest"])


def test_a_registered_model_reads_its_own_validated_plan_section(toy_models):
    plan = TINY_PLAN.replace(model_params={"toy-centroid": {"temprature": 2}})
    with pytest.raises(PlanError, match=r"model_params\.toy-centroid\.temprature"):
        resolve_arms(plan, {"a": ArmPlan(model="toy-centroid")}, CPU)
    with pytest.raises(PlanError, match="model_params: unknown model"):
        resolve_arms(TINY_PLAN.replace(model_params={"svm": {}}),
                     {"a": ArmPlan(model="fc-logreg")}, CPU)


def test_unknown_models_are_refused_with_the_list_of_known_ones(small_cohort, tmp_path, capsys):
    with pytest.raises(UnknownModelError, match="known models: fmmtc, ts, fc, fc-logreg"):
        resolve_arms(TINY_PLAN, {"a": ArmPlan(model="svm")}, CPU)
    status = main(["evaluate", "--cohort", str(small_cohort), "--model", "svm",
                   "--profile", "smoke"])
    assert status == 2
    assert "unknown model(s) ['svm']; known models: fmmtc, ts" in capsys.readouterr().err
    plan = tmp_path / "plan.yml"
    plan.write_text("profiles: {smoke: {evaluation: {models: [fc-logreg, gnn]}}}\n")
    status = main(["evaluate", "--cohort", str(small_cohort), "--profile", "smoke",
                   "--plan", str(plan)])
    assert status == 2 and "unknown model(s) ['gnn']" in capsys.readouterr().err


def test_experiments_are_validated_when_the_plan_is_read(tmp_path):
    cases = {
        "{arms: {}}": "experiments.x.arms",
        "{arms: {a: {encoder: x}}}": r"experiments\.x\.arms\.a\.model.*missing",
        "{arms: {a: {model: fc}}, contrasts: [[a, b]]}": r"contrasts\[0\].*unknown arm",
        "{arms: {a: {model: fc, overrides: {evaluation: {folds: 3}}}}}": "cannot change",
        "{arms: {a: {model: fc}}, selections: [oracle]}": "selections",
    }
    for body, message in cases.items():
        path = tmp_path / "plan.yml"
        path.write_text(f"profiles: {{smoke: {{experiments: {{x: {body}}}}}}}\n")
        with pytest.raises(PlanError, match=message):
            load_plan("smoke", path)


# --------------------------------------------------------------------------- paired experiments


def test_paired_experiment_gives_zero_for_identical_arms_and_a_gain_for_an_oracle(
        toy_models, small_cohort, tmp_path):
    plan = load_plan("smoke").replace(
        device="cpu", execution={"n_jobs": 1},
        evaluation={"folds": 3, "repeats": 2, "permutations": 50, "bootstrap": 100},
        # the plan's own simulated cohort, generated under tmp_path like everything else
        outputs={k: str(tmp_path / k) for k in ("data_dir", "cohorts_dir", "features_dir",
                                               "models_dir", "fits_dir", "runs_dir")},
        experiments={"check": {
            "arms": {"a": {"model": "fc-logreg"}, "b": {"model": "fc-logreg"},
                     "oracle": {"model": "oracle"},
                     "short": {"model": "fc-logreg", "overrides": {"logistic": {
                         "c_grid": [0.01]}}}},
            "contrasts": [["a", "b"], ["oracle", "a"]]}})
    run = run_named_experiment(plan, "check")
    contrasts = run.contrasts.set_index(["arm_a", "arm_b"])
    same = contrasts.loc[("a", "b")]
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    assert same["p_value"] == 1
    gain = contrasts.loc[("oracle", "a")]
    assert gain["difference_pp"] > 50 and gain["low"] > 0 and gain["p_value"] < 0.05
    # An arm's override reaches its model only.
    models = run.tables["models"]["arms"]
    assert models["short"]["params"]["c_grid"] == [0.01]
    assert models["a"]["params"]["c_grid"] == [0.01, 0.1, 1.0]
    # Every arm was evaluated on the same splits.
    folds = run.tables["predictions"].groupby(["arm", "repeat", "fold"])["participant_id"].apply(
        tuple).unstack("arm")
    assert (folds.nunique(axis=1) == 1).all()


def test_the_main_comparison_is_an_experiment_of_every_profile():
    for profile in ("smoke", "quick", "paper"):
        spec = load_plan(profile).experiments["main-comparison"]
        assert list(spec.arms) == ["fmmtc", "ts", "fc", "fc-logreg", "cls-logreg",
                                   "ts-handcrafted", "covariates-logreg"]
        assert ["fmmtc", "fc"] in spec.contrasts and ["fmmtc", "ts"] in spec.contrasts


# --------------------------------------------------------------------------- run folders


def write_plan(folder: Path, n_jobs: int = 1) -> Path:
    outputs = {key: str(folder / "data" / key) for key in
               ("data_dir", "cohorts_dir", "features_dir", "models_dir", "fits_dir", "runs_dir")}
    document = {"profiles": {"smoke": {
        "device": "cpu", "outputs": outputs, "execution": {"n_jobs": n_jobs},
        "train": {"epochs": 2},
        "evaluation": {"folds": 3, "repeats": 1, "permutations": 20, "bootstrap": 50}}}}
    path = folder / "plan.yml"
    path.write_text(json.dumps(document))
    return path


def test_runs_with_other_settings_get_their_own_folder_and_identical_ones_are_reused(
        small_cohort, tmp_path, capsys):
    plan = write_plan(tmp_path)
    command = ["evaluate", "--cohort", str(small_cohort), "--model", "fc-logreg",
               "--profile", "smoke", "--plan", str(plan)]
    assert main([*command, "--repeats", "3"]) == 0
    assert main([*command, "--repeats", "5"]) == 0
    runs = tmp_path / "data" / "runs_dir"
    folders = sorted(p for p in runs.iterdir() if not p.name.startswith("."))
    assert len(folders) == 2
    assert all(re.fullmatch(r"evaluate_fc-logreg_smoke_[0-9a-f]{12}", p.name) for p in folders)
    repeats = sorted(load_run(p)["metrics"]["repeat"].max() + 1 for p in folders)
    assert repeats == [3, 5]
    stamps = {p: (p / "metrics.csv").stat().st_mtime_ns for p in folders}
    capsys.readouterr()
    assert main([*command, "--repeats", "3"]) == 0
    assert "reused: same identity" in capsys.readouterr().out
    assert {p: (p / "metrics.csv").stat().st_mtime_ns for p in folders} == stamps
    assert sorted(p for p in runs.iterdir() if p.name != ".locks") == folders  # no staging left


def test_results_are_byte_identical_in_process_on_local_workers_and_on_dask(small_cohort,
                                                                           tmp_path):
    from distributed import LocalCluster

    cohort = load_cohort(small_cohort)
    plan = load_plan("smoke", write_plan(tmp_path)).replace(
        connectivity={"pool_size": 16})
    executors = {"jobs-1": Executor(n_jobs=1), "jobs-2": Executor(n_jobs=2)}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        executors["dask"] = Executor(dask_scheduler=cluster.scheduler_address)
        # Each backend computes every fit itself (its own fit store), none is read back.
        runs = {name: evaluate(plan.replace(outputs={"fits_dir": str(tmp_path / f"fits-{name}")}),
                               ["fc-logreg", "fc"], ["honest", "paper"], out=tmp_path / name,
                               executor=executor, device=CPU, cohort=cohort, keep_weights=True)
                for name, executor in executors.items()}
    assert len({run.key for run in runs.values()}) == 1
    for name in (*TABLES, "predictions_paper.csv"):
        contents = {run_name: (tmp_path / run_name / name).read_bytes() for run_name in runs}
        assert len(set(contents.values())) == 1, name
    backends = {n: r.tables["provenance"]["execution"]["backend"] for n, r in runs.items()}
    assert backends == {"jobs-1": "sequential", "jobs-2": "loky", "dask": "dask"}
    assert all(r.tables["provenance"]["fits"]["read_back"] == 0 for r in runs.values())
    weights = [sorted((tmp_path / f"fits-{n}").glob("fit-fc-*/weights.pt")) for n in runs]
    assert all(len(w) == 3 for w in weights)  # one fold model per fold, each backend
    assert len({tuple(p.parent.name for p in w) for w in weights}) == 1  # the same fits


def test_a_task_leaves_the_callers_threads_and_random_state_alone():
    data = synthetic_data(n=20, seed=5)
    plan = TINY_PLAN.replace(train={"epochs": 1})
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    run_experiment(data, plan, ["ts"], executor=Executor(n_jobs=1, threads_per_worker=2))
    assert torch.get_num_threads() == threads
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_paper_selection_of_an_arm_never_changes_the_honest_one():
    data = synthetic_data(n=24, seed=6)
    plan = TINY_PLAN.replace(train={"epochs": 3})
    honest = run_experiment(data, plan, ["ts"], ["honest"]).predictions["honest"]
    both = run_experiment(data, plan, ["ts"], ["honest", "paper"]).predictions["honest"]
    np.testing.assert_array_equal(honest["probability"], both["probability"])


def test_the_command_line_prints_one_line_for_an_interruption_or_an_error(monkeypatch, capsys):
    import fmtc.cli.models as models_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models_command, "run", interrupted)
    assert main(["models"]) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "interrupted" in error and "Traceback" not in error
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "models"])
    assert main(["experiment", "nope", "--profile", "smoke"]) == 2
    assert ("unknown experiment 'nope'; the plan's profile 'smoke' declares: "
            "external-knowledge, main-comparison, official, pretraining, stability, token-order"
            ) in capsys.readouterr().err


def test_a_runs_test_trajectories_re_make_the_paper_selection(small_cohort, tmp_path):
    from fmtc.evaluate.metrics import binary_metrics
    from fmtc.evaluate.official import reporting_effects, reselected_draws

    plan = load_plan("smoke", write_plan(tmp_path)).replace(
        connectivity={"pool_size": 16}, train={"epochs": 3},
        evaluation={"folds": 3, "repeats": 1, "bootstrap": 20, "permutations": 10})
    run = evaluate(plan, ["fc"], ["honest", "paper"], out=tmp_path / "run", device=CPU,
                   cohort=load_cohort(small_cohort))
    trajectories = run.test_trajectories("fc", plan.path(plan.outputs.fits_dir))
    assert sorted(trajectories) == [(0, 0), (0, 1), (0, 2)]
    assert all(t.shape[0] == 3 for _, t in trajectories.values())
    honest = run.predictions["honest"]
    honest = honest[honest["arm"] == "fc"].sort_values(["repeat", "participant_id"])
    full = reselected_draws(honest, trajectories, n_bootstrap=0)
    paper = run.predictions["paper"]
    paper = paper[paper["arm"] == "fc"]
    expected = binary_metrics(paper["label"].to_numpy(), paper["probability"].to_numpy())["mcc"]
    assert full["paper"][0] == pytest.approx(expected, abs=1e-9)  # the run's own selection
    effects = reporting_effects(run.predictions, "fc", n_bootstrap=20, seed=1,
                                trajectories=trajectories).set_index("switch")
    row = effects.loc["selection: paper"]
    assert row["switched"] == pytest.approx(expected, abs=1e-9)
    assert row["low"] <= row["high"]
