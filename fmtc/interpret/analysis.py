"""Attribute every fold model of one arm of a run, and gather the results into tables.

:func:`interpret_arm` takes explicit inputs (no plan): the cohort's model inputs, a way to
build and load each fold's model, the splits, and a :class:`~fmtc.interpret.settings.IGSettings`;
:func:`fmtc.pipeline.interpret_run` resolves those from a run folder. Per fold, on the
fold's own model and test subjects:

- FC path: every test subject (batched);
- fused representation (FMM_TC only): every test subject;
- TS path: at most ``ts_subjects`` test subjects (alternating labels, in cohort order),
  one window each (the first of the subject's deterministic windows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fmtc.interpret.aggregate import (
    class_aligned,
    edge_totals,
    fc_region_sums,
    region_scores,
    ts_region_sums,
)
from fmtc.interpret.attribution import (
    Attribution,
    fc_attributions,
    modality_attributions,
    ts_attributions,
)
from fmtc.interpret.settings import CPU_TS_SUBJECTS, IGSettings  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)

@dataclass
class CohortInputs:
    """The model inputs of every subject of the cohort, in cohort order.

    Attributes
    ----------
    subject_ids : list of str
    fc : ndarray of shape (N, R, R) or None
    cls : ndarray of shape (N, W, H) or None
        BrainLM features (NaN beyond ``n_windows``), as the run read them.
    n_windows : ndarray of shape (N,) or None
    first_window : callable or None
        ``first_window(i, shuffled) -> [R, T]``: subject ``i``'s first scaled window, of its
        recording or of its time-shuffled recording (the TS path).
    features : callable or None
        ``windows [B, R, T] -> [B, H]``: the frozen encoder and read-out, differentiable.
    shuffled_fc : callable or None
        ``shuffled_fc(i) -> [R, R]``: connectivity of subject ``i``'s time-shuffled recording.
    shuffled_cls : callable or None
        ``shuffled_cls(i) -> [W_i, H]``: features of its time-shuffled windows.
    """

    subject_ids: list[str]
    fc: np.ndarray | None = None
    cls: np.ndarray | None = None
    n_windows: np.ndarray | None = None
    first_window: Callable[[int, bool], np.ndarray] | None = None
    features: Callable[[Tensor], Tensor] | None = None
    shuffled_fc: Callable[[int], np.ndarray] | None = None
    shuffled_cls: Callable[[int], np.ndarray] | None = None


@dataclass
class ArmAttributions:
    """Everything :func:`interpret_arm` computed for one arm.

    Attributes
    ----------
    subjects : DataFrame
        One row per attributed (repeat, fold, participant): ``ts_attribution``,
        ``fc_attribution`` (the summed absolute IG of each modality at the fused head),
        ``ts_share`` (fused models: the TS share of the mean absolute IG per input value, so
        that the modalities' widths do not weigh in), ``ts_share_sum`` (the share of the
        sums),
        ``evidence``,
        ``baseline_evidence`` and, per path, its convergence delta.
    fc_regions, ts_regions : DataFrame or None
        One row per fold (``repeat-R_fold-F``), one column per region: mean region score over
        the fold's attributed test subjects (:func:`fmtc.interpret.aggregate.region_scores`).
    fc_edges : ndarray of shape (R, R) or None
        Class-aligned mean symmetrised edge attribution over every attributed subject
        (:func:`fmtc.interpret.aggregate.class_aligned`; positive: supports the subject's
        own label).
    fc_edges_abs : ndarray of shape (R, R) or None
        Mean of its magnitude.
    seconds : dict
        Time spent on each path.
    """

    subjects: pd.DataFrame
    fc_regions: pd.DataFrame | None = None
    ts_regions: pd.DataFrame | None = None
    fc_edges: np.ndarray | None = None
    fc_edges_abs: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def ts_subject_choice(test: Sequence[int], labels: np.ndarray, limit: int | None) -> list[int]:
    """At most ``limit`` test subjects, alternating responders and non-responders.

    Deterministic: responders and non-responders each in cohort order, interleaved (the
    class with more test subjects first), so a handful covers both classes.
    """
    test = [int(i) for i in test]
    if limit is None or limit >= len(test):
        return test
    groups = [[i for i in test if labels[i] == value] for value in (1, 0)]
    groups.sort(key=len, reverse=True)
    chosen: list[int] = []
    for k in range(len(test)):
        for group in groups:
            if k < len(group) and len(chosen) < limit:
                chosen.append(group[k])
    return sorted(chosen)


def interpret_arm(build: Callable[[int, int], nn.Module], splits: Sequence[dict[str, Any]],
                  inputs: CohortInputs, labels: np.ndarray, settings: IGSettings,
                  device: torch.device, reads: Sequence[str], fused: bool,
                  progress: bool = False) -> ArmAttributions:
    """Attribute every fold model of one arm.

    Parameters
    ----------
    build : callable
        ``build(repeat, fold) -> model``: the fold's model with its weights loaded, on
        ``device``.
    splits : sequence of dict
        The run's ``splits.json`` entries: ``repeat``, ``fold``, ``fit``, ``test`` (ids).
    inputs : CohortInputs
    labels : ndarray of shape (N,)
        The labels the run used (permuted for a permuted-label run).
    settings : IGSettings
    device : torch.device
    reads : sequence of str
        The model's declared inputs (``cls``, ``fc``): the only ones it is called with, by
        name.
    fused : bool
        The model has a fused representation (FMM_TC): attribute it too.
    progress : bool
        Show a progress bar over folds.
    """
    import time

    position = {pid: i for i, pid in enumerate(inputs.subject_ids)}
    rows: list[dict[str, Any]] = []
    fc_folds, ts_folds = {}, {}
    edge_sum = edge_abs = None
    n_edges = 0
    seconds = {"fc": 0.0, "modality": 0.0, "ts": 0.0}
    iterator: Any = splits
    if progress:
        from tqdm import tqdm

        iterator = tqdm(splits, desc="integrated gradients", unit="fold")
    for split in iterator:
        repeat, fold = int(split["repeat"]), int(split["fold"])
        test = np.array([position[p] for p in split["test"]], dtype=np.int64)
        fit = np.array([position[p] for p in split["fit"]], dtype=np.int64)
        name = f"repeat-{repeat}_fold-{fold}"
        model = build(repeat, fold)
        fold_rows = {int(i): {"repeat": repeat, "fold": fold,
                              "participant_id": inputs.subject_ids[i], "label": int(labels[i])}
                     for i in test}
        cls = valid = fc = base_fc = None
        if "cls" in reads:
            cls, valid = _cls_tensors(inputs, test, device)
        if "fc" in reads:  # the FC input and its baseline serve the FC path and the fused one
            start = time.perf_counter()
            fc = torch.as_tensor(inputs.fc[test], dtype=torch.float32, device=device)
            base_fc = _fc_baseline(model, inputs, test, settings.baseline, device)
            found = fc_attributions(model, fc, base_fc, cls, valid, n_steps=settings.n_steps,
                                    internal_batch_size=settings.internal_batch_size)
            values = found.values[0].double().numpy()
            fc_folds[name] = region_scores(fc_region_sums(values), labels[test])
            totals = edge_totals(values)
            aligned = class_aligned(totals, labels[test]) * len(test)
            edge_sum = aligned if edge_sum is None else edge_sum + aligned
            edge_abs = (np.abs(totals).sum(0) if edge_abs is None
                        else edge_abs + np.abs(totals).sum(0))
            n_edges += len(test)
            _record(fold_rows, test, found, "fc")
            seconds["fc"] += time.perf_counter() - start
        if fused:
            start = time.perf_counter()
            base_cls = _cls_baseline(model, inputs, test, settings.baseline, cls.shape, device)
            found = modality_attributions(model, cls, fc, valid, base_cls, base_fc,
                                          n_steps=settings.n_steps,
                                          internal_batch_size=settings.internal_batch_size)
            ts_values = _window_sum(found.values[0], valid).abs()
            fc_values = _window_sum(found.values[1], valid).abs()
            ts_part, fc_part = ts_values.sum(-1), fc_values.sum(-1)
            # Per input value: the modalities enter the head with different widths (e.g. 224
            # TS read-out values against 256 FC embedding values); a share of summed |IG|
            # would favour the wider one by its width alone.
            ts_mean, fc_mean = ts_values.mean(-1), fc_values.mean(-1)
            share = ts_mean / (ts_mean + fc_mean)
            share_sum = ts_part / (ts_part + fc_part)
            for k, i in enumerate(test):
                fold_rows[int(i)].update(ts_attribution=float(ts_part[k]),
                                         fc_attribution=float(fc_part[k]),
                                         ts_share=float(share[k]),
                                         ts_share_sum=float(share_sum[k]))
            _record(fold_rows, test, found, "modality")
            seconds["modality"] += time.perf_counter() - start
        limit = settings.ts_subjects
        if "cls" in reads and inputs.features is not None and (limit is None or limit > 0):
            start = time.perf_counter()
            chosen = np.array(ts_subject_choice(test, labels, limit), dtype=np.int64)
            windows = torch.as_tensor(np.stack([inputs.first_window(int(i), False)
                                                for i in chosen]), device=device)
            base = _window_baseline(inputs, chosen, fit, settings.baseline, windows)
            fc = (torch.as_tensor(inputs.fc[chosen], dtype=torch.float32, device=device)
                  if "fc" in reads else None)
            found = ts_attributions(model, inputs.features, windows, base, fc,
                                    n_steps=settings.ts_steps,
                                    internal_batch_size=max(settings.internal_batch_size // 4,
                                                            1))
            ts_folds[name] = region_scores(ts_region_sums(found.values[0].double().numpy()))
            _record(fold_rows, chosen, found, "ts")
            seconds["ts"] += time.perf_counter() - start
        rows.extend(fold_rows.values())
    regions = [f"{i}" for i in range(_n_regions(inputs))]

    def as_frame(folds: dict[str, np.ndarray]) -> pd.DataFrame | None:
        return pd.DataFrame.from_dict(folds, orient="index", columns=regions) if folds else None

    return ArmAttributions(
        subjects=pd.DataFrame(rows), fc_regions=as_frame(fc_folds), ts_regions=as_frame(ts_folds),
        fc_edges=None if edge_sum is None else edge_sum / n_edges,
        fc_edges_abs=None if edge_abs is None else edge_abs / n_edges, seconds=seconds)


def _n_regions(inputs: CohortInputs) -> int:
    if inputs.fc is not None:
        return int(inputs.fc.shape[-1])
    return int(inputs.first_window(0, False).shape[0])


def _record(rows: dict[int, dict[str, Any]], subjects: np.ndarray, found: Attribution,
            path: str) -> None:
    for k, i in enumerate(subjects):
        row = rows[int(i)]
        row[f"{path}_evidence"] = float(found.evidence[k])
        row[f"{path}_baseline_evidence"] = float(found.baseline_evidence[k])
        row[f"{path}_delta"] = float(found.delta[k])
        row[f"{path}_relative_delta"] = float(found.relative_delta[k])


def _cls_tensors(inputs: CohortInputs, test: np.ndarray, device: torch.device
                 ) -> tuple[Tensor, Tensor]:
    cls = inputs.cls[test]
    width = cls.shape[1]
    valid = np.arange(width)[None, :] < inputs.n_windows[test][:, None]
    cls = np.where(valid[..., None], cls, 0.0).astype(np.float32)
    return (torch.as_tensor(cls, device=device), torch.as_tensor(valid, device=device))


def _window_sum(values: Tensor, valid: Tensor) -> Tensor:
    return (values * valid.cpu()[..., None]).sum(1)


def _fc_baseline(model: nn.Module, inputs: CohortInputs, test: np.ndarray, baseline: str,
                 device: torch.device) -> Tensor:
    n, r = len(test), inputs.fc.shape[-1]
    if baseline == "zeros":
        return torch.zeros(n, r, r, device=device)
    if baseline == "train-mean":  # the fold model's standardisation mean (fit subjects)
        mean = model.fc_encoder.standardise.mean.detach()
        return mean.to(device).expand(n, -1, -1).clone()
    return torch.as_tensor(np.stack([inputs.shuffled_fc(int(i)) for i in test]),
                           dtype=torch.float32, device=device)


def _cls_baseline(model: nn.Module, inputs: CohortInputs, test: np.ndarray, baseline: str,
                  shape: torch.Size, device: torch.device) -> Tensor:
    if baseline == "train-mean":
        mean = model.cls_standardise.mean.detach()
        return mean.to(device).expand(shape).clone()
    if inputs.features is None:
        raise ValueError(f"the {baseline!r} baseline of the fused representation needs the "
                         "BrainLM encoder; use the train-mean baseline")
    if baseline == "zeros":
        window = np.zeros_like(inputs.first_window(int(test[0]), False))
        with torch.no_grad():
            feature = inputs.features(torch.as_tensor(window[None], device=device))
        return feature.expand(shape).clone()
    out = torch.zeros(shape, device=device)
    for k, i in enumerate(test):
        found = torch.as_tensor(inputs.shuffled_cls(int(i)), device=device)
        out[k, :len(found)] = found
    return out


def _window_baseline(inputs: CohortInputs, chosen: np.ndarray, fit: np.ndarray,
                     baseline: str, windows: Tensor) -> Tensor:
    if baseline == "zeros":
        return torch.zeros_like(windows)
    if baseline == "train-mean":
        mean = np.mean([inputs.first_window(int(i), False) for i in fit], axis=0)
        return torch.as_tensor(mean, dtype=windows.dtype, device=windows.device).expand_as(
            windows).clone()
    return torch.as_tensor(np.stack([inputs.first_window(int(i), True) for i in chosen]),
                           dtype=windows.dtype, device=windows.device)
