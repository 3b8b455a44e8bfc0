"""fmtc: reproducible companion to FMM_TC (Fan et al., MICCAI 2025, arXiv 2503.00210).

Importing :mod:`fmtc` is light: torch, nilearn, matplotlib, seaborn, captum and
datalad are imported only by the modules that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_brainlm", "load_cohort", "load_plan"]

if TYPE_CHECKING:  # pragma: no cover
    from fmtc.cohort.folder import load_cohort
    from fmtc.plan import load_plan
    from fmtc.represent.loading import load_brainlm


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep ``import fmtc`` free of torch and the plotting stack.
    if name == "load_brainlm":
        from fmtc.represent.loading import load_brainlm

        return load_brainlm
    if name == "load_cohort":
        from fmtc.cohort.folder import load_cohort

        return load_cohort
    if name == "load_plan":
        from fmtc.plan import load_plan

        return load_plan
    raise AttributeError(f"module 'fmtc' has no attribute {name!r}")
