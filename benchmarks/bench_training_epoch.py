"""FMM_TC training time: cached vs re-encoded BrainLM CLS; fmtc's loop before vs after.

**Section ``authors``: time per training epoch, cached BrainLM features vs re-encoding every
batch.** FMM_TC (Fan et al., MICCAI 2025) trains a ResNet-18 on the R x R functional connectivity
(FC) matrix next to the CLS embedding of a *frozen* BrainLM encoder. fmtc computes every CLS once
into a feature cache, so a training step only indexes it. The authors' loop instead re-runs the
frozen encoder under ``torch.no_grad`` on every batch of every epoch, with BrainLM's exact
attention path that materialises the [B, heads, n, n] softmax matrix (:mod:`_reference_brainlm`,
n = 4241 tokens for 424 regions x 200 timepoints). This benchmark trains the same FMM_TC on the same
synthetic data, batch order and batch size (8, the paper's) both ways, in one process, on the CPU:

- ``t_cached``: one epoch of the cached loop (index the CLS cache, forward/backward/AdamW step);
- ``t_authors``: one epoch of the authors' loop (reference encoder on the batch, then the same
  step), split into ``t_encoder`` (the reference encoder calls) and ``t_fc`` (the trainable FMM_TC
  part: forward, cross-entropy, backward, AdamW step).

The speed-up ``t_authors / t_cached`` cannot exceed ``(t_encoder + t_fc) / t_fc``, the ratio if the
cached epoch cost nothing but its trainable part; the benchmark prints both and how close the
measured ratio gets to that limit. The one-off cost of building the cache with fmtc's own encoder
(:meth:`fmtc.represent.brainlm.BrainLM.encode`, not counted in ``t_cached``) is reported
separately, with the number of epochs after which caching has paid for itself.

Each loop first runs one untimed warm-up batch (which also cross-checks the reference CLS against
the cached one). With ``--epochs`` above 1 the two loops alternate epoch by epoch and the times
are means per epoch. Wall-clock seconds are the headline figures; CPU seconds (user + system, all
threads) are printed beside them, being less sensitive to other load on a shared machine. Inputs
are random: weights and data values do not change the cost. The encoder weights are the BrainLM
fixture from ``../shared/brainlm`` when present (old_13M architecture), else a random
``BrainLMConfig()`` model; region centroids are the A424 coordinates when present, else random.

**Section ``fit``: one whole FMM_TC fit, fmtc's training loop before vs after its speed-ups.**
The ``quick`` profile's sizes: 60 subjects (48 trained on, 12 test subjects predicted after every
epoch), R = 424 regions pooled to 64 x 64, CLS of 3 windows x 224, 40 epochs of 6 AdamW steps of
batch 8, auxiliary branch losses. "New" is :func:`fmtc.predict.training.train_fold`; "old" is a
frozen copy of that loop as of fmtc f791593 (``old_fit``, ``OldFMMTC``: imports nothing from fmtc,
so it stays the reference whatever fmtc becomes; it reproduced ``train_fold`` of f791593 bit for
bit, and ``tests/test_training_speed.py`` checks it against the new loop). Old: the FC standardised
and pooled for every sample of every step, per-tensor AdamW; new: the standardised, pooled FC
images computed once per fold (bit for bit the same numbers), fused AdamW (the same update,
rounded differently). Same initial weights, inputs, batch order and window draws, under
``torch.use_deterministic_algorithms(True, warn_only=True)`` as ``run_fold`` trains. The two fits
run with their epochs alternating (old, new, old, ...; the order flips from one fit to the next),
so that the load of other jobs on a shared machine hits both alike; per-fit seconds are medians
over ``--fit-rounds`` fits, the per-epoch ratio the median over epochs 2..40 of all fits. max
|delta p| compares the two logs of test probabilities epoch by epoch, beside the old loop's own
difference between 1 and 2 threads.

Measured on the project's 2-core CPU (AMD EPYC, torch 2.14.1, 3 fits per side, 2026-12-07, other
jobs sharing the cores; load average 0.8-2.0):

=========  ===========  ===========  =========  ===================
threads    old s/fit    new s/fit    old/new    per epoch old/new
=========  ===========  ===========  =========  ===================
1          43.4         35.4         1.23x      1.21x
2          27.0         22.7         1.19x      1.16x
=========  ===========  ===========  =========  ===================

(CPU seconds give the same ratios.) Not the 2x sought: the ResNet-18 is most of a step. Per step
on 1 thread (the steps alone, timed alternately, medians of 20): old 159.5 ms, new 129.6 ms, of
which the ResNet-18 forward and backward at batch 8 on 64 x 64 (with the heads and the loss) is
118.8 ms: 74% of the old step, 92% of the new one. What went: AdamW 28 -> 8.6 ms (fused), the
per-sample standardise + pool 3.6 ms; the test subjects' evaluation after each epoch 54 -> 49 ms.
Without touching the ResNet-18 computation a fit cannot get faster than about 1.33x.

max |delta p| after epoch 1, 2, 5, 10, 20, 40 (1 thread): 1.6e-4, 5.9e-3, 4.1e-2, 0.16, 0.73,
0.62; the old loop at 1 vs 2 threads: 1.6e-4, 2.8e-3, 8.8e-2, 0.19, 0.88, 0.79. On these random
inputs any rounding difference grows into a different trajectory (Adam's normalised steps turn
last-bit gradient differences into whole steps): the fused AdamW moves a fit as much as running
the old loop on 2 threads instead of 1 does. With the per-tensor AdamW the new loop is the old one
bit for bit (``tests/test_training_speed.py``).

Usage: ``.venv/bin/python benchmarks/bench_training_epoch.py [--section all|authors|fit]
[--subjects 16] [--regions 424] [--fit-epochs 40] [--fit-rounds 3] [--fit-threads 1 2]``
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
BRAINLM_FIXTURE = SHARED / "brainlm"
A424_COORDINATES = SHARED / "data" / "atlas" / "A424_Coordinates.txt"

TIMEPOINTS = 200
"""Timepoints per window, as in the old_13M checkpoint (10 patches of 20 per region)."""


@dataclass
class Cohort:
    """Synthetic training data, one window per subject.

    Attributes
    ----------
    windows : Tensor, shape (N, R, T)
        Region time series (standard normal).
    fc : Tensor, shape (N, R, R)
        Pearson correlation of each window's regions.
    xyz : Tensor, shape (R, 3)
        Region centroids in MNI mm, shared by all subjects.
    labels : Tensor of int64, shape (N,)
        Balanced 0/1 labels.
    xyz_source : str
        Where the centroids come from.
    """

    windows: Tensor
    fc: Tensor
    xyz: Tensor
    labels: Tensor
    xyz_source: str


@dataclass
class Clock:
    """Accumulated wall-clock and CPU seconds of repeated timed sections."""

    wall: float = 0.0
    cpu: float = 0.0

    def time(self, fn: Callable[[], Tensor]) -> Tensor:
        """Run ``fn``, add its wall and CPU time, and return its result.

        Parameters
        ----------
        fn : callable
            Section to time; takes no arguments.

        Returns
        -------
        Tensor
            What ``fn`` returned.
        """
        start, cpu_start = time.perf_counter(), time.process_time()
        out = fn()
        self.wall += time.perf_counter() - start
        self.cpu += time.process_time() - cpu_start
        return out

    def scaled(self, factor: float) -> Clock:
        """Return a copy with both times multiplied by ``factor``."""
        return Clock(self.wall * factor, self.cpu * factor)


@dataclass
class EpochClocks:
    """Timed sections of one loop: whole epochs, encoder calls and trainable steps."""

    epoch: Clock
    encoder: Clock
    fc: Clock

    def per_epoch(self, epochs: int) -> EpochClocks:
        """Return the means over ``epochs`` epochs."""
        factor = 1.0 / epochs
        return EpochClocks(self.epoch.scaled(factor), self.encoder.scaled(factor),
                           self.fc.scaled(factor))


def cpu_model() -> str:
    """Name of the CPU from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "n/a" where the OS does not report them."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def region_coordinates(regions: int, generator: torch.Generator) -> tuple[Tensor, str]:
    """The first ``regions`` A424 centroids when the atlas file is there, else random ones.

    Parameters
    ----------
    regions : int
        R.
    generator : torch.Generator
        Draws the random centroids.

    Returns
    -------
    xyz : Tensor, shape (R, 3)
        Centroids in MNI mm.
    source : str
        Description for the printed configuration.
    """
    if A424_COORDINATES.is_file() and regions <= 424:
        from fmtc.acquire.atlas import read_coordinates

        table = read_coordinates(A424_COORDINATES)
        xyz = torch.tensor(table[["x", "y", "z"]].to_numpy()[:regions], dtype=torch.float32)
        return xyz, f"A424 ({A424_COORDINATES})"
    return torch.randn(regions, 3, generator=generator) * 40.0, "random"


def make_cohort(subjects: int, regions: int, seed: int) -> Cohort:
    """Random windows, their FC matrices, region centroids and balanced labels.

    Parameters
    ----------
    subjects, regions : int
        N and R.
    seed : int
        Seeds every draw.

    Returns
    -------
    Cohort
    """
    generator = torch.Generator().manual_seed(seed)
    windows = torch.randn(subjects, regions, TIMEPOINTS, generator=generator)
    fc = torch.stack([torch.corrcoef(window) for window in windows])
    xyz, source = region_coordinates(regions, generator)
    labels = (torch.arange(subjects) % 2)[torch.randperm(subjects, generator=generator)]
    return Cohort(windows, fc, xyz, labels, source)


def load_encoder(fixture: Path) -> tuple[torch.nn.Module, str]:
    """fmtc's BrainLM in eval mode: the fixture weights if present, else a random old_13M model.

    Parameters
    ----------
    fixture : Path
        Checkpoint folder (``config.json`` + ``pytorch_model.bin``).

    Returns
    -------
    model : fmtc.represent.brainlm.BrainLM
    source : str
        Description for the printed configuration.
    """
    from fmtc.represent.brainlm import BrainLM, BrainLMConfig
    from fmtc.represent.loading import load_brainlm

    if (fixture / "config.json").is_file():
        return load_brainlm(fixture), f"fixture weights ({fixture})"
    torch.manual_seed(0)
    return BrainLM(BrainLMConfig()).eval(), "random init, BrainLMConfig() (old_13M)"


def batches(order: Tensor, batch_size: int) -> list[Tensor]:
    """Split a subject order into batches, as :func:`fmtc.predict.training.train_fold` does.

    A final singleton joins the batch before it (BatchNorm cannot train on one sample).
    """
    parts = list(torch.split(order, batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


class Trainer:
    """FMM_TC with its AdamW optimiser; :meth:`step` is the trainable part of a batch.

    Both loops build it with the same seed and standardisation, so their trainable parts do the
    same work; only where the CLS comes from differs.

    Parameters
    ----------
    regions : int
        R of the FC input.
    cls_dim : int
        Width of the BrainLM CLS.
    pool_size : int or None
        FMM_TC's optional FC pooling; None feeds the full R x R matrix (the paper).
    cls_stats, fc_stats : tuple of Tensor
        (mean, std) of the CLS and FC inputs over the training subjects.
    seed : int
        Seeds the initial weights.
    """

    def __init__(self, regions: int, cls_dim: int, pool_size: int | None,
                 cls_stats: tuple[Tensor, Tensor], fc_stats: tuple[Tensor, Tensor],
                 seed: int) -> None:
        from fmtc.plan import TrainPlan
        from fmtc.predict.models import ModelConfig, build_model

        plan = TrainPlan()
        torch.manual_seed(seed)
        config = ModelConfig(kind="fmmtc", cls_dim=cls_dim, n_regions=regions,
                             pool_size=pool_size)
        self.model = build_model(config).train()
        self.model.set_standardisation(cls=cls_stats, fc=fc_stats)
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=plan.lr,
                                           weight_decay=plan.weight_decay)

    def step(self, cls: Tensor, fc: Tensor, labels: Tensor) -> Tensor:
        """One forward, cross-entropy, backward and AdamW step; returns the detached loss.

        Parameters
        ----------
        cls : Tensor, shape (B, H)
            CLS embeddings of the batch (no gradient).
        fc : Tensor, shape (B, R, R)
            FC matrices of the batch.
        labels : Tensor of int64, shape (B,)

        Returns
        -------
        Tensor
            The batch loss.
        """
        self.optimiser.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(cls=cls, fc=fc), labels)
        loss.backward()
        self.optimiser.step()
        return loss.detach()


def run_batch(trainer: Trainer, cohort: Cohort, subjects: Tensor,
              cls_of: Callable[[Tensor], Tensor], clocks: EpochClocks) -> Tensor:
    """Get the batch's CLS (timed as encoder) and take one trainable step (timed as fc).

    Parameters
    ----------
    trainer : Trainer
    cohort : Cohort
    subjects : Tensor of int64
        The batch.
    cls_of : callable
        Subjects -> CLS [B, H]: a cache lookup or a reference encoder pass.
    clocks : EpochClocks
        Where the encoder and fc sections are accumulated.

    Returns
    -------
    Tensor
        The CLS used, shape (B, H).
    """
    cls = clocks.encoder.time(lambda: cls_of(subjects))
    fc, labels = cohort.fc[subjects], cohort.labels[subjects]
    clocks.fc.time(lambda: trainer.step(cls, fc, labels))
    return cls


def run_epoch(trainer: Trainer, cohort: Cohort, order: Tensor, batch_size: int,
              cls_of: Callable[[Tensor], Tensor], clocks: EpochClocks) -> None:
    """One timed training epoch over ``order``, accumulated into ``clocks``.

    Parameters
    ----------
    trainer : Trainer
    cohort : Cohort
    order : Tensor of int64
        Subject order of this epoch.
    batch_size : int
    cls_of : callable
        Subjects -> CLS [B, H].
    clocks : EpochClocks
    """

    def epoch() -> Tensor:
        for subjects in batches(order, batch_size):
            run_batch(trainer, cohort, subjects, cls_of, clocks)
        return order

    clocks.epoch.time(epoch)


# --------------------------------------------------------------------------- per fit: old vs new
# A frozen copy of fmtc's FMM_TC training loop as it was before the speed-ups (fmtc commit
# f791593, fmtc/predict/models.py and training.py): the FC standardised and pooled for every
# sample of every step, the 3 identical channels through the full conv1, the per-tensor AdamW
# loop, positional ``model(cls, fc)``. It imports nothing from fmtc, so it stays the "old" side
# whatever fmtc becomes; tests/test_training_speed.py checks it against the new loop.

OLD_STD_FLOOR = 1e-6


class OldStandardise(torch.nn.Module):
    """``(x - mean) / std`` with buffers (the old ``fmtc.predict.models._Standardise``)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def set(self, mean: Tensor, std: Tensor) -> None:
        """Set the buffers; standard deviations below the floor divide by 1."""
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std < OLD_STD_FLOOR, torch.ones_like(std), std))

    def forward(self, x: Tensor) -> Tensor:
        """Standardise ``x``."""
        return (x - self.mean) / self.std


class OldFCEncoder(torch.nn.Module):
    """Standardise, pool, repeat to 3 channels, ResNet-18: per call (the old ``FCEncoder``)."""

    def __init__(self, n_regions: int, pool_size: int | None, out_dim: int = 256) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.pool_size = pool_size
        self.standardise = OldStandardise((n_regions, n_regions))
        self.resnet = resnet18(weights=None, num_classes=out_dim)

    def forward(self, fc: Tensor) -> Tensor:
        """Embedding ``[B, 256]`` of the connectivity ``[B, R, R]``."""
        image = self.standardise(fc).unsqueeze(1)
        if self.pool_size is not None:
            image = F.adaptive_avg_pool2d(image, self.pool_size)
        return self.resnet(image.expand(-1, 3, -1, -1))


class OldFMMTC(torch.nn.Module):
    """The old FMM_TC, with the same ``state_dict`` layout as :class:`fmtc.predict.models.FMMTC`.

    Parameters
    ----------
    cls_dim, n_regions : int
        H and R.
    pool_size : int or None
        Side of the pooled FC image.
    """

    def __init__(self, cls_dim: int, n_regions: int, pool_size: int | None) -> None:
        super().__init__()
        self.cls_standardise = OldStandardise((cls_dim,))
        self.fc_encoder = OldFCEncoder(n_regions, pool_size)
        self.head = torch.nn.Linear(cls_dim + 256, 2)
        self.ts_aux_head = torch.nn.Linear(cls_dim, 2)
        self.fc_aux_head = torch.nn.Linear(256, 2)

    def representation(self, cls: Tensor, fc: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised CLS and the FC embedding (repeated over windows)."""
        embedding = self.fc_encoder(fc)
        if cls.ndim == 3:
            embedding = embedding.unsqueeze(1).expand(-1, cls.shape[1], -1)
        return self.cls_standardise(cls), embedding

    def forward(self, cls: Tensor, fc: Tensor) -> Tensor:
        """Fused logits ``[B, 2]`` or ``[B, W, 2]``."""
        ts, embedding = self.representation(cls, fc)
        return self.head(torch.cat([ts, embedding], dim=-1))

    def branch_logits(self, cls: Tensor, fc: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Fused logits and the two auxiliary unimodal logits."""
        ts, embedding = self.representation(cls, fc)
        fused = self.head(torch.cat([ts, embedding], dim=-1))
        return fused, (self.ts_aux_head(ts), self.fc_aux_head(embedding))


@dataclass
class OldFit:
    """What the old loop recorded: per-epoch probabilities, losses and the final weights."""

    val_probabilities: Tensor
    test_probabilities: Tensor
    train_loss: list[float]
    state: dict[str, Tensor]


def old_predict_logits(model: OldFMMTC, cls: Tensor, n_windows: Tensor, fc: Tensor,
                       subjects: Tensor, chunk: int = 16) -> Tensor:
    """Mean logits over each subject's valid windows (the old ``predict_logits``, all windows).

    Returns
    -------
    Tensor of shape (len(subjects), 2), float64
    """
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(subjects), chunk):
            index = subjects[start:start + chunk]
            logits = model(cls[index], fc[index]).float()
            width = cls.shape[1]
            valid = (torch.arange(width)[None, :] < n_windows[index][:, None]).float()
            out.append((logits * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))
    if not out:
        return torch.zeros(0, 2, dtype=torch.float64)
    return torch.cat(out).double()


def old_probabilities(logits: Tensor) -> Tensor:
    """P(class 1) = sigmoid(logit_1 - logit_0) in float64."""
    return torch.sigmoid(logits[:, 1] - logits[:, 0])


def old_fit_epochs(initial: dict[str, Tensor], cls: Tensor, n_windows: Tensor, fc: Tensor,
                   labels: Tensor, fit: Tensor, val: Tensor, test: Tensor, *, epochs: int,
                   batch_size: int, lr: float, weight_decay: float, aux_weight: float,
                   pool_size: int | None, seed: int) -> Generator[int, None, OldFit]:
    """Train FMM_TC as the old ``fmtc.predict.training.train_fold`` did (CPU, all windows).

    A generator, so that a benchmark can interleave its epochs with another loop's: the
    setup and each epoch run on the next ``next()``, which yields the epoch just finished;
    the exhausted generator returns the :class:`OldFit` (:func:`old_fit` runs it through).

    Parameters
    ----------
    initial : dict of str to Tensor
        Initial ``state_dict`` (the new model's, so both sides start from the same weights).
    cls : Tensor of shape (N, W, H)
        CLS per window, zeros beyond ``n_windows``.
    n_windows : Tensor of int64, shape (N,)
    fc : Tensor of shape (N, R, R)
    labels : Tensor of int64, shape (N,)
    fit, val, test : Tensor of int64
        Subjects trained on, and monitored after every epoch.
    epochs, batch_size : int
    lr, weight_decay, aux_weight : float
        AdamW and the auxiliary branch losses' weight.
    pool_size : int or None
    seed : int
        Seeds the batch order and window draws (as ``train_fold``).

    Yields
    ------
    int
        The epoch just finished (0-based).

    Returns
    -------
    OldFit
    """
    model = OldFMMTC(cls.shape[2], fc.shape[1], pool_size)
    model.load_state_dict(initial)
    fit_cls, fit_windows = cls[fit], n_windows[fit]
    valid = torch.arange(cls.shape[1])[None, :] < fit_windows[:, None]
    rows = fit_cls[valid]
    model.cls_standardise.set(rows.mean(0), rows.std(0, unbiased=False))
    model.fc_encoder.standardise.set(fc[fit].mean(0), fc[fit].std(0, unbiased=False))
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  foreach=False)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    val_history, test_history, losses_per_epoch = [], [], []
    for epoch in range(epochs):
        model.train()
        losses, sizes = [], []
        order = fit[torch.randperm(len(fit), generator=generator)]
        for subjects in batches(order, batch_size):
            draws = torch.rand(len(subjects), generator=generator)
            window = (draws * n_windows[subjects]).long()
            batch_cls, batch_fc = cls[subjects, window], fc[subjects]
            optimiser.zero_grad(set_to_none=True)
            target = labels[subjects]
            if aux_weight > 0:
                logits, branches = model.branch_logits(batch_cls, batch_fc)
            else:
                logits, branches = model(batch_cls, batch_fc), ()
            loss = F.cross_entropy(logits.float(), target)
            for branch in branches:
                loss = loss + aux_weight * F.cross_entropy(branch.float(), target)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            sizes.append(len(subjects))
        losses_per_epoch.append(float(np.average(losses, weights=sizes)))
        scheduler.step()
        val_history.append(old_probabilities(old_predict_logits(model, cls, n_windows, fc, val)))
        test_history.append(old_probabilities(old_predict_logits(model, cls, n_windows, fc, test)))
        yield epoch
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return OldFit(torch.stack(val_history), torch.stack(test_history), losses_per_epoch, state)


def old_fit(initial: dict[str, Tensor], cls: Tensor, n_windows: Tensor, fc: Tensor,
            labels: Tensor, fit: Tensor, val: Tensor, test: Tensor, **settings: Any) -> OldFit:
    """The whole old fit: :func:`old_fit_epochs` run to the end (same arguments)."""
    return run_out(old_fit_epochs(initial, cls, n_windows, fc, labels, fit, val, test,
                                  **settings))


def run_out(epochs: Generator[int, None, OldFit]) -> OldFit:
    """Run an :func:`old_fit_epochs` generator to its end and return its :class:`OldFit`."""
    while True:
        try:
            next(epochs)
        except StopIteration as stop:
            return stop.value

@dataclass
class FitCohort:
    """Synthetic inputs of a quick-sized fit (the ``quick`` profile's shapes).

    Attributes
    ----------
    cls : Tensor, shape (N, W, H)
        CLS features per window (standard normal; every window valid).
    n_windows : Tensor of int64, shape (N,)
    fc : Tensor, shape (N, R, R)
        Pearson correlation of random region series.
    labels : Tensor of int64, shape (N,)
        Balanced 0/1 labels.
    """

    cls: Tensor
    n_windows: Tensor
    fc: Tensor
    labels: Tensor


FIT_SUBJECTS, FIT_TRAINED, FIT_WINDOWS, FIT_CLS, FIT_POOL = 60, 48, 3, 224, 64
"""``quick``: 60 subjects (48 fit, 12 test per fold), 3 windows, network-mean CLS 32 x 7,
the FC pooled to 64 x 64."""


def make_fit_cohort(regions: int, seed: int) -> FitCohort:
    """Random quick-sized inputs (values do not change the cost).

    Parameters
    ----------
    regions : int
        R.
    seed : int

    Returns
    -------
    FitCohort
    """
    generator = torch.Generator().manual_seed(seed)
    cls = torch.randn(FIT_SUBJECTS, FIT_WINDOWS, FIT_CLS, generator=generator)
    series = torch.randn(FIT_SUBJECTS, regions, TIMEPOINTS, generator=generator)
    fc = torch.stack([torch.corrcoef(x) for x in series])
    labels = (torch.arange(FIT_SUBJECTS) % 2)[torch.randperm(FIT_SUBJECTS, generator=generator)]
    return FitCohort(cls, torch.full((FIT_SUBJECTS,), FIT_WINDOWS), fc, labels)


@dataclass
class Stamp:
    """Wall-clock and CPU (user + system, all threads) timestamps, in seconds."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Stamp:
        """The current timestamps."""
        return cls(time.perf_counter(), time.process_time())

    def since(self, start: Stamp) -> Clock:
        """The interval from ``start`` to this stamp."""
        return Clock(self.wall - start.wall, self.cpu - start.cpu)


def interleaved_fit(old_epochs: Generator[int, None, OldFit],
                    train_new: Callable[[Callable[..., list[str]]], np.ndarray], epochs: int,
                    old_first: bool) -> tuple[list[Clock], list[Clock], OldFit, np.ndarray]:
    """Run an old and a new fit with their epochs alternating, and time every epoch.

    Load from other jobs on a shared machine changes over minutes; alternating epoch by epoch
    (rather than fit by fit) exposes both sides to the same load.

    Parameters
    ----------
    old_epochs : generator
        :func:`old_fit_epochs`, not started.
    train_new : callable
        ``train_new(rule)`` runs the new fit, calling ``rule(val_probs, test_probs)`` after
        each epoch (``train_fold``'s snapshot callback); returns its test probabilities.
    epochs : int
    old_first : bool
        Order old, new, old, new, ... (else new, old, ...).

    Returns
    -------
    old_clocks, new_clocks : list of Clock
        Time of each epoch; a side's first epoch includes its setup (model, statistics,
        FC images), its last what follows the last epoch.
    old : OldFit
    new_probabilities : ndarray of shape (epochs, n_test)
    """
    old_clocks: list[Clock] = []
    new_clocks: list[Clock] = []
    mark = Stamp.now()

    def old_epoch() -> None:
        nonlocal mark
        start = Stamp.now()
        next(old_epochs)
        mark = Stamp.now()
        old_clocks.append(mark.since(start))

    def rule(*_: Any) -> list[str]:
        nonlocal mark
        new_clocks.append(Stamp.now().since(mark))
        if len(old_clocks) < epochs:
            old_epoch()
        else:
            mark = Stamp.now()
        return []

    if old_first:
        old_epoch()
    mark = Stamp.now()
    new_probabilities = train_new(rule)
    tail = Stamp.now().since(mark)
    new_clocks[-1] = Clock(new_clocks[-1].wall + tail.wall, new_clocks[-1].cpu + tail.cpu)
    start = Stamp.now()
    old = run_out(old_epochs)
    tail = Stamp.now().since(start)
    old_clocks[-1] = Clock(old_clocks[-1].wall + tail.wall, old_clocks[-1].cpu + tail.cpu)
    return old_clocks, new_clocks, old, new_probabilities


def fit_section(args: argparse.Namespace) -> None:
    """Time whole FMM_TC fits, the frozen old loop against fmtc's, epochs alternating.

    Both sides train the same model from the same initial weights on the same inputs, batch
    order and window draws, under ``torch.use_deterministic_algorithms(True, warn_only=True)``
    as :func:`fmtc.evaluate.protocol.run_fold` does, and log the test subjects' probabilities
    after every epoch; max |delta p| compares those logs.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (``regions``, ``seed``, ``fit_*``).
    """
    from fmtc.plan import TrainPlan
    from fmtc.predict.models import ModelConfig, build_model
    from fmtc.predict.training import ModelInputs, train_fold

    cohort = make_fit_cohort(args.regions, args.seed)
    plan = TrainPlan(epochs=args.fit_epochs, batch_size=8, lr=5e-4, weight_decay=0.01,
                     aux_weight=1.0)
    config = ModelConfig("fmmtc", FIT_CLS, args.regions, pool_size=FIT_POOL)
    cpu = torch.device("cpu")
    inputs = ModelInputs.from_arrays(cohort.labels.numpy(), cpu, cls=cohort.cls.numpy(),
                                     n_windows=cohort.n_windows.numpy(), fc=cohort.fc.numpy())
    fit, val = torch.arange(FIT_TRAINED), torch.arange(0)
    test = torch.arange(FIT_TRAINED, FIT_SUBJECTS)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)  # train_fold's initial weights, for the old side too
        initial = build_model(config).state_dict()
    steps = len(batches(fit, plan.batch_size))

    def old_epochs(epochs: int) -> Generator[int, None, OldFit]:
        return old_fit_epochs(initial, cohort.cls, cohort.n_windows, cohort.fc, cohort.labels,
                              fit, val, test, epochs=epochs, batch_size=plan.batch_size,
                              lr=plan.lr, weight_decay=plan.weight_decay,
                              aux_weight=plan.aux_weight, pool_size=FIT_POOL, seed=args.seed)

    def train_new(rule: Callable[..., list[str]], epochs: int = plan.epochs) -> np.ndarray:
        return train_fold(config, dataclasses.replace(plan, epochs=epochs), inputs,
                          fit.numpy(), val.numpy(), test.numpy(), seed=args.seed, device=cpu,
                          snapshot=rule).test_probabilities

    print("FMM_TC per fit: fmtc's loop before (frozen copy) vs after the speed-ups")
    print(f"  quick shapes: {FIT_SUBJECTS} subjects ({FIT_TRAINED} fit, "
          f"{FIT_SUBJECTS - FIT_TRAINED} test scored after every epoch), R={args.regions} pooled "
          f"to {FIT_POOL}, CLS [{FIT_WINDOWS} windows, {FIT_CLS}]")
    print(f"  {plan.epochs} epochs x {steps} steps of batch {plan.batch_size}, AdamW lr "
          f"{plan.lr}, aux_weight {plan.aux_weight}; {args.fit_rounds} fit(s) per side and "
          "thread count, old and new epochs alternating, after an untimed 1-epoch fit of each")
    print(f"  torch {torch.__version__}, CPU: {cpu_model()} ({os.cpu_count()} logical), "
          f"load average at start: {load_average()}", flush=True)
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    probabilities: dict[tuple[str, int], np.ndarray] = {}
    rows = []
    try:
        for threads in args.fit_threads:
            torch.set_num_threads(threads)
            interleaved_fit(old_epochs(1), lambda rule: train_new(rule, 1), 1, False)  # warm-up
            fits: dict[str, list[list[Clock]]] = {"old": [], "new": []}
            for round_ in range(args.fit_rounds):
                old_clocks, new_clocks, old, new = interleaved_fit(
                    old_epochs(plan.epochs), train_new, plan.epochs, old_first=round_ % 2 == 1)
                fits["old"].append(old_clocks)
                fits["new"].append(new_clocks)
                probabilities.setdefault(("old", threads), old.test_probabilities.numpy())
                probabilities.setdefault(("new", threads), new)
            rows.append((threads, fits))
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])

    print()
    print(f"{'threads':>7} {'':>5} {'old s/fit':>10} {'new s/fit':>10} {'old/new':>8} "
          f"{'old ms/step':>12} {'new ms/step':>12} {'per-epoch old/new':>18}")
    per_step = 1000.0 / (plan.epochs * steps)
    for threads, fits in rows:
        for kind in ("wall", "cpu"):
            totals = {side: [sum(getattr(c, kind) for c in clocks) for clocks in fits[side]]
                      for side in fits}
            old_s, new_s = (statistics.median(totals[side]) for side in ("old", "new"))
            # epoch by epoch, the first (setup) left out: pairs run back to back
            ratios = [getattr(o, kind) / getattr(n, kind)
                      for olds, news in zip(fits["old"], fits["new"], strict=True)
                      for o, n in zip(olds[1:], news[1:], strict=True)]
            print(f"{threads if kind == 'wall' else '':>7} {kind:>5} {old_s:>10.2f} "
                  f"{new_s:>10.2f} {old_s / new_s:>7.2f}x {old_s * per_step:>12.1f} "
                  f"{new_s * per_step:>12.1f} {statistics.median(ratios):>17.2f}x")
        print(f"{'':>13} wall per fit: old "
              f"{', '.join(f'{sum(c.wall for c in f):.2f}' for f in fits['old'])}; new "
              f"{', '.join(f'{sum(c.wall for c in f):.2f}' for f in fits['new'])}")
    marks = [e for e in (1, 2, 5, 10, 20, 40, 100) if e < plan.epochs] + [plan.epochs]
    print()
    print(f"{'max |delta p| of the 12 test subjects after epoch:':<52} "
          + " ".join(f"{e:>7}" for e in marks))

    def divergence(label: str, a: np.ndarray, b: np.ndarray) -> None:
        delta = np.abs(a - b).max(axis=1)
        print(f"  {label:<50} " + " ".join(f"{delta[e - 1]:>7.1e}" for e in marks))

    for threads, _ in rows:
        divergence(f"old vs new, {threads} thread(s)", probabilities[("old", threads)],
                   probabilities[("new", threads)])
    if len(rows) > 1:  # the old loop's own sensitivity to rounding, for scale
        first, second = rows[0][0], rows[1][0]
        divergence(f"old, {first} vs {second} threads (rounding alone)",
                   probabilities[("old", first)], probabilities[("old", second)])
    print(f"load average at end: {load_average()}")

def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the chosen sections.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=16, help="N subjects (default 16)")
    parser.add_argument("--regions", type=int, default=424, help="R regions (default 424)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per loop (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="default 8, the paper's")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="FMM_TC FC pooling side (default: none, the full R x R matrix)")
    parser.add_argument("--encoder-chunk", type=int, default=0,
                        help="run the reference encoder in sub-batches of this size to bound its "
                             "memory (default 0: the whole batch, as the authors' loop does)")
    parser.add_argument("--warmup-batches", type=int, default=1,
                        help="untimed batches per loop before the epochs (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--fixture", type=Path, default=BRAINLM_FIXTURE,
                        help="BrainLM checkpoint folder (random weights if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", choices=("all", "authors", "fit"), default="all",
                        help="authors: cached CLS vs the authors' loop, per epoch; fit: fmtc's "
                             "loop before vs after the speed-ups, per quick-sized fit; all: both "
                             "(default)")
    parser.add_argument("--fit-epochs", type=int, default=40,
                        help="epochs of each fit in the fit section (default 40, quick's)")
    parser.add_argument("--fit-rounds", type=int, default=3,
                        help="alternating old/new rounds per thread count (default 3)")
    parser.add_argument("--fit-threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts of the fit section (default 1 2)")
    args = parser.parse_args(argv)
    if args.subjects < 2 or args.regions < 2 or args.epochs < 1 or args.batch_size < 2:
        parser.error("need --subjects >= 2, --regions >= 2, --epochs >= 1, --batch-size >= 2")
    if args.warmup_batches < 1:
        parser.error("need --warmup-batches >= 1 (the first one cross-checks the encoders)")
    if args.fit_epochs < 1 or args.fit_rounds < 1 or min(args.fit_threads) < 1:
        parser.error("need --fit-epochs >= 1, --fit-rounds >= 1 and --fit-threads >= 1")
    if args.section in ("all", "authors"):
        authors_section(args)
    if args.section in ("all", "fit"):
        if args.section == "all":
            print()
        fit_section(args)


def authors_section(args: argparse.Namespace) -> None:
    """Time epochs of the cached loop and of the authors' re-encoding loop; print them.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options.
    """
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from _reference_brainlm import reference_encoder

    cohort = make_cohort(args.subjects, args.regions, args.seed)
    encoder, weights_source = load_encoder(args.fixture)
    cfg = encoder.config
    state = {k: v.detach() for k, v in encoder.state_dict().items()}
    n_tokens = 1 + args.regions * TIMEPOINTS // cfg.timepoint_patching_size
    chunk = args.encoder_chunk if args.encoder_chunk > 0 else args.batch_size
    n_batches = len(batches(torch.arange(args.subjects), args.batch_size))

    print("FMM_TC training epoch: cached BrainLM CLS vs the authors' re-encoding loop")
    print(f"  subjects N={args.subjects}, regions R={args.regions}, timepoints T={TIMEPOINTS}, "
          f"tokens {n_tokens} (CLS + R*T/{cfg.timepoint_patching_size})")
    print(f"  batch size {args.batch_size}, {n_batches} batches per epoch, "
          f"{args.epochs} timed epoch(s) per loop after {args.warmup_batches} warm-up "
          "batch(es) each")
    fc_input = "full R x R" if args.pool_size is None else f"R x R pooled to {args.pool_size}"
    print(f"  FMM_TC: ResNet-18 on the {fc_input} FC matrix + CLS ({cfg.hidden_size}) -> linear, "
          "cross-entropy, AdamW")
    print(f"  encoder: hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
          f"{cfg.num_attention_heads} heads; {weights_source}")
    print(f"  reference encoder batch: {chunk} window(s) per call"
          f"{' (sub-batches of the training batch)' if chunk < args.batch_size else ''}")
    print(f"  centroids: {cohort.xyz_source}")
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"Python {platform.python_version()}, CPU: {cpu_model()} ({os.cpu_count()} logical)")
    print(f"  load average at start: {load_average()}", flush=True)

    xyz_all = cohort.xyz.expand(args.subjects, -1, -1)

    # One-off cache with fmtc's encoder (not part of any epoch).
    cache_clock = Clock()
    with torch.no_grad():
        parts = [
            cache_clock.time(lambda s=s: encoder.encode(cohort.windows[s], xyz_all[s]))
            for s in torch.split(torch.arange(args.subjects), args.batch_size)
        ]
    cache = torch.cat(parts)
    rss_after_cache = peak_rss_mb()

    def cached_cls(subjects: Tensor) -> Tensor:
        return cache[subjects]

    def reference_cls(subjects: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([
                reference_encoder(state, cohort.windows[s], xyz_all[s],
                                  heads=cfg.num_attention_heads,
                                  patch=cfg.timepoint_patching_size,
                                  eps=cfg.layer_norm_eps)[:, 0]
                for s in torch.split(subjects, chunk)
            ])

    stats_cls = (cache.mean(0), cache.std(0, unbiased=False))
    stats_fc = (cohort.fc.mean(0), cohort.fc.std(0, unbiased=False))
    loops = {
        name: (Trainer(args.regions, cfg.hidden_size, args.pool_size, stats_cls, stats_fc,
                       args.seed), cls_of, EpochClocks(Clock(), Clock(), Clock()))
        for name, cls_of in (("cached", cached_cls), ("authors", reference_cls))
    }

    # Warm-up batches per loop, untimed; the authors' first one cross-checks the two encoders.
    warm_order = torch.randperm(args.subjects,
                                generator=torch.Generator().manual_seed(args.seed + 1))
    warm = [batches(warm_order, args.batch_size)[0]] * args.warmup_batches
    scratch = EpochClocks(Clock(), Clock(), Clock())
    for subjects in warm:
        run_batch(loops["cached"][0], cohort, subjects, cached_cls, scratch)
    rss_cached = peak_rss_mb()
    reference = [run_batch(loops["authors"][0], cohort, s, reference_cls, scratch) for s in warm]
    max_diff = float((reference[0] - cache[warm[0]]).abs().max())

    generators = {name: torch.Generator().manual_seed(args.seed) for name in loops}
    for _ in range(args.epochs):  # alternate, with the same subject order in both loops
        for name, (trainer, cls_of, clocks) in loops.items():
            order = torch.randperm(args.subjects, generator=generators[name])
            run_epoch(trainer, cohort, order, args.batch_size, cls_of, clocks)

    cached, authors = (loops[name][2].per_epoch(args.epochs) for name in ("cached", "authors"))
    ratio = authors.epoch.wall / cached.epoch.wall
    limit = (authors.encoder.wall + authors.fc.wall) / authors.fc.wall
    ratio_cpu = authors.epoch.cpu / cached.epoch.cpu
    limit_cpu = (authors.encoder.cpu + authors.fc.cpu) / authors.fc.cpu
    saving = authors.epoch.wall - cached.epoch.wall
    payoff = cache_clock.wall / saving if saving > 0 else math.inf

    print()
    print(f"{'per epoch':<52} {'wall s':>8} {'cpu s':>8}")
    rows = [
        ("t_cached   cached loop epoch", cached.epoch),
        ("             FMM_TC trainable part", cached.fc),
        ("             cache lookups", cached.encoder),
        ("t_authors  authors' loop epoch", authors.epoch),
        ("t_encoder    reference encoder (materialised softmax)", authors.encoder),
        ("t_fc         FMM_TC trainable part", authors.fc),
    ]
    for label, clock in rows:
        print(f"{label:<52} {clock.wall:>8.2f} {clock.cpu:>8.2f}")
    print(f"{'ratio      t_authors / t_cached':<52} {ratio:>7.2f}x {ratio_cpu:>7.2f}x")
    print(f"{'limit      (t_encoder + t_fc) / t_fc':<52} {limit:>7.2f}x {limit_cpu:>7.2f}x")
    print(f"{'ratio / limit':<52} {ratio / limit:>8.3f} {ratio_cpu / limit_cpu:>8.3f}")
    print()
    print(f"reference encoder: {authors.encoder.wall / args.subjects:.2f} s wall per window")
    print(f"one-off cache, fmtc BrainLM.encode (no_grad, batches of {args.batch_size}): "
          f"{cache_clock.wall:.2f} s wall, {cache_clock.cpu:.2f} s cpu for {args.subjects} "
          f"windows ({cache_clock.wall / args.subjects:.2f} s per window)")
    if math.isfinite(payoff):
        print(f"caching has paid off after {math.ceil(payoff)} epoch(s) "
              f"(break-even at cache cost / (t_authors - t_cached) = {payoff:.2f} epochs)")
    else:
        print("caching never pays off here: the cached epoch was not faster")
    print(f"max |CLS reference - CLS fmtc| on the first warm-up batch: {max_diff:.2e}")
    print(f"load average at end: {load_average()}")
    print(f"peak RSS: {rss_after_cache:.0f} MB after the cache, {rss_cached:.0f} MB after the "
          f"cached warm-up, {peak_rss_mb():.0f} MB at the end (reference encoder included)")


if __name__ == "__main__":
    main()
