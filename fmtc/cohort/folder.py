"""The cohort folder contract: one BIDS-derivative-style layout that every stage reads.

::

    <cohort>/dataset_description.json   # Name, DatasetType "derivative", Atlas; optional
                                        # LabelColumn, GeneratedBy, provenance
    <cohort>/participants.tsv           # participant_id first, label column(s) 0/1/n/a, covariates
    <cohort>/atlas-<Atlas>_regions.tsv  # index, name, x, y, z (MNI mm), network
    <cohort>/sub-<id>/func/sub-<id>_task-rest_atlas-<Atlas>_timeseries.tsv
                                        # header: region `index` per column; T rows x R columns
    <cohort>/sub-<id>/func/sub-<id>_task-rest_atlas-<Atlas>_timeseries.json  # RepetitionTime
    <cohort>/ground_truth.json          # simulated cohorts only

:func:`validate_cohort` lists every problem with the file or subject it concerns;
:func:`load_cohort` returns one validated, in-memory :class:`Cohort` or raises
:class:`CohortError` listing them all. The ``write_*`` functions are what the
simulator and the real-data builders use to fill a folder; every file is
written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.errors import InvalidDataError
from fmtc.storage import atomic_open, not_utf8, sha256_tree, write_json

MIN_TR, MAX_TR = 0.1, 10.0
"""Plausible fMRI repetition times (seconds); outside is an error (e.g. milliseconds)."""

FROZEN_ERROR, FROZEN_WARNING = 0.5, 0.1
"""Fractions of volumes identical to the one before that make a recording invalid / suspect."""

MIN_VOLUMES = 20
"""Fewer volumes than this is an error: not even one BrainLM patch."""

RECOMMENDED_VOLUMES = 200
"""Fewer volumes than this is valid; windows are padded (see :mod:`fmtc.preprocess.transforms`)."""

REGION_COLUMNS = ("index", "name", "x", "y", "z", "network")
DEFAULT_LABEL_COLUMN = "label"
_PARTICIPANT_ID = re.compile(r"^sub-[A-Za-z0-9]+$")


class CohortError(InvalidDataError):
    """A cohort folder breaks the contract; ``problems`` lists every violation.

    The message is one line: the first problems, paths relative to the cohort folder, and
    how to list them all (``fmtc cohort validate``) when some are left out.
    """

    def __init__(self, root: Path, problems: list[str]):
        self.root = root
        self.problems = problems
        super().__init__(_one_line_summary(root, problems))


MESSAGE_PROBLEMS = 300
"""Characters of problems a :class:`CohortError` message shows before "and N more"."""


def _one_line_summary(root: Path, problems: list[str]) -> str:
    """``cohort ROOT is not valid, N problems: first; second; and K more: <how to list>``."""
    root_text = str(root)
    if len(problems) == 1 and problems[0].startswith(f"{root_text}: "):
        return f"cohort {problems[0]}"  # the folder itself: missing, or a file
    shown: list[str] = []
    for problem in problems:
        short = problem.removeprefix(f"{root_text}: ")
        short = re.sub(rf"(^|\s){re.escape(root_text)}/", r"\1", short)  # paths in the cohort
        short = " ".join(short.split())  # one line, whatever the problem held
        short = short if len(short) <= 160 else f"{short[:157]}..."
        if shown and sum(len(p) + 2 for p in shown) + len(short) > MESSAGE_PROBLEMS:
            break
        shown.append(short)
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    text = f"cohort {root} is not valid, {count}: {'; '.join(shown)}"
    left = len(problems) - len(shown)
    if left:
        text += f"; and {left} more: `fmtc cohort validate {root}` lists them all"
    return text


@dataclass(frozen=True)
class Cohort:
    """A validated cohort: regions, labelled participants and their time series.

    Attributes
    ----------
    root : Path
        The cohort folder.
    description : dict
        ``dataset_description.json``.
    regions : DataFrame
        The regions table, one row per column of every time series, in order.
    participants : DataFrame
        Participants used (a non-missing label), indexed by ``participant_id``.
    label_column : str
        The column of ``participants`` holding the 0/1 label.
    timeseries : dict of str to ndarray
        ``[T, R]`` float64 array per participant, in ``participants`` order.
    repetition_time : dict of str to float
        Seconds per volume, per participant.
    content_hash : str
        sha256 over every file of the folder (names and bytes).
    ground_truth : dict or None
        The planted effects of a simulated cohort.
    """

    root: Path
    description: dict[str, Any]
    regions: pd.DataFrame
    participants: pd.DataFrame
    label_column: str
    timeseries: dict[str, np.ndarray]
    repetition_time: dict[str, float]
    content_hash: str
    ground_truth: dict[str, Any] | None = None
    excluded: list[str] = field(default_factory=list)

    def subset(self, participant_ids: list[str], why: str) -> Cohort:
        """The same cohort restricted to ``participant_ids`` (e.g. one drug arm).

        Its ``content_hash`` is the folder's hash combined with ``why`` and the kept ids, so
        results on a subset are never mistaken for results on the whole cohort (run and cache
        keys read it). ``participant_ids`` keep the cohort's order.
        """
        wanted = set(participant_ids)
        unknown = sorted(wanted - set(self.participants.index))
        if unknown:
            raise ValueError(f"cohort {self.root} has no participant(s) {unknown[:5]}")
        kept = [p for p in self.participants.index if p in wanted]
        digest = hashlib.sha256(f"{self.content_hash}|subset|{why}|{','.join(kept)}".encode())
        return dataclasses.replace(
            self, participants=self.participants.loc[kept],
            timeseries={p: self.timeseries[p] for p in kept},
            repetition_time={p: self.repetition_time[p] for p in kept},
            content_hash=digest.hexdigest())

    @property
    def name(self) -> str:
        """The dataset's ``Name``."""
        return str(self.description["Name"])

    @property
    def atlas(self) -> str:
        """The atlas name (``Atlas`` in the description)."""
        return str(self.description["Atlas"])

    @property
    def is_simulated(self) -> bool:
        """True for cohorts written by :mod:`fmtc.simulate`."""
        return self.ground_truth is not None or bool(self.description.get("Simulated", False))

    @property
    def subject_ids(self) -> list[str]:
        """Participant ids, in table order."""
        return list(self.participants.index)

    @property
    def labels(self) -> np.ndarray:
        """0/1 labels as an int64 array, in ``subject_ids`` order."""
        if not self.label_column:
            raise ValueError(f"cohort {self.root} was loaded without a label column")
        return self.participants[self.label_column].to_numpy(dtype=np.int64)

    @property
    def xyz(self) -> np.ndarray:
        """Region centroids in MNI mm, ``[R, 3]`` float32 (BrainLM's ``xyz`` input)."""
        return self.regions[["x", "y", "z"]].to_numpy(dtype=np.float32)

    @property
    def n_regions(self) -> int:
        """Number of regions R."""
        return len(self.regions)

    def __repr__(self) -> str:
        if not self.label_column:
            return (f"Cohort({self.name!r}, atlas={self.atlas}, subjects={len(self.participants)}, "
                    f"unlabelled, regions={self.n_regions})")
        counts = np.bincount(self.labels, minlength=2)
        return (f"Cohort({self.name!r}, atlas={self.atlas}, subjects={len(self.participants)}, "
                f"{self.label_column}: {counts[1]} positive / {counts[0]} negative, "
                f"regions={self.n_regions}{', SIMULATED' if self.is_simulated else ''})")


# --------------------------------------------------------------------------- paths


def timeseries_path(root: Path, participant_id: str, atlas: str, suffix: str = "tsv") -> Path:
    """Path of one participant's time-series file (``suffix`` ``tsv`` or ``json``)."""
    stem = f"{participant_id}_task-rest_atlas-{atlas}_timeseries"
    return Path(root) / participant_id / "func" / f"{stem}.{suffix}"


def regions_path(root: Path, atlas: str) -> Path:
    """Path of the regions table of a cohort."""
    return Path(root) / f"atlas-{atlas}_regions.tsv"


# --------------------------------------------------------------------------- writing


def write_description(root: Path, name: str, atlas: str, *, label_column: str | None = None,
                      generated_by: list[dict[str, Any]] | None = None,
                      **extra: Any) -> None:
    """Write ``dataset_description.json`` (DatasetType ``derivative``)."""
    description: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "Atlas": atlas,
    }
    if label_column is not None:
        description["LabelColumn"] = label_column
    if generated_by:
        description["GeneratedBy"] = generated_by
    description.update(extra)
    write_json(Path(root) / "dataset_description.json", description)


def write_regions(root: Path, atlas: str, regions: pd.DataFrame) -> None:
    """Write the regions table (columns ``index, name, x, y, z, network``)."""
    missing = [c for c in REGION_COLUMNS if c not in regions.columns]
    if missing:
        raise ValueError(f"regions table lacks column(s) {missing}; need {list(REGION_COLUMNS)}")
    with atomic_open(regions_path(root, atlas)) as handle:
        regions.loc[:, list(REGION_COLUMNS)].to_csv(handle, sep="\t", index=False,
                                                     lineterminator="\n", float_format="%.4g")


def write_participants(root: Path, participants: pd.DataFrame) -> None:
    """Write ``participants.tsv``; ``participant_id`` becomes the first column, NaN ``n/a``."""
    indexed = participants.index.name == "participant_id"
    table = participants.reset_index() if indexed else participants
    if "participant_id" not in table.columns:
        raise ValueError("participants table needs a 'participant_id' column")
    ordered = ["participant_id"] + [c for c in table.columns if c != "participant_id"]
    with atomic_open(Path(root) / "participants.tsv") as handle:
        table.loc[:, ordered].to_csv(handle, sep="\t", index=False, na_rep="n/a",
                                     lineterminator="\n")


def write_timeseries(root: Path, participant_id: str, atlas: str, timeseries: np.ndarray,
                     region_index: Iterable[int], repetition_time: float,
                     sidecar: dict[str, Any] | None = None) -> None:
    """Write one participant's ``[T, R]`` series (7 significant digits) and JSON sidecar.

    The TSV is written before the sidecar, so a folder holding the sidecar holds
    a complete series: builders use the sidecar to decide a subject is done.
    """
    timeseries = np.asarray(timeseries, dtype=np.float64)
    region_index = [int(i) for i in region_index]
    if timeseries.ndim != 2 or timeseries.shape[1] != len(region_index):
        raise ValueError(f"{participant_id}: time series of shape {timeseries.shape} does not "
                         f"match {len(region_index)} regions")
    if not np.isfinite(timeseries).all():
        raise ValueError(f"{participant_id}: time series holds NaN or infinite values")
    with atomic_open(timeseries_path(root, participant_id, atlas, "tsv")) as handle:
        handle.write("\t".join(str(i) for i in region_index) + "\n")
        np.savetxt(handle, timeseries, fmt="%.7g", delimiter="\t")
    write_json(timeseries_path(root, participant_id, atlas, "json"),
               {"RepetitionTime": float(repetition_time), **(sidecar or {})})


# --------------------------------------------------------------------------- validation


def validate_cohort(root: str | Path, label: str | None = None) -> list[str]:
    """Return every problem of a cohort folder (an empty list when it is valid).

    Parameters
    ----------
    root : path-like
        The cohort folder.
    label : str, optional
        Label column; default ``LabelColumn`` of the description, else ``label``.

    Returns
    -------
    list of str
        One message per problem, each naming its file or subject.
    """
    try:
        _read(Path(root), label)
    except CohortError as error:
        return error.problems
    return []


def load_cohort(root: str | Path, label: str | None = None,
                require_label: bool = True) -> Cohort:
    """Read and validate a cohort folder.

    Participants whose label is ``n/a`` are left out with a warning naming them;
    series shorter than 200 volumes are accepted with a warning (windows are
    padded), shorter than 20 are an error.

    Parameters
    ----------
    root : path-like
        The cohort folder.
    label : str, optional
        Label column; default ``LabelColumn`` of the description, else ``label``.
    require_label : bool
        With False, a cohort without label column (e.g. an unlabelled
        pretraining cohort) loads with every participant; ``labels`` then raises.

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        Listing every problem found, each with its file or subject.
    """
    return _read(Path(root), label, require_label)


def _read(root: Path, label: str | None, require_label: bool = True) -> Cohort:
    problems: list[str] = []
    if not root.is_dir():
        what = ("is a file, not a cohort folder: give the folder that holds participants.tsv"
                if root.exists() else "folder does not exist")
        raise CohortError(root, [f"{root}: {what}"])
    description = _read_description(root, problems)
    atlas = description.get("Atlas") if description else None
    label_column = label or (description or {}).get("LabelColumn") or DEFAULT_LABEL_COLUMN
    regions = _read_regions(root, atlas, problems) if atlas else None
    # Without a readable description the label column is unknown: do not report it missing.
    participants = _read_participants(root, label_column, problems,
                                      require_label and (description is not None or bool(label)))
    if description is None or regions is None or participants is None:
        raise CohortError(root, problems)

    _check_subject_folders(root, participants, problems)
    if label_column not in participants.columns:  # only when require_label is False
        label_column = ""
    unlabelled = ([] if not label_column
                  else participants.index[participants[label_column].isna()].tolist())
    if unlabelled:
        warnings.warn(f"{root / 'participants.tsv'}: {len(unlabelled)} participant(s) without "
                      f"'{label_column}' left out: {', '.join(unlabelled)}", stacklevel=3)
    used = participants.drop(index=unlabelled)
    if used.empty:
        problems.append(f"{root / 'participants.tsv'}: no participant has a '{label_column}' label")
    elif label_column:
        used[label_column] = used[label_column].astype(np.int64)

    expected_header = [str(i) for i in regions["index"]]
    timeseries: dict[str, np.ndarray] = {}
    repetition_time: dict[str, float] = {}
    for participant_id in used.index:
        series, tr = _read_subject(root, participant_id, atlas, expected_header, problems)
        if series is not None and tr is not None:
            timeseries[participant_id] = series
            repetition_time[participant_id] = tr
    if label_column and not used.empty and used[label_column].nunique() < 2:
        only = int(used[label_column].iloc[0])
        # Valid as a folder (e.g. for encoding), but no classifier can be evaluated on it.
        warnings.warn(f"{root / 'participants.tsv'}: every labelled participant has "
                      f"'{label_column}' = {only} ({len(used)} participants); evaluating a "
                      "response model needs both classes: check the label column (--label, "
                      "plan key data.label) or the cohort", stacklevel=3)
    _check_recordings(timeseries, repetition_time, problems)
    ground_truth = None
    truth_file = root / "ground_truth.json"
    if truth_file.is_file():
        ground_truth = _read_json(truth_file, problems)
        if ground_truth is None:
            problems[-1] += (" (written by `fmtc simulate`; simulate the cohort again, or "
                             "delete the file for a cohort that is not simulated)")
    if problems:
        raise CohortError(root, problems)
    return Cohort(root=root, description=description, regions=regions, participants=used,
                  label_column=label_column, timeseries=timeseries,
                  repetition_time=repetition_time, content_hash=sha256_tree(root),
                  ground_truth=ground_truth, excluded=unlabelled)


def _read_description(root: Path, problems: list[str]) -> dict[str, Any] | None:
    path = root / "dataset_description.json"
    if not path.is_file():
        problems.append(f"{path}: missing (needs Name, DatasetType 'derivative', Atlas)")
        return None
    description = _read_json(path, problems)
    if description is None:
        return None
    before = len(problems)
    for key in ("Name", "DatasetType", "Atlas"):
        if not description.get(key):
            problems.append(f"{path}: required field '{key}' is missing")
    if description.get("DatasetType") not in (None, "derivative"):
        problems.append(f"{path}: DatasetType is {description['DatasetType']!r}, "
                        "expected 'derivative'")
    return description if len(problems) == before else None


def _read_regions(root: Path, atlas: str, problems: list[str]) -> pd.DataFrame | None:
    path = regions_path(root, atlas)
    if not path.is_file():
        problems.append(f"{path}: missing regions table for atlas {atlas!r} "
                        f"(columns {', '.join(REGION_COLUMNS)})")
        return None
    regions = read_bids_table(path, problems, dtype={"name": str, "network": str})
    if regions is None:
        return None
    missing = [c for c in REGION_COLUMNS if c not in regions.columns]
    if missing:
        problems.append(f"{path}: missing column(s) {missing}")
        return None
    if not pd.api.types.is_integer_dtype(regions["index"]) or regions["index"].duplicated().any():
        problems.append(f"{path}: 'index' must hold unique integers")
        return None
    xyz = regions[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    if not np.isfinite(xyz.to_numpy(dtype=float)).all():
        problems.append(f"{path}: x, y, z must be finite numbers (MNI mm) for every region")
        return None
    return regions.reset_index(drop=True)


def _read_participants(root: Path, label_column: str, problems: list[str],
                       require_label: bool = True) -> pd.DataFrame | None:
    path = root / "participants.tsv"
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    table = read_bids_table(path, problems, na_values=["n/a"], keep_default_na=False,
                        dtype={"participant_id": str})
    if table is None:
        return None
    if table.columns[0] != "participant_id":
        problems.append(f"{path}: the first column must be 'participant_id', "
                        f"found {table.columns[0]!r}")
        return None
    bad_ids = [p for p in table["participant_id"] if not _PARTICIPANT_ID.match(str(p))]
    if bad_ids:
        problems.append(f"{path}: participant_id values must look like 'sub-<label>': {bad_ids}")
    duplicated = table["participant_id"][table["participant_id"].duplicated()].tolist()
    if duplicated:
        problems.append(f"{path}: duplicated participant_id {duplicated}")
    if table.empty:
        problems.append(f"{path}: no participant rows (only a header); add one row per "
                        "participant")
        return None
    if label_column not in table.columns and not require_label:
        return table.set_index("participant_id") if not (bad_ids or duplicated) else None
    if label_column not in table.columns:
        problems.append(f"{path}: label column '{label_column}' not found "
                        f"(columns: {', '.join(table.columns)}); choose one with --label")
        return None
    values = pd.to_numeric(table[label_column], errors="coerce")
    bad = table.loc[values.notna() & ~values.isin([0, 1]) | values.isna()
                    & table[label_column].notna(), "participant_id"].tolist()
    if bad:
        problems.append(f"{path}: '{label_column}' must be 0, 1 or n/a; bad value for {bad}")
    table[label_column] = values
    return table.set_index("participant_id") if not (bad_ids or duplicated or bad) else None


def _check_subject_folders(root: Path, participants: pd.DataFrame, problems: list[str]) -> None:
    folders = {p.name for p in root.glob("sub-*") if p.is_dir()}
    listed = set(participants.index)
    for participant_id in sorted(listed - folders):
        problems.append(f"{participant_id}: listed in participants.tsv but folder "
                        f"{root / participant_id} is missing")
    for participant_id in sorted(folders - listed):
        problems.append(f"{participant_id}: folder {root / participant_id} has no row in "
                        "participants.tsv (add it, or remove the folder)")


def _read_subject(root: Path, participant_id: str, atlas: str, expected_header: list[str],
                  problems: list[str]) -> tuple[np.ndarray | None, float | None]:
    tsv = timeseries_path(root, participant_id, atlas, "tsv")
    sidecar = timeseries_path(root, participant_id, atlas, "json")
    if not (root / participant_id).is_dir():
        return None, None  # already reported by _check_subject_folders
    tr = _read_repetition_time(sidecar, problems)
    if not tsv.is_file():
        problems.append(f"{participant_id}: time series {tsv} is missing")
        return None, tr
    try:
        frame = pd.read_csv(tsv, sep="\t", dtype=np.float64, na_values=["n/a"],
                            keep_default_na=True)
    except (ValueError, pd.errors.ParserError) as error:
        problems.append(f"{participant_id}: {tsv} could not be read as numbers ({error})")
        return None, tr
    header = list(frame.columns)
    if header != expected_header:
        problems.append(f"{participant_id}: {tsv} has {len(header)} region columns; "
                        f"the regions table lists {len(expected_header)}"
                        + _first_difference(header, expected_header))
        return None, tr
    series = frame.to_numpy()
    if not np.isfinite(series).all():
        rows, cols = np.nonzero(~np.isfinite(series))
        problems.append(f"{participant_id}: {tsv} holds {rows.size} non-finite value(s), first at "
                        f"row {rows[0] + 2}, region {header[cols[0]]}")
        return None, tr
    if len(series) < MIN_VOLUMES:
        problems.append(f"{participant_id}: {tsv} has {len(series)} volumes; at least "
                        f"{MIN_VOLUMES} are needed")
        return None, tr
    if len(series) < RECOMMENDED_VOLUMES:
        warnings.warn(f"{participant_id}: {len(series)} volumes (< {RECOMMENDED_VOLUMES}); its "
                      "windows are padded with the region median (see fmtc.preprocess.transforms)",
                      stacklevel=4)
    return series, tr


def _read_repetition_time(sidecar: Path, problems: list[str]) -> float | None:
    participant_id = sidecar.name.split("_")[0]
    if not sidecar.is_file():
        problems.append(f"{participant_id}: sidecar {sidecar} is missing "
                        "(needs {{\"RepetitionTime\": seconds}})")
        return None
    content = _read_json(sidecar, problems, participant_id)
    if content is None:
        return None
    tr = content.get("RepetitionTime")
    if not isinstance(tr, int | float) or isinstance(tr, bool) or not math.isfinite(tr) or tr <= 0:
        problems.append(f"{participant_id}: {sidecar} lacks a positive 'RepetitionTime' "
                        f"(found {tr!r}); write it in seconds, e.g. {{\"RepetitionTime\": 2.5}}")
        return None
    if not MIN_TR <= tr <= MAX_TR:
        hint = (f"it looks like milliseconds: BIDS gives seconds, write {tr / 1000:g}"
                if tr >= 100 else f"expected {MIN_TR:g}-{MAX_TR:g} s for fMRI; check the sidecar")
        problems.append(f"{participant_id}: {sidecar} has RepetitionTime {tr:g} s; {hint}")
        return None
    return float(tr)


def _read_json(path: Path, problems: list[str], who: str | None = None) -> dict[str, Any] | None:
    """Read a JSON object; a problem (encoding, syntax, not an object) is listed, None returned."""
    prefix = f"{who}: {path}" if who else str(path)
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        problems.append(f"{prefix}: {not_utf8(error)}")
        return None
    except json.JSONDecodeError as error:
        problems.append(f"{prefix}: not valid JSON ({error})")
        return None
    except OSError as error:
        problems.append(f"{prefix}: cannot be read ({error.strerror})")
        return None
    if not isinstance(content, dict):
        problems.append(f"{prefix}: must hold a JSON object {{...}}, found a "
                        f"{type(content).__name__}")
        return None
    return content


def read_bids_table(path: Path, problems: list[str], **options: Any) -> pd.DataFrame | None:
    """Read a BIDS TSV; an unreadable, empty or non-UTF-8 file is listed, None returned."""
    try:
        return pd.read_csv(path, sep="\t", encoding="utf-8", **options)
    except UnicodeDecodeError as error:
        problems.append(f"{path}: {not_utf8(error)} (BIDS requires it)")
    except pd.errors.EmptyDataError:
        problems.append(f"{path}: the file is empty; it needs a header row and one row per "
                        "participant (tab-separated)")
    except (pd.errors.ParserError, ValueError) as error:
        problems.append(f"{path}: not a tab-separated table ({error})")
    except OSError as error:
        problems.append(f"{path}: cannot be read ({error.strerror})")
    return None


def _check_recordings(timeseries: dict[str, np.ndarray], repetition_time: dict[str, float],
                      problems: list[str]) -> None:
    """Cohort-level checks of the recordings: one TR, no flat, frozen or duplicated series."""
    by_tr: dict[float, list[str]] = {}
    for participant_id, tr in repetition_time.items():
        by_tr.setdefault(round(tr, 4), []).append(participant_id)
    if len(by_tr) > 1:
        groups = "; ".join(f"{tr:g} s: {_some(ids)}" for tr, ids in sorted(by_tr.items()))
        problems.append(f"RepetitionTime differs between subjects ({groups}); windows of 200 "
                        "volumes would then span different durations. Resample the series to "
                        "one TR, or build one cohort per TR")
    seen: dict[bytes, str] = {}
    for participant_id, series in timeseries.items():
        if np.ptp(series, axis=0).max() == 0:
            problems.append(f"{participant_id}: the time series is flat (every value constant, "
                            f"{series[0, 0]:g}); rerun or exclude this subject's preprocessing")
            continue
        frozen = float(np.mean(np.all(series[1:] == series[:-1], axis=1)))
        if frozen >= FROZEN_ERROR:
            problems.append(f"{participant_id}: {frozen:.0%} of its volumes repeat the volume "
                            "before (a frozen recording); rerun or exclude this subject's "
                            "preprocessing")
        elif frozen >= FROZEN_WARNING:
            warnings.warn(f"{participant_id}: {frozen:.0%} of its volumes repeat the volume "
                          "before (frozen segments); check its preprocessing", stacklevel=4)
        digest = hashlib.sha256(np.ascontiguousarray(series).tobytes()).digest()
        if digest in seen:
            problems.append(f"{participant_id}: its time series is identical to "
                            f"{seen[digest]}'s (a copied file?); each subject needs its own "
                            "recording")
        else:
            seen[digest] = participant_id


def _some(ids: list[str], shown: int = 5) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _first_difference(header: list[str], expected: list[str]) -> str:
    for position, (got, want) in enumerate(zip(header, expected, strict=False)):
        if got != want:
            return f"; column {position + 1} is region {got!r}, expected {want!r}"
    return ""
