"""A tiny git repository shaped like izachp/psychosis-FC-prediction, and region fixtures.

:func:`make_stages_repo` writes the files :mod:`fmtc.acquire.stages` reads (subject lists,
z-scored change scores, per-arm score files, ``ts_sub-XXX_ses-N.txt`` series of one row per
region and one column per volume, ``scripts/make_FC.R``) and commits them with plain ``git``.
:func:`write_cbig_centroids` writes a table in CBIG's centroid format (``ROI Label, ROI Name,
R, A, S``) with real parcel names and made-up coordinates; :func:`write_subcortical` the 19
subcortical rows. Fixture coordinates are not anatomy: tests only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

PIPELINE = "dt_AROMA_8Phys-4GMR_bpf"
SES1 = ("sub-001", "sub-002", "sub-003", "sub-004", "sub-005", "sub-006", "sub-007")
SES2 = ("sub-001", "sub-002", "sub-004", "sub-006")
N_VOLUMES = 24

BPRS = {  # 6-month (4) and 12-month (5) z-scored changes; sub-006, sub-007 have none
    "sub-001": (-1.2, -0.5), "sub-002": (0.3, 0.1), "sub-003": (-0.4, 0.8),
    "sub-004": (0.9, -0.2), "sub-005": (-0.1, None)}
SOFAS = {
    "sub-001": (1.5, 1.0), "sub-002": (-0.3, 0.2), "sub-003": (0.4, -0.6),
    "sub-004": (-1.1, 0.0), "sub-005": (0.2, 0.3), "sub-006": (0.1, None)}
MEDICATION = ("sub-001", "sub-002", "sub-003")
PLACEBO = ("sub-004", "sub-006")  # sub-005, sub-007: no arm

# Parcels per network, left then right hemisphere, as in the CBIG 400-parcel 7-network table.
_SCHAEFER_COUNTS = {
    "LH": (("Vis", 31), ("SomMot", 37), ("DorsAttn", 23), ("SalVentAttn", 22),
           ("Limbic", 13), ("Cont", 22), ("Default", 52)),
    "RH": (("Vis", 30), ("SomMot", 40), ("DorsAttn", 23), ("SalVentAttn", 25),
           ("Limbic", 13), ("Cont", 30), ("Default", 39)),
}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return stdout."""
    completed = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=fmtc tests",
         "-c", "user.email=tests@fmtc.invalid", "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True)
    return completed.stdout


def series_text(seed: int, n_regions: int = 419, n_volumes: int = N_VOLUMES) -> str:
    """A series file: ``n_regions`` rows of ``n_volumes`` values, separated by two spaces."""
    values = 300 + np.random.default_rng(seed).normal(size=(n_regions, n_volumes))
    return "\n".join("  ".join(f"{v:.7f}" for v in row) for row in values) + "\n"


def series_file(pipeline: str, parcellation: str, session: int, participant_id: str) -> str:
    """Relative path of a series file."""
    return (f"data/timeseries/{pipeline}/{parcellation}/ses-{session}/"
            f"ts_{participant_id}_ses-{session}.txt")


def _scores(table: dict[str, tuple[float | None, float | None]],
            only: tuple[str, ...] | None = None, timepoints: tuple[int, ...] = (4, 5)) -> str:
    lines = ["BIDS_ID\ttimepoint\toutcome"]
    for participant_id, values in table.items():
        if only is not None and participant_id not in only:
            continue
        for timepoint, value in zip((4, 5), values, strict=True):
            if value is not None and timepoint in timepoints:
                lines.append(f"{participant_id}\t{timepoint}\t{value}")
    return "\n".join(lines) + "\n"


def stages_files(parcellations: dict[str, int] | None = None) -> dict[str, str]:
    """Every file of the fixture repository: relative path -> text."""
    files = {
        "README.md": "Data and code supporting 'Functional Coupling ...' (fixture)\n",
        "LICENSE": "Apache License 2.0 (fixture)\n",
        "scripts/make_FC.R": "conmat <- cor(t(ts))\n",
        "data/subjects_ses-1.txt": "\n".join(SES1),  # no final newline, as in the real file
        "data/subjects_ses-2.txt": "\n".join(SES2),
        "data/bprs_change_scores.txt": _scores(BPRS),
        "data/sofas_change_scores.txt": _scores(SOFAS),
        "data/low_signal_regions.txt": "aGP-rh 2\naGP-lh 4\n",
    }
    for scale, table in (("bprs", BPRS), ("sofas", SOFAS)):
        for arm, members in (("medication", MEDICATION), ("placebo", PLACEBO)):
            # z-scored within arm by the authors: other values than the main file
            shifted = {p: (None if v[0] is None else round(v[0] + 0.25, 3), None)
                       for p, v in table.items()}
            files[f"data/{scale}_change_scores_{arm}.txt"] = _scores(shifted, members, (4,))
    for parcellation, rows in (parcellations or {"419_parc": 419}).items():
        for session, subjects in ((1, SES1), (2, SES2)):
            for number, participant_id in enumerate(subjects):
                seed = 1000 * session + 10 * number + rows
                files[series_file(PIPELINE, parcellation, session, participant_id)] = (
                    series_text(seed, rows))
    return files


def commit_files(repo: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or, for None, delete) ``files`` in ``repo``, commit them; return the commit."""
    for relative, text in files.items():
        path = repo / relative
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def make_stages_repo(path: Path, parcellations: dict[str, int] | None = None) -> tuple[Path, str]:
    """Create the fixture repository (branch ``main``); return it and its commit."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    return path, commit_files(path, stages_files(parcellations), "STAGES look-alike")


def schaefer_names() -> list[str]:
    """The 400 parcel names in CBIG order (``7Networks_LH_Vis_1`` ...)."""
    names = []
    for hemisphere, counts in _SCHAEFER_COUNTS.items():
        for network, count in counts:
            names += [f"7Networks_{hemisphere}_{network}_{i}" for i in range(1, count + 1)]
    return names


def write_cbig_centroids(path: Path) -> Path:
    """A CBIG-format centroid table (real header and names, made-up coordinates)."""
    rng = np.random.default_rng(400)
    lines = ["ROI Label,ROI Name,R,A,S"]
    for index, name in enumerate(schaefer_names(), start=1):
        x = -abs(int(rng.integers(2, 70))) if "_LH_" in name else abs(int(rng.integers(2, 70)))
        lines.append(f"{index},{name},{x},{int(rng.integers(-100, 70))},"
                     f"{int(rng.integers(-40, 76))}")
    path.write_text("\n".join(lines) + "\n")
    return path


SUBCORTICAL_NAMES = (
    "Left-Cerebellum-Cortex", "Left-Thalamus-Proper", "Left-Caudate", "Left-Putamen",
    "Left-Pallidum", "Brain-Stem", "Left-Hippocampus", "Left-Amygdala", "Left-Accumbens-area",
    "Left-VentralDC", "Right-Cerebellum-Cortex", "Right-Thalamus-Proper", "Right-Caudate",
    "Right-Putamen", "Right-Pallidum", "Right-Hippocampus", "Right-Amygdala",
    "Right-Accumbens-area", "Right-VentralDC")


def write_subcortical(path: Path, rows: list[tuple[str, str, str, str]] | None = None) -> Path:
    """A subcortical table (``name x y z``, tab-separated; fixture coordinates)."""
    if rows is None:
        rows = [(name, str(-20 + i), str(-10 - i), str(i - 5))
                for i, name in enumerate(reversed(SUBCORTICAL_NAMES))]  # any order is read
    path.write_text("name\tx\ty\tz\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def make_page_repo(path: Path, n_subjects: int = 20, n_ses2: int = 8, n_volumes: int = 60,
                   seed: int = 0) -> tuple[Path, str]:
    """A larger look-alike for the real-trial page on the tiny profile: random scores.

    ``n_subjects`` baseline scans (the first ``n_ses2`` also at 3 months), two thirds with a
    6-month BPRS change, both arms; series of ``n_volumes`` volumes x 419 regions.
    """
    rng = np.random.default_rng(seed)
    ses1 = tuple(f"sub-{i:03d}" for i in range(1, n_subjects + 1))
    ses2 = ses1[:n_ses2]
    scored = ses1[: (2 * n_subjects) // 3]
    bprs = {p: (round(float(rng.normal()), 3), round(float(rng.normal()), 3)) for p in scored}
    sofas = {p: (round(float(rng.normal()), 3), None) for p in scored}
    medication, placebo = scored[0::2], scored[1::2]
    files = {
        "README.md": "Data and code supporting 'Functional Coupling ...' (fixture)\n",
        "LICENSE": "Apache License 2.0 (fixture)\n",
        "scripts/make_FC.R": "conmat <- cor(t(ts))\n",
        "data/subjects_ses-1.txt": "\n".join(ses1),
        "data/subjects_ses-2.txt": "\n".join(ses2),
        "data/bprs_change_scores.txt": _scores(bprs),
        "data/sofas_change_scores.txt": _scores(sofas),
        "data/low_signal_regions.txt": "aGP-rh 2\naGP-lh 4\n",
    }
    for scale, table in (("bprs", bprs), ("sofas", sofas)):
        for arm, members in (("medication", medication), ("placebo", placebo)):
            files[f"data/{scale}_change_scores_{arm}.txt"] = _scores(table, members, (4,))
    for session, subjects in ((1, ses1), (2, ses2)):
        for number, participant_id in enumerate(subjects):
            files[series_file(PIPELINE, "419_parc", session, participant_id)] = series_text(
                1000 * session + number, 419, n_volumes)
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    return path, commit_files(path, files, "STAGES look-alike for the page")
