"""The embedded default: simulated cohorts as results, generated once and read back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fmtc.lifecycle import Result, Store, materialise
from fmtc.plan import SimulationPlan


@dataclass(frozen=True, eq=False)
class SimulatedCohort(Result):
    """A simulated cohort folder (:func:`fmtc.simulate.generator.simulate_cohort`).

    Parameters
    ----------
    settings : SimulationPlan
        Size, seeds, effects.
    store : Store
        ``cohorts`` is where it is published, ``atlases`` where the SIM424 atlas is cached.
    unlabelled : bool
        The pain-agnostic pretraining cohort instead of a labelled one.
    progress : bool
        Show a progress bar while generating (not part of the identity).
    """

    kind: ClassVar[str] = "cohort"
    place: ClassVar[str] = "outputs.cohorts_dir"

    settings: SimulationPlan
    store: Store
    unlabelled: bool = False
    progress: bool = field(default=False, compare=False)

    def config(self) -> dict[str, Any]:
        return {"simulation": self.settings.identity(), "unlabelled": self.unlabelled,
                "atlas": "SIM424"}

    def default_folder(self) -> Path:
        prefix = "simulated-unlabelled" if self.unlabelled else "simulated"
        return self.store.cohorts / f"{prefix}-{self.key[:10]}"

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from fmtc.acquire.atlas import get_atlas
        from fmtc.simulate.generator import simulate_cohort

        atlas = get_atlas("SIM424", cache_dir=self.store.atlases)
        simulate_cohort(staging, self.settings, atlas, unlabelled=self.unlabelled,
                        progress=self.progress)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder

    def provenance(self) -> dict[str, Any]:
        return {"simulation": dataclasses.asdict(self.settings)}


def simulated_cohort(settings: SimulationPlan, store: Store, unlabelled: bool = False,
                     progress: bool = False, out: str | Path | None = None,
                     overwrite: bool = False) -> Path:
    """The folder of the simulated cohort of ``settings``, generated on first use.

    Parameters
    ----------
    settings : SimulationPlan
    store : Store
        Where cohorts and the atlas cache live.
    unlabelled : bool
        The pain-agnostic pretraining cohort instead of the labelled one.
    progress : bool
        Show a progress bar while generating.
    out : path-like, optional
        Another folder than the store's (``fmtc simulate --out``).
    overwrite : bool
        Replace a different cohort in ``out``.
    """
    cohort = SimulatedCohort(settings, store, unlabelled, progress)
    return materialise(cohort, out, overwrite=overwrite).folder
