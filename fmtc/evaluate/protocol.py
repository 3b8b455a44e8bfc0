"""The cross-validated, paired experiment: arms on identical splits, selection, metrics.

An experiment evaluates several *arms* (:class:`Arm`: a registered model with its
hyper-parameters, fed one view of the cohort's data) on the *same* repeated stratified
k-fold splits over subjects (:func:`fmtc.evaluate.splits.stratified_splits`), so that
arms can be compared subject by subject (:mod:`fmtc.evaluate.paired`).

Every (arm x repeat x fold) fit is an independent task (:class:`FoldTask`, run by
:func:`run_fold`) that seeds itself from the run's seed, the repeat and the fold, and
runs through an :class:`~fmtc.execution.Executor` (this process, local workers or a Dask
cluster) with the same result whatever runs it.

Models with epochs (the torch models) are trained on the whole training fold when the
honest selection takes the last epoch of the declared schedule
(``evaluation.honest_epoch: last``, the default), or on its *inner-train* part when a
stratified *inner validation* part chooses the epoch (``honest_epoch: validation``).
Their trajectory (validation and test probabilities after every epoch) is logged once,
and both selections of :mod:`fmtc.evaluate.selection` read it. Models without epochs
(the logistic baselines) are fit on the whole training fold and appear under every
requested selection with the same predictions.

The tables of a result (written by :mod:`fmtc.runs`)::

    metrics        arm, model, selection, repeat, fold, metric, value  (fold "pooled": all
                   out-of-fold predictions of a repeat)
    predictions    arm, model, repeat, fold, participant_id, probability, label
                   (one table per selection)
    summary        arm, model, selection, metric, mean, repeat_low/high, bootstrap_low/high,
                   p_value
    trajectories   per arm, repeat, fold and epoch: lr, losses, MCC, AUC, chosen epochs
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fmtc.evaluate.metrics import METRICS, binary_metrics
from fmtc.evaluate.selection import SELECTIONS, select_epoch, snapshot_rule, trajectory_table
from fmtc.evaluate.splits import Split, outer_splits
from fmtc.evaluate.uncertainty import bootstrap_interval, permutation_pvalue, repeat_interval
from fmtc.execution import Executor
from fmtc.plan import EvaluationPlan
from fmtc.predict.data import ExperimentData
from fmtc.predict.registry import ModelContext, ModelSpec, get_model

logger = logging.getLogger(__name__)

__all__ = ["Arm", "ExperimentData", "ExperimentResult", "FoldOutcome", "FoldTask",
           "cross_validate", "fold_seed", "inner_validation_split", "pooled_predictions",
           "run_fold", "selection_optimism", "summarise"]


@dataclass(frozen=True)
class Arm:
    """One resolved arm: a registered model, its hyper-parameters and its input data.

    Attributes
    ----------
    name : str
        Arm name in every table (e.g. ``fmmtc`` or ``fmmtc-random-init``).
    model : str
        Registered model (:func:`fmtc.predict.registry.get_model`).
    params : object
        The model's hyper-parameters (its plan section, e.g. a ``TrainPlan``).
    context : ModelContext
        Device and connectivity settings of the model.
    data : str
        Key of this arm's :class:`ExperimentData` among the experiment's datasets.
    spec : ModelSpec, optional
        The model's declaration, carried with the arm so that worker processes, which only
        know the built-in models, can run models registered by the caller. Default: looked
        up in the registry.
    """

    name: str
    model: str
    params: Any
    context: ModelContext = field(default_factory=ModelContext)
    data: str = "default"
    spec: ModelSpec | None = None

    @property
    def model_spec(self) -> ModelSpec:
        """The model's declaration (carried, else from the registry)."""
        return self.spec if self.spec is not None else get_model(self.model)

    @property
    def display_name(self) -> str:
        """The model's display name when the arm is named after it, else the arm name."""
        return self.model_spec.display_name if self.name == self.model else self.name


@dataclass(frozen=True)
class FoldTask:
    """One independent fit: an arm on one outer fold of one repeat."""

    arm: Arm
    split: Split
    fit: np.ndarray
    validation: np.ndarray
    seed: int
    selections: tuple[str, ...]
    honest_epoch: str


@dataclass
class FoldOutcome:
    """What one fit returns: per-selection test probabilities, trajectory and weights."""

    arm: str
    repeat: int
    fold: int
    test: np.ndarray
    probabilities: dict[str, np.ndarray]
    trajectory: pd.DataFrame | None = None
    epochs: dict[str, int] | None = None
    snapshots: dict[str, dict[str, Any]] | None = None
    config: dict[str, Any] | None = None
    seconds: float = 0.0
    logits: dict[str, np.ndarray] | None = None


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
    resumed_fits: int = 0


# --------------------------------------------------------------------------- one fold


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


@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def run_fold(task: FoldTask, data: ExperimentData) -> FoldOutcome:
    """Fit ``task.arm`` on one fold and read its test probabilities under every selection.

    A module-level function so that worker processes can run it; it reads nothing but
    its arguments and leaves the caller's random state unchanged.
    """
    start = time.perf_counter()
    arm, split = task.arm, task.split
    spec = arm.model_spec
    labels = np.asarray(data.labels, dtype=np.int64)
    estimator = spec.create(arm.params, arm.context)
    outcome = FoldOutcome(arm.name, split.repeat, split.fold, split.test, {})
    if not spec.epochs:
        estimator.fit(data, split.train, seed=task.seed)
        probs = np.asarray(estimator.predict_proba(data, split.test), dtype=np.float64)
        outcome.probabilities = {s: probs for s in task.selections}
        outcome.seconds = time.perf_counter() - start
        return outcome
    val, test = task.validation, split.test
    rule = snapshot_rule(list(task.selections), labels[val], labels[test], task.honest_epoch)
    with _deterministic_torch():
        estimator.fit(data, task.fit, seed=task.seed, validation=val, test=test, snapshot=rule)
    log = estimator.log_
    epochs = {s: select_epoch(s, labels[val], log.val_probabilities, labels[test],
                              log.test_probabilities, task.honest_epoch)
              for s in task.selections}
    for s in task.selections:
        if log.snapshots[s][0] != epochs[s]:  # pragma: no cover - invariant of snapshot_rule
            raise RuntimeError(f"snapshot of {s} is epoch {log.snapshots[s][0]}, selection "
                               f"says {epochs[s]}")
    table = trajectory_table(labels[val], log.val_probabilities, labels[test],
                             log.test_probabilities, log.train_loss, log.lr)
    frame = pd.DataFrame({"arm": arm.name, "model": arm.model, "repeat": split.repeat,
                          "fold": split.fold, **table})
    for s in SELECTIONS:
        if s in task.selections:
            frame[f"selected_{s}"] = (frame["epoch"] == epochs[s]).astype(int)
    outcome.probabilities = {s: log.test_probabilities[epochs[s]] for s in task.selections}
    if log.test_logits:
        outcome.logits = {s: np.asarray(log.test_logits[epochs[s]]) for s in task.selections}
    outcome.trajectory = frame
    outcome.epochs = epochs
    outcome.snapshots = {s: log.snapshots[s][1] for s in task.selections}
    outcome.config = estimator.config_.to_dict()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _run_fold_shared(item: tuple[FoldTask, Any], datasets: dict[str, ExperimentData]
                     ) -> FoldOutcome:
    task, store = item
    outcome = run_fold(task, datasets[task.arm.data])
    if store is not None:  # saved where the fit ran: an interruption loses no finished fit
        store.save(outcome, task.seed)
        outcome.snapshots = None
    return outcome


def _stored_outcome(task: FoldTask, store: Any) -> FoldOutcome | None:
    found = store.load(task.arm.name, task.split.repeat, task.split.fold, task.seed,
                       task.split.test, task.selections)
    if found is None:
        return None
    return FoldOutcome(task.arm.name, task.split.repeat, task.split.fold, found["test"],
                       found["probabilities"], found["trajectory"], found["epochs"], None,
                       found["config"], found["seconds"], found.get("logits"))


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


def fold_tasks(arms: Sequence[Arm], labels: np.ndarray, evaluation: EvaluationPlan, seed: int,
               selections: Sequence[str], cv: str = "stratified_repeated"
               ) -> tuple[list[FoldTask], list[Split], dict]:
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
    tasks = [FoldTask(arm, s, *inner[(s.repeat, s.fold)], fold_seed(seed, s), tuple(selections),
                      evaluation.honest_epoch)
             for arm in arms for s in splits]
    return tasks, splits, inner


def cross_validate(datasets: dict[str, ExperimentData] | ExperimentData, arms: Sequence[Arm],
                   evaluation: EvaluationPlan, seed: int,
                   selections: Sequence[str] = ("honest",), *,
                   executor: Executor | None = None,
                   on_weights: Callable[[FoldOutcome], None] | None = None,
                   store: Any = None,
                   progress: bool | None = None, cv: str = "stratified_repeated",
                   keep_logits: bool = False) -> ExperimentResult:
    """Cross-validate every arm on identical splits.

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
    executor : Executor, optional
        Where the fits run (default: this process, one thread).
    on_weights : callable, optional
        Called with each torch fit's outcome as it arrives (e.g. to save its weights),
        before its snapshots are dropped from memory. Not called with a ``store``.
    store : FitStore, optional
        Where each finished fit is saved (weights and record) by whoever ran it, and read
        back from when the experiment is run again after an interruption
        (:class:`fmtc.runs.FitStore`): only unfinished fits are computed.
    progress : bool, optional
        Show a progress bar over the fits.
    cv : {"stratified_repeated", "unshuffled_single"}
        ``protocol.cv``: the outer splits (``unshuffled_single``: the authors' one unshuffled
        stratified k-fold; ``evaluation.repeats`` is then unused).
    keep_logits : bool
        Add each test prediction's two logits (``logit_0``, ``logit_1``; NaN for models
        without them) to the predictions tables (an experiment's ``logits: true``).

    Returns
    -------
    ExperimentResult
        Without ``summary`` (see :func:`summarise`).
    """
    if isinstance(datasets, ExperimentData):
        datasets = {"default": datasets}
    selections = list(dict.fromkeys(selections))
    _check(datasets, arms, selections)
    executor = executor or Executor()
    first = datasets[arms[0].data]
    labels = np.asarray(first.labels, dtype=np.int64)
    ids = np.asarray(first.subject_ids)
    tasks, splits, inner = fold_tasks(arms, labels, evaluation, seed, selections, cv)
    logger.info("%d fit(s): %d arm(s) x %d repeat(s) x %d fold(s) on %s", len(tasks), len(arms),
                evaluation.repeats, evaluation.folds, executor.backend)
    stored = {}
    if store is not None:
        stored = {i: found for i, task in enumerate(tasks)
                  if (found := _stored_outcome(task, store)) is not None}
        if stored:
            logger.info("resuming: %d of %d fit(s) were finished before; computing the other "
                        "%d", len(stored), len(tasks), len(tasks) - len(stored))
    pending = [(task, store) for i, task in enumerate(tasks) if i not in stored]
    computed = executor.map(_run_fold_shared, pending, datasets, desc="fits", progress=progress)
    outcomes = (stored[i] if i in stored else next(computed) for i in range(len(tasks)))

    metric_rows: list[tuple] = []
    prediction_rows: dict[str, list[tuple]] = {s: [] for s in selections}
    trajectories: list[pd.DataFrame] = []
    records: dict[str, Any] = {}
    timings: dict[str, float] = {a.name: 0.0 for a in arms}
    by_name = {a.name: a for a in arms}
    for outcome in outcomes:
        arm = by_name[outcome.arm]
        spec = arm.model_spec
        record = records.setdefault(arm.name, {
            "name": arm.display_name, "model": arm.model, "inputs": list(spec.inputs),
            "data": arm.data, "selected_epochs": []})
        if outcome.epochs is not None:  # a torch fit, with weights
            record.update(config=outcome.config, train=_plain(arm.params),
                          weights=f"weights/{arm.name}/repeat-{{repeat}}_fold-{{fold}}.pt",
                          weights_selection=selections[0])
            record["selected_epochs"].append({"repeat": outcome.repeat, "fold": outcome.fold,
                                              **outcome.epochs})
            trajectories.append(outcome.trajectory)
            if on_weights is not None and outcome.snapshots is not None:
                on_weights(outcome)
            outcome.snapshots = None
        else:
            record["params"] = _plain(arm.params)
        test_labels = labels[outcome.test]
        for s in selections:
            probs = outcome.probabilities[s]
            values = binary_metrics(test_labels, probs)
            metric_rows += [(arm.name, arm.model, s, outcome.repeat, str(outcome.fold), m,
                             values[m]) for m in METRICS]
            rows = [(arm.name, arm.model, outcome.repeat, outcome.fold, ids[i], p, labels[i])
                    for i, p in zip(outcome.test, probs, strict=True)]
            if keep_logits:
                logits = (outcome.logits[s] if outcome.logits is not None
                          else np.full((len(outcome.test), 2), np.nan))
                rows = [(*row, float(z[0]), float(z[1]))
                        for row, z in zip(rows, logits, strict=True)]
            prediction_rows[s] += rows
        timings[arm.name] += outcome.seconds
        logger.debug("%s repeat %d fold %d: test MCC %s", arm.name, outcome.repeat, outcome.fold,
                     ", ".join(f"{r[2]} {r[-1]:.3f}" for r in metric_rows[-len(METRICS) *
                                                                          len(selections):]
                               if r[5] == "mcc"))
    for arm in arms:
        for s in selections:
            metric_rows += _pooled_rows(arm, s, prediction_rows[s], labels)

    columns = ["arm", "model", "repeat", "fold", "participant_id", "probability", "label"]
    if keep_logits:
        columns += ["logit_0", "logit_1"]
    metrics = _sort_metrics(pd.DataFrame(metric_rows, columns=["arm", "model", "selection",
                                                               "repeat", "fold", "metric",
                                                               "value"]), arms)
    predictions = {s: pd.DataFrame(rows, columns=columns) for s, rows in prediction_rows.items()}
    split_record = {
        "folds": evaluation.folds, "repeats": evaluation.repeats, "seed": seed,
        **({} if cv == "stratified_repeated" else {"cv": cv, "repeats": 1}),
        "honest_epoch": evaluation.honest_epoch,
        "inner_validation_fraction": (evaluation.inner_validation_fraction
                                      if evaluation.honest_epoch == "validation" else None),
        "splits": [{"repeat": s.repeat, "fold": s.fold,
                    "fit": ids[inner[(s.repeat, s.fold)][0]].tolist(),
                    "validation": ids[inner[(s.repeat, s.fold)][1]].tolist(),
                    "test": ids[s.test].tolist()} for s in splits],
    }
    trajectory_frame = (pd.concat(trajectories, ignore_index=True) if trajectories
                        else pd.DataFrame(columns=["arm", "model", "repeat", "fold", "epoch"]))
    return ExperimentResult(metrics, predictions, trajectory_frame, split_record, records,
                            {f"{name}_s": t for name, t in timings.items()},
                            resumed_fits=len(stored))


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
