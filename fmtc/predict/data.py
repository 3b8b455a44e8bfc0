"""The inputs every model reads, gathered once per experiment in the cohort's subject order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
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
        True when the FC is defined per window (``gram_raw_window``, or the authors' random
        crops, ``protocol.eval_crops: random``): training and evaluation pair each window's
        features with ``fc_windows`` of that window.
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

    def identity(self, inputs: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The content hash of what a model reading ``inputs`` sees, and where it came from.

        ``digest`` hashes the subject order, the labels and the arrays of each input (``cls``:
        features, window counts and token-order draws; ``fc``: matrices and per-window
        matrices; ``temporal``; ``covariates`` with their names); ``encoder`` and ``readout``
        name the encoder behind the TS features. A fit's identity holds it
        (:mod:`fmtc.evaluate.fits`).
        """
        from fmtc.lifecycle import array_digest, digest

        parts: dict[str, str] = {
            "subjects": digest(list(self.subject_ids)),
            "labels": array_digest(np.asarray(self.labels, dtype=np.int64))}
        if "cls" in inputs:
            parts["cls"] = array_digest(self.cls, self.n_windows, self.cls_draws)
        if "fc" in inputs:
            parts["fc"] = array_digest(self.fc, self.fc_windows,
                                       self.n_windows if self.fc_windows is not None else None,
                                       np.asarray(self.window_fc))
        if "temporal" in inputs:
            parts["temporal"] = array_digest(self.temporal)
        if "covariates" in inputs:
            parts["covariates"] = array_digest(self.covariates) + digest(self.covariate_names)
        identity: dict[str, Any] = {"digest": digest(parts)}
        if "cls" in inputs and self.encoder:
            identity["encoder"] = {k: self.encoder.get(k) for k in
                                   ("source", "weights_sha256", "readout", "token_order")}
        return identity

    def window_mean_cls(self) -> np.ndarray:
        """``[N, H]``: each subject's CLS averaged over its valid windows."""
        valid = np.arange(self.cls.shape[1])[None, :] < self.n_windows[:, None]
        return np.where(valid[..., None], self.cls, 0.0).sum(1) / self.n_windows[:, None]


# --------------------------------------------------------------------------- gathering


@dataclass(frozen=True)
class DataRequest:
    """The inputs one or more arms read: which connectivity, which BrainLM features, and more.

    Attributes
    ----------
    fc_kind : str or None
        ``connectivity.kind`` of an arm reading ``fc``.
    features : FeatureSettings or None
        How its TS features are read out (arms reading ``cls``).
    encoder : EncoderSpec or None
        Which encoder produces them.
    temporal, covariates : bool
        Handcrafted temporal features; participants covariates.
    fc_options : tuple of (str, object)
        Protocol switches of the FC input, e.g. ``("input_scaling", "none")`` or
        ``("fc_windows", WindowPlan)`` (per-window FC, for ``eval_crops: random`` or
        ``gram_raw_window``) and ``("window_fc", True)`` (train on each drawn window's crop
        FC too, ``eval_crops: random``); empty at the defaults.
    """

    fc_kind: str | None = None
    features: Any = None
    encoder: Any = None
    temporal: bool = False
    covariates: bool = False
    fc_options: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """A short stable name of this request."""
        from fmtc.lifecycle import digest

        encoder = None if self.encoder is None else {
            k: v for k, v in dataclasses.asdict(self.encoder).items() if k != "store"}
        return "data-" + digest({"fc": self.fc_kind, "features": self.features,
                                 "encoder": encoder, "temporal": self.temporal,
                                 "covariates": self.covariates,
                                 "fc_options": dict(self.fc_options)}, 8)


def cohort_connectivity(cohort: Any, kind: str, input_scaling: str = "robust",
                        windows: Any = None) -> np.ndarray:
    """``[N, R, R]`` connectivity of every participant (scaled series, then ``kind``).

    ``input_scaling`` is ``protocol.input_scaling`` (``none``: the raw recording). ``kind:
    gram_raw_window`` is defined per window (:func:`cohort_window_connectivity`); its
    subject-level matrix, read only by models without per-window inputs (the FC logistic
    baseline), is the mean of the raw-crop Grams over the window set ``windows``.
    """
    from fmtc.preprocess.transforms import functional_connectivity, scale_input

    if kind == "gram_raw_window":
        return np.nanmean(cohort_window_connectivity(cohort, kind, windows), axis=1)
    return np.stack([functional_connectivity(scale_input(cohort.timeseries[s], input_scaling),
                                             kind)
                     for s in cohort.subject_ids])


def cohort_window_connectivity(cohort: Any, kind: str, windows: Any = None,
                               input_scaling: str = "robust") -> np.ndarray:
    """``[N, W, R, R]`` connectivity of each window's crop (NaN beyond a subject's windows).

    See :func:`fmtc.preprocess.transforms.window_connectivity`; ``windows`` is a
    :class:`~fmtc.plan.WindowPlan` (default: the plan's defaults).
    """
    from fmtc.plan import WindowPlan
    from fmtc.preprocess.transforms import window_connectivity

    spec = windows if windows is not None else WindowPlan()
    per_subject = [window_connectivity(cohort.timeseries[s], kind, spec.length, spec.stride,
                                       spec.max_windows, input_scaling)
                   for s in cohort.subject_ids]
    width = max(len(m) for m in per_subject)
    out = np.full((len(per_subject), width, *per_subject[0].shape[1:]), np.nan, dtype=np.float32)
    for i, matrices in enumerate(per_subject):
        out[i, :len(matrices)] = matrices
    return out


def _aligned(features: Any, subject_ids: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray | None]:
    position = {s: i for i, s in enumerate(features.subject_ids)}
    missing = [s for s in subject_ids if s not in position]
    if missing:
        raise ValueError(f"the features in {features.folder} lack {len(missing)} subject(s) of "
                         f"the cohort (first: {missing[:3]}); delete the folder to rebuild it")
    order = np.array([position[s] for s in subject_ids])
    cls = np.asarray(features.cls)
    if cls.ndim != 3 or len(cls) != len(features.subject_ids):
        raise ValueError(f"features in {features.folder}: expected CLS [N, W, H], got "
                         f"{cls.shape}")
    draws = getattr(features, "cls_draws", None)
    return (cls[order], np.asarray(features.n_windows)[order],
            None if draws is None else np.asarray(draws)[order])


def gather_datasets(cohort: Any, requests: dict[str, DataRequest], *, device: Any = None,
                    features: Any = None, progress: bool = False) -> dict[str, ExperimentData]:
    """Compute (or read back) the inputs of every data request, keyed like ``requests``.

    ``features`` (a precomputed :class:`~fmtc.represent.features.FeatureSet`) replaces the
    BrainLM features of every request that reads them (tests, notebooks).
    """
    settings = {(r.features, r.encoder) for r in requests.values() if r.features is not None}
    if features is not None and len(settings) > 1:
        raise ValueError(f"precomputed features were given, but the arms read {len(settings)} "
                         "different BrainLM feature settings (encoders, windows or token "
                         "orders); pass features=None to compute each")
    connectivity: dict[Any, np.ndarray] = {}
    found_features: dict[Any, Any] = {}
    temporal = covariates = None
    out = {}
    for key, request in requests.items():
        options = dict(request.fc_options)
        fc = fc_windows = None
        scaling = options.get("input_scaling", "robust")
        spec = options.get("fc_windows")
        if request.fc_kind is not None:
            tag = (request.fc_kind, scaling, spec if request.fc_kind == "gram_raw_window" else None)
            if tag not in connectivity:
                connectivity[tag] = cohort_connectivity(cohort, request.fc_kind, scaling, spec)
            fc = connectivity[tag]
            if spec is not None:
                tag = ("windows", request.fc_kind, scaling, spec)
                if tag not in connectivity:
                    connectivity[tag] = cohort_window_connectivity(cohort, request.fc_kind, spec,
                                                                   scaling)
                fc_windows = connectivity[tag]
        cls = n_windows = encoder = folder = draws = None
        if request.features is not None:
            tag = (request.features, request.encoder)
            if tag not in found_features:
                found = features
                if found is None:
                    from fmtc.represent.features import cohort_features

                    found = cohort_features(cohort, request.features, request.encoder,
                                            device=device, progress=progress)
                found_features[tag] = found
            found = found_features[tag]
            cls, n_windows, draws = _aligned(found, cohort.subject_ids)
            encoder, folder = dict(found.encoder), Path(found.folder).name
        if fc_windows is not None and n_windows is None:
            n_windows = np.sum(np.isfinite(fc_windows[:, :, 0, 0]), axis=1).astype(np.int64)
        if request.temporal and temporal is None:
            from fmtc.represent.temporal import cohort_temporal_features

            temporal = cohort_temporal_features(cohort)
        if request.covariates and covariates is None:
            from fmtc.cohort.participants import covariate_design

            covariates = covariate_design(cohort.participants, f"cohort {cohort.root}")
        values, names = covariates if request.covariates else (None, None)
        out[key] = ExperimentData(list(cohort.subject_ids), np.asarray(cohort.labels), fc, cls,
                                  n_windows, encoder, folder,
                                  temporal if request.temporal else None, fc_windows, draws,
                                  request.fc_kind == "gram_raw_window"
                                  or bool(options.get("window_fc")), values, names)
    return out
