"""The whole pipeline under the null: label-permuted cohorts, everything retrained.

The stronger null of :mod:`fmtc.evaluate.uncertainty` (*the pipeline learns nothing*,
Ojala & Garriga 2010): a cohort with a real effect has its labels permuted, and the
cross-validation is run again from scratch, once per permutation. The honest selection
must then score chance on average, while the paper's test-fold epoch selection, which
reads the labels it is scored on, must score above it.

16 permutations of a 48-subject cohort, 3 folds, the logistic FC baseline and the temporal
model (8 epochs): about 30 s of one CPU thread. Measured (mean +- SE of pooled MCC):
honest fc-logreg -0.05 +- 0.04, honest ts +0.03 +- 0.03, paper ts +0.17 +- 0.03,
optimism of ts +0.14 +- 0.02.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import t as student_t
from synthetic import TINY_PLAN, run_experiment, synthetic_data

from fmtc.evaluate.protocol import selection_optimism

PERMUTATIONS = 16
MODELS = ("fc-logreg", "ts")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def null_runs(one_thread):
    """Per permutation: pooled MCC per (model, selection) and the temporal model's optimism."""
    plan = TINY_PLAN.replace(train={"epochs": 8, "lr": 0.05},
                             evaluation={"honest_epoch": "last", "repeats": 1})
    rows = []
    for k in range(PERMUTATIONS):
        data = synthetic_data(n=48, effect=1.5, seed=300 + k)  # a real, findable effect ...
        permuted = np.random.default_rng(k).permutation(data.labels)  # ... taken away
        data = dataclasses.replace(data, labels=permuted)
        metrics = run_experiment(data, plan.replace(seed=k), MODELS, ("honest", "paper")).metrics
        pooled = metrics[(metrics["fold"] == "pooled") & (metrics["metric"] == "mcc")]
        rows.append({(m, s): float(v) for m, s, v in
                     zip(pooled["model"], pooled["selection"], pooled["value"], strict=True)})
        rows[-1]["optimism"] = float(selection_optimism(metrics)["optimism"].iloc[0])
    return rows


def t_bound(values: np.ndarray, level: float) -> float:
    """Half-width of the two-sided Student-t interval of the mean at ``level``."""
    return float(student_t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / np.sqrt(len(values)))


def test_the_signal_is_there_before_the_labels_are_permuted(one_thread):
    """The null below is the permutation's doing: the same cohort with its labels is found."""
    data = synthetic_data(n=30, effect=1.5, seed=300)
    plan = TINY_PLAN.replace(evaluation={"repeats": 1})
    metrics = run_experiment(data, plan, ["fc-logreg"]).metrics
    pooled = metrics[(metrics["fold"] == "pooled") & (metrics["metric"] == "mcc")]
    assert pooled["value"].iloc[0] > 0.5


@pytest.mark.parametrize("model", MODELS)
def test_honest_pooled_mcc_is_centred_on_chance_under_permuted_labels(null_runs, model):
    values = np.array([run[(model, "honest")] for run in null_runs])
    mean = values.mean()
    assert abs(mean) <= 0.1, values
    # Not distinguishable from 0 either: 0 inside the 99% t-interval of the mean.
    assert abs(mean) <= t_bound(values, 0.99), values


def test_paper_selection_is_biased_upward_under_permuted_labels(null_runs):
    optimism = np.array([run["optimism"] for run in null_runs])
    paper = np.array([run[("ts", "paper")] for run in null_runs])
    # The gain of reading the test labels is positive beyond its 99% t-interval ...
    assert optimism.mean() > t_bound(optimism, 0.98), optimism  # one-sided 99%
    # ... and lifts the paper-selected MCC above chance although there is nothing to find.
    assert paper.mean() > t_bound(paper, 0.98), paper
    # The baseline has no epochs to choose: its two selections coincide.
    assert all(run[("fc-logreg", "paper")] == run[("fc-logreg", "honest")] for run in null_runs)
