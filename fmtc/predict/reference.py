"""The published analysis of a continuous outcome from FC: CPM and ridge regression, as a check.

The STAGES authors (Pope et al. 2025; ``scripts/CPM.py`` of izachp/psychosis-FC-prediction)
predicted each patient's z-scored symptom change from baseline FC with connectome-based
predictive modelling (CPM; Shen et al. 2017), kernel ridge regression and meta-matching, and
found no prediction. :func:`cpm_predictions` follows their CPM: FC is the Pearson correlation of
the region series (upper triangle), the edges whose correlation with the outcome in the
training folds has p < ``threshold`` form a positive and a negative network, each subject's
network strength is the sum of those edges, and a straight line fitted on the training folds
maps strength to outcome; ``k = 4`` folds, the split redrawn ``splits`` times, Pearson r of
predicted against observed per split, averaged. :func:`ridge_predictions` is ridge regression on
the standardised edges (penalty chosen by inner leave-one-out, in closed form), the same splits.
:func:`outcome_reference` adds a permutation p-value: the outcome shuffled and everything,
selection included, refitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

CPM_FOLDS = 4
"""Folds of the authors' CPM (``k = 4``)."""
CPM_THRESHOLD = 0.01
"""Their edge-selection threshold (p < 0.01; supplementary analyses used 0.05 and 0.001)."""
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
"""Ridge penalties searched by inner leave-one-out."""


def fc_edges(series: Sequence[np.ndarray]) -> np.ndarray:
    """``[n, R (R - 1) / 2]``: the upper triangle of each recording's Pearson correlation."""
    edges = []
    for x in series:
        r = np.corrcoef(np.asarray(x, dtype=np.float64).T)
        edges.append(r[np.triu_indices_from(r, k=1)])
    return np.stack(edges)


def kfold_indices(rng: np.random.Generator, n: int, k: int = CPM_FOLDS) -> np.ndarray:
    """The authors' fold assignment: ``n // k`` per fold, the remainder spread, shuffled."""
    indices = np.concatenate([np.repeat(np.arange(k), n // k), np.arange(n % k)])
    rng.shuffle(indices)
    return indices


def _edge_correlations(edges: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    yc = y - y.mean()
    xc = edges - edges.mean(axis=0)
    sd = np.std(edges, axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc @ xc) / (n - 1) / (np.std(y, ddof=1) * sd)
        t = r * np.sqrt((n - 2) / (1 - r**2))
    p = 2 * stats.t.sf(np.abs(np.nan_to_num(t)), df=n - 2)
    return np.nan_to_num(r), p


def cpm_predictions(edges: np.ndarray, y: np.ndarray, folds: np.ndarray,
                    threshold: float = CPM_THRESHOLD) -> dict[str, np.ndarray]:
    """Out-of-fold CPM predictions of the positive and the negative network.

    A network that selects no edge in a fold predicts the training mean there.
    """
    y = np.asarray(y, dtype=np.float64)
    out = {"positive": np.full(len(y), np.nan), "negative": np.full(len(y), np.nan)}
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        r, p = _edge_correlations(edges[train], y[train])
        for name, mask in (("positive", (p < threshold) & (r > 0)),
                           ("negative", (p < threshold) & (r < 0))):
            if not mask.any():
                out[name][test] = y[train].mean()
                continue
            strength_train = edges[train][:, mask].sum(axis=1)
            slope, intercept = np.polyfit(strength_train, y[train], 1)
            out[name][test] = slope * edges[test][:, mask].sum(axis=1) + intercept
    return out


def ridge_predictions(edges: np.ndarray, y: np.ndarray, folds: np.ndarray,
                      alphas: Sequence[float] = RIDGE_ALPHAS) -> np.ndarray:
    """Out-of-fold ridge predictions on standardised edges (penalty by inner leave-one-out)."""
    from sklearn.linear_model import RidgeCV

    y = np.asarray(y, dtype=np.float64)
    out = np.full(len(y), np.nan)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        mean, sd = edges[train].mean(axis=0), edges[train].std(axis=0)
        sd[sd == 0] = 1.0
        model = RidgeCV(alphas=list(alphas)).fit((edges[train] - mean) / sd, y[train])
        out[test] = model.predict((edges[test] - mean) / sd)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(stats.pearsonr(a, b)[0])


def split_correlations(edges: np.ndarray, y: np.ndarray, *, splits: int, seed: int,
                       threshold: float = CPM_THRESHOLD) -> pd.DataFrame:
    """Per split and method, Pearson r of out-of-fold predictions against the outcome."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in range(splits):
        folds = kfold_indices(rng, len(y))
        cpm = cpm_predictions(edges, y, folds, threshold)
        found = {"CPM positive network": cpm["positive"], "CPM negative network": cpm["negative"],
                 "ridge regression": ridge_predictions(edges, y, folds)}
        rows += [{"split": split, "method": method, "r": _pearson(predicted, y)}
                 for method, predicted in found.items()]
    return pd.DataFrame(rows)


def outcome_reference(edges: np.ndarray, y: np.ndarray, *, splits: int = 20,
                      permutations: int = 100, seed: int = 0,
                      threshold: float = CPM_THRESHOLD) -> pd.DataFrame:
    """Mean r over splits of each method, with a permutation p-value.

    Parameters
    ----------
    edges : ndarray of shape (n, E)
        :func:`fc_edges` of the subjects.
    y : ndarray of shape (n,)
        The continuous outcome.
    splits : int
        Random 4-fold splits (the authors used 100).
    permutations : int
        Outcome permutations, each refitted on ``splits`` splits (the authors used 1,000);
        0: no p-value.
    seed : int
    threshold : float

    Returns
    -------
    DataFrame
        ``method, r, r_sd, p_value, n, splits, permutations``: ``p_value`` is
        ``(1 + #{null mean r >= r}) / (1 + permutations)`` (one-sided: a prediction is a
        positive correlation).
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) != len(edges) or len(y) < 2 * CPM_FOLDS:
        raise ValueError(f"outcome reference: {len(y)} outcomes for {len(edges)} subjects; "
                         f"need the same number, at least {2 * CPM_FOLDS}")
    observed = split_correlations(edges, y, splits=splits, seed=seed, threshold=threshold)
    summary = observed.groupby("method", sort=False)["r"].agg(["mean", "std"])
    rng = np.random.default_rng([seed, 1])
    null = []
    for _ in range(permutations):
        shuffled = split_correlations(edges, rng.permutation(y), splits=splits, seed=seed,
                                      threshold=threshold)
        null.append(shuffled.groupby("method", sort=False)["r"].mean())
    rows = []
    for method, row in summary.iterrows():
        p = (np.nan if not null else
             (1 + sum(float(n[method]) >= row["mean"] - 1e-12 for n in null)) / (1 + len(null)))
        rows.append({"method": method, "r": float(row["mean"]), "r_sd": float(row["std"]),
                     "p_value": p, "n": len(y), "splits": splits, "permutations": permutations})
    return pd.DataFrame(rows)
