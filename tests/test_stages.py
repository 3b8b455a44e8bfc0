"""``fmtc fetch stages``: the STAGES cohort from a git look-alike of izachp/psychosis-FC-prediction.

No network: the source is a tiny repository made with ``git`` (``stages_fixture``), the region
tables are fixtures in CBIG's format. One test reads the real repository when its mirror is
on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stages_fixture import (
    PIPELINE,
    SES1,
    SES2,
    commit_files,
    git,
    make_stages_repo,
    series_file,
    series_text,
    write_cbig_centroids,
    write_subcortical,
)

pytest.importorskip("datalad.api", reason="datalad is not installed")

REAL_MIRROR = Path("/work/.mirror/izachp+psychosis-FC-prediction/repo")
ATLAS = "Schaefer400x7Aseg19"


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("regions")
    return {"cbig": write_cbig_centroids(root / "cbig.csv"),
            "subcortical": write_subcortical(root / "subcortical.tsv")}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_stages_repo(tmp_path_factory.mktemp("source") / "psychosis-FC-prediction")


def _argv(out: Path, repo: Path, commit: str, regions: dict[str, Path], *extra: str,
          work: Path | None = None) -> list[str]:
    return ["fetch", "stages", "--out", str(out), "--source", str(repo), "--revision", commit,
            "--regions-file", str(regions["cbig"]), "--subcortical-file",
            str(regions["subcortical"]), "--no-progress",
            *(["--work-dir", str(work)] if work is not None else []), *extra]


def _fetch(out: Path, repo: Path, commit: str, regions: dict[str, Path], **options):
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cohort.stages import fetch_stages

    options.setdefault("regions_file", regions["cbig"])
    options.setdefault("subcortical_file", regions["subcortical"])
    return fetch_stages(out, source=STAGES_REPOSITORY.override(str(repo), commit),
                        progress=False, **options)


def _quiet_load(folder: Path, **options):
    from fmtc.cohort.folder import load_cohort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unlabelled patients, 24-volume fixture series
        return load_cohort(folder, **options)


@pytest.fixture(scope="module")
def built(source, regions, tmp_path_factory) -> dict[str, Path]:
    """One fetch through the command line, shared by the read-only tests."""
    from fmtc.cli import main

    root = tmp_path_factory.mktemp("built")
    repo, commit = source
    status = main(_argv(root / "cohort", repo, commit, regions))
    assert status == 0
    return {"out": root / "cohort", "ses2": root / "cohort-ses2", "root": root}


# --------------------------------------------------------------------------- the cohort


def test_fetch_writes_a_valid_labelled_baseline_cohort(built, source, capsys):
    from fmtc.cli import main
    from fmtc.cohort.folder import validate_cohort

    out = built["out"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate_cohort(out) == []
    assert main(["cohort", "validate", str(out)]) == 0
    assert "valid" in capsys.readouterr().out
    cohort = _quiet_load(out)
    # sub-006 and sub-007 have no 6-month BPRS score: unlabelled, left out of the labelled rows
    assert cohort.subject_ids == ["sub-001", "sub-002", "sub-003", "sub-004", "sub-005"]
    assert cohort.excluded == ["sub-006", "sub-007"]
    assert cohort.n_regions == 419 and cohort.atlas == ATLAS
    assert set(cohort.regions["network"]) == {"Vis", "SomMot", "DorsAttn", "SalVentAttn",
                                              "Limbic", "Cont", "Default", "Subcortical"}
    assert cohort.regions["name"].iloc[400] == "Left-Cerebellum-Cortex"
    assert cohort.regions["name"].iloc[-1] == "Right-VentralDC"
    # the series: the source's rows are regions, the cohort's columns are
    expected = np.loadtxt(source[0] / series_file(PIPELINE, "419_parc", 1, "sub-003")).T
    np.testing.assert_allclose(cohort.timeseries["sub-003"], expected, rtol=1e-6)
    assert set(cohort.repetition_time.values()) == {2.0}

    table = pd.read_csv(out / "participants.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == [
        "participant_id", "responder_bprs_6m", "responder_sofas_6m", "arm", "bprs_change_6m_z",
        "bprs_change_12m_z", "sofas_change_6m_z", "sofas_change_12m_z", "scan"]
    assert list(table["participant_id"]) == list(SES1)
    assert list(table["arm"]) == ["medication"] * 3 + ["placebo", "n/a", "placebo", "n/a"]
    assert set(table["scan"]) == {"baseline"}
    assert table.loc[4, "bprs_change_12m_z"] == "n/a"

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["LabelColumn"] == "responder_bprs_6m"
    assert description["SensitivityLabelColumn"] == "responder_sofas_6m"
    assert description["SourceDatasets"][0]["Commit"] == source[1]
    assert description["SourceDatasets"][0]["License"] == "Apache-2.0"
    assert "10.1016/j.bpsgos.2025.100589" in description["HowToAcknowledge"]
    assert description["RepetitionTime"] == 2.0
    assert "assumed" in description["RepetitionTimeSource"]
    assert description["Labels"]["responder_bprs_6m"]["Median"] == pytest.approx(-0.1)
    sidecar = json.loads((out / "sub-001/func/sub-001_task-rest_atlas-"
                          f"{ATLAS}_timeseries.json").read_text())
    assert sidecar["Session"] == "ses-1" and sidecar["RepetitionTimeAssumed"] is True
    assert sidecar["Sources"] == [series_file(PIPELINE, "419_parc", 1, "sub-001")]


def test_three_month_scans_are_never_labelled_rows(built, source):
    from fmtc.cli import main
    from fmtc.cohort.folder import CohortError
    from fmtc.cohort.stages import PRIMARY_LABEL, SENSITIVITY_LABEL

    out, ses2 = built["out"], built["ses2"]
    table = pd.read_csv(ses2 / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "scan"]  # no label, no outcome
    assert list(table["participant_id"]) == list(SES2) and set(table["scan"]) == {"3-month"}
    assert "LabelColumn" not in json.loads((ses2 / "dataset_description.json").read_text())
    for label in (None, PRIMARY_LABEL, SENSITIVITY_LABEL, "label"):
        with pytest.raises(CohortError, match="not found"):
            _quiet_load(ses2, label=label)
    assert main(["cohort", "validate", str(ses2)]) == 1
    pretraining = _quiet_load(ses2, require_label=False)
    assert pretraining.subject_ids == list(SES2) and not pretraining.label_column
    followup = np.loadtxt(source[0] / series_file(PIPELINE, "419_parc", 2, "sub-004")).T
    np.testing.assert_allclose(pretraining.timeseries["sub-004"], followup, rtol=1e-6)

    labelled = _quiet_load(out)
    ses2_series = [s.tobytes() for s in pretraining.timeseries.values()]
    for participant_id, series in labelled.timeseries.items():
        sidecar = json.loads((out / participant_id / "func" / f"{participant_id}_task-rest_"
                              f"atlas-{ATLAS}_timeseries.json").read_text())
        assert sidecar["Session"] == "ses-1" and sidecar["Scan"] == "baseline"
        assert series.tobytes() not in ses2_series


def test_a_second_identical_fetch_reuses_and_a_different_one_needs_overwrite(built, source,
                                                                             regions, capsys):
    from fmtc.cli import main

    repo, commit = source
    assert main(_argv(built["out"], repo, commit, regions)) == 0
    assert "already there" in capsys.readouterr().out
    assert main(_argv(built["out"], repo, commit, regions, "--tr", "2.5")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((built["out"] / "dataset_description.json").read_text())[
        "RepetitionTime"] == 2.0


def test_interrupted_fetch_resumes_without_rewriting_written_subjects(source, regions, tmp_path,
                                                                      monkeypatch):
    import fmtc.cohort.stages as stages
    from fmtc.cohort.folder import timeseries_path, validate_cohort

    repo, commit = source
    out = tmp_path / "cohort"
    real_write = stages.write_timeseries
    calls = []

    def failing_write(*args, **kwargs):
        if len(calls) == 3:
            raise RuntimeError("disk went away")
        calls.append(args[1])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(stages, "write_timeseries", failing_write)
    with pytest.raises(RuntimeError, match="disk went away"):
        _fetch(out, repo, commit, regions)
    assert not out.exists()
    [partial] = tmp_path.glob(".cohort.*.partial")
    written = {p: timeseries_path(partial, p, ATLAS, "tsv") for p in calls}
    assert list(written) == list(SES1[:3])
    stamps = {p: (f.stat().st_ino, f.stat().st_mtime_ns) for p, f in written.items()}

    monkeypatch.setattr(stages, "write_timeseries", real_write)
    report = _fetch(out, repo, commit, regions)
    assert report.skipped[1] == list(SES1[:3]) and report.done[1] == list(SES1[3:])
    for participant_id, (inode, mtime) in stamps.items():
        tsv = timeseries_path(out, participant_id, ATLAS, "tsv")
        assert (tsv.stat().st_ino, tsv.stat().st_mtime_ns) == (inode, mtime)
    assert not list(tmp_path.glob(".cohort.*.partial"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate_cohort(out) == [] and report.problems == []


def test_cortex_only_keeps_the_400_schaefer_rows(source, regions, tmp_path):
    repo, commit = source
    report = _fetch(tmp_path / "cohort", repo, commit, regions, subcortical_file=None,
                    cortex_only=True, include_ses2=False, repetition_time=2.5)
    assert report.ses2_out is None and not (tmp_path / "cohort-ses2").exists()
    cohort = _quiet_load(tmp_path / "cohort")
    assert cohort.atlas == "Schaefer400x7" and cohort.n_regions == 400
    expected = np.loadtxt(repo / series_file(PIPELINE, "419_parc", 1, "sub-002")).T[:, :400]
    np.testing.assert_allclose(cohort.timeseries["sub-002"], expected, rtol=1e-6)
    description = json.loads((tmp_path / "cohort/dataset_description.json").read_text())
    assert description["RepetitionTime"] == 2.5
    assert description["RepetitionTimeSource"] == "given with --tr"


# --------------------------------------------------------------------------- refusals


def test_another_repository_is_refused(source, regions, tmp_path, capsys):
    from fmtc.acquire.datalad_source import DatasetMismatchError
    from fmtc.cli import main

    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "--quiet", "--initial-branch=main")
    commit = commit_files(other, {"README.md": "another project\n"}, "unrelated")
    with pytest.raises(DatasetMismatchError, match="not izachp/psychosis-FC-prediction"):
        _fetch(tmp_path / "cohort", other, commit, regions)
    status = main(_argv(tmp_path / "cohort2", other, commit, regions))
    err = capsys.readouterr().err
    assert status == 1 and "data/subjects_ses-1.txt" in err and "--source" in err
    assert not (tmp_path / "cohort").exists() and not (tmp_path / "cohort2").exists()


def test_a_commit_the_clone_does_not_hold_is_refused(source, regions, tmp_path, capsys):
    from fmtc.acquire.datalad_source import DatasetMismatchError
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cli import main
    from fmtc.cohort.stages import fetch_stages

    repo, commit = source
    with pytest.raises(DatasetMismatchError, match="is not in"):
        _fetch(tmp_path / "a", repo, "0" * 40, regions)
    # the pinned default commit (the real repository's) is not in the look-alike: --source
    # alone keeps the pin
    pinned = dataclasses.replace(STAGES_REPOSITORY, url=str(repo))
    with pytest.raises(DatasetMismatchError, match=STAGES_REPOSITORY.revision):
        fetch_stages(tmp_path / "b", source=pinned, regions_file=regions["cbig"],
                     cortex_only=True, work_dir=tmp_path / "work-b", progress=False)
    status = main(["fetch", "stages", "--out", str(tmp_path / "b2"), "--source", str(repo),
                   "--regions-file", str(regions["cbig"]), "--cortex-only", "--no-progress"])
    assert status == 1 and STAGES_REPOSITORY.revision in capsys.readouterr().err
    # a reused clone is updated from its source when the source gained the commit...
    moving, first = make_stages_repo(tmp_path / "moving")
    work = tmp_path / "work"
    _fetch(tmp_path / "c", moving, first, regions, work_dir=work, include_ses2=False)
    newer = commit_files(moving, {"README.md": "a newer commit\n"}, "newer")
    report = _fetch(tmp_path / "d", moving, newer, regions, work_dir=work, include_ses2=False)
    assert report.commit == newer
    # ...and refused when neither holds it
    with pytest.raises(DatasetMismatchError, match=f"revision {'f' * 40} is not in the clone"):
        _fetch(tmp_path / "e", moving, "f" * 40, regions, work_dir=work, include_ses2=False)


def test_locally_changed_clone_data_are_refused(source, regions, tmp_path):
    from fmtc.acquire.datalad_source import DatasetMismatchError

    repo, commit = source
    work = tmp_path / "work"
    _fetch(tmp_path / "a", repo, commit, regions, work_dir=work, include_ses2=False)
    (work / "psychosis-FC-prediction" / "data" / "subjects_ses-1.txt").write_text("sub-001\n")
    with pytest.raises(DatasetMismatchError, match="checkout -- data"):
        _fetch(tmp_path / "b", repo, commit, regions, work_dir=work, include_ses2=False)


def test_a_bad_series_file_names_the_subject_and_file(regions, tmp_path, capsys):
    from fmtc.cli import main

    repo, _ = make_stages_repo(tmp_path / "source")
    text = series_text(7).splitlines()
    text[10] = text[10] + "  not-a-number"
    bad = series_file(PIPELINE, "419_parc", 1, "sub-004")
    commit = commit_files(repo, {bad: "\n".join(text) + "\n"}, "a broken row")
    status = main(_argv(tmp_path / "cohort", repo, commit, regions))
    err = capsys.readouterr().err
    assert status == 1
    assert "sub-004" in err and "ts_sub-004_ses-1.txt" in err and "row 11" in err
    assert not (tmp_path / "cohort").exists()
    # the readable subjects are kept beside it; a fixed commit (other content) builds anew
    [partial] = tmp_path.glob(".cohort.*.partial")
    assert len(list(partial.glob("sub-*/func/*.json"))) == len(SES1) - 1
    fixed = commit_files(repo, {bad: series_text(7)}, "fixed")
    assert main(_argv(tmp_path / "cohort", repo, fixed, regions)) == 0


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[:-1], "has 418 rows"),
    (lambda rows: [rows[0], rows[1] + "  1.0", *rows[2:]], "row 2 (region 2) has 25 values"),
    (lambda rows: [*rows[:2], rows[2].replace(rows[2].split()[4], "abc", 1), *rows[3:]],
     "row 3 (region 3), column 5 (volume 5): 'abc' is not a number"),
    (lambda rows: [*rows[:5], rows[5].replace(rows[5].split()[0], "nan", 1), *rows[6:]],
     "row 6 (region 6), column 1 holds nan"),
])
def test_read_timeseries_errors_name_subject_file_and_place(tmp_path, change, message):
    from fmtc.acquire.stages import read_timeseries
    from fmtc.errors import InvalidDataError

    path = tmp_path / "ts_sub-009_ses-1.txt"
    path.write_text("\n".join(change(series_text(3).splitlines())) + "\n")
    with pytest.raises(InvalidDataError) as caught:
        read_timeseries(path, "sub-009", 419)
    assert str(caught.value).startswith(f"sub-009: {path}") and message in str(caught.value)
    with pytest.raises(InvalidDataError, match="is missing"):
        read_timeseries(tmp_path / "absent.txt", "sub-009", 419)


# --------------------------------------------------------------------------- the labels


def test_median_split_sign_ties_and_missing():
    from fmtc.cohort.stages import median_split

    scores = pd.Series([0.0, 1.0, 1.0, 1.0, 2.0, np.nan], index=list("abcdef"))
    lower, median = median_split(scores, "lower")  # e.g. BPRS: a decrease is improvement
    assert median == 1.0
    assert lower.tolist() == [1, 0, 0, 0, 0, pd.NA]  # a score equal to the median is 0
    higher, _ = median_split(scores, "higher")  # e.g. SOFAS: an increase is improvement
    assert higher.tolist() == [0, 0, 0, 0, 1, pd.NA]
    even, median = median_split(pd.Series([-2.0, -1.0, 1.0, 2.0]), "lower")
    assert median == 0.0 and even.tolist() == [1, 1, 0, 0]
    empty, median = median_split(pd.Series([np.nan, np.nan]), "lower")
    assert median is None and empty.isna().all()
    with pytest.raises(ValueError, match="improvement"):
        median_split(scores, "better")


def test_stages_participants_labels_arms_and_scores(source):
    from fmtc.cohort.stages import stages_participants

    table, facts = stages_participants(source[0])
    # BPRS 6 m: -1.2, 0.3, -0.4, 0.9, -0.1 (median -0.1: sub-005 ties, so 0); none for 006/007
    assert table["responder_bprs_6m"].tolist() == [1, 0, 1, 0, 0, pd.NA, pd.NA]
    # SOFAS 6 m: 1.5, -0.3, 0.4, -1.1, 0.2, 0.1 (median 0.15); none for sub-007
    assert table["responder_sofas_6m"].tolist() == [1, 0, 1, 0, 1, 0, pd.NA]
    assert facts["responder_bprs_6m"] | {"Definition": ""} == {
        "Definition": "", "Score": "bprs_change_6m_z", "Responder": "bprs_change_6m_z < median",
        "Median": pytest.approx(-0.1), "Responders": 2, "NonResponders": 3, "Missing": 2}
    # the main file's scores, never the per-arm files' (z-scored within arm, shifted here)
    assert table.loc["sub-003", "bprs_change_6m_z"] == pytest.approx(-0.4)
    assert table.loc["sub-003", "bprs_change_12m_z"] == pytest.approx(0.8)
    assert np.isnan(table.loc["sub-005", "bprs_change_12m_z"])
    assert table["arm"].fillna("n/a").tolist() == ["medication"] * 3 + [
        "placebo", "n/a", "placebo", "n/a"]


def test_a_patient_in_both_arms_is_an_error(tmp_path):
    from fmtc.cohort.stages import stages_participants
    from fmtc.errors import InvalidDataError

    repo, _ = make_stages_repo(tmp_path / "source")
    (repo / "data/sofas_change_scores_placebo.txt").write_text(
        "BIDS_ID\ttimepoint\toutcome\nsub-001\t4\t0.5\n")
    with pytest.raises(InvalidDataError, match="sub-001 listed in both"):
        stages_participants(repo)


def test_score_table_errors_name_the_line(tmp_path):
    from fmtc.acquire.stages import read_change_scores
    from fmtc.errors import InvalidDataError

    path = tmp_path / "bprs_change_scores.txt"
    path.write_text("BIDS_ID\ttimepoint\toutcome\nsub-001\t4\t0.5\nsub-002\t4\tabc\n")
    with pytest.raises(InvalidDataError, match=r"line 3 \(sub-002\): outcome 'abc'"):
        read_change_scores(path)
    path.write_text("BIDS_ID\ttimepoint\toutcome\nsub-001\t4\t0.5\nsub-001\t4\t0.7\n")
    with pytest.raises(InvalidDataError, match="two scores at timepoint 4"):
        read_change_scores(path)


# --------------------------------------------------------------------------- the regions


def test_cbig_centroids_are_read_and_checked(regions, tmp_path):
    from fmtc.acquire.stages import (
        SCHAEFER_FILE,
        download_schaefer_centroids,
        read_schaefer_centroids,
    )
    from fmtc.errors import InvalidDataError

    table = read_schaefer_centroids(regions["cbig"])
    assert len(table) == 400 and table["index"].tolist() == list(range(1, 401))
    assert table.loc[0, "name"] == "7Networks_LH_Vis_1" and table.loc[0, "network"] == "Vis"
    assert table.loc[399, "network"] == "Default" and (table["x"][:200] < 0).all()
    # the download path (here a file:// URL), cached once
    cache = tmp_path / "cache"
    got = download_schaefer_centroids(cache, url=regions["cbig"].as_uri())
    assert got == cache / SCHAEFER_FILE and got.read_bytes() == regions["cbig"].read_bytes()
    assert download_schaefer_centroids(cache, url="file:///nowhere.csv") == got
    with pytest.raises(OSError, match="--regions-file"):
        download_schaefer_centroids(tmp_path / "empty", url=(tmp_path / "no.csv").as_uri())
    lines = regions["cbig"].read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:5], lines[5].replace("LH", "RH", 1), *lines[6:]]))
    with pytest.raises(InvalidDataError, match="line 6: ROI Name '7Networks_RH_Vis_5'"):
        read_schaefer_centroids(bad)
    bad.write_text("label,name,x,y,z\n" + "\n".join(lines[1:]))
    with pytest.raises(InvalidDataError, match="CBIG centroid columns"):
        read_schaefer_centroids(bad)


def test_subcortical_placeholders_and_gaps_are_refused(tmp_path):
    from fmtc.acquire.stages import SUBCORTICAL_19, read_subcortical_table
    from fmtc.errors import InvalidDataError

    rows = [(n, "1", "2", "3") for n in SUBCORTICAL_19]
    table = read_subcortical_table(write_subcortical(tmp_path / "ok.tsv", rows))
    assert table["name"].tolist() == list(SUBCORTICAL_19)
    assert table["index"].tolist() == list(range(401, 420))
    renamed = [("Left-Thalamus" if n == "Left-Thalamus-Proper" else n, *xyz)
               for n, *xyz in rows]
    assert read_subcortical_table(write_subcortical(tmp_path / "fs7.tsv", renamed))[
        "name"].tolist() == list(SUBCORTICAL_19)
    placeholder = [("Brain-Stem", "n/a", "n/a", "n/a") if r[0] == "Brain-Stem" else r
                   for r in rows]
    with pytest.raises(InvalidDataError, match="Brain-Stem.*placeholders are refused"):
        read_subcortical_table(write_subcortical(tmp_path / "na.tsv", placeholder))
    with pytest.raises(InvalidDataError, match="no row for Right-VentralDC"):
        read_subcortical_table(write_subcortical(tmp_path / "short.tsv", rows[:-1]))
    with pytest.raises(InvalidDataError, match="not one of the 19"):
        read_subcortical_table(write_subcortical(tmp_path / "x.tsv",
                                                 [*rows[:-1], ("Left-Ventricle", "1", "1", "1")]))


def test_419_parc_needs_subcortical_centroids_or_cortex_only(regions, source, tmp_path):
    from fmtc.acquire.stages import stages_regions
    from fmtc.errors import UsageError

    with pytest.raises(UsageError, match="--subcortical-file FILE.*--cortex-only"):
        stages_regions("419_parc", regions_file=regions["cbig"])
    with pytest.raises(UsageError, match="not both"):
        stages_regions("419_parc", regions_file=regions["cbig"],
                       subcortical_file=regions["subcortical"], cortex_only=True)
    with pytest.raises(UsageError, match="328_parc.*--regions-file"):
        stages_regions("328_parc")
    # nothing is cloned before the regions are settled
    with pytest.raises(UsageError):
        _fetch(tmp_path / "cohort", *source, regions, subcortical_file=None)
    assert not (tmp_path / ".cohort.work").exists()


def test_328_parc_drops_the_low_signal_rows_of_a_complete_table(tmp_path):
    from fmtc.acquire.stages import stages_regions

    table = pd.DataFrame({"index": range(1, 333), "name": [f"r{i}" for i in range(1, 333)],
                          "x": 1.0, "y": 2.0, "z": 3.0, "network": "n"})
    path = tmp_path / "regions.tsv"
    table.to_csv(path, sep="\t", index=False)
    result = stages_regions("328_parc", regions_file=path, low_signal_rows=[311, 312, 327, 328])
    assert result.atlas == "Stages328" and len(result.regions) == 328
    assert len(result.rows) == 328 and 310 not in result.rows and 311 not in result.rows
    assert "r311" not in set(result.regions["name"]) and "r332" in set(result.regions["name"])


def test_328_parc_fetch_from_a_complete_regions_table(tmp_path):
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cohort.stages import fetch_stages

    repo, commit = make_stages_repo(tmp_path / "source", {"328_parc": 332})
    table = pd.DataFrame({"index": range(1, 333), "name": [f"r{i}" for i in range(1, 333)],
                          "x": 1.0, "y": 2.0, "z": 3.0, "network": "n"})
    table.to_csv(tmp_path / "regions.tsv", sep="\t", index=False)
    fetch_stages(tmp_path / "cohort", source=STAGES_REPOSITORY.override(str(repo), commit),
                 parcellation="328_parc", regions_file=tmp_path / "regions.tsv",
                 include_ses2=False, progress=False)
    cohort = _quiet_load(tmp_path / "cohort")
    assert cohort.n_regions == 330  # the fixture's low-signal list names rows 2 and 4
    source_rows = np.loadtxt(repo / series_file(PIPELINE, "328_parc", 1, "sub-001"))
    kept = np.delete(source_rows, [1, 3], axis=0).T
    np.testing.assert_allclose(cohort.timeseries["sub-001"], kept, rtol=1e-6)


# --------------------------------------------------------------------------- the real repository


def test_fetch_from_the_real_repository_mirror(regions, tmp_path):
    """The real series and scores (if the mirror is on this machine), fixture coordinates."""
    if not (REAL_MIRROR / "HEAD").is_file():
        pytest.skip(f"no mirror of izachp/psychosis-FC-prediction at {REAL_MIRROR}")
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cohort.stages import fetch_stages

    pinned = dataclasses.replace(STAGES_REPOSITORY, url=str(REAL_MIRROR))
    report = fetch_stages(tmp_path / "stages", source=pinned, regions_file=regions["cbig"],
                          subcortical_file=regions["subcortical"], progress=False)
    assert report.commit == STAGES_REPOSITORY.revision and report.problems == []
    table = report.participants
    assert len(table) == 55 and report.scans == {1: 55, 2: 37}
    assert table["bprs_change_6m_z"].notna().sum() == 45
    assert table["responder_bprs_6m"].value_counts().to_dict() == {0: 23, 1: 22}
    assert table["responder_sofas_6m"].value_counts().to_dict() == {0: 25, 1: 24}
    assert table["arm"].fillna("n/a").value_counts().to_dict() == {
        "medication": 35, "placebo": 14, "n/a": 6}
    assert table.loc[table["responder_bprs_6m"].notna(), "arm"].notna().all()
    assert report.volumes == {1: [234], 2: [234]}
    cohort = _quiet_load(tmp_path / "stages")
    assert len(cohort.subject_ids) == 45 and cohort.n_regions == 419
