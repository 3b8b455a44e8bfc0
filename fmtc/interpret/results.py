"""The tables of an interpretation folder, and reading them back.

An interpretation folder (``fmtc interpret``; by default ``interpret_<run>_<key>`` beside the
run folder, which is never modified) holds::

    interpretation.json          settings, run key, cohort, encoder, device, versions, timings
    subjects.csv                 per arm and attributed subject: TS share, evidences, deltas
    regions.csv                  per arm, modality (fc, ts) and region: score, rank, network
    region_folds.csv             the same per fold (the source of every interval)
    networks.csv                 per arm and modality: network mean score, t-interval over folds
    edges.csv                    per arm: the strongest edges (class-aligned mean attribution)
    edges.npz                    per arm, every edge (R x R): ``<arm>__class_aligned`` and
                                 ``<arm>__mean_abs`` mean symmetrised attributions
    ground_truth_recovery.json   simulated cohorts: recall@k of the planted regions, references
    figures/*.png, *.svg         :mod:`fmtc.report.interpretation`

It is a result of kind ``interpretation`` (:class:`Interpretation`, :mod:`fmtc.lifecycle`):
its identity is the run's key, the keys of the attributed fits, the settings and the device.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fmtc.interpret.aggregate import network_table, recall_at_k
from fmtc.lifecycle import Result

TOP_EDGES = 200
"""Edges kept per arm in ``edges.csv`` (by the magnitude of the class-aligned mean)."""


def region_frame(arm: str, modality: str, folds: pd.DataFrame, regions: pd.DataFrame,
                 planted: set[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Region scores of one arm and modality: the table over folds, and the per-fold table.

    Parameters
    ----------
    folds : DataFrame
        :attr:`fmtc.interpret.analysis.ArmAttributions.fc_regions` (or ``ts_regions``).
    regions : DataFrame
        The cohort's regions table (``index``, ``name``, ``network``, ``x``, ``y``, ``z``).
    planted : set of int, optional
        Region ``index`` values of a planted truth (adds a ``planted`` column).
    """
    values = folds.to_numpy()
    table = regions.loc[:, [c for c in ("index", "name", "network", "x", "y", "z")
                            if c in regions.columns]].reset_index(drop=True).copy()
    table.insert(0, "modality", modality)
    table.insert(0, "arm", arm)
    table["score"] = values.mean(0)
    table["score_sd"] = values.std(0, ddof=1) if len(values) > 1 else np.nan
    table["rank"] = table["score"].rank(ascending=False, method="first").astype(int)
    if planted is not None:
        table["planted"] = table["index"].isin(planted)
    long = folds.copy()
    long.columns = regions["index"].to_numpy()
    long = long.rename_axis("fold").reset_index().melt(id_vars="fold", var_name="index",
                                                        value_name="score")
    long.insert(0, "modality", modality)
    long.insert(0, "arm", arm)
    return table, long


def networks_frame(arm: str, modality: str, folds: pd.DataFrame,
                   regions: pd.DataFrame) -> pd.DataFrame:
    """:func:`fmtc.interpret.aggregate.network_table` with ``arm`` and ``modality`` columns."""
    table = network_table(folds, regions["network"].astype(str).to_numpy())
    table.insert(0, "modality", modality)
    table.insert(0, "arm", arm)
    return table


def edges_frame(arm: str, edges: np.ndarray, edges_abs: np.ndarray, regions: pd.DataFrame,
                planted: set[tuple[int, int]] | None = None, top: int = TOP_EDGES
                ) -> pd.DataFrame:
    """The ``top`` edges by the magnitude of their class-aligned mean attribution.

    ``mean_attribution`` is the class-aligned mean (positive: the edge supports each
    subject's own label), ``mean_abs_attribution`` the mean magnitude.
    """
    rows, cols = np.triu_indices(len(edges), k=1)
    order = np.argsort(-np.abs(edges[rows, cols]), kind="stable")[:top]
    index = regions["index"].to_numpy()
    table = pd.DataFrame({
        "arm": arm, "region_a": index[rows[order]], "region_b": index[cols[order]],
        "network_a": regions["network"].to_numpy()[rows[order]],
        "network_b": regions["network"].to_numpy()[cols[order]],
        "mean_attribution": edges[rows[order], cols[order]],
        "mean_abs_attribution": edges_abs[rows[order], cols[order]]})
    if planted is not None:
        table["planted"] = [(a, b) in planted or (b, a) in planted
                            for a, b in zip(table["region_a"], table["region_b"], strict=True)]
    return table


def recovery(scores: dict[str, np.ndarray], truth_regions: np.ndarray) -> dict[str, Any]:
    """recall@k of ``truth_regions`` (bool ``[R]``) for each named score vector, and chance."""
    k = int(np.asarray(truth_regions).sum())
    return {"k": k, "chance": k / len(truth_regions),
            **{name: recall_at_k(values, truth_regions) for name, values in scores.items()}}


def read_interpretation(folder: str | Path) -> dict[str, Any]:
    """Read an interpretation folder's tables and records (notebooks, tests)."""
    folder = Path(folder)
    if not (folder / "interpretation.json").is_file():
        raise FileNotFoundError(f"{folder} is not an interpretation folder (no "
                                "interpretation.json); run `fmtc interpret --run RUN_DIR`")
    out: dict[str, Any] = {"record": json.loads((folder / "interpretation.json").read_text())}
    for name in ("subjects", "regions", "region_folds", "networks", "edges"):
        path = folder / f"{name}.csv"
        out[name] = pd.read_csv(path) if path.is_file() else None
    truth = folder / "ground_truth_recovery.json"
    out["recovery"] = json.loads(truth.read_text()) if truth.is_file() else None
    out["folder"] = folder
    return out


def _planted(cohort: Any) -> dict[str, Any] | None:
    truth = cohort.ground_truth or {}
    if not truth.get("fc_regions") and not truth.get("ts_regions"):
        return None
    index = cohort.regions["index"].to_numpy()
    return {"fc": np.isin(index, truth.get("fc_regions", [])),
            "ts": np.isin(index, truth.get("ts_regions", [])),
            "edges": {tuple(e) for e in truth.get("fc_edges", [])}}


def _subject_table(arm: str, frame: pd.DataFrame, cohort: Any,
                   predictions: pd.DataFrame) -> pd.DataFrame:
    from fmtc.cohort.participants import find_covariate

    frame = frame.copy()
    frame.insert(0, "arm", arm)
    participants = cohort.participants  # indexed by participant_id
    for scheme in ("study", "drug"):
        column = find_covariate(cohort.participants, scheme)
        if column is not None:
            frame[scheme] = frame["participant_id"].map(participants[column]).astype(str)
    mine = predictions.loc[predictions["arm"] == arm, ["repeat", "fold", "participant_id",
                                                      "probability"]]
    frame = frame.merge(mine, on=["repeat", "fold", "participant_id"], how="left")
    frame["predicted"] = (frame["probability"] >= 0.5).astype(int)
    frame["correct"] = frame["predicted"] == frame["label"]
    return frame


def _references(fc: np.ndarray | None, lag1: np.ndarray | None, labels: np.ndarray,
                splits: list[dict[str, Any]], subject_ids: list[str], logistic: Any,
                seed: int) -> dict[str, np.ndarray]:
    """Non-IG region scores, each averaged over the folds' fit subjects."""
    from fmtc.interpret.aggregate import (
        lag1_region_scores,
        logistic_region_scores,
        t_region_scores,
    )

    position = {p: i for i, p in enumerate(subject_ids)}
    found: dict[str, list[np.ndarray]] = {}
    for split in splits:
        fit = np.array([position[p] for p in split["fit"]])
        if fc is not None:
            found.setdefault("fc_logistic", []).append(logistic_region_scores(
                fc[fit], labels[fit], logistic.c_grid, logistic.inner_folds, seed))
            found.setdefault("fc_t", []).append(t_region_scores(fc[fit], labels[fit]))
        if lag1 is not None:
            found.setdefault("ts_lag1_t", []).append(lag1_region_scores(lag1[fit], labels[fit]))
    return {name: np.mean(values, axis=0) for name, values in found.items()}


def summarise(results: dict[str, Any], cohort: Any, fc: dict[str, np.ndarray | None],
              labels: np.ndarray, splits: list[dict[str, Any]], logistic: Any,
              predictions: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """The tables of an interpretation from each arm's :class:`ArmAttributions`.

    Parameters
    ----------
    results : dict of str to ArmAttributions
    cohort : Cohort
    fc : dict of str to ndarray or None
        Each arm's connectivity input (for the non-IG references).
    labels : ndarray
        The labels the run used.
    splits : list of dict
        The run's splits (the references are fitted on each fold's fit subjects).
    logistic : LogisticPlan
        ``c_grid`` and ``inner_folds`` of the FC baseline.
    predictions : DataFrame
        The run's ``predictions.csv`` (which attributed subjects were predicted correctly).
    """
    from fmtc.preprocess.transforms import lag_autocorrelation

    regions = cohort.regions.reset_index(drop=True)
    planted = _planted(cohort)
    subject_frames, region_frames, fold_frames, network_frames, edge_frames = [], [], [], [], []
    arms_recovery: dict[str, dict[str, Any]] = {}
    for arm, found in results.items():
        subject_frames.append(_subject_table(arm, found.subjects, cohort, predictions))
        scores: dict[str, np.ndarray] = {}
        for modality, folds in (("fc", found.fc_regions), ("ts", found.ts_regions)):
            if folds is None or folds.empty:
                continue
            truth = None
            if planted is not None:
                truth = set(regions.loc[planted[modality], "index"].astype(int))
            table, long = region_frame(arm, modality, folds, regions, truth)
            region_frames.append(table)
            fold_frames.append(long)
            network_frames.append(networks_frame(arm, modality, folds, regions))
            scores[modality] = table["score"].to_numpy()
        if found.fc_edges is not None:
            edge_frames.append(edges_frame(arm, found.fc_edges, found.fc_edges_abs, regions,
                                           None if planted is None else planted["edges"]))
        if planted is not None:
            entry: dict[str, Any] = {"n_regions": len(regions)}
            if "fc" in scores and planted["fc"].any():
                fc_part = recovery({"fc_recall_at_k": scores["fc"]}, planted["fc"])
                entry.update(fc_recall_at_k=fc_part["fc_recall_at_k"], k=fc_part["k"],
                             fc_chance=fc_part["chance"])
            if "ts" in scores and planted["ts"].any():
                ts_part = recovery({"ts_recall_at_k": scores["ts"]}, planted["ts"])
                entry.update(ts_recall_at_k=ts_part["ts_recall_at_k"], ts_k=ts_part["k"],
                             ts_chance=ts_part["chance"],
                             ts_subjects=int(found.subjects["ts_delta"].notna().sum())
                             if "ts_delta" in found.subjects else 0)
            arms_recovery[arm] = entry
    truth_record = None
    if planted is not None and arms_recovery:
        arm_fc = next((a for a in results if fc.get(a) is not None), None)
        lag1 = np.stack([lag_autocorrelation(cohort.timeseries[p]) for p in cohort.subject_ids])
        references = _references(None if arm_fc is None else fc[arm_fc], lag1,
                                 np.asarray(labels), splits, list(cohort.subject_ids), logistic,
                                 seed)
        reference = {}
        for name, values in references.items():
            truth = planted["fc"] if name.startswith("fc") else planted["ts"]
            if truth.any():
                reference[f"{name}_recall_at_k"] = recall_at_k(values, truth)
        primary = next((a for a in results if {"fc_recall_at_k", "ts_recall_at_k"}
                        <= set(arms_recovery.get(a, {}))), next(iter(arms_recovery)))
        truth_data = cohort.ground_truth
        truth_record = {"arm": primary, **arms_recovery[primary], "reference": reference,
                        "reference_note": "|logistic coefficients| of the FC baseline and "
                                          "Welch t-statistics (edges; lag-1 autocorrelation "
                                          "for TS), on each fold's fit subjects, averaged",
                        "planted": {"fc_networks": truth_data.get("fc_networks"),
                                    "ts_network": truth_data.get("ts_network"),
                                    "effect_size": truth_data.get("effect_size"),
                                    "fc_effect": truth_data.get("fc_effect"),
                                    "ts_effect": truth_data.get("ts_effect")},
                        "arms": arms_recovery}

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
        return pd.concat(frames, ignore_index=True) if frames else None

    return {"subjects": concat(subject_frames), "regions": concat(region_frames),
            "region_folds": concat(fold_frames), "networks": concat(network_frames),
            "edges": concat(edge_frames), "recovery": truth_record,
            "fc_edges": {a: r.fc_edges for a, r in results.items() if r.fc_edges is not None},
            "fc_edges_abs": {a: r.fc_edges_abs for a, r in results.items()
                             if r.fc_edges_abs is not None},
            "simulated": bool(cohort.is_simulated)}


def write_tables(folder: Path, summary: dict[str, Any], record: dict[str, Any]) -> None:
    """Write the tables of :func:`summarise` and ``interpretation.json`` into ``folder``."""
    from fmtc.evaluate.runs import write_csv
    from fmtc.storage import write_json

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("subjects", "regions", "region_folds", "networks", "edges"):
        if summary.get(name) is not None:
            write_csv(folder / f"{name}.csv", summary[name])
    if summary.get("recovery") is not None:
        write_json(folder / "ground_truth_recovery.json", summary["recovery"])
    if summary.get("fc_edges"):  # every edge, not only the strongest of edges.csv
        from fmtc.storage import atomic_open

        arrays = {f"{arm}__class_aligned": values for arm, values in summary["fc_edges"].items()}
        arrays |= {f"{arm}__mean_abs": values
                   for arm, values in summary.get("fc_edges_abs", {}).items()}
        with atomic_open(folder / "edges.npz", "wb") as handle:
            np.savez_compressed(handle, **arrays)
    write_json(folder / "interpretation.json", record)


# --------------------------------------------------------------------------- the result


@dataclass
class InterpretationRun:
    """A finished (or re-read) interpretation of a run (:func:`fmtc.pipeline.interpret_run`).

    Attributes
    ----------
    folder : Path
    key : str
    reused : bool
    tables : dict
        :func:`read_interpretation` of ``folder``.
    """

    folder: Path
    key: str
    reused: bool
    tables: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Interpretation(Result):
    """Integrated gradients of every fold model of some arms of a run, as a result.

    Parameters
    ----------
    context : RunContext
        The run, its plan, cohort, arms and device (:func:`fmtc.interpret.inputs.run_context`).
    cv : CrossValidation
        The run's experiment rebuilt from its plan (arms, splits, datasets).
    records : list of FitRecord
        One per task of ``cv``, each holding its weights.
    feature_plans : dict
        Per data key, ``(FeatureSettings, EncoderSpec, connectivity kind, input scaling)``.
    settings : IGSettings, optional
        Default: :class:`~fmtc.interpret.settings.IGSettings` (every test subject's TS path
        on a GPU, :data:`~fmtc.interpret.settings.CPU_TS_SUBJECTS` per fold on a CPU).
    """

    kind: ClassVar[str] = "interpretation"
    extras: ClassVar[frozenset[str]] = frozenset({"figures"})

    context: Any
    cv: Any
    records: list[Any]
    feature_plans: dict[str, Any]
    settings: Any = None
    progress: bool = field(default=False, compare=False)

    @property
    def ig(self) -> Any:
        """The IG settings in force."""
        from fmtc.interpret.settings import CPU_TS_SUBJECTS, IGSettings

        if self.settings is not None:
            return self.settings
        on_gpu = self.context.device.type == "cuda"
        return IGSettings(ts_subjects=None if on_gpu else CPU_TS_SUBJECTS)

    def _tasks(self) -> list[tuple[Any, Any]]:
        return [(t, r) for t, r in zip(self.cv.tasks, self.records, strict=True)
                if t.arm.name in self.context.arms]

    def config(self) -> dict[str, Any]:
        return {"arms": self.context.arms, "settings": self.ig.to_dict(),
                "device": self.context.device.type}

    def inputs(self) -> dict[str, Any]:
        return {"run": self.context.key, "fits": [r.key for _, r in self._tasks()]}

    def input_folders(self) -> list[Path]:
        return [self.context.run_dir, Path(self.context.cohort.root)]

    def default_folder(self) -> Path:
        run_dir = self.context.run_dir
        return run_dir.parent / f"interpret_{run_dir.name}_{self.key[:12]}"

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from fmtc.device import describe_device
        from fmtc.errors import InvalidDataError
        from fmtc.interpret.analysis import interpret_arm
        from fmtc.interpret.inputs import cohort_inputs, fold_models
        from fmtc.provenance import provenance_record
        from fmtc.report.interpretation import write_figures

        start = time.perf_counter()
        context, settings, device = self.context, self.ig, self.context.device
        cohort, splits = context.cohort, context.tables["splits"]["splits"]
        arms = [a for a in self.cv.arms if a.name in context.arms]
        labels = np.asarray(self.cv.labels)
        results, encoders = {}, {}
        for arm in arms:
            data = self.cv.datasets[arm.data]
            if data.window_fc:
                raise InvalidDataError(f"arm {arm.name!r} reads one FC matrix per window "
                                       "(gram_raw_window); fmtc interpret attributes "
                                       "subject-level FC only")
            spec = arm.model_spec
            inputs, encoders[arm.name] = cohort_inputs(cohort, data, self.feature_plans[arm.data],
                                                       spec.inputs, settings, device,
                                                       self.progress)
            pairs = [(t, r) for t, r in self._tasks() if t.arm.name == arm.name]
            build = fold_models([r for _, r in pairs], [t for t, _ in pairs], device)
            results[arm.name] = interpret_arm(build, splits, inputs, labels, settings, device,
                                              spec.inputs, fused=spec.fused,
                                              progress=self.progress)
        plan = context.plan
        summary = summarise(results, cohort, {a.name: self.cv.datasets[a.data].fc for a in arms},
                            labels, splits, plan.logistic, context.tables["predictions"],
                            plan.seed)
        record = provenance_record(
            command="interpret", key=self.key,
            run={"folder": context.run_dir.name, "key": context.key,
                 "experiment": context.provenance.get("experiment")},
            settings=settings.to_dict(), arms={a.name: a.model for a in arms},
            cohort={"name": cohort.name, "content_hash": cohort.content_hash,
                    "simulated": cohort.is_simulated, "folder": Path(cohort.root).name},
            encoders=encoders, device=describe_device(device),
            label_permuted=bool(context.models.get("label_permuted")),
            selection=context.provenance["selections"][0],
            seconds={a: r.seconds for a, r in results.items()},
            timings={"total_s": time.perf_counter() - start})
        write_tables(staging, summary, record)
        if "figures" in extras:
            write_figures(staging / "figures", summary, cohort)

    def load(self, folder: Path, record: dict[str, Any]) -> InterpretationRun:
        return InterpretationRun(folder, record["key"], False, read_interpretation(folder))
