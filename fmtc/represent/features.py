"""BrainLM TS features of a cohort: every subject's deterministic windows, encoded once and cached.

The TS branch of FMM_TC (Fan et al., "Foundation-Model-Boosted Multimodal Learning for fMRI-based
Neuropathic Pain Drug Response Prediction", MICCAI 2025) reads the CLS embedding of a frozen BrainLM
(Ortega Caro et al., ICLR 2024) for each window of a subject's robust-scaled series; the plan's
``brainlm.readout`` may instead take the mean of the region tokens or their mean per atlas
network (:mod:`fmtc.represent.readout`). Encoding is the only expensive step that does not depend
on a fold, so the features are a result of kind ``features`` (:class:`BrainLMFeatures`,
:mod:`fmtc.lifecycle`) published in ``<features>/brainlm-<readout>-<key>/``, whose identity holds
everything the numbers depend on: the cohort's content hash and subjects, the encoder's identity,
the window spec, the token order (with its number of shuffles and seed), the read-out, the input
scaling and the arithmetic (float32 on the CPU, bf16 autocast on CUDA). Whether this call encoded
or read them back, the caller gets what is read from the published folder, so a cold and a warm
run hand identical bytes downstream.

Any region count works; the official BrainLM weights expect the A424 atlas's 424 regions in A424
order (``fmtc.acquire.atlas``), with MNI centroids in mm.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fmtc.cohort.folder import Cohort
from fmtc.device import autocast, describe_device
from fmtc.errors import CacheError
from fmtc.lifecycle import Result, materialise
from fmtc.plan import WindowPlan
from fmtc.preprocess.transforms import make_windows, scale_input, window_starts
from fmtc.represent.brainlm import BrainLM
from fmtc.represent.encoder import (
    EncoderSpec,
    encoder_identity,
    model_fingerprint,
    resolve_encoder,
)
from fmtc.represent.readout import readout_groups, token_readout
from fmtc.storage import atomic_open, write_json

logger = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"
ENCODER_FILE = "encoder.json"


@dataclass(frozen=True)
class FeatureSettings:
    """How windows become TS features (the plan's ``brainlm``, ``windows`` and scaling).

    Attributes
    ----------
    windows : WindowPlan
        Deterministic windows of each recording.
    readout : {"cls", "mean", "network-mean"}
        ``brainlm.readout``.
    token_order : {"identity", "shuffle-mean", "random_each_call"}
        ``brainlm.token_order``.
    n_shuffles : int
        Token orders of ``shuffle-mean`` / ``random_each_call``.
    shuffle_seed : int
        Seed of those orders (the plan's ``seed``).
    input_scaling : {"robust", "none"}
        ``protocol.input_scaling``.
    batch_size : int
        Windows per encoder call (does not change the numbers; not part of the identity).
    """

    windows: WindowPlan = field(default_factory=WindowPlan)
    readout: str = "cls"
    token_order: str = "identity"
    n_shuffles: int = 8
    shuffle_seed: int = 0
    input_scaling: str = "robust"
    batch_size: int = field(default=8, compare=False)

    def identity(self) -> dict[str, Any]:
        """The settings that change the numbers."""
        shuffled = self.token_order != "identity"
        return {"windows": self.windows, "readout": self.readout,
                "token_order": self.token_order,
                "n_shuffles": self.n_shuffles if shuffled else None,
                "shuffle_seed": self.shuffle_seed if shuffled else None,
                "input_scaling": self.input_scaling}


@dataclass(frozen=True)
class FeatureSet:
    """BrainLM TS features of a cohort (the read-out of :class:`FeatureSettings`).

    Attributes
    ----------
    subject_ids : list of str
        Participants, in the cohort's order.
    cls : ndarray of shape (N, W, F), float32
        The read-out of each subject's deterministic windows (``F``: ``hidden_size``, or
        ``hidden_size`` times the number of networks for ``network-mean``) (window order as in
        :func:`fmtc.preprocess.transforms.window_starts`). When recordings differ in length, ``W``
        is the largest window count and a subject's missing windows are NaN rows.
    n_windows : ndarray of shape (N,), int64
        Number of real windows of each subject (``cls[i, :n_windows[i]]``).
    encoder : dict
        The encoder's ``source_info`` (source, commit, ``weights_sha256``, ...) plus the token
        order, number of shuffles and seed, window spec and precision.
    folder : Path
        The published folder the arrays were read from.
    key : str
        The features' key (:mod:`fmtc.lifecycle`).
    reused : bool
        True when the features were read back (nothing was encoded).
    cls_draws : ndarray of shape (N, W, S, F) or None
        ``token_order: random_each_call`` only: the read-out under each of the ``S =
        n_shuffles`` seeded token orders (the same orders as ``shuffle-mean``), un-averaged;
        ``cls`` is their mean.
    """

    subject_ids: list[str]
    cls: np.ndarray
    n_windows: np.ndarray
    encoder: dict
    folder: Path
    key: str = ""
    reused: bool = False
    cls_draws: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class BrainLMFeatures(Result):
    """The TS features of every window of a cohort (see the module docstring).

    Parameters
    ----------
    cohort : Cohort
    settings : FeatureSettings
    encoder : EncoderSpec
        Which encoder; ``encoder.store.features`` is where the features are published.
    device : torch.device, optional
        Where to encode (default: the CPU; CUDA encodes in bf16 autocast, another result).
    model : BrainLM, optional
        An encoder already loaded (its weights and config hashes identify it); default: the
        encoder of ``encoder``, built or loaded only when the features are computed.
    progress : bool
        Show a progress bar while encoding.
    """

    kind: ClassVar[str] = "features"
    place: ClassVar[str] = "outputs.features_dir"

    cohort: Cohort
    settings: FeatureSettings
    encoder: EncoderSpec
    device: Any = None
    model: BrainLM | None = None
    progress: bool = field(default=False, compare=False)

    @property
    def _device(self) -> torch.device:
        if self.model is not None:
            return next(self.model.parameters()).device
        return torch.device("cpu") if self.device is None else torch.device(self.device)

    def config(self) -> dict[str, Any]:
        return {**self.settings.identity(), "precision": _precision(self._device)}

    def inputs(self) -> dict[str, Any]:
        encoder = (model_fingerprint(self.model) if self.model is not None
                   else encoder_identity(self.encoder, self._device))
        return {"cohort": self.cohort.content_hash,
                "subjects": hashlib.sha256("\n".join(self.cohort.subject_ids).encode())
                .hexdigest(),
                "encoder": encoder}

    def default_folder(self) -> Path:
        readout = self.settings.readout
        return self.encoder.store.features / f"brainlm-{readout}-{self.key[:12]}"

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        device = self._device
        encoder = self.model if self.model is not None else resolve_encoder(
            self.encoder, device, progress=self.progress)
        cls, n_windows, draws = _encode_cohort(self.cohort, self.settings, encoder, device,
                                               self.progress)
        extra = {} if draws is None else {"cls_draws": draws}
        with atomic_open(staging / FEATURES_FILE, "wb") as handle:
            np.savez(handle, cls=cls, n_windows=n_windows,
                     subject_ids=np.array(self.cohort.subject_ids, dtype=str), **extra)
        write_json(staging / ENCODER_FILE, _encoder_record(encoder, self.settings, device))

    def load(self, folder: Path, record: dict[str, Any]) -> FeatureSet:
        return dataclasses.replace(read_features(folder), key=record["key"])


def _check_device(encoder: BrainLM | None, device: torch.device | None) -> torch.device | None:
    if encoder is None:
        return device
    where = next(encoder.parameters()).device
    if device is not None and torch.device(device) != where:
        raise ValueError(f"the encoder is on {where} but device={device} was asked for; move it "
                         "with encoder.to(device) or leave device out")
    return where


def cohort_features(cohort: Cohort, settings: FeatureSettings, encoder: EncoderSpec, *,
                    model: BrainLM | None = None, device: torch.device | None = None,
                    progress: bool = False) -> FeatureSet:
    """Return the BrainLM TS features of every subject's windows, read back when published.

    Each series is scaled (:func:`~fmtc.preprocess.transforms.scale_input`, ``input_scaling``)
    and cut with :func:`~fmtc.preprocess.transforms.make_windows` (``settings.windows``); windows
    are encoded in batches of ``settings.batch_size`` without gradients. ``token_order``
    ``"identity"`` feeds tokens in ROI-major order; ``"shuffle-mean"`` averages the read-out over
    ``n_shuffles`` token orders drawn from a generator seeded with ``shuffle_seed``, the same
    orders for every window, so a window's features do not depend on its batch;
    ``"random_each_call"`` keeps the features of those same orders un-averaged
    (``FeatureSet.cls_draws``), for models that draw one per call as the authors' encoder does.

    Parameters
    ----------
    cohort : Cohort
        Any region count; pretrained official weights expect A424 regions in A424 order.
    settings : FeatureSettings
    encoder : EncoderSpec
        The encoder, and where results are published (``encoder.store``).
    model : BrainLM, optional
        An encoder already loaded (replaces ``encoder``'s source; its hashes identify it).
    device : torch.device, optional
        Where to encode. Default: ``model``'s device, else the CPU.
    progress : bool
        Show a progress bar while encoding.

    Returns
    -------
    FeatureSet
        Read back from the published folder, whether this call filled it or found it.
    """
    device = _check_device(model, device)
    found = materialise(BrainLMFeatures(cohort, settings, encoder, device, model, progress))
    return dataclasses.replace(found.value, reused=found.reused)


def read_features(folder: str | Path) -> FeatureSet:
    """Read a published feature folder (``features.npz`` and ``encoder.json``).

    Raises
    ------
    CacheError
        If either file is unreadable, truncated, foreign or inconsistent (the message names the
        file); :func:`cohort_features` then rebuilds the folder.
    """
    folder = Path(folder)
    path = folder / FEATURES_FILE
    try:
        encoder = json.loads((folder / ENCODER_FILE).read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as data:
            cls, n_windows = np.asarray(data["cls"]), np.asarray(data["n_windows"])
            draws = np.asarray(data["cls_draws"]) if "cls_draws" in data.files else None
            subject_ids = [str(pid) for pid in data["subject_ids"]]
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        # numpy's own message may suggest allow_pickle=True: never for a cache file.
        reason = ("it holds pickled objects, which are never loaded" if "pickle" in str(error)
                  else f"{type(error).__name__}: {error}")
        raise CacheError(f"feature cache {path} cannot be read ({reason}); delete {folder} to "
                         "rebuild it", path=path, reason=reason) from None
    if cls.ndim != 3 or len(cls) != len(subject_ids) or n_windows.shape != (len(subject_ids),):
        reason = (f"it holds arrays of shapes {cls.shape} and {n_windows.shape} for "
                  f"{len(subject_ids)} subjects")
        raise CacheError(f"feature cache {path}: {reason}; delete {folder} to rebuild it",
                         path=path, reason=reason)
    if draws is not None and (draws.ndim != 4 or draws.shape[:2] != cls.shape[:2]):
        reason = f"its token-order draws have shape {draws.shape}, its features {cls.shape}"
        raise CacheError(f"feature cache {path}: {reason}; delete {folder} to rebuild it",
                         path=path, reason=reason)
    return FeatureSet(subject_ids=subject_ids, cls=cls, n_windows=n_windows, encoder=encoder,
                      folder=folder, cls_draws=draws)


# ------------------------------------------------------------------------------------ encoding


def _check_device(encoder: BrainLM | None, device: torch.device | None) -> torch.device:
    if encoder is None:
        return device if device is not None else torch.device("cpu")
    where = next(encoder.parameters()).device
    if device is not None and torch.device(device) != where:
        raise ValueError(f"the encoder is on {where} but device={device} was asked for; move it "
                         "with encoder.to(device) or leave device out")
    return where


def _precision(device: torch.device) -> str:
    return "bfloat16-autocast" if device.type == "cuda" else "float32"


def _encode_cohort(cohort: Cohort, settings: FeatureSettings, encoder: BrainLM,
                   device: torch.device,
                   progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Encode all windows of all subjects in batches; NaN rows pad short window sets.

    Returns the features, the window counts and (``random_each_call``) the per-order draws.
    """
    spec = settings.windows
    n_windows = np.array([
        len(window_starts(cohort.timeseries[pid].shape[0], spec.length, spec.stride,
                          spec.max_windows))
        for pid in cohort.subject_ids
    ], dtype=np.int64)
    groups = readout_groups(cohort, settings.readout)
    width = encoder.config.hidden_size * (1 if groups is None else int(groups.max()) + 1)
    cls = np.full((len(n_windows), int(n_windows.max()), width), np.nan, dtype=np.float32)
    each_call = settings.token_order == "random_each_call"
    draws = (np.full((*cls.shape[:2], settings.n_shuffles, width), np.nan, dtype=np.float32)
             if each_call else None)
    xyz = torch.from_numpy(cohort.xyz).to(device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(n_windows.sum()), desc=f"BrainLM {settings.readout} features",
                   unit="window")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), autocast(device):
            for rows, cols, batch in _batches(cohort, settings, settings.batch_size):
                signal = torch.from_numpy(batch).to(device)
                if each_call:
                    batch_xyz = xyz.expand(len(signal), -1, -1)
                    for k, latent in enumerate(_shuffled_latents(encoder, signal, batch_xyz,
                                                                 settings)):
                        draws[rows, cols, k] = token_readout(latent, settings.readout,
                                                             groups).float().cpu().numpy()
                    cls[rows, cols] = draws[rows, cols].mean(axis=1)
                    if bar is not None:
                        bar.update(len(batch))
                    continue
                latent = _encode_batch(encoder, signal, xyz, settings)
                cls[rows, cols] = token_readout(latent, settings.readout,
                                                groups).float().cpu().numpy()
                if bar is not None:
                    bar.update(len(batch))
    finally:
        encoder.train(was_training)
        if bar is not None:
            bar.close()
    return cls, n_windows, draws


def _batches(cohort: Cohort, settings: FeatureSettings,
             batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(subject rows, window columns, windows [B, R, length])``, one subject at a time."""
    spec = settings.windows
    rows: list[int] = []
    cols: list[int] = []
    windows: list[np.ndarray] = []
    for row, pid in enumerate(cohort.subject_ids):
        scaled = scale_input(cohort.timeseries[pid], settings.input_scaling)
        for col, window in enumerate(make_windows(scaled, spec.length, spec.stride,
                                                  spec.max_windows)):
            rows.append(row)
            cols.append(col)
            windows.append(window)
            if len(windows) == batch_size:
                yield np.array(rows), np.array(cols), np.stack(windows)
                rows, cols, windows = [], [], []
    if windows:
        yield np.array(rows), np.array(cols), np.stack(windows)


def window_features(encoder: BrainLM, signal: torch.Tensor, xyz: torch.Tensor,
                    settings: FeatureSettings, groups: np.ndarray | None = None) -> torch.Tensor:
    """The TS feature of each window (``settings``), differentiable with respect to ``signal``.

    The same arithmetic as the feature cache (:func:`cohort_features`): the encoder's output
    under ``settings.token_order`` (``random_each_call``: the mean over its seeded orders,
    which is what the cache's ``cls`` holds), then ``settings.readout``. No ``no_grad``
    and no autocast: attribution methods (:mod:`fmtc.interpret`) differentiate through it.

    Parameters
    ----------
    encoder : BrainLM
    signal : Tensor, shape (B, R, T)
        Scaled windows (:func:`~fmtc.preprocess.transforms.make_windows`).
    xyz : Tensor, shape (R, 3)
        Region centroids (MNI mm).
    settings : FeatureSettings
        Read-out, token order and its seed.
    groups : ndarray of shape (R,), optional
        Network number of each region (:func:`~fmtc.represent.readout.readout_groups`),
        required for ``network-mean``.

    Returns
    -------
    Tensor, shape (B, F)
    """
    latent = _encode_batch(encoder, signal, xyz, settings)
    return token_readout(latent, settings.readout, groups)


def _encode_batch(encoder: BrainLM, signal: torch.Tensor, xyz: torch.Tensor,
                  settings: FeatureSettings) -> torch.Tensor:
    """The encoder's final-LayerNorm output ``[B, 1 + tokens, H]`` in ROI-major token order."""
    batch_xyz = xyz.expand(len(signal), -1, -1)
    if settings.token_order == "identity":
        return encoder.encode_tokens(signal, batch_xyz)
    total = 0
    for latent in _shuffled_latents(encoder, signal, batch_xyz, settings):
        total = total + latent
    return total / settings.n_shuffles


def _shuffled_latents(encoder: BrainLM, signal: torch.Tensor, batch_xyz: torch.Tensor,
                      settings: FeatureSettings) -> Iterator[torch.Tensor]:
    """The encoder output under each of the ``n_shuffles`` seeded token orders, ROI-major."""
    # Every window gets the same n_shuffles orders (so its features do not depend on its batch);
    # tokens are put back in ROI-major order (before averaging, for shuffle-mean).
    n_tokens = signal.shape[1] * (signal.shape[2] // encoder.config.timepoint_patching_size)
    generator = torch.Generator().manual_seed(settings.shuffle_seed)
    for _ in range(settings.n_shuffles):
        noise = torch.rand(1, n_tokens, generator=generator).expand(len(signal), -1)
        latent, _, ids_restore = encoder.vit(signal, batch_xyz, noise.to(signal.device), 0.0)
        order = ids_restore.unsqueeze(-1).expand(-1, -1, latent.shape[-1])
        tokens = torch.gather(latent[:, 1:], 1, order)
        yield torch.cat([latent[:, :1], tokens], dim=1)


# --------------------------------------------------------------------------------------- records


def _encoder_record(encoder: BrainLM, settings: FeatureSettings,
                    device: torch.device) -> dict[str, Any]:
    fingerprint = model_fingerprint(encoder)
    return {**encoder.source_info, "config_sha256": fingerprint["config_sha256"],
            "hidden_size": encoder.config.hidden_size,
            **{k: v for k, v in settings.identity().items() if k != "windows"},
            "windows": dataclasses.asdict(settings.windows), "precision": _precision(device),
            "computed_on": describe_device(device)}


def token_order_spread(cls_draws: np.ndarray, n_windows: np.ndarray) -> dict[str, float]:
    """How much a window's TS feature moves with the token order, against subjects' spread.

    Parameters
    ----------
    cls_draws : ndarray of shape (N, W, S, F)
        The features of each window under ``S`` token orders (``FeatureSet.cls_draws``,
        ``brainlm.token_order: random_each_call``); NaN rows beyond ``n_windows``.
    n_windows : ndarray of shape (N,)
        Real windows of each subject.

    Returns
    -------
    dict
        ``shuffle_to_subject_variance``: the mean over features of the variance across token
        orders within a window, divided by the variance across subjects of the subject means
        (order-averaged); 0 when the order does not matter, about 1 when one draw moves a feature
        as much as the difference between two subjects. ``draw_correlation``: the mean, over
        features and pairs of orders, of the correlation across subjects of two single-order
        subject means (1: every order ranks subjects alike). ``n_orders``: ``S``.
    """
    draws = np.asarray(cls_draws, dtype=np.float64)
    if draws.ndim != 4:
        raise ValueError(f"expected token-order draws of shape (N, W, S, F), got {draws.shape}")
    n, w, s, f = draws.shape
    if s < 2:
        raise ValueError(f"the spread of token orders needs at least 2 orders, got {s}")
    valid = np.arange(w)[None, :] < np.asarray(n_windows)[:, None]
    within = draws[valid].var(axis=1).mean(axis=0)  # (F,): across orders, mean over windows
    per_order = np.stack([np.nanmean(np.where(valid[:, :, None], draws[:, :, k], np.nan), axis=1)
                          for k in range(s)], axis=1)  # (N, S, F): subject mean per order
    between = per_order.mean(axis=1).var(axis=0)  # (F,)
    keep = between > 0
    ratio = float(np.mean(within[keep] / between[keep])) if keep.any() else float("nan")
    correlations = []
    centred = per_order - per_order.mean(axis=0, keepdims=True)
    for a in range(s):
        for b in range(a + 1, s):
            x, y = centred[:, a], centred[:, b]
            denominator = np.sqrt((x ** 2).sum(0) * (y ** 2).sum(0))
            ok = denominator > 0
            correlations.append(np.mean((x * y).sum(0)[ok] / denominator[ok]))
    return {"shuffle_to_subject_variance": ratio,
            "draw_correlation": float(np.mean(correlations)), "n_orders": s}
