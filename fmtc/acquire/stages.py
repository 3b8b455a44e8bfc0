"""STAGES source: the izachp/psychosis-FC-prediction repository and its region tables.

Pope et al. (2025), "Functional Coupling and Longitudinal Outcome Prediction in
First-Episode Psychosis", Biological Psychiatry: Global Open Science,
doi:10.1016/j.bpsgos.2025.100589, publish the parcellated resting-state series of the
STAGES trial (antipsychotic or placebo, Francey et al. 2020, doi:10.1093/schizbullopen/sgaa015)
in https://github.com/izachp/psychosis-FC-prediction (Apache-2.0). It is a plain git
repository (no annex, no DataLad id): DataLad clones it at a pinned commit
(``STAGES_REPOSITORY``) and :func:`check_repository` identifies it by the files it must
hold.

What the repository holds (commit ``411a2cad``, read from its README files and scripts):

* ``data/timeseries/<pipeline>/<parcellation>/ses-<1|2>/ts_sub-XXX_ses-N.txt``: one
  whitespace-separated table per scan, **one row per region and one column per volume**
  (``make_FC.R`` computes ``cor(t(ts))``); 419 rows for ``419_parc``, 332 for ``328_parc``
  (whose four low-signal pallidum rows, ``data/low_signal_regions.txt``, the authors drop).
  ``ses-1`` is the baseline scan, ``ses-2`` the 3-month scan.
* ``data/subjects_ses-<1|2>.txt``: the patients with usable scans (55 and 37).
* ``data/<bprs|sofas>_change_scores.txt``: ``BIDS_ID, timepoint, outcome``; timepoint 4 is
  the 6-month and 5 the 12-month change (``CPM.py``: "'4' or '5', (6/12 months
  post-baseline)"), z-scored within timepoint. The ``_medication`` / ``_placebo`` files hold
  the 6-month scores of each arm (z-scored within arm): they are read for arm membership only.
* No repetition time, and no region coordinates.

The ``419_parc`` rows are the Schaefer 2018 400-parcel 7-network parcels (rows 1-400, the
CBIG order) then 19 FreeSurfer aseg structures (rows 401-419) in the order of
``SUBCORTICAL_19``: the authors feed the 419 x 419 matrices unchanged to multilayer
meta-matching v2.0 (``scripts/meta-matching.py``), whose README (ThomasYeoLab/
Meta_matching_models, ``rs-fMRI/v2.0/README.md``) prescribes exactly this order. The
cortical centroids come from CBIG (``SCHAEFER_URL``, MIT); no public table of the 19
subcortical centroids is pinned here, so they are an explicit input
(:func:`read_subcortical_table`) or left out (cortex only).
"""

from __future__ import annotations

import logging
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmtc.acquire.datalad_source import (
    DataladSource,
    DatasetMismatchError,
    SourceUnreachableError,
    check_reachable,
    datalad_api,
    head_commit,
    run_git,
)
from fmtc.cohort.folder import REGION_COLUMNS
from fmtc.errors import InvalidDataError
from fmtc.storage import atomic_path, sha256_file

logger = logging.getLogger(__name__)

STAGES_REPOSITORY = DataladSource(
    url="https://github.com/izachp/psychosis-FC-prediction.git",
    revision="411a2cad274c84669f861175d27900bc460dd471",
    dataset_id="",  # plain git, no DataLad id: identified by EXPECTED_FILES instead
    name="izachp/psychosis-FC-prediction (Pope et al. 2025)")

STAGES_LICENCE = "Apache-2.0"
STAGES_CITATION = ("Pope IZ, Chopra S, Holmes A, Francey SM, O'Donoghue B, Cropley VL, et al. "
                   "Functional Coupling and Longitudinal Outcome Prediction in First-Episode "
                   "Psychosis. Biological Psychiatry: Global Open Science. 2025. "
                   "doi:10.1016/j.bpsgos.2025.100589")
STAGES_DOI = "10.1016/j.bpsgos.2025.100589"

EXPECTED_FILES = (
    "data/subjects_ses-1.txt",
    "data/subjects_ses-2.txt",
    "data/bprs_change_scores.txt",
    "data/sofas_change_scores.txt",
    "data/bprs_change_scores_medication.txt",
    "data/bprs_change_scores_placebo.txt",
    "data/sofas_change_scores_medication.txt",
    "data/sofas_change_scores_placebo.txt",
    "scripts/make_FC.R",
)
"""Files every version of the repository used here holds (its identity check)."""

PIPELINES = ("dt_AROMA_8Phys-4GMR_bpf", "dt_AROMA_8Phys_bpf")
"""Preprocessing pipelines; the first is the authors' main analysis (with global signal
regression, ``4GMR``)."""

PARCELLATIONS = {"419_parc": 419, "328_parc": 332}
"""Parcellation -> rows (regions) of each series file."""

LOW_SIGNAL_FILE = "data/low_signal_regions.txt"
"""``name row`` lines: rows of the ``328_parc`` files the authors drop (1-based)."""

SCHAEFER_COMMIT = "d1454a611f7de10a3b36665e6fbb3fb6c770d140"
SCHAEFER_FILE = "Schaefer2018_400Parcels_7Networks_order_FSLMNI152_2mm.Centroid_RAS.csv"
SCHAEFER_URL = ("https://raw.githubusercontent.com/ThomasYeoLab/CBIG/" + SCHAEFER_COMMIT
                + "/stable_projects/brain_parcellation/Schaefer2018_LocalGlobal/Parcellations/"
                "MNI/Centroid_coordinates/" + SCHAEFER_FILE)
"""The CBIG centroid table (``ROI Label, ROI Name, R, A, S``; MIT licence), pinned commit."""
SCHAEFER_LICENCE = "MIT (ThomasYeoLab/CBIG)"

YEO7 = ("Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default")
"""The 7 Yeo (2011) networks as Schaefer's parcel names spell them."""

SUBCORTICAL_19 = (
    "Left-Cerebellum-Cortex", "Left-Thalamus-Proper", "Left-Caudate", "Left-Putamen",
    "Left-Pallidum", "Brain-Stem", "Left-Hippocampus", "Left-Amygdala", "Left-Accumbens-area",
    "Left-VentralDC", "Right-Cerebellum-Cortex", "Right-Thalamus-Proper", "Right-Caudate",
    "Right-Putamen", "Right-Pallidum", "Right-Hippocampus", "Right-Amygdala",
    "Right-Accumbens-area", "Right-VentralDC")
"""Rows 401-419 of ``419_parc``: FreeSurfer aseg structures (Fischl et al. 2002), in the order
of meta-matching v2.0's README."""
SUBCORTICAL_NETWORK = "Subcortical"

_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_SCHAEFER_NAME = re.compile(r"^7Networks_(LH|RH)_([A-Za-z]+)_")


# --------------------------------------------------------------------------- the repository


def install_repository(source: DataladSource, path: str | Path,
                       probe_timeout: float = 10.0) -> Path:
    """Clone the repository with DataLad (or reuse an earlier clone) at ``source.revision``.

    Parameters
    ----------
    source : DataladSource
        URL or local path, and the revision to check out (``None``: the source's HEAD).
    path : path-like
        Where the clone lives (an earlier clone there is reused).
    probe_timeout : float
        Seconds for the connectivity probe of a remote URL.

    Returns
    -------
    Path
        The clone, checked out at the revision, with the expected files and no local changes.

    Raises
    ------
    fmtc.acquire.datalad_source.DatasetMismatchError
        The revision is not in the clone, the clone is not this repository, or its data
        were changed locally.
    """
    path = Path(path)
    if not (path / ".git").exists():
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not a git clone; remove it or choose "
                                  "another --work-dir")
        try:
            check_reachable(source.url, probe_timeout)
        except SourceUnreachableError as error:
            raise SourceUnreachableError(
                f"cannot reach {source.url} ({error.__cause__}); offline, pass --source PATH "
                "with a local clone of izachp/psychosis-FC-prediction") from error
        dl = datalad_api()
        try:
            dl.clone(source=source.url, path=str(path), result_renderer="disabled")
        except Exception as error:  # datalad raises IncompleteResultsError and others
            text = str(error).strip().splitlines()
            raise OSError(f"datalad clone of {source.name} from {source.url} failed: "
                          f"{text[0] if text else type(error).__name__}") from error
    if source.revision is not None:
        _checkout(path, source)
    check_repository(path, source)
    return path


def _checkout(path: Path, source: DataladSource) -> None:
    def resolve() -> str:
        return run_git(path, "rev-parse", "--verify", "--quiet", f"{source.revision}^{{commit}}",
                    check=False).strip()

    wanted = resolve()
    if not wanted:  # an earlier clone, made before the source gained the commit: update it
        run_git(path, "fetch", "--quiet", "origin", check=False)
        wanted = resolve()
    if not wanted:
        raise DatasetMismatchError(
            f"revision {source.revision} is not in the clone {path} of {source.url} (another "
            "repository, or a copy without that commit): pass a --revision it holds, or point "
            "--source at a clone holding it (and remove this clone)")
    if head_commit(path) != wanted:
        run_git(path, "checkout", "--quiet", "--detach", wanted)
    found = head_commit(path)
    if found != wanted:
        raise DatasetMismatchError(f"{path}: HEAD is {found}, not the requested revision "
                                   f"{source.revision} ({wanted}); remove {path} and run again")


def check_repository(path: str | Path, source: DataladSource = STAGES_REPOSITORY) -> str:
    """Return the clone's commit; raise unless it holds ``EXPECTED_FILES`` unchanged.

    Raises
    ------
    fmtc.acquire.datalad_source.DatasetMismatchError
        Naming the missing files (another repository) or the locally changed ones.
    """
    path = Path(path)
    commit = head_commit(path)
    missing = [f for f in EXPECTED_FILES if not (path / f).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DatasetMismatchError(
            f"{source.url} at {commit[:12]} is not izachp/psychosis-FC-prediction (it lacks "
            f"{missing[0]}{more}): point --source at {STAGES_REPOSITORY.url} or a clone of it "
            f"(an earlier clone in {path}: remove it)")
    changed = run_git(path, "status", "--porcelain", "--untracked-files=no", "--", "data",
                   check=False).splitlines()
    if changed:
        raise DatasetMismatchError(
            f"{path}: the clone's data differ from commit {commit[:12]} "
            f"({', '.join(line[3:] for line in changed[:3])}); the cohort must record what it "
            f"read. Run `git -C {path} checkout -- data`, or remove {path}")
    return commit


def series_path(repo: str | Path, pipeline: str, parcellation: str, session: int,
                participant_id: str) -> Path:
    """Path of one scan's series file in the repository."""
    return (Path(repo) / "data" / "timeseries" / pipeline / parcellation / f"ses-{session}"
            / f"ts_{participant_id}_ses-{session}.txt")


def available_series(repo: str | Path) -> list[str]:
    """``<pipeline>/<parcellation>`` folders holding series, for messages."""
    root = Path(repo) / "data" / "timeseries"
    return sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*") if p.is_dir())


def source_blobs(repo: str | Path, paths: list[str]) -> dict[str, str]:
    """git blob id of each tracked file under ``paths`` at HEAD (content identities, free)."""
    listing = run_git(repo, "ls-tree", "-r", "HEAD", "--", *paths)
    blobs = {}
    for line in listing.splitlines():
        meta, _, name = line.partition("\t")
        blobs[name] = meta.split()[2]
    return blobs


# --------------------------------------------------------------------------- its files


def read_subject_list(path: str | Path) -> list[str]:
    """Read ``subjects_ses-<N>.txt``: one ``sub-XXX`` per line.

    Raises
    ------
    InvalidDataError
        A line that is not a participant id, or a repeated id.
    """
    path = Path(path)
    ids: list[str] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not _SUBJECT.match(text):
            raise InvalidDataError(f"{path}: line {number} ({text!r}) is not a participant id "
                                   "like sub-001")
        if text in ids:
            raise InvalidDataError(f"{path}: {text} is listed twice (line {number})")
        ids.append(text)
    if not ids:
        raise InvalidDataError(f"{path}: lists no participant")
    return ids


def read_change_scores(path: str | Path) -> pd.DataFrame:
    """Read a ``<scale>_change_scores*.txt`` table into subjects x timepoints.

    Parameters
    ----------
    path : path-like
        Tab-separated ``BIDS_ID, timepoint, outcome`` rows.

    Returns
    -------
    DataFrame
        Indexed by participant id, one float column per timepoint (int), NaN where absent.

    Raises
    ------
    InvalidDataError
        A missing column, a bad id, a non-numeric score or a repeated (id, timepoint).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InvalidDataError(f"{path}: missing") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidDataError(f"{path}: not a tab-separated table ({error})") from None
    table.columns = [c.strip() for c in table.columns]
    needed = ["BIDS_ID", "timepoint", "outcome"]
    if [c for c in needed if c not in table.columns]:
        raise InvalidDataError(f"{path}: expected columns {needed}, found {list(table.columns)}")
    for row, (pid, timepoint, outcome) in enumerate(
            table[needed].itertuples(index=False), start=2):
        where = f"{path}: line {row} ({pid.strip()})"
        if not _SUBJECT.match(pid.strip()):
            raise InvalidDataError(f"{where}: BIDS_ID is not a participant id like sub-001")
        if not timepoint.strip().isdigit():
            raise InvalidDataError(f"{where}: timepoint {timepoint!r} is not an integer")
        try:
            value = float(outcome)
        except ValueError:
            raise InvalidDataError(f"{where}: outcome {outcome!r} is not a number") from None
        if not np.isfinite(value):
            raise InvalidDataError(f"{where}: outcome {outcome!r} is not a finite number")
    frame = pd.DataFrame({"participant_id": table["BIDS_ID"].str.strip(),
                          "timepoint": table["timepoint"].astype(int),
                          "outcome": table["outcome"].astype(float)})
    repeated = frame.duplicated(["participant_id", "timepoint"])
    if repeated.any():
        first = frame[repeated].iloc[0]
        raise InvalidDataError(f"{path}: {first['participant_id']} has two scores at "
                               f"timepoint {first['timepoint']}")
    wide = frame.pivot(index="participant_id", columns="timepoint", values="outcome")
    wide.columns.name = None
    return wide


def read_timeseries(path: str | Path, participant_id: str, n_regions: int) -> np.ndarray:
    """Read one series file (regions x volumes) as a ``[T, R]`` float64 array.

    Parameters
    ----------
    path : path-like
        ``ts_sub-XXX_ses-N.txt``: one whitespace-separated row per region.
    participant_id : str
        For messages.
    n_regions : int
        Rows the parcellation has.

    Raises
    ------
    InvalidDataError
        Naming the subject and the file: missing, wrong number of rows, rows of unequal
        length, a value that is not a number, or a non-finite value.
    """
    path = Path(path)
    where = f"{participant_id}: {path}"
    if not path.is_file():
        raise InvalidDataError(f"{where} is missing; the subject list names it, so the clone "
                               "is incomplete or the subject list is wrong")
    rows = [line.split() for line in _read_text(path, participant_id).splitlines()
            if line.strip()]
    if len(rows) != n_regions:
        raise InvalidDataError(f"{where} has {len(rows)} rows; this parcellation's files hold one "
                               f"row per region ({n_regions}), one column per volume")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InvalidDataError(f"{where}: row {number} (region {number}) has {len(row)} "
                                   f"values, row 1 has {width}; every region needs one value "
                                   "per volume")
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        for number, row in enumerate(rows, start=1):
            for column, token in enumerate(row, start=1):
                try:
                    float(token)
                except ValueError:
                    raise InvalidDataError(f"{where}: row {number} (region {number}), column "
                                           f"{column} (volume {column}): {token!r} is not a "
                                           "number") from None
        raise
    if not np.isfinite(values).all():
        row, column = (int(i[0]) + 1 for i in np.nonzero(~np.isfinite(values)))
        raise InvalidDataError(f"{where}: row {row} (region {row}), column {column} holds "
                               f"{values[row - 1, column - 1]}; every value must be finite")
    return np.ascontiguousarray(values.T)


def read_low_signal_rows(path: str | Path) -> list[int]:
    """Rows (1-based) named in ``low_signal_regions.txt`` (``name row`` per line)."""
    path = Path(path)
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise InvalidDataError(f"{path}: line {number} ({line.strip()!r}) is not "
                                   "'name row'")
        rows.append(int(parts[1]))
    return rows


# --------------------------------------------------------------------------- region tables


@dataclass(frozen=True)
class StagesRegions:
    """The regions of a STAGES cohort and how they map to the rows of the series files.

    Attributes
    ----------
    atlas : str
        Atlas name for the cohort's file names (letters and digits).
    regions : DataFrame
        Columns ``index, name, x, y, z, network``, one row per kept series row.
    rows : tuple of int
        0-based rows of the series files kept, in ``regions`` order.
    sources : dict
        Where the coordinates came from (files, URLs, sha256), for the description.
    """

    atlas: str
    regions: pd.DataFrame
    rows: tuple[int, ...]
    sources: dict[str, object]


def download_schaefer_centroids(folder: str | Path, url: str = SCHAEFER_URL,
                                timeout: float = 30.0) -> Path:
    """Download the CBIG Schaefer-400 centroid table into ``folder`` once.

    The file goes to a temporary name, is checked (:func:`read_schaefer_centroids`) and only
    then moved into place, so the cache never holds a partial table.

    Parameters
    ----------
    folder : path-like
        Cache folder (created if missing); a readable table already there is reused.
    url : str
        Where to download from (default the pinned CBIG raw URL).
    timeout : float
        Seconds before a silent connection is abandoned.

    Returns
    -------
    Path
        The table.
    """
    target = Path(folder) / SCHAEFER_FILE
    if target.is_file():
        try:
            read_schaefer_centroids(target)
            return target
        except InvalidDataError:
            logger.warning("%s is damaged; downloading it again", target)
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(tmp, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise OSError(f"could not download {url} ({error}); check the network, or pass "
                          f"--regions-file with a local copy of {SCHAEFER_FILE} (from "
                          "ThomasYeoLab/CBIG)") from error
        read_schaefer_centroids(tmp, origin=url)
    return target


def read_schaefer_centroids(path: str | Path, origin: str | None = None) -> pd.DataFrame:
    """Read the CBIG Schaefer-400 7-network centroid table (``ROI Label, ROI Name, R, A, S``).

    Returns
    -------
    DataFrame
        ``index`` 1-400, ``name`` (e.g. ``7Networks_LH_Vis_1``), ``x, y, z`` (MNI mm, RAS) and
        ``network`` (one of ``YEO7``, from the name).

    Raises
    ------
    InvalidDataError
        Naming the file (or ``origin``) and the first bad row.
    """
    where = origin or str(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidDataError(f"{where}: not a CSV table ({error})") from None
    table.columns = [c.strip() for c in table.columns]
    needed = ["ROI Label", "ROI Name", "R", "A", "S"]
    if list(table.columns[:5]) != needed:
        raise InvalidDataError(f"{where}: expected the CBIG centroid columns {needed}, found "
                               f"{list(table.columns)}; give {SCHAEFER_FILE}")
    if len(table) != 400:
        raise InvalidDataError(f"{where}: {len(table)} parcels, expected 400 (the 400-parcel "
                               "7-network table)")
    rows = []
    for number, (label, name, r, a, s) in enumerate(
            table[needed].itertuples(index=False), start=1):
        line = f"{where}: line {number + 1}"
        if label.strip() != str(number):
            raise InvalidDataError(f"{line}: ROI Label {label!r}, expected {number} (rows in "
                                   "label order)")
        match = _SCHAEFER_NAME.match(name.strip())
        hemisphere = "LH" if number <= 200 else "RH"
        if not match or match.group(1) != hemisphere or match.group(2) not in YEO7:
            raise InvalidDataError(f"{line}: ROI Name {name!r} is not a 7-network {hemisphere} "
                                   f"parcel name like 7Networks_{hemisphere}_Vis_1")
        try:
            xyz = [float(v) for v in (r, a, s)]
        except ValueError:
            raise InvalidDataError(f"{line}: R, A, S ({r!r}, {a!r}, {s!r}) must be numbers "
                                   "(MNI mm)") from None
        if not np.isfinite(xyz).all():
            raise InvalidDataError(f"{line}: R, A, S must be finite numbers (MNI mm)")
        rows.append((number, name.strip(), *xyz, match.group(2)))
    return pd.DataFrame(rows, columns=list(REGION_COLUMNS))


def read_subcortical_table(path: str | Path) -> pd.DataFrame:
    """Read the centroids of the 19 subcortical structures (``SUBCORTICAL_19``).

    Parameters
    ----------
    path : path-like
        CSV or TSV with columns ``name, x, y, z`` (MNI mm, any case, any row order); names as
        in ``SUBCORTICAL_19`` (``Left-Thalamus`` is accepted for ``Left-Thalamus-Proper``).

    Returns
    -------
    DataFrame
        ``index`` 401-419, ``name``, ``x, y, z``, ``network`` ``Subcortical``, in
        ``SUBCORTICAL_19`` order.

    Raises
    ------
    InvalidDataError
        A missing or unknown structure, a repeated one, or a coordinate that is not a finite
        number (placeholders such as ``n/a`` are refused).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InvalidDataError(f"{path}: subcortical table not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidDataError(f"{path}: not a CSV/TSV table ({error})") from None
    columns = {c.strip().lower(): c for c in table.columns}
    if [c for c in ("name", "x", "y", "z") if c not in columns]:
        raise InvalidDataError(f"{path}: needs columns name, x, y, z (MNI mm); found "
                               f"{list(table.columns)}")
    wanted = {_aseg_key(n): n for n in SUBCORTICAL_19}
    found: dict[str, tuple[float, float, float]] = {}
    for number, row in enumerate(table.itertuples(index=False), start=2):
        record = dict(zip(table.columns, row, strict=True))
        name = record[columns["name"]].strip()
        key = _aseg_key(name)
        if key not in wanted:
            raise InvalidDataError(f"{path}: line {number}: {name!r} is not one of the 19 "
                                   f"subcortical structures ({', '.join(SUBCORTICAL_19)})")
        if wanted[key] in found:
            raise InvalidDataError(f"{path}: line {number}: {name} is listed twice")
        text = [record[columns[c]].strip() for c in ("x", "y", "z")]
        try:
            xyz = tuple(float(v) for v in text)
        except ValueError:
            xyz = (np.nan,) * 3
        if not np.isfinite(xyz).all():
            raise InvalidDataError(f"{path}: line {number} ({name}): x, y, z = {text} are not "
                                   "finite numbers; placeholders are refused, give real MNI "
                                   "centroids (or build the cohort with --cortex-only)")
        found[wanted[key]] = xyz  # type: ignore[assignment]
    missing = [n for n in SUBCORTICAL_19 if n not in found]
    if missing:
        raise InvalidDataError(f"{path}: no row for {', '.join(missing)}; all 19 subcortical "
                               "structures need a centroid")
    return pd.DataFrame([(401 + i, name, *found[name], SUBCORTICAL_NETWORK)
                         for i, name in enumerate(SUBCORTICAL_19)], columns=list(REGION_COLUMNS))


def read_regions_table(path: str | Path) -> pd.DataFrame:
    """Read a complete fmtc regions table (``index, name, x, y, z, network``, tab-separated).

    Raises
    ------
    InvalidDataError
        A missing column, a repeated index or a coordinate that is not a finite number.
    """
    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype={"name": str, "network": str})
    missing = [c for c in REGION_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidDataError(f"{path}: a regions table needs columns {list(REGION_COLUMNS)}; "
                               f"missing {missing}")
    if not pd.api.types.is_integer_dtype(table["index"]) or table["index"].duplicated().any():
        raise InvalidDataError(f"{path}: 'index' must hold unique integers")
    xyz = table[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(xyz).all():
        bad = table["name"][~np.isfinite(xyz).all(axis=1)].tolist()
        raise InvalidDataError(f"{path}: x, y, z must be finite numbers (MNI mm); not for "
                               f"{bad[:5]}")
    return table.loc[:, list(REGION_COLUMNS)].astype({"x": float, "y": float, "z": float})


def stages_regions(parcellation: str, *, regions_file: str | Path | None = None,
                   subcortical_file: str | Path | None = None, cortex_only: bool = False,
                   low_signal_rows: list[int] | None = None,
                   cache_dir: str | Path | None = None,
                   schaefer_url: str = SCHAEFER_URL) -> StagesRegions:
    """The regions table of a parcellation, and the series rows it keeps.

    Parameters
    ----------
    parcellation : {"419_parc", "328_parc"}
        The repository's parcellation.
    regions_file : path-like, optional
        For ``419_parc``: a local copy of the CBIG centroid table (``SCHAEFER_FILE``;
        default: download it from ``SCHAEFER_URL`` into ``cache_dir``), or a complete
        regions table with one row per series row. For ``328_parc`` (its regions are not
        documented in the repository): a complete regions table, required.
    subcortical_file : path-like, optional
        Centroids of the 19 subcortical structures (:func:`read_subcortical_table`).
    cortex_only : bool
        Keep only the 400 Schaefer parcels (``419_parc`` without a subcortical table).
    low_signal_rows : list of int, optional
        1-based ``328_parc`` rows to drop (the repository's ``low_signal_regions.txt``).
    cache_dir : path-like, optional
        Download cache; default ``~/.cache/fmtc/atlases/schaefer2018``.
    schaefer_url : str
        Where the CBIG table is downloaded from.

    Returns
    -------
    StagesRegions
    """
    from fmtc.errors import UsageError

    if parcellation not in PARCELLATIONS:
        raise UsageError(f"unknown parcellation {parcellation!r}; choose one of "
                         f"{', '.join(PARCELLATIONS)}")
    n_rows = PARCELLATIONS[parcellation]
    if regions_file is not None and not _is_cbig_table(regions_file):
        if subcortical_file is not None or cortex_only:
            raise UsageError("--subcortical-file and --cortex-only go with a CBIG centroid table; "
                             f"{regions_file} is a complete regions table")
        return _complete_table(parcellation, Path(regions_file), n_rows, low_signal_rows or [])
    if parcellation != "419_parc":
        raise UsageError(f"{parcellation}: the repository does not say which atlas its rows are; "
                         f"give --regions-file with a complete regions table ({n_rows} rows: "
                         f"{', '.join(REGION_COLUMNS)}, tab-separated, in file row order)")
    if subcortical_file is None and not cortex_only:
        raise UsageError("419_parc rows 401-419 are 19 subcortical structures whose centroids "
                         "no pinned public table gives: pass --subcortical-file FILE (columns "
                         "name, x, y, z; see `fmtc fetch stages --help`), or --cortex-only to "
                         "keep the 400 Schaefer parcels")
    if subcortical_file is not None and cortex_only:
        raise UsageError("choose --subcortical-file or --cortex-only, not both")
    if regions_file is None:
        folder = (Path(cache_dir) if cache_dir is not None
                  else _default_cache() / "schaefer2018")
        regions_file = download_schaefer_centroids(folder, schaefer_url)
        origin = schaefer_url
    else:
        origin = f"local copy of {SCHAEFER_URL}"
    regions_file = Path(regions_file)
    cortex = read_schaefer_centroids(regions_file)
    sources: dict[str, object] = {
        "Cortex": {"Source": origin, "File": regions_file.name,
                   "Sha256": sha256_file(regions_file), "License": SCHAEFER_LICENCE,
                   "Citation": "Schaefer A, et al. Local-Global parcellation of the human "
                               "cerebral cortex from intrinsic functional connectivity MRI. "
                               "Cerebral Cortex 2018;28:3095-3114"}}
    if cortex_only:
        sources["Subcortical"] = ("left out (--cortex-only): rows 401-419 of the series are "
                                  "not in this cohort")
        return StagesRegions("Schaefer400x7", cortex, tuple(range(400)), sources)
    assert subcortical_file is not None
    subcortical = read_subcortical_table(subcortical_file)
    sources["Subcortical"] = {
        "File": Path(subcortical_file).name, "Sha256": sha256_file(subcortical_file),
        "Structures": "FreeSurfer aseg (Fischl et al. 2002), order of meta-matching v2.0",
        "Note": "centroids supplied by the user with --subcortical-file"}
    regions = pd.concat([cortex, subcortical], ignore_index=True)
    return StagesRegions("Schaefer400x7Aseg19", regions, tuple(range(419)), sources)


def _complete_table(parcellation: str, path: Path, n_rows: int,
                    low_signal_rows: list[int]) -> StagesRegions:
    regions = read_regions_table(path)
    dropped = sorted(r - 1 for r in low_signal_rows if 1 <= r <= n_rows)
    kept = [r for r in range(n_rows) if r not in dropped]
    if len(regions) == n_rows and dropped:
        regions = regions.iloc[kept].reset_index(drop=True)
    elif len(regions) != len(kept):
        raise InvalidDataError(f"{path}: {len(regions)} regions; {parcellation} files have "
                               f"{n_rows} rows" + (f" ({len(kept)} after dropping the low-signal "
                                                   f"rows {[r + 1 for r in dropped]})"
                                                   if dropped else ""))
    atlas = "Stages" + parcellation.split("_")[0]
    sources = {"Regions": {"File": path.name, "Sha256": sha256_file(path),
                           "Note": "complete regions table supplied with --regions-file"},
               **({"DroppedRows": [r + 1 for r in dropped],
                   "DroppedBecause": f"{LOW_SIGNAL_FILE} (excluded by the authors' make_FC.R)"}
                  if dropped else {})}
    return StagesRegions(atlas, regions, tuple(kept), sources)


def _is_cbig_table(path: str | Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            header = handle.readline()
    except FileNotFoundError:
        raise InvalidDataError(f"{path}: regions file not found") from None
    return "ROI Label" in header


def _aseg_key(name: str) -> str:
    return name.strip().lower().removesuffix("-proper")


def _default_cache() -> Path:
    from fmtc.acquire.atlas import default_cache_dir

    return default_cache_dir()


def _read_text(path: Path, participant_id: str | None = None) -> str:
    where = f"{participant_id}: {path}" if participant_id else str(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InvalidDataError(f"{where}: missing") from None
    except UnicodeDecodeError as error:
        from fmtc.storage import not_utf8

        raise InvalidDataError(f"{where}: {not_utf8(error)}") from None
