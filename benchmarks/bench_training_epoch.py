"""Time per training epoch of FMM_TC: cached BrainLM features vs re-encoding every batch.

FMM_TC (Fan et al., MICCAI 2025) trains a ResNet-18 on the R x R functional connectivity (FC)
matrix next to the CLS embedding of a *frozen* BrainLM encoder. fmtc computes every CLS once into
a feature cache, so a training step only indexes it. The authors' loop instead re-runs the frozen
encoder under ``torch.no_grad`` on every batch of every epoch, with BrainLM's exact attention path
that materialises the [B, heads, n, n] softmax matrix (:mod:`_reference_brainlm`, n = 4241 tokens
for 424 regions x 200 timepoints). This benchmark trains the same FMM_TC on the same synthetic
data, batch order and batch size (8, the paper's) both ways, in one process, on the CPU:

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

Usage: ``.venv/bin/python benchmarks/bench_training_epoch.py [--subjects 16] [--regions 424]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def old_fit(initial: dict[str, Tensor], cls: Tensor, n_windows: Tensor, fc: Tensor,
            labels: Tensor, fit: Tensor, val: Tensor, test: Tensor, *, epochs: int,
            batch_size: int, lr: float, weight_decay: float, aux_weight: float,
            pool_size: int | None, seed: int) -> OldFit:
    """Train FMM_TC as the old ``fmtc.predict.training.train_fold`` did (CPU, all windows).

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
    for _ in range(epochs):
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
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return OldFit(torch.stack(val_history), torch.stack(test_history), losses_per_epoch, state)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run both loops and print the comparison.

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
    args = parser.parse_args(argv)
    if args.subjects < 2 or args.regions < 2 or args.epochs < 1 or args.batch_size < 2:
        parser.error("need --subjects >= 2, --regions >= 2, --epochs >= 1, --batch-size >= 2")
    if args.warmup_batches < 1:
        parser.error("need --warmup-batches >= 1 (the first one cross-checks the encoders)")
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
