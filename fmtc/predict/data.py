"""The inputs every model reads, gathered once per experiment in the cohort's subject order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ExperimentData:
    """Labels and model inputs of every subject of a cohort.

    Attributes
    ----------
    subject_ids : list of str
    labels : ndarray of shape (N,)
    fc : ndarray of shape (N, R, R) or None
        Connectivity, when a model reads ``fc``.
    cls : ndarray of shape (N, W, H) or None
        BrainLM CLS per window (NaN beyond ``n_windows``), when a model reads ``cls``.
    n_windows : ndarray of shape (N,) or None
    encoder : dict or None
        Provenance of the encoder behind ``cls``.
    feature_cache : str or None
        Name of the feature-cache file ``cls`` was read from.
    temporal : ndarray of shape (N, F) or None
        Handcrafted temporal features (:mod:`fmtc.represent.temporal`), when a model
        reads ``temporal``.
    fc_windows : ndarray of shape (N, W, R, R) or None
        Connectivity of each window's crop (NaN beyond ``n_windows``): only computed when
        ``protocol.eval_crops: random`` or ``connectivity.kind: gram_raw_window`` needs it.
    cls_draws : ndarray of shape (N, W, S, H) or None
        The features of each of ``S`` seeded token orders, un-averaged
        (``brainlm.token_order: random_each_call``); ``cls`` is then their mean.
    window_fc : bool
        True when the FC is defined per window (``gram_raw_window``): training and evaluation
        pair each window's features with ``fc_windows`` of that window.
    covariates : ndarray of shape (N, p) or None
        Participants covariates (study, drug, sex one-hot; age, mean FD), when a model
        reads ``covariates`` (:func:`fmtc.cohort.participants.covariate_design`).
    covariate_names : list of str or None
        Names of the ``covariates`` columns.
    """

    subject_ids: list[str]
    labels: np.ndarray
    fc: np.ndarray | None = None
    cls: np.ndarray | None = None
    n_windows: np.ndarray | None = None
    encoder: dict[str, Any] | None = None
    feature_cache: str | None = None
    temporal: np.ndarray | None = None
    fc_windows: np.ndarray | None = None
    cls_draws: np.ndarray | None = None
    window_fc: bool = False
    covariates: np.ndarray | None = None
    covariate_names: list[str] | None = None

    def require(self, inputs: tuple[str, ...], model: str) -> None:
        """Raise a ValueError naming ``model`` when an input it reads is missing."""
        if "cls" in inputs and self.cls is None:
            raise ValueError(f"model {model!r} needs BrainLM CLS features; ExperimentData has "
                             "none")
        if "fc" in inputs and self.fc is None:
            raise ValueError(f"model {model!r} needs connectivity matrices; ExperimentData has "
                             "none")
        if "temporal" in inputs and self.temporal is None:
            raise ValueError(f"model {model!r} needs handcrafted temporal features; "
                             "ExperimentData has none")
        if "covariates" in inputs and self.covariates is None:
            raise ValueError(f"model {model!r} needs participants covariates; ExperimentData "
                             "has none")

    def window_mean_cls(self) -> np.ndarray:
        """``[N, H]``: each subject's CLS averaged over its valid windows."""
        valid = np.arange(self.cls.shape[1])[None, :] < self.n_windows[:, None]
        return np.where(valid[..., None], self.cls, 0.0).sum(1) / self.n_windows[:, None]
