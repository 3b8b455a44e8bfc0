"""Helpers that build tiny DataLad datasets mimicking ds000208 and its fMRIPrep derivatives.

The raw dataset carries the real ``participants.tsv`` (from ``../shared``) and
ds000208's DataLad id; the derivatives carry synthetic 4-D BOLD images on the
A424 grid whose region means are known exactly (every voxel of region ``r`` at
time ``t`` holds ``values[r, t]``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ATLAS_DIR = SHARED / "atlas"
RAW_ID = "47670aa6-887e-11e8-bbe3-0242ac12000e"
DERIVATIVES_ID = "c0eed5ef-a2dd-4b6e-84e7-d9b9f6ae37f8"
N_VOLUMES = 24
AROMA = "space-MNI152NLin6Asym_desc-smoothAROMAnonaggr_bold"


def require_shared() -> Path:
    """Return ``../shared/data`` or skip the test."""
    if not (SHARED / "atlas" / "A424+2mm.nii.gz").is_file():
        pytest.skip(f"reference data not found at {SHARED} (the shared/ folder beside the repo)")
    return SHARED


def use_datalad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the venv's bin (git-annex) on PATH and set a git identity; skip without git-annex."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + ":" + __import__("os").environ.get("PATH", ""))
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "fmtc tests")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "tests@fmtc.invalid")
    if shutil.which("git-annex") is None:
        pytest.skip("git-annex is not installed (pip install git-annex)")
    pytest.importorskip("datalad.api", reason="datalad is not installed")


def region_values(seed: int, n_volumes: int = N_VOLUMES, n_regions: int = 424) -> np.ndarray:
    """``[n_regions + 1, T]`` int16 values, row 0 (background) zero."""
    values = np.random.default_rng(seed).integers(-3000, 3000, size=(n_regions + 1, n_volumes))
    values[0] = 0
    return values.astype(np.int16)


def write_bold(path: Path, values: np.ndarray, repetition_time: float = 2.5) -> None:
    """Write a 4-D image on the A424 grid holding ``values[label, t]``, plus its JSON sidecar."""
    import nibabel as nib

    labels = nib.load(ATLAS_DIR / "A424+2mm.nii.gz")
    index = np.asarray(labels.dataobj).astype(np.intp)
    image = nib.Nifti1Image(values[index], labels.affine)
    image.header.set_data_dtype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    sidecar = path.with_name(path.name.removesuffix(".nii.gz") + ".json")
    sidecar.write_text(json.dumps({"RepetitionTime": repetition_time, "TaskName": "rest"}))


def write_confounds(path: Path, n_volumes: int, mean_fd: float, seed: int = 0) -> None:
    """Write an fMRIPrep-like confounds TSV (+ JSON) with a given mean framewise displacement."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for base in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf",
                 "white_matter", "global_signal"):
        signal = rng.normal(size=n_volumes)
        columns[base] = signal
        columns[f"{base}_derivative1"] = np.r_[np.nan, np.diff(signal)]
        columns[f"{base}_power2"] = signal ** 2
        columns[f"{base}_derivative1_power2"] = np.r_[np.nan, np.diff(signal) ** 2]
    columns["cosine00"] = np.cos(np.linspace(0, np.pi, n_volumes))
    columns["framewise_displacement"] = np.r_[np.nan, np.full(n_volumes - 1, mean_fd)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(path, sep="\t", index=False, na_rep="n/a")
    path.with_suffix(".json").write_text("{}")


def _create(path: Path, dataset_id: str) -> Path:
    import datalad.api as dl

    dl.create(path=str(path), result_renderer="disabled")
    subprocess.run(["git", "config", "-f", ".datalad/config", "datalad.dataset.id", dataset_id],
                   cwd=path, check=True)
    with open(path / ".gitattributes", "a") as handle:  # sidecars and labels are plain git
        handle.write("*.json annex.largefiles=nothing\nparticipants.tsv annex.largefiles=nothing\n")
    return path


def _save(path: Path, message: str) -> None:
    import datalad.api as dl

    dl.save(dataset=str(path), message=message, result_renderer="disabled")


def make_raw_dataset(path: Path, dataset_id: str = RAW_ID) -> Path:
    """A DataLad dataset with ds000208's id, participants.tsv and one annexed image."""
    _create(path, dataset_id)
    shutil.copy(SHARED / "ds000208" / "participants.tsv", path / "participants.tsv")
    shutil.copy(SHARED / "ds000208" / "dataset_description.json",
                path / "dataset_description.json")
    anat = path / "sub-21" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-21_T1w.nii.gz").write_bytes(b"annexed placeholder")
    _save(path, "ds000208 look-alike")
    return path


def make_derivatives_dataset(path: Path, subjects: dict[str, np.ndarray | None],
                             dataset_id: str = DERIVATIVES_ID) -> Path:
    """fMRIPrep look-alike: AROMA BOLD per subject (``None``: a corrupt image) + confounds."""
    _create(path, dataset_id)
    for participant_id, values in subjects.items():
        write_subject(path, participant_id, values)
    _save(path, "fMRIPrep look-alike")
    return path


def write_subject(root: Path, participant_id: str, values: np.ndarray | None,
                  mean_fd: float = 0.1) -> Path:
    """Write one subject's AROMA BOLD (corrupt bytes when ``values`` is None) and confounds."""
    func = root / participant_id / "func"
    bold = func / f"{participant_id}_task-rest_{AROMA}.nii.gz"
    if bold.is_symlink() or bold.exists():
        bold.unlink()
    if values is None:
        func.mkdir(parents=True, exist_ok=True)
        bold.write_bytes(b"this is not a NIfTI image")
        bold.with_name(bold.name.removesuffix(".nii.gz") + ".json").write_text(
            json.dumps({"RepetitionTime": 2.5}))
    else:
        write_bold(bold, values)
    confounds = func / f"{participant_id}_task-rest_desc-confounds_timeseries.tsv"
    if not confounds.exists():
        write_confounds(confounds, N_VOLUMES, mean_fd)
    return bold
