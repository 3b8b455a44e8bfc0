"""Shared transforms of region time series: robust scaling, windows, functional connectivity.

Every array here is ``[T, R]`` (time points by regions) unless stated otherwise.
The authors' ``process_datasets`` (Shef-AIRE/FMM_TC, ``utils/utils.py``) builds a
``Voxelwise_RobustScaler_Normalized_Recording`` column with ``x - median / IQR`` (an
operator-precedence bug also reported as vandijklab/BrainLM#19), but their notebook
never reads it: it trains on ``col_name = "Raw_Recording"``, the unscaled series.
:func:`robust_scale` computes the intended ``(x - median) / IQR``; the authors' raw
input is ``protocol.input_scaling: none``.
"""

from __future__ import annotations

import numpy as np

IQR_FLOOR = 1e-6
"""Smallest IQR divided by, so a constant region maps to zeros instead of NaN."""


def _check_timeseries(timeseries: np.ndarray) -> np.ndarray:
    timeseries = np.asarray(timeseries)
    if timeseries.ndim != 2:
        raise ValueError(f"expected a [T, R] time series, got shape {timeseries.shape}")
    if timeseries.shape[0] < 2:
        raise ValueError(f"a time series needs at least 2 time points, got shape "
                         f"{timeseries.shape}")
    return timeseries


def robust_scale(timeseries: np.ndarray) -> np.ndarray:
    """Scale each region to ``(x - median) / IQR`` over time.

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)
        One recording.

    Returns
    -------
    ndarray of shape (T, R), float32
        Median 0 and inter-quartile range 1 per region (numpy's linear
        percentiles, computed in float64); constant regions become 0.
    """
    x = _check_timeseries(timeseries).astype(np.float64)
    q25, median, q75 = np.percentile(x, [25, 50, 75], axis=0)
    iqr = np.maximum(q75 - q25, IQR_FLOOR)
    return ((x - median) / iqr).astype(np.float32)


def window_starts(n_volumes: int, length: int, stride: int, max_windows: int) -> np.ndarray:
    """First time point of each window of a recording's deterministic window set.

    Starts run from 0 in steps of ``stride``; the last window is aligned with
    the end of the recording so no tail goes unused; when there are more than
    ``max_windows`` candidates, evenly spaced ones are kept (first and last
    included). A recording shorter than ``length`` has one window, start 0.

    Parameters
    ----------
    n_volumes, length, stride, max_windows : int
        Recording length, window length, step between starts and cap.

    Returns
    -------
    ndarray of int64
    """
    if length < 1 or stride < 1 or max_windows < 1:
        raise ValueError(f"length, stride and max_windows must be >= 1, got "
                         f"{length}, {stride}, {max_windows}")
    if n_volumes <= length:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_volumes - length + 1, stride))
    if starts[-1] != n_volumes - length:
        starts.append(n_volumes - length)
    starts_array = np.asarray(starts, dtype=np.int64)
    if len(starts_array) > max_windows:
        keep = np.unique(np.round(np.linspace(0, len(starts_array) - 1, max_windows)).astype(int))
        starts_array = starts_array[keep]
    return starts_array


def make_windows(scaled: np.ndarray, length: int = 200, stride: int = 50,
                 max_windows: int = 8) -> np.ndarray:
    """Cut a robust-scaled recording into its deterministic window set.

    A recording shorter than ``length`` is padded at its end with zeros, which
    after :func:`robust_scale` is each region's median: neutral in level and
    free of the discontinuities that repeating the series would add.

    Parameters
    ----------
    scaled : ndarray of shape (T, R)
        Output of :func:`robust_scale`.
    length, stride, max_windows : int
        See :func:`window_starts`.

    Returns
    -------
    ndarray of shape (W, R, length), float32
        Region-major windows, BrainLM's ``signal`` layout.
    """
    scaled = _check_timeseries(scaled).astype(np.float32)
    n_volumes = scaled.shape[0]
    if n_volumes < length:
        padding = np.zeros((length - n_volumes, scaled.shape[1]), dtype=np.float32)
        scaled = np.concatenate([scaled, padding])
    starts = window_starts(n_volumes, length, stride, max_windows)
    return np.stack([scaled[s:s + length].T for s in starts]).astype(np.float32)


def fc_pearson(timeseries: np.ndarray) -> np.ndarray:
    """Pearson correlation between regions, Fisher z-transformed.

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)

    Returns
    -------
    ndarray of shape (R, R), float32
        ``arctanh(r)`` with the diagonal set to 0 (``arctanh(1)`` is infinite)
        and correlations clipped to ``|r| <= 1 - 1e-7``; rows and columns of a
        constant region are 0.
    """
    x = _check_timeseries(timeseries).astype(np.float64)
    x = x - x.mean(axis=0)
    norms = np.linalg.norm(x, axis=0)
    constant = norms < 1e-12
    x = x / np.where(constant, 1.0, norms)
    r = np.clip(x.T @ x, -1 + 1e-7, 1 - 1e-7)
    z = np.arctanh(r)
    np.fill_diagonal(z, 0.0)
    z[constant, :] = 0.0
    z[:, constant] = 0.0
    return z.astype(np.float32)


def fc_gram(timeseries: np.ndarray) -> np.ndarray:
    """The Gram matrix ``X Xᵀ`` of the ``[R, T]`` series it is given.

    ``connectivity.kind: gram`` applies it to the whole *robust-scaled* recording: the
    authors' formula, not their input. The authors' FC
    (``MultimodalfMRI.forward``: ``torch.bmm(signal_vectors, signal_vectors.permute(0, 2,
    1))``) is the Gram of the *raw*, unscaled 200-TR crop fed to BrainLM:
    ``kind: gram_raw_window`` (:func:`window_connectivity`).

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)

    Returns
    -------
    ndarray of shape (R, R), float32
        Un-normalised, so its scale grows with T and with the signal's scale.
    """
    x = _check_timeseries(timeseries).astype(np.float64)
    return (x.T @ x).astype(np.float32)


CONNECTIVITY_KINDS = ("pearson", "gram", "gram_raw_window")
"""``connectivity.kind`` values; ``gram_raw_window`` is defined per window (the authors')."""


def functional_connectivity(timeseries: np.ndarray, kind: str = "pearson") -> np.ndarray:
    """Dispatch to :func:`fc_pearson` (``"pearson"``) or :func:`fc_gram` (``"gram"``).

    ``"gram_raw_window"`` is :func:`fc_gram` too: given a raw crop it is the authors' FC;
    :func:`window_connectivity` feeds it the raw windows whatever the input scaling.
    """
    if kind == "pearson":
        return fc_pearson(timeseries)
    if kind in ("gram", "gram_raw_window"):
        return fc_gram(timeseries)
    raise ValueError(f"unknown connectivity kind {kind!r}; use one of {list(CONNECTIVITY_KINDS)}")


def scale_input(timeseries: np.ndarray, input_scaling: str = "robust") -> np.ndarray:
    """The series BrainLM windows and FC are computed from (``protocol.input_scaling``).

    ``"robust"``: :func:`robust_scale`; ``"none"``: the raw recording as float32 (the
    authors' ``Raw_Recording`` column).
    """
    if input_scaling == "robust":
        return robust_scale(timeseries)
    if input_scaling == "none":
        return _check_timeseries(timeseries).astype(np.float32)
    raise ValueError(f"unknown input_scaling {input_scaling!r}; use 'robust' or 'none'")


def window_connectivity(timeseries: np.ndarray, kind: str, length: int, stride: int,
                        max_windows: int, input_scaling: str = "robust") -> np.ndarray:
    """Connectivity of each window of the deterministic window set, from that crop alone.

    ``kind: gram_raw_window`` is ``X Xᵀ`` of the raw, unscaled crop whatever
    ``input_scaling`` (the authors' ``torch.bmm(signal_vectors, signal_vectors.permute(0, 2,
    1))`` on ``Raw_Recording``); ``pearson`` and ``gram`` are computed on the crop of the
    ``input_scaling`` series.

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)
        One raw recording.
    kind : str
    length, stride, max_windows : int
        The window set (:func:`window_starts`).
    input_scaling : {"robust", "none"}

    Returns
    -------
    ndarray of shape (W, R, R), float32
    """
    raw = _check_timeseries(timeseries)
    series = raw.astype(np.float32) if kind == "gram_raw_window" else scale_input(raw,
                                                                                 input_scaling)
    windows = make_windows(series, length, stride, max_windows)  # [W, R, length]
    return np.stack([functional_connectivity(w.T, kind) for w in windows]).astype(np.float32)


def gram_mean_share(timeseries: np.ndarray) -> dict[str, float]:
    """How much of the raw Gram ``X Xᵀ`` is the regional mean intensity (the authors' FC).

    With ``m`` the regional means over time and ``T`` the number of time points,
    ``X Xᵀ = T m mᵀ + C`` where ``C`` is the Gram of the centred series. On a raw BOLD
    recording (means in the hundreds or thousands, fluctuations of a few percent) the
    rank-1 term carries nearly all of the matrix, so the authors' FC mostly encodes
    regional intensity, not co-fluctuation.

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)
        A raw (unscaled) recording or crop.

    Returns
    -------
    dict
        ``mean_share``: ``||T m mᵀ||_F / ||X Xᵀ||_F``; ``pearson_correlation``: Pearson
        correlation between the off-diagonal entries of ``X Xᵀ`` and those of the Pearson
        correlation matrix.
    """
    x = _check_timeseries(timeseries).astype(np.float64)
    gram = x.T @ x
    m = x.mean(axis=0)
    mean_term = x.shape[0] * np.outer(m, m)
    centred = x - m
    norms = np.linalg.norm(centred, axis=0)
    norms = np.where(norms < 1e-12, 1.0, norms)
    pearson = (centred / norms).T @ (centred / norms)
    rows, cols = np.triu_indices(x.shape[1], k=1)
    return {"mean_share": float(np.linalg.norm(mean_term) / np.linalg.norm(gram)),
            "pearson_correlation": float(np.corrcoef(gram[rows, cols],
                                                     pearson[rows, cols])[0, 1])}


def upper_triangle(matrices: np.ndarray) -> np.ndarray:
    """Vectorise the strict upper triangle of ``[..., R, R]`` matrices to ``[..., R(R-1)/2]``."""
    matrices = np.asarray(matrices)
    if matrices.ndim < 2 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"expected square matrices [..., R, R], got shape {matrices.shape}")
    rows, cols = np.triu_indices(matrices.shape[-1], k=1)
    return matrices[..., rows, cols]


def lag_autocorrelation(timeseries: np.ndarray, lag: int = 1) -> np.ndarray:
    """Autocorrelation of each region at ``lag`` time points: a temporal-structure feature.

    Invariant to each region's offset and scale, and blind to how regions co-vary,
    so it sees what the correlation matrix cannot (and vice versa).

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)
    lag : int
        Lag in time points, ``1 <= lag < T``.

    Returns
    -------
    ndarray of shape (R,), float32
        ``sum_t x_t x_{t+lag} / sum_t x_t^2`` of the centred series; 0 for constant regions.
    """
    x = _check_timeseries(timeseries).astype(np.float64)
    if not 1 <= lag < x.shape[0]:
        raise ValueError(f"lag must lie in [1, T-1] = [1, {x.shape[0] - 1}], got {lag}")
    x = x - x.mean(axis=0)
    power = (x * x).sum(axis=0)
    lagged = (x[lag:] * x[:-lag]).sum(axis=0)
    return np.where(power > 0, lagged / np.where(power > 0, power, 1.0), 0.0).astype(np.float32)
