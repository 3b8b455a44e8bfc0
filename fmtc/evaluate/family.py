"""Simultaneous inference over a family of paired MCC differences.

The claims table tests many contrasts at once; an interval that covers its own difference
95% of the time still lets one of eleven null rows look like an effect about 40% of the
time. This module gives every row of a family

- its **raw** paired subject-bootstrap percentile interval (what one row alone would get);
- a **simultaneous** interval, all rows covered together with probability ``level``:
  ``max-t`` (default) studentises each row's bootstrap draws by their standard deviation,
  takes the ``level`` quantile ``c`` of the largest absolute studentised deviation over the
  rows, and gives ``d ± c·se``; ``rectangle`` widens every row's percentile interval by one
  common tail until ``level`` of the joint draws lie inside all of them; ``bonferroni`` uses
  each row's percentile interval at ``1 − (1 − level)/K``; ``percentile`` is the raw
  interval (no adjustment, for comparison);
- the paired permutation (swap) p-value and its Holm adjustment over the family.

A contrast between two **sets of encoders** (pretrained with several seeds against several
random initialisations, :class:`Contrast` with ``units``) also resamples the encoders of each
arm in every draw, so its interval covers encoder-level variability; its p-value permutes the
encoders between the arms.

Rows that share their subjects (the same cohort, the same subject order: several contrasts
of one experiment) are resampled **jointly**, the same subjects in every row of a draw, so
the maximum sees their correlation; rows on other subjects are resampled independently.
Each group of subjects draws from a stream seeded by ``seed`` and a hash of its subject ids,
so a row's draws do not depend on which other rows are in the family.

Which method, resample count and nominal level the claims use (:data:`FAMILY_METHOD`,
:data:`FAMILY_BOOTSTRAP`, :data:`FAMILY_NOMINAL`) was chosen on calibration replicates of the
simulator and checked on fresh ones (:mod:`fmtc.evaluate.calibration`, the book's inference
page).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METHODS = ("max-t", "rectangle", "bonferroni", "percentile")
"""Interval methods of :func:`family_inference` (``percentile``: raw, not simultaneous)."""

FAMILY_METHOD = "max-t"
"""The method the claims table uses."""
FAMILY_BOOTSTRAP = 2000
"""Joint resamples of the claims table."""
FAMILY_NOMINAL = 0.99
"""The nominal level the claims table's intervals are computed at, for 95% joint coverage.

Chosen with the method and the resample count on calibration replicates
(:mod:`fmtc.evaluate.calibration`: two pools of 3,000 subjects, simulator seeds 1 and 2,
cheap logistic arms in the claims table's shape, 400 replicates and 400 label-permuted ones
on each; a setting must hold on both): at nominal 95% the max-t intervals covered every row's
truth together in 91% of replicates; at 98% the family-wise error was 3.8% on pool 1 but
6.5% on pool 2; at 99%, the narrowest setting that held on both, coverage was 97.3% and
96.3% and the error 3.0% and 4.3%. (An earlier choice on pool 1 alone, 98%, gave a
family-wise error of 7.5% on the fresh pool it was reported on, seed 61.) The book's
inference page reports this choice on a fresh pool (seed 62).
"""


def family_permutations(k: int, level: float = 0.95) -> int:
    """Swaps per row for a family of ``k`` rows: ``max(1000, ⌈20 k / (1 − level)⌉)``.

    With ``P`` swaps the smallest permutation p-value is ``1 / (P + 1)``; Holm multiplies the
    smallest of ``k`` by ``k``, so fewer than ``k / (1 − level)`` swaps leave no row able to
    pass. Twenty times that keeps the adjusted p-values' resolution useful.
    """
    return max(1000, int(np.ceil(20 * k / (1 - level))))


FAMILY_COLUMNS = ("row", "arm_a", "arm_b", "value_a", "value_b", "difference", "low_raw",
                  "high_raw", "low", "high", "p_value", "p_holm", "estimable", "reason",
                  "n_subjects", "n_repeats")
"""Columns of :func:`family_inference` (MCC, not percentage points)."""


@dataclass(frozen=True, eq=False)
class Contrast:
    """One paired contrast ``A − B`` of pooled MCC: labels and both arms' probabilities.

    Attributes
    ----------
    labels : ndarray of shape (n,)
        0/1 labels of the test subjects.
    probs_a, probs_b : ndarray of shape (R, n)
        Pooled out-of-fold (or cross-fit) probabilities of class 1, per repeat.
    subjects : tuple
        The subjects' ids in this order; contrasts with equal ``subjects`` are resampled
        jointly.
    arm_a, arm_b : str
        Names of the arms.
    units_a, units_b : ndarray of shape (R_a,) and (R_b,), optional
        Encoder-level contrasts: the unit (an encoder draw) of each row of ``probs_a`` and
        ``probs_b``. An arm's value is then the mean over its units of each unit's mean over
        its rows, the bootstrap also resamples the units of each arm (with replacement), and
        the p-value permutes which units belong to which arm (every split, or 2,000 random
        ones). The arms may then hold different numbers of rows.
    """

    labels: np.ndarray
    probs_a: np.ndarray
    probs_b: np.ndarray
    subjects: tuple
    arm_a: str = "a"
    arm_b: str = "b"
    units_a: np.ndarray | None = None
    units_b: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        probs_a = np.atleast_2d(np.asarray(self.probs_a, dtype=np.float64))
        probs_b = np.atleast_2d(np.asarray(self.probs_b, dtype=np.float64))
        n = len(labels)
        if (self.units_a is None) != (self.units_b is None):
            raise ValueError(f"contrast {self.arm_a} − {self.arm_b}: give the units of both "
                             "arms or of neither")
        units = self.units_a is not None
        if units:
            for name, value, probs in (("units_a", self.units_a, probs_a),
                                       ("units_b", self.units_b, probs_b)):
                if len(np.asarray(value)) != probs.shape[0]:
                    raise ValueError(f"contrast {self.arm_a} − {self.arm_b}: {name} needs one "
                                     f"unit per row ({probs.shape[0]}); got {len(value)}")
            object.__setattr__(self, "units_a", np.asarray(self.units_a))
            object.__setattr__(self, "units_b", np.asarray(self.units_b))
        same_rows = units or probs_a.shape[0] == probs_b.shape[0]
        if (labels.ndim != 1 or n == 0 or not same_rows or probs_a.shape[1] != n
                or probs_b.shape[1] != n or len(self.subjects) != n):
            raise ValueError(f"contrast {self.arm_a} − {self.arm_b}: expected labels [n], "
                             f"probabilities [repeats, n] and n subject ids; got "
                             f"{labels.shape}, {probs_a.shape}, {probs_b.shape} and "
                             f"{len(self.subjects)} ids")
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError(f"contrast {self.arm_a} − {self.arm_b}: labels must be 0/1")
        for name, probs in (("A", probs_a), ("B", probs_b)):
            if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
                raise ValueError(f"contrast {self.arm_a} − {self.arm_b}: arm {name}'s "
                                 "probabilities must be finite and in [0, 1]")
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "probs_a", probs_a)
        object.__setattr__(self, "probs_b", probs_b)
        object.__setattr__(self, "subjects", tuple(self.subjects))


def contrast_from_predictions(predictions: pd.DataFrame, arm_a: str, arm_b: str,
                              subject_ids: Sequence[Any], arm_column: str = "arm") -> Contrast:
    """The :class:`Contrast` of two arms of a long predictions table (a run's predictions).

    Parameters
    ----------
    predictions : DataFrame
        Columns ``arm_column, repeat, participant_id, probability, label``.
    arm_a, arm_b : str
    subject_ids : sequence
        Every subject, in the order of resampling.
    arm_column : str
        The column naming the arm (``"arm"`` in run and generalisation predictions).
    """
    from fmtc.evaluate.paired import _contrast_arrays

    _, labels, probs_a, probs_b = _contrast_arrays(predictions, arm_a, arm_b, subject_ids,
                                                   arm_column)
    return Contrast(labels, probs_a, probs_b, tuple(subject_ids), arm_a, arm_b)


def cross_contrasts(predictions: pd.DataFrame, arm_a: str, arm_b: str
                    ) -> list[tuple[dict[str, Any], Contrast]]:
    """One :class:`Contrast` per cross fit of a generalisation run's predictions.

    Returns
    -------
    list of (key, Contrast)
        ``key`` holds ``scheme``, ``train_on``, ``test_on``; the subjects are sorted by id.
    """
    out = []
    for (scheme, train_on, test_on), part in predictions.groupby(
            ["scheme", "train_on", "test_on"], sort=False):
        subjects = sorted(part.loc[part["arm"] == arm_a, "participant_id"].unique(), key=str)
        if not subjects:
            raise ValueError(f"cross fit {train_on} -> {test_on} ({scheme}) has no predictions "
                             f"of arm {arm_a!r}")
        if "repeat" not in part.columns:
            part = part.assign(repeat=0)
        contrast = contrast_from_predictions(part, arm_a, arm_b, subjects, arm_column="arm")
        out.append(({"scheme": scheme, "train_on": train_on, "test_on": test_on}, contrast))
    return out


# --------------------------------------------------------------------------- MCC from counts


def _mcc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return np.where(denominator > 0, (tp * tn - fp * fn) / np.where(denominator > 0,
                                                                       denominator, 1.0), 0.0)


def _weighted_mcc(weights: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """MCC of each weighting: ``weights [B, n]``, ``predicted [R, n]`` -> ``[B]`` mean over R.

    A bootstrap draw is a vector of subject counts: its confusion matrix is a weighted sum.
    """
    return _row_mcc(weights, labels, predicted).mean(axis=1)


def _row_mcc(weights: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """:func:`_weighted_mcc` before the mean over rows: ``[B, R]``."""
    positive = labels.astype(np.float64)
    negative = 1.0 - positive
    hit = predicted.astype(np.float64).T  # [n, R]
    miss = 1.0 - hit
    tp = weights @ (hit * positive[:, None])
    fp = weights @ (hit * negative[:, None])
    fn = weights @ (miss * positive[:, None])
    tn = weights @ (miss * negative[:, None])
    return _mcc(tp, fp, fn, tn)


def _unit_means(row_values: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the mean of its rows' values: ``[B, R]`` -> ``([B, U], unit ids)``."""
    ids = np.unique(units)
    return np.stack([row_values[:, units == u].mean(axis=1) for u in ids], axis=1), ids


def _unit_resampled(means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each draw's mean over units drawn with replacement: ``[B, U]`` -> ``[B]``."""
    n_draws, n_units = means.shape
    counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_draws)
    return (counts * means).sum(axis=1) / n_units


UNIT_PERMUTATIONS = 2000
"""Random unit splits of an encoder-level p-value when there are more splits than this."""


def _unit_permutation_p(means_a: np.ndarray, means_b: np.ndarray, seed: int) -> float:
    """Two-sided p of "the units' arm does not matter": every split of the units, or a sample.

    ``means_a`` and ``means_b`` are the units' full-sample values.
    """
    from itertools import combinations
    from math import comb

    pooled = np.concatenate([means_a, means_b])
    k, total = len(means_a), len(pooled)
    observed = abs(means_a.mean() - means_b.mean())
    if comb(total, k) <= UNIT_PERMUTATIONS:
        splits = [np.isin(np.arange(total), chosen) for chosen in combinations(range(total), k)]
    else:
        rng = np.random.default_rng([int(seed), 4])
        splits = [np.isin(np.arange(total), rng.choice(total, k, replace=False))
                  for _ in range(UNIT_PERMUTATIONS)]
    stats = np.array([abs(pooled[mask].mean() - pooled[~mask].mean()) for mask in splits])
    return float(np.mean(stats >= observed - 1e-12))


def _swapped_mcc(swaps: np.ndarray, labels: np.ndarray, hit_a: np.ndarray, hit_b: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each arm's MCC after swapping the arms' predictions of the subjects in ``swaps [P, n]``."""
    positive = labels.astype(np.float64)
    negative = 1.0 - positive
    s = swaps.astype(np.float64)
    keep = 1.0 - s
    n_pos, n_neg = positive.sum(), negative.sum()
    out = []
    for own, other in ((hit_a, hit_b), (hit_b, hit_a)):
        hit_own, hit_other = own.T.astype(np.float64), other.T.astype(np.float64)  # [n, R]
        tp = keep @ (hit_own * positive[:, None]) + s @ (hit_other * positive[:, None])
        fp = keep @ (hit_own * negative[:, None]) + s @ (hit_other * negative[:, None])
        out.append(_mcc(tp, fp, n_pos - tp, n_neg - fp).mean(axis=1))
    return out[0], out[1]


def _stream(seed: int, subjects: tuple, purpose: int) -> np.random.Generator:
    digest = hashlib.sha256(repr(subjects).encode()).digest()
    return np.random.default_rng([int(seed), purpose, int.from_bytes(digest[:8], "little")])


# --------------------------------------------------------------------------- intervals


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[k]))
        out[k] = running
    return out


def simultaneous_bounds(draws: np.ndarray, estimates: np.ndarray, level: float,
                        method: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Bounds of each row from joint bootstrap draws.

    Parameters
    ----------
    draws : ndarray of shape (B, K)
        Bootstrap draws of the K differences (NaN where a draw is undefined).
    estimates : ndarray of shape (K,)
    level : float
        Joint coverage (``percentile``: each row's own coverage).
    method : str
        One of :data:`METHODS`.

    Returns
    -------
    (low, high, critical)
        ``critical`` is the studentised quantile of ``max-t``, the per-row two-sided tail of
        ``rectangle`` and ``bonferroni``, and ``1 − level`` for ``percentile``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; expected one of {METHODS}")
    draws = np.asarray(draws, dtype=np.float64)
    estimates = np.asarray(estimates, dtype=np.float64)
    k = draws.shape[1]
    alpha = 1.0 - level
    live = np.isfinite(estimates) & (np.isfinite(draws).sum(axis=0) > 1)
    low, high = np.full(k, np.nan), np.full(k, np.nan)
    if not live.any():
        return low, high, np.nan

    def percentile(tail: float) -> tuple[np.ndarray, np.ndarray]:
        part = draws[:, live]
        lo = np.nanpercentile(part, 100 * tail / 2, axis=0)
        hi = -np.nanpercentile(-part, 100 * tail / 2, axis=0)
        return lo, hi

    if method == "percentile":
        low[live], high[live] = percentile(alpha)
        return low, high, alpha
    if method == "bonferroni":
        tail = alpha / int(live.sum())
        low[live], high[live] = percentile(tail)
        return low, high, tail
    if method == "max-t":
        part = draws[:, live]
        se = np.nanstd(part, axis=0, ddof=1)
        spread = se > 0
        deviation = np.abs(part - estimates[live]) / np.where(spread, se, 1.0)
        deviation[:, ~spread] = 0.0
        worst = np.nanmax(np.where(np.isfinite(deviation), deviation, 0.0), axis=1)
        critical = float(np.quantile(worst, level, method="higher"))
        low[live] = estimates[live] - critical * se
        high[live] = estimates[live] + critical * se
        return low, high, critical
    # rectangle: the deepest common order statistic whose box holds `level` of the draws.
    # A draw's depth is its smallest distance (in ranks) to either end of any row's sorted
    # draws; the box between the c-th smallest and c-th largest draw of every row holds exactly
    # the draws of depth >= c.
    part = draws[:, live]
    part = part[np.all(np.isfinite(part), axis=1)]
    count = len(part)
    ranks = np.argsort(np.argsort(part, axis=0, kind="stable"), axis=0, kind="stable")
    depth = np.minimum(ranks, count - 1 - ranks).min(axis=1)
    # The largest c with at least `level` of the draws at depth >= c.
    ordered = np.sort(depth)[::-1]
    needed = int(np.ceil(level * count))
    depth_c = int(ordered[needed - 1]) if needed >= 1 else 0
    ordered_rows = np.sort(part, axis=0)
    low[live] = ordered_rows[depth_c]
    high[live] = ordered_rows[count - 1 - depth_c]
    return low, high, 2 * depth_c / count


def family_inference(contrasts: Sequence[Contrast], *, method: str = FAMILY_METHOD,
                     n_bootstrap: int = 1000, n_permutations: int = 1000, level: float = 0.95,
                     nominal: float | None = None, seed: int = 0,
                     names: Sequence[str] | None = None,
                     return_draws: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Raw and simultaneous intervals, permutation and Holm p-values of a family of contrasts.

    Parameters
    ----------
    contrasts : sequence of Contrast
        The family (every row of a claims table).
    method : str
        Simultaneous method (:data:`METHODS`).
    n_bootstrap, n_permutations : int
        Joint subject resamples; per-subject swaps per row (0: no p-values).
    level : float
        Coverage of the raw intervals, and the joint coverage aimed at.
    nominal : float, optional
        The level the simultaneous bounds are computed at (default ``level``); a higher one
        corrects a method that under-covers (:data:`FAMILY_NOMINAL`).
    seed : int
    names : sequence of str, optional
        Row names (default ``"A − B"``).
    return_draws : bool
        Also return the bootstrap draws ``[B, K]``.

    Returns
    -------
    DataFrame
        Columns :data:`FAMILY_COLUMNS`, one row per contrast; ``attrs`` holds ``method``,
        ``critical``, ``level``, ``n_bootstrap`` and ``n_permutations``. A row whose arm
        predicts a single class in every repeat is not estimable (its MCC of 0 is a
        convention, not an estimate): its bounds are NaN and it does not enter the maximum.
    """
    if not contrasts:
        raise ValueError("a family needs at least one contrast")
    if not 0 < level < 1 or n_bootstrap < 2 or n_permutations < 0:
        raise ValueError(f"level must be in (0, 1), n_bootstrap >= 2 and n_permutations >= 0; "
                         f"got {level}, {n_bootstrap}, {n_permutations}")
    k = len(contrasts)
    names = [f"{c.arm_a} − {c.arm_b}" for c in contrasts] if names is None else list(names)
    draws = np.full((n_bootstrap, k), np.nan)
    estimates, values, estimable, reasons, p_values = [], [], [], [], []
    groups: dict[tuple, np.ndarray] = {}
    for row, c in enumerate(contrasts):
        hit_a, hit_b = c.probs_a >= 0.5, c.probs_b >= 0.5
        n = len(c.labels)
        ones = np.ones((1, n))
        by_unit = c.units_a is not None
        if by_unit:
            full_a = _unit_means(_row_mcc(ones, c.labels, hit_a), c.units_a)[0][0]
            full_b = _unit_means(_row_mcc(ones, c.labels, hit_b), c.units_b)[0][0]
            value_a, value_b = float(full_a.mean()), float(full_b.mean())
        else:
            value_a = float(_weighted_mcc(ones, c.labels, hit_a)[0])
            value_b = float(_weighted_mcc(ones, c.labels, hit_b)[0])
        values.append((value_a, value_b))
        single = [name for name, hit in (("A", hit_a), ("B", hit_b))
                  if np.all(hit.all(axis=1) | (~hit).all(axis=1))]
        reason = ""
        if single:
            both = len(single) > 1
            reason = (f"arm{'s' if both else ''} {' and '.join(single)} "
                      f"predict{'' if both else 's'} a single class in every repeat: "
                      f"{'their' if both else 'its'} MCC of 0 is a convention, not an estimate")
        elif len(np.unique(c.labels)) < 2:
            reason = "the test subjects hold a single class"
        estimable.append(not reason)
        reasons.append(reason)
        estimates.append(value_a - value_b if not reason else np.nan)
        if reason:
            p_values.append(np.nan)
            continue
        if c.subjects not in groups:
            rng = _stream(seed, c.subjects, 1)
            groups[c.subjects] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap
                                                 ).astype(np.float64)
        weights = groups[c.subjects]
        if by_unit:
            units_rng = _stream(seed, (c.subjects, c.arm_a, c.arm_b), 3)
            means_a = _unit_means(_row_mcc(weights, c.labels, hit_a), c.units_a)[0]
            means_b = _unit_means(_row_mcc(weights, c.labels, hit_b), c.units_b)[0]
            draws[:, row] = (_unit_resampled(means_a, units_rng)
                             - _unit_resampled(means_b, units_rng))
            p_values.append(_unit_permutation_p(full_a, full_b, seed) if n_permutations
                            else np.nan)
            continue
        draws[:, row] = (_weighted_mcc(weights, c.labels, hit_a)
                         - _weighted_mcc(weights, c.labels, hit_b))
        if n_permutations:
            swaps = _stream(seed, c.subjects, 2).random((n_permutations, n)) < 0.5
            null_a, null_b = _swapped_mcc(swaps, c.labels, hit_a, hit_b)
            exceed = int(np.sum(np.abs(null_a - null_b) >= abs(value_a - value_b) - 1e-12))
            p_values.append((1 + exceed) / (1 + n_permutations))
        else:
            p_values.append(np.nan)
    estimates = np.asarray(estimates, dtype=np.float64)
    raw_low, raw_high, _ = simultaneous_bounds(draws, estimates, level, "percentile")
    nominal = level if nominal is None else nominal
    if not 0 < nominal < 1:
        raise ValueError(f"nominal must be in (0, 1); got {nominal}")
    low, high, critical = simultaneous_bounds(draws, estimates, nominal, method)
    table = pd.DataFrame({
        "row": names,
        "arm_a": [c.arm_a for c in contrasts], "arm_b": [c.arm_b for c in contrasts],
        "value_a": [v[0] for v in values], "value_b": [v[1] for v in values],
        "difference": estimates, "low_raw": raw_low, "high_raw": raw_high,
        "low": low, "high": high, "p_value": p_values, "p_holm": holm(p_values),
        "estimable": estimable, "reason": reasons,
        "n_subjects": [len(c.labels) for c in contrasts],
        "n_repeats": [c.probs_a.shape[0] for c in contrasts],
    }, columns=list(FAMILY_COLUMNS))
    table.attrs.update(method=method, critical=critical, level=level, nominal=nominal,
                       n_bootstrap=n_bootstrap, n_permutations=n_permutations)
    return (table, draws) if return_draws else table
