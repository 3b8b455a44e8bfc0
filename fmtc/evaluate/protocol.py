"""The cross-validated experiment: repeated stratified k-fold, selection, metrics, run folders.

One run (``fmtc evaluate``, :func:`evaluate_cohort`, :func:`main_comparison`)
trains every requested model on every outer fold of every repeat
(:func:`fmtc.evaluate.splits.stratified_splits`, subject-level). Torch models
(FMM_TC, TS-only, FC-only; :mod:`fmtc.predict.models`) are trained on the
whole training fold when the honest selection takes the last epoch of the
declared schedule (``evaluation.honest_epoch: last``, the default), or on its
*inner-train* part when a stratified *inner validation* part
(``evaluation.inner_validation_fraction``) chooses the epoch
(``honest_epoch: validation``). Their trajectory (validation and test
predictions after every epoch) is logged once, and both selections of
:mod:`fmtc.evaluate.selection` read it. The
logistic baselines (``fc-logreg``, ``cls-logreg``) have no epochs; they are fit
on the whole training fold with ``C`` chosen by inner CV, and appear under every
requested selection with the same predictions.

A run folder holds::

    metrics.csv          model, selection, repeat, fold, metric, value  (fold "pooled": all
                         out-of-fold predictions of a repeat)
    predictions.csv      model, repeat, fold, participant_id, probability, label
                         (first requested selection; others: predictions_<selection>.csv)
    summary.csv          model, selection, metric, mean, repeat_low/high, bootstrap_low/high,
                         p_value
    trajectories.csv     per model, repeat, fold and epoch: lr, losses, MCC, AUC, chosen epochs
    splits.json          participant ids of the fit / validation / test parts of every fold
    models.json          what `fmtc interpret --run` needs to rebuild each model
    weights/<model>/repeat-R_fold-F.pt   state_dict of the selected epoch (standardisation
                                         statistics included as buffers)
    provenance.json      plan, versions, cohort and encoder hashes, device, timings

``metrics.csv``, ``predictions.csv``, ``summary.csv`` and ``trajectories.csv``
hold no paths, times or timestamps and print floats with ``%.6g``: identical
runs give byte-identical files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.cohort.folder import Cohort
from fmtc.evaluate.metrics import METRICS, binary_metrics
from fmtc.evaluate.selection import (
    SELECTIONS,
    select_epoch,
    snapshot_rule,
    trajectory_table,
)
from fmtc.evaluate.splits import Split, stratified_splits
from fmtc.evaluate.uncertainty import (
    bootstrap_interval,
    permutation_pvalue,
    repeat_interval,
)
from fmtc.plan import Plan
from fmtc.storage import atomic_open, write_json

TORCH_MODELS = ("fmmtc", "ts", "fc")
BASELINE_MODELS = ("fc-logreg", "cls-logreg")
MODELS = TORCH_MODELS + BASELINE_MODELS
MODEL_NAMES = {"fmmtc": "FMM_TC", "ts": "TS-only", "fc": "FC-only",
               "fc-logreg": "FC logistic", "cls-logreg": "CLS logistic"}
FLOAT_FORMAT = "%.6g"


@dataclass(frozen=True)
class ExperimentData:
    """Everything the models read, in the cohort's subject order.

    Attributes
    ----------
    subject_ids : list of str
    labels : ndarray of shape (N,)
    fc : ndarray of shape (N, R, R) or None
        Connectivity (``connectivity.kind``), when a model needs it.
    cls : ndarray of shape (N, W, H) or None
        BrainLM CLS per window (NaN beyond ``n_windows``), when a model needs it.
    n_windows : ndarray of shape (N,) or None
    encoder : dict or None
        Provenance of the encoder behind ``cls``.
    feature_cache : str or None
        Path of the feature cache ``cls`` was read from.
    """

    subject_ids: list[str]
    labels: np.ndarray
    fc: np.ndarray | None = None
    cls: np.ndarray | None = None
    n_windows: np.ndarray | None = None
    encoder: dict[str, Any] | None = None
    feature_cache: str | None = None


@dataclass
class ExperimentResult:
    """Tables of one run (see the module docstring for their columns)."""

    metrics: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    trajectories: pd.DataFrame
    splits: dict[str, Any]
    models: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    summary: pd.DataFrame | None = None


# --------------------------------------------------------------------------- inputs


def cohort_connectivity(cohort: Cohort, kind: str) -> np.ndarray:
    """``[N, R, R]`` connectivity of every participant (robust-scaled series, then ``kind``).

    Parameters
    ----------
    cohort : Cohort
    kind : {"pearson", "gram"}
        See :func:`fmtc.preprocess.transforms.functional_connectivity`; Pearson is
        unaffected by the scaling, the authors' Gram matrix is not.
    """
    from fmtc.preprocess.transforms import functional_connectivity, robust_scale

    return np.stack([functional_connectivity(robust_scale(cohort.timeseries[s]), kind)
                     for s in cohort.subject_ids])


def _aligned_features(features: Any, subject_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    position = {s: i for i, s in enumerate(features.subject_ids)}
    missing = [s for s in subject_ids if s not in position]
    if missing:
        raise ValueError(f"the feature cache {features.cache_path} lacks {len(missing)} subject(s) "
                         f"of the cohort (first: {missing[:3]}); delete it to rebuild it")
    order = np.array([position[s] for s in subject_ids])
    cls = np.asarray(features.cls)
    if cls.ndim != 3 or len(cls) != len(features.subject_ids):
        raise ValueError(f"feature cache {features.cache_path}: expected CLS [N, W, H], got "
                         f"{cls.shape}")
    return cls[order], np.asarray(features.n_windows)[order]


def experiment_data(cohort: Cohort, plan: Plan, models: Sequence[str], *, features: Any = None,
                    device: Any = None, source: str | None = None,
                    progress: bool = False) -> ExperimentData:
    """Gather labels, connectivity and (cached) BrainLM features for ``models``.

    Parameters
    ----------
    cohort : Cohort
    plan : Plan
        ``connectivity.kind`` and the BrainLM settings of the feature cache.
    models : sequence of str
        Only the inputs these models read are computed.
    features : FeatureSet, optional
        Precomputed features (tests, notebooks); default
        :func:`fmtc.represent.features.cohort_features`.
    device : torch.device, optional
        Where the encoder runs on a cache miss.
    source : str, optional
        Encoder override (``--brainlm``).
    progress : bool
    """
    from fmtc.predict.models import uses_cls, uses_fc

    ids = cohort.subject_ids
    fc = cohort_connectivity(cohort, plan.connectivity.kind) if any(map(uses_fc, models)) else None
    cls = n_windows = encoder = cache = None
    if any(map(uses_cls, models)):
        if features is None:
            from fmtc.represent.features import cohort_features

            features = cohort_features(cohort, plan, device=device, source=source,
                                       progress=progress)
        cls, n_windows = _aligned_features(features, ids)
        encoder, cache = dict(features.encoder), str(features.cache_path)
    return ExperimentData(ids, cohort.labels, fc, cls, n_windows, encoder, cache)


# --------------------------------------------------------------------------- protocol


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


def _fold_seed(seed: int, split: Split) -> int:
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


def _fit_baseline(model: str, data: ExperimentData, plan: Plan, split: Split,
                  seed: int) -> np.ndarray:
    from fmtc.predict.baselines import logistic_baseline
    from fmtc.preprocess.transforms import upper_triangle

    if model == "fc-logreg":
        x = upper_triangle(data.fc)
    else:
        valid = np.arange(data.cls.shape[1])[None, :] < data.n_windows[:, None]
        x = np.where(valid[..., None], data.cls, 0.0).sum(1) / data.n_windows[:, None]
    estimator = logistic_baseline(plan.logistic.c_grid, plan.logistic.inner_folds, seed)
    estimator.fit(x[split.train], data.labels[split.train])
    return estimator.predict_proba(x[split.test])[:, 1]


def _model_config(model: str, data: ExperimentData, plan: Plan):
    from fmtc.predict.models import ModelConfig

    return ModelConfig(kind=model,
                       cls_dim=int(data.cls.shape[2]) if data.cls is not None else 0,
                       n_regions=int(data.fc.shape[1]) if data.fc is not None else 0,
                       pool_size=plan.connectivity.pool_size, fc_kind=plan.connectivity.kind)


def _check_inputs(model: str, data: ExperimentData) -> None:
    from fmtc.predict.models import uses_cls, uses_fc

    if uses_cls(model) and data.cls is None:
        raise ValueError(f"model {model!r} needs BrainLM CLS features; ExperimentData has none")
    if uses_fc(model) and data.fc is None:
        raise ValueError(f"model {model!r} needs connectivity matrices; ExperimentData has none")


def run_experiment(data: ExperimentData, plan: Plan, models: Sequence[str],
                   selections: Sequence[str] = ("honest",), *, device: Any = None,
                   weights_dir: Path | None = None, progress: bool = False) -> ExperimentResult:
    """Cross-validate ``models`` on ``data`` with the protocol of ``plan.evaluation``.

    Parameters
    ----------
    data : ExperimentData
    plan : Plan
        ``evaluation`` (folds, repeats, inner validation), ``train``, ``logistic``,
        ``connectivity.pool_size`` and ``seed``.
    models : sequence of str
        Any of :data:`MODELS`.
    selections : sequence of {"honest", "paper"}
        Epoch selections reported; the first one's predictions are ``predictions.csv``.
    device : torch.device, optional
        Chosen by the caller; default CPU.
    weights_dir : Path, optional
        Where per-fold ``state_dict`` files are written as folds finish.
    progress : bool
        Print one line per fold.

    Returns
    -------
    ExperimentResult
        Without ``summary`` (see :func:`summarise`).
    """
    import torch

    from fmtc.predict.training import ModelInputs, train_fold

    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    bad = [s for s in selections if s not in SELECTIONS]
    if bad or not selections:
        raise ValueError(f"unknown selection(s) {bad}; choose from {list(SELECTIONS)}")
    for model in models:
        _check_inputs(model, data)
    device = device if device is not None else torch.device("cpu")
    ev = plan.evaluation
    labels = np.asarray(data.labels, dtype=np.int64)
    ids = np.asarray(data.subject_ids)
    splits = stratified_splits(labels, ev.folds, ev.repeats, plan.seed)
    if ev.honest_epoch == "validation":
        inner = {(s.repeat, s.fold): inner_validation_split(
            s.train, labels, ev.inner_validation_fraction, _fold_seed(plan.seed, s))
            for s in splits}
    else:  # the declared schedule's last epoch: train on the whole training fold
        inner = {(s.repeat, s.fold): (s.train, s.train[:0]) for s in splits}

    metric_rows: list[tuple] = []
    prediction_rows: dict[str, list[tuple]] = {s: [] for s in selections}
    trajectories: list[pd.DataFrame] = []
    model_records: dict[str, Any] = {}
    timings: dict[str, float] = {}
    with _deterministic_torch():
        for model in models:
            start = time.perf_counter()
            record: dict[str, Any] = {"name": MODEL_NAMES[model], "selected_epochs": []}
            if model in TORCH_MODELS:
                config = _model_config(model, data, plan)
                record.update(config=config.to_dict(), train=vars(plan.train).copy(),
                              weights="weights/" + model + "/repeat-{repeat}_fold-{fold}.pt",
                              weights_selection=selections[0])
                inputs = ModelInputs.from_arrays(
                    labels, device,
                    cls=data.cls if model != "fc" else None,
                    n_windows=data.n_windows if model != "fc" else None,
                    fc=data.fc if model != "ts" else None)
            for split in splits:
                seed = _fold_seed(plan.seed, split)
                chosen: dict[str, np.ndarray] = {}
                if model in TORCH_MODELS:
                    fit, val = inner[(split.repeat, split.fold)]
                    log = train_fold(config, plan.train, inputs, fit, val, split.test, seed=seed,
                                     device=device,
                                     snapshot=snapshot_rule(list(selections), labels[val],
                                                            labels[split.test], ev.honest_epoch))
                    epochs = {s: select_epoch(s, labels[val], log.val_probabilities,
                                              labels[split.test], log.test_probabilities,
                                              ev.honest_epoch)
                              for s in selections}
                    for s in selections:
                        if log.snapshots[s][0] != epochs[s]:  # pragma: no cover - invariant
                            raise RuntimeError(f"snapshot of {s} is epoch {log.snapshots[s][0]}, "
                                               f"selection says {epochs[s]}")
                        chosen[s] = log.test_probabilities[epochs[s]]
                    table = trajectory_table(labels[val], log.val_probabilities,
                                             labels[split.test], log.test_probabilities,
                                             log.train_loss, log.lr)
                    frame = pd.DataFrame({"model": model, "repeat": split.repeat,
                                          "fold": split.fold, **table})
                    for s in SELECTIONS:
                        if s in selections:
                            frame[f"selected_{s}"] = (frame["epoch"] == epochs[s]).astype(int)
                    trajectories.append(frame)
                    record["selected_epochs"].append(
                        {"repeat": split.repeat, "fold": split.fold, **epochs})
                    if weights_dir is not None:
                        _save_weights(weights_dir, model, split, selections, log.snapshots)
                else:
                    probs = _fit_baseline(model, data, plan, split, seed)
                    chosen = {s: probs for s in selections}
                for s in selections:
                    values = binary_metrics(labels[split.test], chosen[s])
                    metric_rows += [(model, s, split.repeat, str(split.fold), m, values[m])
                                    for m in METRICS]
                    prediction_rows[s] += [
                        (model, split.repeat, split.fold, ids[i], p, labels[i])
                        for i, p in zip(split.test, chosen[s], strict=True)]
                if progress:
                    mcc = [r[-1] for r in metric_rows[-len(METRICS) * len(selections):]
                           if r[4] == "mcc"]
                    print(f"  {model} repeat {split.repeat} fold {split.fold}: test MCC "
                          + ", ".join(f"{s} {v:.3f}" for s, v in zip(selections, mcc,
                                                                      strict=True)),
                          flush=True)
            for s in selections:
                metric_rows += _pooled_rows(model, s, prediction_rows[s], labels)
            model_records[model] = record
            timings[model] = time.perf_counter() - start

    metrics = pd.DataFrame(metric_rows, columns=["model", "selection", "repeat", "fold",
                                                 "metric", "value"])
    metrics = _sort_metrics(metrics, models)
    predictions = {s: pd.DataFrame(rows, columns=["model", "repeat", "fold", "participant_id",
                                                  "probability", "label"])
                   for s, rows in prediction_rows.items()}
    split_record = {
        "folds": ev.folds, "repeats": ev.repeats, "seed": plan.seed,
        "honest_epoch": ev.honest_epoch,
        "inner_validation_fraction": (ev.inner_validation_fraction
                                      if ev.honest_epoch == "validation" else None),
        "splits": [{"repeat": s.repeat, "fold": s.fold,
                    "fit": ids[inner[(s.repeat, s.fold)][0]].tolist(),
                    "validation": ids[inner[(s.repeat, s.fold)][1]].tolist(),
                    "test": ids[s.test].tolist()} for s in splits],
    }
    trajectory_frame = (pd.concat(trajectories, ignore_index=True) if trajectories
                        else pd.DataFrame(columns=["model", "repeat", "fold", "epoch"]))
    return ExperimentResult(metrics, predictions, trajectory_frame, split_record,
                            model_records, timings)


def _pooled_rows(model: str, selection: str, rows: list[tuple], labels: np.ndarray) -> list[tuple]:
    frame = pd.DataFrame(rows, columns=["model", "repeat", "fold", "participant_id",
                                        "probability", "label"])
    frame = frame[frame["model"] == model]
    out = []
    for repeat, part in frame.groupby("repeat", sort=True):
        values = binary_metrics(part["label"].to_numpy(), part["probability"].to_numpy())
        out += [(model, selection, int(repeat), "pooled", m, values[m]) for m in METRICS]
    return out


def _sort_metrics(metrics: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    fold_key = metrics["fold"].map(lambda f: 10**6 if f == "pooled" else int(f))
    order = pd.DataFrame({"m": metrics["model"].map({m: i for i, m in enumerate(models)}),
                          "s": metrics["selection"].map({s: i for i, s in enumerate(SELECTIONS)}),
                          "r": metrics["repeat"], "f": fold_key,
                          "k": metrics["metric"].map({m: i for i, m in enumerate(METRICS)})})
    index = order.sort_values(["m", "s", "r", "f", "k"], kind="stable").index
    return metrics.loc[index].reset_index(drop=True)


def _save_weights(weights_dir: Path, model: str, split: Split, selections: Sequence[str],
                  snapshots: dict[str, tuple[int, dict]]) -> None:
    import torch

    for i, s in enumerate(selections):
        folder = Path(weights_dir) / model / ("" if i == 0 else s)
        # A handle, so the archive's record names do not carry the temporary file's name.
        with atomic_open(folder / f"repeat-{split.repeat}_fold-{split.fold}.pt", "wb") as handle:
            torch.save(snapshots[s][1], handle)


# --------------------------------------------------------------------------- summaries


def pooled_predictions(predictions: pd.DataFrame, model: str,
                       subject_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``labels [n]`` and ``probabilities [repeats, n]`` of one model, in ``subject_ids`` order."""
    part = predictions[predictions["model"] == model]
    table = part.pivot(index="participant_id", columns="repeat", values="probability")
    table = table.reindex(list(subject_ids))
    labels = part.drop_duplicates("participant_id").set_index("participant_id")["label"]
    return (labels.reindex(list(subject_ids)).to_numpy(dtype=np.int64),
            table.to_numpy(dtype=np.float64).T)


def summarise(result: ExperimentResult, plan: Plan, subject_ids: Sequence[str]) -> pd.DataFrame:
    """The tidy table: per model, selection and metric, the mean pooled value and its uncertainty.

    Columns: ``model, selection, metric, mean, repeat_low, repeat_high,
    bootstrap_low, bootstrap_high, p_value`` (p-values for MCC and AUC only;
    see :mod:`fmtc.evaluate.uncertainty` for what each number means).
    """
    metrics = result.metrics
    rows = []
    for (model, selection), part in metrics.groupby(["model", "selection"], sort=False):
        labels, probs = pooled_predictions(result.predictions[selection], model, subject_ids)
        boot = bootstrap_interval(labels, probs, plan.evaluation.bootstrap, plan.seed)
        pvalues = permutation_pvalue(labels, probs, plan.evaluation.permutations, plan.seed)
        pooled = part[part["fold"] == "pooled"]
        for metric in METRICS:
            mean, low, high = repeat_interval(pooled.loc[pooled["metric"] == metric, "value"])
            rows.append((model, selection, metric, mean, low, high, *boot[metric],
                         pvalues.get(metric, np.nan)))
    return pd.DataFrame(rows, columns=["model", "selection", "metric", "mean", "repeat_low",
                                       "repeat_high", "bootstrap_low", "bootstrap_high",
                                       "p_value"])


def selection_optimism(metrics: pd.DataFrame, metric: str = "mcc") -> pd.DataFrame:
    """Paper minus honest selection: mean pooled ``metric`` per torch model (needs both)."""
    pooled = metrics[(metrics["fold"] == "pooled") & (metrics["metric"] == metric)]
    means = pooled.groupby(["model", "selection"], sort=False)["value"].mean().unstack()
    if not {"honest", "paper"} <= set(means.columns):
        return pd.DataFrame(columns=["model", "honest", "paper", "optimism"])
    means = means.loc[[m for m in means.index if m in TORCH_MODELS]]
    return pd.DataFrame({"model": means.index, "honest": means["honest"].to_numpy(),
                         "paper": means["paper"].to_numpy(),
                         "optimism": (means["paper"] - means["honest"]).to_numpy()})


def format_table(summary: pd.DataFrame, metrics: Sequence[str] = ("mcc", "auc", "bacc", "acc",
                                                                   "f1")) -> str:
    """A compact text table of ``summary``: mean [bootstrap interval] per metric, p-values."""
    lines = []
    for (model, selection), part in summary.groupby(["model", "selection"], sort=False):
        part = part.set_index("metric")
        cells = [f"{m.upper()} {part.at[m, 'mean']:.3f} "
                 f"[{part.at[m, 'bootstrap_low']:.2f}, {part.at[m, 'bootstrap_high']:.2f}]"
                 for m in metrics]
        p = "  p(MCC) " + _format_p(part.at["mcc", "p_value"]) + "  p(AUC) " + _format_p(
            part.at["auc", "p_value"])
        lines.append(f"{MODEL_NAMES.get(model, model):<13} {selection:<7} " + "  ".join(cells) + p)
    return "\n".join(lines)


def _format_p(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


# --------------------------------------------------------------------------- run folders


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n",
                     na_rep="nan")


def write_run(out: Path, result: ExperimentResult, provenance: dict[str, Any]) -> Path:
    """Write the tables, splits, model records and provenance of a run into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Tables of an earlier run in this folder that this run does not rewrite must not outlive it.
    stale = [*out.glob("predictions_*.csv"), *([] if result.summary is not None
                                                else [out / "summary.csv"])]
    for path in stale:
        path.unlink(missing_ok=True)
    _write_csv(out / "metrics.csv", result.metrics)
    for i, (selection, frame) in enumerate(result.predictions.items()):
        _write_csv(out / ("predictions.csv" if i == 0 else f"predictions_{selection}.csv"), frame)
    if result.summary is not None:
        _write_csv(out / "summary.csv", result.summary)
    _write_csv(out / "trajectories.csv", result.trajectories)
    write_json(out / "splits.json", result.splits)
    write_json(out / "models.json", result.models)
    write_json(out / "provenance.json", provenance)
    return out


def default_run_dir(plan: Plan, models: Sequence[str], permute_labels: bool = False,
                    prefix: str = "evaluate") -> Path:
    """``<runs_dir>/<prefix>_<models>_<profile>_seed-<seed>`` (no timestamp: reruns overwrite)."""
    name = f"{prefix}_{'+'.join(models)}_{plan.profile}_seed-{plan.seed}"
    if permute_labels:
        name += "_permuted-labels"
    return plan.path(plan.outputs.runs_dir) / name


def evaluate_cohort(plan: Plan, cohort: Cohort, models: Sequence[str],
                    selections: Sequence[str] = ("honest",), *, out: Path | None = None,
                    device: Any = None, features: Any = None, source: str | None = None,
                    permute_labels: bool = False, progress: bool = False) -> ExperimentResult:
    """Run the protocol on a cohort and write a run folder; the glue behind ``fmtc evaluate``.

    Parameters
    ----------
    plan : Plan
    cohort : Cohort
    models : sequence of str
        Any of :data:`MODELS`.
    selections : sequence of {"honest", "paper"}
    out : Path, optional
        Run folder; default :func:`default_run_dir`.
    device : torch.device, optional
        Default: ``plan.device`` resolved here.
    features : FeatureSet, optional
        Precomputed BrainLM features; default read from (or built into) the cache.
    source : str, optional
        BrainLM source override (``--brainlm``).
    permute_labels : bool
        Shuffle the labels once (seed ``plan.seed``) before anything: a null run.
    progress : bool

    Returns
    -------
    ExperimentResult
        With ``summary``.
    """
    import shutil

    from fmtc.device import describe_device, resolve_device, seed_everything
    from fmtc.provenance import provenance_record

    device = device if device is not None else resolve_device(plan.device)
    out = Path(out) if out is not None else default_run_dir(plan, models, permute_labels)
    seed_everything(plan.seed)
    start = time.perf_counter()
    data = experiment_data(cohort, plan, models, features=features, device=device,
                           source=source, progress=progress)
    feature_seconds = time.perf_counter() - start
    if permute_labels:
        shuffled = np.random.default_rng(plan.seed).permutation(data.labels)
        data = dataclasses.replace(data, labels=shuffled)
    for model in models:  # stale weights of an earlier run must not outlive it
        if model in TORCH_MODELS:
            shutil.rmtree(out / "weights" / model, ignore_errors=True)
    result = run_experiment(data, plan, models, selections, device=device,
                            weights_dir=out / "weights", progress=progress)
    result.summary = summarise(result, plan, data.subject_ids)
    result.timings = {"features_s": feature_seconds,
                      **{f"{m}_s": t for m, t in result.timings.items()},
                      "total_s": time.perf_counter() - start}
    record = provenance_record(
        command="evaluate", plan=plan.to_dict(), profile=plan.profile, seed=plan.seed,
        models=list(models), selections=list(selections), permute_labels=permute_labels,
        cohort={"path": str(Path(cohort.root).resolve()), "content_hash": cohort.content_hash,
                "name": cohort.name, "simulated": cohort.is_simulated,
                "label_column": cohort.label_column, "n_subjects": len(data.subject_ids)},
        encoder=data.encoder, feature_cache=data.feature_cache,
        connectivity={"kind": plan.connectivity.kind, "pool_size": plan.connectivity.pool_size},
        device=describe_device(device), timings=result.timings)
    result.models = {"models": result.models, "connectivity": record["connectivity"],
                     "cohort": record["cohort"], "encoder": data.encoder,
                     "feature_cache": data.feature_cache, "label_permuted": permute_labels,
                     "standardisation": "buffers of each state_dict (training-subject statistics)"}
    write_run(out, result, record)
    return result


def main_comparison_dir(plan: Plan) -> Path:
    """The default run folder of :func:`main_comparison`: ``<runs_dir>/main-comparison_...``."""
    return plan.path(plan.outputs.runs_dir) / f"main-comparison_{plan.profile}_seed-{plan.seed}"


def main_comparison(plan: Plan, cohort: Cohort | None = None, out: Path | None = None,
                    device: Any = None, features: Any = None,
                    selections: Sequence[str] | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """FMM_TC vs TS-only vs FC-only vs the two logistic baselines (``evaluation.models``).

    Parameters
    ----------
    plan : Plan
    cohort : Cohort, optional
        Default: the plan's cohort (:func:`fmtc.workflow.plan_cohort`).
    out : Path, optional
        Run folder; default :func:`main_comparison_dir`.
    device : torch.device, optional
    features : FeatureSet, optional
    selections : sequence of {"honest", "paper"}, optional
        Epoch selections to report (one training serves all); default
        ``[evaluation.selection]``.
    progress : bool

    Returns
    -------
    DataFrame
        The tidy table of :func:`summarise`: one row per model, selection and metric.
    """
    if cohort is None:
        from fmtc.workflow import plan_cohort

        cohort = plan_cohort(plan, progress=progress)
    models = list(plan.evaluation.models)
    if out is None:
        out = main_comparison_dir(plan)
    result = evaluate_cohort(plan, cohort, models, selections or [plan.evaluation.selection],
                             out=out, device=device, features=features, progress=progress)
    return result.summary


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder's tables and records (for notebooks and ``fmtc interpret``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no metrics.csv); run "
                                "`fmtc evaluate --out DIR` first")
    tables = {"metrics": pd.read_csv(run_dir / "metrics.csv", dtype={"fold": str}),
              "predictions": pd.read_csv(run_dir / "predictions.csv"),
              "trajectories": pd.read_csv(run_dir / "trajectories.csv")}
    if (run_dir / "summary.csv").is_file():
        tables["summary"] = pd.read_csv(run_dir / "summary.csv")
    for name in ("provenance", "models", "splits"):
        tables[name] = json.loads((run_dir / f"{name}.json").read_text())
    return tables
