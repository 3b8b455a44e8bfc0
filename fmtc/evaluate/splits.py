"""Subject-level stratified k-fold splits, repeated with one seed per repeat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """One outer fold of one repeat: indices into the cohort's subject order."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def stratified_splits(labels: np.ndarray, folds: int, repeats: int, seed: int) -> list[Split]:
    """Repeated stratified k-fold over subjects.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        0/1 label per subject.
    folds, repeats : int
        k and the number of repeats; repeat ``r`` shuffles with seed ``seed + r``.
    seed : int
        Base seed.

    Returns
    -------
    list of Split
        ``repeats * folds`` splits, repeat-major.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    smallest = int(np.bincount(labels, minlength=2).min())
    if smallest < folds:
        raise ValueError(f"{folds}-fold stratified CV needs at least {folds} subjects per class; "
                         f"the smaller class has {smallest}. Lower evaluation.folds.")
    splits = []
    for repeat in range(repeats):
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            splits.append(Split(repeat, fold, np.sort(train), np.sort(test)))
    return splits
