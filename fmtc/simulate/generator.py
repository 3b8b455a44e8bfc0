"""The simulated cohort: network-structured resting-state series with a planted, known truth.

Every subject's regional signal mixes (i) one of 7 network signals, coupled
AR(1) processes convolved with the SPM canonical haemodynamic response, (ii) a
global signal and (iii) a private AR(1) process, with subject-specific coupling,
loadings and noise.

**Latent temporal traits** (the outside knowledge a foundation model can learn). Every
subject, labelled or not, carries ``N_TRAITS`` traits ``z ~ N(0, 1)``; trait ``k`` sets the
timescale of a signal shared by every region of its own network (``trait_networks``, the same
for every seed): an AR(1) process of coefficient ``0.45 + 0.5 sigmoid(1.5 z)`` (0.45-0.95 per
volume) carrying ``_TRAIT_SHARE`` of those regions' variance. Its variance never changes, so
the Pearson correlation matrix does not see the trait; masked reconstruction, which must fill
in a network's hidden patches, does. The pain-agnostic pretraining cohort
(``unlabelled=True``) has the traits and nothing else.

The responder label is planted in two complementary ways:

* **connectivity** (``fc_regions``, ``fc_edges``): a block of regions in network
  A and one in network B each carry a shared signal; in responders the two
  shared signals are correlated, in non-responders independent. Only the A-B
  edges change; every region's variance and spectrum is the same in both groups.
* **temporal structure** (``ts_regions``, the regions of ``ts_network``): the first trait
  is shifted with the label, ``z = delta (2 y - 1) + sqrt(1 - delta^2) e``, so
  responders' trait network is slower. The trait keeps unit variance and every
  unlabelled subject's distribution; ``delta = ts_trait_shift``.
  With ``trait_layout: scattered`` each trait paces as many regions as its network holds,
  drawn across every network instead (per population seed), so the network-mean read-out
  does not line up with the planted effect.

``effect_size`` scales both (0: no label signal; 1: paper-like difficulty,
FC + logistic regression pooled MCC about 0.3 on 60 subjects; 3: easy);
``fc_effect`` and ``ts_effect`` scale each one. Labels and drug arms are
balanced random permutations; subject ``i`` is then drawn from its own random
stream ``(seed, i)``. Outputs are byte-identical for identical arguments.

**Studies (sites) and covariates.** Subjects alternate between ``n_studies`` studies
(``study`` 1, 2, ... like ds000208's two trials). Study ``k`` of ``n`` sits at position
``u = (k - 1) / (n - 1)`` (study 1 at 0, the last at 1; centred ``c = 2u - 1``), and
``study_shift = s`` moves it away from study 1:

* scanner noise: extra white noise of s.d. ``_STUDY_NOISE * s * u`` (signal units);
* global signal: variance share ``0.1 (1 + _STUDY_GLOBAL * s * u)``, at most 0.4 (0.1 in
  study 1);
* head motion: ``mean_fd`` multiplied by ``exp(_STUDY_MOTION * s * u)``;
* label prevalence: responder fraction ``responder_fraction + _STUDY_PREVALENCE * s * c``
  within each study (clipped to 0.05-0.95).

The repetition time stays the plan's ``tr`` in every study: a cohort holds one TR
(:mod:`fmtc.cohort.folder` refuses mixed TRs). ``mean_fd`` (mm; log-normal around
0.15 mm) is a participants covariate only (it does not enter the series); ``Age`` and
``gender`` are drawn beside the labels as before. ``covariate_effect = e`` shifts
``log mean_fd`` by ``_FD_SPREAD * e`` up in responders and down in non-responders (0:
motion independent of the label). Everything new is drawn from its own random streams,
so with ``study_shift: 0`` the series, labels and arms are those of generator version 3.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal as sps
from scipy import stats

from fmtc import __version__
from fmtc.acquire.atlas import Atlas
from fmtc.cohort.folder import (
    write_description,
    write_participants,
    write_regions,
    write_timeseries,
)
from fmtc.plan import SimulationPlan
from fmtc.storage import write_json
from fmtc.versions import version

#: The declared version of the simulator (:data:`fmtc.versions.VERSIONS` ``cohort``; 4:
#: participants gain mean_fd, study shift and covariate effect), recorded in every cohort.
GENERATOR_VERSION = version("cohort")
LABEL_COLUMN = "Response"
FC_BLOCK_SIZE = 30
"""Regions per planted connectivity block (networks A and B each hold one)."""
N_TRAITS = 3
"""Latent subject-level temporal traits, one network each (the first one carries the label)."""

_BURN_IN = 40
_FC_SHARE = 0.45   # variance share of the shared signal in fc_regions
# Trait constants, chosen on calibration seeds 1 and 2 (book: the simulator page).
_TRAIT_SHARE = 0.7  # variance share of the trait-paced signal in its network's regions
_TRAIT_AR = (0.45, 0.5, 1.5)  # AR(1) coefficient = a + b * sigmoid(c * z)
_TS_GAIN = 0.8     # label shift of the first trait per unit of effect (delta, at most 0.95)
_TRAIT_NETWORK_SEED = 20251
_FC_GAIN = 0.20    # correlation of the two shared signals at effect 1 ...
_FC_POWER = 1.3    # ... growing as effect ** 1.3 (calibrated: FC + LR MCC ~0.3 at 1, ~0.7 at 3)
_PRIVATE_AR = 0.2
_COUPLING_JITTER = 0.12  # between-subject s.d. of network-to-network coupling
_LOADING_JITTER = 0.15   # between-subject spread of regional loadings
_SHARED_AR = 0.3
_UNLABELLED_STREAM = 1_000_003
_SITE_STREAM = 2_000_003  # studies and covariates: separate from every stream of version 3
_STUDY_NOISE = 0.5        # extra noise s.d. of the last study at study_shift 1
_STUDY_GLOBAL = 2.0       # global-signal share 0.1 -> 0.3 in the last study at shift 1
_STUDY_MOTION = 0.4       # log mean FD of the last study at shift 1 (x1.5)
_STUDY_PREVALENCE = 0.25  # responder fraction 0.25 vs 0.75 (2 studies, shift 1)
_FD_MEDIAN = 0.15         # mm, typical resting-state mean framewise displacement
_FD_SPREAD = 0.4          # s.d. of log mean FD


def canonical_hrf(tr: float, duration: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma haemodynamic response sampled every ``tr`` seconds."""
    t = np.arange(0.0, duration, tr)
    response = stats.gamma.pdf(t, 6) - stats.gamma.pdf(t, 16) / 6.0
    return response / response.sum()


def trait_networks(atlas: Atlas) -> list[str]:
    """The networks paced by the latent traits: the same for every seed (a population fact)."""
    networks = sorted(atlas.regions["network"].unique())
    rng = np.random.default_rng(_TRAIT_NETWORK_SEED)
    return [str(n) for n in rng.choice(networks, size=min(N_TRAITS, len(networks) - 2),
                                       replace=False)]


def trait_ar(z: np.ndarray | float) -> np.ndarray:
    """AR(1) coefficient per volume of a trait-paced signal: 0.45 (very low z) to 0.95 (high)."""
    a, b, c = _TRAIT_AR
    return a + b / (1.0 + np.exp(-c * np.asarray(z, dtype=float)))


def study_profile(settings: SimulationPlan) -> dict[str, Any]:
    """Per-study site parameters of ``settings`` (the ``studies`` entry of ground_truth.json).

    Returns
    -------
    dict
        ``n_studies``, ``study_shift`` and, per study (``"1"``, ``"2"``, ...), its
        ``extra_noise_sd``, ``global_share``, ``motion_factor`` and ``responder_fraction``.
    """
    n, shift = settings.n_studies, settings.study_shift
    studies = {}
    for k in range(n):
        u = k / (n - 1) if n > 1 else 0.0
        fraction = settings.responder_fraction + _STUDY_PREVALENCE * shift * (2 * u - 1)
        studies[str(k + 1)] = {
            "extra_noise_sd": _STUDY_NOISE * shift * u,
            "global_share": min(0.1 * (1.0 + _STUDY_GLOBAL * shift * u), 0.4),
            "motion_factor": math.exp(_STUDY_MOTION * shift * u),
            "responder_fraction": (settings.responder_fraction if shift == 0
                                   else float(np.clip(fraction, 0.05, 0.95))),
        }
    return {"n_studies": n, "study_shift": shift, "studies": studies}


def study_of(n_subjects: int, n_studies: int) -> np.ndarray:
    """Study (1..n_studies) of each subject: by alternation, as ds000208's 1, 2, 1, 2 ..."""
    return np.arange(n_subjects) % n_studies + 1


def plant_truth(atlas: Atlas, seed: int, layout: str = "networks") -> dict[str, Any]:
    """Choose the planted regions: FC blocks in networks A and B, the label's trait regions.

    Parameters
    ----------
    atlas : Atlas
    seed : int
        The population seed.
    layout : {"networks", "scattered"}
        ``networks``: trait ``k`` paces every region of ``trait_networks[k]``;
        ``scattered``: as many regions, drawn at random (per ``seed``) from every network
        outside the FC blocks, disjoint between traits.

    Returns
    -------
    dict
        ``fc_networks``, ``fc_regions``, ``fc_edges`` (pairs of region ``index``
        values, A x B), ``trait_networks``, ``ts_network`` (the first trait's network; None
        when scattered) and ``ts_regions`` (the first trait's regions); when scattered, also
        ``trait_layout`` and ``trait_regions`` (per trait, :func:`trait_region_sets`).
    """
    rng = np.random.default_rng([seed, 7])
    traits = trait_networks(atlas)
    others = sorted(set(atlas.regions["network"].unique()) - set(traits))
    net_a, net_b = rng.choice(others, size=2, replace=False)

    def block(network: str, size: int) -> list[int]:
        members = atlas.regions.loc[atlas.regions["network"] == network, "index"].to_numpy()
        size = min(size, len(members))
        start = int(rng.integers(0, len(members) - size + 1))
        return [int(i) for i in members[start:start + size]]

    block_a, block_b = block(net_a, FC_BLOCK_SIZE), block(net_b, FC_BLOCK_SIZE)
    by_network = [[int(i) for i in atlas.regions.loc[atlas.regions["network"] == name, "index"]]
                  for name in traits]
    if layout == "networks":
        trait_regions = by_network
    elif layout == "scattered":
        # Its own stream: the FC blocks stay where the network layout puts them.
        scatter = np.random.default_rng([seed, 11])
        free = np.setdiff1d(atlas.regions["index"].to_numpy(), block_a + block_b)
        drawn = scatter.permutation(free)
        sizes = np.cumsum([0] + [len(members) for members in by_network])
        trait_regions = [sorted(int(i) for i in drawn[start:stop])
                         for start, stop in zip(sizes[:-1], sizes[1:], strict=True)]
    else:
        raise ValueError(f"unknown trait layout {layout!r}; use 'networks' or 'scattered'")
    truth = {
        "fc_networks": [str(net_a), str(net_b)],
        "fc_regions": block_a + block_b,
        "fc_edges": [[a, b] for a in block_a for b in block_b],
        "trait_networks": traits,
        "ts_network": traits[0] if layout == "networks" else None,
        "ts_regions": trait_regions[0],
    }
    if layout != "networks":  # the network layout's truth is written as it always was
        truth.update(trait_layout=layout, trait_regions=trait_regions)
    return truth


def trait_region_sets(truth: dict[str, Any], atlas_regions: pd.DataFrame) -> list[list[int]]:
    """The region ``index`` values each latent trait paces (see :func:`plant_truth`)."""
    if "trait_regions" in truth:
        return [[int(i) for i in members] for members in truth["trait_regions"]]
    return [[int(i) for i in atlas_regions.loc[atlas_regions["network"] == name, "index"]]
            for name in truth["trait_networks"]]


def simulate_cohort(out: Path, settings: SimulationPlan, atlas: Atlas,
                    unlabelled: bool = False, progress: bool = False) -> Path:
    """Write a simulated cohort folder (the :mod:`fmtc.cohort.folder` contract).

    Parameters
    ----------
    out : Path
        Cohort folder to write (created; existing subject files are replaced).
    settings : SimulationPlan
        Size, seed, effect sizes and arm fractions.
    atlas : Atlas
        Geometry: regions with centroids and networks (normally SIM424).
    unlabelled : bool
        Write a "pain-agnostic" cohort for pretraining: other subjects (another
        random stream), no label and no planted effect.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    regions = atlas.regions.reset_index(drop=True)
    design = _design(settings, atlas, unlabelled)
    participants, subjects, population = design.participants, design.subjects, design.population
    truth, profile, brain_state = design.truth, design.profile, design.brain_state
    out.mkdir(parents=True, exist_ok=True)
    write_regions(out, atlas.name, regions)
    write_participants(out, participants)
    if progress:
        from tqdm import tqdm

        subjects = tqdm(subjects, total=len(participants), desc="simulating subjects",
                        unit="subject")
    traits = {}
    for participant_id, series, z in subjects:
        traits[participant_id] = [round(float(v), 6) for v in z]
        write_timeseries(out, participant_id, atlas.name, series, regions["index"], settings.tr)

    effect = {"effect_size": 0.0 if unlabelled else settings.effect_size,
              "fc_effect": settings.fc_effect, "ts_effect": settings.ts_effect}
    parameters = (settings.identity()
                  | {"unlabelled": unlabelled, "generator_version": GENERATOR_VERSION})
    if not unlabelled:
        write_json(out / "ground_truth.json", {
            **truth, **effect, "label_column": LABEL_COLUMN,
            "region_ids": "region `index` values of the regions table",
            "fc_delta_correlation": _FC_SHARE * population.fc_rho,
            "ts_trait_shift": population.ts_delta,
            "trait_ar": "0.45 + 0.5 / (1 + exp(-1.5 z)) per volume",
            "trait_share": _TRAIT_SHARE,
            "subject_traits": traits,
            **({} if settings.drug_specificity == 0 else {
                "drug_specificity": settings.drug_specificity,
                "brain_state": {pid: int(b) for pid, b in zip(participants["participant_id"],
                                                              brain_state, strict=True)},
                "brain_state_note": "the planted brain signal follows brain_state; it equals "
                                    "the label except for placebo subjects redrawn at "
                                    "random (drug_specificity)"}),
            "studies": profile,
            "covariates": {
                "mean_fd": f"log-normal, median {_FD_MEDIAN} mm, log s.d. {_FD_SPREAD}, "
                           "times the study's motion_factor; not in the series",
                "covariate_effect": settings.covariate_effect,
                "mean_fd_log_shift": _FD_SPREAD * settings.covariate_effect,
                "Age, gender": "independent of the label",
            },
        })
    name = ("fmtc simulated pain-agnostic cohort (SIMULATED, unlabelled)" if unlabelled
            else "fmtc simulated cohort (SIMULATED)")
    write_description(
        out, name, atlas.name, label_column=None if unlabelled else LABEL_COLUMN,
        generated_by=[{"Name": "fmtc", "Version": __version__,
                       "Description": "fmtc simulate: synthetic data, not real patients"}],
        Simulated=True, SimulationParameters=parameters,
        AtlasLicence=atlas.licence,
    )
    return out


def simulated_subjects(settings: SimulationPlan, atlas: Atlas, unlabelled: bool = False
                       ) -> tuple[pd.DataFrame, Iterator[tuple[str, np.ndarray]]]:
    """The subjects of :func:`simulate_cohort`, in memory: participants and their series.

    For studies that need many simulated subjects without writing a cohort folder (the
    inference calibration draws thousands). The series are those :func:`simulate_cohort`
    writes, subject for subject.

    Returns
    -------
    (participants, series)
        The participants table and an iterator of ``(participant_id, series [T, R])``.
    """
    design = _design(settings, atlas, unlabelled)
    return design.participants, ((pid, series) for pid, series, _ in design.subjects)


@dataclass(frozen=True)
class _Design:
    """Everything drawn before the series: participants, truth, studies, brain states."""

    participants: pd.DataFrame
    subjects: Iterator[tuple[str, np.ndarray, np.ndarray]]  # (id, series, traits), lazily
    population: _Population
    truth: dict[str, Any]
    profile: dict[str, Any]
    brain_state: np.ndarray


def _design(settings: SimulationPlan, atlas: Atlas, unlabelled: bool) -> _Design:
    """Participants and a lazy iterator of ``(id, series, traits)`` of one simulated cohort."""
    regions = atlas.regions.reset_index(drop=True)
    truth = plant_truth(atlas, settings.population, settings.trait_layout)
    stream = _UNLABELLED_STREAM if unlabelled else 0
    prefix = "P" if unlabelled else ""
    n = settings.n_subjects
    design = np.random.default_rng([settings.seed, stream, 10**6])
    labels = _balanced(design, n, settings.responder_fraction)
    drugs = np.where(_balanced(design, n, settings.duloxetine_fraction) == 1,
                     "duloxetine", "placebo")
    study = study_of(n, settings.n_studies)
    profile = study_profile(settings)
    site = np.random.default_rng([settings.seed, stream, _SITE_STREAM])
    if settings.study_shift > 0 and not unlabelled:  # per-study prevalence
        for k, part in profile["studies"].items():
            members = np.flatnonzero(study == int(k))
            labels[members] = _balanced(site, len(members), part["responder_fraction"])
    participants = pd.DataFrame({
        "participant_id": [f"sub-{prefix}{i + 1:03d}" for i in range(n)],
        "type": "patient",
        "study": study,
        "gender": np.where(design.random(n) < 0.5, "female", "male"),
        "Age": design.integers(35, 76, size=n),
        "Drug": drugs,
    })
    if not unlabelled:
        participants.insert(6, LABEL_COLUMN, labels)
    participants["mean_fd"] = _mean_fd(site, study, profile, labels, settings, unlabelled)
    population = _Population(regions, truth, settings)
    sites = [profile["studies"][str(k)] for k in study]
    brain_state = _brain_state(labels, drugs, settings, stream, unlabelled)
    ids = participants["participant_id"].tolist()

    def subjects() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for i in range(n):
            rng = np.random.default_rng([settings.seed, stream, i])
            responder = bool(brain_state[i]) and not unlabelled
            extra = None
            if sites[i]["extra_noise_sd"] > 0:  # study-specific scanner noise, its own stream
                extra = (np.random.default_rng([settings.seed, stream, _SITE_STREAM, i]),
                         sites[i]["extra_noise_sd"])
            series, z = population.subject(rng, responder, planted=not unlabelled,
                                           global_share=sites[i]["global_share"],
                                           extra_noise=extra)
            yield ids[i], series, z

    return _Design(participants, subjects(), population, truth, profile, brain_state)


_DRUG_STREAM = 3_000_017  # drug-specific brain states: separate from every other stream


def _brain_state(labels: np.ndarray, drugs: np.ndarray, settings: SimulationPlan, stream: int,
                 unlabelled: bool) -> np.ndarray:
    """Whose brain carries the responder signal: the label, except for redrawn placebo subjects.

    With ``drug_specificity = d``, each placebo subject is, with probability ``d``, given a
    brain state drawn at random (responder with the cohort's responder fraction), from its
    own random stream: the brain then predicts response to duloxetine better than to placebo.
    ``d = 0`` draws nothing (the cohort is that of ``drug_specificity`` absent).
    """
    state = np.asarray(labels).copy()
    if unlabelled or settings.drug_specificity == 0:
        return state
    rng = np.random.default_rng([settings.seed, stream, _DRUG_STREAM])
    redraw = (rng.random(len(state)) < settings.drug_specificity) & (drugs == "placebo")
    fresh = (rng.random(len(state)) < settings.responder_fraction).astype(state.dtype)
    state[redraw] = fresh[redraw]
    return state


def _mean_fd(rng: np.random.Generator, study: np.ndarray, profile: dict[str, Any],
             labels: np.ndarray, settings: SimulationPlan, unlabelled: bool) -> np.ndarray:
    """Mean framewise displacement (mm) per subject: log-normal, study and label shifts."""
    log_fd = math.log(_FD_MEDIAN) + _FD_SPREAD * rng.standard_normal(len(study))
    log_fd += np.log([profile["studies"][str(k)]["motion_factor"] for k in study])
    if not unlabelled and settings.covariate_effect > 0:
        log_fd += _FD_SPREAD * settings.covariate_effect * (2 * labels - 1)
    return np.round(np.exp(log_fd), 4)


def _balanced(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    positives = min(max(round(n * fraction), 1), n - 1)
    return rng.permutation(np.r_[np.ones(positives, int), np.zeros(n - positives, int)])


class _Population:
    """Population-level structure shared by every subject of one simulated cohort."""

    def __init__(self, regions: pd.DataFrame, truth: dict[str, Any], settings: SimulationPlan):
        rng = np.random.default_rng([settings.population, 3])
        self.settings = settings
        self.n_volumes = settings.n_volumes
        self.hrf = canonical_hrf(settings.tr)
        networks = sorted(regions["network"].unique())
        self.network_of = regions["network"].map({n: k for k, n in enumerate(networks)}).to_numpy()
        self.n_networks = len(networks)
        coupling = rng.uniform(-0.1, 0.45, size=(self.n_networks, self.n_networks))
        coupling = (coupling + coupling.T) / 2
        np.fill_diagonal(coupling, 1.0)
        self.coupling = _nearest_correlation(coupling)
        self.loading = rng.uniform(0.7, 1.3, size=len(regions))
        self.baseline = rng.uniform(4000.0, 12000.0, size=len(regions))
        position = {int(idx): p for p, idx in enumerate(regions["index"])}
        half = len(truth["fc_regions"]) // 2
        self.block_a = np.array([position[i] for i in truth["fc_regions"][:half]])
        self.block_b = np.array([position[i] for i in truth["fc_regions"][half:]])
        self.trait_regions = [np.array([position[i] for i in members], dtype=int)
                              for members in trait_region_sets(truth, regions)]
        effect = settings.effect_size
        self.fc_rho = float(min(_FC_GAIN * (effect * settings.fc_effect) ** _FC_POWER, 0.95))
        self.ts_delta = float(min(_TS_GAIN * effect * settings.ts_effect, 0.95))

    def subject(self, rng: np.random.Generator, responder: bool, planted: bool,
                global_share: float = 0.1,
                extra_noise: tuple[np.random.Generator, float] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """One subject's raw BOLD-like ``[T, R]`` series and its latent traits ``z``.

        ``global_share`` is the global signal's variance share (its study's);
        ``extra_noise`` (a random stream and an s.d.) adds the study's scanner noise.
        """
        z = rng.standard_normal(len(self.trait_regions))
        if planted:
            sign = 1.0 if responder else -1.0
            z[0] = self.ts_delta * sign + math.sqrt(1.0 - self.ts_delta**2) * z[0]
        n_regions = len(self.loading)
        length = self.n_volumes + _BURN_IN
        jitter = rng.normal(0, _COUPLING_JITTER, size=self.coupling.shape)
        subject_coupling = _nearest_correlation(self.coupling + (jitter + jitter.T) / 2)
        latent = self._bold(rng, self.n_networks, length) @ np.linalg.cholesky(subject_coupling).T
        latent /= latent.std(axis=0)
        global_signal = self._bold(rng, 1, length)[:, 0]
        global_signal /= global_signal.std()

        private_ar = np.clip(rng.normal(_PRIVATE_AR, 0.05), 0.0, 0.6)
        private = _ar1(rng, np.full(n_regions, private_ar), length)

        loading = self.loading * rng.uniform(1 - _LOADING_JITTER, 1 + _LOADING_JITTER,
                                             size=n_regions)
        net_share = 0.45 * loading / 1.3
        shares = {"net": net_share, "global": np.full(n_regions, global_share)}
        shares["private"] = 1.0 - shares["net"] - shares["global"]
        x = (np.sqrt(shares["net"]) * latent[:, self.network_of]
             + np.sqrt(shares["global"]) * global_signal[:, None]
             + np.sqrt(shares["private"]) * private)

        # Trait-paced network signals: same variance at every z, only the timescale moves.
        paced = _ar1(rng, trait_ar(z), length)
        for k, members in enumerate(self.trait_regions):
            x[:, members] = (math.sqrt(1 - _TRAIT_SHARE) * x[:, members]
                             + math.sqrt(_TRAIT_SHARE) * paced[:, [k]])

        # Fast shared fluctuations: their sample correlation within one recording is
        # precise enough for the planted coupling to stand out of sampling noise.
        shared = _ar1(rng, np.full(2, _SHARED_AR), length)
        rho = self.fc_rho if (planted and responder) else 0.0
        shared_b = rho * shared[:, 0] + math.sqrt(1 - rho**2) * shared[:, 1]
        for block, component in ((self.block_a, shared[:, 0]), (self.block_b, shared_b)):
            x[:, block] = (math.sqrt(1 - _FC_SHARE) * x[:, block]
                           + math.sqrt(_FC_SHARE) * component[:, None])

        x = x[_BURN_IN:]
        x += rng.normal(0, 0.05, size=x.shape)
        if extra_noise is not None:
            x += extra_noise[0].normal(0, extra_noise[1], size=x.shape)
        return self.baseline * (1.0 + 0.02 * x), z

    def _bold(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        """``n`` slow AR(1) neural signals convolved with the HRF, ``[length, n]``."""
        neural = _ar1(rng, rng.uniform(0.5, 0.8, size=n), length + len(self.hrf))
        return sps.lfilter(self.hrf, [1.0], neural, axis=0)[len(self.hrf):]


def _ar1(rng: np.random.Generator, coefficient: np.ndarray, length: int) -> np.ndarray:
    """Unit-variance stationary AR(1) processes, one column per coefficient."""
    coefficient = np.asarray(coefficient, dtype=float)
    innovations = rng.standard_normal((length, coefficient.size)) * np.sqrt(1 - coefficient**2)
    series = np.empty_like(innovations)
    series[0] = rng.standard_normal(coefficient.size)
    for t in range(1, length):
        series[t] = coefficient * series[t - 1] + innovations[t]
    return series


def _nearest_correlation(matrix: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """Clip eigenvalues at ``floor`` and rescale to a unit diagonal."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    fixed = (vectors * np.maximum(values, floor)) @ vectors.T
    scale = np.sqrt(np.diag(fixed))
    return fixed / np.outer(scale, scale)
