"""Glue shared by the CLI and the notebooks: from a plan to the cohort it names."""

from __future__ import annotations

from pathlib import Path

from fmtc.cohort.folder import Cohort, load_cohort
from fmtc.plan import Plan


def cohort_path(plan: Plan, progress: bool = False) -> Path:
    """The cohort folder of ``plan``: the embedded simulated cohort, or ``data.cohort``."""
    if plan.data.cohort == "simulated":
        from fmtc.simulate.embedded import embedded_cohort

        return embedded_cohort(plan, progress=progress)
    path = plan.path(plan.data.cohort)
    if not path.is_dir():
        raise FileNotFoundError(
            f"cohort folder {path} (plan key data.cohort) does not exist; build it with "
            "`fmtc fetch ds000208 --out DIR` or `fmtc cohort from-fmriprep`, or use "
            "data.cohort: simulated")
    return path


def plan_cohort(plan: Plan, progress: bool = False) -> Cohort:
    """Load and validate the cohort of ``plan`` (``data.label`` picks the label column)."""
    return load_cohort(cohort_path(plan, progress=progress), label=plan.data.label)
