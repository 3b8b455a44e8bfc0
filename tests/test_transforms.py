"""Shared transforms against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from fmtc.preprocess.transforms import (
    fc_gram,
    fc_pearson,
    lag_autocorrelation,
    make_windows,
    robust_scale,
    upper_triangle,
    window_starts,
)


def test_robust_scale_is_median_over_iqr_not_the_authors_precedence_bug():
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0], [10.0, 10.0]])
    # column 0: median 3, q25 2, q75 4 -> IQR 2; column 1 constant -> zeros
    expected = np.array([[-1.0, 0], [-0.5, 0], [0.0, 0], [0.5, 0], [3.5, 0]])
    np.testing.assert_allclose(robust_scale(x), expected)
    buggy = x[:, 0] - 3.0 / 2.0  # x - median / IQR
    assert not np.allclose(robust_scale(x)[:, 0], buggy)


def test_window_starts_cover_the_end_and_respect_the_cap():
    np.testing.assert_array_equal(window_starts(300, 200, 50, 8), [0, 50, 100])
    np.testing.assert_array_equal(window_starts(330, 200, 50, 8), [0, 50, 100, 130])
    np.testing.assert_array_equal(window_starts(1000, 200, 50, 3), [0, 400, 800])
    np.testing.assert_array_equal(window_starts(150, 200, 50, 3), [0])


def test_windows_are_region_major_and_short_series_are_median_padded():
    x = np.arange(12.0).reshape(4, 3)  # T=4, R=3
    windows = make_windows(x, length=2, stride=2, max_windows=5)
    assert windows.shape == (2, 3, 2)
    np.testing.assert_array_equal(windows[1], x[2:4].T)
    padded = make_windows(x, length=6, stride=1, max_windows=5)
    assert padded.shape == (1, 3, 6)
    np.testing.assert_array_equal(padded[0, :, 4:], 0.0)


def test_fc_pearson_is_fisher_z_with_zero_diagonal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    z = fc_pearson(x)
    r = np.corrcoef(x.T)
    np.testing.assert_allclose(z[0, 1], np.arctanh(r[0, 1]), rtol=1e-5)
    np.testing.assert_array_equal(np.diag(z), 0.0)
    np.testing.assert_allclose(z, z.T)


def test_fc_pearson_zeroes_a_constant_region():
    x = np.random.default_rng(1).standard_normal((30, 3))
    x[:, 2] = 5.0
    z = fc_pearson(x)
    assert np.isfinite(z).all() and (z[2] == 0).all() and (z[:, 2] == 0).all()


def test_fc_gram_is_the_authors_raw_product():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # T=3, R=2
    np.testing.assert_allclose(fc_gram(x), [[35.0, 44.0], [44.0, 56.0]])


def test_upper_triangle_order_and_shape_check():
    m = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]])
    np.testing.assert_array_equal(upper_triangle(m), [1, 2, 3])
    with pytest.raises(ValueError, match="square"):
        upper_triangle(np.zeros((2, 3)))


def test_lag_autocorrelation_of_known_processes():
    t = np.arange(400)
    alternating = np.where(t % 2 == 0, 1.0, -1.0)
    slow = np.sin(2 * np.pi * t / 100)
    values = lag_autocorrelation(np.stack([alternating, slow, np.ones(400)], axis=1))
    assert values[0] == pytest.approx(-1.0, abs=0.01)
    assert values[1] == pytest.approx(np.cos(2 * np.pi / 100), abs=0.01)
    assert values[2] == 0.0
