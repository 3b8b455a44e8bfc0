"""The cross-validated, paired experiment: arms on identical splits, selection, metrics.

An experiment evaluates several *arms* (:class:`~fmtc.evaluate.fits.Arm`: a registered model with
its hyper-parameters, fed one view of the cohort's data) on the *same* repeated stratified k-fold
splits over subjects (:func:`fmtc.evaluate.splits.stratified_splits`), so that arms can be
compared subject by subject (:mod:`fmtc.evaluate.paired`).

Every (arm x repeat x fold) fit is a :class:`~fmtc.evaluate.fits.Fit` that seeds itself from the
run's seed, the repeat and the fold (:func:`fold_seed`); :class:`CrossValidation` lists an
experiment's fits and turns their records into tables, and :func:`cross_validate` does both, with
the fits run through :func:`~fmtc.evaluate.fits.run_fits` (read back when published, computed on
an :class:`~fmtc.execution.Executor` otherwise, with the same result whatever runs them).

Models with epochs (the torch models) are trained on the whole training fold when the honest
selection takes the last epoch of the declared schedule (``evaluation.honest_epoch: last``, the
default), or on its *inner-train* part when a stratified *inner validation* part chooses the
epoch (``honest_epoch: validation``). The paper's selection reads the test fold after every epoch
(the fits' ``test_trajectory``). Models without epochs (the logistic baselines) are fit on the
whole training fold and appear under every requested selection with the same predictions.

The tables of a result (written by :mod:`fmtc.evaluate.runs`)::

    metrics        arm, model, selection, repeat, fold, metric, value  (fold "pooled": all
                   out-of-fold predictions of a repeat)
    predictions    arm, model, repeat, fold, participant_id, probability, label
                   (one table per selection)
    summary        arm, model, selection, metric, mean, repeat_low/high, bootstrap_low/high,
                   p_value
    trajectories   per arm, repeat, fold and epoch: lr, losses, MCC, AUC, chosen epochs
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.evaluate.fits import (
    TEST_TRAJECTORY,
    WEIGHTS,
    Arm,
    Fit,
    FitRecord,
    FoldTask,
    run_fits,
    run_fold,
)
from fmtc.evaluate.metrics import METRICS, binary_metrics
from fmtc.evaluate.selection import SELECTIONS, trajectory_table
from fmtc.evaluate.splits import Split, outer_splits
from fmtc.evaluate.uncertainty import bootstrap_interval, permutation_pvalue, repeat_interval
from fmtc.execution import Executor
from fmtc.plan import EvaluationPlan
from fmtc.predict.data import ExperimentData
from fmtc.predict.registry import get_model

logger = logging.getLogger(__name__)

__all__ = ["Arm", "CrossValidation", "ExperimentData", "ExperimentResult", "FoldTask",
           "cross_validate", "fold_seed", "inner_validation_split", "pooled_predictions",
           "run_fold", "selection_optimism", "summarise"]


@dataclass
class ExperimentResult:
    """Tables of one experiment (see the module docstring for their columns)."""

    metrics: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    trajectories: pd.DataFrame
    splits: dict[str, Any]
    models: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    reused_fits: int = 0


# --------------------------------------------------------------------------- splits


def inner_validation_split(train: np.ndarray, labels: np.ndarray, fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) parts of a training fold, sorted subject indices."""
    from sklearn.model_selection import StratifiedShuffleSplit

    train = np.asarray(train)
    n_val = int(np.ceil(fraction * len(train)))
    counts = np.bincount(labels[train], minlength=2)
    if n_val < 2 or len(train) - n_val < 2 or counts.min() < 2:
        raise ValueError(f"a training fold of {len(train)} subjects ({counts[1]} positive) is too "
                         f"small for an inner validation split of {fraction:g}; use more "
                         "subjects or fewer folds (evaluation.folds)")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    fit, val = next(splitter.split(np.zeros(len(train)), labels[train]))
    return np.sort(train[fit]), np.sort(train[val])


def fold_seed(seed: int, split: Split) -> int:
    """The seed of one fold's fit (weights, batch order, inner splits): run seed, repeat, fold."""
    return seed + 1000 * split.repeat + split.fold


def fold_tasks(arms: Sequence[Arm], labels: np.ndarray, evaluation: EvaluationPlan, seed: int,
               cv: str = "stratified_repeated") -> tuple[list[FoldTask], list[Split], dict]:
    """Every (arm x repeat x fold) task, arm-major, with the splits they share.

    ``cv`` is ``protocol.cv`` (:func:`fmtc.evaluate.splits.outer_splits`).
    """
    splits = outer_splits(labels, evaluation.folds, evaluation.repeats, seed, cv)
    inner = {}
    for s in splits:
        if evaluation.honest_epoch == "validation":
            inner[(s.repeat, s.fold)] = inner_validation_split(
                s.train, labels, evaluation.inner_validation_fraction, fold_seed(seed, s))
        else:  # the declared schedule's last epoch: train on the whole training fold
            inner[(s.repeat, s.fold)] = (s.train, s.train[:0])
    tasks = [FoldTask(arm, s, *inner[(s.repeat, s.fold)], fold_seed(seed, s),
                      evaluation.honest_epoch)
             for arm in arms for s in splits]
    return tasks, splits, inner


# --------------------------------------------------------------------------- the experiment


def _check(datasets: dict[str, ExperimentData], arms: Sequence[Arm],
           selections: Sequence[str]) -> None:
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    bad = [s for s in selections if s not in SELECTIONS]
    if bad or not selections:
        raise ValueError(f"unknown selection(s) {bad}; choose from {list(SELECTIONS)}")
    reference = None
    for arm in arms:
        spec = arm.model_spec
        if arm.data not in datasets:
            raise ValueError(f"arm {arm.name!r} reads dataset {arm.data!r}, which was not given")
        data = datasets[arm.data]
        data.require(spec.inputs, arm.model)
        key = (list(data.subject_ids), np.asarray(data.labels).tolist())
        if reference is None:
            reference = key
        elif key != reference:
            raise ValueError(f"arm {arm.name!r}: its data has other subjects or labels than the "
                             "first arm's; paired arms must share the cohort")


@dataclass
class CrossValidation:
    """One cross-validated experiment: the fits it needs and how their records become tables.

    Parameters
    ----------
    datasets : dict of str to ExperimentData, or ExperimentData
        The inputs each arm reads (``Arm.data`` keys; a single dataset is ``"default"``).
        All share subjects and labels.
    arms : sequence of Arm
    evaluation : EvaluationPlan
        Folds, repeats, ``honest_epoch``, inner validation fraction.
    seed : int
        Seed of the splits and of every fit.
    selections : sequence of {"honest", "paper"}
        Epoch selections reported.
    cv : {"stratified_repeated", "unshuffled_single"}
        ``protocol.cv``: the outer splits (``unshuffled_single``: the authors' one unshuffled
        stratified k-fold; ``evaluation.repeats`` is then unused).
    keep_logits : bool
        Add each test prediction's two logits (``logit_0``, ``logit_1``; NaN for models
        without them) to the predictions tables.
    keep_weights : collection of str
        Arms whose fits keep their weights (the ``weights`` artifact).
    """

    datasets: dict[str, ExperimentData] | ExperimentData
    arms: Sequence[Arm]
    evaluation: EvaluationPlan
    seed: int
    selections: Sequence[str] = ("honest",)
    cv: str = "stratified_repeated"
    keep_logits: bool = False
    keep_weights: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if isinstance(self.datasets, ExperimentData):
            self.datasets = {"default": self.datasets}
        self.arms = list(self.arms)
        self.selections = list(dict.fromkeys(self.selections))
        self.keep_weights = frozenset(self.keep_weights)
        _check(self.datasets, self.arms, self.selections)
        first = self.datasets[self.arms[0].data]
        self.labels = np.asarray(first.labels, dtype=np.int64)
        self.ids = np.asarray(first.subject_ids)
        self.tasks, self.splits, self.inner = fold_tasks(self.arms, self.labels, self.evaluation,
                                                         self.seed, self.cv)

    def fits(self, store: str | Path | None, *, device: str = "cpu", threads: int = 1,
             prefix: str = "") -> list[Fit]:
        """One :class:`~fmtc.evaluate.fits.Fit` per task, published under ``store``.

        ``prefix`` is put before each dataset key (several experiments in one batch).
        """
        identities: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        out = []
        for task in self.tasks:
            inputs = task.arm.model_spec.inputs
            tag = (task.arm.data, tuple(inputs))
            if tag not in identities:
                identities[tag] = self.datasets[task.arm.data].identity(inputs)
            out.append(Fit(task, identities[tag], Path(store or "."), device, threads,
                           dataset=prefix + task.arm.data))
        return out

    def needs(self) -> list[frozenset[str]]:
        """Per task, the optional artifacts its fit must hold."""
        out = []
        for task in self.tasks:
            need = set()
            if task.arm.model_spec.epochs:
                if "paper" in self.selections:
                    need.add(TEST_TRAJECTORY)
                if task.arm.name in self.keep_weights:
                    need.add(WEIGHTS)
            out.append(frozenset(need))
        return out

    def assemble(self, records: Sequence[FitRecord]) -> ExperimentResult:
        """The tables of the experiment from one record per task (in ``tasks`` order)."""
        labels, ids, selections = self.labels, self.ids, self.selections
        metric_rows: list[tuple] = []
        prediction_rows: dict[str, list[tuple]] = {s: [] for s in selections}
        trajectories: list[pd.DataFrame] = []
        models: dict[str, Any] = {}
        timings: dict[str, float] = {a.name: 0.0 for a in self.arms}
        for task, record in zip(self.tasks, records, strict=True):
            arm, split = task.arm, task.split
            spec = arm.model_spec
            entry = models.setdefault(arm.name, {
                "name": arm.display_name, "model": arm.model, "inputs": list(spec.inputs),
                "data": arm.data, "selected_epochs": [], "fits": []})
            entry["fits"].append({"repeat": split.repeat, "fold": split.fold, "key": record.key})
            val_labels, test_labels = labels[task.validation], labels[split.test]
            chosen = {s: record.select(s, val_labels, test_labels) for s in selections}
            if record.epoch is not None:  # a torch fit
                entry.update(config=record.config, train=_plain(arm.params))
                entry["selected_epochs"].append({"repeat": split.repeat, "fold": split.fold,
                                                 **{s: chosen[s][0] for s in selections}})
                trajectories.append(self._trajectory(task, record, chosen))
            else:
                entry["params"] = _plain(arm.params)
            for s in selections:
                _, probs, logits = chosen[s]
                values = binary_metrics(test_labels, probs)
                metric_rows += [(arm.name, arm.model, s, split.repeat, str(split.fold), m,
                                 values[m]) for m in METRICS]
                rows = [(arm.name, arm.model, split.repeat, split.fold, ids[i], p, labels[i])
                        for i, p in zip(split.test, probs, strict=True)]
                if self.keep_logits:
                    logits = (logits if logits is not None
                              else np.full((len(split.test), 2), np.nan))
                    rows = [(*row, float(z[0]), float(z[1]))
                            for row, z in zip(rows, logits, strict=True)]
                prediction_rows[s] += rows
            timings[arm.name] += record.seconds
        for arm in self.arms:
            for s in selections:
                metric_rows += _pooled_rows(arm, s, prediction_rows[s], labels)
        columns = ["arm", "model", "repeat", "fold", "participant_id", "probability", "label"]
        if self.keep_logits:
            columns += ["logit_0", "logit_1"]
        metrics = _sort_metrics(pd.DataFrame(metric_rows, columns=[
            "arm", "model", "selection", "repeat", "fold", "metric", "value"]), self.arms)
        predictions = {s: pd.DataFrame(rows, columns=columns)
                       for s, rows in prediction_rows.items()}
        evaluation = self.evaluation
        split_record = {
            "folds": evaluation.folds, "repeats": evaluation.repeats, "seed": self.seed,
            **({} if self.cv == "stratified_repeated" else {"cv": self.cv, "repeats": 1}),
            "honest_epoch": evaluation.honest_epoch,
            "inner_validation_fraction": (evaluation.inner_validation_fraction
                                          if evaluation.honest_epoch == "validation" else None),
            "splits": [{"repeat": s.repeat, "fold": s.fold,
                        "fit": ids[self.inner[(s.repeat, s.fold)][0]].tolist(),
                        "validation": ids[self.inner[(s.repeat, s.fold)][1]].tolist(),
                        "test": ids[s.test].tolist()} for s in self.splits],
        }
        trajectory_frame = (pd.concat(trajectories, ignore_index=True) if trajectories
                            else pd.DataFrame(columns=["arm", "model", "repeat", "fold",
                                                       "epoch"]))
        return ExperimentResult(metrics, predictions, trajectory_frame, split_record, models,
                                {f"{name}_s": t for name, t in timings.items()})

    def _trajectory(self, task: FoldTask, record: FitRecord,
                    chosen: dict[str, tuple]) -> pd.DataFrame:
        labels, split = self.labels, task.split
        table = trajectory_table(labels[task.validation], record.val_probabilities,
                                 labels[split.test], record.test_trajectory,
                                 record.train_loss, record.lr)
        frame = pd.DataFrame({"arm": task.arm.name, "model": task.arm.model,
                              "repeat": split.repeat, "fold": split.fold, **table})
        for s in SELECTIONS:
            if s in chosen:
                frame[f"selected_{s}"] = (frame["epoch"] == chosen[s][0]).astype(int)
        return frame


def cross_validate(datasets: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
                   evaluation: EvaluationPlan, seed: int,
                   selections: Sequence[str] = ("honest",), *,
                   executor: Executor | None = None, fits: str | Path | None = None,
                   keep_weights: Sequence[str] = (), progress: bool | None = None,
                   cv: str = "stratified_repeated", keep_logits: bool = False,
                   device: str = "cpu") -> ExperimentResult:
    """Cross-validate every arm on identical splits.

    Parameters
    ----------
    datasets, arms, evaluation, seed, selections, cv, keep_logits, keep_weights
        See :class:`CrossValidation`.
    executor : Executor, optional
        Where the fits run (default: this process, one thread).
    fits : path-like, optional
        Where fits are published and read back from (:mod:`fmtc.evaluate.fits`); None
        computes every fit in memory.
    progress : bool, optional
        Show a progress bar over the fits.
    device : str
        The device type torch fits train on (part of their identity).

    Returns
    -------
    ExperimentResult
        Without ``summary`` (see :func:`summarise`).
    """
    executor = executor or Executor()
    plan = CrossValidation(datasets, arms, evaluation, seed, selections, cv, keep_logits,
                           frozenset(keep_weights))
    batch = run_fits(plan.fits(fits, device=device, threads=executor.threads_per_worker),
                     plan.datasets, need=plan.needs(), executor=executor,
                     publish=fits is not None, progress=progress)
    result = plan.assemble(batch.records)
    result.reused_fits = batch.reused
    return result


def _plain(params: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else params


def _pooled_rows(arm: Arm, selection: str, rows: list[tuple], labels: np.ndarray) -> list[tuple]:
    frame = pd.DataFrame([row[:7] for row in rows],
                         columns=["arm", "model", "repeat", "fold", "participant_id",
                                  "probability", "label"])
    frame = frame[frame["arm"] == arm.name]
    out = []
    for repeat, part in frame.groupby("repeat", sort=True):
        values = binary_metrics(part["label"].to_numpy(), part["probability"].to_numpy())
        out += [(arm.name, arm.model, selection, int(repeat), "pooled", m, values[m])
                for m in METRICS]
    return out


def _sort_metrics(metrics: pd.DataFrame, arms: Sequence[Arm]) -> pd.DataFrame:
    fold_key = metrics["fold"].map(lambda f: 10**6 if f == "pooled" else int(f))
    order = pd.DataFrame({"a": metrics["arm"].map({a.name: i for i, a in enumerate(arms)}),
                          "s": metrics["selection"].map({s: i for i, s in enumerate(SELECTIONS)}),
                          "r": metrics["repeat"], "f": fold_key,
                          "k": metrics["metric"].map({m: i for i, m in enumerate(METRICS)})})
    index = order.sort_values(["a", "s", "r", "f", "k"], kind="stable").index
    return metrics.loc[index].reset_index(drop=True)


# --------------------------------------------------------------------------- summaries


def pooled_predictions(predictions: pd.DataFrame, arm: str,
                       subject_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``labels [n]`` and ``probabilities [repeats, n]`` of one arm, in ``subject_ids`` order."""
    column = "arm" if "arm" in predictions else "model"
    part = predictions[predictions[column] == arm]
    table = part.pivot(index="participant_id", columns="repeat", values="probability")
    table = table.reindex(list(subject_ids))
    labels = part.drop_duplicates("participant_id").set_index("participant_id")["label"]
    return (labels.reindex(list(subject_ids)).to_numpy(dtype=np.int64),
            table.to_numpy(dtype=np.float64).T)


@dataclass(frozen=True)
class _SummaryTask:
    arm: str
    model: str
    selection: str
    labels: np.ndarray
    probabilities: np.ndarray
    pooled: dict[str, np.ndarray]
    n_bootstrap: int
    n_permutations: int
    seed: int


def _summary_rows(task: _SummaryTask, _shared: Any = None) -> list[tuple]:
    boot = bootstrap_interval(task.labels, task.probabilities, task.n_bootstrap, task.seed)
    pvalues = permutation_pvalue(task.labels, task.probabilities, task.n_permutations, task.seed)
    rows = []
    for metric in METRICS:
        mean, low, high = repeat_interval(task.pooled[metric])
        rows.append((task.arm, task.model, task.selection, metric, mean, low, high, *boot[metric],
                     pvalues.get(metric, np.nan)))
    return rows


def summarise(result: ExperimentResult, evaluation: EvaluationPlan, seed: int,
              subject_ids: Sequence[str], executor: Executor | None = None) -> pd.DataFrame:
    """The tidy table: per arm, selection and metric, the mean pooled value and its uncertainty.

    Columns: ``arm, model, selection, metric, mean, repeat_low, repeat_high,
    bootstrap_low, bootstrap_high, p_value`` (p-values for MCC and AUC only; see
    :mod:`fmtc.evaluate.uncertainty` for what each number means). Each (arm, selection)
    is one task of ``executor``.
    """
    metrics = result.metrics
    tasks = []
    for (arm, model, selection), part in metrics.groupby(["arm", "model", "selection"],
                                                         sort=False):
        labels, probs = pooled_predictions(result.predictions[selection], arm, subject_ids)
        pooled = part[part["fold"] == "pooled"]
        tasks.append(_SummaryTask(
            arm, model, selection, labels, probs,
            {m: pooled.loc[pooled["metric"] == m, "value"].to_numpy() for m in METRICS},
            evaluation.bootstrap, evaluation.permutations, seed))
    rows = [row for rows in (executor or Executor()).map(_summary_rows, tasks, desc="summaries")
            for row in rows]
    return pd.DataFrame(rows, columns=["arm", "model", "selection", "metric", "mean",
                                       "repeat_low", "repeat_high", "bootstrap_low",
                                       "bootstrap_high", "p_value"])


def selection_optimism(metrics: pd.DataFrame, metric: str = "mcc") -> pd.DataFrame:
    """Paper minus honest selection: mean pooled ``metric`` per arm with epochs (needs both)."""
    pooled = metrics[(metrics["fold"] == "pooled") & (metrics["metric"] == metric)]
    means = pooled.groupby(["arm", "selection"], sort=False)["value"].mean().unstack()
    if not {"honest", "paper"} <= set(means.columns):
        return pd.DataFrame(columns=["arm", "honest", "paper", "optimism"])
    models = pooled.drop_duplicates("arm").set_index("arm")["model"]
    means = means.loc[[a for a in means.index if get_model(models[a]).epochs]]
    return pd.DataFrame({"arm": means.index, "honest": means["honest"].to_numpy(),
                         "paper": means["paper"].to_numpy(),
                         "optimism": (means["paper"] - means["honest"]).to_numpy()})
