"""Handcrafted temporal features: what a model could read from each region's dynamics.

The ``ts-handcrafted`` baseline (logistic regression on these features) is a ceiling for
the temporal branch: it shows how much label information the time series carry in their
simplest temporal statistics, without any learning of representations. Per region, from
the robust-scaled series (:func:`fmtc.preprocess.transforms.robust_scale`, as every other
input):

- lag-k autocorrelation for each ``k`` of ``lags`` (the timescale of the dynamics);
- ALFF, the mean amplitude of the spectrum in the low-frequency band (0.01-0.08 Hz by
  default; Zang et al. 2007), and fALFF, the band's summed amplitude divided by the summed
  amplitude over all frequencies (Zou et al. 2008). Both need the repetition time.

Pearson connectivity does not see any of these: it normalises each region's variance and
ignores temporal order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmtc.errors import InvalidDataError

LAGS = (1, 2, 4)
BAND = (0.01, 0.08)
FEATURES_VERSION = 1
"""Bump when the features change meaning (part of a run's identity)."""


def feature_names(regions: Sequence[object], lags: Sequence[int] = LAGS) -> list[str]:
    """Names of the columns of :func:`temporal_features`, region-major."""
    kinds = [f"ac{k}" for k in lags] + ["alff", "falff"]
    return [f"{region}:{kind}" for region in regions for kind in kinds]


def temporal_features(series: np.ndarray, repetition_time: float,
                      lags: Sequence[int] = LAGS,
                      band: tuple[float, float] = BAND) -> np.ndarray:
    """Per-region lag-k autocorrelations, ALFF and fALFF of one recording.

    Parameters
    ----------
    series : ndarray of shape (T, R)
        One subject's region time series.
    repetition_time : float
        Seconds per volume.
    lags : sequence of int
        Autocorrelation lags, in volumes.
    band : (float, float)
        Low-frequency band of ALFF, in Hz.

    Returns
    -------
    ndarray of shape (R * (len(lags) + 2),)
        Region-major: for each region its autocorrelations, ALFF, fALFF.
    """
    from fmtc.preprocess.transforms import robust_scale

    x = robust_scale(np.asarray(series, dtype=np.float64))
    x = x - x.mean(axis=0)
    n_volumes = x.shape[0]
    if max(lags) >= n_volumes - 1:
        raise InvalidDataError(f"a series of {n_volumes} volumes is too short for lag "
                               f"{max(lags)} autocorrelation")
    energy = (x ** 2).sum(axis=0)
    safe = np.where(energy > 0, energy, 1.0)
    columns = [np.where(energy > 0, (x[k:] * x[:-k]).sum(axis=0) / safe, 0.0) for k in lags]
    amplitude = np.abs(np.fft.rfft(x, axis=0))[1:]  # without the mean
    frequency = np.fft.rfftfreq(n_volumes, d=repetition_time)[1:]
    in_band = (frequency >= band[0]) & (frequency <= band[1])
    if not in_band.any():
        raise InvalidDataError(f"{n_volumes} volumes at TR {repetition_time:g} s resolve no "
                               f"frequency in {band[0]:g}-{band[1]:g} Hz; ALFF needs longer "
                               "recordings")
    alff = amplitude[in_band].mean(axis=0)
    band_sum, total = amplitude[in_band].sum(axis=0), amplitude.sum(axis=0)
    falff = np.where(total > 0, band_sum / np.where(total > 0, total, 1.0), 0.0)
    return np.stack([*columns, alff, falff], axis=1).reshape(-1)


def cohort_temporal_features(cohort: object, lags: Sequence[int] = LAGS,
                             band: tuple[float, float] = BAND) -> np.ndarray:
    """``[N, R * (len(lags) + 2)]``: :func:`temporal_features` of every subject, in order."""
    return np.stack([temporal_features(cohort.timeseries[s], cohort.repetition_time[s], lags,
                                       band)
                     for s in cohort.subject_ids])
