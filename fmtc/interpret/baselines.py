"""Baselines of integrated gradients: what a subject's input is compared with.

IG attributes ``f(x) - f(x')``: the difference between a subject's responder evidence and the
evidence of a baseline input ``x'``; the choice of ``x'`` is part of the question asked.

``train-mean`` (default)
    The average training subject of the fold: the training-fold mean FC matrix and, for the
    fused representation, the training-fold mean BrainLM feature. Both are the
    standardisation statistics each fold's model holds as buffers, so no other data are
    needed. For the time-series window, the mean window of the fold's training subjects
    (close to zero for robust-scaled series). Question asked: "what in this subject moves
    the prediction away from that of an average subject?"
``zeros``
    All-zero inputs (the common default of image models): a zero FC matrix (no
    connectivity), a zero window (each region at its median, after robust scaling), and the
    BrainLM features of that zero window.
``time-shuffled``
    The subject's own recording with its time points permuted, independently in each
    region (seeded): the same values and variance, no temporal structure and, up to
    sampling noise, no connectivity. FC: the connectivity of the shuffled recording; window:
    the shuffled window; features: the BrainLM features of the shuffled windows.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("train-mean", "zeros", "time-shuffled")
"""Baselines :func:`fmtc.pipeline.interpret_run` accepts (``--baseline``)."""

DEFAULT_BASELINE = "train-mean"


def check_baseline(name: str) -> str:
    """Return ``name`` when it is a known baseline, else raise a ValueError listing them."""
    if name not in BASELINES:
        raise ValueError(f"unknown IG baseline {name!r}; use one of {', '.join(BASELINES)}")
    return name


def time_shuffled(timeseries: np.ndarray, seed: int) -> np.ndarray:
    """``[T, R]`` series with the time points of each region permuted independently.

    Parameters
    ----------
    timeseries : ndarray of shape (T, R)
    seed : int
        Seed of the permutations (the same seed gives the same baseline).

    Returns
    -------
    ndarray of shape (T, R), same dtype
    """
    series = np.asarray(timeseries)
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random(series.shape), axis=0)
    return np.take_along_axis(series, order, axis=0)
