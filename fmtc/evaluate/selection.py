"""Choosing the training epoch of a fold from its logged trajectory: honest vs the paper's rule.

Both rules read the same per-epoch predictions (:class:`fmtc.predict.training.TrainingLog`),
so a fold is trained once and both selections come for free.

``honest``
    Never reads the test fold. With ``evaluation.honest_epoch: last`` (default) it
    is the last epoch of the declared schedule (``train.epochs``; the cosine
    schedule has annealed to zero), the model trained on the whole training fold.
    With ``honest_epoch: validation`` it is the epoch with the highest MCC on the
    inner validation subjects (a stratified part of the training fold,
    ``evaluation.inner_validation_fraction``); ties go to the lower validation
    cross-entropy, then to the later epoch. With ~10 validation subjects that
    MCC moves in steps of ~0.2, so on cohorts of paper size the choice is mostly
    noise; the fixed schedule is the default for that reason.
``paper``
    The epoch with the highest MCC on the test fold itself, the first such epoch
    as in the authors' loop (Fan et al., MICCAI 2025; ``FMM_TC-tutorial.ipynb``:
    ``best_mcc = 0``, ``best_epoch = 0``, then ``if mcc > best_mcc: best_mcc = mcc;
    best_epoch = epoch``). An epoch must beat MCC 0 to be chosen: when no epoch
    does, their ``best_epoch`` stays 0, and so does this rule's. It reads the
    labels it is then scored on, so its score is optimistic; it is kept only to
    measure that optimism.

Both rules are consistent on prefixes: the epoch a rule picks on the whole
trajectory is also the one it picks on the trajectory up to that epoch, which is
what lets the training loop keep only the chosen weights in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SELECTIONS = ("honest", "paper")


def _mcc_per_epoch(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    from sklearn.metrics import matthews_corrcoef

    predicted = (np.asarray(probabilities) >= 0.5).astype(np.int64)
    return np.array([matthews_corrcoef(labels, row) for row in predicted])


def _cross_entropy_per_epoch(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -np.mean(np.where(labels == 1, np.log(p), np.log1p(-p)), axis=1)


def _check_trajectory(labels: np.ndarray,
                      probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(labels) or len(probabilities) == 0:
        raise ValueError(f"expected per-epoch probabilities [epochs >= 1, {len(labels)}], "
                         f"got {probabilities.shape}")
    return labels, probabilities


def honest_selection(val_labels: np.ndarray, val_probabilities: np.ndarray) -> int:
    """Epoch (0-based) chosen on the inner validation subjects only.

    Parameters
    ----------
    val_labels : ndarray of shape (n_val,)
    val_probabilities : ndarray of shape (epochs, n_val)

    Returns
    -------
    int
        Highest MCC; ties: lower cross-entropy, then the later epoch.
    """
    labels, probs = _check_trajectory(val_labels, val_probabilities)
    mcc = _mcc_per_epoch(labels, probs)
    loss = _cross_entropy_per_epoch(labels, probs)
    epochs = np.arange(len(probs))
    # lexsort: last key is primary; ascending, so take the last element.
    return int(np.lexsort((epochs, -loss, mcc))[-1])


def paper_selection(test_labels: np.ndarray, test_probabilities: np.ndarray) -> int:
    """Epoch (0-based) with the best MCC on the test fold, the first one on ties (authors' rule).

    The authors' ``best_mcc`` starts at 0 and only ``mcc > best_mcc`` replaces it, so an
    epoch is chosen only if its MCC exceeds 0; when none does, ``best_epoch`` keeps its
    initial value, epoch 0.

    Parameters
    ----------
    test_labels : ndarray of shape (n_test,)
    test_probabilities : ndarray of shape (epochs, n_test)

    Returns
    -------
    int
    """
    labels, probs = _check_trajectory(test_labels, test_probabilities)
    mcc = _mcc_per_epoch(labels, probs)
    best = int(np.argmax(mcc))
    return best if mcc[best] > 0 else 0


def select_epoch(selection: str, val_labels: np.ndarray, val_probabilities: np.ndarray,
                 test_labels: np.ndarray, test_probabilities: np.ndarray,
                 honest_epoch: str = "validation") -> int:
    """Dispatch to :func:`honest_selection`, the last epoch, or :func:`paper_selection`.

    ``honest_epoch`` (``"validation"`` or ``"last"``) is the honest rule; see the module
    docstring.
    """
    if selection == "honest":
        if honest_epoch == "last":
            return len(test_probabilities) - 1
        if honest_epoch != "validation":
            raise ValueError(f"unknown honest_epoch {honest_epoch!r}; use 'last' or 'validation'")
        return honest_selection(val_labels, val_probabilities)
    if selection == "paper":
        return paper_selection(test_labels, test_probabilities)
    raise ValueError(f"unknown selection {selection!r}; use one of {list(SELECTIONS)}")


def snapshot_rule(selections: list[str], val_labels: np.ndarray, test_labels: np.ndarray,
                  honest_epoch: str = "validation"):
    """The training loop's ``snapshot`` callback: which selections pick the latest epoch."""

    def rule(val_probabilities: np.ndarray, test_probabilities: np.ndarray) -> list[str]:
        last = len(test_probabilities) - 1
        return [name for name in selections
                if select_epoch(name, val_labels, val_probabilities, test_labels,
                                test_probabilities, honest_epoch) == last]

    return rule


def trajectory_table(val_labels: np.ndarray, val_probabilities: np.ndarray | None,
                     test_labels: np.ndarray, test_probabilities: np.ndarray | None,
                     train_loss: list[float], lr: list[float]) -> dict[str, np.ndarray]:
    """Per-epoch columns of ``trajectories.csv``: losses, MCC and AUC on validation and test.

    Validation columns are NaN without an inner validation split (``honest_epoch: last``), test
    columns without the fit's test trajectory (it is logged only when the paper's selection
    needs it).
    """
    from sklearn.metrics import roc_auc_score

    epochs = len(train_loss)
    missing = np.full(epochs, np.nan)

    def auc(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
        if len(np.unique(labels)) < 2:
            return missing
        return np.array([roc_auc_score(labels, row) for row in probs])

    def scores(prefix: str, labels: np.ndarray, probs: np.ndarray | None) -> dict[str, Any]:
        if probs is None or len(labels) == 0:
            return {f"{prefix}_loss": missing, f"{prefix}_mcc": missing,
                    f"{prefix}_auc": missing}
        return {f"{prefix}_loss": _cross_entropy_per_epoch(labels, probs),
                f"{prefix}_mcc": _mcc_per_epoch(labels, probs),
                f"{prefix}_auc": auc(labels, probs)}

    return {"epoch": np.arange(epochs), "lr": np.asarray(lr),
            "train_loss": np.asarray(train_loss),
            **scores("val", val_labels, val_probabilities),
            **scores("test", test_labels, test_probabilities)}
