"""Would it help a trial? Calibration, decision curves, enrichment, sample size, interaction.

Every function reads out-of-fold predictions: one probability per subject, the mean over CV
repeats of the subject's out-of-fold probability (:func:`subject_probabilities`), so a subject
counts once. Intervals resample subjects (percentile bootstrap, seeded), the models kept fixed
(:mod:`fmtc.evaluate.uncertainty` says what that does and does not cover).

- **Calibration** (:func:`calibration_summary`): Brier score, calibration intercept
  (calibration-in-the-large: ``logit P(y) = a + logit(p)``) and slope (``logit P(y) = a +
  b logit(p)``), both unpenalised maximum likelihood; a reliability table with exact
  (Clopper-Pearson) binomial intervals (:func:`reliability_table`).
- **Recalibration without test subjects**: the test predictions of each fold are
  recalibrated (Platt or isotonic) with a map fitted on training subjects only.
  :func:`nested_recalibration` fits it on an inner cross-validation within the fold's
  training subjects, so no model behind the calibrator saw the target fold;
  :func:`cross_fitted_recalibration` (no extra fits) on the other folds' out-of-fold
  predictions, whose models did train on the target fold.
- **Decision curves** (:func:`decision_curve`): net benefit ``TP/n - FP/n * t / (1 - t)``
  of enrolling subjects with ``p >= t``, against "enrol all" and "enrol none", with bootstrap
  bands and the paired bootstrap interval of the gain over the better default. A small
  function rather than ``dcurves``: that package brings lifelines, statsmodels and a pinned
  pandas for a formula this short, and gives no paired band.
- **Enrichment** (:func:`enrichment_curve`): the response rate among the top fraction of
  subjects by predicted probability, and its ratio to the overall rate.
- **Sample size** (:func:`two_arm_sample_size`, :func:`trial_sizes`): patients per arm for a
  two-sided two-proportion test, with and without enrichment, and patients screened.
- **Predictive, not only prognostic** (:func:`interaction_test`): likelihood-ratio test of
  drug x prediction in ``logit P(y) = b0 + b1 drug + b2 s + b3 drug s`` with ``s = logit(p)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

EPS = 1e-6
"""Probabilities are clipped to ``[EPS, 1 - EPS]`` before a logit."""


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped to ``[EPS, 1 - EPS]``."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def subject_probabilities(predictions: pd.DataFrame, arm: str) -> pd.DataFrame:
    """One row per subject of ``arm``: ``participant_id``, ``label``, ``probability``.

    ``probability`` is the mean over CV repeats of the subject's out-of-fold probability.
    """
    part = predictions.loc[predictions["arm"] == arm]
    if part.empty:
        raise ValueError(f"no predictions for arm {arm!r}; arms: "
                         f"{sorted(predictions['arm'].unique())}")
    if (part.groupby("participant_id")["label"].nunique() > 1).any():
        raise ValueError(f"arm {arm!r} gives a subject different labels across repeats")
    return (part.groupby("participant_id", sort=False)
            .agg(label=("label", "first"), probability=("probability", "mean"))
            .reset_index())


# --------------------------------------------------------------------------- calibration


def _logistic_mle(design: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None,
                  iterations: int = 100) -> np.ndarray:
    """Unpenalised logistic regression by Newton-Raphson (``design`` includes the intercept)."""
    design = np.asarray(design, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    offset = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=np.float64)
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        eta = design @ beta + offset
        mu = 1 / (1 + np.exp(-eta))
        weights = np.clip(mu * (1 - mu), 1e-12, None)
        gradient = design.T @ (y - mu)
        hessian = design.T @ (design * weights[:, None])
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def _log_likelihood(design: np.ndarray, y: np.ndarray, beta: np.ndarray) -> float:
    eta = design @ beta
    return float(np.sum(y * eta - np.logaddexp(0, eta)))


def calibration_intercept_slope(labels: np.ndarray, probabilities: np.ndarray
                                ) -> tuple[float, float]:
    """Calibration-in-the-large ``a`` (slope fixed at 1) and calibration slope ``b``.

    Perfect calibration: ``a = 0``, ``b = 1``; ``b < 1``: predictions too extreme
    (over-fitting); ``a > 0``: risks under-estimated on average.
    """
    y = np.asarray(labels, dtype=np.float64)
    s = logit(probabilities)
    ones = np.ones((len(y), 1))
    intercept = float(_logistic_mle(ones, y, offset=s)[0])
    slope = float(_logistic_mle(np.column_stack([ones, s]), y)[1])
    return intercept, slope


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (0 is perfect; 0.25: p = 0.5)."""
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean((np.asarray(probabilities, dtype=np.float64) - y) ** 2))


def reliability_table(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 5,
                      level: float = 0.95) -> pd.DataFrame:
    """Observed response rate against mean predicted probability in quantile bins.

    Returns
    -------
    DataFrame
        ``bin, n, mean_predicted, observed, low, high`` (exact binomial interval).
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    rows = []
    for k, members in enumerate(np.array_split(order, min(n_bins, len(p)))):
        if len(members) == 0:
            continue
        hits = int(y[members].sum())
        interval = stats.binomtest(hits, len(members)).proportion_ci(confidence_level=level,
                                                                     method="exact")
        rows.append({"bin": k, "n": len(members), "mean_predicted": float(p[members].mean()),
                     "observed": hits / len(members), "low": float(interval.low),
                     "high": float(interval.high)})
    return pd.DataFrame(rows)


def calibration_summary(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Brier score, calibration intercept and slope, and the prevalence."""
    intercept, slope = calibration_intercept_slope(labels, probabilities)
    return {"brier": brier_score(labels, probabilities), "intercept": intercept,
            "slope": slope, "prevalence": float(np.mean(labels)), "n": int(len(labels))}


def _recalibration_map(y: np.ndarray, p: np.ndarray, method: str) -> Any:
    """The map fitted on labels ``y`` and predictions ``p`` (None: nothing to learn from)."""
    from sklearn.isotonic import IsotonicRegression

    if method not in ("platt", "isotonic"):
        raise ValueError(f"unknown recalibration {method!r}; use 'platt' or 'isotonic'")
    if len(np.unique(y)) < 2:  # one class: keep the predictions
        return None
    if method == "platt":
        beta = _logistic_mle(np.column_stack([np.ones(len(y)), logit(p)]), y)
        return lambda target: 1 / (1 + np.exp(-(beta[0] + beta[1] * logit(target))))
    bound = 0.5 / len(y)  # no recalibrated prediction is certain (0 or 1)
    iso = IsotonicRegression(y_min=bound, y_max=1 - bound, out_of_bounds="clip").fit(p, y)
    return iso.predict


def cross_fitted_recalibration(predictions: pd.DataFrame, arm: str,
                               method: str = "platt") -> pd.DataFrame:
    """Recalibrate each fold's test predictions with a map fitted on the other folds only.

    The map of fold ``k`` is fitted on the out-of-fold predictions of the other folds, whose
    models were trained on fold ``k``'s subjects: no test label is used, but the calibrator
    sees predictions of models that learned from the target fold. :func:`nested_recalibration`
    avoids that, at the cost of inner fits.

    Parameters
    ----------
    predictions : DataFrame
        A run's ``predictions.csv`` (``arm, repeat, fold, participant_id, probability,
        label``).
    arm : str
    method : {"platt", "isotonic"}
        Logistic regression on ``logit(p)``, or isotonic regression on ``p`` (bounded to
        ``[0.5 / n, 1 - 0.5 / n]``, ``n`` the subjects it is fitted on: a step function
        would otherwise return certainties, whose logit is infinite).

    Returns
    -------
    DataFrame
        The arm's rows with ``probability`` replaced by the recalibrated one.
    """
    part = predictions.loc[predictions["arm"] == arm].copy()
    out = part["probability"].to_numpy(dtype=np.float64).copy()
    for (repeat, fold), rows in part.groupby(["repeat", "fold"]).groups.items():
        others = part.index[(part["repeat"] == repeat) & (part["fold"] != fold)]
        recalibrate = _recalibration_map(part.loc[others, "label"].to_numpy(dtype=np.float64),
                                         part.loc[others, "probability"].to_numpy(
                                             dtype=np.float64), method)
        if recalibrate is not None:
            where = part.index.get_indexer(rows)
            out[where] = recalibrate(part.loc[rows, "probability"].to_numpy(dtype=np.float64))
    part["probability"] = out
    return part


def nested_recalibration(predictions: pd.DataFrame, inner: dict[tuple[int, int], pd.DataFrame],
                         arm: str, method: str = "platt") -> pd.DataFrame:
    """Recalibrate each fold's test predictions with a map the target fold never touched.

    For outer fold ``(repeat, fold)``, ``inner[(repeat, fold)]`` holds out-of-fold predictions
    of an inner cross-validation **within that fold's training subjects**: every model behind
    them was trained on training subjects only, and every subject they predict is a training
    subject. The map fitted on them is applied to the outer fold's test predictions.

    Parameters
    ----------
    predictions : DataFrame
        The outer run's predictions (``arm, repeat, fold, participant_id, probability, label``).
    inner : dict
        ``(repeat, fold) -> predictions`` of the inner run on that fold's training subjects
        (the same columns; its repeats are averaged per subject).
    arm : str
    method : {"platt", "isotonic"}

    Returns
    -------
    DataFrame
        The arm's rows with ``probability`` replaced by the recalibrated one.
    """
    part = predictions.loc[predictions["arm"] == arm].copy()
    out = part["probability"].to_numpy(dtype=np.float64).copy()
    for (repeat, fold), rows in part.groupby(["repeat", "fold"]).groups.items():
        key = (int(repeat), int(fold))
        if key not in inner:
            raise ValueError(f"no inner predictions for repeat {key[0]}, fold {key[1]} of arm "
                             f"{arm!r}: nested recalibration needs one inner run per outer fold")
        fitted = subject_probabilities(inner[key], arm)
        leaked = set(fitted["participant_id"]) & set(part.loc[rows, "participant_id"])
        if leaked:
            raise ValueError(f"repeat {key[0]}, fold {key[1]}: the inner run predicts test "
                             f"subject(s) {sorted(leaked)[:3]}; it must hold training "
                             "subjects only")
        recalibrate = _recalibration_map(fitted["label"].to_numpy(dtype=np.float64),
                                         fitted["probability"].to_numpy(dtype=np.float64),
                                         method)
        if recalibrate is not None:
            where = part.index.get_indexer(rows)
            out[where] = recalibrate(part.loc[rows, "probability"].to_numpy(dtype=np.float64))
    part["probability"] = out
    return part


# --------------------------------------------------------------------------- decisions


def net_benefit(labels: np.ndarray, probabilities: np.ndarray,
                thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of enrolling subjects with ``p >= t``, for each threshold ``t``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    treat = p[None, :] >= t[:, None]
    tp = (treat * y[None, :]).sum(1)
    fp = (treat * (1 - y[None, :])).sum(1)
    return (tp - fp * t / (1 - t)) / len(y)


def enrol_all(labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of enrolling everyone: ``prevalence - (1 - prevalence) t / (1 - t)``."""
    prevalence = float(np.mean(labels))
    t = np.asarray(thresholds, dtype=np.float64)
    return prevalence - (1 - prevalence) * t / (1 - t)


DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def decision_curve(labels: np.ndarray, probabilities: dict[str, np.ndarray],
                   thresholds: np.ndarray = DEFAULT_THRESHOLDS, n_bootstrap: int = 500,
                   seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Net benefit of each model, "enrol all" and "enrol none", with bootstrap bands.

    Returns
    -------
    DataFrame
        ``strategy, threshold, net_benefit, low, high`` and, for models, ``gain`` (net
        benefit minus the better of "enrol all" and "enrol none"), ``gain_low``,
        ``gain_high`` (paired bootstrap) and ``better`` (``gain_low > 0``).
    """
    y = np.asarray(labels, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_bootstrap, len(y)))
    tails = [50 * (1 - level), 50 * (1 + level)]
    rows = []

    def default(yy: np.ndarray) -> np.ndarray:
        return np.maximum(enrol_all(yy, t), 0.0)

    boot_all = np.array([enrol_all(y[d], t) for d in draws])
    low, high = np.percentile(boot_all, tails, axis=0)
    for k, value in enumerate(enrol_all(y, t)):
        rows.append({"strategy": "enrol all", "threshold": t[k], "net_benefit": value,
                     "low": low[k], "high": high[k]})
    for k in range(len(t)):
        rows.append({"strategy": "enrol none", "threshold": t[k], "net_benefit": 0.0,
                     "low": 0.0, "high": 0.0})
    boot_default = np.array([default(y[d]) for d in draws])
    for name, p in probabilities.items():
        p = np.asarray(p, dtype=np.float64)
        value = net_benefit(y, p, t)
        boot = np.array([net_benefit(y[d], p[d], t) for d in draws])
        low, high = np.percentile(boot, tails, axis=0)
        gain_low, gain_high = np.percentile(boot - boot_default, tails, axis=0)
        gain = value - default(y)
        for k in range(len(t)):
            rows.append({"strategy": name, "threshold": t[k], "net_benefit": value[k],
                         "low": low[k], "high": high[k], "gain": gain[k],
                         "gain_low": gain_low[k], "gain_high": gain_high[k],
                         "better": bool(gain_low[k] > 0)})
    return pd.DataFrame(rows)


def enrichment_curve(labels: np.ndarray, probabilities: np.ndarray,
                     fractions: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                     n_bootstrap: int = 500, seed: int = 0, level: float = 0.95
                     ) -> pd.DataFrame:
    """Response rate among the top ``fraction`` of subjects by predicted probability.

    Returns
    -------
    DataFrame
        ``fraction, n_enrolled, response_rate, low, high, enrichment, enrichment_low,
        enrichment_high`` (enrichment: response rate / overall rate; bootstrap intervals,
        the ranking redone in each resample).
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_bootstrap, len(y)))
    tails = [50 * (1 - level), 50 * (1 + level)]

    def rates(yy: np.ndarray, pp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-pp, kind="stable")
        ranked = yy[order]
        counts = np.maximum(np.ceil(np.asarray(fractions) * len(yy)).astype(int), 1)
        rate = np.array([ranked[:c].mean() for c in counts])
        overall = yy.mean()
        return rate, rate / overall if overall > 0 else np.full(len(counts), np.nan)

    rate, ratio = rates(y, p)
    boot = [rates(y[d], p[d]) for d in draws]
    boot_rate = np.array([b[0] for b in boot])
    boot_ratio = np.array([b[1] for b in boot])
    low, high = np.percentile(boot_rate, tails, axis=0)
    ratio_low, ratio_high = np.nanpercentile(boot_ratio, tails, axis=0)
    return pd.DataFrame({
        "fraction": list(fractions),
        "n_enrolled": np.maximum(np.ceil(np.asarray(fractions) * len(y)).astype(int), 1),
        "response_rate": rate, "low": low, "high": high, "enrichment": ratio,
        "enrichment_low": ratio_low, "enrichment_high": ratio_high})


# --------------------------------------------------------------------------- trials


def two_arm_sample_size(p_drug: float, p_placebo: float, alpha: float = 0.05,
                        power: float = 0.8) -> float:
    """Patients per arm for a two-sided two-proportion z-test (no continuity correction).

    ``n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2``;
    infinite when the two response rates are equal.
    """
    if not (0 <= p_drug <= 1 and 0 <= p_placebo <= 1):
        raise ValueError(f"response rates must lie in [0, 1], got {p_drug} and {p_placebo}")
    difference = abs(p_drug - p_placebo)
    if difference < 1e-9:  # equal rates, up to the rounding of the rates themselves
        return float("inf")
    pbar = (p_drug + p_placebo) / 2
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    z_beta = stats.norm.ppf(power)
    numerator = (z_alpha * np.sqrt(2 * pbar * (1 - pbar))
                 + z_beta * np.sqrt(p_drug * (1 - p_drug) + p_placebo * (1 - p_placebo)))
    return float(np.ceil(numerator ** 2 / difference ** 2))


def trial_sizes(frame: pd.DataFrame, fractions: Sequence[float] = (1.0, 0.7, 0.5, 0.3),
                drug: str = "duloxetine", placebo: str = "placebo", alpha: float = 0.05,
                power: float = 0.8, base_rates: dict[str, float] | None = None
                ) -> pd.DataFrame:
    """Sample size of a drug-vs-placebo trial that enrols the top ``fraction`` by prediction.

    Parameters
    ----------
    frame : DataFrame
        One row per subject: ``label``, ``probability`` and ``drug`` (the arm the subject was
        in). The response rate of each arm among the enrolled is read from the cohort.
    fractions : sequence of float
        Fractions of screened patients enrolled (1.0: no enrichment).
    base_rates : dict, optional
        Response rate of each arm in the unselected population (``{drug: 0.45, placebo:
        0.30}``), set by the user; the rate among the enrolled is then that rate times the
        arm's enrichment ratio in the cohort (its rate among the enrolled / its overall
        rate), capped at 1. Default: the cohort's own rates among the enrolled.

    Returns
    -------
    DataFrame
        ``fraction, threshold, response_drug, response_placebo, n_per_arm, n_enrolled,
        n_screened, screened_per_enrolled``.
    """
    rows = []
    p = frame["probability"].to_numpy(dtype=np.float64)
    for fraction in fractions:
        count = max(int(np.ceil(fraction * len(frame))), 1)
        threshold = float(np.sort(p)[::-1][count - 1])
        enrolled = frame.loc[p >= threshold]
        rates = {name: float(enrolled.loc[enrolled["drug"] == name, "label"].mean())
                 if (enrolled["drug"] == name).any() else float("nan")
                 for name in (drug, placebo)}
        if base_rates is not None:
            overall = {name: float(frame.loc[frame["drug"] == name, "label"].mean())
                       for name in (drug, placebo)}
            rates = {name: min(base_rates[name] * rates[name] / overall[name], 1.0)
                     if overall[name] > 0 else float("nan") for name in (drug, placebo)}
        n = (two_arm_sample_size(rates[drug], rates[placebo], alpha, power)
             if np.isfinite(list(rates.values())).all() else float("nan"))
        rows.append({"fraction": fraction, "threshold": threshold,
                     "response_drug": rates[drug], "response_placebo": rates[placebo],
                     "n_per_arm": n, "n_enrolled": 2 * n, "n_screened": 2 * n / fraction,
                     "screened_per_enrolled": 1 / fraction})
    return pd.DataFrame(rows)


def interaction_test(labels: np.ndarray, probabilities: np.ndarray,
                     on_drug: np.ndarray) -> dict[str, Any]:
    """Does the prediction say who benefits from the drug, or who improves anyway?

    Likelihood-ratio test of ``b3`` in ``logit P(y) = b0 + b1 drug + b2 s + b3 drug s``,
    ``s = logit(p)`` (centred). A prognostic model has ``b2 != 0``, ``b3 = 0``; a predictive
    one ``b3 != 0``.

    Returns
    -------
    dict
        ``interaction`` (b3), ``prognostic`` (b2), ``drug`` (b1), ``lr_statistic``,
        ``p_value`` (chi-square, 1 df), ``n``.
    """
    y = np.asarray(labels, dtype=np.float64)
    d = np.asarray(on_drug, dtype=np.float64)
    s = logit(probabilities)
    s = s - s.mean()
    full = np.column_stack([np.ones(len(y)), d, s, d * s])
    reduced = full[:, :3]
    beta_full = _logistic_mle(full, y)
    beta_reduced = _logistic_mle(reduced, y)
    statistic = 2 * (_log_likelihood(full, y, beta_full)
                     - _log_likelihood(reduced, y, beta_reduced))
    statistic = max(statistic, 0.0)
    return {"drug": float(beta_full[1]), "prognostic": float(beta_full[2]),
            "interaction": float(beta_full[3]), "lr_statistic": float(statistic),
            "p_value": float(stats.chi2.sf(statistic, 1)), "n": int(len(y))}


# --------------------------------------------------------------------------- one report


def per_arm_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """MCC, AUC and response rate of one model's predictions within each drug arm."""
    from fmtc.evaluate.metrics import binary_metrics

    rows = []
    for arm, part in frame.groupby("drug", sort=True):
        y, p = part["label"].to_numpy(), part["probability"].to_numpy()
        metrics = (binary_metrics(y, p) if len(np.unique(y)) == 2
                   else {"mcc": float("nan"), "auc": float("nan")})
        rows.append({"drug": arm, "n": len(part), "response_rate": float(y.mean()),
                     "mcc": float(metrics["mcc"]), "auc": float(metrics["auc"])})
    return pd.DataFrame(rows)


def utility_report(predictions: pd.DataFrame, drugs: pd.Series, arms: Sequence[str], *,
                   n_bootstrap: int = 500, seed: int = 0, drug: str = "duloxetine",
                   placebo: str = "placebo", base_rates: dict[str, float] | None = None,
                   inner: dict[tuple[int, int], pd.DataFrame] | None = None
                   ) -> dict[str, Any]:
    """Every table of "Would it help a trial?" for the models ``arms`` of one run.

    Parameters
    ----------
    predictions : DataFrame
        A run's ``predictions.csv``.
    drugs : Series
        Drug arm of each participant (index: ``participant_id``); may hold NaN.
    arms : sequence of str
        The run's arms (models) to assess.
    n_bootstrap, seed : int
        Subject bootstrap of every interval.
    base_rates : dict, optional
        Assumed response rates per arm for the trial sizes (:func:`trial_sizes`).
    inner : dict, optional
        Inner out-of-fold predictions per outer ``(repeat, fold)``: recalibration is then
        nested (:func:`nested_recalibration`); without, cross-fitted
        (:func:`cross_fitted_recalibration`).

    Returns
    -------
    dict
        ``calibration`` (per arm and recalibration: Brier, intercept, slope),
        ``reliability``, ``decision`` (:func:`decision_curve`), ``enrichment``,
        ``trial`` (:func:`trial_sizes`), ``per_arm`` (:func:`per_arm_metrics`),
        ``interaction`` (:func:`interaction_test`, one row per arm) and ``subjects``.
    """
    calibration, reliability, enrichment, trial, per_arm, interaction, subjects = (
        [], [], [], [], [], [], [])
    curves: dict[str, np.ndarray] = {}
    labels = None
    for arm in arms:
        for method in ("none", "platt", "isotonic"):
            if method == "none":
                source = predictions
            elif inner is not None:
                source = nested_recalibration(predictions, inner, arm, method)
            else:
                source = cross_fitted_recalibration(predictions, arm, method)
            frame = subject_probabilities(source, arm)
            y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
            calibration.append({"arm": arm, "recalibration": method,
                                **calibration_summary(y, p)})
            reliability.append(reliability_table(y, p).assign(arm=arm, recalibration=method))
            if method != "none":
                continue
            if labels is None:
                labels = y
            elif not np.array_equal(labels, y):
                raise ValueError(f"arm {arm!r} has other subjects or labels than the first arm")
            curves[arm] = p
            frame["drug"] = frame["participant_id"].map(drugs).astype(object)
            subjects.append(frame.assign(arm=arm))
            enrichment.append(enrichment_curve(y, p, n_bootstrap=n_bootstrap, seed=seed)
                              .assign(arm=arm))
            known = frame.dropna(subset=["drug"])
            if {drug, placebo} <= set(known["drug"]):
                trial.append(trial_sizes(known, drug=drug, placebo=placebo,
                                         base_rates=base_rates).assign(arm=arm))
                per_arm.append(per_arm_metrics(known).assign(arm=arm))
                tested = known[known["drug"].isin([drug, placebo])]
                interaction.append({"arm": arm, **interaction_test(
                    tested["label"].to_numpy(), tested["probability"].to_numpy(),
                    tested["drug"].eq(drug).to_numpy())})

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
        return pd.concat(frames, ignore_index=True) if frames else None

    return {"calibration": pd.DataFrame(calibration), "reliability": concat(reliability),
            "decision": decision_curve(labels, curves, n_bootstrap=n_bootstrap, seed=seed),
            "enrichment": concat(enrichment), "trial": concat(trial),
            "per_arm": concat(per_arm),
            "interaction": pd.DataFrame(interaction) if interaction else None,
            "subjects": concat(subjects)}
