"""BrainLM TS features of a cohort: every subject's deterministic windows, encoded once and cached.

The TS branch of FMM_TC (Fan et al., "Foundation-Model-Boosted Multimodal Learning for fMRI-based
Neuropathic Pain Drug Response Prediction", MICCAI 2025) reads the CLS embedding of a frozen BrainLM
(Ortega Caro et al., ICLR 2024) for each window of a subject's robust-scaled series; the plan's
``brainlm.readout`` may instead take the mean of the region tokens or their mean per atlas
network (:mod:`fmtc.represent.readout`). Encoding is the
only expensive step that does not depend on a fold, so :func:`cohort_features` stores its result in
``outputs.features_dir`` under a key made of everything the numbers depend on: the cohort's content
hash and subjects, the encoder's weights and config hashes, the window spec, the token order (with
its number of shuffles and seed), the read-out and the arithmetic (float32 on the CPU, bf16
autocast on CUDA).
The cache is an ``.npz`` plus a ``.json`` of its key, each written atomically, the JSON last. A run
that fills the cache returns what it reads back from it, so a cold and a warm run hand identical
bytes downstream.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmtc.cohort.folder import Cohort
from fmtc.device import autocast, describe_device
from fmtc.errors import CacheError
from fmtc.plan import Plan
from fmtc.preprocess.transforms import make_windows, scale_input, window_starts
from fmtc.represent.brainlm import BrainLM
from fmtc.represent.encoder import encoder_fingerprint, model_fingerprint, resolve_encoder
from fmtc.represent.readout import readout_groups, token_readout
from fmtc.storage import atomic_open, check_writable, write_json

logger = logging.getLogger(__name__)

#: Bump when the stored arrays change meaning; old cache files are then simply not found.
FEATURES_FORMAT = 1


@dataclass(frozen=True)
class FeatureSet:
    """BrainLM TS features of a cohort (the plan's read-out), as read from the feature cache.

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
        order, number of shuffles and seed, window spec, precision and the cache key's hash.
    cache_path : Path
        The ``.npz`` file the arrays were read from.
    cache_hit : bool
        True when :func:`cohort_features` found a valid cache entry (nothing was encoded).
    cls_draws : ndarray of shape (N, W, S, F) or None
        ``token_order: random_each_call`` only: the read-out under each of the ``S =
        n_shuffles`` seeded token orders (the same orders as ``shuffle-mean``), un-averaged;
        ``cls`` is their mean.
    """

    subject_ids: list[str]
    cls: np.ndarray
    n_windows: np.ndarray
    encoder: dict
    cache_path: Path
    cache_hit: bool = False
    cls_draws: np.ndarray | None = None


def cohort_features(
    cohort: Cohort,
    plan: Plan,
    encoder: BrainLM | None = None,
    device: torch.device | None = None,
    source: str | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Return the BrainLM TS features of every subject's windows, from the cache when possible.

    Each series is scaled with :func:`~fmtc.preprocess.transforms.robust_scale` and cut with
    :func:`~fmtc.preprocess.transforms.make_windows` (``plan.windows``); windows are encoded in
    batches of ``plan.brainlm.batch_size`` without gradients. ``plan.brainlm.token_order``
    ``"identity"`` feeds tokens in ROI-major order; ``"shuffle-mean"`` averages the CLS over
    ``plan.brainlm.n_shuffles`` token orders drawn from a generator seeded with ``plan.seed``, the
    same orders for every window, so a window's features do not depend on its batch;
    ``"random_each_call"`` keeps the features of those same orders un-averaged
    (``FeatureSet.cls_draws``), for models that draw one per call as the authors' encoder does.
    ``plan.protocol.input_scaling: none`` encodes windows of the raw recording instead of the
    robust-scaled one (the authors' ``Raw_Recording``).
    ``plan.brainlm.readout`` picks the feature (:func:`fmtc.represent.readout.token_readout`).

    Parameters
    ----------
    cohort : Cohort
        Any region count; pretrained official weights expect A424 regions in A424 order.
    plan : Plan
        Supplies ``windows``, ``brainlm``, ``seed`` and ``outputs.features_dir``.
    encoder : BrainLM, optional
        A loaded encoder (its ``source_info['weights_sha256']`` enters the cache key). By default
        the plan's encoder (:func:`fmtc.represent.encoder.resolve_encoder`), built or loaded only
        on a cache miss.
    device : torch.device, optional
        Where to encode. Default: the encoder's device, else the CPU.
    source : str, optional
        Overrides ``plan.brainlm.source`` when ``encoder`` is None (the CLI's ``--brainlm``).
    progress : bool, default=True
        Show a progress bar while encoding.

    Returns
    -------
    FeatureSet
        Read back from the cache file, whether this call filled it or found it.
    """
    device = _check_device(encoder, device)
    source = source or plan.brainlm.source
    check_writable(plan.path(plan.outputs.features_dir), "the feature cache",
                   "Choose another outputs.features_dir in the plan")  # before any encoding
    found = cached_feature_path(cohort, plan, encoder=encoder, device=device, source=source)
    if found is not None:
        try:
            return dataclasses.replace(read_features(found), cache_hit=True)
        except CacheError as error:  # never trusted: reported, then rebuilt in place
            logger.warning("feature cache %s is damaged (%s); rebuilding it", error.path,
                           error.reason)
    if encoder is not None:
        key = feature_key(cohort, plan, model_fingerprint(encoder), device)
    else:
        encoder = resolve_encoder(plan, device, source, progress=progress)
        key = feature_key(cohort, plan, model_fingerprint(encoder), device)
        if is_cached(plan, key) and found is None:  # written meanwhile by another process
            return dataclasses.replace(read_features(cache_path(plan, key)), cache_hit=True)
    cls, n_windows, draws = _encode_cohort(cohort, plan, encoder, device, progress)
    record = _encoder_record(encoder, plan, key, device)
    _write_cache(plan, key, cohort.subject_ids, cls, n_windows, record, draws)
    return read_features(cache_path(plan, key))


def cached_feature_path(
    cohort: Cohort,
    plan: Plan,
    encoder: BrainLM | None = None,
    device: torch.device | None = None,
    source: str | None = None,
) -> Path | None:
    """The cache file :func:`cohort_features` would read, or None on a cache miss.

    Only the key is computed: hashes of the cohort and of the encoder's files. No model is
    built, loaded or pretrained (an encoder whose files are not on disk yet is a miss).

    Parameters
    ----------
    cohort, plan, encoder, device, source
        As in :func:`cohort_features`.
    """
    device = _check_device(encoder, device)
    fingerprint = (model_fingerprint(encoder) if encoder is not None
                   else encoder_fingerprint(plan, source or plan.brainlm.source))
    if fingerprint is None:
        return None
    key = feature_key(cohort, plan, fingerprint, device)
    return cache_path(plan, key) if is_cached(plan, key) else None


def feature_key(cohort: Cohort, plan: Plan, fingerprint: dict[str, str],
                device: torch.device) -> dict[str, Any]:
    """Everything the CLS features depend on (the cache key, as stored in the JSON).

    Parameters
    ----------
    cohort : Cohort
    plan : Plan
    fingerprint : dict
        ``weights_sha256`` and ``config_sha256`` of the encoder
        (:func:`fmtc.represent.encoder.encoder_fingerprint`).
    device : torch.device
        Only its type matters: CUDA encodes in bf16 autocast, the CPU in float32.
    """
    shuffled = plan.brainlm.token_order != "identity"
    scaling = plan.protocol.input_scaling
    return {
        "format": FEATURES_FORMAT,
        "cohort_content_hash": cohort.content_hash,
        "subjects_sha256": hashlib.sha256("\n".join(cohort.subject_ids).encode()).hexdigest(),
        "weights_sha256": fingerprint["weights_sha256"],
        "config_sha256": fingerprint["config_sha256"],
        "windows": dataclasses.asdict(plan.windows),
        "token_order": plan.brainlm.token_order,
        "readout": plan.brainlm.readout,
        "n_shuffles": plan.brainlm.n_shuffles if shuffled else None,
        "shuffle_seed": plan.seed if shuffled else None,
        "precision": _precision(device),
        # absent at the default: the keys of robust-scaled features are unchanged
        **({} if scaling == "robust" else {"input_scaling": scaling}),
    }


def cache_path(plan: Plan, key: dict[str, Any]) -> Path:
    """The ``.npz`` file of a key (its ``.json`` lies beside it)."""
    return plan.path(plan.outputs.features_dir) / f"brainlm-cls-{_key_hash(key)[:16]}.npz"


def is_cached(plan: Plan, key: dict[str, Any]) -> bool:
    """True when both cache files of ``key`` exist and the JSON holds exactly this key."""
    path = cache_path(plan, key)
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError):
        return False


def read_features(path: str | Path) -> FeatureSet:
    """Read a feature cache file (``.npz``) and its ``.json``, verifying that they agree.

    Raises
    ------
    CacheError
        If either file is unreadable, truncated, foreign or does not match the other (the
        message names the file; :func:`cohort_features` then rebuilds the cache).
    """
    path = Path(path)
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as data:
            stored = str(data["key_sha256"])
            cls, n_windows = np.asarray(data["cls"]), np.asarray(data["n_windows"])
            draws = np.asarray(data["cls_draws"]) if "cls_draws" in data.files else None
            subject_ids = [str(pid) for pid in data["subject_ids"]]
        expected, encoder = meta["key_sha256"], meta["encoder"]
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        # numpy's own message may suggest allow_pickle=True: never for a cache file.
        reason = ("it holds pickled objects, which are never loaded" if "pickle" in str(error)
                  else f"{type(error).__name__}: {error}")
        raise CacheError(f"feature cache {path} cannot be read ({reason}); delete it and its "
                         ".json to rebuild it", path=path, reason=reason) from None
    if stored != expected:
        reason = f"it does not match {meta_path.name} (an interrupted or concurrent write)"
        raise CacheError(f"feature cache {path}: {reason}; delete both files to rebuild them",
                         path=path, reason=reason)
    if cls.ndim != 3 or len(cls) != len(subject_ids) or n_windows.shape != (len(subject_ids),):
        reason = (f"it holds arrays of shapes {cls.shape} and {n_windows.shape} for "
                  f"{len(subject_ids)} subjects")
        raise CacheError(f"feature cache {path}: {reason}; delete it to rebuild it", path=path,
                         reason=reason)
    if draws is not None and (draws.ndim != 4 or draws.shape[:2] != cls.shape[:2]):
        reason = f"its token-order draws have shape {draws.shape}, its features {cls.shape}"
        raise CacheError(f"feature cache {path}: {reason}; delete it to rebuild it", path=path,
                         reason=reason)
    return FeatureSet(subject_ids=subject_ids, cls=cls, n_windows=n_windows,
                      encoder=encoder, cache_path=path, cls_draws=draws)


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


def _encode_cohort(cohort: Cohort, plan: Plan, encoder: BrainLM, device: torch.device,
                   progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Encode all windows of all subjects in batches; NaN rows pad short window sets.

    Returns the features, the window counts and (``random_each_call``) the per-order draws.
    """
    spec = plan.windows
    n_windows = np.array([
        len(window_starts(cohort.timeseries[pid].shape[0], spec.length, spec.stride,
                          spec.max_windows))
        for pid in cohort.subject_ids
    ], dtype=np.int64)
    groups = readout_groups(cohort, plan.brainlm.readout)
    width = encoder.config.hidden_size * (1 if groups is None else int(groups.max()) + 1)
    cls = np.full((len(n_windows), int(n_windows.max()), width), np.nan, dtype=np.float32)
    each_call = plan.brainlm.token_order == "random_each_call"
    draws = (np.full((*cls.shape[:2], plan.brainlm.n_shuffles, width), np.nan, dtype=np.float32)
             if each_call else None)
    xyz = torch.from_numpy(cohort.xyz).to(device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(n_windows.sum()), desc=f"BrainLM {plan.brainlm.readout} features",
                   unit="window")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), autocast(device):
            for rows, cols, batch in _batches(cohort, plan, plan.brainlm.batch_size):
                signal = torch.from_numpy(batch).to(device)
                if each_call:
                    batch_xyz = xyz.expand(len(signal), -1, -1)
                    for k, latent in enumerate(_shuffled_latents(encoder, signal, batch_xyz,
                                                                 plan)):
                        draws[rows, cols, k] = token_readout(latent, plan.brainlm.readout,
                                                             groups).float().cpu().numpy()
                    cls[rows, cols] = draws[rows, cols].mean(axis=1)
                    if bar is not None:
                        bar.update(len(batch))
                    continue
                latent = _encode_batch(encoder, signal, xyz, plan)
                cls[rows, cols] = token_readout(latent, plan.brainlm.readout,
                                                groups).float().cpu().numpy()
                if bar is not None:
                    bar.update(len(batch))
    finally:
        encoder.train(was_training)
        if bar is not None:
            bar.close()
    return cls, n_windows, draws


def _batches(cohort: Cohort, plan: Plan,
             batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(subject rows, window columns, windows [B, R, length])``, one subject at a time."""
    spec = plan.windows
    rows: list[int] = []
    cols: list[int] = []
    windows: list[np.ndarray] = []
    for row, pid in enumerate(cohort.subject_ids):
        scaled = scale_input(cohort.timeseries[pid], plan.protocol.input_scaling)
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


def window_features(encoder: BrainLM, signal: torch.Tensor, xyz: torch.Tensor, plan: Plan,
                    groups: np.ndarray | None = None) -> torch.Tensor:
    """The plan's TS feature of each window, differentiable with respect to ``signal``.

    The same arithmetic as the feature cache (:func:`cohort_features`): the encoder's output
    under ``plan.brainlm.token_order`` (``random_each_call``: the mean over its seeded orders,
    which is what the cache's ``cls`` holds), then ``plan.brainlm.readout``. No ``no_grad``
    and no autocast: attribution methods (:mod:`fmtc.interpret`) differentiate through it.

    Parameters
    ----------
    encoder : BrainLM
    signal : Tensor, shape (B, R, T)
        Scaled windows (:func:`~fmtc.preprocess.transforms.make_windows`).
    xyz : Tensor, shape (R, 3)
        Region centroids (MNI mm).
    plan : Plan
        Supplies ``brainlm`` and ``seed``.
    groups : ndarray of shape (R,), optional
        Network number of each region (:func:`~fmtc.represent.readout.readout_groups`),
        required for ``network-mean``.

    Returns
    -------
    Tensor, shape (B, F)
    """
    latent = _encode_batch(encoder, signal, xyz, plan)
    return token_readout(latent, plan.brainlm.readout, groups)


def _encode_batch(encoder: BrainLM, signal: torch.Tensor, xyz: torch.Tensor,
                  plan: Plan) -> torch.Tensor:
    """The encoder's final-LayerNorm output ``[B, 1 + tokens, H]`` in ROI-major token order."""
    batch_xyz = xyz.expand(len(signal), -1, -1)
    if plan.brainlm.token_order == "identity":
        return encoder.encode_tokens(signal, batch_xyz)
    total = 0
    for latent in _shuffled_latents(encoder, signal, batch_xyz, plan):
        total = total + latent
    return total / plan.brainlm.n_shuffles


def _shuffled_latents(encoder: BrainLM, signal: torch.Tensor, batch_xyz: torch.Tensor,
                      plan: Plan) -> Iterator[torch.Tensor]:
    """The encoder output under each of the ``n_shuffles`` seeded token orders, ROI-major."""
    # Every window gets the same n_shuffles orders (so its features do not depend on its batch);
    # tokens are put back in ROI-major order (before averaging, for shuffle-mean).
    n_tokens = signal.shape[1] * (signal.shape[2] // encoder.config.timepoint_patching_size)
    generator = torch.Generator().manual_seed(plan.seed)
    for _ in range(plan.brainlm.n_shuffles):
        noise = torch.rand(1, n_tokens, generator=generator).expand(len(signal), -1)
        latent, _, ids_restore = encoder.vit(signal, batch_xyz, noise.to(signal.device), 0.0)
        order = ids_restore.unsqueeze(-1).expand(-1, -1, latent.shape[-1])
        tokens = torch.gather(latent[:, 1:], 1, order)
        yield torch.cat([latent[:, :1], tokens], dim=1)


# --------------------------------------------------------------------------------------- cache


def _key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _encoder_record(encoder: BrainLM, plan: Plan, key: dict[str, Any],
                    device: torch.device) -> dict[str, Any]:
    return {
        **encoder.source_info,
        "config_sha256": key["config_sha256"],
        "hidden_size": encoder.config.hidden_size,
        "token_order": key["token_order"],
        "readout": key["readout"],
        "n_shuffles": key["n_shuffles"],
        "shuffle_seed": key["shuffle_seed"],
        "windows": key["windows"],
        "precision": key["precision"],
        "cache_key_sha256": _key_hash(key),
        "computed_on": describe_device(device),
    }


def _write_cache(plan: Plan, key: dict[str, Any], subject_ids: list[str], cls: np.ndarray,
                 n_windows: np.ndarray, record: dict[str, Any],
                 draws: np.ndarray | None = None) -> None:
    """Write the arrays, then the JSON that makes them a cache hit; each file atomically."""
    path = cache_path(plan, key)
    key_sha = _key_hash(key)
    extra = {} if draws is None else {"cls_draws": draws}
    with atomic_open(path, "wb") as handle:
        np.savez(handle, cls=cls, n_windows=n_windows, key_sha256=np.array(key_sha),
                 subject_ids=np.array(subject_ids, dtype=str), **extra)
    write_json(path.with_suffix(".json"), {
        "key": key, "key_sha256": key_sha, "encoder": record,
        "shape": list(cls.shape), "subject_ids": subject_ids,
    })


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
