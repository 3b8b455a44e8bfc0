"""The frozen BrainLM encoder: a checkpoint folder, a Hub id, simulated-pretrained or random-init.

``brainlm.source: simulated-pretrained`` names a small BrainLM (the architecture of
``pretrain.architecture``; every other config field as in the official ``old_13M`` config.json:
20-time-point patches, 65-tap token convolution, LayerNorm eps 1e-12) pretrained with the
masked-patch objective of BrainLM (Ortega Caro et al., ICLR 2024) on the simulator's pain-agnostic
cohort by :func:`fmtc.represent.pretrain.pretrain_brainlm`. It is a result of kind ``encoder``
(:class:`PretrainedEncoder`, :mod:`fmtc.lifecycle`): built once, on first use, into
``<models>/brainlm-simulated-<key>``, resumable, and read back afterwards; nothing touches the
network. ``random-init`` is the same architecture untrained. Any other source goes to
:func:`fmtc.represent.loading.load_brainlm`, which fetches from the Hugging Face Hub only when the
source is a repo id rather than a folder.

Every function here receives an :class:`EncoderSpec` (the plan's ``brainlm``, ``pretrain`` and
``windows`` sections and where results live), never the whole plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from fmtc.lifecycle import Result, Store, materialise
from fmtc.plan import PretrainPlan, SimulationPlan, WindowPlan
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.loading import (
    WEIGHT_FILES,
    BrainLMLoadError,
    check_not_a_file,
    load_brainlm,
    looks_like_path,
)
from fmtc.storage import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from fmtc.represent.probe import ProbeSet

logger = logging.getLogger(__name__)

SIMULATED_SOURCE = "simulated-pretrained"
RANDOM_INIT_SOURCE = "random-init"
"""The simulated-pretrained encoder's architecture, randomly initialised (``pretrain.seed``):
the ablation that shows what pretraining adds."""
RANDOM_INIT_REGIONS = 424
"""``num_brain_voxels`` recorded in the random-init config (informational, as for A424)."""
PROBE_SEED_OFFSET = 7919


@dataclass(frozen=True)
class EncoderSpec:
    """Which frozen BrainLM encoder, and what builds it when it is fmtc's own.

    Attributes
    ----------
    source : str
        ``simulated-pretrained``, ``random-init``, a local checkpoint folder, or a Hugging Face
        repo id with optional subfolder (``brainlm.source``).
    revision, sha256 : str or None
        Pin of a Hub checkpoint (``brainlm.revision``, ``brainlm.sha256``).
    pretrain : PretrainPlan
        Architecture and recipe of the simulated-pretrained and random-init encoders.
    windows : WindowPlan
        ``length`` is the pretraining window.
    tr : float
        Repetition time of the simulated pretraining corpus (``simulation.tr``).
    probe : SimulationPlan or None
        The labelled simulated cohort that probes the pretraining (``pretrain.probe_points``
        > 0; :func:`probe_cohort_settings`).
    store : Store
        Where cohorts and encoders are published.
    """

    source: str
    pretrain: PretrainPlan
    windows: WindowPlan
    store: Store
    tr: float = 2.5
    probe: SimulationPlan | None = None
    revision: str | None = None
    sha256: str | None = None

    def with_source(self, source: str | None) -> EncoderSpec:
        """The same spec with another ``source`` (None: unchanged)."""
        return self if source is None else dataclasses.replace(self, source=source)


def probe_cohort_settings(simulation: SimulationPlan, pretrain: PretrainPlan) -> SimulationPlan:
    """The labelled simulated cohort that probes the pretraining (``pretrain.probe_points``).

    A labelled cohort of the plan's size, length and TR at the default effects (effect size 1,
    no study shift), drawn with seed ``pretrain.seed + PROBE_SEED_OFFSET``: other subjects than
    the cohorts the claims are measured on (their seeds are small numbers), and independent of
    the labelled cohort's seed and effect settings, so choosing another labelled cohort does not
    retrain the encoder.
    """
    return SimulationPlan(n_subjects=simulation.n_subjects, n_volumes=simulation.n_volumes,
                          tr=simulation.tr, seed=pretrain.seed + PROBE_SEED_OFFSET)


def pretraining_cohort_settings(spec: EncoderSpec) -> SimulationPlan:
    """Simulation settings of the pain-agnostic pretraining corpus of ``spec``.

    Only the acquisition (``tr``) and ``pretrain``'s size, length and seed matter; every label-,
    study- and covariate-related setting keeps its default (an unlabelled corpus has none of
    them), so cohorts simulated with other effects, studies or seeds share one encoder.
    """
    return SimulationPlan(n_subjects=spec.pretrain.n_subjects,
                          n_volumes=spec.pretrain.n_volumes, tr=spec.tr,
                          seed=spec.pretrain.seed)


@dataclass(frozen=True, eq=False)
class PretrainedEncoder(Result):
    """A BrainLM pretrained by :func:`~fmtc.represent.pretrain.pretrain_brainlm` (resumable).

    Parameters
    ----------
    settings : PretrainPlan
    windows : WindowPlan
    store : Store
        ``models`` is where it is published by default.
    corpus : SimulationPlan or Path
        The unlabelled corpus: simulated settings (the default encoder), or a cohort folder.
    probe : SimulationPlan or Path or None
        The labelled probe cohort (simulated settings or a folder), with
        ``settings.probe_points`` > 0.
    init : EncoderSpec or None
        Continue from this encoder's weights instead of a random initialisation.
    device : torch.device
        Where to train (CUDA trains in bf16 autocast: another result).
    label : str or None
        Label column of a probe cohort folder.
    """

    kind: ClassVar[str] = "encoder"
    place: ClassVar[str] = "outputs.models_dir"
    resumable: ClassVar[bool] = True

    settings: PretrainPlan
    windows: WindowPlan
    store: Store
    corpus: SimulationPlan | Path
    probe: SimulationPlan | Path | None = None
    init: EncoderSpec | None = None
    device: Any = None
    label: str | None = None
    progress: bool = field(default=False, compare=False)

    def _cohort(self, source: SimulationPlan | Path, unlabelled: bool) -> Any:
        if isinstance(source, SimulationPlan):
            from fmtc.simulate.embedded import SimulatedCohort

            return SimulatedCohort(source, self.store, unlabelled, self.progress)
        return Path(source)

    def config(self) -> dict[str, Any]:
        return {"pretrain": self.settings, "windows": self.windows,
                "device": _device(self.device).type}

    def inputs(self) -> dict[str, Any]:
        def identity(source: SimulationPlan | Path | None, unlabelled: bool) -> Any:
            if source is None:
                return None
            found = self._cohort(source, unlabelled)
            if isinstance(found, Path):
                from fmtc.cohort.folder import load_cohort

                return load_cohort(found, label=self.label,
                                   require_label=not unlabelled).content_hash
            return found.key

        init = None
        if self.init is not None:
            init = encoder_identity(self.init, _device(self.device))
        return {"corpus": identity(self.corpus, True), "probe": identity(self.probe, False),
                "init": init}

    def input_folders(self) -> list[Path]:
        return [Path(p) for p in (self.corpus, self.probe) if isinstance(p, Path)]

    def default_folder(self) -> Path:
        return self.store.models / f"brainlm-simulated-{self.key[:12]}"

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from fmtc.cohort.folder import load_cohort
        from fmtc.lifecycle import materialise
        from fmtc.represent.pretrain import pretrain_brainlm
        from fmtc.represent.probe import probe_set

        def folder(source: SimulationPlan | Path, unlabelled: bool) -> Path:
            found = self._cohort(source, unlabelled)
            return found if isinstance(found, Path) else materialise(found).folder

        device = _device(self.device)
        cohort = load_cohort(folder(self.corpus, True), label=self.label, require_label=False)
        probes = None
        if self.probe is not None and self.settings.probe_points:
            probes = probe_set(load_cohort(folder(self.probe, False), label=self.label),
                               self.windows)
        init = resolve_encoder(self.init, device) if self.init is not None else None
        pretrain_brainlm(cohort, staging, self.settings, init=init, device=device,
                         windows=self.windows, progress=self.progress, probes=probes)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


def _device(device: Any) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def simulated_encoder(spec: EncoderSpec, device: Any = None,
                      progress: bool = False) -> PretrainedEncoder:
    """The :class:`PretrainedEncoder` of the ``simulated-pretrained`` source of ``spec``."""
    return PretrainedEncoder(spec.pretrain, spec.windows, spec.store,
                             pretraining_cohort_settings(spec),
                             spec.probe if spec.pretrain.probe_points else None,
                             device=_device(device), progress=progress)


def build_simulated_encoder(spec: EncoderSpec, device: Any = None,
                            progress: bool = False) -> Path:
    """The folder of the simulated-pretrained encoder, pretrained on first use (resumable)."""
    return materialise(simulated_encoder(spec, device, progress)).folder


def simulated_encoder_folder(spec: EncoderSpec, device: Any = None) -> Path:
    """Where the simulated-pretrained encoder of ``spec`` is (or will be) published."""
    return simulated_encoder(spec, device).default_folder()


def resolve_encoder(spec: EncoderSpec, device: Any = None, progress: bool = False) -> BrainLM:
    """Return the frozen BrainLM encoder of ``spec`` in eval mode on ``device``.

    Parameters
    ----------
    spec : EncoderSpec
    device : torch.device, optional
        Where the model lives (and where a first-use pretraining runs). Default: the CPU.
    progress : bool
        Show progress bars if the simulated-pretrained encoder has to be built.

    Returns
    -------
    BrainLM
        ``model.source_info`` records ``source``, ``commit`` and ``weights_sha256``; for the
        simulated-pretrained encoder also its ``folder`` and ``key``.
    """
    device = _device(device)
    if spec.source == RANDOM_INIT_SOURCE:
        return random_init_encoder(spec).to(device).eval()
    if spec.source != SIMULATED_SOURCE:
        return load_brainlm(spec.source, spec.revision, device=device, sha256=spec.sha256)
    encoder = simulated_encoder(spec, device, progress)
    try:
        found = materialise(encoder)
        model = load_brainlm(found.folder, device=device)
    except BrainLMLoadError as error:  # a damaged result is reported, then rebuilt, not trusted
        logger.warning("the cached simulated-pretrained encoder is damaged (%s); rebuilding it",
                       error)
        found = materialise(encoder, overwrite=True)
        model = load_brainlm(found.folder, device=device)
    model.source_info.update(source=SIMULATED_SOURCE, folder=str(found.folder),
                             key=encoder.key)
    return model


def encoder_identity(spec: EncoderSpec, device: Any = None) -> dict[str, Any]:
    """What identifies the encoder of ``spec``, known before its weights are built or fetched.

    The simulated-pretrained encoder is its result key (kind, version, recipe, corpus); the
    random-init encoder and checkpoints are their weights and config hashes, whatever folder or
    Hub id they come from (a model already loaded, :func:`model_fingerprint`, is the same
    encoder). A Hub checkpoint that is not in the local cache is fetched first.
    """
    device = _device(device)
    if spec.source == SIMULATED_SOURCE:
        return {"source": SIMULATED_SOURCE, "key": simulated_encoder(spec, device).key}
    if spec.source == RANDOM_INIT_SOURCE:
        return model_fingerprint(random_init_encoder(spec))
    found = encoder_fingerprint(spec)  # the weights, wherever they are (a folder, the Hub)
    return found if found is not None else model_fingerprint(resolve_encoder(spec, device))


def encoder_fingerprint(spec: EncoderSpec) -> dict[str, str] | None:
    """Weights and config hashes of a checkpoint source without loading the model.

    Hub sources are looked up in the local Hugging Face cache only (no network), at
    ``spec.revision`` or ``main``.

    Returns
    -------
    dict or None
        ``{"weights_sha256", "config_sha256"}``, or ``None`` when the files are not on disk yet.
    """
    folder = Path(spec.source).expanduser()
    check_not_a_file(spec.source)
    if folder.is_dir():
        return _folder_fingerprint(folder)
    if looks_like_path(spec.source):
        raise BrainLMLoadError(f"BrainLM checkpoint folder {spec.source!r} does not exist; check "
                               "the path (--brainlm, plan key brainlm.source)")
    return _hub_cache_fingerprint(spec.source, spec.revision)


def random_init_encoder(spec: EncoderSpec) -> BrainLM:
    """The ``random-init`` encoder: the simulated-pretrained architecture, untrained.

    Initialised as :func:`~fmtc.represent.pretrain.pretrain_brainlm` initialises a model
    before its first step (seed ``pretrain.seed``), so "pretrained minus random-init" is
    exactly what pretraining changed. Deterministic: the same settings give the same weights
    (``source_info["weights_sha256"]`` hashes every tensor).
    """
    from fmtc.represent.pretrain import pretraining_config

    config = pretraining_config(spec.pretrain, spec.windows, RANDOM_INIT_REGIONS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.pretrain.seed)
        model = BrainLM(config)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    model.source_info = {"source": RANDOM_INIT_SOURCE, "revision": None, "commit": None,
                         "weights_sha256": digest.hexdigest(), "files": [],
                         "seed": spec.pretrain.seed,
                         "architecture": dataclasses.asdict(spec.pretrain.architecture)}
    return model.eval()


def model_fingerprint(model: BrainLM) -> dict[str, str]:
    """Weights and config hashes of a model already in memory."""
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


def simulated_probe_set(spec: EncoderSpec, progress: bool = False) -> ProbeSet:
    """The simulated probe cohort of ``spec``, ready to probe (``spec.probe`` must be set)."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.represent.probe import probe_set
    from fmtc.simulate.embedded import simulated_cohort

    if spec.probe is None:
        raise ValueError("this encoder spec has no probe cohort (pretrain.probe_points is 0)")
    folder = simulated_cohort(spec.probe, spec.store, progress=progress)
    return probe_set(load_cohort(folder), spec.windows)


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
