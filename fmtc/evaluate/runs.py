"""Run folders: experiments and generalisations as results, their tables written and read back.

A run folder (kind ``run``, :class:`ExperimentRunResult`) holds::

    metrics.csv          arm, model, selection, repeat, fold, metric, value
    predictions.csv      arm, model, repeat, fold, participant_id, probability, label
                         (first selection; others: predictions_<selection>.csv)
    summary.csv          arm, model, selection, metric, mean, repeat_low/high,
                         bootstrap_low/high, p_value
    contrasts.csv        paired differences between arms (experiments with contrasts)
    trajectories.csv     per arm, repeat, fold and epoch: lr, losses, MCC, AUC, chosen epochs
    splits.json          participant ids of the fit / validation / test parts of every fold
    models.json          per arm: model, inputs, config, and the key of each fold's fit
    provenance.json      plan, versions, cohort and encoder hashes, device, execution, timings

A generalisation folder (kind ``generalisation``, :class:`GeneralisationResult`) holds
``generalisation.csv``, ``confounds.csv``, ``predictions.csv`` and ``provenance.json``.

Both are published by :mod:`fmtc.lifecycle` under ``<runs>/<prefix>_<profile>_<key>``: a run's
identity is its experiment's settings and the keys of its fits (:mod:`fmtc.evaluate.fits`), so
runs with other settings never overwrite each other, and an identical run is read back. The fits
themselves live in the fit store: a run interrupted half-way keeps its finished fits, and any
other run that needs them reads them back. The tables hold no paths, times or timestamps and
print floats with ``%.6g``: identical runs give byte-identical tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fmtc.evaluate.family import Contrast
from fmtc.evaluate.fits import Fit, run_fits
from fmtc.evaluate.protocol import CrossValidation, ExperimentResult, summarise
from fmtc.execution import Executor
from fmtc.lifecycle import Result
from fmtc.storage import atomic_open, write_json

FLOAT_FORMAT = "%.6g"


# --------------------------------------------------------------------------- tables


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a table atomically with the run folders' float format and line endings."""
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n",
                     na_rep="nan")


def write_run(out: Path, result: ExperimentResult, provenance: dict[str, Any],
              contrasts: pd.DataFrame | None = None) -> Path:
    """Write the tables, splits, model records and provenance of ``result`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "metrics.csv", result.metrics)
    for i, (selection, frame) in enumerate(result.predictions.items()):
        write_csv(out / ("predictions.csv" if i == 0 else f"predictions_{selection}.csv"), frame)
    if result.summary is not None:
        write_csv(out / "summary.csv", result.summary)
    if contrasts is not None:
        write_csv(out / "contrasts.csv", contrasts)
    write_csv(out / "trajectories.csv", result.trajectories)
    write_json(out / "splits.json", result.splits)
    write_json(out / "models.json", result.models)
    write_json(out / "provenance.json", provenance)
    return out


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder's tables and records (for notebooks and ``fmtc interpret``)."""
    from fmtc.lifecycle import read_record

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no metrics.csv); run "
                                "`fmtc evaluate` or `fmtc experiment` first")
    tables = {"metrics": pd.read_csv(run_dir / "metrics.csv", dtype={"fold": str}),
              "predictions": pd.read_csv(run_dir / "predictions.csv"),
              "trajectories": pd.read_csv(run_dir / "trajectories.csv")}
    for name in ("summary", "contrasts"):
        if (run_dir / f"{name}.csv").is_file():
            tables[name] = pd.read_csv(run_dir / f"{name}.csv")
    for path in sorted(run_dir.glob("predictions_*.csv")):
        tables[path.stem] = pd.read_csv(path)
    for name in ("provenance", "models", "splits"):
        tables[name] = json.loads((run_dir / f"{name}.json").read_text())
    record = read_record(run_dir)
    if record is not None:
        tables["run"] = record
    return tables


@dataclass
class ExperimentRun:
    """A finished (or re-read) experiment: its tables and where they are.

    Attributes
    ----------
    name : str
    run_dir : Path
    key : str
        Hash of the run's identity (the end of the folder's name).
    reused : bool
        True when an existing complete run with this identity was read back.
    tables : dict
        :func:`fmtc.evaluate.runs.load_run` of the folder (``metrics``, ``predictions``,
        ``summary``, ``contrasts``, ``provenance``, ...).
    """

    name: str
    run_dir: Path
    key: str
    reused: bool
    tables: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """Per arm, selection and metric: mean pooled value, intervals, p-value."""
        return self.tables["summary"]

    @property
    def contrasts(self) -> pd.DataFrame | None:
        """Paired differences of the experiment's contrasts (None when it declares none)."""
        return self.tables.get("contrasts")

    @property
    def metrics(self) -> pd.DataFrame:
        """The long-form metrics table."""
        return self.tables["metrics"]

    @property
    def predictions(self) -> dict[str, pd.DataFrame]:
        """Out-of-fold predictions by selection (``honest``, ``paper``), in the run's order."""
        selections = self.tables["provenance"]["selections"]
        return {name: self.tables["predictions" if i == 0 else f"predictions_{name}"]
                for i, name in enumerate(selections)}

    def contrast(self, arm_a: str, arm_b: str, selection: str = "honest") -> Contrast:
        """The paired :class:`~fmtc.evaluate.family.Contrast` ``arm_a − arm_b`` of one selection.

        Subjects are in the order of their ids, so that contrasts of runs on the same cohort
        are resampled jointly in a family (:func:`~fmtc.evaluate.family.family_inference`).
        """
        from fmtc.evaluate.family import contrast_from_predictions

        predictions = self.predictions
        if selection not in predictions:
            raise ValueError(f"run {self.name} has no selection {selection!r}; it has "
                             f"{', '.join(predictions)}")
        table = predictions[selection]
        subjects = sorted(table["participant_id"].unique(), key=str)
        return contrast_from_predictions(table, arm_a, arm_b, subjects, arm_column="arm")

    def encoder_contrast(self, arms_a: Sequence[str], arms_b: Sequence[str],
                         name_a: str | None = None, name_b: str | None = None,
                         selection: str = "honest") -> Contrast:
        """The encoder-level :class:`~fmtc.evaluate.family.Contrast` of two sets of arms.

        Each arm is one encoder draw (e.g. pretrained with seeds 0-2 against random-init with
        seeds 0-4) of the same model on the same splits; its repeats are the rows of its unit.
        """
        from fmtc.evaluate.family import contrast_from_predictions

        table = self.predictions[selection]
        subjects = sorted(table["participant_id"].unique(), key=str)
        parts = {}
        for arm in (*arms_a, *arms_b):
            one = contrast_from_predictions(table, arm, arm, subjects, arm_column="arm")
            parts[arm] = one.probs_a
        labels = one.labels

        def stack(arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            probs = np.concatenate([parts[a] for a in arms])
            units = np.concatenate([np.full(len(parts[a]), i) for i, a in enumerate(arms)])
            return probs, units

        (probs_a, units_a), (probs_b, units_b) = stack(arms_a), stack(arms_b)
        return Contrast(labels, probs_a, probs_b, tuple(subjects),
                        name_a or f"{arms_a[0]} (+{len(arms_a) - 1})",
                        name_b or f"{arms_b[0]} (+{len(arms_b) - 1})", units_a, units_b)

    def test_trajectories(self, arm: str, fits: str | Path
                          ) -> dict[tuple[int, int], tuple[list[str], np.ndarray]]:
        """Per ``(repeat, fold)``, an arm's test subjects and their predictions after every epoch.

        Read from the arm's fits in the fit store ``fits`` (the plan's ``outputs.fits_dir``);
        they hold the trajectory when the run asked for the paper's selection.
        :func:`fmtc.evaluate.official.reselected_draws` re-makes that selection per resample.
        """
        from fmtc.evaluate.fits import FIT_FILE

        tests = {(int(s["repeat"]), int(s["fold"])): list(s["test"])
                 for s in self.tables["splits"]["splits"]}
        out = {}
        for key, folder in fit_folders(self, Path(fits), arm).items():
            path = folder / FIT_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path}: the fit of arm {arm!r} (repeat {key[0]}, fold "
                                        f"{key[1]}) is not in the fit store {fits}; rerun the "
                                        f"experiment {self.name!r} to compute it")
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("test_trajectory") is None:
                raise ValueError(f"{path}: computed without its test trajectory; the paper's "
                                 "selection was not asked for in this run")
            trajectory = np.asarray(record["test_trajectory"], dtype=np.float64)
            if trajectory.shape[1] != len(tests[key]):
                raise ValueError(f"{path}: {trajectory.shape[1]} test subjects, the run's "
                                 f"split has {len(tests[key])}")
            out[key] = (tests[key], trajectory)
        return out


# --------------------------------------------------------------------------- experiments


@dataclass(frozen=True, eq=False)
class ExperimentRunResult(Result):
    """One cross-validated experiment as a result (see the module docstring).

    Parameters
    ----------
    name : str
        Experiment (or ``evaluate_<models>``) name.
    cv : CrossValidation
        Its arms, splits and selections, over the datasets in memory.
    fits : list of Fit
        One per task of ``cv`` (the identity holds their keys).
    contrasts : list of (str, str)
        Paired differences to report.
    evaluation : EvaluationPlan
        Resamples of the intervals and permutations.
    subject_ids : list of str
    cohort : dict
        ``content_hash``, ``label_column`` and what provenance records of the cohort.
    runs : Path
        Where runs are published.
    prefix, profile : str
        The folder's name: ``<prefix>_<profile>_<key>``.
    permute_labels : bool
    provenance_fields : dict
        Facts recorded in ``provenance.json`` (plan, encoders, device, execution).
    executor : Executor
    """

    kind: ClassVar[str] = "run"
    place: ClassVar[str] = "outputs.runs_dir"

    name: str
    cv: CrossValidation
    fits: list[Fit]
    contrasts: list[tuple[str, str]]
    subject_ids: list[str]
    cohort: dict[str, Any]
    runs: Path
    prefix: str
    profile: str
    permute_labels: bool = False
    provenance_fields: dict[str, Any] = field(default_factory=dict, compare=False)
    executor: Executor = field(default_factory=Executor, compare=False)
    progress: bool | None = field(default=None, compare=False)

    def config(self) -> dict[str, Any]:
        cv, evaluation = self.cv, self.cv.evaluation
        return {"experiment": self.name, "selections": list(cv.selections),
                "contrasts": [list(c) for c in self.contrasts], "seed": cv.seed, "cv": cv.cv,
                "logits": cv.keep_logits, "permute_labels": self.permute_labels,
                "evaluation": {k: getattr(evaluation, k) for k in (
                    "folds", "repeats", "honest_epoch", "inner_validation_fraction",
                    "bootstrap", "permutations")},
                "arms": [{"name": a.name, "model": a.model} for a in cv.arms]}

    def inputs(self) -> dict[str, Any]:
        return {"cohort": self.cohort["content_hash"],
                "label_column": self.cohort.get("label_column"),
                "fits": [fit.key for fit in self.fits]}

    def default_folder(self) -> Path:
        return Path(self.runs) / f"{self.prefix}_{self.profile}_{self.key[:12]}"

    def input_folders(self) -> list[Path]:
        return [Path(self.cohort["path"])] if self.cohort.get("path") else []

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from fmtc.evaluate.paired import paired_differences

        start = time.perf_counter()
        cv, evaluation = self.cv, self.cv.evaluation
        batch = run_fits(self.fits, cv.datasets, need=cv.needs(), executor=self.executor,
                         progress=self.progress)
        result = cv.assemble(batch.records)
        result.summary = summarise(result, evaluation, cv.seed, self.subject_ids, self.executor)
        table = None
        if self.contrasts:  # under the honest selection whenever it was computed
            selection = "honest" if "honest" in cv.selections else cv.selections[0]
            table = paired_differences(result.predictions[selection], self.contrasts,
                                       self.subject_ids, metric="mcc",
                                       n_bootstrap=evaluation.bootstrap,
                                       n_permutations=evaluation.permutations, seed=cv.seed)
            table.insert(2, "selection", selection)
        models = {"arms": result.models, "cohort": self.cohort,
                  "label_permuted": self.permute_labels, "fits": "fit-<model>-<key>",
                  "standardisation": "buffers of each state_dict (training-subject statistics)"}
        from fmtc.provenance import provenance_record

        record = provenance_record(
            command=self.name, experiment=self.name, key=self.key, profile=self.profile,
            seed=cv.seed, arms={a.name: a.model for a in cv.arms},
            selections=list(cv.selections), permute_labels=self.permute_labels,
            cohort=self.cohort,
            **{k: v for k, v in self.provenance_fields.items() if k not in ("timings", "fits")},
            fits=self.provenance_fields.get("fits") or {
                "total": len(self.fits), "read_back": batch.reused, "computed": batch.computed},
            timings=_timings(self.provenance_fields.get("timings", {}), result.timings,
                             time.perf_counter() - start))
        result.models = models
        write_run(staging, result, record, contrasts=table)

    def load(self, folder: Path, record: dict[str, Any]) -> ExperimentRun:
        return ExperimentRun(self.name, folder, record["key"], False, load_run(folder))

    def provenance(self) -> dict[str, Any]:
        return {"experiment": self.name, "profile": self.profile}


def _timings(before: dict[str, float], fits: dict[str, float], seconds: float) -> dict[str, float]:
    """Seconds spent: gathering inputs, each arm's fits (summed over fits), the whole run."""
    return {**before, **fits, "run_s": seconds, "total_s": before.get("features_s", 0) + seconds}


# --------------------------------------------------------------------------- generalisation


@dataclass
class GeneralisationRun:
    """A finished (or re-read) generalisation run.

    Attributes
    ----------
    run_dir : Path
    key : str
    reused : bool
    table : DataFrame
        :data:`fmtc.evaluate.generalisation.COLUMNS`, one row per arm, scheme and fit set.
    confounds : DataFrame
        Per feature view (``fc``, ``cls``, ...): how well it predicts the study.
    predictions : DataFrame
        Every cross fit's test predictions
        (:data:`fmtc.evaluate.generalisation.PREDICTION_COLUMNS`), for paired comparisons of
        models on the same test subjects (:func:`~fmtc.evaluate.generalisation.cross_differences`).
    """

    run_dir: Path
    key: str
    reused: bool
    table: pd.DataFrame
    confounds: pd.DataFrame
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


CONFOUND_COLUMNS = ["features", "balanced_accuracy", "mcc", "chance", "n_studies",
                    "n_subjects", "n_features", "folds"]


@dataclass(frozen=True, eq=False)
class GeneralisationResult(Result):
    """Drug-, study- and cohort-level generalisation of some arms, as a result.

    Parameters
    ----------
    arms : list of Arm
    schemes : list of str
    datasets : dict of str to ExperimentData
        The training cohort's inputs (keyed by ``Arm.data``).
    groups : dict of str to list
        Per within-cohort scheme (``drug``, ``study``), each subject's group.
    test_datasets : dict of str to ExperimentData or None
        The test cohort's inputs (``cross-cohort``).
    names : (str, str)
        The two cohorts' names in the table.
    evaluation : EvaluationPlan
    seed : int
    cohort, test_cohort : dict
        Content hashes and what provenance records of each cohort.
    fits, runs : Path
        Where fits and runs are published.
    prefix, profile : str
    device : str
    """

    kind: ClassVar[str] = "generalisation"
    place: ClassVar[str] = "outputs.runs_dir"

    arms: list[Any]
    schemes: list[str]
    datasets: dict[str, Any]
    groups: dict[str, list[Any]]
    test_datasets: dict[str, Any] | None
    names: tuple[str, str]
    evaluation: Any
    seed: int
    cohort: dict[str, Any]
    test_cohort: dict[str, Any] | None
    fits: Path
    runs: Path
    prefix: str
    profile: str
    device: str = "cpu"
    provenance_fields: dict[str, Any] = field(default_factory=dict, compare=False)
    executor: Executor = field(default_factory=Executor, compare=False)

    def config(self) -> dict[str, Any]:
        from fmtc.versions import version

        return {"schemes": self.schemes, "seed": self.seed, "fit_version": version("fit"),
                "evaluation": {k: getattr(self.evaluation, k)
                               for k in ("folds", "repeats", "bootstrap")},
                "threads": self.executor.threads_per_worker, "device": self.device,
                "arms": [{"name": a.name, "model": a.model} for a in self.arms]}

    def inputs(self) -> dict[str, Any]:
        def data(datasets: dict[str, Any] | None) -> dict[str, Any] | None:
            if datasets is None:
                return None
            return {a.name: datasets[a.data].identity(a.model_spec.inputs) for a in self.arms}

        arms = {a.name: {"params": a.params, "pool_size": a.context.pool_size,
                         "fc_kind": a.context.fc_kind} for a in self.arms}
        return {"cohort": self.cohort["content_hash"],
                "test_cohort": None if self.test_cohort is None
                else self.test_cohort["content_hash"],
                "groups": self.groups, "data": data(self.datasets),
                "test_data": data(self.test_datasets), "arms": arms}

    def default_folder(self) -> Path:
        return Path(self.runs) / f"{self.prefix}_{self.profile}_{self.key[:12]}"

    def input_folders(self) -> list[Path]:
        return [Path(c["path"]) for c in (self.cohort, self.test_cohort or {}) if c.get("path")]

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from fmtc.evaluate.generalisation import (
            PREDICTION_COLUMNS,
            feature_views,
            generalise,
            study_predictability,
        )
        from fmtc.provenance import provenance_record

        start = time.perf_counter()
        counts: dict[str, int] = {}
        options = {"executor": self.executor, "fits": self.fits, "device": self.device,
                   "counts": counts}
        rows: list[dict[str, Any]] = []
        table = generalise(self.datasets, self.arms, self.groups, self.evaluation, self.seed,
                           test=self.test_datasets, names=self.names, predictions=rows,
                           **options)
        predictions = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
        confounds = []
        study = self.groups.get("study")
        if study is not None and len({g for g in study if g is not None}) > 1:
            views: dict[str, np.ndarray] = {}
            for data in self.datasets.values():
                views.update({k: v for k, v in feature_views(data).items()
                              if k != "covariates"})
            known = np.array([g is not None for g in study])
            for view, values in views.items():
                found = study_predictability(values[known], [g for g in study if g is not None],
                                             self.seed, folds=self.evaluation.folds)
                confounds.append({"features": view, **found})
        confounds = pd.DataFrame(confounds, columns=CONFOUND_COLUMNS)
        record = provenance_record(
            command="generalise", key=self.key, profile=self.profile, seed=self.seed,
            arms={a.name: a.model for a in self.arms}, schemes=self.schemes,
            cohort=self.cohort, test_cohort=self.test_cohort, **self.provenance_fields,
            fits=counts, timings={"total_s": time.perf_counter() - start})
        write_csv(staging / "generalisation.csv", table)
        write_csv(staging / "confounds.csv", confounds)
        write_csv(staging / "predictions.csv", predictions)
        write_json(staging / "provenance.json", record)

    def load(self, folder: Path, record: dict[str, Any]) -> GeneralisationRun:
        return read_generalisation(folder, record["key"])


def read_generalisation(folder: Path, key: str, reused: bool = False) -> GeneralisationRun:
    """Read a generalisation folder back."""
    return GeneralisationRun(
        folder, key, reused,
        pd.read_csv(folder / "generalisation.csv", dtype={"note": str}, keep_default_na=False,
                    na_values=["nan"]),
        pd.read_csv(folder / "confounds.csv"),
        pd.read_csv(folder / "predictions.csv",
                    dtype={"participant_id": str, "train_on": str, "test_on": str}))


def fit_folders(run: ExperimentRun, fits: Path, arm: str) -> dict[tuple[int, int], Path]:
    """Per (repeat, fold), the folder of an arm's fit (``models.json`` lists their keys)."""
    entry = run.tables["models"]["arms"][arm]
    return {(int(f["repeat"]), int(f["fold"])): Path(fits) / f"fit-{entry['model']}-{f['key']}"
            for f in entry["fits"]}


def fit_keys(models: dict[str, Any]) -> Sequence[str]:
    """Every fit key a run's ``models.json`` lists."""
    return [f["key"] for entry in models["arms"].values() for f in entry["fits"]]
