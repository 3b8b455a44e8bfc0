"""Uncertainty of cross-validated metrics: repeat intervals, subject bootstrap, permutation test.

Three numbers answer three different questions, and none is the other:

- :func:`repeat_interval`: the spread of the pooled metric over CV repeats
  (mean ± t-interval). It reflects split-to-split variability only; repeats
  share every subject, so it is narrower than the sampling uncertainty.
- :func:`bootstrap_interval`: resampling subjects (with replacement) of the
  pooled out-of-fold predictions, the models kept fixed. It reflects which
  subjects happened to be in the cohort, not retraining variability.
- :func:`permutation_pvalue`: the out-of-fold predictions are held fixed and
  the labels permuted. It tests *the out-of-fold predictions are associated
  with the labels* (H0: labels exchangeable with respect to the predictions).
  The models are not retrained per permutation: retraining a ResNet-18 per
  permutation is out of reach on a CPU, and using one test for every model
  keeps the p-values comparable. Because each out-of-fold prediction comes from
  a model that never saw that subject, an association cannot come from fitting
  the subject itself. For the stronger null *the whole pipeline learns nothing*
  (Ojala & Garriga, JMLR 2010), run the protocol on permuted labels
  (``fmtc evaluate --permute-labels``), which retrains everything once.

Each function summarises ``R`` repeats of pooled out-of-fold predictions,
``probabilities [R, n]`` against one ``labels [n]`` vector, by the mean over
repeats of the metric.
"""

from __future__ import annotations

import numpy as np

from fmtc.evaluate.metrics import METRICS, binary_metrics_batch

PERMUTATION_METRICS = ("mcc", "auc")
"""Metrics given a permutation p-value."""


def _check_pooled(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    if labels.ndim != 1 or probabilities.shape[1] != len(labels):
        raise ValueError(f"expected labels [n] and probabilities [repeats, n]; got "
                         f"{labels.shape} and {probabilities.shape}")
    return labels, probabilities


def _mean_over_repeats(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """``labels [B, n]``, ``probabilities [R, n]`` -> metric of each draw, averaged over repeats."""
    repeats = len(probabilities)
    draws = len(labels)
    tiled_labels = np.repeat(labels, repeats, axis=0)
    tiled_probs = np.tile(probabilities, (draws, 1))
    values = binary_metrics_batch(tiled_labels, tiled_probs)
    return {name: _nanmean_rows(v.reshape(draws, repeats)) for name, v in values.items()}


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    # NaN (e.g. AUC of a one-class resample) only where every repeat is NaN.
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def repeat_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of one metric over repeats.

    Parameters
    ----------
    values : ndarray of shape (R,)
        The pooled metric of each repeat.
    level : float
        Coverage of the interval.

    Returns
    -------
    (mean, low, high)
        Bounds are NaN with fewer than 2 finite values.
    """
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(values.mean())
    if len(values) < 2:
        return (mean, np.nan, np.nan)
    half = t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return (mean, float(mean - half), float(mean + half))


def bootstrap_interval(labels: np.ndarray, probabilities: np.ndarray, n_bootstrap: int,
                       seed: int, level: float = 0.95, chunk: int = 256
                       ) -> dict[str, tuple[float, float]]:
    """Percentile interval of every metric under a subject bootstrap of pooled predictions.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    probabilities : ndarray of shape (R, n)
        Pooled out-of-fold predictions of each repeat.
    n_bootstrap : int
        Resamples; 0 gives NaN intervals.
    seed : int
        Seed of the resampling (the same subjects are drawn for every repeat).
    level : float
        Coverage.
    chunk : int
        Resamples evaluated at once.

    Returns
    -------
    dict of str to (low, high)
    """
    labels, probabilities = _check_pooled(labels, probabilities)
    if n_bootstrap == 0:
        return {name: (np.nan, np.nan) for name in METRICS}
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in METRICS}
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        index = rng.integers(0, len(labels), size=(size, len(labels)))
        repeats = len(probabilities)
        values = binary_metrics_batch(np.repeat(labels[index], repeats, axis=0),
                                      probabilities[:, index].transpose(1, 0, 2).reshape(
                                          size * repeats, -1))
        for name in METRICS:
            draws[name].append(_nanmean_rows(values[name].reshape(size, repeats)))
    tails = [50 * (1 - level), 50 * (1 + level)]
    out = {}
    for name in METRICS:
        values_all = np.concatenate(draws[name])
        values_all = values_all[np.isfinite(values_all)]
        out[name] = (tuple(float(v) for v in np.percentile(values_all, tails))
                     if len(values_all) else (np.nan, np.nan))
    return out


def permutation_pvalue(labels: np.ndarray, probabilities: np.ndarray, n_permutations: int,
                       seed: int, metrics: tuple[str, ...] = PERMUTATION_METRICS
                       ) -> dict[str, float]:
    """One-sided p-value of the metric against label permutations, predictions fixed.

    ``p = (1 + #{null >= observed}) / (1 + n_permutations)``, so it is never 0
    and is exact-valid under exchangeable labels.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    probabilities : ndarray of shape (R, n)
        Pooled out-of-fold predictions of each repeat.
    n_permutations : int
        Permutations; 0 gives NaN.
    seed : int
        Seed of the permutations.
    metrics : tuple of str
        Which metrics to test.

    Returns
    -------
    dict of str to float
    """
    labels, probabilities = _check_pooled(labels, probabilities)
    if n_permutations == 0:
        return {name: np.nan for name in metrics}
    observed = _mean_over_repeats(labels[None, :], probabilities)
    rng = np.random.default_rng(seed)
    permuted = np.stack([rng.permutation(labels) for _ in range(n_permutations)])
    null = _mean_over_repeats(permuted, probabilities)
    out = {}
    for name in metrics:
        obs = observed[name][0]
        if not np.isfinite(obs):
            out[name] = np.nan
            continue
        # A small tolerance counts float ties (e.g. equal MCCs) as ties, not as wins.
        exceed = np.sum(null[name] >= obs - 1e-12)
        out[name] = float((1 + exceed) / (1 + n_permutations))
    return out
