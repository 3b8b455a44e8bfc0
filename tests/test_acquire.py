"""Acquire stage: DataLad fetch of a ds000208 look-alike, the A424 download and the labels."""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datalad_fixtures import (
    AROMA,
    ATLAS_DIR,
    DERIVATIVES_ID,
    RAW_ID,
    SHARED,
    make_derivatives_dataset,
    make_raw_dataset,
    region_values,
    require_shared,
    use_datalad_env,
    write_subject,
)

SUBJECTS = {"sub-21": 21, "sub-22": 22, "sub-23": 23}


def _fetch_cli(argv: list[str]) -> int:
    from fmtc.cli import fetch

    parser = argparse.ArgumentParser(prog="fmtc")
    fetch.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fetch", "ds000208", *argv])
    return args.handler(args)


def _annexed_here(clone: Path) -> list[str]:
    listing = subprocess.run(["git", "annex", "find", "--in=here"], cwd=clone, check=True,
                             capture_output=True, text=True).stdout
    return listing.split()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw + derivatives DataLad datasets (sub-21..23 with known region means)."""
    require_shared()
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_datalad_env(monkeypatch)
        root = tmp_path_factory.mktemp("sources")
        raw = make_raw_dataset(root / "ds000208")
        derivatives = make_derivatives_dataset(
            root / "ds000208-fmriprep",
            {pid: region_values(seed) for pid, seed in SUBJECTS.items()})
    return {"raw": raw, "derivatives": derivatives, "root": root}


@pytest.fixture()
def datalad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_datalad_env(monkeypatch)


def test_fetch_writes_known_region_means_labels_and_drops_bold(sources, tmp_path, datalad_env,
                                                               capsys):
    from fmtc.cohort.folder import load_cohort, timeseries_path

    out, work = tmp_path / "cohort", tmp_path / "work"
    status = _fetch_cli(["--out", str(out), "--subjects", *SUBJECTS, "--no-progress", "--jobs", "2",
                         "--raw-source", str(sources["raw"]),
                         "--derivatives-source", str(sources["derivatives"]),
                         "--atlas-dir", str(ATLAS_DIR), "--work-dir", str(work)])
    assert status == 0, capsys.readouterr().err
    assert "3 done, 0 skipped" in capsys.readouterr().out

    with pytest.warns(UserWarning, match="volumes"):
        cohort = load_cohort(out)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["LabelColumn"] == "Response"
    assert cohort.label_column == "Response"
    assert cohort.subject_ids == list(SUBJECTS)
    assert cohort.labels.tolist() == [0, 1, 0]  # ds000208: sub-21 0, sub-22 1, sub-23 0
    assert cohort.participants.loc["sub-22", "Drug"] == "placebo"
    assert np.allclose(cohort.participants["mean_fd"], 0.1)
    for pid, seed in SUBJECTS.items():
        np.testing.assert_array_equal(cohort.timeseries[pid], region_values(seed)[1:].T)
        sidecar = json.loads(timeseries_path(out, pid, "A424", "json").read_text())
        assert sidecar["RepetitionTime"] == 2.5 and sidecar["EmptyRegions"] == []

    clone = work / "ds000208-fmriprep"
    for pid in SUBJECTS:
        bold = clone / pid / "func" / f"{pid}_task-rest_{AROMA}.nii.gz"
        assert bold.is_symlink() and not bold.exists(), f"{pid}: BOLD content should be dropped"
    # Only the small confounds stay (the three subjects' identical confounds share one annex
    # object, which the two workers also got concurrently).
    assert {Path(p).name.split("_", 1)[1] for p in _annexed_here(clone)} <= {
        "task-rest_desc-confounds_timeseries.tsv", "task-rest_desc-confounds_timeseries.json"}


def test_failed_subject_is_reported_and_rerun_processes_only_it(sources, tmp_path, datalad_env):
    from fmtc.acquire.atlas import get_atlas
    from fmtc.acquire.datalad_source import DS000208_FMRIPREP, DS000208_RAW
    from fmtc.cohort.build import fetch_ds000208
    from fmtc.cohort.folder import load_cohort

    derivatives = make_derivatives_dataset(tmp_path / "deriv",
                                           {"sub-21": region_values(21), "sub-24": None})
    atlas = get_atlas("A424", atlas_dir=ATLAS_DIR)
    out = tmp_path / "cohort"
    kwargs = dict(subjects=["21", "sub-24"], progress=False,
                  raw_source=DS000208_RAW.override(str(sources["raw"]), None))
    report = fetch_ds000208(out, atlas, work_dir=tmp_path / "w1",
                            derivatives_source=DS000208_FMRIPREP.override(str(derivatives), None),
                            **kwargs)
    assert report.done == ["sub-21"]
    assert list(report.failed) == ["sub-24"]
    assert "sub-24" in report.failed["sub-24"] and "gzip" in report.failed["sub-24"]
    assert not report.complete
    assert not (out / "dataset_description.json").exists(), "a failed build must look incomplete"

    write_subject(derivatives, "sub-24", region_values(24))  # fix the source, then resume
    subprocess.run([str(Path(__import__("sys").executable).parent / "datalad"), "save", "-m",
                    "fix sub-24"], cwd=derivatives, check=True, capture_output=True)
    report = fetch_ds000208(out, atlas, work_dir=tmp_path / "w2",
                            derivatives_source=DS000208_FMRIPREP.override(str(derivatives), None),
                            **kwargs)
    assert report.done == ["sub-24"] and report.skipped == ["sub-21"] and not report.failed
    assert report.complete
    with pytest.warns(UserWarning):
        cohort = load_cohort(out)
    np.testing.assert_array_equal(cohort.timeseries["sub-24"], region_values(24)[1:].T)


def test_wrong_dataset_id_is_refused(sources, tmp_path, datalad_env, capsys):
    status = None
    from fmtc.acquire.datalad_source import DatasetMismatchError

    with pytest.raises(DatasetMismatchError, match=RAW_ID):
        status = _fetch_cli(["--out", str(tmp_path / "c"), "--subjects", "21", "--no-progress",
                             "--raw-source", str(sources["raw"]),
                             "--derivatives-source", str(sources["raw"]),  # the wrong dataset
                             "--atlas-dir", str(ATLAS_DIR), "--work-dir", str(tmp_path / "w")])
    assert status is None
    assert not (tmp_path / "c" / "dataset_description.json").exists()


def test_pinned_sources_carry_the_expected_ids_and_commits():
    from fmtc.acquire.datalad_source import DS000208_FMRIPREP, DS000208_RAW

    assert DS000208_RAW.dataset_id == RAW_ID
    assert DS000208_FMRIPREP.dataset_id == DERIVATIVES_ID
    assert DS000208_RAW.revision.startswith("f718509d")
    assert DS000208_FMRIPREP.revision.startswith("88375b79")
    local = DS000208_RAW.override("/some/clone", None)
    assert local.revision is None and local.dataset_id == RAW_ID


def test_unreachable_source_fails_fast_with_a_clear_message():
    from fmtc.acquire.datalad_source import SourceUnreachableError, check_reachable

    start = time.monotonic()
    with pytest.raises(SourceUnreachableError, match="--raw-source PATH"):
        check_reachable("https://127.0.0.1:9/OpenNeuroDatasets/ds000208.git", timeout=3)
    assert time.monotonic() - start < 5
    with pytest.raises(FileNotFoundError):
        check_reachable("/nonexistent/ds000208")


# --------------------------------------------------------------------------- atlas


@pytest.fixture()
def atlas_server(tmp_path):
    """Serve a copy of the A424 files on 127.0.0.1; yields (base_url, served folder)."""
    require_shared()
    served = tmp_path / "served"
    shutil.copytree(ATLAS_DIR, served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_a424_download_is_checksummed_and_cached(atlas_server, tmp_path):
    from fmtc.acquire.atlas import A424_SHA256, get_atlas

    base_url, _ = atlas_server
    cache = tmp_path / "cache"
    atlas = get_atlas("A424", cache_dir=cache, base_url=base_url)
    assert sorted(p.name for p in cache.iterdir()) == sorted(A424_SHA256)
    assert atlas.labels_img == cache / "A424+2mm.nii.gz" and len(atlas.regions) == 424
    # cached: a second call needs no server
    assert get_atlas("A424", cache_dir=cache, base_url="http://127.0.0.1:9").name == "A424"


def test_corrupted_a424_download_is_refused(atlas_server, tmp_path):
    from fmtc.acquire.atlas import AtlasChecksumError, download_a424

    base_url, served = atlas_server
    (served / "A424_Coordinates.txt").write_text("1 0 0 0\n")
    cache = tmp_path / "cache"
    with pytest.raises(AtlasChecksumError, match="A424_Coordinates.txt.*sha256"):
        download_a424(cache, base_url)
    assert not (cache / "A424_Coordinates.txt").exists()
    assert not any(p.name.endswith(".tmp") for p in cache.iterdir())


def test_a424_regions_from_crlf_coordinates_and_aa7_networks():
    require_shared()
    from fmtc.acquire.atlas import get_atlas

    regions = get_atlas("A424", atlas_dir=ATLAS_DIR).regions
    assert list(regions.columns) == ["index", "name", "x", "y", "z", "network"]
    assert regions["index"].tolist() == list(range(1, 425))
    assert regions.loc[0, ["name", "x", "y", "z"]].tolist() == ["R_V1", 14.0, -78.0, 4.0]
    assert regions.loc[423, "z"] == -46.0  # last row has no line ending
    assert regions["network"].nunique() == 7 and "Default Mode" in set(regions["network"])


def test_unknown_atlas_name_is_an_error():
    from fmtc.acquire.atlas import get_atlas

    with pytest.raises(ValueError, match="unknown atlas 'A999'"):
        get_atlas("A999")


# --------------------------------------------------------------------------- labels


def test_ds000208_labels_are_patients_with_integer_response():
    require_shared()
    from fmtc.cohort.participants import read_ds000208_participants

    table = read_ds000208_participants(SHARED / "ds000208" / "participants.tsv")
    assert len(table) == 56 and set(table["type"]) == {"patient"}
    assert str(table["Response"].dtype) == "Int64" and set(table["Response"]) == {0, 1}
    assert {"Drug", "study", "Age", "gender", "% Analsesia VAS"} <= set(table.columns)
    everyone = read_ds000208_participants(SHARED / "ds000208" / "participants.tsv",
                                          include_controls=True)
    assert len(everyone) == 76 and everyone.loc["sub-01", "Response"] is pd.NA


def test_generic_participants_reader_maps_the_positive_value():
    require_shared()
    from fmtc.cohort.participants import read_bids_participants

    table = read_bids_participants(SHARED / "ds000208" / "participants.tsv", "Drug",
                                   positive="duloxetine")
    assert table.loc["sub-01", "Drug"] is pd.NA  # controls carry n/a
    assert set(table["Drug"].dropna()) == {0, 1}
    with pytest.raises(ValueError, match="--positive"):
        read_bids_participants(SHARED / "ds000208" / "participants.tsv", "Drug")


def test_motion_threshold_excludes_and_records_mean_fd():
    from fmtc.cohort.participants import exclude_by_motion

    table = pd.DataFrame({"label": [0, 1]}, index=pd.Index(["sub-a", "sub-b"],
                                                            name="participant_id"))
    kept, excluded = exclude_by_motion(table, {"sub-a": 0.1, "sub-b": 0.9}, max_mean_fd=0.5)
    assert excluded == ["sub-b"] and kept["mean_fd"].tolist() == [0.1]


def test_get_content_retries_a_held_transfer_lock_and_names_the_reason(monkeypatch, tmp_path):
    import datalad.api as dl

    from fmtc.acquire import datalad_source

    lock = {"status": "error", "action": "get", "type": "file", "path": str(tmp_path / "a.nii.gz"),
            "error_message": "transfer already in progress, or unable to take transfer lock"}
    calls: list[list[str]] = []

    def flaky_get(path, **kwargs):
        calls.append(list(path))
        if len(calls) == 1:
            return [lock, {**lock, "status": "ok", "path": str(tmp_path / "b.tsv")}]
        return [{**lock, "status": "ok"}]

    monkeypatch.setattr(dl, "get", flaky_get)
    fetched = datalad_source.get_content(tmp_path, ["a.nii.gz", "b.tsv"], backoff=0.0)
    assert calls[1] == [str(tmp_path / "a.nii.gz")], "only the failed file is tried again"
    assert sorted(p.name for p in fetched) == ["a.nii.gz", "b.tsv"]

    monkeypatch.setattr(dl, "get", lambda path, **kwargs: [lock])
    with pytest.raises(OSError, match=r"a\.nii\.gz after 3 attempt\(s\): transfer already"):
        datalad_source.get_content(tmp_path, ["a.nii.gz"], attempts=3, backoff=0.0)
