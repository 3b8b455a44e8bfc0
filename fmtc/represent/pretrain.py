"""Masked-patch pretraining of BrainLM on a cohort of region time series (``fmtc pretrain``).

The objective of BrainLM (Ortega Caro et al., "BrainLM: A foundation model for brain activity
recordings", ICLR 2024): tokens (20-time-point patches of one region) are shuffled, a fraction
``mask_ratio`` is dropped, the encoder sees the rest and the decoder reconstructs the dropped
patches; the loss is their mean squared error. Each epoch draws one random window of
``windows.length`` time points from every training subject's robust-scaled series; with
``pretrain.regions_per_window`` each window keeps a random subset of its regions (fewer tokens
per step, so more windows fit in the same time; ``benchmarks/bench_pretraining.py``), and
``pretrain.masking: time`` hides whole time patches instead of random tokens.

Training is resumable: ``checkpoint.pt`` (model, optimiser, schedule, epoch and every random
state) is replaced atomically after each epoch, and a rerun into the same folder continues from
it, giving the same weights as an uninterrupted run. The result is saved with
:func:`fmtc.represent.loading.save_brainlm`, so ``load_brainlm(out_dir)`` reads it, and
``training_log.json`` records the loss per epoch and the masked-patch loss on held-out subjects of
the trained model, the same architecture randomly initialised, and predicting zero (each region's
median after robust scaling). Given a labelled probe cohort, ``probe_report.json`` records
linear probes of its label and latent traits from the encoder's read-outs at
``pretrain.probe_points`` points of the schedule and before the first step
(:mod:`fmtc.represent.probe`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmtc.cohort.folder import Cohort
from fmtc.device import autocast, describe_device
from fmtc.plan import PretrainPlan, WindowPlan
from fmtc.preprocess.transforms import make_windows, robust_scale
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.loading import save_brainlm
from fmtc.represent.probe import ProbeSet, probe_encoder
from fmtc.storage import sha256_file, write_json, write_torch

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "training_log.json"
PROBE_FILE = "probe_report.json"
GRADIENT_CLIP = 1.0
MAX_HELD_OUT = 16
"""Held-out subjects at most (they only score the model; more would cost time, not precision)."""
_CHECKPOINT_FORMAT = 1


def pretraining_config(settings: PretrainPlan, windows: WindowPlan,
                       n_regions: int) -> BrainLMConfig:
    """BrainLM config of ``settings.architecture``; other fields as in the official ``old_13M``.

    Parameters
    ----------
    settings : PretrainPlan
        Supplies the architecture and ``mask_ratio``.
    windows : WindowPlan
        ``length`` is recorded as ``num_timepoints_per_voxel``.
    n_regions : int
        Recorded as ``num_brain_voxels`` (informational: BrainLM takes any region count).
    """
    return BrainLMConfig(
        **dataclasses.asdict(settings.architecture),
        mask_ratio=settings.mask_ratio,
        num_brain_voxels=n_regions,
        num_timepoints_per_voxel=windows.length,
        extra={"initializer_range": 0.02, "torch_dtype": "float32"},
    )


def pretrain_brainlm(
    cohort: Cohort,
    out_dir: str | Path,
    settings: PretrainPlan,
    *,
    init: BrainLM | None,
    device: torch.device,
    windows: WindowPlan,
    progress: bool = True,
    held_out_fraction: float = 0.2,
    probes: ProbeSet | None = None,
) -> dict[str, Any]:
    """Pretrain BrainLM with the masked-patch objective; save it in the checkpoint folder layout.

    Parameters
    ----------
    cohort : Cohort
        Region time series (labels are not used). A fraction ``held_out_fraction`` of its subjects
        (a seeded draw) is held out of training and scores the result.
    out_dir : path-like
        Folder for ``checkpoint.pt``, ``config.json``, ``pytorch_model.bin`` and
        ``training_log.json``. A folder holding a checkpoint of the same settings is resumed;
        one of other settings is an error.
    settings : PretrainPlan
        Architecture (when ``init`` is None), epochs, batch size, AdamW ``lr`` and
        ``weight_decay`` (linear warm-up over ``warmup_fraction`` of the steps, then cosine
        decay), ``mask_ratio`` and ``seed``.
    init : BrainLM or None
        Continue from these weights (its architecture is kept); ``None`` starts from a random
        initialisation seeded with ``settings.seed``.
    device : torch.device
        Where to train (bf16 autocast on CUDA).
    windows : WindowPlan
        ``length`` is the training window; the held-out subjects are scored on their
        deterministic window set.
    progress : bool, default=True
        Show a progress bar.
    held_out_fraction : float, default=0.2
        Fraction of subjects held out (at least one, at most ``MAX_HELD_OUT``, and at least
        one left to train on).
    probes : ProbeSet, optional
        A labelled probe cohort (:mod:`fmtc.represent.probe`): linear-probe MCCs of its label
        and traits are measured before the first step and after ``settings.probe_points``
        evenly spaced epochs, recorded in the checkpoint (a resumed run keeps them) and
        written to ``probe_report.json``.

    Returns
    -------
    dict
        The content of ``training_log.json``.
    """
    out_dir = Path(out_dir)
    train_ids, held_ids = _split_subjects(cohort, held_out_fraction, settings.seed)
    config = init.config if init is not None else pretraining_config(
        settings, windows, cohort.n_regions)
    random_model = _seeded_model(config, settings.seed)
    model = copy.deepcopy(init) if init is not None else _seeded_model(config, settings.seed)
    model.to(device).train()
    identity = {
        "settings": dataclasses.asdict(settings),
        "window_length": windows.length,
        "config": config.to_dict(),
        "init_weights_sha256": init.source_info.get("weights_sha256") if init is not None else None,
        "cohort_content_hash": cohort.content_hash,
        "train_subjects": train_ids,
    }

    scaled = {pid: robust_scale(cohort.timeseries[pid]) for pid in train_ids}
    steps_per_epoch = math.ceil(len(train_ids) / settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, settings.epochs * steps_per_epoch,
                                       settings.warmup_fraction)
    state = _TrainingState(settings.seed)
    history: list[dict[str, float]] = []
    probe_log: list[dict[str, Any]] = []
    probe_epochs = _probe_epochs(settings.epochs, settings.probe_points if probes else 0)
    checkpoint = out_dir / CHECKPOINT_FILE
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout draws from the global RNG: keep it ours
        torch.manual_seed(settings.seed)
        start = 0
        if checkpoint.is_file():
            start, history, probe_log = _resume(checkpoint, identity, model, optimizer,
                                                scheduler, state, device)
        if probes is not None and probe_epochs and start == 0:
            probe_log = [_probe_point(model, probes, 0, 0, settings, device)]
        xyz = torch.from_numpy(cohort.xyz).to(device)
        bar = _progress_bar(progress, settings.epochs * steps_per_epoch,
                            start * steps_per_epoch)
        try:
            for epoch in range(start, settings.epochs):
                began = time.perf_counter()
                batches = _epoch_batches(scaled, train_ids, windows.length, settings.batch_size,
                                         state.numpy, settings.regions_per_window)
                loss = _train_epoch(model, batches, xyz, optimizer, scheduler, state,
                                    settings.mask_ratio, settings.masking, device, bar)
                history.append({"epoch": epoch + 1, "train_loss": loss,
                                "lr_end": scheduler.get_last_lr()[0],
                                "seconds": round(time.perf_counter() - began, 3)})
                if probes is not None and epoch + 1 in probe_epochs:
                    probe_log.append(_probe_point(model, probes, epoch + 1,
                                                  (epoch + 1) * steps_per_epoch, settings,
                                                  device))
                _save_checkpoint(checkpoint, identity, epoch + 1, history, probe_log, model,
                                 optimizer, scheduler, state, device)
        finally:
            if bar is not None:
                bar.close()

    model.eval()
    save_brainlm(model, out_dir)
    held_out = _held_out_losses(
        cohort, held_ids, windows, settings, device,
        {"trained": model, "random_init": random_model.to(device).eval(),
         **({"init": init.to(device).eval()} if init is not None else {})},
    )
    log = {
        "objective": "masked-patch MSE (BrainLM, Ortega Caro et al., ICLR 2024)",
        "epochs": history,
        "held_out": held_out,
        "train_subjects": train_ids,
        "cohort": {"root": str(cohort.root), "content_hash": cohort.content_hash},
        "settings": identity["settings"],
        "window_length": windows.length,
        "init": dict(init.source_info) if init is not None else None,
        "weights_sha256": sha256_file(out_dir / "pytorch_model.bin"),
        "device": describe_device(device),
    }
    if probe_log:
        report = {"probe_cohort": probes.description if probes is not None else None,
                  "method": "pooled MCC of standardised logistic regression (C = 0.1), "
                            "5-fold x 2 repeats; traits split at their median; step 0 is the "
                            "random initialisation",
                  "points": probe_log}
        write_json(out_dir / PROBE_FILE, report)
        log["probe"] = report
    write_json(out_dir / LOG_FILE, log)
    return log


def _probe_epochs(epochs: int, points: int) -> set[int]:
    """The epochs after which the probe runs: ``points`` evenly spaced ones, the last included."""
    if points <= 0:
        return set()
    return {max(1, round(epochs * k / points)) for k in range(1, points + 1)}


def _probe_point(model: BrainLM, probes: ProbeSet, epoch: int, step: int,
                 settings: PretrainPlan, device: torch.device) -> dict[str, Any]:
    began = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        mcc = probe_encoder(model, probes, device, seed=settings.seed)
    return {"epoch": epoch, "step": step, "mcc": mcc,
            "seconds": round(time.perf_counter() - began, 3)}


# ------------------------------------------------------------------------------------ training


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                           warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to zero.

    A post-LayerNorm transformer trained from scratch at a high learning rate needs the
    warm-up; without it the masked-patch loss stays at the predict-zero level.
    """
    warmup = max(1, round(warmup_fraction * total_steps)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def masking_noise(shape: tuple[int, ...], patch: int, masking: str,
                  generator: torch.Generator) -> torch.Tensor:
    """BrainLM's per-token masking noise ``[B, R * P]`` (the lowest values are kept).

    ``random`` masks tokens independently (BrainLM's own scheme). ``time`` masks whole time
    patches: every region of a window shares its patch's draw, so a hidden stretch of time must be
    filled in from the visible ones before and after it, not copied from other regions at the same
    moment (the fraction hidden is still ``mask_ratio`` of the tokens).
    """
    batch, regions, timepoints = shape[:3]
    n_patches = timepoints // patch
    if masking == "random":
        return torch.rand(batch, regions * n_patches, generator=generator)
    if masking != "time":
        raise ValueError(f"unknown masking {masking!r}; use 'random' or 'time'")
    rank = torch.rand(batch, 1, n_patches, generator=generator).argsort(-1).argsort(-1)
    within = torch.rand(batch, regions, n_patches, generator=generator)
    return ((rank + within) / n_patches).flatten(1)


class _TrainingState:
    """The random streams of training: window draws (NumPy) and token shuffles (torch)."""

    def __init__(self, seed: int) -> None:
        self.numpy = np.random.default_rng([seed, 1])
        self.noise = torch.Generator().manual_seed(seed + 1)

    def state_dict(self, device: torch.device) -> dict[str, Any]:
        states = {"numpy": self.numpy.bit_generator.state, "noise": self.noise.get_state(),
                  "torch": torch.get_rng_state()}
        if device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(device)
        return states

    def load_state_dict(self, states: dict[str, Any], device: torch.device) -> None:
        self.numpy.bit_generator.state = states["numpy"]
        self.noise.set_state(states["noise"])
        torch.set_rng_state(states["torch"])
        if device.type == "cuda" and "cuda" in states:
            torch.cuda.set_rng_state(states["cuda"], device)


def _seeded_model(config: BrainLMConfig, seed: int) -> BrainLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BrainLM(config)


def _split_subjects(cohort: Cohort, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    ids = cohort.subject_ids
    if len(ids) < 2:
        raise ValueError(f"cohort {cohort.root} has {len(ids)} subject(s); pretraining needs at "
                         "least 2 (one is held out to score the model)")
    if not 0 < fraction < 1:
        raise ValueError(f"held_out_fraction must lie in (0, 1), got {fraction}")
    n_held = min(max(1, round(fraction * len(ids))), len(ids) - 1, MAX_HELD_OUT)
    order = np.random.default_rng([seed, 0]).permutation(len(ids))
    held = {int(i) for i in order[:n_held]}
    return ([pid for i, pid in enumerate(ids) if i not in held],
            [pid for i, pid in enumerate(ids) if i in held])


def _epoch_batches(scaled: dict[str, np.ndarray], train_ids: list[str], length: int,
                   batch_size: int, rng: np.random.Generator,
                   regions: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One random window per training subject, in a random order, cut into batches.

    Each batch is ``(windows [B, R', length], region positions [B, R'])``; with ``regions``
    every window keeps a random subset of that many regions (in atlas order), so a step costs
    a fraction of a full window's attention while every region is still seen across steps.
    """
    windows, picks = [], []
    for index in rng.permutation(len(train_ids)):
        series = scaled[train_ids[index]]
        start = int(rng.integers(0, max(series.shape[0] - length, 0) + 1))
        window = make_windows(series[start:start + length], length, length, 1)[0]
        pick = np.arange(window.shape[0])
        if regions is not None and regions < window.shape[0]:
            pick = np.sort(rng.choice(window.shape[0], size=regions, replace=False))
        windows.append(window[pick])
        picks.append(pick)
    return [(np.stack(windows[i:i + batch_size]), np.stack(picks[i:i + batch_size]))
            for i in range(0, len(windows), batch_size)]


def _train_epoch(model: BrainLM, batches: list[tuple[np.ndarray, np.ndarray]],
                 xyz: torch.Tensor,
                 optimizer: torch.optim.Optimizer, scheduler: Any, state: _TrainingState,
                 mask_ratio: float, masking: str, device: torch.device, bar: Any) -> float:
    """One pass over ``batches``; returns the mean training loss."""
    model.train()
    total = 0.0
    for batch, picks in batches:
        signal = torch.from_numpy(batch).to(device)
        noise = masking_noise(signal.shape, model.config.timepoint_patching_size, masking,
                              state.noise)
        with autocast(device):
            loss = model(signal, xyz[torch.from_numpy(picks).to(device)], noise=noise.to(device),
                         mask_ratio=mask_ratio).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * len(batch)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return total / sum(len(batch) for batch, _ in batches)


def _progress_bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="pretraining BrainLM", unit="step")


# ---------------------------------------------------------------------------------- checkpoint


def _save_checkpoint(path: Path, identity: dict[str, Any], epoch: int, history: list,
                     probe_log: list, model: BrainLM, optimizer: torch.optim.Optimizer,
                     scheduler: Any, state: _TrainingState, device: torch.device) -> None:
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "identity": identity,
        "epoch": epoch,
        "history": history,
        "probes": probe_log,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": state.state_dict(device),
    }
    write_torch(path, payload)


def _resume(path: Path, identity: dict[str, Any], model: BrainLM,
            optimizer: torch.optim.Optimizer, scheduler: Any, state: _TrainingState,
            device: torch.device) -> tuple[int, list, list]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read the pretraining checkpoint {path} ({exc}); delete it to "
                         "start over") from exc
    if payload.get("format") != _CHECKPOINT_FORMAT or payload.get("identity") != identity:
        changed = _differences(payload.get("identity", {}), identity)
        raise ValueError(
            f"{path} is a checkpoint of other pretraining settings (differs in: "
            f"{', '.join(changed) or 'format'}); choose another output folder or delete "
            f"{path.parent} to start over")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state.load_state_dict(payload["rng"], device)
    return int(payload["epoch"]), list(payload["history"]), list(payload.get("probes", []))


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


# ------------------------------------------------------------------------------------ held out


def _held_out_losses(cohort: Cohort, held_ids: list[str], windows: WindowPlan,
                     settings: PretrainPlan, device: torch.device,
                     models: dict[str, BrainLM]) -> dict[str, Any]:
    """Masked-patch loss of each model on the held-out subjects' deterministic windows.

    Every model sees the same windows and the same token shuffles and masks (a generator
    seeded with ``settings.seed``), in eval mode, so the losses compare like with like.
    """
    signal = np.concatenate([
        make_windows(robust_scale(cohort.timeseries[pid]), windows.length, windows.stride,
                     windows.max_windows)
        for pid in held_ids
    ])
    patch = next(iter(models.values())).config.timepoint_patching_size
    generator = torch.Generator().manual_seed(settings.seed)
    noise = masking_noise(signal.shape, patch, settings.masking, generator)
    xyz = torch.from_numpy(cohort.xyz).to(device)
    totals = dict.fromkeys(models, 0.0) | {"zero_prediction": 0.0}
    weight = 0.0
    with torch.no_grad():
        for start in range(0, len(signal), settings.batch_size):
            batch = torch.from_numpy(signal[start:start + settings.batch_size]).to(device)
            batch_noise = noise[start:start + settings.batch_size].to(device)
            masked = 0.0
            for name, model in models.items():
                with autocast(device):
                    out = model(batch, xyz.expand(len(batch), -1, -1), noise=batch_noise,
                                mask_ratio=settings.mask_ratio)
                masked = float(out.mask.sum())
                totals[name] += float(out.loss) * masked
            mask = out.mask.view(*out.pred.shape[:3], 1)
            target = batch.reshape(out.pred.shape)
            totals["zero_prediction"] += float((target.float() ** 2 * mask).sum()) / patch
            weight += masked
    losses = {name: total / weight for name, total in totals.items()}
    return {
        "subjects": held_ids,
        "n_windows": int(len(signal)),
        "mask_ratio": settings.mask_ratio,
        "noise_seed": settings.seed,
        "loss": losses,
        "trained_vs_random_init": losses["trained"] / losses["random_init"],
        "trained_vs_zero_prediction": losses["trained"] / losses["zero_prediction"],
    }
