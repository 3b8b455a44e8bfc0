"""Paired differences between two arms of one experiment: subject bootstrap and swap test.

Two arms (model variants) evaluated on identical cross-validation splits of one
cohort are compared through the difference of their metric, each arm's metric
being that of a repeat's pooled out-of-fold predictions averaged over repeats.

- The interval resamples subjects with replacement, the same subjects for both
  arms and every repeat, the models kept fixed: it reflects which subjects were
  sampled, not retraining variability.
- The two-sided permutation p-value tests the null *the two arms' out-of-fold
  predictions are exchangeable per subject*: each permutation swaps the arms'
  predictions of a random half of the subjects (the same swap in every repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fmtc.evaluate.metrics import METRICS, binary_metrics_batch
from fmtc.evaluate.uncertainty import _nanmean_rows

PREDICTION_COLUMNS = ("repeat", "participant_id", "probability", "label")
"""Columns a predictions table needs besides the arm column."""

SUMMARY_COLUMNS = ("arm_a", "arm_b", "metric", "value_a", "value_b", "difference",
                   "difference_pp", "low", "high", "low_pp", "high_pp", "p_value", "n_repeats",
                   "n_subjects")
PER_REPEAT_COLUMNS = ("arm_a", "arm_b", "repeat", "value_a", "value_b", "difference")


@dataclass(frozen=True, eq=False)
class PairedDifference:
    """Difference ``A - B`` of one metric between two arms, with interval and p-value.

    Attributes
    ----------
    metric : str
    value_a, value_b : float
        Metric of each arm, averaged over repeats.
    difference : float
        ``value_a - value_b``.
    per_repeat : ndarray of shape (R,)
        Metric of A minus that of B in each repeat.
    low, high : float
        Paired subject-bootstrap percentile interval of ``difference``.
    p_value : float
        Two-sided paired permutation (swap) p-value.
    n_bootstrap, n_permutations : int
    level : float
        Coverage of the interval.
    """

    metric: str
    value_a: float
    value_b: float
    difference: float
    per_repeat: np.ndarray
    low: float
    high: float
    p_value: float
    n_bootstrap: int
    n_permutations: int
    level: float

    @property
    def difference_pp(self) -> float:
        """``difference`` in percentage points."""
        return 100.0 * self.difference

    @property
    def low_pp(self) -> float:
        """``low`` in percentage points."""
        return 100.0 * self.low

    @property
    def high_pp(self) -> float:
        """``high`` in percentage points."""
        return 100.0 * self.high

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, ints and lists (JSON-friendly; NaN stays NaN)."""
        return {
            "metric": self.metric,
            "value_a": float(self.value_a),
            "value_b": float(self.value_b),
            "difference": float(self.difference),
            "difference_pp": float(self.difference_pp),
            "per_repeat": [float(v) for v in self.per_repeat],
            "low": float(self.low),
            "high": float(self.high),
            "low_pp": float(self.low_pp),
            "high_pp": float(self.high_pp),
            "p_value": float(self.p_value),
            "n_bootstrap": int(self.n_bootstrap),
            "n_permutations": int(self.n_permutations),
            "level": float(self.level),
        }


def _check_paired(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs_a = np.asarray(probs_a, dtype=np.float64)
    probs_b = np.asarray(probs_b, dtype=np.float64)
    if probs_a.ndim == 1:
        probs_a = probs_a[None, :]
    if probs_b.ndim == 1:
        probs_b = probs_b[None, :]
    if (labels.ndim != 1 or len(labels) == 0 or probs_a.ndim != 2
            or probs_a.shape != probs_b.shape or probs_a.shape[0] == 0
            or probs_a.shape[1] != len(labels)):
        raise ValueError(f"expected labels [n] and probs_a, probs_b [repeats, n] (n > 0); got "
                         f"{labels.shape}, {probs_a.shape} and {probs_b.shape}")
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError(f"labels must be 0/1; got values {np.unique(labels)[:10].tolist()}")
    for name, probs in (("probs_a", probs_a), ("probs_b", probs_b)):
        if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
            raise ValueError(f"{name} must be finite probabilities in [0, 1]")
    return labels.astype(np.int64), probs_a, probs_b


def _arm_means(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
               metric: str) -> np.ndarray:
    """``labels [B, n]``, ``probs [B, R, n]`` -> ``[2, B]``: each arm's repeat-averaged metric."""
    draws, repeats, n = probs_a.shape
    tiled = np.repeat(labels, repeats, axis=0)
    out = np.empty((2, draws))
    for row, probs in enumerate((probs_a, probs_b)):
        values = binary_metrics_batch(tiled, probs.reshape(draws * repeats, n))[metric]
        out[row] = _nanmean_rows(values.reshape(draws, repeats))
    return out


def paired_difference(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, *,
                      metric: str = "mcc", n_bootstrap: int = 1000, n_permutations: int = 1000,
                      seed: int = 0, level: float = 0.95, chunk: int = 256) -> PairedDifference:
    """Difference of a repeat-averaged metric between two arms, with paired uncertainty.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        True 0/1 labels.
    probs_a, probs_b : ndarray of shape (R, n) or (n,)
        Pooled out-of-fold probabilities of class 1 of each arm and repeat, in
        the same subject order.
    metric : str
        One of :data:`~fmtc.evaluate.metrics.METRICS`.
    n_bootstrap : int
        Paired subject resamples; 0 gives NaN bounds.
    n_permutations : int
        Per-subject swaps of the arms; 0 gives a NaN p-value.
    seed : int
        Seeds both streams (two children of ``SeedSequence(seed)``: bootstrap, swaps).
    level : float
        Coverage of the percentile interval.
    chunk : int
        Draws evaluated at once (does not change the result).

    Returns
    -------
    PairedDifference
        Swapping the arms negates the difference, every draw and the interval.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_bootstrap < 0 or n_permutations < 0 or chunk < 1:
        raise ValueError(f"n_bootstrap ({n_bootstrap}) and n_permutations ({n_permutations}) "
                         f"must be >= 0 and chunk ({chunk}) >= 1")
    labels, probs_a, probs_b = _check_paired(labels, probs_a, probs_b)
    repeats, n = probs_a.shape
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    per_arm = binary_metrics_batch(np.repeat(labels[None, :], 2 * repeats, axis=0),
                                   np.concatenate([probs_a, probs_b]))[metric]
    per_repeat = per_arm[:repeats] - per_arm[repeats:]
    value_a, value_b = _nanmean_rows(per_arm.reshape(2, repeats))
    difference = value_a - value_b

    low = high = np.nan
    if n_bootstrap:
        index = boot_rng.integers(0, n, size=(n_bootstrap, n))
        draws = []
        for start in range(0, n_bootstrap, chunk):
            idx = index[start:start + chunk]
            # [size, R, n]: the same subjects for both arms and every repeat.
            means = _arm_means(labels[idx], probs_a[:, idx].transpose(1, 0, 2),
                               probs_b[:, idx].transpose(1, 0, 2), metric)
            draws.append(means[0] - means[1])
        values = np.concatenate(draws)
        values = values[np.isfinite(values)]
        if len(values):
            tail = 50 * (1 - level)
            # The upper bound as the mirrored lower one, so swapping the arms mirrors exactly.
            low = float(np.percentile(values, tail)) + 0.0
            high = float(-np.percentile(-values, tail)) + 0.0

    p_value = np.nan
    if n_permutations and np.isfinite(difference):
        swap = perm_rng.random((n_permutations, n)) < 0.5
        exceed = 0
        for start in range(0, n_permutations, chunk):
            mask = swap[start:start + chunk, None, :]  # the same swap for every repeat
            size = len(mask)
            means = _arm_means(np.repeat(labels[None, :], size, axis=0),
                               np.where(mask, probs_b, probs_a), np.where(mask, probs_a, probs_b),
                               metric)
            null = means[0] - means[1]
            # A small tolerance counts float ties (e.g. equal MCCs) as ties, not as wins.
            exceed += int(np.sum(np.abs(null) >= abs(difference) - 1e-12))
        p_value = (1 + exceed) / (1 + n_permutations)

    per_repeat.setflags(write=False)
    return PairedDifference(metric=metric, value_a=float(value_a), value_b=float(value_b),
                            difference=float(difference), per_repeat=per_repeat,
                            low=low, high=high, p_value=float(p_value),
                            n_bootstrap=int(n_bootstrap), n_permutations=int(n_permutations),
                            level=float(level))


# --------------------------------------------------------------------------- tables


def _arm_table(predictions: pd.DataFrame, arm: Any, subject_ids: list[Any],
               arm_column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``repeats [R]``, ``labels [n]``, ``probabilities [R, n]`` of one arm in subject order."""
    part = predictions[predictions[arm_column] == arm]
    if part.empty:
        raise ValueError(f"arm {arm!r} has no predictions in column {arm_column!r}")
    if part.duplicated(["repeat", "participant_id"]).any():
        raise ValueError(f"arm {arm!r} has more than one prediction for a subject in a repeat")
    unknown = sorted(set(part["participant_id"]) - set(subject_ids), key=str)
    if unknown:
        raise ValueError(f"arm {arm!r} has predictions for subjects not in subject_ids: "
                         f"{unknown[:5]}")
    table = part.pivot(index="participant_id", columns="repeat", values="probability")
    table = table.reindex(subject_ids)
    missing = table.isna()
    if missing.to_numpy().any():
        repeats = [r for r in table.columns if missing[r].any()]
        raise ValueError(f"arm {arm!r} lacks predictions for some subjects in repeats {repeats}")
    if (part.groupby("participant_id")["label"].nunique() > 1).any():
        raise ValueError(f"arm {arm!r} gives a subject different labels across repeats")
    labels = part.drop_duplicates("participant_id").set_index("participant_id")["label"]
    return (table.columns.to_numpy(), labels.reindex(subject_ids).to_numpy(dtype=np.int64),
            table.to_numpy(dtype=np.float64).T)


def _contrast_arrays(predictions: pd.DataFrame, arm_a: Any, arm_b: Any,
                     subject_ids: Sequence[Any], arm_column: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in (arm_column, *PREDICTION_COLUMNS) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    subjects = list(subject_ids)
    if not subjects or len(set(subjects)) != len(subjects):
        raise ValueError("subject_ids must be non-empty and without duplicates")
    repeats_a, labels_a, probs_a = _arm_table(predictions, arm_a, subjects, arm_column)
    repeats_b, labels_b, probs_b = _arm_table(predictions, arm_b, subjects, arm_column)
    if not np.array_equal(repeats_a, repeats_b):
        raise ValueError(f"arms {arm_a!r} and {arm_b!r} have different repeats: "
                         f"{repeats_a.tolist()} and {repeats_b.tolist()}")
    if not np.array_equal(labels_a, labels_b):
        raise ValueError(f"arms {arm_a!r} and {arm_b!r} give some subjects different labels")
    return repeats_a, labels_a, probs_a, probs_b


def paired_differences(predictions: pd.DataFrame, contrasts: Sequence[tuple[Any, Any]],
                       subject_ids: Sequence[Any], *, metric: str = "mcc",
                       n_bootstrap: int = 1000, n_permutations: int = 1000, seed: int = 0,
                       level: float = 0.95, arm_column: str = "arm") -> pd.DataFrame:
    """:func:`paired_difference` of each contrast of a long predictions table.

    Parameters
    ----------
    predictions : DataFrame
        Columns ``arm_column, repeat, fold, participant_id, probability, label``;
        one row per arm, repeat and test subject.
    contrasts : sequence of (arm_a, arm_b)
        Pairs to compare, as ``A - B``.
    subject_ids : sequence
        Every subject, in the order used for resampling.
    metric, n_bootstrap, n_permutations, seed, level
        As in :func:`paired_difference`; every contrast uses the same ``seed``.
    arm_column : str
        Column naming the arm (``"model"`` in a run's ``predictions.csv``).

    Returns
    -------
    DataFrame
        One row per contrast, columns :data:`SUMMARY_COLUMNS`.
    """
    rows = []
    for arm_a, arm_b in contrasts:
        _, labels, probs_a, probs_b = _contrast_arrays(predictions, arm_a, arm_b, subject_ids,
                                                       arm_column)
        result = paired_difference(labels, probs_a, probs_b, metric=metric,
                                   n_bootstrap=n_bootstrap, n_permutations=n_permutations,
                                   seed=seed, level=level)
        rows.append((arm_a, arm_b, metric, result.value_a, result.value_b, result.difference,
                     result.difference_pp, result.low, result.high, result.low_pp,
                     result.high_pp, result.p_value, probs_a.shape[0], probs_a.shape[1]))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def per_repeat_differences(predictions: pd.DataFrame, contrasts: Sequence[tuple[Any, Any]],
                           subject_ids: Sequence[Any], metric: str = "mcc",
                           arm_column: str = "arm") -> pd.DataFrame:
    """Each arm's pooled metric and their difference, per contrast and repeat.

    Parameters
    ----------
    predictions, contrasts, subject_ids, metric, arm_column
        As in :func:`paired_differences`.

    Returns
    -------
    DataFrame
        Columns :data:`PER_REPEAT_COLUMNS`, one row per contrast and repeat.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    rows = []
    for arm_a, arm_b in contrasts:
        repeats, labels, probs_a, probs_b = _contrast_arrays(predictions, arm_a, arm_b,
                                                             subject_ids, arm_column)
        labels, probs_a, probs_b = _check_paired(labels, probs_a, probs_b)
        tiled = np.repeat(labels[None, :], len(repeats), axis=0)
        values_a = binary_metrics_batch(tiled, probs_a)[metric]
        values_b = binary_metrics_batch(tiled, probs_b)[metric]
        rows.extend((arm_a, arm_b, repeat, float(a), float(b), float(a - b))
                    for repeat, a, b in zip(repeats, values_a, values_b, strict=True))
    return pd.DataFrame(rows, columns=list(PER_REPEAT_COLUMNS))
