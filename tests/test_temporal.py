"""Handcrafted temporal features and the ``ts-handcrafted`` baseline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fmtc.cohort.folder import load_cohort
from fmtc.errors import InvalidDataError
from fmtc.pipeline import evaluate
from fmtc.plan import SimulationPlan, load_plan
from fmtc.predict.registry import get_model
from fmtc.represent.temporal import LAGS, feature_names, temporal_features
from fmtc.simulate.generator import simulate_cohort

pytestmark = pytest.mark.usefixtures("one_thread")


def _ar1(phi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n)
    noise = rng.standard_normal(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def test_autocorrelations_follow_the_dynamics_and_ignore_the_scale():
    rng = np.random.default_rng(0)
    series = np.stack([_ar1(0.8, 4000, rng), rng.standard_normal(4000)], axis=1)
    values = temporal_features(series, 2.0).reshape(2, len(LAGS) + 2)
    np.testing.assert_allclose(values[0, :3], [0.8, 0.64, 0.8 ** 4], atol=0.05)
    np.testing.assert_allclose(values[1, :3], 0.0, atol=0.05)
    scaled = temporal_features(series * [10.0, 0.1] + 5.0, 2.0)
    np.testing.assert_allclose(scaled, temporal_features(series, 2.0), rtol=1e-10)
    assert feature_names(["r1"])[:4] == ["r1:ac1", "r1:ac2", "r1:ac4", "r1:alff"]


def test_falff_is_high_for_a_slow_rhythm_and_low_for_a_fast_one():
    tr, n = 2.0, 600
    t = np.arange(n) * tr
    rng = np.random.default_rng(1)
    noise = 0.1 * rng.standard_normal((n, 2))
    series = np.stack([np.sin(2 * np.pi * 0.04 * t), np.sin(2 * np.pi * 0.2 * t)], 1) + noise
    values = temporal_features(series, tr).reshape(2, len(LAGS) + 2)
    assert values[0, -1] > 0.4 and values[0, -1] > 2 * values[1, -1]  # fALFF
    assert values[0, -2] > 2 * values[1, -2]  # ALFF


def test_a_recording_too_short_for_the_band_is_an_error_naming_the_cause():
    with pytest.raises(InvalidDataError, match="resolve no frequency in 0.01-0.08 Hz"):
        temporal_features(np.random.default_rng(2).standard_normal((30, 3)), 0.2)


def _cohort(tmp_path, effect_size: float, seed: int):
    settings = replace(SimulationPlan(), n_subjects=40, n_volumes=200, effect_size=effect_size,
                       fc_effect=0.0, seed=seed)
    from fmtc.acquire.atlas import get_atlas

    atlas = get_atlas("SIM424", cache_dir=tmp_path / "atlases")
    return load_cohort(simulate_cohort(tmp_path / f"cohort-{effect_size}", settings, atlas))


@pytest.mark.filterwarnings("ignore:.*volumes")
def test_the_handcrafted_baseline_reads_a_planted_temporal_effect_and_nothing_without_it(
        tmp_path):
    assert get_model("ts-handcrafted").inputs == ("temporal",)
    plan = load_plan("smoke").replace(
        device="cpu", evaluation={"folds": 5, "repeats": 1, "permutations": 0, "bootstrap": 0},
        outputs={"runs_dir": str(tmp_path / "runs"), "fits_dir": str(tmp_path / "fits")},
        execution={"n_jobs": 1})
    mcc = {}
    for effect in (3.0, 0.0):
        run = evaluate(plan, ["ts-handcrafted"], ["honest"], cohort=_cohort(tmp_path, effect, 21),
                       device=torch.device("cpu"))
        assert len(run.tables["run"]["identity"]["inputs"]["fits"]) == 5  # one fit per fold
        metrics = run.metrics
        pooled = metrics[(metrics["fold"] == "pooled") & (metrics["metric"] == "mcc")]
        mcc[effect] = float(pooled["value"].mean())
    assert mcc[3.0] > 0.4, mcc  # the planted trait (a network's timescale) is readable
    # and nothing is found where nothing is planted. Below-chance values are the usual
    # small-sample artefact of cross-validation without signal (-0.46 at this seed), not a find.
    assert mcc[0.0] < 0.2, mcc
