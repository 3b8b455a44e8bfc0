"""The STAGES cohort: first-episode psychosis, antipsychotic or placebo (Pope et al. 2025).

:func:`fetch_stages` clones izachp/psychosis-FC-prediction (:mod:`fmtc.acquire.stages`) and
writes two cohort folders (:mod:`fmtc.cohort.folder`), each a resumable ``cohort`` result
(:mod:`fmtc.lifecycle`: staged beside its destination, published whole):

* ``OUT``: the **baseline** scan (``ses-1``) of each of the 55 patients, one row per patient,
  labelled by ``PRIMARY_LABEL`` (``LabelColumn``) and ``SENSITIVITY_LABEL``;
  ``participants.tsv`` also holds ``arm``, the four z-scored change scores and ``scan``.
* ``OUT-ses2``: the **3-month** scans (``ses-2``, 37 patients) as an *unlabelled* cohort:
  its ``participants.tsv`` holds only ``participant_id`` and ``scan``, and its description
  no ``LabelColumn``. :func:`~fmtc.cohort.folder.load_cohort` refuses it unless
  ``require_label=False`` (pretraining corpora, :mod:`fmtc.represent.encoder`), so a
  3-month scan can never be a labelled row of cross-validation, nor a second row of a
  patient beside its baseline scan.

The labels (fixed here before any model was run on this cohort). The repository gives
z-scored change scores, not totals; z-scoring within a timepoint is monotone, so a split at
the cohort median is the same on the z-scores as on the raw changes. A change is follow-up
minus baseline: the change scores correlate positively with each patient's linear slope over
time (``*_lm_slopes.txt``; BPRS r = 0.46 at 6 and 0.90 at 12 months, SOFAS 0.57 and 0.90),
BPRS and SOFAS changes correlate negatively (r = -0.49 at 6 months), and the authors' own
changes (``make_FC.R``: ``fc_3m - fc_bl``) are follow-up minus baseline. The BPRS measures
symptom severity, so a negative change is improvement; the SOFAS measures functioning, so a
positive change is.

* ``responder_bprs_6m`` (primary): 1 when the 6-month BPRS change is below the median of the
  cohort's patients with that score (greater symptom improvement), 0 otherwise (a score equal
  to the median is 0), ``n/a`` without a 6-month BPRS score.
* ``responder_sofas_6m`` (sensitivity): 1 when the 6-month SOFAS change is above the median
  (greater functional improvement), same ties and missing rule.

``arm`` is ``medication`` or ``placebo`` from the repository's per-arm score files, ``n/a``
for a patient in neither. The repetition time is stated nowhere in the repository:
``DEFAULT_TR`` is an assumption (see ``TR_ASSUMPTION``), recorded in every
description and sidecar.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fmtc.acquire.datalad_source import DataladSource
from fmtc.acquire.stages import (
    LOW_SIGNAL_FILE,
    PARCELLATIONS,
    PIPELINES,
    STAGES_CITATION,
    STAGES_DOI,
    STAGES_LICENCE,
    STAGES_REPOSITORY,
    StagesRegions,
    available_series,
    check_repository,
    install_repository,
    read_change_scores,
    read_low_signal_rows,
    read_subject_list,
    read_timeseries,
    series_path,
    source_blobs,
    stages_regions,
)
from fmtc.cohort.folder import (
    MAX_TR,
    MIN_TR,
    timeseries_path,
    write_description,
    write_participants,
    write_regions,
    write_timeseries,
)
from fmtc.errors import InvalidDataError, UsageError
from fmtc.lifecycle import Result, check_output, digest, materialise
from fmtc.storage import write_json

logger = logging.getLogger(__name__)

PRIMARY_LABEL = "responder_bprs_6m"
SENSITIVITY_LABEL = "responder_sofas_6m"
LABEL_RULE_VERSION = 1
"""Bumped whenever a label rule changes (part of the cohorts' identity)."""

SCORE_COLUMNS = {
    "bprs_change_6m_z": ("bprs", 4),
    "bprs_change_12m_z": ("bprs", 5),
    "sofas_change_6m_z": ("sofas", 4),
    "sofas_change_12m_z": ("sofas", 5),
}
"""participants.tsv column -> (scale, repository timepoint); timepoint 4 = 6, 5 = 12 months."""


@dataclass(frozen=True)
class LabelRule:
    """A responder label: a median split of one change score.

    Attributes
    ----------
    score : str
        The participants column split (a key of ``SCORE_COLUMNS``).
    improvement : {"lower", "higher"}
        Which side of the median is the better outcome (the responders).
    definition : str
        The rule in words, for the cohort's description.
    """

    score: str
    improvement: str
    definition: str


LABEL_RULES = {
    PRIMARY_LABEL: LabelRule(
        "bprs_change_6m_z", "lower",
        "1 when the 6-month change in BPRS total (follow-up minus baseline, z-scored within "
        "timepoint by the authors) is below the median of the cohort's patients with that "
        "score, i.e. greater symptom improvement; 0 otherwise (a score equal to the median is "
        "0); n/a without a 6-month BPRS score (data/bprs_change_scores.txt, timepoint 4)"),
    SENSITIVITY_LABEL: LabelRule(
        "sofas_change_6m_z", "higher",
        "1 when the 6-month change in SOFAS (follow-up minus baseline, z-scored within "
        "timepoint) is above the median of the cohort's patients with that score, i.e. "
        "greater functional improvement; 0 otherwise (ties 0); n/a without a 6-month SOFAS "
        "score (data/sofas_change_scores.txt, timepoint 4)"),
}

SIGN_EVIDENCE = (
    "Change = follow-up minus baseline: each change score correlates positively with the "
    "patient's linear slope over time (data/*_lm_slopes.txt: BPRS r = 0.46 at 6 and 0.90 at "
    "12 months; SOFAS 0.57 and 0.90), BPRS and SOFAS changes correlate negatively (r = -0.49 "
    "at 6 months, -0.46 at 12), and the authors compute their own changes as follow-up minus "
    "baseline (scripts/make_FC.R: fc_3m - fc_bl). BPRS: higher = more severe, so a negative "
    "change is improvement; SOFAS: higher = better functioning, so a positive change is. "
    "z-scoring within timepoint is monotone, so the median split equals the split of the raw "
    "changes.")

DEFAULT_PIPELINE = PIPELINES[0]
DEFAULT_PARCELLATION = "419_parc"
DEFAULT_TR = 2.0
"""Seconds per volume assumed when ``--tr`` is not given (not stated in the repository)."""
TR_ASSUMPTION = (
    "Not stated in the repository (README, data/README, scripts). 2.0 s is assumed: the "
    "published series (234 volumes) are band-pass filtered ('bpf') and their mean power "
    "spectrum falls to half between about 0.016 and 0.15 cycles per volume, i.e. 0.008-0.08 "
    "Hz, a common band-pass, at TR 2.0 s. Pass --tr with the acquisition's value when known.")

SESSIONS = {1: "baseline", 2: "3-month"}


def median_split(scores: pd.Series, improvement: str) -> tuple[pd.Series, float | None]:
    """Responders (1) on the better side of the median of ``scores``, others 0, missing NA.

    Parameters
    ----------
    scores : Series
        One change score per participant, NaN where missing.
    improvement : {"lower", "higher"}
        ``lower``: a score below the median is a responder (e.g. BPRS); ``higher``: above.

    Returns
    -------
    labels : Series
        Nullable integers 0/1, NA where the score is missing; a score equal to the median
        is 0.
    median : float or None
        The median of the present scores (None when none is present).
    """
    if improvement not in ("lower", "higher"):
        raise ValueError(f"improvement must be 'lower' or 'higher', got {improvement!r}")
    values = pd.to_numeric(scores, errors="coerce").astype(float)
    present = values.dropna()
    labels = pd.Series(pd.NA, index=scores.index, dtype="Int64")
    if present.empty:
        return labels, None
    median = float(np.median(present.to_numpy()))
    better = present < median if improvement == "lower" else present > median
    labels[present.index] = better.astype(np.int64).to_numpy()
    return labels, median


def stages_participants(repo: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The baseline participants table and the label facts, from the repository's files.

    Returns
    -------
    participants : DataFrame
        Indexed by ``participant_id`` (``data/subjects_ses-1.txt`` order): the two labels,
        ``arm``, the four change scores (``SCORE_COLUMNS``) and ``scan`` ``baseline``.
    labels : dict
        Per label column: definition, median, counts (for ``dataset_description.json``).

    Raises
    ------
    InvalidDataError
        A malformed file, or a patient listed in both arms.
    """
    data = Path(repo) / "data"
    subjects = read_subject_list(data / "subjects_ses-1.txt")
    table = pd.DataFrame(index=pd.Index(subjects, name="participant_id"))
    scales = {scale: read_change_scores(data / f"{scale}_change_scores.txt")
              for scale in ("bprs", "sofas")}
    for scale, scores in scales.items():
        unlisted = sorted(set(scores.index) - set(subjects))
        if unlisted:
            logger.warning("%s: %d scored participant(s) without a baseline scan, left out: %s",
                           data / f"{scale}_change_scores.txt", len(unlisted), unlisted[:5])
    for column, (scale, timepoint) in SCORE_COLUMNS.items():
        scores = scales[scale]
        table[column] = (scores[timepoint].reindex(subjects) if timepoint in scores.columns
                         else np.nan)
    arms: dict[str, set[str]] = {}
    for arm in ("medication", "placebo"):
        arms[arm] = set()
        for scale in ("bprs", "sofas"):
            arms[arm] |= set(read_change_scores(data / f"{scale}_change_scores_{arm}.txt").index)
    both = sorted(arms["medication"] & arms["placebo"])
    if both:
        raise InvalidDataError(f"{data}: {', '.join(both[:5])} listed in both the medication and "
                               "the placebo score files")
    table["arm"] = pd.Series(
        ["medication" if p in arms["medication"] else "placebo" if p in arms["placebo"]
         else pd.NA for p in subjects], index=table.index, dtype="string")
    facts: dict[str, Any] = {}
    labels = {}
    for label, rule in LABEL_RULES.items():
        values, median = median_split(table[rule.score], rule.improvement)
        labels[label] = values
        facts[label] = {
            "Definition": rule.definition, "Score": rule.score,
            "Responder": f"{rule.score} {'<' if rule.improvement == 'lower' else '>'} median",
            "Median": median, "Responders": int((values == 1).sum()),
            "NonResponders": int((values == 0).sum()), "Missing": int(values.isna().sum())}
    table.insert(0, SENSITIVITY_LABEL, labels[SENSITIVITY_LABEL])
    table.insert(0, PRIMARY_LABEL, labels[PRIMARY_LABEL])
    table["scan"] = SESSIONS[1]
    order = [PRIMARY_LABEL, SENSITIVITY_LABEL, "arm", *SCORE_COLUMNS, "scan"]
    return table.loc[:, order], facts


# --------------------------------------------------------------------------- the report


@dataclass
class StagesReport:
    """What :func:`fetch_stages` wrote.

    Attributes
    ----------
    out, ses2_out : Path or None
        The baseline cohort, and the 3-month one (None when not built).
    commit : str
        The repository commit read.
    atlas : str
        The cohort's atlas name.
    n_regions : int
        Regions per series.
    repetition_time : float
        Seconds per volume written.
    tr_assumed : bool
        True when ``repetition_time`` is the default assumption, not given.
    participants : DataFrame
        The baseline participants table.
    done, skipped : dict of int to list of str
        Per session, subjects written now and those already written by an earlier run.
    reused : dict of int to bool
        Per session, True when the published cohort was already there.
    volumes : dict of int to list of int
        Per session, the distinct numbers of volumes per scan.
    scans : dict of int to int
        Per session, the number of scans in the cohort.
    problems : list of str
        Validation problems of the finished folders.
    """

    out: Path
    ses2_out: Path | None = None
    commit: str = ""
    atlas: str = ""
    n_regions: int = 0
    repetition_time: float = DEFAULT_TR
    tr_assumed: bool = True
    participants: pd.DataFrame = field(default_factory=pd.DataFrame)
    done: dict[int, list[str]] = field(default_factory=dict)
    skipped: dict[int, list[str]] = field(default_factory=dict)
    reused: dict[int, bool] = field(default_factory=dict)
    volumes: dict[int, list[int]] = field(default_factory=dict)
    scans: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for the terminal: per folder what was written, then the cohort's facts."""
        lines = []
        for session, folder in ((1, self.out), (2, self.ses2_out)):
            if folder is None or session not in self.scans:
                continue
            what = ("already there" if self.reused.get(session) else
                    f"{len(self.done.get(session, []))} written, "
                    f"{len(self.skipped.get(session, []))} skipped (already written)")
            kind = "labelled" if session == 1 else "unlabelled, pretraining only"
            lines.append(f"ses-{session} ({SESSIONS[session]}, {kind}): {self.scans[session]} "
                         f"scans, {what} -> {folder}")
        table = self.participants
        lines.append(f"{len(table)} patients; atlas {self.atlas} ({self.n_regions} regions); "
                     f"commit {self.commit[:12]}")
        for label in (PRIMARY_LABEL, SENSITIVITY_LABEL):
            values = table[label]
            lines.append(f"{label}: {int((values == 1).sum())} responders / "
                         f"{int((values == 0).sum())} non-responders / "
                         f"{int(values.isna().sum())} n/a")
        lines.append("arm: " + _counts(table["arm"]) + "; among the "
                     f"{int(table[PRIMARY_LABEL].notna().sum())} labelled: "
                     + _counts(table.loc[table[PRIMARY_LABEL].notna(), "arm"]))
        for session, volumes in self.volumes.items():
            lines.append(f"ses-{session} volumes per scan: {', '.join(map(str, volumes))}")
        lines.append(f"TR {self.repetition_time:g} s"
                     + (" (assumed: not stated in the repository; pass --tr)"
                        if self.tr_assumed else " (--tr)"))
        return lines


def _counts(values: pd.Series) -> str:
    counts = values.astype("string").fillna("n/a").value_counts()
    order = [k for k in ("medication", "placebo", "n/a") if k in counts] + sorted(
        k for k in counts.index if k not in ("medication", "placebo", "n/a"))
    return ", ".join(f"{int(counts[k])} {k}" for k in order)


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class StagesCohort(Result):
    """One session of the STAGES series as a cohort folder (resumable, subject by subject).

    Its identity is the settings (session, pipeline, parcellation, rows kept, TR, label rule)
    and the content of what it reads (git blob ids of the series and score files, the
    participants rows, the regions table); the clone's folder and commit are provenance.
    """

    kind: ClassVar[str] = "cohort"
    resumable: ClassVar[bool] = True

    repo: Path
    session: int
    pipeline: str
    parcellation: str
    regions: StagesRegions
    participants: pd.DataFrame
    repetition_time: float
    tr_assumed: bool
    name: str
    label_column: str | None = None
    description: dict[str, Any] = field(default_factory=dict, compare=False)
    progress: bool = field(default=True, compare=False)
    report: StagesReport = field(default_factory=lambda: StagesReport(Path(".")), compare=False)

    def config(self) -> dict[str, Any]:
        return {"built": "stages", "session": self.session, "pipeline": self.pipeline,
                "parcellation": self.parcellation, "atlas": self.regions.atlas,
                "rows": list(self.regions.rows), "repetition_time": self.repetition_time,
                "tr_assumed": self.tr_assumed, "label_column": self.label_column,
                "label_rules": LABEL_RULE_VERSION, "name": self.name}

    def inputs(self) -> dict[str, Any]:
        folder = f"data/timeseries/{self.pipeline}/{self.parcellation}/ses-{self.session}"
        used = {k: v for k, v in source_blobs(self.repo, ["data"]).items()
                if k.startswith(folder + "/") or k.count("/") == 1}  # + data/*.txt
        return {"sources": digest(used),
                "participants": digest(self.participants.to_csv(lineterminator="\n")),
                "regions": digest(self.regions.regions.to_csv(lineterminator="\n"))}

    def provenance(self) -> dict[str, Any]:
        return {"repository": str(self.repo), "commit": check_repository(self.repo)}

    def input_folders(self) -> list[Path]:
        return [self.repo]

    def default_folder(self) -> Path:
        raise ValueError("the STAGES cohort needs an output folder (--out)")

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        from tqdm import tqdm

        report, atlas, session = self.report, self.regions.atlas, self.session
        n_rows = PARCELLATIONS[self.parcellation]
        rows = list(self.regions.rows)
        keep_all = rows == list(range(n_rows))
        blobs = source_blobs(self.repo, [f"data/timeseries/{self.pipeline}/"
                                         f"{self.parcellation}/ses-{session}"])
        write_regions(staging, atlas, self.regions.regions)
        failures: list[str] = []
        done, skipped = report.done.setdefault(session, []), report.skipped.setdefault(session, [])
        subjects = list(self.participants.index)
        with tqdm(total=len(subjects), desc=f"STAGES ses-{session} ({atlas})", unit="scan",
                  disable=not self.progress) as bar:
            for participant_id in subjects:
                bar.update(1)
                if timeseries_path(staging, participant_id, atlas, "json").is_file():
                    skipped.append(participant_id)
                    continue
                source = series_path(self.repo, self.pipeline, self.parcellation, session,
                                     participant_id)
                try:
                    series = read_timeseries(source, participant_id, n_rows)
                except InvalidDataError as error:
                    failures.append(str(error))
                    continue
                relative = source.relative_to(self.repo).as_posix()
                sidecar = {"Atlas": atlas, "Session": f"ses-{session}", "Scan": SESSIONS[session],
                           "Sources": [relative], "SourceBlob": blobs.get(relative),
                           "NumberOfVolumes": int(series.shape[0]),
                           "RepetitionTimeAssumed": self.tr_assumed}
                write_timeseries(staging, participant_id, atlas,
                                 series if keep_all else series[:, rows],
                                 self.regions.regions["index"], self.repetition_time, sidecar)
                done.append(participant_id)
        write_participants(staging, self.participants)
        if failures:
            written = len(done) + len(skipped)
            raise InvalidDataError(
                f"{len(failures)} of {len(subjects)} ses-{session} scans could not be read: "
                + "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more"
                                             if len(failures) > 3 else "")
                + f". The {written} readable scans are kept in {staging} and the same command "
                "resumes there; fix the source (a --revision with the files repaired builds "
                "the cohort anew)")
        write_description(staging, self.name, atlas, label_column=self.label_column,
                          generated_by=[_generated_by()], **self.description)
        _write_participants_sidecar(staging, self.participants, self.label_column)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


# --------------------------------------------------------------------------- the fetch


def fetch_stages(out: str | Path, *, source: DataladSource = STAGES_REPOSITORY,
                 pipeline: str = DEFAULT_PIPELINE, parcellation: str = DEFAULT_PARCELLATION,
                 repetition_time: float | None = None, work_dir: str | Path | None = None,
                 regions_file: str | Path | None = None,
                 subcortical_file: str | Path | None = None, cortex_only: bool = False,
                 ses2_out: str | Path | None = None, include_ses2: bool = True,
                 cache_dir: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, probe_timeout: float = 10.0) -> StagesReport:
    """Clone izachp/psychosis-FC-prediction and write the STAGES cohort folders.

    Parameters
    ----------
    out : path-like
        The baseline cohort folder (labelled, one row per patient).
    source : DataladSource
        Where to clone from and the revision (default the pinned GitHub repository).
    pipeline : str
        One of ``PIPELINES`` (default the authors' main one).
    parcellation : {"419_parc", "328_parc"}
        The repository's parcellation (default ``419_parc``).
    repetition_time : float, optional
        Seconds per volume; default ``DEFAULT_TR``, recorded as an assumption.
    work_dir : path-like, optional
        Where the clone lives; default ``.<out>.work`` beside ``out``.
    regions_file, subcortical_file, cortex_only, cache_dir
        The regions table (:func:`~fmtc.acquire.stages.stages_regions`).
    ses2_out : path-like, optional
        The unlabelled 3-month cohort folder; default ``<out>-ses2``.
    include_ses2 : bool
        Write the 3-month cohort too.
    overwrite : bool
        Replace different cohorts already in ``out`` / ``ses2_out``.
    progress : bool
        Show progress bars.
    probe_timeout : float
        Seconds for the connectivity probe of a remote source.

    Returns
    -------
    StagesReport
    """
    out = Path(out)
    if pipeline not in PIPELINES:
        raise UsageError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
    if parcellation not in PARCELLATIONS:
        raise UsageError(f"unknown parcellation {parcellation!r}; choose one of "
                         f"{', '.join(PARCELLATIONS)}")
    tr_assumed = repetition_time is None
    tr = DEFAULT_TR if repetition_time is None else float(repetition_time)
    if not MIN_TR <= tr <= MAX_TR:
        raise UsageError(f"--tr {tr:g}: give seconds per volume, {MIN_TR:g}-{MAX_TR:g}")
    second = (Path(ses2_out) if ses2_out is not None else out.with_name(f"{out.name}-ses2")
              ) if include_ses2 else None
    if second is not None and second.resolve() == out.resolve():
        raise UsageError(f"the 3-month cohort needs a folder of its own, not {out}")
    for folder in (out, second):
        if folder is not None:
            check_output(folder, "cohort", overwrite=overwrite)  # before anything is cloned
    work = Path(work_dir) if work_dir is not None else out.parent / f".{out.name}.work"
    regions: StagesRegions | None = None
    if parcellation == "419_parc" or regions_file is None:  # fail on regions before cloning
        regions = stages_regions(parcellation, regions_file=regions_file,
                                 subcortical_file=subcortical_file, cortex_only=cortex_only,
                                 cache_dir=cache_dir)
    repo = install_repository(source, work / "psychosis-FC-prediction", probe_timeout)
    commit = check_repository(repo, source)
    if regions is None:  # 328_parc: its low-signal rows are listed in the repository
        regions = stages_regions(parcellation, regions_file=regions_file,
                                 subcortical_file=subcortical_file, cortex_only=cortex_only,
                                 low_signal_rows=read_low_signal_rows(repo / LOW_SIGNAL_FILE),
                                 cache_dir=cache_dir)
    for session in (1, 2) if second is not None else (1,):
        folder = repo / "data" / "timeseries" / pipeline / parcellation / f"ses-{session}"
        if not folder.is_dir():
            raise InvalidDataError(f"{source.name} at {commit[:12]} has no {pipeline}/"
                                   f"{parcellation} series for ses-{session}; available: "
                                   f"{', '.join(available_series(repo)) or 'none'}")
    participants, labels = stages_participants(repo)
    report = StagesReport(out=out, ses2_out=second, commit=commit, atlas=regions.atlas,
                          n_regions=len(regions.regions), repetition_time=tr,
                          tr_assumed=tr_assumed, participants=participants)
    common = _description(source, commit, pipeline, parcellation, regions, tr, tr_assumed)
    baseline = StagesCohort(
        repo, 1, pipeline, parcellation, regions, participants, tr, tr_assumed,
        name=f"STAGES first-episode psychosis, baseline ({pipeline}, {parcellation})",
        label_column=PRIMARY_LABEL, progress=progress, report=report,
        description={**common, "Session": "ses-1", "Scan": SESSIONS[1],
                     "Labels": labels, "SensitivityLabelColumn": SENSITIVITY_LABEL,
                     "SignConvention": SIGN_EVIDENCE,
                     "Arms": "medication / placebo: the patient's id appears in the "
                             "repository's <scale>_change_scores_<arm>.txt files; n/a in "
                             "neither",
                     "ThreeMonthScans": (f"in the unlabelled cohort {second.name}, for "
                                         "pretraining only" if second is not None
                                         else "not written")})
    _sessions_built(baseline, out, overwrite, report)
    if second is not None:
        subjects = read_subject_list(repo / "data" / "subjects_ses-2.txt")
        followup = pd.DataFrame({"scan": SESSIONS[2]},
                                index=pd.Index(subjects, name="participant_id"))
        ses2 = StagesCohort(
            repo, 2, pipeline, parcellation, regions, followup, tr, tr_assumed,
            name=f"STAGES first-episode psychosis, 3-month scans, UNLABELLED ({pipeline}, "
                 f"{parcellation})",
            label_column=None, progress=progress, report=report,
            description={**common, "Session": "ses-2", "Scan": SESSIONS[2], "Unlabelled": True,
                         "Purpose": "unlabelled pretraining only. No label and no outcome "
                                    "column: fmtc refuses this folder as a labelled cohort, so "
                                    "no 3-month scan can be a labelled row of "
                                    "cross-validation. Its patients are the same people as in "
                                    f"{out.name} (same participant_id): exclude a test fold's "
                                    "patients from pretraining when strict independence is "
                                    "wanted",
                         "LabelledCohort": out.name})
        _sessions_built(ses2, second, overwrite, report)
    report.problems = _check_folders(out, second)
    return report


def _sessions_built(result: StagesCohort, folder: Path, overwrite: bool,
                    report: StagesReport) -> None:
    found = materialise(result, folder, overwrite=overwrite, load=False)
    report.reused[result.session] = found.reused
    volumes = set()
    atlas = result.regions.atlas
    for participant_id in result.participants.index:
        sidecar = timeseries_path(folder, participant_id, atlas, "json")
        volumes.add(int(json.loads(sidecar.read_text())["NumberOfVolumes"]))
    report.volumes[result.session] = sorted(volumes)
    report.scans[result.session] = len(result.participants)


def _check_folders(out: Path, ses2: Path | None) -> list[str]:
    from fmtc.cohort.folder import CohortError, load_cohort, validate_cohort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unlabelled patients, short series: in the summary
        problems = validate_cohort(out)
        if ses2 is not None:
            try:
                load_cohort(ses2, require_label=False)
            except CohortError as error:
                problems += error.problems
    return problems


def _description(source: DataladSource, commit: str, pipeline: str, parcellation: str,
                 regions: StagesRegions, tr: float, tr_assumed: bool) -> dict[str, Any]:
    return {
        "SourceDatasets": [{"URL": source.url, "Commit": commit, "License": STAGES_LICENCE,
                            "DOI": STAGES_DOI}],
        "License": f"{STAGES_LICENCE} (series and scores, izachp/psychosis-FC-prediction)",
        "HowToAcknowledge": STAGES_CITATION,
        "ReferencesAndLinks": ["https://doi.org/10.1016/j.bpsgos.2025.100589",
                               "https://doi.org/10.1093/schizbullopen/sgaa015",
                               "https://github.com/izachp/psychosis-FC-prediction"],
        "Pipeline": pipeline, "Parcellation": parcellation,
        "SeriesOrientation": "source files: one row per region, one column per volume; "
                             "written transposed, [volumes, regions]",
        "RegionSources": regions.sources,
        "RegionOrder": ("rows 1-400: Schaefer 2018 400 parcels, 7 networks (CBIG order); rows "
                        "401-419: FreeSurfer aseg structures in meta-matching v2.0's order "
                        "(the authors feed these matrices to it unchanged); checked on the "
                        "data: each subcortical row correlates most with its contralateral "
                        "homologue" if parcellation == "419_parc" else
                        "as given by the regions table"),
        "RepetitionTime": tr,
        "RepetitionTimeSource": TR_ASSUMPTION if tr_assumed else "given with --tr",
    }


def _write_participants_sidecar(folder: Path, participants: pd.DataFrame,
                                label_column: str | None) -> None:
    """``participants.json``: what each column of participants.tsv means (BIDS)."""
    described: dict[str, Any] = {
        "participant_id": {"Description": "patient id of the STAGES repository (BIDS_ID)"},
        "scan": {"Description": "which scan the series is: baseline (ses-1) or 3-month "
                                "(ses-2)"},
        "arm": {"Description": "randomised arm", "Levels": {
            "medication": "antipsychotic", "placebo": "placebo",
            "n/a": "in neither per-arm score file of the repository"}},
    }
    for label, rule in LABEL_RULES.items():
        described[label] = {"Description": rule.definition,
                            "Levels": {"1": "responder", "0": "non-responder"}}
    for column, (scale, timepoint) in SCORE_COLUMNS.items():
        months = {4: 6, 5: 12}[timepoint]
        described[column] = {"Description": f"{scale.upper()} change at {months} months "
                                            "(follow-up minus baseline), z-scored within "
                                            "timepoint by the authors",
                             "Source": f"data/{scale}_change_scores.txt, timepoint {timepoint}"}
    write_json(folder / "participants.json",
               {c: described[c] for c in participants.columns if c in described}
               | {"participant_id": described["participant_id"]})


def _generated_by() -> dict[str, Any]:
    from fmtc import __version__

    return {"Name": "fmtc", "Version": __version__,
            "Description": "fmtc fetch stages (fmtc.cohort.stages)"}


# --------------------------------------------------------------------------- pretraining corpus


_CORPUS_LABEL = "__no_label__"  # a column no STAGES folder has: every participant loads


@dataclass(frozen=True, eq=False)
class StagesCorpus(Result):
    """Every STAGES scan, baseline and 3-month, as one **unlabelled** pretraining cohort.

    Each scan becomes a participant of its own (``sub-001ses1``, ``sub-001ses2``); the
    participants table holds ``patient`` and ``scan`` and no label or score, so masked-patch
    pretraining on the trial's own recordings (``fmtc pretrain --cohort``) never sees an
    outcome. Its identity is the content of the two cohort folders.

    Parameters
    ----------
    baseline, ses2 : Path
        The folders :func:`fetch_stages` wrote (``ses2`` may be None: baseline scans only).
    """

    kind: ClassVar[str] = "cohort"

    baseline: Path
    ses2: Path | None = None

    def _cohorts(self) -> list[tuple[int, Any]]:
        from fmtc.cohort.folder import load_cohort

        found = [(1, load_cohort(self.baseline, label=_CORPUS_LABEL, require_label=False))]
        if self.ses2 is not None:
            found.append((2, load_cohort(self.ses2, label=_CORPUS_LABEL, require_label=False)))
        return found

    def config(self) -> dict[str, Any]:
        return {"built": "stages-corpus", "sessions": [1] if self.ses2 is None else [1, 2]}

    def inputs(self) -> dict[str, Any]:
        return {f"ses-{session}": cohort.content_hash for session, cohort in self._cohorts()}

    def input_folders(self) -> list[Path]:
        return [p for p in (self.baseline, self.ses2) if p is not None]

    def default_folder(self) -> Path:
        return self.baseline.with_name(f"{self.baseline.name}-corpus")

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        rows, atlas, regions = [], None, None
        for session, cohort in self._cohorts():
            atlas = atlas or cohort.description["Atlas"]
            if regions is None:
                regions = cohort.regions
                write_regions(staging, atlas, regions)
            elif not regions["index"].equals(cohort.regions["index"]):
                raise InvalidDataError(f"{cohort.root}: its regions differ from "
                                       f"{self.baseline}'s; build both with one fetch")
            for participant_id, series in cohort.timeseries.items():
                scan = f"{participant_id}ses{session}"
                write_timeseries(staging, scan, atlas, series, regions["index"],
                                 cohort.repetition_time[participant_id],
                                 {"Scan": SESSIONS[session], "Patient": participant_id})
                rows.append({"participant_id": scan, "patient": participant_id,
                             "scan": SESSIONS[session]})
        write_participants(staging, pd.DataFrame(rows))
        write_description(staging, "STAGES: every scan, unlabelled (pretraining corpus)",
                          atlas, generated_by=[_generated_by()],
                          Sources=[str(p) for p in self.input_folders()])

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


def stages_corpus(baseline: str | Path, ses2: str | Path | None = None,
                  out: str | Path | None = None) -> Path:
    """The folder of :class:`StagesCorpus` (built once, then read back)."""
    corpus = StagesCorpus(Path(baseline), None if ses2 is None else Path(ses2))
    return materialise(corpus, out).folder
