"""Classical baselines: standardise, then L2 logistic regression tuned by inner CV.

Used on the FC upper triangle (``fc-logreg``) and on BrainLM CLS features
(``cls-logreg``). The regularisation strength is chosen on the training folds
only, by stratified inner cross-validation on the ROC AUC.

With far more features than subjects (89,676 FC edges for 424 regions) the
standardised features are first projected onto the span of the training rows
(:class:`RowSpaceProjection`). For an L2 penalty this is exact, not an
approximation: the penalised solution always lies in that span, so the fitted
probabilities are unchanged while each fit costs O(n^2) instead of O(n p).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class RowSpaceProjection(TransformerMixin, BaseEstimator):
    """Project onto the span of the training rows (exact for L2-penalised linear models).

    ``fit`` keeps an orthonormal basis ``V`` (``[k, p]``, ``k <= n_train``) of the
    span of the (already standardised) training rows; ``transform`` returns
    ``X @ V.T``.
    """

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> RowSpaceProjection:
        """Compute an orthonormal basis of the training rows' span."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.shape[1] <= X.shape[0]:
            self.basis_ = np.eye(X.shape[1])
            return self
        # Through the small n x n Gram matrix: X X^T = U diag(s^2) U^T, V = X^T U / s.
        # (The product uses a copy: OpenBLAS's syrk path for X @ X.T is ~100x slower here.)
        gram = X @ X.copy().T
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        keep = eigenvalues > eigenvalues.max() * X.shape[1] * np.finfo(np.float64).eps
        scaled = eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])
        self.basis_ = np.ascontiguousarray(scaled.T @ X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Coordinates of ``X`` in the training rows' span."""
        return np.ascontiguousarray(X, dtype=np.float64) @ self.basis_.T


def logistic_baseline(c_grid: Sequence[float], inner_folds: int, seed: int) -> BaseEstimator:
    """Return an unfitted ``StandardScaler -> LogisticRegression`` tuned over ``c_grid``.

    Parameters
    ----------
    c_grid : sequence of float
        Inverse regularisation strengths tried.
    inner_folds : int
        Folds of the inner stratified CV that picks ``C``.
    seed : int
        Seed of the inner split.

    Returns
    -------
    sklearn estimator
        A ``GridSearchCV`` with ``fit`` / ``predict_proba``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = Pipeline([
        ("standardise", StandardScaler()),
        ("row_space", RowSpaceProjection()),
        ("logistic", LogisticRegression(max_iter=2000)),
    ])
    inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    return GridSearchCV(pipeline, {"logistic__C": list(c_grid)}, cv=inner, scoring="roc_auc")


class LogisticClassifier:
    """A registry estimator: :func:`logistic_baseline` on one view of the experiment data.

    Parameters
    ----------
    features : callable
        ``features(data) -> [N, p]`` (FC upper triangle, window-mean CLS, ...).
    params : LogisticPlan
        ``c_grid`` and ``inner_folds``.
    """

    def __init__(self, features: Callable[[Any], np.ndarray], params: Any):
        self.features = features
        self.params = params

    def fit(self, data: Any, train: np.ndarray, *, seed: int) -> LogisticClassifier:
        """Tune ``C`` by inner CV on ``train`` (seeded) and fit."""
        from fmtc.plan import PlanError

        c_grid, inner = list(self.params.c_grid), self.params.inner_folds
        if not c_grid or inner < 2:
            raise PlanError("plan key 'logistic': c_grid must be non-empty and inner_folds >= 2, "
                            f"got c_grid={c_grid}, inner_folds={inner}")
        self.estimator_ = logistic_baseline(c_grid, inner, seed)
        self.estimator_.fit(self.features(data)[train], np.asarray(data.labels)[train])
        return self

    def predict_proba(self, data: Any, subjects: np.ndarray) -> np.ndarray:
        """P(class 1) of rows ``subjects``."""
        return self.estimator_.predict_proba(self.features(data)[subjects])[:, 1]


def _fc_upper_triangle(data: Any) -> np.ndarray:
    from fmtc.preprocess.transforms import upper_triangle

    return upper_triangle(data.fc)


def _window_mean_cls(data: Any) -> np.ndarray:
    return data.window_mean_cls()


def fc_logistic(params: Any, context: Any) -> LogisticClassifier:
    """Factory of ``fc-logreg``: logistic regression on the FC upper triangle."""
    return LogisticClassifier(_fc_upper_triangle, params)


def cls_logistic(params: Any, context: Any) -> LogisticClassifier:
    """Factory of ``cls-logreg``: logistic regression on the window-mean BrainLM CLS."""
    return LogisticClassifier(_window_mean_cls, params)


def _temporal(data: Any) -> np.ndarray:
    return data.temporal


def temporal_logistic(params: Any, context: Any) -> LogisticClassifier:
    """Factory of ``ts-handcrafted``: logistic regression on handcrafted temporal features."""
    return LogisticClassifier(_temporal, params)


def _covariates(data: Any) -> np.ndarray:
    return data.covariates


def covariates_logistic(params: Any, context: Any) -> LogisticClassifier:
    """Factory of ``covariates-logreg``: logistic regression on the participants covariates."""
    return LogisticClassifier(_covariates, params)
