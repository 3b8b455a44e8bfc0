"""Parcellation: region means on the real A424 grid, resampling, confounds, bring your own."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datalad_fixtures import (
    AROMA,
    ATLAS_DIR,
    N_VOLUMES,
    SHARED,
    region_values,
    require_shared,
    write_bold,
    write_confounds,
    write_subject,
)


@pytest.fixture(scope="module")
def a424():
    require_shared()
    from fmtc.acquire.atlas import get_atlas

    return get_atlas("A424", atlas_dir=ATLAS_DIR)


def _tiny_atlas(tmp_path: Path):
    """Three regions on a 2 mm 10x10x10 grid; region 3 is one voxel (lost at 6 mm)."""
    import nibabel as nib

    from fmtc.acquire.atlas import Atlas

    labels = np.zeros((10, 10, 10), dtype=np.int16)
    labels[0:6, 0:6, 0:6] = 1
    labels[6:10, 0:10, 0:10] = 2
    labels[1, 8, 8] = 3
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    path = tmp_path / "tiny.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), path)
    regions = pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"], "x": [0.0] * 3,
                            "y": [0.0] * 3, "z": [0.0] * 3, "network": ["n"] * 3})
    return Atlas("TINY", path, regions), labels, affine


def test_a424_region_means_are_recovered_exactly(a424):
    import nibabel as nib

    from fmtc.preprocess.parcellate import parcellate

    values = region_values(seed=7)
    labels = nib.load(a424.labels_img)
    image = nib.Nifti1Image(values[np.asarray(labels.dataobj).astype(np.intp)], labels.affine)
    result = parcellate(image, a424, repetition_time=2.5)
    assert result.timeseries.shape == (N_VOLUMES, 424)
    np.testing.assert_array_equal(result.timeseries, values[1:].T)
    assert result.empty_regions == []


def test_tr_is_read_from_the_json_sidecar(a424, tmp_path):
    from fmtc.preprocess.parcellate import parcellate, read_repetition_time

    bold = tmp_path / f"sub-01_task-rest_{AROMA}.nii.gz"
    write_bold(bold, region_values(seed=1), repetition_time=0.8)
    assert read_repetition_time(bold) == 0.8
    assert parcellate(bold, a424).repetition_time == 0.8
    bold.with_name(bold.name.replace(".nii.gz", ".json")).unlink()
    with pytest.raises(FileNotFoundError, match="RepetitionTime"):
        read_repetition_time(bold)


def test_labels_are_resampled_nearest_to_the_data_grid(tmp_path):
    import nibabel as nib
    from nilearn.image import resample_img

    from fmtc.preprocess.parcellate import parcellate

    atlas, labels, affine = _tiny_atlas(tmp_path)
    atlas = type(atlas)(atlas.name, atlas.labels_img, atlas.regions.iloc[:2].reset_index(drop=True))
    target = np.diag([4.0, 4.0, 4.0, 1.0])  # data on a coarser grid
    on_data = resample_img(nib.load(atlas.labels_img), target_affine=target, target_shape=(5, 5, 5),
                           interpolation="nearest", force_resample=True, copy_header=True)
    index = np.asarray(on_data.dataobj).astype(np.intp)
    index[index == 3] = 0
    values = np.array([[0] * 30, list(range(30)), list(range(100, 130)), [0] * 30], float)
    image = nib.Nifti1Image(values[index], target)
    result = parcellate(image, atlas, repetition_time=2.0)
    np.testing.assert_allclose(result.timeseries, values[1:3].T)


def test_regions_without_voxels_are_an_error_naming_them(tmp_path):
    import nibabel as nib

    from fmtc.preprocess.parcellate import MissingRegionsError, parcellate

    atlas, _, _ = _tiny_atlas(tmp_path)
    image = nib.Nifti1Image(np.ones((3, 3, 3, 25)), np.diag([6.0, 6.0, 6.0, 1.0]))
    with pytest.raises(MissingRegionsError, match=r"1 region\(s\) of atlas TINY.*3 \(c\)"):
        parcellate(image, atlas, repetition_time=2.0)


def test_zero_signal_regions_are_warned_and_recorded(tmp_path):
    import nibabel as nib

    from fmtc.preprocess.parcellate import parcellate

    atlas, labels, affine = _tiny_atlas(tmp_path)
    values = np.zeros((4, 25))
    values[1] = 1 + np.arange(25)
    values[3] = 5.0
    with pytest.warns(UserWarning, match=r"zero at every time point.*\[2\]"):
        result = parcellate(nib.Nifti1Image(values[labels], affine), atlas, repetition_time=2.0)
    assert result.empty_regions == [2]


def test_mean_framewise_displacement_ignores_the_first_volume(tmp_path):
    from fmtc.preprocess.parcellate import mean_framewise_displacement

    path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    write_confounds(path, 30, mean_fd=0.25)
    assert mean_framewise_displacement(path) == pytest.approx(0.25)


def _participants(path: Path, rows: dict[str, str]) -> Path:
    table = pd.DataFrame({"participant_id": list(rows), "group": list(rows.values())})
    table.to_csv(path, sep="\t", index=False)
    return path


def _from_fmriprep_cli(argv: list[str]) -> int:
    from fmtc.cli.cohort_build import add_from_fmriprep

    parser = argparse.ArgumentParser(prog="fmtc cohort")
    add_from_fmriprep(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["from-fmriprep", *argv])
    return args.handler(args)


def test_from_fmriprep_builds_a_valid_cohort_with_a_chosen_label(tmp_path, capsys):
    require_shared()
    from fmtc.cohort.folder import load_cohort

    derivatives = tmp_path / "fmriprep"
    write_subject(derivatives, "sub-01", region_values(1))
    write_subject(derivatives, "sub-02", region_values(2))
    tsv = _participants(tmp_path / "participants.tsv",
                        {"sub-01": "responder", "sub-02": "non", "sub-03": "non"})
    status = _from_fmriprep_cli([str(derivatives), "--participants", str(tsv), "--label", "group",
                                 "--positive", "responder", "--out", str(tmp_path / "cohort"),
                                 "--atlas-dir", str(ATLAS_DIR), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = load_cohort(tmp_path / "cohort")
    assert cohort.label_column == "group" and cohort.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(cohort.timeseries["sub-02"], region_values(2)[1:].T)


def test_preproc_confounds_and_motion_exclusion(a424, tmp_path):
    from fmtc.cohort.build import BoldSelection, build_from_fmriprep

    derivatives = tmp_path / "fmriprep"
    selection = BoldSelection(space="MNI152NLin2009cAsym", desc="preproc", res="2",
                              strategy="simple")
    for pid, fd in (("sub-01", 0.1), ("sub-02", 0.2), ("sub-03", 0.9)):
        write_bold(derivatives / selection.bold(pid), region_values(int(pid[-1]), n_volumes=60))
        write_confounds(derivatives / selection.confounds(pid), 60, fd, seed=int(pid[-1]))
    tsv = _participants(tmp_path / "p.tsv", {"sub-01": "1", "sub-02": "0", "sub-03": "1"})
    report = build_from_fmriprep(derivatives, tsv, "group", tmp_path / "cohort", a424,
                                 selection=selection, max_mean_fd=0.5, progress=False)
    assert report.failed == {} and report.problems == []
    assert report.done == ["sub-01", "sub-02"] and list(report.excluded) == ["sub-03"]
    table = pd.read_csv(tmp_path / "cohort" / "participants.tsv", sep="\t")
    assert table["mean_fd"].tolist() == pytest.approx([0.1, 0.2])
    sidecar = json.loads((tmp_path / "cohort" / "sub-01" / "func" /
                          "sub-01_task-rest_atlas-A424_timeseries.json").read_text())
    assert sidecar["DenoiseStrategy"] == "simple"
    series = pd.read_csv(tmp_path / "cohort" / "sub-01" / "func" /
                         "sub-01_task-rest_atlas-A424_timeseries.tsv", sep="\t").to_numpy()
    confounds = pd.read_csv(derivatives / selection.confounds("sub-01"), sep="\t")
    residual = series - series.mean(axis=0)
    motion = confounds["trans_x"].to_numpy() - confounds["trans_x"].mean()
    assert np.abs(motion @ residual).max() < 1e-3 * np.abs(residual).sum(axis=0).max()


def test_example_a424_recording_loads_through_bring_your_own(a424, tmp_path):
    from fmtc.cohort.build import build_from_parcellated
    from fmtc.cohort.folder import load_cohort

    example = SHARED / "examples" / "A424_example_fMRI.dat"
    participants = pd.DataFrame({"label": [1]}, index=pd.Index(["sub-example"],
                                                               name="participant_id"))
    build_from_parcellated(tmp_path / "cohort", {"sub-example": example}, participants, "label",
                           a424, repetition_time=2.0, name="A424 example")
    with pytest.warns(UserWarning, match="99 volumes"):
        cohort = load_cohort(tmp_path / "cohort")
    assert cohort.timeseries["sub-example"].shape == (99, 424)
    np.testing.assert_allclose(cohort.timeseries["sub-example"], np.loadtxt(example), rtol=1e-6)


def test_a_table_with_the_wrong_number_of_regions_is_refused(a424, tmp_path):
    from fmtc.cohort.build import write_parcellated_subject

    with pytest.raises(ValueError, match=r"sub-x.*\(30, 10\).*424"):
        write_parcellated_subject(tmp_path, "sub-x", np.zeros((30, 10)), a424, 2.0)


def test_a_cohort_build_never_changes_an_existing_cohort_in_place(a424, tmp_path):
    from fmtc.cohort.build import BoldSelection, build_from_fmriprep
    from fmtc.errors import OutputExistsError
    from fmtc.storage import sha256_tree

    derivatives = tmp_path / "fmriprep"
    selection = BoldSelection(space="MNI152NLin2009cAsym", desc="preproc", res="2",
                              strategy="simple")
    for pid in ("sub-01", "sub-02", "sub-03"):  # 30 volumes: nilearn's region means cost
        # ~0.2 s a volume on the A424 grid, and what is checked is the folder's life cycle
        write_bold(derivatives / selection.bold(pid), region_values(int(pid[-1]), n_volumes=30))
        write_confounds(derivatives / selection.confounds(pid), 30, 0.1, seed=int(pid[-1]))
    tsv = _participants(tmp_path / "p.tsv", {"sub-01": "1", "sub-02": "0", "sub-03": "1"})
    out = tmp_path / "cohort"

    def build(**options):
        return build_from_fmriprep(derivatives, tsv, "group", out, a424, selection=selection,
                                   progress=False, **options)

    first = build(subjects=["sub-01", "sub-02"])
    assert first.complete and first.done == ["sub-01", "sub-02"]
    before = sha256_tree(out)
    again = build(subjects=["sub-01", "sub-02"])  # the same cohort: nothing to do
    assert again.complete and again.done == [] and again.skipped == ["sub-01", "sub-02"]
    with pytest.raises(OutputExistsError, match="holds another cohort.*--overwrite"):
        build(subjects=["sub-01", "sub-02", "sub-03"])
    with pytest.raises(OutputExistsError, match="holds another cohort"):
        build(subjects=["sub-01", "sub-02"], max_mean_fd=0.05)
    assert sha256_tree(out) == before
    replaced = build(subjects=["sub-03"], overwrite=True)  # another cohort, on request
    assert replaced.complete and sorted(p.name for p in out.glob("sub-*")) == ["sub-03"]
    assert not list(tmp_path.glob(".cohort.*"))  # no staging or replaced folder left behind
