"""Atlases: a labels image plus a regions table, from pinned downloads or a local folder.

Every atlas, the real A424 and the simulator's own, is an :class:`Atlas`
obtained through :func:`get_atlas`.

A424 is the 424-region parcellation BrainLM was pretrained on (360 HCP-MMP
cortical, 36 subcortical and 28 cerebellar regions on the FSL MNI152 2 mm grid);
its files are downloaded from ``brainmaps/`` of
https://github.com/emergelab/hierarchical-brain-networks at a pinned commit and
checked against pinned sha256 sums. References: Akiki & Abdallah (2019),
"Determining the hierarchical architecture of the human brain using subject-level
clustering of functional networks", Scientific Reports 9:19290; Nemati et al.
(2020). Licence GPL-3.0.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fmtc.errors import InvalidDataError
from fmtc.storage import atomic_path, sha256_file

A424_BASE_URL = ("https://raw.githubusercontent.com/emergelab/hierarchical-brain-networks/"
                 "bbb460b7b476187072fd69de6a8a960f7d97ae89/brainmaps")
"""Pinned commit of the A424 files; :func:`download_a424` takes any other base URL."""

A424_LABELS_IMG = "A424+2mm.nii.gz"
A424_COORDINATES = "A424_Coordinates.txt"
A424_NAMES = "A424_Labels_AA-AAc_main_maps.csv"
A424_SHA256 = {
    A424_LABELS_IMG: "8478d7516a2bbf295989835d5033d03e4283143a2955c90428f634951702501b",
    A424_COORDINATES: "cdad8f8859c211b1400211ebbad455dedcc4399ac14fd614354fb71b110c892c",
    A424_NAMES: "2920dac75cc297e48a8444c8a58a50c8ae2244b664167ac13c573633e9842b58",
}
A424_LICENCE = "GPL-3.0"


class AtlasChecksumError(InvalidDataError):
    """An atlas file does not match its pinned sha256 sum."""


@dataclass(frozen=True)
class Atlas:
    """A parcellation: a NIfTI labels image and one row per region.

    Attributes
    ----------
    name : str
        Short name used in cohort file names (``atlas-<name>``), e.g. ``A424``.
    labels_img : Path
        3-D NIfTI image whose voxel values are region ``index`` values (0 = background).
    regions : DataFrame
        Columns ``index, name, x, y, z, network`` (MNI mm), in the order the
        cohort's time-series columns follow.
    licence : str
        Licence of the atlas files, for the cohort's provenance.
    """

    name: str
    labels_img: Path
    regions: pd.DataFrame
    licence: str = ""


def default_cache_dir() -> Path:
    """Return the default atlas cache folder, ``~/.cache/fmtc/atlases``."""
    return Path.home() / ".cache" / "fmtc" / "atlases"


def get_atlas(name: str, atlas_dir: str | Path | None = None,
              cache_dir: str | Path | None = None, *, base_url: str = A424_BASE_URL) -> Atlas:
    """Return an atlas by name.

    Parameters
    ----------
    name : {"A424", "SIM424"}
        ``A424``: the real atlas, read from ``atlas_dir`` when given, else
        downloaded once into ``cache_dir`` from ``base_url`` (sha256-checked).
        ``SIM424``: the simulator's atlas (:mod:`fmtc.acquire.simulated_atlas`).
    atlas_dir : path-like, optional
        Local folder holding the three A424 files (no network needed).
    cache_dir : path-like, optional
        Download cache; default :func:`default_cache_dir`.
    base_url : str
        Where the A424 files are downloaded from.

    Returns
    -------
    Atlas
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name == "A424":
        folder = Path(atlas_dir) if atlas_dir is not None else download_a424(cache, base_url)
        return read_a424(folder)
    if name == "SIM424":
        from fmtc.acquire.simulated_atlas import build_simulated_atlas

        return build_simulated_atlas(cache)
    raise ValueError(f"unknown atlas {name!r}; choose 'A424' (the real atlas) or 'SIM424' "
                     "(the simulator's), or build your own with "
                     "fmtc.acquire.atlas.atlas_from_files")


def download_a424(cache_dir: str | Path, base_url: str = A424_BASE_URL,
                  timeout: float = 30.0) -> Path:
    """Download the three A424 files into ``cache_dir`` unless already there and intact.

    Each file goes to a temporary name, is checked against its pinned sha256 and
    only then moved into place, so the cache never holds a partial or corrupted file.

    Parameters
    ----------
    cache_dir : path-like
        Destination folder (created if missing).
    base_url : str
        Folder URL; ``<base_url>/<file>`` is fetched.
    timeout : float
        Seconds before a silent connection is abandoned.

    Returns
    -------
    Path
        ``cache_dir``.

    Raises
    ------
    AtlasChecksumError
        A downloaded file does not match its pinned sum.
    OSError
        The server could not be reached.
    """
    cache_dir = Path(cache_dir)
    for filename, expected in A424_SHA256.items():
        target = cache_dir / filename
        if target.is_file() and sha256_file(target) == expected:
            continue
        url = f"{base_url.rstrip('/')}/{filename}"
        with atomic_path(target) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, \
                        open(tmp, "wb") as handle:
                    shutil.copyfileobj(response, handle)
            except (urllib.error.URLError, TimeoutError) as error:
                raise OSError(f"could not download {url} ({error}); check the network, or pass "
                              "--atlas-dir DIR (or set FMTC_ATLAS_DIR) to a folder holding "
                              f"{', '.join(A424_SHA256)}") from error
            _check_sha256(tmp, expected, origin=url)
    return cache_dir


def read_a424(atlas_dir: str | Path, verify: bool = True) -> Atlas:
    """Read the A424 atlas from a folder holding its three pinned files.

    Parameters
    ----------
    atlas_dir : path-like
        Folder with ``A424+2mm.nii.gz``, ``A424_Coordinates.txt`` and
        ``A424_Labels_AA-AAc_main_maps.csv``.
    verify : bool
        Check every file against its pinned sha256 sum.

    Returns
    -------
    Atlas
        Regions named by the csv's ``Nodes`` column, ``network`` the AA-7 network name.
    """
    atlas_dir = Path(atlas_dir)
    missing = [f for f in A424_SHA256 if not (atlas_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"atlas folder {atlas_dir} lacks {', '.join(missing)}; "
                                "download them with `fmtc fetch` or from "
                                f"{A424_BASE_URL}")
    if verify:
        for filename, expected in A424_SHA256.items():
            _check_sha256(atlas_dir / filename, expected, origin=str(atlas_dir / filename))
    names = read_a424_names(atlas_dir / A424_NAMES)
    regions = read_coordinates(atlas_dir / A424_COORDINATES).merge(
        names, on="index", how="left", validate="one_to_one")
    _check_regions_named(regions, atlas_dir / A424_NAMES)
    return Atlas(name="A424", labels_img=atlas_dir / A424_LABELS_IMG,
                 regions=regions.loc[:, ["index", "name", "x", "y", "z", "network"]],
                 licence=A424_LICENCE)


def read_coordinates(path: str | Path) -> pd.DataFrame:
    """Read a coordinates table: whitespace-separated ``index x y z`` rows, no header.

    CRLF line endings (as in ``A424_Coordinates.txt``) are accepted.

    Returns
    -------
    DataFrame
        Columns ``index`` (int) and ``x, y, z`` (float, MNI mm).
    """
    table = pd.read_csv(path, sep=r"\s+", header=None, names=["index", "x", "y", "z"],
                        engine="python")
    if table.isna().any().any() or not pd.api.types.is_integer_dtype(table["index"]):
        raise ValueError(f"{path}: expected rows of 'index x y z' (integer index, MNI mm)")
    if table["index"].duplicated().any():
        raise ValueError(f"{path}: duplicated region index "
                         f"{table['index'][table['index'].duplicated()].tolist()}")
    return table.astype({"x": float, "y": float, "z": float})


def read_a424_names(path: str | Path) -> pd.DataFrame:
    """Read ``A424_Labels_AA-AAc_main_maps.csv`` into ``index, name, network`` (AA-7 name)."""
    table = pd.read_csv(path, encoding="utf-8-sig")
    # The csv repeats "Abbreviation"/"Name" per network level; pandas suffixes them .1, .2...,
    # so the unsuffixed "Name" is the AA-7 network name.
    needed = ["A424", "Nodes", "Name"]
    if any(c not in table.columns for c in needed):
        raise ValueError(f"{path}: expected columns {needed} (the A424 labels csv)")
    return pd.DataFrame({"index": table["A424"].astype(int), "name": table["Nodes"].astype(str),
                         "network": table["Name"].astype(str)})


def atlas_from_files(name: str, labels_img: str | Path, coordinates: str | Path,
                     names: str | Path | None = None, licence: str = "") -> Atlas:
    """Build an atlas from any labels image with a coordinates table.

    Parameters
    ----------
    name : str
        Short name for cohort file names (letters and digits).
    labels_img : path-like
        3-D NIfTI labels image (0 = background).
    coordinates : path-like
        ``index x y z`` rows (see :func:`read_coordinates`).
    names : path-like, optional
        TSV with columns ``index`` and ``name`` (optionally ``network``);
        default names ``region-<index>`` and network ``n/a``.
    licence : str
        Licence of the atlas, for provenance.

    Returns
    -------
    Atlas
    """
    if not name.isalnum():
        raise ValueError(f"atlas name {name!r} must hold only letters and digits "
                         "(it becomes part of file names: atlas-<name>)")
    regions = read_coordinates(coordinates)
    if names is not None:
        table = pd.read_csv(names, sep="\t", dtype={"name": str, "network": str})
        if "index" not in table.columns or "name" not in table.columns:
            raise ValueError(f"{names}: needs columns 'index' and 'name'")
        keep = [c for c in ("index", "name", "network") if c in table.columns]
        regions = regions.merge(table[keep], on="index", how="left", validate="one_to_one")
        _check_regions_named(regions, Path(names))
    else:
        regions["name"] = [f"region-{i}" for i in regions["index"]]
    if "network" not in regions.columns:
        regions["network"] = "n/a"
    regions["network"] = regions["network"].fillna("n/a")
    return Atlas(name=name, labels_img=Path(labels_img),
                 regions=regions.loc[:, ["index", "name", "x", "y", "z", "network"]],
                 licence=licence)


def _check_regions_named(regions: pd.DataFrame, names_file: Path) -> None:
    unnamed = regions.loc[regions["name"].isna(), "index"].tolist()
    if unnamed:
        raise ValueError(f"{names_file}: no name for region index(es) {unnamed[:10]} "
                         "listed in the coordinates table")


def _check_sha256(path: Path, expected: str, origin: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise AtlasChecksumError(
            f"{origin}: sha256 {actual} does not match the pinned {expected}; the file is "
            "corrupted or not the pinned version. Delete it and download again, or point "
            "--atlas-dir at an intact copy.")
