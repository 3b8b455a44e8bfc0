"""From attributions to regions, networks and the recovery of a planted truth.

Region scores
    **FC**: a subject's edge attributions ``A`` (``[R, R]``) are symmetrised, ``S = A + A^T``
    (the total attribution of each undirected edge, diagonal dropped), and summed over each
    region's edges: ``s_i = sum_j S_ij``. A fold's FC region score is the magnitude of the
    **class-aligned mean** over its test subjects, ``|mean_n (2 y_n - 1) s_ni|``: each
    subject's attribution counted towards its own label (IG attributes the responder
    evidence, so a non-responder's evidence against "responder" counts for its class). A
    connectivity change that moves every subject towards its class adds up; attributions of
    either sign that follow no class cancel.
    **TS**: a window's attributions (``[R, T]``) are summed over time, ``s_i = sum_t A_it``,
    and a fold's TS region score is the **mean magnitude** ``mean_n |s_ni|``. A difference
    of timescale has no sign that a class could align: class alignment cancels it.
    Both read-outs were chosen on calibration seeds 1 and 2 (smoke FMM_TC runs at effect
    size 3; the acceptance seed 0 was not used): FC recall@k 0.93 / 0.93 class-aligned,
    against 0.72 / 0.87 for ``mean_n |s_ni|`` and 0.57 / 0.68 for ``mean_n sum_j |S_nij|``;
    TS recall@k 0.86 / 0.71 for the mean magnitude, against 0.12 / 0.16 class-aligned.
    Fold scores are then averaged over folds.
Network scores
    The mean region score of each atlas network (A424: the AA-7 networks of the atlas
    provider; SIM424: the simulator's networks), per fold, with a t-interval across folds.
Recovery of a planted truth
    recall@k: the fraction of the ``k`` planted regions among the ``k`` highest-scoring
    regions; chance is ``k / R``.
Non-IG references
    The same recall for ``|coefficients|`` of the FC logistic baseline (region: sum of the
    magnitudes of its edges' coefficients, in units of each edge's standard deviation), for
    edge-wise Welch t-statistics between responders and non-responders (region: sum of
    ``|t|``) and, for TS, the t-statistic of each region's lag-1 autocorrelation. Each is
    computed on every fold's training subjects and averaged over folds, like IG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def edge_totals(attributions: np.ndarray) -> np.ndarray:
    """``A + A^T`` with a zero diagonal, for ``[..., R, R]`` edge attributions."""
    a = np.asarray(attributions, dtype=np.float64)
    total = a + np.swapaxes(a, -1, -2)
    index = np.arange(a.shape[-1])
    total[..., index, index] = 0.0
    return total


def fc_region_sums(attributions: np.ndarray) -> np.ndarray:
    """``[B, R]``: ``sum_j S_ij`` of each subject's symmetrised edge attributions (signed)."""
    return edge_totals(attributions).sum(-1)


def ts_region_sums(attributions: np.ndarray) -> np.ndarray:
    """``[B, R]``: ``sum_t A_it`` of each subject's window attributions ``[B, R, T]`` (signed)."""
    return np.asarray(attributions, dtype=np.float64).sum(-1)


def class_aligned(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``mean_n (2 y_n - 1) values_n``: the mean attribution towards each subject's own label.

    Parameters
    ----------
    values : ndarray of shape (B, ...)
        Signed attributions of the responder evidence, one row per subject.
    labels : ndarray of shape (B,)
        0/1 labels.
    """
    sign = 2.0 * np.asarray(labels, dtype=np.float64) - 1.0
    values = np.asarray(values, dtype=np.float64)
    return (values * sign.reshape(-1, *([1] * (values.ndim - 1)))).mean(0)


def region_scores(sums: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """``[R]`` region score of one fold from per-subject region sums ``[B, R]``.

    With ``labels`` (FC): ``|class_aligned(sums, labels)|``; without (TS): ``mean |sums|``.
    """
    if labels is None:
        return np.abs(np.asarray(sums, dtype=np.float64)).mean(0)
    return np.abs(class_aligned(sums, labels))


def recall_at_k(scores: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the ``k = truth.sum()`` planted regions among the ``k`` top ``scores``."""
    truth = np.asarray(truth, dtype=bool)
    k = int(truth.sum())
    if k == 0:
        raise ValueError("recall@k needs at least one planted region")
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(truth[top].mean())


def network_table(scores: pd.DataFrame, networks: Sequence[str], level: float = 0.95
                  ) -> pd.DataFrame:
    """Mean region score of each network per fold, and its mean and interval across folds.

    Parameters
    ----------
    scores : DataFrame
        One row per fold (index: fold labels), one column per region (cohort order).
    networks : sequence of str
        Network of each region.
    level : float
        Coverage of the t-interval across folds.

    Returns
    -------
    DataFrame
        ``network, n_regions, mean, low, high, n_folds`` sorted by ``mean``, descending.
    """
    networks = np.asarray(networks, dtype=str)
    rows = []
    for name in sorted(set(networks)):
        members = networks == name
        per_fold = scores.loc[:, members].to_numpy().mean(1)
        n = len(per_fold)
        mean = float(per_fold.mean())
        if n > 1:
            half = float(stats.t.ppf(0.5 + level / 2, n - 1) * per_fold.std(ddof=1) / np.sqrt(n))
        else:
            half = float("nan")
        rows.append({"network": name, "n_regions": int(members.sum()), "mean": mean,
                     "low": mean - half, "high": mean + half, "n_folds": n})
    return pd.DataFrame(rows).sort_values("mean", ascending=False, ignore_index=True)


def logistic_region_scores(fc: np.ndarray, labels: np.ndarray, c_grid: Sequence[float],
                           inner_folds: int, seed: int) -> np.ndarray:
    """``[R]``: summed ``|coefficients|`` of the FC baseline fitted on ``fc`` and ``labels``.

    The FC baseline is :func:`fmtc.predict.baselines.logistic_baseline` (standardised edges,
    ``C`` chosen by inner CV); its coefficients are mapped back from the row space to the
    edges, in units of each edge's standard deviation, and an edge counts for both regions.
    """
    from fmtc.predict.baselines import logistic_baseline
    from fmtc.preprocess.transforms import upper_triangle

    search = logistic_baseline(c_grid, inner_folds, seed)
    search.fit(upper_triangle(np.asarray(fc, dtype=np.float64)), np.asarray(labels))
    best = search.best_estimator_
    weights = (best.named_steps["logistic"].coef_ @ best.named_steps["row_space"].basis_)[0]
    return _edge_vector_to_regions(np.abs(weights), fc.shape[-1])


def t_region_scores(fc: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[R]``: summed ``|t|`` of edge-wise Welch t-tests, responders against non-responders."""
    from fmtc.preprocess.transforms import upper_triangle

    labels = np.asarray(labels).astype(bool)
    edges = upper_triangle(np.asarray(fc, dtype=np.float64))
    t = stats.ttest_ind(edges[labels], edges[~labels], equal_var=False).statistic
    return _edge_vector_to_regions(np.abs(np.nan_to_num(t)), fc.shape[-1])


def lag1_region_scores(lag1: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[R]``: ``|t|`` of each region's lag-1 autocorrelation, responders against the rest."""
    labels = np.asarray(labels).astype(bool)
    t = stats.ttest_ind(lag1[labels], lag1[~labels], equal_var=False).statistic
    return np.abs(np.nan_to_num(t))


def _edge_vector_to_regions(values: np.ndarray, n_regions: int) -> np.ndarray:
    rows, cols = np.triu_indices(n_regions, k=1)
    out = np.zeros(n_regions)
    np.add.at(out, rows, values)
    np.add.at(out, cols, values)
    return out
