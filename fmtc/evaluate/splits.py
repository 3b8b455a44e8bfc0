"""Subject-level stratified k-fold splits, repeated with one seed per repeat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmtc.errors import InvalidDataError


@dataclass(frozen=True)
class Split:
    """One outer fold of one repeat: indices into the cohort's subject order."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def check_class_counts(labels: np.ndarray, folds: int, where: str = "the cohort") -> None:
    """Raise :class:`~fmtc.errors.InvalidDataError` unless every test fold can hold both classes.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        0/1 label per subject.
    folds : int
        Outer folds requested (``evaluation.folds``).
    where : str
        What the labels belong to, for the message (e.g. the cohort folder).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    if counts.min() == 0:
        only = int(np.argmax(counts))
        raise InvalidDataError(
            f"{where}: all {int(counts.sum())} labelled subjects have label {only}; a response "
            "model needs both classes. Check the label column (--label, plan key data.label)")
    smallest = int(counts.min())
    if smallest < folds:
        advice = (f"lower evaluation.folds to {smallest} or fewer" if smallest >= 2
                  else "add subjects of that class (cross-validation needs at least 2)")
        raise InvalidDataError(
            f"{where}: {int(counts[0])} subjects with label 0 and {int(counts[1])} with label 1; "
            f"{folds}-fold stratified cross-validation needs at least {folds} of each, so that "
            f"every test fold holds both classes. {advice[0].upper()}{advice[1:]}")


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
    check_class_counts(labels, folds)
    splits = []
    for repeat in range(repeats):
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            splits.append(Split(repeat, fold, np.sort(train), np.sort(test)))
    return splits


CV_SCHEMES = ("stratified_repeated", "unshuffled_single")
"""``protocol.cv``: repeated shuffled stratified k-fold (honest) or the authors' single one."""


def unshuffled_splits(labels: np.ndarray, folds: int) -> list[Split]:
    """The authors' split: one ``StratifiedKFold(n_splits=folds, shuffle=False)``.

    As in ``FMM_TC-tutorial.ipynb`` (``StratifiedKFold(n_splits=kfold,
    shuffle=False).split(dataset.features, dataset.labels)``): no shuffling, one repeat, so
    each class's subjects go to the test folds in contiguous blocks of the cohort's subject
    order (their order is the sorted ``.dat`` file names).

    Returns
    -------
    list of Split
        ``folds`` splits of repeat 0.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    check_class_counts(labels, folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=False)
    return [Split(0, fold, np.sort(train), np.sort(test))
            for fold, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels))]


def outer_splits(labels: np.ndarray, folds: int, repeats: int, seed: int,
                 cv: str = "stratified_repeated") -> list[Split]:
    """The outer splits of ``protocol.cv``: :func:`stratified_splits` or :func:`unshuffled_splits`
    (``repeats`` and ``seed`` are then unused)."""
    if cv == "stratified_repeated":
        return stratified_splits(labels, folds, repeats, seed)
    if cv == "unshuffled_single":
        return unshuffled_splits(labels, folds)
    raise ValueError(f"unknown cv {cv!r}; use one of {list(CV_SCHEMES)}")
