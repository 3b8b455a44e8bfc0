"""Binary metrics of the paper (ACC, BACC, F1, AUC, MCC) plus sensitivity and specificity.

Names follow the long-form ``metrics.csv`` of a run: ``acc, bacc, f1, auc, mcc,
sensitivity, specificity``. F1 is macro-averaged over the two classes, as in the
authors' code; AUC is computed on probabilities (``auc="on_logit"``: on the class-1
logit, as the authors' ``roc_auc_score(labels_list, logits_list[:, 1])``), the others
on the 0.5 threshold.
"""

from __future__ import annotations

import numpy as np

METRICS = ("acc", "bacc", "f1", "auc", "mcc", "sensitivity", "specificity")


AUC_SCORES = ("on_probability", "on_logit")
"""``protocol.auc``: what the AUC ranks."""


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray,
                   threshold: float = 0.5, auc: str = "on_probability",
                   logits: np.ndarray | None = None) -> dict[str, float]:
    """Compute every metric of :data:`METRICS` for one set of predictions.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        True 0/1 labels.
    probabilities : ndarray of shape (n,)
        Predicted probability of class 1.
    threshold : float
        Probability at or above which class 1 is predicted.
    auc : {"on_probability", "on_logit"}
        ``on_logit`` (``protocol.auc``): the AUC ranks ``logits[:, 1]``, the class-1 logit
        alone, as the authors' ``roc_auc_score(labels_list, logits_list[:, 1])``
        (``FMM_TC-tutorial.ipynb``). That is not a monotone function of the probability
        ``softmax(logits)[:, 1]`` (which depends on ``logit_1 - logit_0``), so the two AUCs
        differ. The other metrics are unchanged (theirs threshold ``argmax(logits)``, the same
        as probability >= 0.5 up to ties).
    logits : ndarray of shape (n, 2), optional
        The two logits; required with ``auc="on_logit"``.

    Returns
    -------
    dict of str to float
        AUC is NaN when only one class is present; MCC is 0 when a row or
        column of the confusion matrix is empty (scikit-learn's convention).
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        matthews_corrcoef,
        roc_auc_score,
    )

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != probabilities.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and probabilities {probabilities.shape} must be "
                         "1-D arrays of the same length")
    if auc not in AUC_SCORES:
        raise ValueError(f"unknown auc {auc!r}; use one of {list(AUC_SCORES)}")
    scores = probabilities
    if auc == "on_logit":
        if logits is None:
            raise ValueError("auc='on_logit' needs the two logits of each prediction")
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != (len(labels), 2):
            raise ValueError(f"expected logits [{len(labels)}, 2], got {logits.shape}")
        scores = logits[:, 1]
    predicted = (probabilities >= threshold).astype(np.int64)
    positives, negatives = labels == 1, labels == 0
    both_classes = positives.any() and negatives.any()
    return {
        "acc": float(np.mean(predicted == labels)),
        "bacc": float(balanced_accuracy_score(labels, predicted)) if both_classes else np.nan,
        "f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "auc": float(roc_auc_score(labels, scores)) if both_classes else np.nan,
        "mcc": float(matthews_corrcoef(labels, predicted)),
        "sensitivity": float(np.mean(predicted[positives] == 1)) if positives.any() else np.nan,
        "specificity": float(np.mean(predicted[negatives] == 0)) if negatives.any() else np.nan,
    }


def binary_metrics_batch(labels: np.ndarray, probabilities: np.ndarray,
                         threshold: float = 0.5) -> dict[str, np.ndarray]:
    """:func:`binary_metrics` of many prediction sets at once (bootstrap and permutation draws).

    Parameters
    ----------
    labels : ndarray of shape (B, n)
        True 0/1 labels of each set.
    probabilities : ndarray of shape (B, n)
        Predicted probability of class 1.
    threshold : float
        Probability at or above which class 1 is predicted.

    Returns
    -------
    dict of str to ndarray of shape (B,)
        The same values and conventions as :func:`binary_metrics`, row by row.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != probabilities.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and probabilities {probabilities.shape} must be "
                         "2-D arrays of the same shape")
    predicted = probabilities >= threshold
    positive = labels == 1
    tp = np.sum(predicted & positive, axis=1).astype(np.float64)
    fn = np.sum(~predicted & positive, axis=1).astype(np.float64)
    fp = np.sum(predicted & ~positive, axis=1).astype(np.float64)
    tn = np.sum(~predicted & ~positive, axis=1).astype(np.float64)
    n_pos, n_neg = tp + fn, tn + fp
    both = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(n_pos > 0, tp / n_pos, np.nan)
        specificity = np.where(n_neg > 0, tn / n_neg, np.nan)
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)
        # Macro F1 over the classes present in the labels or the predictions (scikit-learn).
        f1_pos = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        f1_neg = np.where(2 * tn + fp + fn > 0, 2 * tn / (2 * tn + fp + fn), 0.0)
        present_pos = (n_pos + fp) > 0
        present_neg = (n_neg + fn) > 0
        f1 = (f1_pos * present_pos + f1_neg * present_neg) / (present_pos.astype(float)
                                                              + present_neg)
        ranks = rankdata(probabilities, axis=1)
        rank_sum = np.sum(ranks * positive, axis=1)
        auc = np.where(both, (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), np.nan)
    return {
        "acc": (tp + tn) / labels.shape[1],
        "bacc": np.where(both, (sensitivity + specificity) / 2, np.nan),
        "f1": f1,
        "auc": auc,
        "mcc": mcc,
        "sensitivity": sensitivity,
        "specificity": specificity,
    }
