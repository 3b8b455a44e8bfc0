"""NIfTI to region time series: the mean BOLD signal inside each atlas region.

Uses nilearn's :class:`~nilearn.maskers.NiftiLabelsMasker` (Abraham et al. 2014,
"Machine learning for neuroimaging with scikit-learn", Front. Neuroinform.);
confounds come from nilearn's fMRIPrep denoising strategies
(:func:`nilearn.interfaces.fmriprep.load_confounds_strategy`; Wang et al. 2024,
"Continuous evaluation of denoising strategies in resting-state fMRI
connectivity using fMRIPrep and Nilearn", PLoS Comput. Biol.).

Regions of the atlas that have no voxel on the data grid (lost when the labels
are resampled, or lying outside the image) are an **error** naming them: the
cohort contract needs every region's series, and filling it would invent data.
Regions whose voxels are all zero over time (outside the subject's brain mask)
are kept, but a warning names them and :attr:`Parcellation.empty_regions`
records them, so builders write them into the subject's sidecar.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.acquire.atlas import Atlas
from fmtc.errors import InvalidDataError


class MissingRegionsError(InvalidDataError):
    """Atlas regions with no voxel on the data grid."""


@dataclass(frozen=True)
class Parcellation:
    """The result of :func:`parcellate`.

    Attributes
    ----------
    timeseries : ndarray
        ``[T, R]`` float64, columns in ``atlas.regions`` order.
    repetition_time : float
        Seconds per volume.
    empty_regions : list of int
        Region indices whose signal is zero at every time point.
    sample_mask : ndarray or None
        Volumes kept (indices into the original series) when a strategy scrubs.
    """

    timeseries: np.ndarray
    repetition_time: float
    empty_regions: list[int] = field(default_factory=list)
    sample_mask: np.ndarray | None = None


def read_repetition_time(bold_path: str | Path) -> float:
    """Read ``RepetitionTime`` (s) from the JSON sidecar beside a BOLD image.

    Parameters
    ----------
    bold_path : path-like
        ``*_bold.nii.gz``; its sidecar is the same name with ``.json``.

    Returns
    -------
    float
    """
    bold_path = Path(bold_path)
    sidecar = bold_path.with_name(bold_path.name.removesuffix(".gz").removesuffix(".nii")
                                  + ".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar}: JSON sidecar of {bold_path.name} is missing; it must "
                                "hold {\"RepetitionTime\": seconds}")
    tr = json.loads(sidecar.read_text()).get("RepetitionTime")
    if not isinstance(tr, int | float) or isinstance(tr, bool) or tr <= 0:
        raise ValueError(f"{sidecar}: 'RepetitionTime' must be a positive number, found {tr!r}")
    return float(tr)


def load_fmriprep_confounds(bold_path: str | Path, strategy: str = "simple",
                            **kwargs: Any) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Load fMRIPrep confounds for a BOLD image with a nilearn denoising strategy.

    Parameters
    ----------
    bold_path : path-like
        fMRIPrep ``*_desc-preproc_bold.nii.gz``; its ``*_desc-confounds_timeseries.tsv``
        (and ``.json``) must sit beside it.
    strategy : {"simple", "scrubbing", "compcor", "ica_aroma"}
        Passed to :func:`nilearn.interfaces.fmriprep.load_confounds_strategy`.
    **kwargs
        Strategy parameters (e.g. ``motion="basic"``).

    Returns
    -------
    confounds : DataFrame
    sample_mask : ndarray or None
    """
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    try:
        confounds, sample_mask = load_confounds_strategy(str(bold_path), denoise_strategy=strategy,
                                                         **kwargs)
    except ValueError as error:
        raise ValueError(f"{bold_path}: could not load fMRIPrep confounds with strategy "
                         f"{strategy!r} ({error})") from error
    return confounds, sample_mask


def mean_framewise_displacement(confounds_path: str | Path) -> float:
    """Mean of the ``framewise_displacement`` column of an fMRIPrep confounds TSV (mm).

    The first volume's ``n/a`` is ignored (Power et al. 2012, NeuroImage 59:2142).
    """
    table = pd.read_csv(confounds_path, sep="\t", na_values=["n/a"])
    if "framewise_displacement" not in table.columns:
        raise ValueError(f"{confounds_path}: no 'framewise_displacement' column; is this an "
                         "fMRIPrep *_desc-confounds_timeseries.tsv?")
    values = pd.to_numeric(table["framewise_displacement"], errors="coerce").dropna()
    if values.empty:
        raise ValueError(f"{confounds_path}: 'framewise_displacement' holds no numbers")
    return float(values.mean())


def parcellate(bold_img: Any, atlas: Atlas, *, repetition_time: float | None = None,
               confounds: pd.DataFrame | np.ndarray | None = None,
               sample_mask: np.ndarray | None = None, detrend: bool = False,
               high_pass: float | None = None, standardize: bool = False) -> Parcellation:
    """Average the BOLD signal inside each atlas region.

    The labels image is resampled to the data grid with nearest-neighbour
    interpolation when the grids differ (``resampling_target="data"``).

    Parameters
    ----------
    bold_img : path-like or Nifti1Image
        4-D BOLD image. With a path and no ``repetition_time``, the TR is read
        from the JSON sidecar (:func:`read_repetition_time`).
    atlas : Atlas
        Labels image and regions table; columns follow ``atlas.regions``.
    repetition_time : float, optional
        Seconds per volume; required for an in-memory image.
    confounds : DataFrame or ndarray, optional
        Regressed out of every region's signal (e.g. :func:`load_fmriprep_confounds`).
    sample_mask : ndarray, optional
        Volumes to keep (scrubbing).
    detrend : bool
        Remove linear trends.
    high_pass : float, optional
        High-pass cut-off in Hz (requires the TR).
    standardize : bool
        z-score each region's series (default: keep raw BOLD units; BrainLM's
        robust scaling happens later, in :mod:`fmtc.preprocess.transforms`).

    Returns
    -------
    Parcellation

    Raises
    ------
    MissingRegionsError
        Some atlas regions have no voxel on the data grid; the message names them.
    """
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker

    if repetition_time is None:
        if not isinstance(bold_img, str | Path):
            raise ValueError("repetition_time is needed for an in-memory image")
        repetition_time = read_repetition_time(bold_img)
    img = nib.load(str(bold_img)) if isinstance(bold_img, str | Path) else bold_img
    if len(img.shape) != 4:
        raise ValueError(f"{_describe(bold_img)}: expected a 4-D BOLD image, got shape {img.shape}")
    expected = [int(i) for i in atlas.regions["index"]]
    masker = NiftiLabelsMasker(labels_img=str(atlas.labels_img), background_label=0,
                               resampling_target="data", strategy="mean", detrend=detrend,
                               high_pass=high_pass, t_r=repetition_time,
                               standardize="zscore_sample" if standardize else None,
                               keep_masked_labels=False, reports=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampl.*", category=UserWarning)
        signals = masker.fit_transform(img, confounds=confounds, sample_mask=sample_mask)
    found = [int(k) for k in masker.region_ids_.values() if k != 0]
    _check_regions_present(expected, found, atlas, bold_img)
    position = {region: column for column, region in enumerate(found)}
    series = np.asarray(signals, dtype=np.float64)[:, [position[r] for r in expected]]
    empty = [r for r, column in zip(expected, series.T, strict=True) if not np.any(column)]
    if empty:
        warnings.warn(f"{_describe(bold_img)}: {len(empty)} region(s) of {atlas.name} are zero at "
                      f"every time point (outside the brain mask?): {empty[:20]}", stacklevel=2)
    return Parcellation(series, float(repetition_time), empty,
                        None if sample_mask is None else np.asarray(sample_mask))


def _check_regions_present(expected: list[int], found: list[int], atlas: Atlas,
                           bold_img: Any) -> None:
    missing = sorted(set(expected) - set(found))
    if missing:
        names = atlas.regions.set_index("index").loc[missing, "name"].tolist()
        shown = ", ".join(f"{i} ({n})" for i, n in zip(missing[:20], names[:20], strict=True))
        raise MissingRegionsError(
            f"{_describe(bold_img)}: {len(missing)} region(s) of atlas {atlas.name} have no voxel "
            f"on the data grid: {shown}{' ...' if len(missing) > 20 else ''}. Use an image on "
            "the atlas's grid/space (A424: MNI152NLin6Asym 2 mm) or a coarser atlas.")


def _describe(bold_img: Any) -> str:
    return str(bold_img) if isinstance(bold_img, str | Path) else "BOLD image"
