"""Generalisation beyond the cohort's own folds: drug arms, studies, other cohorts; confounds.

Within-cohort cross-validation (:mod:`fmtc.evaluate.protocol`) tests models on subjects
drawn like their training subjects. Here the test subjects differ in a known way:

* ``drug``: train on one drug arm (e.g. duloxetine), test on the other (placebo), both
  directions;
* ``study``: leave one study (site) out: train on the others, test on it, once per study;
* ``cross-cohort``: train on every subject of cohort A, test on every subject of cohort B
  (:func:`cross_cohort`), e.g. two simulated cohorts of other seeds or site shifts.

Each cross fit is reported beside its **within reference**: repeated stratified k-fold
CV inside the training group (training arm, training studies, cohort A), the same model
trained on the same kind of subjects and tested on held-out subjects of that kind. The
drop (``within - cross``) is what moving to the new group costs; within CV trains on
``(k-1)/k`` of the group, cross on all of it, so the drop is, if anything, understated.
A cross MCC comes with a 95% subject bootstrap interval over its test subjects
(:func:`fmtc.evaluate.uncertainty.bootstrap_interval`; the fitted model held fixed).

Every fit is a :class:`~fmtc.evaluate.fits.Fit` run by :func:`~fmtc.evaluate.fits.run_fits`
(read back when published, computed on an :class:`~fmtc.execution.Executor` otherwise), so any
registered model works. Torch models use the honest last-epoch rule (the end of
``train.epochs``, trained on the whole training group; no test subject chooses anything),
whatever ``evaluation.honest_epoch`` says.

:func:`study_predictability` is the confounds check: how well a feature matrix (FC upper
triangle, window-mean CLS, ...) predicts the study a subject was scanned in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.evaluate.fits import Arm, Fit, FoldTask, run_fits
from fmtc.evaluate.metrics import binary_metrics
from fmtc.evaluate.protocol import fold_seed
from fmtc.evaluate.splits import Split, stratified_splits
from fmtc.evaluate.uncertainty import bootstrap_interval
from fmtc.execution import Executor
from fmtc.plan import EvaluationPlan
from fmtc.predict.data import ExperimentData

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["arm", "model", "scheme", "train_on", "test_on", "participant_id",
                      "probability", "label"]
"""Columns of the cross-fit predictions :func:`run_jobs` can collect."""

SCHEMES = ("drug", "study", "cross-cohort")
"""Generalisation schemes (the ``scheme`` column of the generalisation table)."""

COLUMNS = ["arm", "model", "scheme", "kind", "train_on", "test_on", "n_train", "n_test",
           "mcc", "auc", "bacc", "mcc_low", "mcc_high", "within_mcc", "within_auc",
           "drop_mcc", "drop_auc", "folds", "epoch", "note"]
"""Columns of the tidy generalisation table (``epoch``: the torch models' honest epoch, the
last of the schedule, 0-based; empty for models without epochs)."""


@dataclass(frozen=True)
class GeneralisationJob:
    """One generalisation fit set: a cross split, or the within CV of a training group.

    Attributes
    ----------
    scheme : str
        ``drug``, ``study`` or ``cross-cohort``.
    kind : str
        ``cross`` (one fit: train group -> test group) or ``within`` (CV inside a group).
    train_on, test_on : str
        Group names (``test_on == train_on`` for ``within``).
    splits : list of Split
        Indices into the job's dataset (one split for ``cross``).
    data : str
        Suffix of the dataset the job reads (``""``: the arm's own; cross-cohort jobs
        read the combined A + B dataset).
    folds : int
        Folds of a within CV (0 for cross).
    note : str
        Why a within reference is missing, when it is.
    """

    scheme: str
    kind: str
    train_on: str
    test_on: str
    splits: list[Split]
    data: str = ""
    folds: int = 0
    note: str = ""


# --------------------------------------------------------------------------- splits


def _within_splits(members: np.ndarray, labels: np.ndarray, folds: int, repeats: int,
                   seed: int) -> tuple[list[Split], int, str]:
    """Repeated stratified k-fold inside ``members`` (indices), folds lowered to fit the group."""
    counts = np.bincount(labels[members], minlength=2)
    usable = int(min(folds, counts.min()))
    if usable < 2:
        return [], 0, (f"no within CV: the group has {counts[0]} label-0 and {counts[1]} "
                       "label-1 subjects (2 of each needed)")
    inner = stratified_splits(labels[members], usable, repeats, seed)
    note = f"folds lowered to {usable} (smallest class)" if usable < folds else ""
    return ([Split(s.repeat, s.fold, members[s.train], members[s.test]) for s in inner],
            usable, note)


def group_jobs(groups: Sequence[Any], labels: np.ndarray, scheme: str, evaluation: EvaluationPlan,
               seed: int, within: bool = True) -> list[GeneralisationJob]:
    """Leave-one-group-out cross splits and the within CV of each training group.

    Parameters
    ----------
    groups : sequence
        Group of each subject (drug arm, study); missing values (None, NaN) are left out.
    labels : ndarray of shape (N,)
    scheme : str
        Name in the table (``drug``, ``study``).
    evaluation : EvaluationPlan
        ``folds`` and ``repeats`` of the within CV.
    seed : int
    within : bool
        Add the within-group CV references.

    Returns
    -------
    list of GeneralisationJob
        Per group ``g``: ``cross`` (train on every other group, test on ``g``) and, with
        ``within``, CV inside the training subjects. Each test subject is tested once by the
        cross jobs; no cross job tests on a subject of its training group.
    """
    labels = np.asarray(labels, dtype=np.int64)
    names = np.array(["" if _missing(g) else str(g) for g in groups], dtype=object)
    levels = sorted(set(names) - {""}, key=_natural)
    if len(levels) < 2:
        raise ValueError(f"scheme {scheme!r} needs at least 2 groups, found "
                         f"{levels or 'none'}")
    jobs = []
    for level in levels:
        test = np.flatnonzero(names == level)
        train = np.flatnonzero((names != level) & (names != ""))
        train_on = "+".join(g for g in levels if g != level)
        counts = np.bincount(labels[train], minlength=2)
        if counts.min() == 0:
            raise ValueError(f"scheme {scheme!r}: the training group {train_on!r} has only "
                             f"label {int(np.argmax(counts))}; a classifier needs both")
        jobs.append(GeneralisationJob(scheme, "cross", train_on, level,
                                      [Split(0, len(jobs), train, test)]))
        if within and not any(j.kind == "within" and j.train_on == train_on for j in jobs):
            splits, folds, note = _within_splits(train, labels, evaluation.folds,
                                                 evaluation.repeats, seed)
            jobs.append(GeneralisationJob(scheme, "within", train_on, train_on, splits,
                                          folds=folds, note=note))
    return jobs


def drug_jobs(drug: Sequence[Any], labels: np.ndarray, evaluation: EvaluationPlan, seed: int,
              within: bool = True) -> list[GeneralisationJob]:
    """Drug-specific generalisation: train on one drug arm, test on the other (both ways)."""
    return group_jobs(drug, labels, "drug", evaluation, seed, within)


def study_jobs(study: Sequence[Any], labels: np.ndarray, evaluation: EvaluationPlan, seed: int,
               within: bool = True) -> list[GeneralisationJob]:
    """Leave-one-study-out: train on the other studies, test on each study once."""
    return group_jobs(study, labels, "study", evaluation, seed, within)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _natural(name: str) -> tuple:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


# --------------------------------------------------------------------------- cross-cohort


def combine_cohorts(train: ExperimentData, test: ExperimentData,
                    names: tuple[str, str] = ("A", "B")) -> tuple[ExperimentData, np.ndarray,
                                                                   np.ndarray]:
    """One dataset holding cohort ``train`` then cohort ``test``, and each one's rows.

    Every input both hold must have the same shape per subject (CLS windows are padded
    to the longer one; ``n_windows`` says which are valid); covariates must have the same
    columns; BrainLM features must come from the same encoder weights.

    Raises
    ------
    ValueError
        Naming the input whose shapes (or encoders, or covariate columns) differ.
    """
    a, b = names
    for data, name in ((train, a), (test, b)):
        unsupported = [field for field in ("fc_windows", "cls_draws")
                       if getattr(data, field, None) is not None]
        if unsupported or getattr(data, "window_fc", False):
            raise ValueError(f"cross-cohort: cohort {name!r} carries per-window inputs "
                             f"({', '.join(unsupported) or 'window_fc'}) of the authors'-protocol "
                             "switches (eval_crops: random, gram_raw_window, random_each_call), "
                             "which cross-cohort transfer does not support; run it with the "
                             "defaults")

    def both(name: str) -> bool:
        present = (getattr(train, name) is not None, getattr(test, name) is not None)
        if present[0] != present[1]:
            raise ValueError(f"cross-cohort: {name!r} is present in cohort "
                             f"{a if present[0] else b!r} only; both cohorts need the same inputs")
        return present[0]

    fields: dict[str, Any] = {}
    for name in ("fc", "temporal", "covariates"):
        if both(name):
            x, y = np.asarray(getattr(train, name)), np.asarray(getattr(test, name))
            if x.shape[1:] != y.shape[1:]:
                raise ValueError(f"cross-cohort: {name!r} features have per-subject shape "
                                 f"{x.shape[1:]} in cohort {a!r} but {y.shape[1:]} in cohort "
                                 f"{b!r}; train and test cohorts need the same atlas and "
                                 "feature settings")
            fields[name] = np.concatenate([x, y])
    if both("covariates") and list(train.covariate_names) != list(test.covariate_names):
        raise ValueError(f"cross-cohort: covariate columns differ: {train.covariate_names} in "
                         f"cohort {a!r}, {test.covariate_names} in cohort {b!r}")
    if both("cls"):
        x, y = np.asarray(train.cls), np.asarray(test.cls)
        if x.shape[2] != y.shape[2]:
            raise ValueError(f"cross-cohort: CLS features have width {x.shape[2]} in cohort "
                             f"{a!r} but {y.shape[2]} in cohort {b!r}; use one encoder")
        weights = [(d.encoder or {}).get("weights_sha256") for d in (train, test)]
        if None not in weights and weights[0] != weights[1]:
            raise ValueError(f"cross-cohort: the CLS features come from different encoders "
                             f"({weights[0][:12]} in {a!r}, {weights[1][:12]} in {b!r}); "
                             "encode both cohorts with one encoder")
        width = max(x.shape[1], y.shape[1])
        fields["cls"] = np.concatenate([_pad_windows(x, width), _pad_windows(y, width)])
        fields["n_windows"] = np.concatenate([train.n_windows, test.n_windows])
    combined = ExperimentData(
        [f"{a}:{s}" for s in train.subject_ids] + [f"{b}:{s}" for s in test.subject_ids],
        np.concatenate([np.asarray(train.labels), np.asarray(test.labels)]).astype(np.int64),
        encoder=train.encoder, feature_cache=train.feature_cache,
        covariate_names=train.covariate_names, **fields)
    n = len(train.subject_ids)
    return combined, np.arange(n), np.arange(n, n + len(test.subject_ids))


def _pad_windows(cls: np.ndarray, width: int) -> np.ndarray:
    if cls.shape[1] == width:
        return cls
    pad = np.full((cls.shape[0], width - cls.shape[1], cls.shape[2]), np.nan, dtype=cls.dtype)
    return np.concatenate([cls, pad], axis=1)


# --------------------------------------------------------------------------- running


def _datasets(datasets: dict[str, ExperimentData] | ExperimentData) -> dict[str, ExperimentData]:
    return {"default": datasets} if isinstance(datasets, ExperimentData) else dict(datasets)


def run_jobs(datasets: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
             jobs: Sequence[GeneralisationJob], seed: int, *, n_bootstrap: int = 1000,
             executor: Executor | None = None, progress: bool | None = None,
             predictions: list[dict[str, Any]] | None = None, fits: Path | None = None,
             device: str = "cpu", counts: dict[str, int] | None = None) -> pd.DataFrame:
    """Fit every arm on every job's splits and return the tidy table (:data:`COLUMNS`).

    ``datasets`` are keyed by ``Arm.data`` (a single dataset is ``"default"``); a job whose
    ``data`` is not empty reads ``datasets[f"{arm.data}{job.data}"]``. When ``predictions``
    is a list, one row per test subject of every cross fit is appended to it (``arm, model,
    scheme, train_on, test_on, participant_id, probability, label``), so that two models can
    be compared paired on the same test subjects (:data:`PREDICTION_COLUMNS`). ``fits`` is
    where fits are published and read back from (None: computed in memory); ``device`` the
    device type torch fits train on; ``counts``, when given, is added the number of fits
    (``total``, ``computed``, ``read_back``).
    """
    datasets = _datasets(datasets)
    for arm in arms:
        if arm.data not in datasets:
            raise ValueError(f"arm {arm.name!r} reads dataset {arm.data!r}, which was not given")
        datasets[arm.data].require(arm.model_spec.inputs, arm.model)
    executor = executor or Executor()
    planned, owners, identities = [], [], {}
    for arm in arms:
        for j, job in enumerate(jobs):
            key = f"{arm.data}{job.data}"
            task_arm = dataclasses.replace(arm, data=key, spec=arm.model_spec)
            if key not in identities:
                identities[key] = datasets[key].identity(arm.model_spec.inputs)
            for split in job.splits:  # honest last epoch: fit on the whole training group
                task = FoldTask(task_arm, split, split.train, split.train[:0],
                                fold_seed(seed, split) + 100_000 * j, "last")
                planned.append(Fit(task, identities[key], Path(fits or "."), device,
                                   executor.threads_per_worker, dataset=key))
                owners.append((arm.name, j, split))
    logger.info("%d generalisation fit(s): %d arm(s), %d job(s)", len(planned), len(arms),
                len(jobs))
    batch = run_fits(planned, datasets, executor=executor, publish=fits is not None,
                     progress=progress, desc="generalisation fits")
    if counts is not None:
        for name, value in (("total", len(planned)), ("computed", batch.computed),
                            ("read_back", batch.reused)):
            counts[name] = counts.get(name, 0) + value
    outcomes: dict[tuple[str, int], list[tuple[Split, Any]]] = {}
    for (name, j, split), record in zip(owners, batch.records, strict=True):
        outcomes.setdefault((name, j), []).append((split, record))

    rows = []
    for arm in arms:
        within: dict[tuple[str, str], dict[str, float]] = {}
        for j, job in enumerate(jobs):
            data = datasets[f"{arm.data}{job.data}"]
            labels = np.asarray(data.labels, dtype=np.int64)
            found = outcomes.get((arm.name, j), [])
            n_train = len(job.splits[0].train) if job.splits else 0
            base = {"arm": arm.name, "model": arm.model, "scheme": job.scheme, "kind": job.kind,
                    "train_on": job.train_on, "test_on": job.test_on, "folds": job.folds,
                    "note": job.note, "epoch": _epoch([r for _, r in found])}
            if job.kind == "within":
                values = _within_metrics(found, labels)
                within[(job.scheme, job.train_on)] = values
                n_test = len(np.unique(np.concatenate([s.test for s in job.splits]))) \
                    if job.splits else 0
                rows.append({**base, "n_train": n_train, "n_test": n_test, **values})
                continue
            ((_, record),) = found
            probs = record.probabilities
            truth = labels[record.test]
            if predictions is not None:
                predictions.extend(
                    {"arm": arm.name, "model": arm.model, "scheme": job.scheme,
                     "train_on": job.train_on, "test_on": job.test_on,
                     "participant_id": data.subject_ids[i], "probability": float(p),
                     "label": int(y)} for i, p, y in zip(record.test, probs, truth, strict=True))
            values = binary_metrics(truth, probs)
            low, high = bootstrap_interval(truth, probs[None, :], n_bootstrap,
                                           seed + j)["mcc"]
            rows.append({**base, "n_train": n_train, "n_test": len(truth), "mcc": values["mcc"],
                         "auc": values["auc"], "bacc": values["bacc"], "mcc_low": low,
                         "mcc_high": high})
        for row in rows:
            if row["arm"] == arm.name and row["kind"] == "cross":
                reference = within.get((row["scheme"], row["train_on"]))
                if reference is not None:
                    row["within_mcc"], row["within_auc"] = reference["mcc"], reference["auc"]
                    row["drop_mcc"] = reference["mcc"] - row["mcc"]
                    row["drop_auc"] = reference["auc"] - row["auc"]
                    row["folds"] = reference["folds"]
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["note"] = table["note"].fillna("")
    return table


def _epoch(records: list[Any]) -> float:
    epochs = {r.epoch for r in records if r.epoch is not None}
    return float(max(epochs)) if epochs else np.nan


def _within_metrics(found: list[tuple[Split, Any]], labels: np.ndarray) -> dict[str, float]:
    """Mean over repeats of the pooled out-of-fold metrics of a within CV."""
    if not found:
        return {"mcc": np.nan, "auc": np.nan, "bacc": np.nan, "folds": 0}
    per_repeat: dict[int, list[Any]] = {}
    for split, record in found:
        per_repeat.setdefault(split.repeat, []).append(record)
    values = []
    for parts in per_repeat.values():
        test = np.concatenate([r.test for r in parts])
        probs = np.concatenate([r.probabilities for r in parts])
        values.append(binary_metrics(labels[test], probs))
    folds = max(split.fold for split, _ in found) + 1
    return {"mcc": float(np.mean([v["mcc"] for v in values])),
            "auc": float(np.nanmean([v["auc"] for v in values])),
            "bacc": float(np.nanmean([v["bacc"] for v in values])), "folds": folds}


def scheme_jobs(datasets: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
                groups: dict[str, Sequence[Any]], evaluation: EvaluationPlan, seed: int, *,
                test: dict[str, ExperimentData] | ExperimentData | None = None,
                names: tuple[str, str] = ("A", "B"),
                within: bool = True) -> tuple[dict[str, ExperimentData], list[GeneralisationJob]]:
    """The datasets and jobs of every scheme: one per entry of ``groups``, and cross-cohort.

    ``groups`` maps a within-cohort scheme (``drug``, ``study``) to the group of each subject;
    with ``test`` (a second cohort's datasets, keyed like ``datasets``), the jobs of training
    on every subject of ``datasets`` and testing on every subject of ``test`` are added, under
    datasets of the two cohorts combined (``<key>|cross``, :func:`combine_cohorts`). The
    within reference of each cross split is CV inside its training group (``within``).
    """
    datasets = _datasets(datasets)
    labels = np.asarray(next(iter(datasets.values())).labels, dtype=np.int64)
    jobs = [job for scheme, values in groups.items()
            for job in group_jobs(_check_length(values, labels, scheme), labels, scheme,
                                  evaluation, seed, within)]
    if test is None:
        return datasets, jobs
    test = _datasets(test)
    missing = sorted({a.data for a in arms} - set(test))
    if missing:
        raise ValueError(f"cross-cohort: the test cohort {names[1]!r} lacks dataset(s) {missing}")
    combined = dict(datasets)
    rows = None
    for key in {a.data for a in arms}:
        if key not in datasets:
            raise ValueError(f"arm data {key!r} missing from the training cohort {names[0]!r}")
        both, rows_a, rows_b = combine_cohorts(datasets[key], test[key], names)
        combined[f"{key}|cross"] = both
        rows = (rows_a, rows_b)
    rows_a, rows_b = rows
    jobs.append(GeneralisationJob("cross-cohort", "cross", names[0], names[1],
                                  [Split(0, 0, rows_a, rows_b)], data="|cross"))
    if within:
        splits, folds, note = _within_splits(np.arange(len(labels)), labels, evaluation.folds,
                                             evaluation.repeats, seed)
        jobs.append(GeneralisationJob("cross-cohort", "within", names[0], names[0], splits,
                                      folds=folds, note=note))
    return combined, jobs


def generalise(datasets: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
               groups: dict[str, Sequence[Any]], evaluation: EvaluationPlan, seed: int, *,
               test: dict[str, ExperimentData] | ExperimentData | None = None,
               names: tuple[str, str] = ("A", "B"), within: bool = True,
               executor: Executor | None = None, progress: bool | None = None,
               predictions: list[dict[str, Any]] | None = None, fits: Path | None = None,
               device: str = "cpu", counts: dict[str, int] | None = None) -> pd.DataFrame:
    """Generalisation across groups (one scheme per entry of ``groups``) and, with ``test``,
    to a second cohort: every fit of every scheme in one executor pool.

    Parameters
    ----------
    datasets : dict of str to ExperimentData, or ExperimentData
        Keyed by ``Arm.data``; every dataset has the cohort's subjects in one order.
    arms : sequence of Arm
    groups : dict of str to sequence
        Scheme name (``drug``, ``study``) -> group of each subject, in subject order.
    evaluation : EvaluationPlan
        ``folds``, ``repeats`` of the within references; ``bootstrap`` resamples.
    seed : int
    test : dict of str to ExperimentData, or ExperimentData, optional
        A second cohort (``cross-cohort``): same dataset keys and per-subject input shapes.
    names : (str, str)
        The two cohorts' names in the table.
    fits, device, counts
        See :func:`run_jobs`.

    Returns
    -------
    DataFrame
        :data:`COLUMNS`; ``kind`` is ``cross`` or ``within``.
    """
    combined, jobs = scheme_jobs(datasets, arms, groups, evaluation, seed, test=test,
                                 names=names, within=within)
    return run_jobs(combined, arms, jobs, seed, n_bootstrap=evaluation.bootstrap,
                    executor=executor, progress=progress, predictions=predictions, fits=fits,
                    device=device, counts=counts)


def cross_cohort(train: dict[str, ExperimentData] | ExperimentData,
                 test: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
                 evaluation: EvaluationPlan, seed: int, *, names: tuple[str, str] = ("A", "B"),
                 **options: Any) -> pd.DataFrame:
    """Train on every subject of cohort ``train``, test on every subject of cohort ``test``
    (:func:`generalise` without within-cohort schemes; ``options`` as there)."""
    return generalise(train, arms, {}, evaluation, seed, test=test, names=names, **options)


def _check_length(values: Sequence[Any], labels: np.ndarray, scheme: str) -> list[Any]:
    values = list(values)
    if len(values) != len(labels):
        raise ValueError(f"scheme {scheme!r}: {len(values)} group values for {len(labels)} "
                         "subjects")
    return values


# --------------------------------------------------------------------------- confounds


def study_predictability(features: np.ndarray, study: Sequence[Any], seed: int, *,
                         folds: int = 5, c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0)
                         ) -> dict[str, float]:
    """How well ``features`` predict the study (site): cross-validated balanced accuracy, MCC.

    Standardise, L2 logistic regression (``C`` by inner CV on the training folds only,
    balanced accuracy), stratified ``folds``-fold CV over subjects (lowered to the smallest
    study's size).
    High values mean the features carry the site: a response model on them can exploit
    any study-label association (a confound) and may not transfer to a new site.

    Parameters
    ----------
    features : ndarray of shape (N, p)
        E.g. :func:`fmtc.preprocess.transforms.upper_triangle` of FC, or window-mean CLS.
    study : sequence of length N
        Study (site) of each subject; 2 or more levels.
    seed : int
        Seed of the outer and inner splits.

    Returns
    -------
    dict
        ``balanced_accuracy``, ``mcc`` (multi-class MCC with more than 2 studies),
        ``chance`` (balanced accuracy of guessing: 1 / number of studies), ``n_studies``,
        ``n_subjects``, ``n_features``, ``folds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from fmtc.predict.baselines import RowSpaceProjection

    features = np.asarray(features, dtype=np.float64)
    target = np.array([str(s) for s in study], dtype=object)
    if features.ndim != 2 or len(features) != len(target):
        raise ValueError(f"expected features [N, p] and N study values; got {features.shape} "
                         f"and {len(target)}")
    levels, counts = np.unique(target, return_counts=True)
    if len(levels) < 2:
        raise ValueError(f"study_predictability needs at least 2 studies, found {list(levels)}")
    outer = int(min(folds, counts.min()))
    if outer < 2:
        raise ValueError(f"study {levels[np.argmin(counts)]!r} has {counts.min()} subject(s); "
                         "cross-validation needs at least 2 per study")
    predicted = np.empty(len(target), dtype=object)
    splitter = StratifiedKFold(outer, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, target):
        # Standardise and project onto the training rows' span once per outer fold (exact
        # for an L2 penalty, see RowSpaceProjection); C is then tuned on the small matrix.
        scaled = StandardScaler().fit(features[train]).transform(features)
        reduced = RowSpaceProjection().fit(scaled[train]).transform(scaled)
        smallest = int(np.unique(target[train], return_counts=True)[1].min())
        model = LogisticRegression(max_iter=2000)
        if smallest >= 2:
            model = GridSearchCV(model, {"C": list(c_grid)}, scoring="balanced_accuracy",
                                 cv=StratifiedKFold(min(3, smallest), shuffle=True,
                                                    random_state=seed))
        predicted[test] = model.fit(reduced[train], target[train]).predict(reduced[test])
    return {"balanced_accuracy": float(balanced_accuracy_score(target, predicted)),
            "mcc": float(matthews_corrcoef(target, predicted)),
            "chance": 1.0 / len(levels), "n_studies": len(levels),
            "n_subjects": len(target), "n_features": features.shape[1], "folds": outer}


def feature_views(data: ExperimentData) -> dict[str, np.ndarray]:
    """The feature matrices a confounds check reads: FC upper triangle, window-mean CLS, ..."""
    from fmtc.preprocess.transforms import upper_triangle

    views = {}
    if data.fc is not None:
        views["fc"] = upper_triangle(data.fc)
    if data.cls is not None:
        views["cls"] = data.window_mean_cls()
    if data.temporal is not None:
        views["temporal"] = np.asarray(data.temporal)
    if data.covariates is not None:
        views["covariates"] = np.asarray(data.covariates)
    return views


def cross_differences(predictions: pd.DataFrame, contrasts: Sequence[tuple[str, str]], *,
                      n_bootstrap: int = 1000, n_permutations: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Paired MCC differences between arms on the same cross test subjects.

    Parameters
    ----------
    predictions : DataFrame
        Cross-fit predictions (:data:`PREDICTION_COLUMNS`, ``GeneralisationRun.predictions``).
    contrasts : sequence of (arm_a, arm_b)
    n_bootstrap, n_permutations, seed
        Of :func:`fmtc.evaluate.paired.paired_difference` (paired subject bootstrap and
        per-subject swaps).

    Returns
    -------
    DataFrame
        Per contrast and cross fit (``scheme, train_on, test_on``): ``arm_a, arm_b``, the
        fields of :meth:`~fmtc.evaluate.paired.PairedDifference.to_dict` (``value_a``,
        ``value_b``: each arm's MCC; ``difference``, ``low``, ``high`` and their ``_pp``
        forms, ``p_value``) and ``n_test``; a row reads like a row of an experiment's contrasts
        table (:func:`fmtc.report.claims.claims_table` takes it).
    """
    from fmtc.evaluate.paired import paired_difference

    rows = []
    keys = ["scheme", "train_on", "test_on"]
    for (scheme, train_on, test_on), part in predictions.groupby(keys, sort=False):
        for arm_a, arm_b in contrasts:
            # Subjects in a fixed order (by id), so the bootstrap does not depend on row order.
            a = part[part["arm"] == arm_a].set_index("participant_id").sort_index()
            b = part[part["arm"] == arm_b].set_index("participant_id")
            if a.empty or b.empty:
                raise ValueError(f"cross fit {train_on} -> {test_on} ({scheme}) has no "
                                 f"predictions of arm {arm_a if a.empty else arm_b!r}")
            if set(a.index) != set(b.index):
                raise ValueError(f"arms {arm_a!r} and {arm_b!r} were tested on different "
                                 f"subjects of {test_on} ({scheme})")
            b = b.loc[a.index]
            found = paired_difference(a["label"].to_numpy(), a["probability"].to_numpy(),
                                      b["probability"].to_numpy(), n_bootstrap=n_bootstrap,
                                      n_permutations=n_permutations, seed=seed)
            values = found.to_dict()
            del values["per_repeat"]
            rows.append({"scheme": scheme, "train_on": train_on, "test_on": test_on,
                         "arm_a": arm_a, "arm_b": arm_b, **values, "n_test": len(a)})
    return pd.DataFrame(rows)
