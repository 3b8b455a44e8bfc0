"""The cohort folder contract: valid cohorts load, damaged ones are refused by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmtc.cohort.folder import (
    CohortError,
    load_cohort,
    timeseries_path,
    validate_cohort,
    write_description,
    write_participants,
    write_regions,
    write_timeseries,
)


@pytest.fixture
def cohort_copy(small_cohort, tmp_path) -> Path:
    return Path(shutil.copytree(small_cohort, tmp_path / "copy"))


def _series_file(root: Path, pid: str, suffix: str = "tsv") -> Path:
    return timeseries_path(root, pid, "SIM424", suffix)


def test_simulated_cohort_loads_with_labels_regions_and_truth(small_cohort):
    cohort = load_cohort(small_cohort)
    assert cohort.label_column == "Response"
    assert len(cohort.subject_ids) == 12 and set(cohort.labels) == {0, 1}
    assert cohort.n_regions == 424 and cohort.xyz.shape == (424, 3)
    assert cohort.timeseries[cohort.subject_ids[0]].shape == (220, 424)
    assert cohort.repetition_time[cohort.subject_ids[0]] == 2.5
    assert cohort.is_simulated and "SIMULATED" in repr(cohort)
    assert {"fc_regions", "fc_edges", "ts_regions", "effect_size"} <= set(cohort.ground_truth)
    assert validate_cohort(small_cohort) == []


def test_nan_in_one_series_is_refused_naming_the_subject(cohort_copy):
    path = _series_file(cohort_copy, "sub-003")
    lines = path.read_text().splitlines()
    cells = lines[5].split("\t")
    cells[7] = "nan"
    lines[5] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    problems = validate_cohort(cohort_copy)
    assert len(problems) == 1 and "sub-003" in problems[0] and "non-finite" in problems[0]


def test_sidecar_without_repetition_time_is_refused(cohort_copy):
    _series_file(cohort_copy, "sub-005", "json").write_text("{}\n")
    problems = validate_cohort(cohort_copy)
    assert len(problems) == 1 and "sub-005" in problems[0] and "RepetitionTime" in problems[0]


def test_one_region_column_fewer_is_refused(cohort_copy):
    path = _series_file(cohort_copy, "sub-002")
    table = pd.read_csv(path, sep="\t", dtype=str)
    table.iloc[:, :-1].to_csv(path, sep="\t", index=False)
    problems = validate_cohort(cohort_copy)
    assert len(problems) == 1 and "sub-002" in problems[0] and "423 region columns" in problems[0]


def test_subject_missing_from_participants_is_refused(cohort_copy):
    table = pd.read_csv(cohort_copy / "participants.tsv", sep="\t", dtype=str)
    table[table.participant_id != "sub-007"].to_csv(
        cohort_copy / "participants.tsv", sep="\t", index=False)
    problems = validate_cohort(cohort_copy)
    assert len(problems) == 1 and "sub-007" in problems[0] and "participants.tsv" in problems[0]


def test_every_problem_is_listed_at_once(cohort_copy):
    _series_file(cohort_copy, "sub-005", "json").write_text("{}\n")
    shutil.rmtree(cohort_copy / "sub-004")
    with pytest.raises(CohortError) as raised:
        load_cohort(cohort_copy)
    assert len(raised.value.problems) == 2
    assert "sub-004" in str(raised.value) and "sub-005" in str(raised.value)


def test_missing_description_fields_and_bad_labels(cohort_copy):
    (cohort_copy / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    assert any("Atlas" in p for p in validate_cohort(cohort_copy))
    problems = validate_cohort(cohort_copy, label="Drug")
    assert any("'Drug' must be 0, 1 or n/a" in p or "Atlas" in p for p in problems)


def _tiny_cohort(root: Path, volumes: int) -> Path:
    regions = pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"], "x": [0, 1, 2],
                            "y": [0, 0, 0], "z": [0, 0, 0], "network": ["n", "n", "m"]})
    write_regions(root, "T3", regions)
    write_participants(root, pd.DataFrame({"participant_id": ["sub-1", "sub-2"],
                                           "label": [1, np.nan]}))
    rng = np.random.default_rng(0)
    for pid in ("sub-1", "sub-2"):
        write_timeseries(root, pid, "T3", rng.standard_normal((volumes, 3)), [1, 2, 3], 2.0)
    write_description(root, "tiny", "T3")
    return root


def test_short_series_warn_unlabelled_subjects_are_left_out(tmp_path):
    root = _tiny_cohort(tmp_path / "tiny", volumes=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = load_cohort(root)
    messages = " ".join(str(w.message) for w in caught)
    assert "sub-2" in messages and "40 volumes" in messages
    assert cohort.subject_ids == ["sub-1"] and cohort.excluded == ["sub-2"]


def test_fewer_than_twenty_volumes_is_an_error(tmp_path):
    root = _tiny_cohort(tmp_path / "tiny", volumes=12)
    problems = validate_cohort(root)
    assert any("sub-1" in p and "12 volumes" in p for p in problems)


def test_written_series_keep_seven_significant_digits(tmp_path):
    values = np.array([[12345.678912, -0.000123456789, 3.14159265]] * 25)
    write_timeseries(tmp_path, "sub-1", "T3", values, [4, 5, 6], 2.0)
    path = timeseries_path(tmp_path, "sub-1", "T3", "tsv")
    header, first_row = path.read_text().splitlines()[:2]
    assert header == "4\t5\t6"
    read = np.array(first_row.split("\t"), dtype=float)
    np.testing.assert_allclose(read, values[0], rtol=5e-7)


def test_cli_validate_exit_status_and_messages(small_cohort, cohort_copy):
    ok = subprocess.run([sys.executable, "-m", "fmtc", "cohort", "validate", str(small_cohort)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout
    _series_file(cohort_copy, "sub-005", "json").write_text("{}\n")
    bad = subprocess.run([sys.executable, "-m", "fmtc", "cohort", "validate", str(cohort_copy)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "sub-005" in bad.stdout and "RepetitionTime" in bad.stdout
    info = subprocess.run([sys.executable, "-m", "fmtc", "cohort", "info", str(small_cohort)],
                          capture_output=True, text=True)
    assert info.returncode == 0 and "SIMULATED" in info.stdout and "Drug" in info.stdout


def test_the_content_hash_covers_what_is_read_whatever_the_links(small_cohort, tmp_path):
    original = load_cohort(small_cohort)
    linked = Path(shutil.copytree(small_cohort, tmp_path / "linked"))
    subject = original.subject_ids[0]
    target = Path(shutil.move(linked / subject, tmp_path / "elsewhere"))
    (linked / subject).symlink_to(target, target_is_directory=True)
    assert load_cohort(linked).content_hash == original.content_hash  # the same recordings
    series = next(target.glob("func/*_timeseries.tsv"))
    rows = series.read_text().splitlines()
    values = rows[1].split("\t")
    rows[1] = "\t".join([f"{-float(values[0]):.7g}", *values[1:]])  # one value negated
    series.write_text("\n".join(rows) + "\n")
    changed = load_cohort(linked)
    assert changed.timeseries[subject][0, 0] == -original.timeseries[subject][0, 0]
    assert changed.content_hash != original.content_hash  # a linked subject is hashed too
