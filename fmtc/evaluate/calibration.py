"""Does the claims table's inference hold its promises? Coverage and family-wise error.

The claims table (:mod:`fmtc.report.claims`) decides each claim from a simultaneous interval
over its rows (:mod:`fmtc.evaluate.family`). This module measures, on the simulator, how often
those intervals cover the truth and how often a family of null rows shows an effect.

**The truth** is defined outside any sample: a large simulated pool stands for the
population; the truth of a row is the expected difference of the two arms' MCC when each is
trained on as many subjects as the row's models are trained on (four fifths of 60 for a
5-fold cross-validation; one drug's or one study's patients for a split; all 60 for a
cross-cohort row) and evaluated on the rest of the pool, estimated by Monte Carlo over
``truth_draws`` training sets. Rows whose arms are **exchangeable by construction** (the
same model trained on two random 80% subsamples of each training fold) have a truth of
exactly 0.

**Cheap arms stand in for the torch rows.** Retraining FMM_TC a thousand times is out of
reach on a CPU; the family is therefore built from L2-penalised logistic models on the same
inputs (the FC upper triangle, the handcrafted temporal features of
:mod:`fmtc.represent.temporal`, and both: ``fused``), fitted in closed kernel form
(:func:`kernel_logistic`). The family has the claims table's shape: six contrasts of one
cross-validated cohort (three with a non-zero truth, three exchangeable), four split rows
(drug and study, both directions) and one cross-cohort row.

**Replicates.** Each replicate draws a cohort of 60 (stratified by label and drug) and a
disjoint fresh cohort of 60 from the pool, runs the family and records, for every candidate
method and resample count, each row's simultaneous interval. *Coverage* is the share of
replicates whose intervals cover every row's truth at once; *family-wise error* is the share
of **label-permuted** replicates (every truth 0) in which any row's interval excludes 0.
Methods are chosen on replicates of one or more calibration pools, where a setting must keep
its promises on every pool (simulator seeds plant different populations, and a setting that
holds on one may not on another), and reported on a fresh pool of another seed
(:func:`choose_method`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fmtc.evaluate.family import (
    METHODS,
    Contrast,
    family_inference,
    family_permutations,
    simultaneous_bounds,
)
from fmtc.lifecycle import Result

ARMS: dict[str, tuple[str, int]] = {
    "fc": ("fc", 0), "ts": ("ts", 0), "fused": ("fused", 0),
    "fc′": ("fc", 1), "fc″": ("fc", 2), "ts′": ("ts", 1), "ts″": ("ts", 2),
    "fused′": ("fused", 1), "fused″": ("fused", 2),
}
"""Arm -> (kernel, subsample stream; 0: the whole training fold, 1 and 2: two random 80%)."""

ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("fused − FC (CV; stands in for FMM_TC − FC-only)", "fused", "fc", "cv"),
    ("fused − TS (CV; stands in for FMM_TC − TS-only)", "fused", "ts", "cv"),
    ("TS − FC (CV)", "ts", "fc", "cv"),
    ("FC′ − FC″ (CV; exchangeable, truth 0)", "fc′", "fc″", "cv"),
    ("TS′ − TS″ (CV; exchangeable, truth 0)", "ts′", "ts″", "cv"),
    ("fused′ − fused″ (CV; exchangeable, truth 0)", "fused′", "fused″", "cv"),
    ("fused − FC (drug: placebo→duloxetine)", "fused", "fc", "drug:0"),
    ("fused − FC (drug: duloxetine→placebo)", "fused", "fc", "drug:1"),
    ("fused − FC (study 1→2)", "fused", "fc", "study:0"),
    ("fused − FC (study 2→1)", "fused", "fc", "study:1"),
    ("fused − FC (cross-cohort)", "fused", "fc", "cross"),
)
"""The family: (name, arm A, arm B, setting), shaped like the claims table."""


@dataclass(frozen=True)
class CalibrationSettings:
    """What a calibration study computes (its identity).

    Attributes
    ----------
    n_subjects : int
        Subjects of each replicate cohort (the claims' cohort size).
    folds, repeats : int
        Cross-validation of the cohort rows.
    bootstrap : tuple of int
        Candidate resample counts (the draws of the largest are cut for the others).
    nominal : tuple of float
        Candidate nominal levels of each method (a method that under-covers at ``level``
        may reach it at a higher nominal level: the choice is made on calibration
        replicates and checked on fresh ones).
    permutations : int
        Swaps of each row's permutation p-value (the claims table's count for a family of
        this size: :func:`~fmtc.evaluate.family.family_permutations`).
    replicates, null_replicates : int
        Fresh replicates for coverage and label-permuted ones for family-wise error.
    choice_replicates : int
        Replicates of each kind on each calibration pool (where the method is chosen).
    truth_draws : int
        Monte Carlo training sets per row of the truth.
    level : float
    c : float
        Inverse L2 penalty of every arm (kernels are divided by their feature count); 100
        was chosen on the calibration pool (simulation seed 1, effect size 1: population MCC
        of FC + logistic 0.15, 0.17, 0.23, 0.24, 0.25 at C = 0.1, 1, 10, 100, 1000, the
        fused and TS arms flat at 0.70-0.72).
    subsample : float
        Share of a training fold each exchangeable arm trains on.
    seed : int
        Seed of the replicates (the pool has the simulation's own seed).
    """

    n_subjects: int = 60
    folds: int = 5
    repeats: int = 2
    bootstrap: tuple[int, ...] = (500, 2000)
    nominal: tuple[float, ...] = (0.95, 0.96, 0.97, 0.98, 0.99, 0.995)
    permutations: int = family_permutations(len(ROWS))
    replicates: int = 1000
    null_replicates: int = 400
    choice_replicates: int = 400
    truth_draws: int = 200
    level: float = 0.95
    c: float = 100.0
    subsample: float = 0.8
    seed: int = 0


# --------------------------------------------------------------------------- the pool


@dataclass(frozen=True, eq=False)
class FeaturePool:
    """A large simulated cohort reduced to what the cheap arms read.

    Attributes
    ----------
    labels, drug, study : ndarray of shape (N,)
        0/1 label, 0/1 drug (1: duloxetine), 0/1 study (1: the second).
    kernels : dict of str to ndarray of shape (N, N)
        ``fc``, ``ts`` and ``fused``: linear kernels of the pool-standardised features,
        each divided by its feature count (``fused`` is their mean).
    """

    labels: np.ndarray
    drug: np.ndarray
    study: np.ndarray
    kernels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)


def feature_pool(settings: Any, atlas: Any, progress: bool = False) -> FeaturePool:
    """Simulate ``settings.n_subjects`` subjects in memory and build their kernels.

    Parameters
    ----------
    settings : SimulationPlan
        The pool's simulation (its ``n_subjects`` is the pool size).
    atlas : Atlas
        SIM424.
    progress : bool
        Show a progress bar.
    """
    from fmtc.preprocess.transforms import fc_pearson, upper_triangle
    from fmtc.represent.temporal import temporal_features
    from fmtc.simulate.generator import LABEL_COLUMN, simulated_subjects

    participants, subjects = simulated_subjects(settings, atlas)
    n = len(participants)
    if progress:
        from tqdm import tqdm

        subjects = tqdm(subjects, total=n, desc="simulating the pool", unit="subject")
    fc, ts = None, None
    for i, (_, series) in enumerate(subjects):
        edges = upper_triangle(fc_pearson(series))
        temporal = temporal_features(series, settings.tr).astype(np.float32)
        if fc is None:
            fc = np.empty((n, edges.size), np.float32)
            ts = np.empty((n, temporal.size), np.float32)
        fc[i], ts[i] = edges, temporal
    kernels = {"fc": _kernel(fc), "ts": _kernel(ts)}
    kernels["fused"] = (kernels["fc"] + kernels["ts"]) / 2
    return FeaturePool(
        labels=participants[LABEL_COLUMN].to_numpy(np.int64),
        drug=(participants["Drug"] == "duloxetine").to_numpy(np.int64),
        study=(participants["study"].to_numpy() != participants["study"].min()).astype(np.int64),
        kernels=kernels)


def _kernel(features: np.ndarray) -> np.ndarray:
    """Linear kernel of column-standardised features, divided by their count (in place)."""
    features -= features.mean(axis=0)
    spread = features.std(axis=0)
    features /= np.where(spread > 0, spread, 1.0)
    # A copy for the transposed operand: OpenBLAS's syrk path for X @ X.T is slow here.
    gram = features @ features.copy().T
    return gram.astype(np.float64) / features.shape[1]


# --------------------------------------------------------------------------- the arms


def kernel_logistic(kernel: np.ndarray, train: np.ndarray, test: np.ndarray, labels: np.ndarray,
                    c: float, iterations: int = 50) -> np.ndarray:
    """P(class 1) of ``test`` from an L2 logistic regression fitted on ``train``.

    The model is ``sigmoid(w·x + b)`` with loss ``c Σ log-loss + ½|w|²`` (scikit-learn's
    ``LogisticRegression(C=c)``, intercept unpenalised), solved by Newton's method in the
    span of the training rows, which holds the solution of an L2 penalty exactly.

    Parameters
    ----------
    kernel : ndarray of shape (N, N)
        Linear kernel over every subject.
    train, test : ndarray of int
        Rows of ``kernel``.
    labels : ndarray of shape (len(train),)
    c : float
    iterations : int
        Newton steps at most (it stops when the step is below 1e-10).
    """
    gram = kernel[np.ix_(train, train)]
    values, vectors = np.linalg.eigh(gram)
    keep = values > max(values.max(), 0.0) * 1e-10
    basis = vectors[:, keep] / np.sqrt(values[keep])
    z_train = gram @ basis
    z_test = kernel[np.ix_(test, train)] @ basis
    x = np.column_stack([z_train, np.ones(len(train))])
    y = np.asarray(labels, dtype=np.float64)
    penalty = np.r_[np.ones(x.shape[1] - 1), 0.0]
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = c * x.T @ (p - y) + penalty * w
        hessian = c * (x.T * (p * (1 - p))) @ x + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return 1.0 / (1.0 + np.exp(-(np.column_stack([z_test, np.ones(len(test))]) @ w)))


def _stratified(rng: np.random.Generator, candidates: np.ndarray, strata: np.ndarray,
                n: int) -> np.ndarray:
    """``n`` of ``candidates`` drawn without replacement, equal numbers per stratum."""
    levels = np.unique(strata[candidates])
    per = n // len(levels)
    chosen = [rng.choice(candidates[strata[candidates] == level], per, replace=False)
              for level in levels]
    return np.sort(np.concatenate(chosen))


def _fit(pool: FeaturePool, arm: str, train: np.ndarray, test: np.ndarray, labels: np.ndarray,
         settings: CalibrationSettings, rng: np.random.Generator) -> np.ndarray:
    kernel, stream = ARMS[arm]
    if stream:  # an exchangeable arm: a random subsample of the training fold
        keep = np.sort(rng.choice(len(train), round(settings.subsample * len(train)),
                                  replace=False))
        if len(np.unique(labels[keep])) < 2:
            keep = np.arange(len(train))
        train, labels = train[keep], labels[keep]
    return kernel_logistic(pool.kernels[kernel], train, test, labels, settings.c)


def family_contrasts(pool: FeaturePool, settings: CalibrationSettings, seed: int,
                     permute: bool = False) -> list[Contrast]:
    """The family of :data:`ROWS` on one replicate cohort (and a fresh one) of the pool.

    With ``permute`` the labels of both cohorts are permuted (every truth is then 0).
    """
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng([settings.seed, seed, int(permute)])
    everyone = np.arange(len(pool))
    strata = 2 * pool.labels + pool.drug
    cohort = _stratified(rng, everyone, strata, settings.n_subjects)
    fresh = _stratified(rng, np.setdiff1d(everyone, cohort), strata, settings.n_subjects)
    labels = pool.labels[cohort].copy()
    fresh_labels = pool.labels[fresh].copy()
    if permute:
        labels, fresh_labels = rng.permutation(labels), rng.permutation(fresh_labels)
    n = len(cohort)
    cv = {arm: np.empty((settings.repeats, n)) for arm in ARMS}
    for repeat in range(settings.repeats):
        splitter = StratifiedKFold(settings.folds, shuffle=True,
                                   random_state=int(rng.integers(2**31)))
        for train, test in splitter.split(np.zeros(n), labels):
            for arm in ARMS:
                cv[arm][repeat, test] = _fit(pool, arm, cohort[train], cohort[test],
                                             labels[train], settings, rng)
    subjects = tuple(int(i) for i in cohort)
    out = []
    for _, arm_a, arm_b, setting in ROWS:
        if setting == "cv":
            out.append(Contrast(labels, cv[arm_a], cv[arm_b], subjects, arm_a, arm_b))
            continue
        if setting == "cross":
            train, test, y_train, y_test = cohort, fresh, labels, fresh_labels
        else:
            group = (pool.drug if setting.startswith("drug") else pool.study)[cohort]
            source = int(setting.split(":")[1])
            train, test = cohort[group == source], cohort[group != source]
            y_train, y_test = labels[group == source], labels[group != source]
        if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
            probs = np.full((1, len(test)), 0.5)  # not estimable: one class only
            out.append(Contrast(y_test, probs, probs, tuple(int(i) for i in test), arm_a, arm_b))
            continue
        probs = [kernel_logistic(pool.kernels[ARMS[arm][0]], train, test, y_train, settings.c)
                 for arm in (arm_a, arm_b)]
        out.append(Contrast(y_test, probs[0][None], probs[1][None],
                            tuple(int(i) for i in test), arm_a, arm_b))
    return out


# --------------------------------------------------------------------------- the truth


def _mcc(labels: np.ndarray, probs: np.ndarray) -> float:
    from fmtc.evaluate.family import _weighted_mcc

    return float(_weighted_mcc(np.ones((1, len(labels))), labels, (probs >= 0.5)[None])[0])


def population_truth(pool: FeaturePool, settings: CalibrationSettings, seed: int,
                     progress: bool = False) -> pd.DataFrame:
    """Each row's truth: the expected MCC difference at its training size, by Monte Carlo.

    Returns
    -------
    DataFrame
        One row per :data:`ROWS` entry: ``row``, ``truth``, ``mc_se`` (Monte Carlo standard
        error; 0 for exchangeable rows), ``n_train``.
    """
    rng = np.random.default_rng([settings.seed, seed, 7])
    everyone = np.arange(len(pool))
    def size(setting: str) -> int:  # training subjects of a row's models
        if setting == "cv":
            return settings.n_subjects * (settings.folds - 1) // settings.folds
        return settings.n_subjects if setting == "cross" else settings.n_subjects // 2

    draws: dict[str, list[float]] = {name: [] for name, *_ in ROWS}
    iterator = range(settings.truth_draws)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="Monte Carlo truth", unit="draw")
    for _ in iterator:
        splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        scores: dict[tuple[str, str], float] = {}  # (setting, arm) -> MCC: each arm fitted once
        for name, arm_a, arm_b, setting in ROWS:
            if ARMS[arm_a][1]:  # exchangeable: the truth is 0 by construction
                continue
            if setting not in splits:
                if setting in ("cv", "cross"):
                    train = _stratified(rng, everyone, pool.labels, size(setting))
                    test = np.setdiff1d(everyone, train)
                else:
                    group = pool.drug if setting.startswith("drug") else pool.study
                    source = int(setting.split(":")[1])
                    train = _stratified(rng, everyone[group == source], pool.labels,
                                        size(setting))
                    test = np.setdiff1d(everyone[group != source], train)
                splits[setting] = train, test
            train, test = splits[setting]
            for arm in (arm_a, arm_b):
                if (setting, arm) not in scores:
                    scores[setting, arm] = _mcc(pool.labels[test], kernel_logistic(
                        pool.kernels[ARMS[arm][0]], train, test, pool.labels[train],
                        settings.c))
            draws[name].append(scores[setting, arm_a] - scores[setting, arm_b])
    rows = []
    for name, arm_a, _, setting in ROWS:
        values = np.asarray(draws[name])
        if ARMS[arm_a][1]:
            rows.append((name, 0.0, 0.0, size(setting)))
        else:
            rows.append((name, float(values.mean()),
                         float(values.std(ddof=1) / np.sqrt(len(values))), size(setting)))
    return pd.DataFrame(rows, columns=["row", "truth", "mc_se", "n_train"])


# --------------------------------------------------------------------------- replicates


def run_replicate(pool: FeaturePool, settings: CalibrationSettings, seed: int,
                  permute: bool) -> dict[str, Any]:
    """One replicate: estimates and, per method and resample count, every row's bounds."""
    contrasts = family_contrasts(pool, settings, seed, permute)
    table, draws = family_inference(contrasts, method="percentile",
                                    n_bootstrap=max(settings.bootstrap),
                                    n_permutations=settings.permutations, level=settings.level,
                                    seed=seed, return_draws=True)
    estimates = table["difference"].to_numpy()
    bounds = {}
    for method in METHODS:
        for count in settings.bootstrap:
            for nominal in settings.nominal:
                bounds[(method, count, nominal)] = simultaneous_bounds(
                    draws[:count], estimates, nominal, method)[:2]
    return {"seed": seed, "permute": permute, "estimates": estimates, "bounds": bounds,
            "p_value": table["p_value"].to_numpy(), "p_holm": table["p_holm"].to_numpy(),
            "estimable": table["estimable"].to_numpy()}


def run_replicates(pool: FeaturePool, settings: CalibrationSettings, seeds: Sequence[int],
                   permute: bool, n_jobs: int = 1, progress: bool = False) -> list[dict]:
    """:func:`run_replicate` for each seed (``n_jobs`` local processes)."""
    from joblib import Parallel, delayed

    from fmtc.execution import tune_allocator

    def chunk(part: Sequence[int]) -> list[dict]:
        tune_allocator()
        return [run_replicate(pool, settings, s, permute) for s in part]

    seeds = list(seeds)
    size = max(1, min(25, len(seeds) // max(1, 4 * n_jobs)))
    parts = [seeds[i:i + size] for i in range(0, len(seeds), size)]
    tasks = (delayed(chunk)(part) for part in parts)
    if progress:
        from tqdm import tqdm

        label = "label-permuted replicates" if permute else "replicates"
        tasks = tqdm(tasks, total=len(parts), desc=f"{label} ({size} per task)", unit="task")
    found = Parallel(n_jobs=n_jobs, backend="loky" if n_jobs != 1 else "sequential")(tasks)
    return [item for part in found for item in part]


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def summarise(replicates: list[dict], nulls: list[dict], truth: pd.DataFrame,
              settings: CalibrationSettings) -> pd.DataFrame:
    """Joint coverage, family-wise error and mean width of every method and resample count.

    Returns
    -------
    DataFrame
        One row per (``method``, ``bootstrap``, ``nominal`` level): ``coverage`` with its
        Clopper–Pearson 95% interval (``coverage_low``, ``coverage_high``) over
        ``replicates``, ``fwe`` with its interval over ``null_replicates``, ``width`` (mean
        width of the intervals, MCC), ``not_estimable`` (share of row-replicates with an arm
        of a single class).
    """
    target = truth["truth"].to_numpy()
    rows = []
    for method, count, nominal in replicates[0]["bounds"]:
        covered, widths, skipped = 0, [], 0
        for rep in replicates:
            low, high = rep["bounds"][(method, count, nominal)]
            live = rep["estimable"] & np.isfinite(low)
            skipped += int((~live).sum())
            covered += bool(np.all((low[live] <= target[live]) & (target[live] <= high[live])))
            widths.append(np.mean(high[live] - low[live]))
        errors = 0
        for rep in nulls:
            low, high = rep["bounds"][(method, count, nominal)]
            live = rep["estimable"] & np.isfinite(low)
            errors += bool(np.any((low[live] > 0) | (high[live] < 0)))
        n, m = len(replicates), len(nulls)
        rows.append((method, count, nominal, covered / max(n, 1), *_clopper_pearson(covered, n),
                     n, errors / max(m, 1), *_clopper_pearson(errors, m), m,
                     float(np.mean(widths)), skipped / max(n * len(ROWS), 1)))
    return pd.DataFrame(rows, columns=["method", "bootstrap", "nominal", "coverage",
                                       "coverage_low", "coverage_high", "replicates", "fwe",
                                       "fwe_low", "fwe_high", "null_replicates", "width",
                                       "not_estimable"])


def p_value_error(nulls: list[dict], alpha: float = 0.05) -> dict[str, float]:
    """Family-wise error of the raw and the Holm-adjusted permutation p-values (null replicates)."""
    raw = [bool(np.nanmin(rep["p_value"]) <= alpha) for rep in nulls]
    adjusted = [bool(np.nanmin(rep["p_holm"]) <= alpha) for rep in nulls]
    return {"raw": float(np.mean(raw)), "holm": float(np.mean(adjusted)),
            "raw_interval": _clopper_pearson(sum(raw), len(raw)),
            "holm_interval": _clopper_pearson(sum(adjusted), len(adjusted))}


def row_coverage(replicates: list[dict], truth: pd.DataFrame, method: str,
                 count: int, nominal: float, level: float = 0.95) -> pd.DataFrame:
    """Each row's coverage by ``method`` (and by the raw percentile interval at ``level``)."""
    target = truth["truth"].to_numpy()
    out = []
    for k, (name, *_) in enumerate(ROWS):
        hits, raw_hits, n = 0, 0, 0
        for rep in replicates:
            if not rep["estimable"][k]:
                continue
            n += 1
            low, high = rep["bounds"][(method, count, nominal)]
            raw_low, raw_high = rep["bounds"][("percentile", count, level)]
            hits += bool(low[k] <= target[k] <= high[k])
            raw_hits += bool(raw_low[k] <= target[k] <= raw_high[k])
        out.append((name, target[k], hits / max(n, 1), raw_hits / max(n, 1), n))
    return pd.DataFrame(out, columns=["row", "truth", "coverage", "raw_coverage", "replicates"])


def choose_method(summary: pd.DataFrame, level: float = 0.95) -> tuple[str, int, float, str]:
    """The method, resample count and nominal level a calibration study supports, and why.

    Among the simultaneous methods (not ``percentile``) whose joint coverage reached ``level``
    and whose family-wise error stayed at or below ``1 − level`` on the calibration
    replicates, the narrowest (ties: fewer resamples). If none did both, the one with the
    lowest family-wise error among those that reached the coverage, else the one with the
    highest coverage (and the reason says so).

    With a ``pool`` column (several calibration pools) a setting is judged by its worst
    pool: its lowest coverage and its highest family-wise error; its width is the mean.
    """
    where = (" on every calibration pool"
             if "pool" in summary.columns and summary["pool"].nunique() > 1 else "")
    if "pool" in summary.columns:
        keys = ["method", "bootstrap", "nominal"]
        summary = summary.groupby(keys, as_index=False, sort=False).agg(
            coverage=("coverage", "min"), fwe=("fwe", "max"), width=("width", "mean"))
    candidates = summary[summary["method"] != "percentile"]
    covering = candidates[candidates["coverage"] >= level]
    good = covering[covering["fwe"] <= 1 - level]
    if len(good):
        best = good.sort_values(["width", "bootstrap"]).iloc[0]
        reason = ("the narrowest method whose joint coverage reached the level and whose "
                  "family-wise error stayed within 1 − level" + where)
    elif len(covering):
        best = covering.sort_values(["fwe", "width"]).iloc[0]
        reason = ("no method kept the family-wise error within 1 − level at the level's "
                  f"coverage{where}; this one's error is the lowest of those that reached it")
    else:
        best = candidates.sort_values(["coverage", "width"], ascending=[False, True]).iloc[0]
        reason = f"no method reached the level's coverage{where}; this one came closest"
    return str(best["method"]), int(best["bootstrap"]), float(best["nominal"]), reason


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class Calibration:
    """A finished calibration study (:class:`CalibrationStudy`, read back).

    Attributes
    ----------
    folder : Path
    choice : dict
        ``method``, ``bootstrap``, ``nominal`` and ``reason`` of :func:`choose_method` on the
        calibration pools.
    choice_summary, fresh_summary : DataFrame
        :func:`summarise` on each calibration pool (its simulator seed in column ``pool``)
        and on the fresh pool.
    truth : DataFrame
        :func:`population_truth` of the fresh pool.
    rows : DataFrame
        :func:`row_coverage` of the chosen method on the fresh pool.
    p_values : dict
        :func:`p_value_error` on the fresh pool's label-permuted replicates.
    reused : bool
    """

    folder: Any
    choice: dict[str, Any]
    choice_summary: pd.DataFrame
    fresh_summary: pd.DataFrame
    truth: pd.DataFrame
    rows: pd.DataFrame
    p_values: dict[str, Any]
    reused: bool = False

    @property
    def chosen(self) -> pd.Series:
        """The chosen method's row of the fresh pool's summary."""
        frame = self.fresh_summary
        match = ((frame["method"] == self.choice["method"])
                 & (frame["bootstrap"] == self.choice["bootstrap"])
                 & np.isclose(frame["nominal"], self.choice["nominal"]))
        return frame[match].iloc[0]


@dataclass(frozen=True, eq=False)
class CalibrationStudy(Result):
    """The calibration study as a stored result (kind ``calibration``).

    Parameters
    ----------
    settings : CalibrationSettings
    calibration_pools : tuple of SimulationPlan
        The simulations of the pools the method is chosen on (each must hold it).
    fresh_pool : SimulationPlan
        The simulation of the pool it is reported on.
    store : Store
        ``runs`` is where it is published, ``atlases`` where SIM424 is cached.
    name : str
        Prefix of the folder (``<runs>/<name>_<key>``).
    n_jobs : int
        Local worker processes (not part of the identity).
    progress : bool
    """

    kind: ClassVar[str] = "calibration"
    place: ClassVar[str] = "outputs.runs_dir"

    settings: CalibrationSettings
    calibration_pools: tuple
    fresh_pool: Any
    store: Any
    name: str = "calibration"
    n_jobs: int = dataclasses.field(default=1, compare=False)
    progress: bool = dataclasses.field(default=False, compare=False)

    def config(self) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.settings),
                "calibration_pools": [pool.identity() for pool in self.calibration_pools],
                "fresh_pool": self.fresh_pool.identity(), "rows": [list(r) for r in ROWS]}

    def default_folder(self) -> Any:
        return self.store.runs / f"{self.name}_{self.key}"

    def compute(self, staging: Any, extras: frozenset[str]) -> None:
        from fmtc.acquire.atlas import get_atlas
        from fmtc.storage import write_json

        atlas = get_atlas("SIM424", cache_dir=self.store.atlases)
        settings, jobs, progress = self.settings, self.n_jobs, self.progress
        count = settings.choice_replicates
        summaries = []
        for simulation in self.calibration_pools:
            pool = feature_pool(simulation, atlas, progress)
            truth = population_truth(pool, settings, 1, progress)
            found = run_replicates(pool, settings, range(count), False, jobs, progress)
            nulls = run_replicates(pool, settings, range(10**6, 10**6 + count), True, jobs,
                                   progress)
            summary = summarise(found, nulls, truth, settings)
            summary.insert(0, "pool", simulation.seed)
            summaries.append(summary)
            del pool, found, nulls
        choice_summary = pd.concat(summaries, ignore_index=True)
        method, count, nominal, reason = choose_method(choice_summary, settings.level)
        pool = feature_pool(self.fresh_pool, atlas, progress)
        truth = population_truth(pool, settings, 2, progress)
        found = run_replicates(pool, settings, range(2 * 10**6, 2 * 10**6 + settings.replicates),
                               False, jobs, progress)
        nulls = run_replicates(pool, settings,
                               range(3 * 10**6, 3 * 10**6 + settings.null_replicates), True,
                               jobs, progress)
        for name, table in (("choice_summary", choice_summary),
                            ("fresh_summary", summarise(found, nulls, truth, settings)),
                            ("truth", truth),
                            ("rows", row_coverage(found, truth, method, count, nominal,
                                                  settings.level))):
            table.to_csv(staging / f"{name}.csv", index=False)
        write_json(staging / "choice.json", {"method": method, "bootstrap": count,
                                             "nominal": nominal, "reason": reason})
        write_json(staging / "p_values.json", p_value_error(nulls))

    def load(self, folder: Any, record: dict[str, Any]) -> Calibration:
        import json

        tables = {name: pd.read_csv(folder / f"{name}.csv")
                  for name in ("choice_summary", "fresh_summary", "truth", "rows")}
        return Calibration(folder, json.loads((folder / "choice.json").read_text()),
                           tables["choice_summary"], tables["fresh_summary"], tables["truth"],
                           tables["rows"], json.loads((folder / "p_values.json").read_text()))

    def provenance(self) -> dict[str, Any]:
        return {"n_jobs": self.n_jobs}
