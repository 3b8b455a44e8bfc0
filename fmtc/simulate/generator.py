"""The simulated cohort: network-structured resting-state series with a planted, known truth.

Every subject's regional signal mixes (i) one of 7 network signals, coupled
AR(1) processes convolved with the SPM canonical haemodynamic response, (ii) a
global signal and (iii) a private AR(1) process, with subject-specific coupling,
loadings and noise. The responder label is planted in two complementary ways:

* **connectivity** (``fc_regions``, ``fc_edges``): a block of regions in network
  A and one in network B each carry a shared signal; in responders the two
  shared signals are correlated, in non-responders independent. Only the A-B
  edges change; every region's variance and spectrum is the same in both groups.
* **temporal structure** (``ts_regions``): a block of regions in a third network
  has a more autocorrelated private process in responders (more low-frequency
  power) at unchanged variance and unchanged coupling, so the Pearson
  correlation matrix carries no trace of it.

``effect_size`` scales both (0: no label signal; 1: paper-like difficulty,
FC + logistic regression pooled MCC about 0.3 on 60 subjects; 3: easy);
``fc_effect`` and ``ts_effect`` scale each one. Labels and drug arms are
balanced random permutations; subject ``i`` is then drawn from its own random
stream ``(seed, i)``. Outputs are byte-identical for identical arguments.
"""

from __future__ import annotations

import math
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

#: Bump whenever the same arguments would generate different data: cached simulated
#: cohorts and the encoders pretrained on them are keyed by it.
GENERATOR_VERSION = 2
LABEL_COLUMN = "Response"
FC_BLOCK_SIZE = 30
"""Regions per planted connectivity block (networks A and B each hold one)."""
TS_BLOCK_SIZE = 13
"""Regions of the planted temporal block (network C)."""

_BURN_IN = 40
_FC_SHARE = 0.45   # variance share of the shared signal in fc_regions
_TS_SHARE = 0.70   # variance share of the private process in ts_regions
_FC_GAIN = 0.20    # correlation of the two shared signals at effect 1 ...
_FC_POWER = 1.3    # ... growing as effect ** 1.3 (calibrated: FC + LR MCC ~0.3 at 1, ~0.7 at 3)
_TS_GAIN = 0.08    # AR(1) coefficient added to the private process per unit of effect
_PRIVATE_AR = 0.2
_COUPLING_JITTER = 0.12  # between-subject s.d. of network-to-network coupling
_LOADING_JITTER = 0.15   # between-subject spread of regional loadings
_SHARED_AR = 0.3
_UNLABELLED_STREAM = 1_000_003


def canonical_hrf(tr: float, duration: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma haemodynamic response sampled every ``tr`` seconds."""
    t = np.arange(0.0, duration, tr)
    response = stats.gamma.pdf(t, 6) - stats.gamma.pdf(t, 16) / 6.0
    return response / response.sum()


def plant_truth(atlas: Atlas, seed: int) -> dict[str, Any]:
    """Choose the planted regions: two FC blocks in networks A and B, a TS block in C.

    Returns
    -------
    dict
        ``fc_networks``, ``fc_regions``, ``fc_edges`` (pairs of region ``index``
        values, A x B), ``ts_network``, ``ts_regions``.
    """
    rng = np.random.default_rng([seed, 7])
    networks = sorted(atlas.regions["network"].unique())
    net_a, net_b, net_c = rng.choice(networks, size=3, replace=False)

    def block(network: str, size: int) -> list[int]:
        members = atlas.regions.loc[atlas.regions["network"] == network, "index"].to_numpy()
        size = min(size, len(members))
        start = int(rng.integers(0, len(members) - size + 1))
        return [int(i) for i in members[start:start + size]]

    block_a, block_b = block(net_a, FC_BLOCK_SIZE), block(net_b, FC_BLOCK_SIZE)
    block_c = block(net_c, TS_BLOCK_SIZE)
    return {
        "fc_networks": [str(net_a), str(net_b)],
        "fc_regions": block_a + block_b,
        "fc_edges": [[a, b] for a in block_a for b in block_b],
        "ts_network": str(net_c),
        "ts_regions": block_c,
    }


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
    truth = plant_truth(atlas, settings.seed)
    stream = _UNLABELLED_STREAM if unlabelled else 0
    prefix = "P" if unlabelled else ""
    n = settings.n_subjects
    design = np.random.default_rng([settings.seed, stream, 10**6])
    labels = _balanced(design, n, settings.responder_fraction)
    drugs = np.where(_balanced(design, n, settings.duloxetine_fraction) == 1,
                     "duloxetine", "placebo")
    participants = pd.DataFrame({
        "participant_id": [f"sub-{prefix}{i + 1:03d}" for i in range(n)],
        "type": "patient",
        "study": np.where(np.arange(n) % 2 == 0, 1, 2),
        "gender": np.where(design.random(n) < 0.5, "female", "male"),
        "Age": design.integers(35, 76, size=n),
        "Drug": drugs,
    })
    if not unlabelled:
        participants.insert(6, LABEL_COLUMN, labels)

    out.mkdir(parents=True, exist_ok=True)
    write_regions(out, atlas.name, regions)
    write_participants(out, participants)
    population = _Population(regions, truth, settings)
    iterator = range(n)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="simulating subjects", unit="subject")
    for i in iterator:
        rng = np.random.default_rng([settings.seed, stream, i])
        responder = bool(labels[i]) and not unlabelled
        series = population.subject(rng, responder, planted=not unlabelled)
        write_timeseries(out, participants["participant_id"][i], atlas.name, series,
                         regions["index"], settings.tr)

    effect = {"effect_size": 0.0 if unlabelled else settings.effect_size,
              "fc_effect": settings.fc_effect, "ts_effect": settings.ts_effect}
    parameters = ({k: v for k, v in vars(settings).items()}
                  | {"unlabelled": unlabelled, "generator_version": GENERATOR_VERSION})
    if not unlabelled:
        write_json(out / "ground_truth.json", {
            **truth, **effect, "label_column": LABEL_COLUMN,
            "region_ids": "region `index` values of the regions table",
            "fc_delta_correlation": _FC_SHARE * population.fc_rho,
            "ts_delta_ar1": population.ts_delta,
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


def _balanced(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    positives = min(max(round(n * fraction), 1), n - 1)
    return rng.permutation(np.r_[np.ones(positives, int), np.zeros(n - positives, int)])


class _Population:
    """Population-level structure shared by every subject of one simulated cohort."""

    def __init__(self, regions: pd.DataFrame, truth: dict[str, Any], settings: SimulationPlan):
        rng = np.random.default_rng([settings.seed, 3])
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
        self.block_c = np.array([position[i] for i in truth["ts_regions"]])
        effect = settings.effect_size
        self.fc_rho = float(min(_FC_GAIN * (effect * settings.fc_effect) ** _FC_POWER, 0.95))
        self.ts_delta = float(min(_TS_GAIN * effect * settings.ts_effect, 0.75))

    def subject(self, rng: np.random.Generator, responder: bool, planted: bool) -> np.ndarray:
        """One subject's raw BOLD-like ``[T, R]`` series."""
        n_regions = len(self.loading)
        length = self.n_volumes + _BURN_IN
        jitter = rng.normal(0, _COUPLING_JITTER, size=self.coupling.shape)
        subject_coupling = _nearest_correlation(self.coupling + (jitter + jitter.T) / 2)
        latent = self._bold(rng, self.n_networks, length) @ np.linalg.cholesky(subject_coupling).T
        latent /= latent.std(axis=0)
        global_signal = self._bold(rng, 1, length)[:, 0]
        global_signal /= global_signal.std()

        private_ar = np.clip(rng.normal(_PRIVATE_AR, 0.05), 0.0, 0.6)
        ar = np.full(n_regions, private_ar)
        if planted and responder:
            ar[self.block_c] = np.clip(private_ar + self.ts_delta, 0.0, 0.95)
        private = _ar1(rng, ar, length)

        loading = self.loading * rng.uniform(1 - _LOADING_JITTER, 1 + _LOADING_JITTER,
                                             size=n_regions)
        net_share = 0.45 * loading / 1.3
        shares = {"net": net_share, "global": np.full(n_regions, 0.1)}
        shares["private"] = 1.0 - shares["net"] - shares["global"]
        shares["private"][self.block_c] = _TS_SHARE
        shares["net"][self.block_c] = 1.0 - _TS_SHARE - 0.1
        x = (np.sqrt(shares["net"]) * latent[:, self.network_of]
             + np.sqrt(shares["global"]) * global_signal[:, None]
             + np.sqrt(shares["private"]) * private)

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
        return self.baseline * (1.0 + 0.02 * x)

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
