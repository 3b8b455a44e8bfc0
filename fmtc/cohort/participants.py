"""Participant labels and covariates from BIDS ``participants.tsv`` files.

:func:`read_ds000208_participants` reads OpenNeuro ds000208 (Tétreault et al.
2016, "Brain connectivity predicts placebo response across chronic pain
clinical trials", PLoS Biology 14:e1002570): the patients' ``Response`` (0/1)
is the label, as in Fan et al. (MICCAI 2025). :func:`read_bids_participants`
reads any BIDS participants table with a chosen label column.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc.cohort.folder import Cohort, read_bids_table
from fmtc.errors import InvalidDataError

DS000208_LABEL = "Response"
DS000208_COVARIATES = ("type", "study", "Drug", "Age", "gender", "% Analsesia VAS")
"""Kept beside the label; ``% Analsesia VAS`` is spelled as in the source."""


def read_ds000208_participants(path: str | Path, include_controls: bool = False) -> pd.DataFrame:
    """Read ds000208's ``participants.tsv``: ``Response`` (0/1) label and covariates.

    Parameters
    ----------
    path : path-like
        The dataset's ``participants.tsv``.
    include_controls : bool
        Keep the 20 healthy controls (their ``Response`` is missing).

    Returns
    -------
    DataFrame
        Indexed by ``participant_id``; ``Response`` as nullable integers 0/1,
        then :data:`DS000208_COVARIATES`; ``n/a`` becomes missing.
    """
    table = _read_tsv(path)
    needed = [DS000208_LABEL, *DS000208_COVARIATES]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InvalidDataError(f"{path}: not ds000208's participants.tsv, lacks column(s) "
                               f"{missing}")
    if not include_controls:
        table = table[table["type"] == "patient"]
    response = _as_binary(table[DS000208_LABEL], path, DS000208_LABEL)
    out = table.loc[:, list(DS000208_COVARIATES)].copy()
    out.insert(0, DS000208_LABEL, response)
    out["study"] = pd.to_numeric(out["study"], errors="coerce").astype("Int64")
    return out


def read_bids_participants(path: str | Path, label: str, positive: str | None = None,
                           covariates: Iterable[str] | None = None) -> pd.DataFrame:
    """Read any BIDS ``participants.tsv`` with a chosen binary label column.

    Parameters
    ----------
    path : path-like
        Tab-separated, ``participant_id`` column, ``n/a`` for missing values.
    label : str
        Column holding the label.
    positive : str, optional
        Value of ``label`` that means 1 (every other non-missing value is 0).
        Without it, the column must already hold 0/1.
    covariates : iterable of str, optional
        Columns kept beside the label; default every other column.

    Returns
    -------
    DataFrame
        Indexed by ``participant_id``, ``label`` first as nullable integers 0/1.
    """
    table = _read_tsv(path)
    if label not in table.columns:
        raise InvalidDataError(f"{path}: label column {label!r} not found (columns: "
                         f"{', '.join(table.columns)}); choose one with --label")
    column = table[label]
    if positive is not None:
        values = column.astype("string").str.strip()
        is_positive = (values == positive).fillna(False).to_numpy(dtype=bool)
        if not is_positive.any():
            raise InvalidDataError(f"{path}: no participant has {label} == {positive!r} (values: "
                             f"{sorted(values.dropna().unique().tolist())}); check --positive")
        binary = pd.Series(np.where(is_positive, 1, 0), index=table.index, dtype="Int64")
        binary[column.isna()] = pd.NA
    else:
        binary = _as_binary(column, path, label)
    keep = [c for c in (covariates if covariates is not None else table.columns) if c != label]
    absent = [c for c in keep if c not in table.columns]
    if absent:
        raise InvalidDataError(f"{path}: covariate column(s) {absent} not found")
    out = table.loc[:, keep].copy()
    out.insert(0, label, binary)
    return out


def exclude_by_motion(participants: pd.DataFrame, mean_fd: dict[str, float],
                      max_mean_fd: float | None) -> tuple[pd.DataFrame, list[str]]:
    """Add the ``mean_fd`` covariate and drop subjects above a threshold.

    Parameters
    ----------
    participants : DataFrame
        Indexed by ``participant_id``.
    mean_fd : dict of str to float
        Mean framewise displacement (mm) per participant.
    max_mean_fd : float, optional
        Exclusion threshold in mm; ``None`` keeps everyone.

    Returns
    -------
    participants : DataFrame
        With a ``mean_fd`` column, excluded rows removed.
    excluded : list of str
        Participant ids over the threshold.
    """
    out = participants.copy()
    out["mean_fd"] = pd.Series(mean_fd, dtype=float).reindex(out.index)
    if max_mean_fd is None:
        return out, []
    excluded = out.index[out["mean_fd"] > max_mean_fd].tolist()
    return out.drop(index=excluded), excluded


COVARIATE_ALIASES = {
    "study": ("study", "site"),
    "drug": ("drug", "treatment", "arm"),
    "age": ("age",),
    "sex": ("sex", "gender"),
    "mean_fd": ("mean_fd", "meanfd", "mean_framewise_displacement"),
}
"""Covariates of the covariates-only baseline: name -> accepted column names (any case)."""
CATEGORICAL_COVARIATES = ("study", "drug", "sex")


def find_covariate(participants: pd.DataFrame, name: str) -> str | None:
    """The column of ``participants`` holding covariate ``name`` (see :data:`COVARIATE_ALIASES`).

    Returns None when the table has none; matching ignores case.
    """
    lower = {str(c).lower(): c for c in participants.columns}
    for alias in COVARIATE_ALIASES[name]:
        if alias in lower:
            return lower[alias]
    return None


def covariate_design(participants: pd.DataFrame, where: str = "the cohort"
                     ) -> tuple[np.ndarray, list[str]]:
    """The covariates-only design matrix: study, drug, sex one-hot; age, mean FD numeric.

    Parameters
    ----------
    participants : DataFrame
        One row per subject, in the order of the returned rows.
    where : str
        What the table belongs to (the cohort folder), for the error message.

    Returns
    -------
    values : ndarray of shape (N, p)
        Unstandardised (the baseline standardises on training subjects). A missing numeric
        value is the column median; a missing category is its own level ``n/a``.
    names : list of str
        One-hot levels ``study=1``, ``drug=placebo``, ``sex=female`` and the numeric ``age``,
        ``mean_fd``, in the order study, drug, age, sex, mean_fd.

    Raises
    ------
    InvalidDataError
        When ``participants`` holds none of the covariates.
    """
    columns, names = [], []
    for name in COVARIATE_ALIASES:
        column = find_covariate(participants, name)
        if column is None:
            continue
        values = participants[column]
        if name in CATEGORICAL_COVARIATES:
            text = values.astype("string").fillna("n/a").str.strip()
            for level in sorted(text.unique()):
                columns.append((text == level).to_numpy(dtype=np.float64))
                names.append(f"{name}={level}")
        else:
            numeric = pd.to_numeric(values, errors="coerce").astype(np.float64)
            if numeric.isna().all():
                continue
            columns.append(numeric.fillna(numeric.median()).to_numpy())
            names.append(name)
    if not columns:
        accepted = sorted(a for aliases in COVARIATE_ALIASES.values() for a in aliases)
        raise InvalidDataError(f"{where}: participants.tsv has no covariate column (looked for "
                               f"{', '.join(accepted)}, any case; found "
                               f"{', '.join(map(str, participants.columns))})")
    return np.stack(columns, axis=1), names


def _read_tsv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InvalidDataError(f"{path}: participants table not found")
    problems: list[str] = []
    table = read_bids_table(path, problems, na_values=["n/a"], keep_default_na=False,
                            dtype={"participant_id": str})
    if table is None:
        raise InvalidDataError(problems[0])
    if "participant_id" not in table.columns:
        raise InvalidDataError(f"{path}: no 'participant_id' column (is it a BIDS "
                               "participants.tsv?)")
    duplicated = table["participant_id"][table["participant_id"].duplicated()].tolist()
    if duplicated:
        raise InvalidDataError(f"{path}: duplicated participant_id {duplicated}")
    return table.set_index("participant_id")


def _as_binary(column: pd.Series, path: str | Path, label: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = column.index[(values.isna() & column.notna()) | (values.notna() & ~values.isin([0, 1]))]
    if len(bad):
        raise InvalidDataError(f"{path}: {label!r} must hold 0, 1 or n/a; bad values for "
                         f"{bad.tolist()[:10]} (use --positive VALUE for a categorical column)")
    return values.astype("Int64")


def participant_groups(cohort: Cohort, scheme: str) -> list[Any]:
    """Per subject of ``cohort``, its group under ``scheme`` (``drug`` or ``study``)."""
    column = find_covariate(cohort.participants, scheme)
    if column is None:
        raise InvalidDataError(
            f"cohort {cohort.root}: participants.tsv has no {scheme} column (looked for "
            f"{', '.join(COVARIATE_ALIASES[scheme])}, any case); the {scheme!r} "
            "generalisation scheme needs it")
    return [None if pd.isna(v) else v for v in cohort.participants[column]]
