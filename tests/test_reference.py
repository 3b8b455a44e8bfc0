"""The CPM and ridge references of the real-trial page find a planted outcome, and only that."""

from __future__ import annotations

import numpy as np
import pytest

from fmtc.predict.reference import (
    cpm_predictions,
    fc_edges,
    kfold_indices,
    outcome_reference,
)


def _edges_and_outcome(seed: int, signal: float, n: int = 40, n_edges: int = 300):
    rng = np.random.default_rng(seed)
    edges = rng.normal(size=(n, n_edges))
    y = rng.normal(size=n)
    edges[:, :10] += signal * y[:, None]  # ten edges follow the outcome, positively
    edges[:, 10:20] -= signal * y[:, None]  # ten negatively
    return edges, y


def test_fc_edges_are_the_upper_triangle_of_each_correlation_matrix():
    x = np.random.default_rng(0).normal(size=(50, 5))
    edges = fc_edges([x])
    r = np.corrcoef(x.T)
    np.testing.assert_allclose(edges[0], r[np.triu_indices(5, k=1)])
    assert edges.shape == (1, 10)


def test_the_authors_folds_have_near_equal_sizes():
    folds = kfold_indices(np.random.default_rng(1), 45)
    assert sorted(np.bincount(folds)) == [11, 11, 11, 12]


def test_cpm_networks_find_their_own_sign_and_never_see_the_test_fold():
    edges, y = _edges_and_outcome(2, signal=1.0)
    folds = kfold_indices(np.random.default_rng(3), len(y))
    found = cpm_predictions(edges, y, folds)
    assert np.corrcoef(found["positive"], y)[0, 1] > 0.6
    assert np.corrcoef(found["negative"], y)[0, 1] > 0.6
    # Changing the test fold's outcomes changes none of its predictions.
    y2 = y.copy()
    y2[folds == 0] = np.random.default_rng(4).normal(size=(folds == 0).sum())
    again = cpm_predictions(edges, y2, folds)
    np.testing.assert_allclose(again["positive"][folds == 0], found["positive"][folds == 0])


def test_the_reference_finds_a_planted_outcome_and_nothing_in_noise():
    edges, y = _edges_and_outcome(5, signal=1.0)
    found = outcome_reference(edges, y, splits=3, permutations=19, seed=0).set_index("method")
    assert (found["r"] > 0.5).all()
    assert found.loc["CPM positive network", "p_value"] == pytest.approx(1 / 20)
    noise, y0 = _edges_and_outcome(6, signal=0.0)
    null = outcome_reference(noise, y0, splits=3, permutations=19, seed=0).set_index("method")
    assert (null["r"] < 0.4).all() and (null["p_value"] > 0.05).all()
