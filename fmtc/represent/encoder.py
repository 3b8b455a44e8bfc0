"""The plan's frozen BrainLM encoder: a checkpoint folder, a Hub id, or simulated-pretrained.

``brainlm.source: simulated-pretrained`` names a small BrainLM (the architecture of
``pretrain.architecture``; every other config field as in the official ``old_13M`` config.json:
20-time-point patches, 65-tap token convolution, LayerNorm eps 1e-12) pretrained with the
masked-patch objective of BrainLM (Ortega Caro et al., ICLR 2024) on the simulator's pain-agnostic
cohort by :func:`fmtc.represent.pretrain.pretrain_brainlm`. It is built once, on first use, into
``outputs.models_dir/brainlm-simulated-<key>`` (``key``: hash of every setting that shapes it) and
read from there afterwards; nothing touches the network. Any other source goes to
:func:`fmtc.represent.loading.load_brainlm`, which fetches from the Hugging Face Hub only when the
source is a repo id rather than a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fmtc.plan import Plan, SimulationPlan
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.loading import (
    WEIGHT_FILES,
    BrainLMLoadError,
    check_not_a_file,
    load_brainlm,
    looks_like_path,
)
from fmtc.storage import check_writable, sha256_file, write_json

if TYPE_CHECKING:  # pragma: no cover
    from fmtc.represent.probe import ProbeSet

logger = logging.getLogger(__name__)

SIMULATED_SOURCE = "simulated-pretrained"
RANDOM_INIT_SOURCE = "random-init"
"""The simulated-pretrained encoder's architecture, randomly initialised (``pretrain.seed``):
the ablation that shows what pretraining adds."""
RANDOM_INIT_REGIONS = 424
"""``num_brain_voxels`` recorded in the random-init config (informational, as for A424)."""
#: Bump when the pretraining recipe changes in a way the settings do not show.
SIMULATED_RECIPE = 2
SETTINGS_FILE = "simulated_settings.json"
PROBE_SEED_OFFSET = 7919


def resolve_encoder(
    plan: Plan,
    device: torch.device,
    source: str | None = None,
    progress: bool = True,
) -> BrainLM:
    """Return the plan's frozen BrainLM encoder in eval mode on ``device``.

    Parameters
    ----------
    plan : Plan
        Supplies ``brainlm`` (source, revision), and for the simulated-pretrained encoder
        ``pretrain``, ``windows``, ``simulation`` and ``outputs``.
    device : torch.device
        Where the model lives (and where a first-use pretraining runs).
    source : str, optional
        Overrides ``plan.brainlm.source`` (the CLI's ``--brainlm``): ``"simulated-pretrained"``,
        a local checkpoint folder, or a Hugging Face repo id with optional subfolder.
    progress : bool, default=True
        Show progress bars if the simulated-pretrained encoder has to be built.

    Returns
    -------
    BrainLM
        ``model.source_info`` records ``source``, ``commit`` and ``weights_sha256``; for the
        simulated-pretrained encoder also its ``folder`` and pretraining ``settings``.
    """
    source = source or plan.brainlm.source
    if source == RANDOM_INIT_SOURCE:
        return random_init_encoder(plan).to(device).eval()
    if source != SIMULATED_SOURCE:
        return load_brainlm(source, plan.brainlm.revision, device=device,
                            sha256=plan.brainlm.sha256)
    folder = simulated_encoder_folder(plan)
    if not _is_complete(folder):
        build_simulated_encoder(plan, device, progress=progress)
    try:
        model = load_brainlm(folder, device=device)
    except BrainLMLoadError as error:  # a damaged cache is reported, then rebuilt, not trusted
        logger.warning("the cached simulated-pretrained encoder is damaged (%s); rebuilding it",
                       error)
        damaged = folder.with_name(f".{folder.name}.damaged-{os.getpid()}")
        folder.rename(damaged)
        shutil.rmtree(damaged, ignore_errors=True)
        build_simulated_encoder(plan, device, progress=progress)
        model = load_brainlm(folder, device=device)
    model.source_info.update(
        source=SIMULATED_SOURCE, folder=str(folder), settings=simulated_settings(plan)
    )
    return model


def encoder_fingerprint(plan: Plan, source: str | None = None) -> dict[str, str] | None:
    """Identify the encoder's weights and config without building or loading the model.

    Used to look up a feature cache before paying for an encoder. Hub sources are looked up in
    the local Hugging Face cache only (no network), at ``plan.brainlm.revision`` or ``main``.

    Parameters
    ----------
    plan : Plan
    source : str, optional
        As in :func:`resolve_encoder`.

    Returns
    -------
    dict or None
        ``{"weights_sha256", "config_sha256"}``, or ``None`` when the files are not on disk yet
        (the simulated encoder is not built, or the Hub files are not cached).
    """
    source = source or plan.brainlm.source
    if source == SIMULATED_SOURCE:
        folder = simulated_encoder_folder(plan)
        return _folder_fingerprint(folder) if _is_complete(folder) else None
    if source == RANDOM_INIT_SOURCE:  # built in a moment, never stored
        return model_fingerprint(random_init_encoder(plan))
    folder = Path(source).expanduser()
    check_not_a_file(source)
    if folder.is_dir():
        return _folder_fingerprint(folder)
    if looks_like_path(source):
        raise BrainLMLoadError(f"BrainLM checkpoint folder {source!r} does not exist; check the "
                               "path (--brainlm, plan key brainlm.source)")
    return _hub_cache_fingerprint(source, plan.brainlm.revision)


def random_init_encoder(plan: Plan) -> BrainLM:
    """The ``random-init`` encoder: the simulated-pretrained architecture, untrained.

    Initialised as :func:`~fmtc.represent.pretrain.pretrain_brainlm` initialises a model
    before its first step (seed ``pretrain.seed``), so "pretrained minus random-init" is
    exactly what pretraining changed. Deterministic: the same plan gives the same weights
    (``source_info["weights_sha256"]`` hashes every tensor), so its features are cached.
    """
    from fmtc.represent.pretrain import pretraining_config

    config = pretraining_config(plan.pretrain, plan.windows, RANDOM_INIT_REGIONS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.pretrain.seed)
        model = BrainLM(config)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    model.source_info = {"source": RANDOM_INIT_SOURCE, "revision": None, "commit": None,
                         "weights_sha256": digest.hexdigest(), "files": [],
                         "seed": plan.pretrain.seed,
                         "architecture": dataclasses.asdict(plan.pretrain.architecture)}
    return model.eval()


def model_fingerprint(model: BrainLM) -> dict[str, str]:
    """The :func:`encoder_fingerprint` of a model already in memory."""
    weights = model.source_info.get("weights_sha256")
    if not weights:
        raise ValueError(
            "this BrainLM has no source_info['weights_sha256'], so its features cannot be cached; "
            "load it with fmtc.represent.loading.load_brainlm or fmtc.represent.encoder."
            "resolve_encoder, or save it with save_brainlm first."
        )
    return {"weights_sha256": weights, "config_sha256": config_sha256(model.config)}


def config_sha256(config: BrainLMConfig) -> str:
    """Hash of a config's canonical content (formatting and key order do not matter)."""
    payload = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


# ------------------------------------------------------------------------ simulated-pretrained


def pretraining_cohort_settings(plan: Plan) -> SimulationPlan:
    """Simulation settings of the pain-agnostic pretraining cohort of ``plan``.

    Only the acquisition (``simulation.tr``) and ``pretrain``'s size, length and seed come from
    the plan; every label-, study- and covariate-related setting keeps its default (an
    unlabelled corpus has none of them), so cohorts simulated with other effects, studies or
    seeds share one encoder (:func:`fmtc.pipeline.simulation_sweep`; with
    ``pretrain.probe_points``, the probe cohort's size and length enter the encoder's key
    too).
    """
    return SimulationPlan(n_subjects=plan.pretrain.n_subjects, n_volumes=plan.pretrain.n_volumes,
                          tr=plan.simulation.tr, seed=plan.pretrain.seed)


def probe_cohort_settings(plan: Plan) -> SimulationPlan:
    """The labelled simulated cohort that probes the pretraining (``pretrain.probe_points``).

    A labelled cohort of the plan's size, length and TR at the default effects (effect size 1,
    one study shift of 0), drawn with seed ``pretrain.seed + PROBE_SEED_OFFSET``: other subjects
    than the cohorts the claims are measured on (their seeds are small numbers), and
    independent of the labelled cohort's seed and effect settings, so choosing another
    labelled cohort does not retrain the encoder.
    """
    return SimulationPlan(n_subjects=plan.simulation.n_subjects,
                          n_volumes=plan.simulation.n_volumes, tr=plan.simulation.tr,
                          seed=plan.pretrain.seed + PROBE_SEED_OFFSET)


def simulated_probe_set(plan: Plan, progress: bool = True) -> ProbeSet:
    """The plan's simulated probe cohort (:func:`probe_cohort_settings`), ready to probe."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.represent.probe import probe_set
    from fmtc.simulate.embedded import embedded_cohort

    folder = embedded_cohort(plan, probe_cohort_settings(plan), progress=progress)
    return probe_set(load_cohort(folder), plan.windows)


def simulated_settings(plan: Plan) -> dict[str, Any]:
    """Every setting that shapes the simulated-pretrained encoder (its cache key's content)."""
    from fmtc.simulate.generator import GENERATOR_VERSION

    return {
        "recipe": SIMULATED_RECIPE,
        "pretrain": dataclasses.asdict(plan.pretrain),
        "windows": dataclasses.asdict(plan.windows),
        "cohort": pretraining_cohort_settings(plan).identity(),
        "probe_cohort": (probe_cohort_settings(plan).identity()
                         if plan.pretrain.probe_points else None),
        "generator": GENERATOR_VERSION,
    }


def simulated_encoder_folder(plan: Plan) -> Path:
    """``outputs.models_dir/brainlm-simulated-<key>``, whether or not it is built yet."""
    payload = json.dumps(simulated_settings(plan), sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:12]
    return plan.path(plan.outputs.models_dir) / f"brainlm-simulated-{key}"


def build_simulated_encoder(plan: Plan, device: torch.device, progress: bool = True) -> Path:
    """Pretrain the simulated-pretrained encoder into its cache folder (resumable, atomic).

    Training runs in ``.<folder>.partial`` beside the destination, which is renamed when training
    has finished, so the destination is either complete or absent. An interrupted build resumes
    from the partial folder's last epoch on the next call.

    Returns
    -------
    Path
        The complete folder, readable by :func:`fmtc.represent.loading.load_brainlm`.
    """
    from fmtc.cohort.folder import load_cohort
    from fmtc.represent.pretrain import pretrain_brainlm
    from fmtc.simulate.embedded import embedded_cohort

    folder = simulated_encoder_folder(plan)
    if _is_complete(folder):
        return folder
    check_writable(folder.parent, "the pretrained encoder",
                   "Choose another outputs.models_dir in the plan")  # before pretraining
    cohort_dir = embedded_cohort(
        plan, pretraining_cohort_settings(plan), unlabelled=True, progress=progress
    )
    cohort = load_cohort(cohort_dir, require_label=False)
    probes = simulated_probe_set(plan, progress) if plan.pretrain.probe_points else None
    staging = folder.with_name(f".{folder.name}.partial")
    pretrain_brainlm(
        cohort, staging, plan.pretrain, init=None, device=device, windows=plan.windows,
        progress=progress, probes=probes,
    )
    write_json(staging / SETTINGS_FILE, simulated_settings(plan))  # last: marks completion
    try:
        os.replace(staging, folder)
    except OSError:  # another process finished first: keep its folder
        if not _is_complete(folder):
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _is_complete(folder: Path) -> bool:
    return (folder / SETTINGS_FILE).is_file() and (folder / "config.json").is_file()


# ------------------------------------------------------------------------------- fingerprints


def _folder_fingerprint(folder: Path) -> dict[str, str] | None:
    config_path = folder / "config.json"
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not config_path.is_file() or not weights:
        return None  # load_brainlm will explain what is missing
    return _files_fingerprint(config_path, weights[0])


def _hub_cache_fingerprint(source: str, revision: str | None) -> dict[str, str] | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of fmtc
        return None
    parts = source.strip("/").split("/")
    if len(parts) < 2:
        return None
    repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:])

    def cached(name: str) -> Path | None:
        filename = f"{subfolder}/{name}" if subfolder else name
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        return Path(found) if isinstance(found, str) else None

    config_path = cached("config.json")
    weights = [path for path in map(cached, WEIGHT_FILES) if path is not None]
    if config_path is None or not weights:
        return None
    return _files_fingerprint(config_path, weights[0])


def _files_fingerprint(config_path: Path, weights_path: Path) -> dict[str, str]:
    try:
        config = BrainLMConfig.from_json(config_path)
    except ValueError as error:
        raise BrainLMLoadError(f"{error}. A BrainLM checkpoint's config.json is written by "
                               "save_brainlm or comes with the checkpoint") from None
    return {"weights_sha256": sha256_file(weights_path), "config_sha256": config_sha256(config)}
