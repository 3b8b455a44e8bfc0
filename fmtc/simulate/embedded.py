"""The embedded default: the simulated cohort a plan asks for, generated once and cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fmtc.acquire.atlas import get_atlas
from fmtc.plan import Plan, SimulationPlan
from fmtc.simulate.generator import GENERATOR_VERSION, simulate_cohort
from fmtc.storage import staged_folder


def simulation_key(settings: SimulationPlan, unlabelled: bool = False) -> str:
    """Short, stable name of a simulated cohort: hash of its settings and generator version."""
    payload = json.dumps(settings.identity() | {"unlabelled": unlabelled,
                                             "generator": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def embedded_cohort(plan: Plan, settings: SimulationPlan | None = None,
                    unlabelled: bool = False, progress: bool = False) -> Path:
    """Return the folder of the simulated cohort of ``plan``, generating it on first use.

    The cohort is written into a temporary folder beside its destination and
    renamed when complete, so an interrupted run never leaves a half cohort.

    Parameters
    ----------
    plan : Plan
        Supplies ``outputs.cohorts_dir``, the atlas cache and (by default) ``simulation``.
    settings : SimulationPlan, optional
        Other simulation settings (e.g. the pretraining cohort's size).
    unlabelled : bool
        The pain-agnostic pretraining cohort instead of the labelled one.
    progress : bool
        Show a progress bar while generating.
    """
    settings = settings or plan.simulation
    kind = "simulated-unlabelled" if unlabelled else "simulated"
    name = f"{kind}-{simulation_key(settings, unlabelled)}"
    destination = plan.path(plan.outputs.cohorts_dir) / name
    if (destination / "dataset_description.json").is_file():
        return destination
    atlas = get_atlas("SIM424", cache_dir=plan.path(plan.outputs.data_dir) / "atlases")
    # A folder without a description is debris of an older, interrupted writer: replace it.
    with staged_folder(destination, overwrite=destination.exists(), what="cohort") as staging:
        simulate_cohort(staging, settings, atlas, unlabelled=unlabelled, progress=progress)
    return destination
