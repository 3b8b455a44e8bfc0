"""The authors' protocol, switch by switch: what each behaviour of their code does to the result.

The authors' code (GitHub ``Shef-AIRE/FMM_TC``: ``FMM_TC-tutorial.ipynb`` and
``utils/utils.py``) differs from fmtc's honest protocol in the behaviours below. Each one
is a switch whose default is fmtc's behaviour and whose other value is theirs, and each
changes only what it names, so the built-in experiment ``official`` can pair every switch
with the honest arm on identical splits.

Per fit (an experiment arm may override them; part of the arm's identity):

- ``protocol.zero_grad: per_epoch`` (:func:`fmtc.predict.training.train_fold`): their
  ``optimizer.zero_grad()`` sits before ``for example in trainloader:``, so gradients
  accumulate over the epoch's batches.
- ``protocol.eval_crops: random`` (:func:`fmtc.predict.training.predict_logits`): their
  validation loader goes through the same ``__getitem__`` as training, which draws
  ``start_idx = random.randint(0, signal_vector.shape[1] - moving_window_len)``, so each
  evaluation sees one random 200-TR crop, and the FC is computed from that crop.
- ``protocol.input_scaling: none`` (:func:`fmtc.preprocess.transforms.scale_input`): they
  train on ``col_name = "Raw_Recording"``; the robust-scaled column ``process_datasets``
  builds is never read.
- ``connectivity.kind: gram_raw_window`` (:func:`fmtc.preprocess.transforms.window_connectivity`):
  ``torch.bmm(signal_vectors, signal_vectors.permute(0, 2, 1))`` of the raw crop. The
  ``Brain_Network`` column (``np.corrcoef``) is loaded but never used.
  :func:`fmtc.preprocess.transforms.gram_mean_share` measures how much of that matrix is
  regional mean intensity.
- ``brainlm.token_order: random_each_call`` (:mod:`fmtc.represent.features`): their
  ``BrainLMEmbeddings.random_masking(x, noise=None)`` draws ``torch.rand`` on every call,
  a new token order per encoder call even with ``mask_ratio = 0``.

Read from the predictions of one training (:func:`reporting_table`):

- ``protocol.auc: on_logit``: ``roc_auc_score(labels_list, logits_list[:, 1])``, the
  class-1 logit (needs an experiment with ``logits: true``);
- ``protocol.report: fold_mean``: their ``metric_df`` holds one row per fold and epoch; the
  headline is a mean over folds, not the metric of the pooled out-of-fold predictions;
- ``selection: paper``: ``best_mcc = 0 ... if mcc > best_mcc`` on the test fold
  (:func:`fmtc.evaluate.selection.paper_selection`).

A separate run: ``protocol.cv: unshuffled_single``, their
``StratifiedKFold(n_splits=kfold, shuffle=False)``, one repeat
(:func:`fmtc.evaluate.splits.unshuffled_splits`); its splits differ, so it cannot be paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fmtc.evaluate.metrics import AUC_SCORES, binary_metrics

Trajectory = tuple[Sequence[str], np.ndarray]
"""A fold's test subjects (participant ids) and their P(class 1) after every epoch
(``[epochs, n_test]``, the fit's ``test_trajectory``)."""

REPORTS = ("pooled", "fold_mean")
"""``protocol.report``: the metric of pooled out-of-fold predictions, or the mean over folds."""


def _metrics(part: pd.DataFrame, auc: str) -> dict[str, float]:
    logits = part[["logit_0", "logit_1"]].to_numpy() if auc == "on_logit" else None
    if logits is not None and not np.isfinite(logits).all():  # a model without logits
        values = binary_metrics(part["label"].to_numpy(), part["probability"].to_numpy())
        return values | {"auc": float("nan")}
    return binary_metrics(part["label"].to_numpy(), part["probability"].to_numpy(), auc=auc,
                          logits=logits)


def reported_metrics(predictions: pd.DataFrame, *, auc: str = "on_probability",
                     report: str = "pooled") -> pd.DataFrame:
    """MCC and AUC of each arm as a protocol reports them, from a predictions table.

    Parameters
    ----------
    predictions : DataFrame
        One selection's predictions table of a run (``arm, repeat, fold, probability,
        label`` and, for ``auc="on_logit"``, ``logit_0, logit_1``).
    auc : {"on_probability", "on_logit"}
        ``protocol.auc``.
    report : {"pooled", "fold_mean"}
        ``protocol.report``: ``pooled`` scores each repeat's pooled out-of-fold predictions;
        ``fold_mean`` scores each fold and averages the folds of a repeat.

    Returns
    -------
    DataFrame
        ``arm, mcc, auc``: means over repeats, arms in table order.
    """
    if auc not in AUC_SCORES:
        raise ValueError(f"unknown auc {auc!r}; use one of {list(AUC_SCORES)}")
    if report not in REPORTS:
        raise ValueError(f"unknown report {report!r}; use one of {list(REPORTS)}")
    if auc == "on_logit" and not {"logit_0", "logit_1"} <= set(predictions.columns):
        raise ValueError("auc 'on_logit' needs the logits: run an experiment with 'logits: true'")
    column = "arm" if "arm" in predictions else "model"
    rows = []
    for arm, part in predictions.groupby(column, sort=False):
        per_repeat = []
        for _, repeat in part.groupby("repeat", sort=True):
            if report == "pooled":
                values = _metrics(repeat, auc)
                per_repeat.append((values["mcc"], values["auc"]))
            else:
                folds = [_metrics(fold, auc) for _, fold in repeat.groupby("fold", sort=True)]
                per_repeat.append((float(np.mean([f["mcc"] for f in folds])),
                                   float(np.nanmean([f["auc"] for f in folds]))))
        mcc, auc_value = np.mean(np.asarray(per_repeat, dtype=np.float64), axis=0)
        rows.append((arm, float(mcc), float(auc_value)))
    return pd.DataFrame(rows, columns=["arm", "mcc", "auc"])


def reporting_table(predictions: Mapping[str, pd.DataFrame],
                    selections: Sequence[str] | None = None) -> pd.DataFrame:
    """Every combination of the reporting switches, from one run's predictions.

    Parameters
    ----------
    predictions : mapping of str to DataFrame
        A run's predictions tables by selection (``ExperimentRun.predictions`` or
        ``ExperimentResult.predictions``).
    selections : sequence of str, optional
        Default: every selection given.

    Returns
    -------
    DataFrame
        ``arm, selection, auc_on, report, mcc, auc``; the honest reading is
        ``(honest, on_probability, pooled)``, the authors' ``(paper, on_logit, fold_mean)``.
        ``on_logit`` rows only when the tables hold logits.
    """
    rows = []
    for selection in selections or list(predictions):
        table = predictions[selection]
        scores = [a for a in AUC_SCORES
                  if a != "on_logit" or {"logit_0", "logit_1"} <= set(table.columns)]
        for auc in scores:
            for report in REPORTS:
                frame = reported_metrics(table, auc=auc, report=report)
                frame.insert(1, "selection", selection)
                frame.insert(2, "auc_on", auc)
                frame.insert(3, "report", report)
                rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _paired_frames(predictions: Mapping[str, pd.DataFrame], arm: str,
                   selection: str) -> pd.DataFrame:
    table = predictions[selection]
    column = "arm" if "arm" in table else "model"
    part = table[table[column] == arm]
    if part.empty:
        raise ValueError(f"no {selection} predictions of arm {arm!r}")
    return part.sort_values(["repeat", "participant_id"]).reset_index(drop=True)


def _fold_mean_minus_pooled(part: pd.DataFrame) -> float:
    """Mean over repeats of (mean of per-fold MCC) - (pooled MCC)."""
    out = []
    for _, repeat in part.groupby("repeat", sort=True):
        labels = repeat["label"].to_numpy()
        probs = repeat["probability"].to_numpy()
        folds = repeat["fold"].to_numpy()
        folds_mcc = [binary_metrics(labels[folds == f], probs[folds == f])["mcc"]
                     for f in np.unique(folds)]
        out.append(float(np.mean(folds_mcc)) - binary_metrics(labels, probs)["mcc"])
    return float(np.mean(out))


def reporting_effects(predictions: Mapping[str, pd.DataFrame], arm: str, *,
                      n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95,
                      trajectories: Mapping[tuple[int, int], Trajectory] | None = None
                      ) -> pd.DataFrame:
    """The effect of each reporting switch on one arm's headline, with a subject bootstrap.

    Parameters
    ----------
    predictions : mapping of str to DataFrame
        A run's predictions tables by selection (``honest`` and ``paper``; logits for the AUC
        switch).
    arm : str
    n_bootstrap : int
        Subject resamples: within each fold of each repeat (so folds keep their size), the same
        resample for both readings of a switch; the trained models are held fixed.
    seed : int
    level : float
    trajectories : mapping, optional
        The arm's test-fold trajectories per ``(repeat, fold)``
        (:meth:`fmtc.evaluate.runs.ExperimentRun.test_trajectories`). Given, the paper's
        selection is **re-made in every resample** (:func:`reselected_draws`), so its interval
        carries the selection's own variability; without them, the chosen epochs are held
        fixed and only the subjects are resampled.

    Returns
    -------
    DataFrame
        One row per switch (``selection: paper``, ``report: fold_mean``, ``auc: on_logit``):
        ``switch, metric, honest, switched, difference, low, high``; MCC differences for the
        first two, AUC for the third (MCC does not change with the AUC's score).
    """
    from fmtc.evaluate.paired import paired_difference

    rows = []
    honest = _paired_frames(predictions, arm, "honest")
    repeats = sorted(honest["repeat"].unique())
    labels = honest[honest["repeat"] == repeats[0]]["label"].to_numpy()

    def per_repeat(frame: pd.DataFrame) -> np.ndarray:
        return np.stack([frame[frame["repeat"] == r]["probability"].to_numpy() for r in repeats])

    if trajectories is not None:
        draws = reselected_draws(honest, trajectories, n_bootstrap=n_bootstrap, seed=seed)
        tail = (1 - level) / 2
        low, high = np.quantile(draws["paper"] - draws["honest"], [tail, 1 - tail])
        point = reselected_draws(honest, trajectories, n_bootstrap=0, seed=seed)
        rows.append(("selection: paper", "mcc", float(point["honest"][0]),
                     float(point["paper"][0]), float(point["paper"][0] - point["honest"][0]),
                     float(low), float(high)))
    elif "paper" in predictions:
        paper = _paired_frames(predictions, arm, "paper")
        found = paired_difference(labels, per_repeat(paper), per_repeat(honest),
                                  n_bootstrap=n_bootstrap, n_permutations=0, seed=seed,
                                  level=level)
        rows.append(("selection: paper", "mcc", found.value_b, found.value_a, found.difference,
                     found.low, found.high))
    rng = np.random.default_rng(seed)
    strata = [(r, f) for r in repeats for f in sorted(honest[honest["repeat"] == r]["fold"]
                                                      .unique())]
    blocks = {key: np.flatnonzero((honest["repeat"] == key[0]) & (honest["fold"] == key[1]))
              for key in strata}

    def resample(frame: pd.DataFrame) -> pd.DataFrame:
        index = np.concatenate([rng.choice(rows_, len(rows_)) for rows_ in blocks.values()])
        return frame.iloc[index]

    point = _fold_mean_minus_pooled(honest)
    pooled_mcc = float(np.mean([binary_metrics(p["label"].to_numpy(),
                                               p["probability"].to_numpy())["mcc"]
                                for _, p in honest.groupby("repeat")]))
    draws = [_fold_mean_minus_pooled(resample(honest)) for _ in range(n_bootstrap)]
    tail = (1 - level) / 2
    low, high = (np.quantile(draws, [tail, 1 - tail]) if draws else (np.nan, np.nan))
    rows.append(("report: fold_mean", "mcc", pooled_mcc, pooled_mcc + point, point,
                 float(low), float(high)))
    if {"logit_0", "logit_1"} <= set(honest.columns):
        def auc_gap(frame: pd.DataFrame) -> tuple[float, float]:
            values = [(binary_metrics(p["label"].to_numpy(), p["probability"].to_numpy())["auc"],
                       _metrics(p, "on_logit")["auc"]) for _, p in frame.groupby("repeat")]
            return tuple(np.nanmean(np.asarray(values), axis=0))

        on_probability, on_logit = auc_gap(honest)
        gaps = []
        for _ in range(n_bootstrap):
            a, b = auc_gap(resample(honest))
            gaps.append(b - a)
        low, high = (np.nanquantile(gaps, [tail, 1 - tail]) if gaps else (np.nan, np.nan))
        rows.append(("auc: on_logit", "auc", on_probability, on_logit, on_logit - on_probability,
                     float(low), float(high)))
    return pd.DataFrame(rows, columns=["switch", "metric", "honest", "switched", "difference",
                                       "low", "high"])


def reselected_draws(honest: pd.DataFrame, trajectories: Mapping[tuple[int, int], Trajectory],
                     *, n_bootstrap: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Pooled MCC of the honest and the paper-selected readings, the selection re-made per draw.

    Each draw resamples the test subjects within every fold of every repeat (folds keep their
    size), then, in each fold, picks the epoch the authors' rule picks **on the resampled
    fold** (:func:`fmtc.evaluate.selection.paper_selection`) and reads its predictions; the
    honest predictions of the same resampled subjects are read beside them. Holding the epoch
    chosen on the full fold fixed would resample the subjects but not the choice that made the
    reading optimistic.

    Parameters
    ----------
    honest : DataFrame
        One arm's honest predictions (``repeat, fold, participant_id, probability, label``).
    trajectories : mapping
        ``(repeat, fold) -> (test participant ids, [epochs, n_test] probabilities)``.
    n_bootstrap : int
        Resamples; 0 gives the full-sample reading (one "draw", no resampling).
    seed : int

    Returns
    -------
    dict
        ``honest`` and ``paper``: arrays ``[max(n_bootstrap, 1)]`` of pooled MCC, averaged
        over repeats.
    """
    from fmtc.evaluate.selection import paper_selection

    repeats = sorted(int(r) for r in honest["repeat"].unique())
    blocks = []
    for (repeat, fold), part in honest.groupby(["repeat", "fold"], sort=True):
        key = (int(repeat), int(fold))
        if key not in trajectories:
            raise ValueError(f"no test trajectory of repeat {key[0]}, fold {key[1]}: the paper's "
                             "selection cannot be re-made (compute the fits with their test "
                             "trajectory, as an experiment with selection 'paper' does)")
        ids, trajectory = trajectories[key]
        trajectory = np.asarray(trajectory, dtype=np.float64)
        position = {str(pid): i for i, pid in enumerate(ids)}
        try:
            columns = np.array([position[str(pid)] for pid in part["participant_id"]])
        except KeyError as error:
            raise ValueError(f"repeat {key[0]}, fold {key[1]}: subject {error.args[0]} has no "
                             "test trajectory") from None
        blocks.append((key[0], part["label"].to_numpy().astype(int),
                       part["probability"].to_numpy(dtype=np.float64),
                       trajectory[:, columns]))
    rng = np.random.default_rng([int(seed), 7919])
    n_draws = max(int(n_bootstrap), 1)
    out = {"honest": np.zeros(n_draws), "paper": np.zeros(n_draws)}
    for b in range(n_draws):
        pooled: dict[int, list[tuple[np.ndarray, ...]]] = {r: [] for r in repeats}
        for repeat, labels, probabilities, trajectory in blocks:
            index = (np.arange(len(labels)) if n_bootstrap == 0
                     else rng.integers(0, len(labels), len(labels)))
            epoch = paper_selection(labels[index], trajectory[:, index])
            pooled[repeat].append((labels[index], probabilities[index],
                                   trajectory[epoch, index]))
        for name, column in (("honest", 1), ("paper", 2)):
            out[name][b] = np.mean([
                binary_metrics(np.concatenate([part[0] for part in parts]),
                               np.concatenate([part[column] for part in parts]))["mcc"]
                for parts in pooled.values()])
    return out
