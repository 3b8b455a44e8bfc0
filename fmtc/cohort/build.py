"""Cohort builders: fMRIPrep derivatives (or pre-parcellated series) to a cohort folder.

Per subject: get the BOLD (DataLad) → parcellate (:mod:`fmtc.preprocess.parcellate`)
→ write its series (:func:`fmtc.cohort.folder.write_timeseries`, sidecar last, so
a sidecar marks the subject done) → drop the BOLD. Peak disk is one subject's
BOLD per job. A build is a result of kind ``cohort`` (:class:`CohortBuild`,
:mod:`fmtc.lifecycle`): subjects are written into a partial folder beside the
destination, published only when every requested subject succeeded, so an
interrupted or partly failed build never looks like a complete cohort; rerunning
the same build resumes there, and a finished one is read back.

Data: OpenNeuro ds000208 (Tétreault et al. 2016, PLoS Biology 14:e1002570) and its
fMRIPrep 21.0.2 derivatives (Esteban et al. 2019, Nature Methods 16:111), as used
by Fan et al. (MICCAI 2025).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fmtc.acquire.atlas import Atlas
from fmtc.acquire.datalad_source import (
    DS000208_FMRIPREP,
    DS000208_RAW,
    DataladSource,
    drop_content,
    get_content,
    head_commit,
    install_dataset,
)
from fmtc.cohort.folder import (
    timeseries_path,
    write_description,
    write_participants,
    write_regions,
    write_timeseries,
)
from fmtc.cohort.participants import (
    DS000208_LABEL,
    exclude_by_motion,
    read_bids_participants,
    read_ds000208_participants,
)
from fmtc.errors import InvalidDataError
from fmtc.lifecycle import Result, check_output, digest, materialise
from fmtc.storage import sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoldSelection:
    """Which fMRIPrep BOLD output to parcellate, and how to denoise it.

    Attributes
    ----------
    space, desc : str
        BIDS ``space-`` and ``desc-`` entities of the BOLD file.
    res : str or None
        ``res-`` entity, if any.
    task : str
        ``task-`` entity.
    strategy : str or None
        nilearn fMRIPrep denoising strategy (``simple``, ``scrubbing``,
        ``compcor``, ``ica_aroma``); ``None``: no confound regression.
    detrend : bool
        Remove linear trends.
    high_pass : float or None
        High-pass cut-off (Hz).
    """

    space: str
    desc: str
    res: str | None = None
    task: str = "rest"
    strategy: str | None = None
    detrend: bool = False
    high_pass: float | None = None

    def bold(self, participant_id: str) -> str:
        """Relative path of a subject's BOLD image."""
        res = f"_res-{self.res}" if self.res else ""
        return (f"{participant_id}/func/{participant_id}_task-{self.task}_space-{self.space}"
                f"{res}_desc-{self.desc}_bold.nii.gz")

    def confounds(self, participant_id: str, suffix: str = "tsv") -> str:
        """Relative path of a subject's fMRIPrep confounds table (``tsv`` or ``json``)."""
        return (f"{participant_id}/func/{participant_id}_task-{self.task}"
                f"_desc-confounds_timeseries.{suffix}")


VARIANTS = {
    "aroma": BoldSelection(space="MNI152NLin6Asym", desc="smoothAROMAnonaggr"),
    "preproc": BoldSelection(space="MNI152NLin2009cAsym", desc="preproc", res="2",
                             strategy="simple"),
}
"""``aroma``: ICA-AROMA denoised, already on A424's grid (FSL MNI152 2 mm).
``preproc``: minimally preprocessed, denoised here with nilearn's ``simple`` strategy."""


@dataclass
class BuildReport:
    """What a build did.

    Attributes
    ----------
    out : Path
        The cohort folder.
    done, skipped : list of str
        Subjects written now, and those already written by an earlier run.
    failed : dict of str to str
        Subject id to the reason it failed.
    excluded : dict of str to float
        Subjects left out for motion, with their mean framewise displacement (mm).
    complete : bool
        True when ``dataset_description.json`` was written (nothing failed).
    problems : list of str
        Validation problems of the finished folder (:func:`validate_cohort`).
    """

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, float] = field(default_factory=dict)
    complete: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: done / skipped / failed / excluded counts."""
        line = (f"{len(self.done)} done, {len(self.skipped)} skipped (already written), "
                f"{len(self.failed)} failed")
        if self.excluded:
            line += f", {len(self.excluded)} excluded for motion"
        return line


@dataclass(frozen=True)
class _SubjectTask:
    dataset: Path
    participant_id: str
    selection: BoldSelection
    atlas: Atlas
    out: Path
    max_mean_fd: float | None
    use_datalad: bool


@dataclass(frozen=True)
class _SubjectOutcome:
    participant_id: str
    status: str  # "done", "failed" or "excluded"
    reason: str = ""
    mean_fd: float | None = None


# --------------------------------------------------------------------------- ds000208


def fetch_ds000208(out: str | Path, atlas: Atlas, *, variant: str = "aroma",
                   subjects: Sequence[str] | None = None, jobs: int = 1,
                   raw_source: DataladSource = DS000208_RAW,
                   derivatives_source: DataladSource = DS000208_FMRIPREP,
                   work_dir: str | Path | None = None, max_mean_fd: float | None = None,
                   progress: bool = True, probe_timeout: float = 10.0,
                   overwrite: bool = False) -> BuildReport:
    """Build the ds000208 cohort: clone, then per patient get → parcellate → write → drop.

    Parameters
    ----------
    out : path-like
        The cohort folder, published when every subject is written (an interrupted or
        partly failed build is resumed from the partial folder beside it).
    atlas : Atlas
        Parcellation (A424 for BrainLM).
    variant : {"aroma", "preproc"}
        Which fMRIPrep output (see :data:`VARIANTS`).
    subjects : sequence of str, optional
        Participant ids (``sub-21`` or ``21``); default every patient.
    jobs : int
        Subjects processed in parallel (peak disk: ``jobs`` BOLD images).
    raw_source, derivatives_source : DataladSource
        Where to clone from; default the pinned GitHub mirrors.
    work_dir : path-like, optional
        Where the clones live; default ``.<out>.work`` beside ``out`` (hidden, not part of
        the cohort's hash; safe to delete afterwards).
    max_mean_fd : float, optional
        Leave out subjects whose mean framewise displacement (mm) exceeds this.
    progress : bool
        Show a tqdm progress bar.
    probe_timeout : float
        Seconds for the connectivity probe of remote sources.
    overwrite : bool
        Replace a different cohort already in ``out``.

    Returns
    -------
    BuildReport
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    out = Path(out)
    check_output(out, "cohort", overwrite=overwrite)  # before anything is cloned
    work = Path(work_dir) if work_dir is not None else out.parent / f".{out.name}.work"
    raw = install_dataset(raw_source, work / "ds000208", probe_timeout)
    derivatives = install_dataset(derivatives_source, work / "ds000208-fmriprep", probe_timeout)
    participants = read_ds000208_participants(raw / "participants.tsv")
    provenance = {
        "SourceDatasets": [
            {"URL": raw_source.url, "DataladId": raw_source.dataset_id,
             "Commit": head_commit(raw), "DOI": "10.18112/openneuro.ds000208.v1.0.1"},
            {"URL": derivatives_source.url, "DataladId": derivatives_source.dataset_id,
             "Commit": head_commit(derivatives)},
        ],
        "Variant": variant,
        "License": "CC0 (ds000208); PDDL (fMRIPrep derivatives); atlas: "
                   + (atlas.licence or "see atlas"),
    }
    return build_cohort(derivatives, participants, DS000208_LABEL, out, atlas,
                        VARIANTS[variant], name=f"ds000208 {variant} {atlas.name}",
                        subjects=subjects, jobs=jobs, max_mean_fd=max_mean_fd,
                        use_datalad=True, progress=progress, provenance=provenance,
                        overwrite=overwrite)


# --------------------------------------------------------------------------- bring your own


def build_from_fmriprep(derivatives: str | Path, participants_tsv: str | Path, label: str,
                        out: str | Path, atlas: Atlas, *, positive: str | None = None,
                        selection: BoldSelection = VARIANTS["aroma"],
                        subjects: Sequence[str] | None = None, jobs: int = 1,
                        max_mean_fd: float | None = None, progress: bool = True,
                        overwrite: bool = False) -> BuildReport:
    """Build a cohort from any fMRIPrep-style derivatives folder.

    A folder that is a DataLad dataset has missing content fetched and dropped
    again after parcellation; a plain folder is read as is.

    Parameters
    ----------
    derivatives : path-like
        fMRIPrep output folder (``sub-<id>/func/...``).
    participants_tsv : path-like
        BIDS participants table.
    label : str
        Label column of ``participants_tsv``.
    out : path-like
        The cohort folder.
    atlas : Atlas
        Parcellation.
    positive : str, optional
        Value of ``label`` meaning 1 (see :func:`read_bids_participants`).
    selection : BoldSelection
        BOLD entities and denoising.
    subjects : sequence of str, optional
        Default: every labelled participant with a BOLD image in ``derivatives``.
    jobs : int
        Subjects processed in parallel.
    max_mean_fd : float, optional
        Motion exclusion threshold (mm).
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace a different cohort already in ``out``.

    Returns
    -------
    BuildReport
        With ``problems`` from :func:`fmtc.cohort.folder.validate_cohort`.
    """
    from fmtc.cohort.folder import validate_cohort

    derivatives, out = Path(derivatives), Path(out)
    if not derivatives.is_dir():
        raise InvalidDataError(f"derivatives folder {derivatives} does not exist; give the "
                               "fMRIPrep output folder (the one holding sub-*/func/)")
    check_output(out, "cohort", overwrite=overwrite)
    participants = read_bids_participants(participants_tsv, label, positive)
    if subjects is None:
        labelled = participants.index[participants[label].notna()]
        subjects = [p for p in labelled if os.path.lexists(derivatives / selection.bold(p))]
        if not subjects:
            raise InvalidDataError(f"{derivatives}: no labelled participant has a BOLD image "
                                    f"named like {selection.bold('sub-<id>')}; check --space, "
                                    "--desc and --res")
    report = build_cohort(derivatives, participants, label, out, atlas, selection,
                          name=f"{derivatives.name} {atlas.name}", subjects=subjects, jobs=jobs,
                          max_mean_fd=max_mean_fd,
                          use_datalad=(derivatives / ".datalad").is_dir(), progress=progress,
                          provenance={"SourceDatasets": [{"URL": str(derivatives.resolve())}]},
                          overwrite=overwrite)
    if report.complete:
        report.problems = validate_cohort(out)
    return report


def write_parcellated_subject(out: str | Path, participant_id: str,
                              timeseries: np.ndarray | str | Path, atlas: Atlas,
                              repetition_time: float,
                              sidecar: dict[str, Any] | None = None) -> None:
    """Write an already parcellated ``[T, R]`` series as one cohort subject.

    Parameters
    ----------
    out : path-like
        The cohort folder.
    participant_id : str
        ``sub-<label>``.
    timeseries : ndarray or path-like
        ``[T, R]`` array, or a whitespace-separated text table without header
        (e.g. BrainLM's ``A424_example_fMRI.dat``), columns in ``atlas.regions`` order.
    atlas : Atlas
        The atlas the series was extracted with.
    repetition_time : float
        Seconds per volume.
    sidecar : dict, optional
        Extra sidecar fields.
    """
    source = None
    if isinstance(timeseries, str | Path):
        source = str(timeseries)
        timeseries = np.loadtxt(timeseries, dtype=np.float64, ndmin=2)
    if timeseries.ndim != 2 or timeseries.shape[1] != len(atlas.regions):
        raise ValueError(f"{participant_id}: series {source or ''} of shape {timeseries.shape} "
                         f"does not have one column per region of {atlas.name} "
                         f"({len(atlas.regions)}); is it [time, regions]?")
    extra = {"Atlas": atlas.name, **({"Sources": [source]} if source else {}), **(sidecar or {})}
    write_timeseries(out, participant_id, atlas.name, timeseries, atlas.regions["index"],
                     repetition_time, sidecar=extra)


def build_from_parcellated(out: str | Path, series: Mapping[str, np.ndarray | str | Path],
                           participants: pd.DataFrame, label: str, atlas: Atlas,
                           repetition_time: float, name: str = "parcellated",
                           overwrite: bool = False) -> None:
    """Write a cohort from pre-parcellated series (one ``[T, R]`` table per subject).

    Parameters
    ----------
    out : path-like
        The cohort folder.
    series : mapping of str to ndarray or path-like
        Participant id to its series (see :func:`write_parcellated_subject`).
    participants : DataFrame
        Indexed by ``participant_id``, holding ``label``.
    label : str
        Label column (0/1/missing).
    atlas : Atlas
        The atlas of every series.
    repetition_time : float
        Seconds per volume.
    name : str
        The cohort's ``Name``.
    overwrite : bool
        Replace a cohort already in ``out`` (default: refuse).
    """
    out = Path(out)
    missing = sorted(set(series) - set(participants.index))
    if missing:
        raise ValueError(f"no participants row for {missing}; add them to the table")
    materialise(ParcellatedCohort(series, participants, label, atlas, repetition_time, name),
                out, overwrite=overwrite, load=False)


def _atlas_identity(atlas: Atlas) -> dict[str, Any]:
    image = Path(atlas.labels_img) if atlas.labels_img is not None else None
    return {"name": atlas.name, "regions": digest(atlas.regions.to_csv(lineterminator="\n")),
            "labels_img": sha256_file(image) if image is not None and image.is_file() else None}


@dataclass(frozen=True, eq=False)
class ParcellatedCohort(Result):
    """A cohort of already parcellated series (:func:`build_from_parcellated`)."""

    kind: ClassVar[str] = "cohort"

    series: Mapping[str, Any]
    participants: pd.DataFrame
    label: str
    atlas: Atlas
    repetition_time: float
    name: str

    def config(self) -> dict[str, Any]:
        return {"built": "parcellated", "name": self.name, "label": self.label,
                "repetition_time": self.repetition_time}

    def inputs(self) -> dict[str, Any]:
        def content(table: Any) -> str:
            if isinstance(table, str | Path):
                return sha256_file(table)
            from fmtc.lifecycle import array_digest

            return array_digest(np.asarray(table))

        rows = self.participants.loc[list(self.series)]
        return {"series": {pid: content(t) for pid, t in self.series.items()},
                "participants": digest(rows.to_csv(lineterminator="\n")),
                "atlas": _atlas_identity(self.atlas)}

    def default_folder(self) -> Path:
        raise ValueError("a cohort of parcellated series needs an output folder")

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        write_regions(staging, self.atlas.name, self.atlas.regions)
        for participant_id, table in self.series.items():
            write_parcellated_subject(staging, participant_id, table, self.atlas,
                                      self.repetition_time)
        write_participants(staging, self.participants.loc[list(self.series)]
                           .rename_axis("participant_id"))
        write_description(staging, self.name, self.atlas.name, label_column=self.label,
                          generated_by=[_generated_by()], AtlasLicense=self.atlas.licence)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


# --------------------------------------------------------------------------- the loop


def build_cohort(dataset: Path, participants: pd.DataFrame, label: str, out: Path, atlas: Atlas,
                 selection: BoldSelection, *, name: str, subjects: Iterable[str] | None = None,
                 jobs: int = 1, max_mean_fd: float | None = None, use_datalad: bool = True,
                 progress: bool = True, provenance: dict[str, Any] | None = None,
                 overwrite: bool = False) -> BuildReport:
    """Parcellate every subject of a derivatives dataset into a cohort folder (resumable).

    The build is a :class:`CohortBuild` result: subjects are written into a partial folder
    beside ``out``, published as ``out`` only when every subject is written. A rerun with the
    same settings resumes there (only unwritten subjects are processed); a partial folder of
    other settings is discarded. ``out`` already holding this very cohort is reported as done;
    holding another, it is replaced only with ``overwrite``.

    Parameters
    ----------
    dataset : Path
        Derivatives root (a DataLad clone when ``use_datalad``).
    participants : DataFrame
        Indexed by ``participant_id``; ``label`` plus covariates.
    label : str
        Label column.
    out : Path
        The cohort folder.
    atlas : Atlas
        Parcellation.
    selection : BoldSelection
        Which BOLD file and how to denoise.
    name : str
        The cohort's ``Name``.
    subjects : iterable of str, optional
        Default: every participant with a label.
    jobs : int
        Parallel subjects (separate processes).
    max_mean_fd : float, optional
        Motion exclusion threshold (mm).
    use_datalad : bool
        Get missing content before and drop it after each subject.
    progress : bool
        Show a tqdm progress bar.
    provenance : dict, optional
        Extra ``dataset_description.json`` fields.
    overwrite : bool
        Replace a different cohort already in ``out``.

    Returns
    -------
    BuildReport
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    final = Path(out)
    wanted = _resolve_subjects(subjects, participants, label)
    build = CohortBuild(Path(dataset), participants, label, atlas, selection, name,
                        tuple(wanted), max_mean_fd, use_datalad, jobs, progress,
                        dict(provenance or {}), BuildReport(out=final))
    try:
        found = materialise(build, final, overwrite=overwrite, load=False)
    except IncompleteBuild:
        logger.info("%d subject(s) failed; the written ones are kept beside %s and the same "
                    "command resumes there", len(build.report.failed), final)
        return build.report
    if found.reused:
        logger.info("%s already holds this cohort (same settings and subjects)", final)
        return BuildReport(out=final, skipped=list(wanted), complete=True)
    build.report.complete = True
    return build.report


class IncompleteBuild(Exception):  # noqa: N818 - a state, not an error: the report says more
    """Some subjects failed: the written ones stay in the partial folder for the next run."""


@dataclass(frozen=True, eq=False)
class CohortBuild(Result):
    """A cohort parcellated from a derivatives dataset, subject by subject (resumable).

    Its identity is the settings (name, atlas, label, subjects, BOLD selection, motion
    threshold), the participants rows and the atlas (the dataset's folder and commit are
    recorded, not identified: a fixed source resumes the build); see :func:`build_cohort` for
    the parameters. ``report`` is filled as it runs.
    """

    kind: ClassVar[str] = "cohort"
    resumable: ClassVar[bool] = True

    dataset: Path
    participants: pd.DataFrame
    label: str
    atlas: Atlas
    selection: BoldSelection
    name: str
    subjects: tuple[str, ...]
    max_mean_fd: float | None = None
    use_datalad: bool = True
    jobs: int = field(default=1, compare=False)
    progress: bool = field(default=True, compare=False)
    provenance_fields: dict[str, Any] = field(default_factory=dict, compare=False)
    report: BuildReport = field(default_factory=lambda: BuildReport(Path(".")), compare=False)

    def config(self) -> dict[str, Any]:
        return {"built": "derivatives", "name": self.name, "label": self.label,
                "subjects": sorted(self.subjects), "selection": _selection_dict(self.selection),
                "max_mean_fd": self.max_mean_fd}

    def inputs(self) -> dict[str, Any]:
        # Not the dataset's commit or folder: fixing a failed subject's source (a new commit),
        # or cloning it elsewhere, resumes the same build; both are in the provenance.
        rows = self.participants.loc[list(self.subjects)]
        return {"participants": digest(rows.to_csv(lineterminator="\n")),
                "atlas": _atlas_identity(self.atlas)}

    def provenance(self) -> dict[str, Any]:
        commit = head_commit(self.dataset) if self.use_datalad else None
        return {"dataset": str(self.dataset), "commit": commit}

    def input_folders(self) -> list[Path]:
        return [self.dataset]

    def default_folder(self) -> Path:
        raise ValueError("a cohort built from derivatives needs an output folder")

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from tqdm import tqdm

        report = self.report
        write_regions(staging, self.atlas.name, self.atlas.regions)
        mean_fd: dict[str, float] = {}
        todo = []
        for participant_id in self.subjects:
            sidecar = timeseries_path(staging, participant_id, self.atlas.name, "json")
            if sidecar.is_file():
                report.skipped.append(participant_id)
                fd = _read_sidecar(sidecar).get("MeanFramewiseDisplacement")
                if fd is not None:
                    mean_fd[participant_id] = float(fd)
            else:
                todo.append(_SubjectTask(self.dataset, participant_id, self.selection,
                                         self.atlas, staging, self.max_mean_fd,
                                         self.use_datalad))
        with tqdm(total=len(todo), desc=f"parcellating ({self.atlas.name})", unit="subject",
                  disable=not self.progress) as bar:
            for outcome in _run(todo, self.jobs):
                bar.update(1)
                if outcome.mean_fd is not None:
                    mean_fd[outcome.participant_id] = outcome.mean_fd
                if outcome.status == "done":
                    report.done.append(outcome.participant_id)
                elif outcome.status == "excluded":
                    report.excluded[outcome.participant_id] = float(outcome.mean_fd or 0)
                else:
                    report.failed[outcome.participant_id] = outcome.reason
                    bar.write(f"{outcome.participant_id}: failed: {outcome.reason}")
        written = [p for p in self.subjects if p in report.done or p in report.skipped]
        table = self.participants.loc[written]
        if mean_fd:
            table, over = exclude_by_motion(table, mean_fd, self.max_mean_fd)
            for participant_id in over:  # written by an earlier run with a looser threshold
                report.excluded[participant_id] = mean_fd[participant_id]
                shutil.rmtree(staging / participant_id, ignore_errors=True)
        write_participants(staging, table.rename_axis("participant_id"))
        if report.failed:
            raise IncompleteBuild(f"{len(report.failed)} subject(s) failed")
        write_description(staging, self.name, self.atlas.name, label_column=self.label,
                          generated_by=[_generated_by()], AtlasLicense=self.atlas.licence,
                          BoldSelection=_selection_dict(self.selection),
                          MaxMeanFD=self.max_mean_fd, ExcludedForMotion=report.excluded,
                          **self.provenance_fields)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


def _run(todo: list[_SubjectTask], jobs: int) -> Iterable[_SubjectOutcome]:
    if jobs == 1 or len(todo) <= 1:
        yield from map(_process_subject, todo)
        return
    from concurrent.futures import as_completed

    # Separate processes, not threads: DataLad's repository objects are not thread-safe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: dict[Future, str] = {pool.submit(_process_subject, t): t.participant_id
                                      for t in todo}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # a crashed worker must not end the run
                yield _SubjectOutcome(futures[future], "failed", _reason(error))


def _process_subject(task: _SubjectTask) -> _SubjectOutcome:
    """Get → parcellate → write → drop one subject's BOLD; never raises."""
    from fmtc.preprocess.parcellate import (
        load_fmriprep_confounds,
        mean_framewise_displacement,
        parcellate,
    )

    selection, pid = task.selection, task.participant_id
    bold = task.dataset / selection.bold(pid)
    confounds_tsv = task.dataset / selection.confounds(pid)
    wanted = [p for p in (bold, confounds_tsv, task.dataset / selection.confounds(pid, "json"))
              if os.path.lexists(p)]
    fetched: list[Path] = []
    mean_fd = None
    try:
        if not os.path.lexists(bold):
            raise FileNotFoundError(f"no BOLD image {bold}")
        if task.use_datalad:
            fetched = get_content(task.dataset, [p.relative_to(task.dataset) for p in wanted])
        if not bold.exists():
            raise FileNotFoundError(f"content of {bold} is not present (run `datalad get` in "
                                    f"{task.dataset}, or restore the file)")
        if confounds_tsv.exists():
            mean_fd = mean_framewise_displacement(confounds_tsv)
            if task.max_mean_fd is not None and mean_fd > task.max_mean_fd:
                return _SubjectOutcome(pid, "excluded", mean_fd=mean_fd)
        confounds = sample_mask = None
        if selection.strategy is not None:
            confounds, sample_mask = load_fmriprep_confounds(bold, selection.strategy)
        result = parcellate(bold, task.atlas, confounds=confounds, sample_mask=sample_mask,
                            detrend=selection.detrend, high_pass=selection.high_pass)
        sidecar: dict[str, Any] = {"Atlas": task.atlas.name,
                                   "Sources": [selection.bold(pid)],
                                   "DenoiseStrategy": selection.strategy,
                                   "EmptyRegions": result.empty_regions}
        if mean_fd is not None:
            sidecar["MeanFramewiseDisplacement"] = mean_fd
        if result.sample_mask is not None:
            sidecar["SampleMask"] = [int(i) for i in result.sample_mask]
        write_timeseries(task.out, pid, task.atlas.name, result.timeseries,
                         task.atlas.regions["index"], result.repetition_time, sidecar)
        return _SubjectOutcome(pid, "done", mean_fd=mean_fd)
    except Exception as error:  # reported per subject; the run goes on
        return _SubjectOutcome(pid, "failed", _reason(error), mean_fd)
    finally:
        # Only the BOLD image is dropped: the confounds (~1 MB) stay, so a worker never drops
        # content that another worker got as "already present" and is still reading (two
        # subjects' identical small files share one annex object; BOLD images never do).
        dropped = [p for p in fetched if p.name == bold.name]
        if dropped:
            try:
                drop_content(task.dataset, dropped)
            except OSError:
                pass  # the series is written; a left-over file only costs disk


# --------------------------------------------------------------------------- helpers


def _resolve_subjects(subjects: Iterable[str] | None, participants: pd.DataFrame,
                      label: str) -> list[str]:
    if subjects is None:
        return participants.index[participants[label].notna()].tolist()
    wanted = [s if s.startswith("sub-") else f"sub-{s}" for s in subjects]
    unknown = [s for s in wanted if s not in participants.index]
    if unknown:
        raise ValueError(f"subject(s) {unknown} not in participants.tsv")
    unlabelled = [s for s in wanted if pd.isna(participants.loc[s, label])]
    if unlabelled:
        raise ValueError(f"subject(s) {unlabelled} have no '{label}' label (controls?)")
    return list(dict.fromkeys(wanted))


def _read_sidecar(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _selection_dict(selection: BoldSelection) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(selection)


def _generated_by() -> dict[str, Any]:
    from fmtc import __version__

    return {"Name": "fmtc", "Version": __version__}


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


