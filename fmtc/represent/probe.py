"""Linear probes of an encoder's features: does pretraining put the knowledge in them?

A probe cohort is a labelled cohort whose subjects are encoded (their first
``windows_per_subject`` deterministic windows, every read-out from one pass); a
cross-validated logistic regression (standardised features, fixed ``C = PROBE_C``) then predicts
the label, and for a simulated cohort each latent trait split at its median
(``ground_truth.json`` ``subject_traits``), from each read-out. The pooled MCC of each probe is
the report; on 60 subjects its sampling error is about 0.13, so read the trend, not one point.
:func:`fmtc.represent.pretrain.pretrain_brainlm` runs it before the first step (the random
initialisation) and at evenly spaced steps, so the reader sees the knowledge arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fmtc.cohort.folder import Cohort
from fmtc.device import autocast
from fmtc.evaluate.metrics import binary_metrics
from fmtc.evaluate.splits import stratified_splits
from fmtc.plan import READOUTS, WindowPlan
from fmtc.preprocess.transforms import make_windows, robust_scale
from fmtc.represent.brainlm import BrainLM
from fmtc.represent.readout import readout_groups, token_readout

PROBE_C = 0.1
"""Inverse regularisation of the probe (fixed: a probe measures, it is not tuned)."""


@dataclass(frozen=True)
class ProbeSet:
    """Encoder inputs and probe targets of one labelled cohort.

    Attributes
    ----------
    windows : ndarray of shape (N * W, R, length)
        Robust-scaled windows, ``W`` per subject in subject order.
    xyz : ndarray of shape (R, 3)
    groups : ndarray of shape (R,)
        Network number of each region (for ``network-mean``).
    targets : dict of str to ndarray of shape (N,)
        Binary targets: ``label`` and, for simulated cohorts, ``trait-1`` ... (above median).
    windows_per_subject : int
    description : dict
        Cohort root, content hash and subject count, for the report.
    """

    windows: np.ndarray
    xyz: np.ndarray
    groups: np.ndarray | None
    targets: dict[str, np.ndarray]
    windows_per_subject: int
    description: dict[str, Any]


def probe_set(cohort: Cohort, windows: WindowPlan, windows_per_subject: int = 1) -> ProbeSet:
    """Prepare a labelled cohort for probing (windows cut once, reused at every probe point)."""
    stacked = [make_windows(robust_scale(cohort.timeseries[pid]), windows.length,
                            windows.stride, windows_per_subject)[:windows_per_subject]
               for pid in cohort.subject_ids]
    if any(len(w) < windows_per_subject for w in stacked):
        raise ValueError(f"{cohort.root}: every probe subject needs {windows_per_subject} "
                         f"window(s) of {windows.length} volumes")
    targets = {"label": np.asarray(cohort.labels, dtype=int)}
    truth = cohort.ground_truth or {}
    traits = truth.get("subject_traits")
    if traits:
        values = np.array([traits[pid] for pid in cohort.subject_ids], dtype=float)
        for k in range(values.shape[1]):
            targets[f"trait-{k + 1}"] = (values[:, k] > np.median(values[:, k])).astype(int)
    groups = (readout_groups(cohort, "network-mean")
              if "network" in cohort.regions.columns else None)
    return ProbeSet(np.concatenate(stacked).astype(np.float32), cohort.xyz.astype(np.float32),
                    groups, targets, windows_per_subject,
                    {"root": str(cohort.root), "content_hash": cohort.content_hash,
                     "n_subjects": len(cohort.subject_ids),
                     "windows_per_subject": windows_per_subject})


def probe_encoder(model: BrainLM, probes: ProbeSet, device: torch.device,
                  batch_size: int = 8, seed: int = 0, repeats: int = 2) -> dict[str, Any]:
    """Pooled cross-validated MCC of a linear probe of every target from every read-out.

    Parameters
    ----------
    model : BrainLM
        Encoded in eval mode without gradients; its training mode is restored.
    probes : ProbeSet
    device : torch.device
    batch_size : int, default=8
    seed : int, default=0
        Seed of the folds (the same at every probe point).
    repeats : int, default=2
        Repeats of 5-fold cross-validation; the MCC is their mean.

    Returns
    -------
    dict
        ``{readout: {target: mcc}}`` for the read-outs the probe cohort allows.
    """
    features = encode_readouts(model, probes, device, batch_size)
    return {readout: {target: linear_probe_mcc(x, y, seed, repeats)
                      for target, y in probes.targets.items()}
            for readout, x in features.items()}


def encode_readouts(model: BrainLM, probes: ProbeSet, device: torch.device,
                    batch_size: int = 8) -> dict[str, np.ndarray]:
    """Every read-out of every probe subject, averaged over its windows: ``{readout: [N, F]}``."""
    readouts = [r for r in READOUTS if r != "network-mean" or probes.groups is not None]
    out: dict[str, list[np.ndarray]] = {r: [] for r in readouts}
    xyz = torch.from_numpy(probes.xyz).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device):
            for start in range(0, len(probes.windows), batch_size):
                batch = torch.from_numpy(probes.windows[start:start + batch_size]).to(device)
                latent = model.encode_tokens(batch, xyz.expand(len(batch), -1, -1))
                for readout in readouts:
                    out[readout].append(
                        token_readout(latent, readout, probes.groups).float().cpu().numpy())
    finally:
        model.train(was_training)
    per_window = {r: np.concatenate(v) for r, v in out.items()}
    w = probes.windows_per_subject
    return {r: v.reshape(-1, w, v.shape[-1]).mean(1) for r, v in per_window.items()}


def linear_probe_mcc(features: np.ndarray, target: np.ndarray, seed: int = 0,
                     repeats: int = 2, folds: int = 5) -> float:
    """Pooled MCC of standardised logistic regression (``C = PROBE_C``), mean over repeats."""
    scores = []
    for repeat in range(repeats):
        probability = np.zeros(len(target))
        for split in stratified_splits(target, folds=folds, repeats=1, seed=seed + repeat):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
            model.fit(features[split.train], target[split.train])
            probability[split.test] = model.predict_proba(features[split.test])[:, 1]
        scores.append(binary_metrics(target, probability)["mcc"])
    return round(float(np.mean(scores)), 4)
