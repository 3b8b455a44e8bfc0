"""Shared fixtures: small simulated cohorts, written once per test session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from fmtc.acquire.simulated_atlas import build_simulated_atlas
from fmtc.plan import SimulationPlan
from fmtc.simulate.generator import simulate_cohort

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def sim_atlas(tmp_path_factory):
    """The SIM424 atlas, built once into a session folder."""
    return build_simulated_atlas(tmp_path_factory.mktemp("atlases"))


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory, sim_atlas) -> Path:
    """A valid simulated cohort of 12 subjects x 220 volumes (do not modify: copy it)."""
    settings = replace(SimulationPlan(), n_subjects=12, n_volumes=220, seed=3)
    return simulate_cohort(tmp_path_factory.mktemp("cohort") / "sim", settings, sim_atlas)


@pytest.fixture(scope="module")
def one_thread():
    """The 2 CPU cores are shared with other jobs: one thread each avoids oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(previous)


REPOSITORY_DATA = Path(__file__).resolve().parents[1] / "data"


def _data_entries() -> set[str]:
    return {str(p.relative_to(REPOSITORY_DATA)) for p in REPOSITORY_DATA.glob("*/*")}


@pytest.fixture(autouse=True)
def _nothing_written_into_the_repositorys_data():
    """A test writes under its temporary folders only, never into the repository's data/."""
    before = _data_entries()
    yield
    added = _data_entries() - before
    assert not added, (f"this test wrote {sorted(added)} under {REPOSITORY_DATA}: give its plan "
                       "outputs under tmp_path")
