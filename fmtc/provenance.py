"""What every run records: plan, seed, package versions, data version, git commit, device."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from fmtc import __version__

_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "torch", "torchvision", "nilearn",
             "nibabel", "captum", "datalad", "papermill", "jupyter-book")


def versions_of(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed version of each package of ``names`` (``not installed`` when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on.

    Read once per process (a fresh dict each call): every published result records them, and
    reading the packages' metadata costs ~27 ms a call (a profiled `tiny` generalisation page:
    194 calls, 5.2 s of 75 s).
    """
    return dict(_package_versions())


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    return tuple({"fmtc": __version__, "python": sys.version.split()[0],
                  "platform": platform.platform(), **versions_of(_PACKAGES)}.items())


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the fmtc checkout (with ``-dirty`` when modified), if it is one."""
    root = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "fmtc"],
                               check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty.strip() else "")


def provenance_record(**fields: Any) -> dict[str, Any]:
    """A provenance dict: ``fields`` plus package versions and the git commit."""
    return {**fields, "packages": package_versions(), "git_commit": git_commit()}
